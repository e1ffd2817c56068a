"""One measured child process for the benchmarks: `run_capped(cmd, cap, timeout, env)` runs `cmd`
under `prlimit --as=cap` in its own session, from the repository root, and returns its exit status
("timeout" when killed at `timeout` seconds), wall seconds, its own peak RSS in MiB (wait4's
ru_maxrss of that child and what it waited for, so concurrent children don't mix) and its output
(stdout and stderr together; the first `keep` bytes only, when given, for a child that may print
without end)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_capped(
    cmd: list[str], cap: str | int, timeout: float, env: Mapping[str, str], *, keep: int | None = None
) -> dict:
    start = time.perf_counter()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(read)
        os.chdir(ROOT)
        os.execvpe("prlimit", ["prlimit", f"--as={cap}", *cmd], env)
    os.close(write)
    os.set_blocking(read, False)
    chunks: list[bytes] = []
    kept = 0
    while True:
        try:
            while piece := os.read(read, 1 << 16):
                if keep is None or kept < keep:
                    chunks.append(piece)
                    kept += len(piece)
        except BlockingIOError:
            pass
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            code: int | str = os.waitstatus_to_exitcode(status)
            break
        if time.perf_counter() - start > timeout:
            os.killpg(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            code = "timeout"
            break
        time.sleep(0.02)
    os.close(read)
    return {
        "exit": code,
        "seconds": time.perf_counter() - start,
        "peak_mib": usage.ru_maxrss / 1024,
        "output": b"".join(chunks).decode("utf-8", "replace"),
    }
