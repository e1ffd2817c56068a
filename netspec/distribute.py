"""Where a run's arrays live: one device, or a Mesh over many, with JAX's own sharding machinery.

Contract. Plain values in, no Spec: `mesh_for(devices, *, batch_size, params="replicated",
fsdp_devices=None) -> Mesh | None` makes a two-axis mesh `("data", "fsdp")` over the devices the
spec's `distribute` section or `--devices` asks for (all by default; None for one device, the
plain path), refusing a batch that does not split over them in `netspec.machine`'s one wording.
Every batch is split over both axes (`BATCH`, `batch_spec`). A sweep group's mesh
(`members_mesh`) is ("members", "data"): its stacked members split over the first axis. `state_shardings(state, mesh, mode)`
says where each TrainState leaf lives: `replicated` (the `fsdp` axis has size 1: every device
holds the parameters and optimizer state, XLA all-reduces the gradients) or `fsdp` (each array of
at least `FSDP_MIN_SIZE` elements is also split along the `fsdp` axis on its largest divisible
axis, so XLA gathers it for the matmuls; `distribute.fsdp_devices` makes that axis smaller than
all devices, and the parameters are replicated across the `data` axis: hybrid sharding).
`place(tree, shardings)` puts host or device arrays there.

Many processes: `initialize` joins one run (`jax.distributed.initialize`; gloo on CPU),
`is_writer()` is process 0, the only one that writes the run directory, `from_host` /
`rows_from_host` let each process build only its own devices' rows of a batch, and `gather`
brings whole arrays to the host (histograms, checkpoints, the report). No home-made
communication: the compiled step says what is sharded and XLA's partitioner does the rest.
`compile.program` asks it for the shardings, `train` for the mesh and the placement, the CLI for
`initialize`.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from netspec.errors import NetspecError
from netspec.machine import device_split_problems

FSDP_MIN_SIZE = 2**14  # smaller arrays stay replicated: splitting them saves nothing worth a gather


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Join a multi-process run (`jax.distributed.initialize`): every process sees every device,
    the mesh spans them all, and only process 0 writes the run directory. CPU processes talk
    through gloo. Must run before anything else touches jax's devices."""
    if coordinator is None:
        return
    if num_processes is None or process_id is None:
        raise NetspecError(
            "--coordinator needs --num-processes and --process-id too (or NETSPEC_NUM_PROCESSES, NETSPEC_PROCESS_ID)."
        )
    if not 0 <= process_id < num_processes:
        raise NetspecError(f"--process-id must be between 0 and {num_processes - 1}, found {process_id}.")
    _check_coordinator(coordinator, process_id)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=120,
        )
    except Exception as e:
        raise NetspecError(
            f"Could not join the run at {coordinator} as process {process_id} of {num_processes}: {e}"
        ) from None


def _check_coordinator(coordinator: str, process_id: int) -> None:
    """What can be known of `coordinator` (HOST:PORT) before jax's runtime tries it: the runtime
    ends the process (a C++ abort, exit 134, after its timeout) where a name does not resolve or
    process 0 cannot listen on the port. Raises NetspecError for those."""
    import errno
    import socket

    host, _, port_text = coordinator.rpartition(":")
    host = host.strip("[]")  # an IPv6 address in brackets
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise NetspecError(f"--coordinator is HOST:PORT (e.g. host0:12355), found {coordinator!r}.")
    port = int(port_text)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise NetspecError(
            f"The coordinator's host {host!r} cannot be found from here ({e.strerror or e}): --coordinator names "
            "process 0's machine by a name or address every process can reach."
        ) from None
    if process_id == 0:  # process 0 runs the coordinator service on that port, on every interface
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("", port))
            except OSError as e:
                taken = e.errno == errno.EADDRINUSE
                raise NetspecError(
                    f"Process 0 cannot listen on port {port} for the coordinator ({e.strerror or e})"
                    + ("; another program holds it: choose another port in --coordinator." if taken else ".")
                ) from None


def is_writer() -> bool:
    """Process 0 writes summaries, checkpoints and results; the others only compute."""
    return jax.process_index() == 0


def gather(tree):
    """Whole arrays on this host, also for arrays sharded over other processes' devices."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return to_host(tree)


def to_host(tree):
    """`tree` as `jax.device_get` gives it, read faster on a CPU: there each array of a numeric
    dtype is `np.asarray` of it (read-only), its memory being the host's already (device_get's
    per-leaf transfer bookkeeping took 5x as long for a chunk's dozen small outputs); elsewhere
    device_get, which starts every transfer before waiting for the first. Sharded arrays of a
    multi-process run need `gather`."""
    if jax.default_backend() != "cpu":
        return jax.device_get(tree)

    def read(leaf):
        if isinstance(leaf, jax.Array) and not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.extended):
            return np.asarray(leaf)
        return jax.device_get(leaf)  # a PRNG key, a Python number

    return jax.tree_util.tree_map(read, tree)


def _devices(devices: int | None) -> tuple[list, int]:
    """(this process's devices, how many the run asks for: `devices`, else all); NetspecError when
    it asks for more than there are."""
    available = jax.devices()
    n = devices or len(available)
    if n > len(available):
        raise NetspecError(
            f"The run asks for {n} devices but JAX sees {len(available)} ({available[0].platform}). "
            f"Use --devices {len(available)} or fewer."
        )
    return available, n


def mesh_for(
    devices: int | None, *, batch_size: int, params: str = "replicated", fsdp_devices: int | None = None
) -> Mesh | None:
    """The data-parallel mesh over `devices` local devices (None: all), or None when one device does
    the work. `params` ("replicated" or "fsdp") and `fsdp_devices` set the `fsdp` axis. Raises
    NetspecError when the devices are not there or the batch does not split over them."""
    available, n = _devices(devices)
    group = fsdp_devices or (n if params == "fsdp" else 1)
    problems = device_split_problems(batch_size, n, group if n > 1 else None)
    if problems:
        raise NetspecError(" ".join(f"{key}: {why} (--devices)." for key, why in problems))
    if n == 1:
        return None
    # consecutive devices (those of one host come together) share the parameters
    return Mesh(np.array(available[:n]).reshape(n // group, group), ("data", "fsdp"))


def members_mesh(devices: int | None, members: int, *, batch_size: int) -> Mesh | None:
    """The mesh of a sweep group of `members` (`netspec.compile.members`) over `devices` local
    devices (None: all): axes ("members", "data"). The members spread over the first axis, as many
    devices as divide the member count (gcd), and each member's batch is split over the rest when
    it divides (else those devices stay idle); None when one device does the work. Raises
    NetspecError when the devices are not there."""
    available, n = _devices(devices)
    across = math.gcd(members, n)
    within = n // across if batch_size % (n // across) == 0 else 1
    if across * within == 1:
        return None
    return Mesh(np.array(available[: across * within]).reshape(across, within), ("members", "data"))


MEMBERS = "members"  # the mesh axis a sweep group's stacked members are split over


BATCH = ("data", "fsdp")  # the mesh axes a batch is split over: all of them


def batch_spec(axis: int = 0) -> P:
    """Arrays of examples are split along `axis` over every device."""
    return P(*([None] * axis), BATCH)


def _fsdp_spec(shape, n: int) -> P:
    size = int(np.prod(shape)) if shape else 1
    if size < FSDP_MIN_SIZE or n == 1:
        return P()
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % n == 0:
            return P(*[("fsdp" if a == axis else None) for a in range(len(shape))])
    return P()


def state_shardings(tree, mesh: Mesh, mode: str):
    """A NamedSharding for every leaf of `tree` (see the module docstring)."""
    n = mesh.shape["fsdp"]
    if mode == "fsdp":
        return jax.tree_util.tree_map(
            lambda a: NamedSharding(mesh, _fsdp_spec(tuple(getattr(a, "shape", np.shape(a))), n)), tree
        )
    return replicated(tree, mesh)


def replicated(tree, mesh: Mesh):
    """A sharding for every leaf of `tree`: the whole array on every device of `mesh`."""
    return jax.tree_util.tree_map(lambda a: NamedSharding(mesh, P()), tree)


def place(tree, shardings):
    """`tree` (host or device arrays) put where `shardings` say, leaf by leaf."""
    return jax.device_put(tree, shardings)


def from_host(mesh: Mesh, shape: tuple, fetch, axis: int = 0) -> jax.Array:
    """A global array of `shape`, split along `axis` over all the mesh's devices, that each
    process builds from only the blocks its own devices hold: `fetch(index)` returns the block at
    `index` (a tuple of slices, one per dimension). This is how every process of a many-host run
    feeds its own shard of each batch (`jax.make_array_from_callback`); on one host it puts each
    device's part straight on that device."""
    return jax.make_array_from_callback(tuple(shape), NamedSharding(mesh, batch_spec(axis)), fetch)


def rows_from_host(mesh: Mesh, array: np.ndarray, indices: np.ndarray) -> jax.Array:
    """`array[indices]` for a [steps, batch] index array, as a global array split along the batch
    axis: each process gathers on its host only the examples its own devices train on."""

    def fetch(index):
        rest = (slice(None), slice(None), *index[2:])  # every example's own axes, whole
        return array[indices[index[:2]]][rest]

    return from_host(mesh, (*indices.shape, *array.shape[1:]), fetch, axis=1)


def bytes_per_device(tree) -> int:
    """The bytes of `tree` that the first device holds."""
    total = 0
    first = jax.devices()[0]
    for leaf in jax.tree_util.tree_leaves(tree):
        for shard in getattr(leaf, "addressable_shards", []):
            if shard.device == first:
                total += shard.data.nbytes
    return total
