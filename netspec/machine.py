"""What this machine offers a run: the memory budget, and whether a batch splits over the devices.

Contract. Pure Python (no numpy, no jax) at the bottom of the package: it imports nothing of
netspec's, so `spec/`, `data/` and `distribute` can all use it.

    memory_budget() -> Budget          bytes one training device may use, and where that figure comes from
    host_memory() -> Budget            bytes this process may use on the host (read once per process)
    parse_bytes(text) -> int | None    '24GiB', '8000MB', '1e9' -> bytes (units binary)
    format_bytes(n) -> str             bytes in binary units, for messages
    device_split_problems(batch_size, devices, fsdp_group) -> [(spec key, why)]

`check` compares the memory a model needs (`netspec.spec.cost.training_memory`) with
`memory_budget()`; `netspec.data.formats.read_limit` bounds what one data file may hold by
`host_memory()`. The budget is `NETSPEC_MEMORY_BUDGET` (`BUDGET_ENV`) when set (bytes, or a
number with KiB/MiB/GiB/TiB, KB/MB/GB/TB, K/M/G/T: all binary), else the first GPU's memory when
JAX will train on one (a CUDA plugin installed, `JAX_PLATFORMS` allowing it, nvidia-smi answering;
times XLA's preallocated fraction), else this host's: the least of its physical memory, its
cgroup limit and the process's address-space and data limits (`ulimit -v`, `ulimit -d`).

`device_split_problems` is the one wording of "this batch does not split over these devices":
`check` uses it for `distribute.devices`, `netspec.distribute.mesh_for` for `--devices`.
"""

from __future__ import annotations

import math
import os
from contextlib import suppress
from typing import NamedTuple


class Budget(NamedTuple):
    """Bytes available, a phrase saying where the figure comes from, and what it limits: "host"
    (this machine's resident memory: data read on the host and a CPU device share it), "address
    space" (a ulimit on the process's virtual memory, of which the JAX runtime alone takes about
    `RUNTIME_ADDRESS_SPACE`) or "device" (a GPU's memory, or NETSPEC_MEMORY_BUDGET)."""

    bytes: int
    origin: str
    kind: str = "host"


def format_bytes(n: float) -> str:
    """Bytes in binary units: 1536 -> '1.5 KiB', 2**40 -> '1 TiB' (3 significant digits)."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


_UNITS = {
    "": 1,
    "B": 1,
    "K": 2**10,
    "KB": 2**10,
    "KIB": 2**10,
    "M": 2**20,
    "MB": 2**20,
    "MIB": 2**20,
    "G": 2**30,
    "GB": 2**30,
    "GIB": 2**30,
    "T": 2**40,
    "TB": 2**40,
    "TIB": 2**40,
}


def parse_bytes(text: str) -> int | None:
    """'24GiB', '24 G', '8000MB', '1e9' -> bytes (the units binary: 1 GB = 2**30); None if not a size."""
    s = text.strip().upper()
    number = s.rstrip("KMGTIB ")
    unit = s[len(number) :].strip()
    try:
        value = float(number)
    except ValueError:
        return None
    if unit not in _UNITS or not math.isfinite(value) or value <= 0:
        return None
    return int(value * _UNITS[unit])


BUDGET_ENV = "NETSPEC_MEMORY_BUDGET"


_cached: dict[str, Budget] = {}


def host_memory() -> Budget:
    """Bytes this process may use on the host: the least of the physical memory (sysconf), the
    cgroup's limit (v2 memory.max, v1 memory.limit_in_bytes) and the process's address-space and
    data limits (RLIMIT_AS, RLIMIT_DATA); read once per process."""
    if "host" in _cached:
        return _cached["host"]
    options = []
    with suppress(ValueError, OSError, AttributeError):
        options.append(Budget(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine's memory"))
    for path in _cgroup_limit_files():
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # v1 says 'no limit' with a huge number, v2 with 'max'
            options.append(Budget(int(text), f"the cgroup's memory limit, {path}"))
    try:
        import resource

        for limit, name, kind in (
            (resource.RLIMIT_AS, "address-space limit, ulimit -v", "address space"),
            (resource.RLIMIT_DATA, "data-size limit, ulimit -d", "host"),
        ):
            soft = resource.getrlimit(limit)[0]
            if soft != resource.RLIM_INFINITY and soft > 0:
                options.append(Budget(soft, f"the process's {name}", kind))
    except (ImportError, ValueError, OSError):
        pass
    best = min(options, key=lambda b: b.bytes, default=Budget(2**40, "an assumed 1 TiB (the memory could not be read)"))
    _cached["host"] = best
    return best


def _cgroup_limit_files() -> list[str]:
    """The memory-limit files of this process's cgroup (v2 and v1), where they exist."""
    files = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if path not in ("", "/") and controllers == "":
                files.append(f"/sys/fs/cgroup{path}/memory.max")
            elif path not in ("", "/") and "memory" in controllers.split(","):
                files.append(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
    except (OSError, ValueError):
        pass
    return [f for f in files if os.path.exists(f)]


def memory_budget() -> Budget:
    """Bytes one training device may use (see the module docstring for the order of sources)."""
    given = os.environ.get(BUDGET_ENV)
    if given:
        value = parse_bytes(given)
        if value is not None:
            return Budget(value, f"{BUDGET_ENV}={given}", "device")
    if "device" not in _cached:
        _cached["device"] = _gpu_memory() or host_memory()
    return _cached["device"]


def _gpu_memory() -> Budget | None:
    """The first GPU's memory as JAX may use it, when JAX will train on a GPU: a CUDA plugin is
    installed, JAX_PLATFORMS does not leave it out, and nvidia-smi answers. None otherwise."""
    platforms = os.environ.get("JAX_PLATFORMS", os.environ.get("JAX_PLATFORM_NAME", ""))
    if platforms and not any(p.strip() in ("cuda", "gpu") for p in platforms.split(",")):
        return None
    import importlib.util

    if not any(importlib.util.find_spec(name) for name in ("jax_cuda12_plugin", "jax_cuda13_plugin")):
        return None
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.splitlines()
        name, mib = out[0].rsplit(",", 1)
        total = int(float(mib)) * 2**20
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    if os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "true").lower() in ("false", "0"):
        return Budget(total, f"the memory of GPU 0 ({name.strip()}, nvidia-smi)", "device")
    try:
        fraction = float(os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.75"))
    except ValueError:
        fraction = 0.75
    return Budget(
        int(total * fraction),
        f"{fraction:g} of the memory of GPU 0 ({name.strip()}, nvidia-smi), what XLA preallocates",
        "device",
    )


def device_split_problems(batch_size: int, devices: int, fsdp_group: int | None) -> list[tuple[str, str]]:
    """[(the spec key to change, why)] when a batch of `batch_size` cannot be split evenly over
    `devices` devices, or groups of `fsdp_group` devices (distribute.fsdp_devices) do not divide
    them: the one wording `validate` (for distribute.devices) and a run (for --devices) both use."""
    problems = []
    if batch_size % devices:
        problems.append(
            (
                "train.batch_size",
                f"batch_size {batch_size} does not split evenly over {devices} devices; make it a multiple "
                f"of {devices} (e.g. {batch_size + devices - batch_size % devices}) or use fewer devices",
            )
        )
    if fsdp_group and devices % fsdp_group:
        problems.append(
            (
                "distribute.fsdp_devices",
                f"fsdp_devices {fsdp_group} does not divide the {devices} devices into equal "
                f"groups; choose a divisor of {devices} or a multiple of {fsdp_group} devices",
            )
        )
    return problems
