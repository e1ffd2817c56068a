"""The run directory as a place on disk: claiming it, writing files whole, one writer at a time.

Contract: `make_run_dir` claims a new, empty directory (an exclusive mkdir, never an existing
one). Every file netspec writes there is written whole or not at all: `write_atomically` (and
`checkpoint.save`, the HParams session) writes a temporary `.<name>.<...>.tmp` beside it, fsyncs
it, renames it over the real name and fsyncs the directory; event files are appended a whole
record at a time (`summaries.EventFile`). So a kill -9 or a full disk can leave only temporary
files, which `remove_leftovers` deletes: every command that opens a run does so first, when it
can hold the run (`lock`).

`lock(run_dir)` holds the run for this process with `flock` on `<run_dir>/.lock`, which the
kernel releases when the process ends however it ends (kill -9 included, so a lock is never
stale), and records who holds it (pid, host, command, since) in that file for the refusal
another process gets. `run` and `resume` hold it while they write; `eval` and `predict` take it
only for the moment of removing leftovers, and read a run another process holds without
touching it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from netspec.errors import NetspecError

LOCK_FILE = ".lock"
_SUBDIRS = ("checkpoints", "test", "validation")  # where a run writes besides its root


def make_run_dir(logdir: str | Path, name: str, run_name: str | None) -> Path:
    """Claim a new, empty run directory `<logdir>/<name>/<run_name or the time>[-i]`; never
    reuse an existing one. Raises NetspecError when it cannot be created."""
    parent = Path(logdir) / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NetspecError(f"Cannot create the run directory {parent}: {e.strerror}. Choose another --logdir.") from None
    base = run_name or time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        candidate = parent / (base if i == 0 else f"{base}-{i}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as e:
            raise NetspecError(f"Cannot create the run directory {candidate}: {e.strerror}. Choose another --logdir.") from None
    raise NetspecError(f"Too many runs named {base!r} in {parent}; choose another --run-name.")


def write_all(fd: int, data: bytes, path: Path | str) -> None:
    """All of `data` to `fd`; a short write (a disk that filled up) is the OSError it is."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError as e:  # os.write's error names no file
            raise OSError(e.errno, e.strerror, str(path)) from None
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        view = view[written:]


def sync_directory(directory: Path) -> None:
    """fsync a directory, so a rename or a new file in it survives a power loss too."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes | str, *, tmp_prefix: str | None = None) -> None:
    """Replace `path` with `data` (str: UTF-8) whole: a temporary file beside it (named
    `.<tmp_prefix, else the file's name>.<pid>.tmp`), fsynced, renamed. Raises OSError (the
    temporary file removed) when it cannot be written."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp = path.with_name(f".{tmp_prefix or path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            write_all(fd, payload, tmp)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename == str(tmp):  # say which file could not be written, not its temporary name
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    sync_directory(path.parent)


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Delete the temporary files of writes that were cut off (kill -9, a full disk, a power
    loss) in the run directory; returns them. Only a process that holds the run (`lock`) may
    call this: another's write in progress is such a file."""
    removed = []
    for directory in (run_dir, *(run_dir / sub for sub in _SUBDIRS)):
        for path in directory.glob(".*.tmp"):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class RunLock:
    """This process's hold on a run directory; `release()` (or the process's end) lets it go."""

    def __init__(self, fd: int, run_dir: Path):
        self._fd, self.run_dir = fd, run_dir

    def release(self) -> None:
        """Let the run go (the lock file stays: deleting it would race with a process opening it)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the flock
            self._fd = None


def _holder_text() -> str:
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                       "since": time.strftime("%Y-%m-%d %H:%M:%S %z")}) + "\n"


def _try(run_dir: Path) -> tuple[RunLock | None, dict]:
    """(the lock, {}) or (None, what the holder recorded). Raises OSError when the lock file
    cannot be opened (a read-only run directory)."""
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            holder = {}
        os.close(fd)
        return None, holder if isinstance(holder, dict) else {}
    except BaseException:
        os.close(fd)
        raise
    return RunLock(fd, run_dir), {}


def lock(run_dir: Path) -> RunLock:
    """Hold `run_dir` for this process (see the module docstring) and record who holds it.
    Raises NetspecError naming the holder when another process holds it, or when the lock
    file cannot be written."""
    run_dir = Path(run_dir)
    try:
        held, holder = _try(run_dir)
        if held is not None:
            try:
                os.ftruncate(held._fd, 0)
                os.pwrite(held._fd, _holder_text().encode(), 0)
            except OSError:  # a full disk: the lock holds all the same; a refusal then names no holder
                pass
            return held
    except OSError as e:
        raise NetspecError(f"Cannot write the run directory {run_dir} ({e.filename or run_dir / LOCK_FILE}): "
                           f"{e.strerror or e}. A run directory must be writable to train in it.") from None
    who = (f"process {holder['pid']} on {holder.get('host', 'this host')} (`{holder.get('command', 'netspec')}`), since "
           f"{holder.get('since', 'some time')}" if "pid" in holder else "another process")
    stop = f" (or stop it: kill {holder['pid']})" if "pid" in holder and holder.get("host") == socket.gethostname() else ""
    raise NetspecError(f"The run {run_dir} is in use: {who} is writing it. A run directory is written by one process at a "
                       f"time, so this one left it untouched; wait for that process to end{stop}, then run this again.")


def tidy(run_dir: Path) -> None:
    """Remove leftovers of cut-off writes if no process holds the run (for commands that only
    read it: eval, predict); a run another process holds, or a read-only one, is left as it is."""
    try:
        held, _ = _try(Path(run_dir))
    except OSError:
        return
    if held is not None:
        try:
            remove_leftovers(Path(run_dir))
        except OSError:
            pass
        finally:
            held.release()
