"""What a run trains on, on the device: the training data (resident or streamed), the batches
of each chunk, the evaluation split, the sample batch the summaries use.

Contract. `training_inputs(spec, arrays, program, mesh) -> TrainingInputs` places a run's data:

    feed       a `Feed`: each chunk's `batches` argument (example indices into resident data, or
               for data larger than `data.max_resident_mb`, or across processes, the examples
               themselves gathered on the host by the same indices, the next chunk's prefetched)
    data       the resident training split as stored (`Data`: uint8 images stay uint8)
    eval_data  the eval split padded to whole batches, with its mask (`padded`), or None
    sample     a prepared batch of up to 256 training examples (summaries at step 0, histograms)

The batch order is `BatchOrder`'s (a function of the seed and the step), so resident and streamed
data train the same steps. `split_means` turns `program.evaluate`'s sums into means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from netspec import distribute
from netspec.data.arrays import BatchOrder
from netspec.spec.types import Spec


class Feed:
    """The `batches` argument of each chunk: example indices into resident data, or, for data
    larger than the device budget, the examples themselves gathered on the host by the same
    indices (the next chunk's on a background thread while the current one runs)."""

    def __init__(self, split, order: BatchOrder, *, streamed: bool, full_batch: bool, mesh=None):
        self.split, self.order, self.streamed, self.full_batch, self.mesh = split, order, streamed, full_batch, mesh
        self.resident = type(split)(split.x[:0], split.y[:0]) if streamed else split
        self._pending: dict = {}
        self._pool: ThreadPoolExecutor | None = None

    def _gather(self, start: int, n: int):
        import jax

        idx = self.order.indices(start, n)
        if self.mesh is not None:  # each process gathers only the rows its own devices train on
            return distribute.rows_from_host(self.mesh, self.split.x, idx), distribute.rows_from_host(
                self.mesh, self.split.y, idx
            )
        return jax.device_put(self.split.x[idx]), jax.device_put(self.split.y[idx])

    def batches(self, start: int, n: int):
        if not self.streamed:
            return None if self.full_batch else self.order.indices(start, n)
        pending = self._pending.pop((start, n), None)
        return pending.result() if pending is not None else self._gather(start, n)

    def prefetch(self, start: int, n: int) -> None:
        if self.streamed:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(1, thread_name_prefix="netspec-feed")
            self._pending[start, n] = self._pool.submit(self._gather, start, n)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def chunk_batches(feed, lengths: Sequence[int], i: int, start: int):
    """Chunk `i`'s `batches` argument (its `lengths[i]` steps from step `start`), the next chunk's
    prefetched meanwhile; `feed` a `Feed`, or a sweep group's feed of its members' `Feed`s."""
    batches = feed.batches(start, lengths[i])
    if i + 1 < len(lengths):
        feed.prefetch(start + lengths[i], lengths[i + 1])
    return batches


def load_arrays(spec: Spec, data_dir: str | None = None):
    """The spec's data as host arrays (`netspec.data.arrays.load`); `data_dir` is `--data-dir`."""
    from netspec.data.arrays import load

    return load(spec.data, Path(spec.base_dir), seed=spec.seed, data_dir=data_dir)


def device_data(split, arrays):
    """A split on the device as stored (uint8 images stay uint8), with its scaling."""
    import jax.numpy as jnp

    from netspec.compile.state import Data

    return Data(jnp.asarray(split.x), jnp.asarray(split.y), jnp.asarray(arrays.shift), jnp.asarray(arrays.scale))


def padded(split, arrays, batch_size: int, devices: int = 1, mesh=None):
    """(Data shaped [batches, batch, ...], mask) for evaluation: padded to whole batches (a batch a
    multiple of the device count), padding masked out; with a mesh, split along the batch axis
    (each process puts only its own devices' part)."""
    import jax.numpy as jnp

    from netspec.compile.state import Data

    n = len(split.x)
    batch_size = -(-min(batch_size, n) // devices) * devices
    batches = -(-n // batch_size)
    pad = batches * batch_size - n

    def shape(a):
        a = np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
        a = a.reshape(batches, batch_size, *a.shape[1:])
        return jnp.asarray(a) if mesh is None else distribute.from_host(mesh, a.shape, a.__getitem__, axis=1)

    mask = np.ones(n, np.float32)  # padded with zeros like the data
    scaling = (jnp.asarray(arrays.shift), jnp.asarray(arrays.scale))
    if mesh is not None:
        scaling = distribute.place(scaling, distribute.replicated(scaling, mesh))
    return Data(shape(split.x), shape(split.y), *scaling), shape(mask)


def split_means(evaluation) -> tuple[dict[str, float], np.ndarray | None]:
    """({tag: mean over the split}, confusion matrix or None) from `program.evaluate`'s device result."""
    import jax

    sums, count, confusion = jax.device_get(evaluation)
    return {k: float(v) / float(count) for k, v in sums.items()}, confusion


class TrainingInputs(NamedTuple):
    """A run's data on the device (see the module docstring)."""

    feed: Feed
    data: Any  # Data: the resident training split (empty when streamed), with its scaling
    eval_data: Any  # (Data [batches, batch, ...], mask) of the eval split, or None
    sample: Any  # the prepared sample batch (x, y)
    n_devices: int


def batch_order(spec: Spec, arrays) -> BatchOrder:
    """The spec's batch order over the training split of `arrays` (shuffled by its seed unless
    `train.shuffle` is off or every step takes the whole set)."""
    full_batch = spec.train["batch_size"] == spec.num_examples
    return BatchOrder(
        len(arrays.train.x), spec.train["batch_size"], seed=spec.seed, shuffle=spec.train["shuffle"] and not full_batch
    )


def training_inputs(spec: Spec, arrays, program, mesh) -> TrainingInputs:
    """Place `arrays` for training `spec` with `program` over `mesh` (None: one device)."""
    import jax

    full_batch = spec.train["batch_size"] == spec.num_examples
    order = batch_order(spec, arrays)
    # Across processes each one feeds its own shard of every batch (streamed), rather than every
    # device holding the whole set.
    streamed = (
        jax.process_count() > 1 or arrays.train.x.nbytes + arrays.train.y.nbytes > spec.data["max_resident_mb"] * 2**20
    )
    feed = Feed(arrays.train, order, streamed=streamed, full_batch=full_batch, mesh=mesh)
    data = device_data(feed.resident, arrays)
    n_devices = 1 if mesh is None else mesh.devices.size
    if mesh is not None:
        data = distribute.place(data, distribute.replicated(data, mesh))
    eval_split = {"test": arrays.test, "validation": arrays.validation}.get(spec.eval["split"] or "")
    eval_data = padded(eval_split, arrays, spec.eval["batch_size"], n_devices, mesh) if eval_split is not None else None
    sample_size = max(n_devices, min(256, len(arrays.train.x)) // n_devices * n_devices)
    sample = [arrays.train.x[:sample_size], arrays.train.y[:sample_size]]
    if mesh is not None:  # split over the devices like a training batch
        sample = [distribute.from_host(mesh, a.shape, a.__getitem__) for a in sample]
    return TrainingInputs(feed, data, eval_data, program.prepare_batch(data, *sample), n_devices)
