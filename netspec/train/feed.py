"""Train a checked Spec: the host loop over compiled chunks, the run directory, the report.

Contract: `run(spec, logdir=..., run_name=None, quiet=False, resume=None) -> RunResult`. A new run
claims `<logdir>/<spec.name>/<run-id>/` (an exclusive mkdir: never an existing directory), saves
the resolved spec (`spec.yaml`), where it came from (`run.json`) and the input scaling
(`preprocess.npz`), trains `spec.steps` steps in chunks of `summaries.every` steps and writes
summaries at every chunk boundary (and the untrained model at step 0), checkpoints every
`checkpoint.every` steps, at the end and when stopped, and finally `result.json`. Its events are
laid out as `netspec.summaries` says: training at the run directory's root (with the HParams
session), evaluations in `test/` or `validation/` beside it. When the evaluated split is
validation (it chose the model: early stopping, the best checkpoint) and the data has a test
split, the final evaluation also measures the test split, once: `final` holds both.

`resume=RUN_DIR` continues that run from its latest checkpoint: the state (parameters,
optimizer and model state, step) is restored exactly, the batch order and per-step keys are
functions of (seed, step), and the event files drop anything past the checkpoint (purge_step),
so a stopped and resumed run ends bit for bit as one never stopped.

The closing. When training ends (its last step, or early stopping) the final evaluations are
computed (the best checkpoint kept), then the closing checkpoint is written, recording how
training ended; only then are the final evaluations' events, the HParams status and
`result.json` written. A run interrupted after the closing checkpoint is finished by a resume
without training: the same evaluations of the same state, written again in place of what the
interrupted closing wrote (`summaries` keeps them in a file of their own), so it ends as one
never interrupted.

A sitting holds the run directory (`rundir.lock`) from when it claims or opens it to its end,
and first removes what cut-off writes left there. Every file is written whole or not at all,
and the events up to a checkpoint's step are on disk (fsynced) before the checkpoint is.

Stops: SIGINT/SIGTERM (`netspec.interrupts`) before the run directory exists stop at once, with
nothing written; while training, the first finishes the current chunk, checkpoints and raises
`Stopped` (exit 130 / 143), a second stops at once, keeping the last checkpoint; in the closing
they stop at once, for a resume to finish. A full disk ends the run with one paragraph saying
what was kept. A non-finite loss or gradient with `on_nonfinite: stop` raises an error naming
the step and layer, keeping the last good checkpoint (the chunk notices it once, at its end; the
host then runs that chunk again from the last checkpoint with the check in every step to name
them); early stopping ends the loop normally.
The host touches the program only between chunks.
"""

from __future__ import annotations

from pathlib import Path
import numpy as np
from netspec import distribute
from netspec.spec.types import Spec
from netspec.data.arrays import BatchOrder


class Feed:
    """The `batches` argument of each chunk: example indices into resident data, or, for data
    larger than the device budget, the examples themselves gathered on the host by the same
    indices (the next chunk's on a background thread while the current one runs)."""

    def __init__(self, split, order: BatchOrder, *, streamed: bool, full_batch: bool, mesh=None):
        self.split, self.order, self.streamed, self.full_batch, self.mesh = split, order, streamed, full_batch, mesh
        self.resident = type(split)(split.x[:0], split.y[:0]) if streamed else split
        self._pending: dict = {}
        self._pool = None

    def _gather(self, start: int, n: int):
        import jax

        idx = self.order.indices(start, n)
        if self.mesh is not None:  # each process gathers only the rows its own devices train on
            return distribute.rows_from_host(self.mesh, self.split.x, idx), distribute.rows_from_host(self.mesh, self.split.y, idx)
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


def load_arrays(spec: Spec, data_dir: str | None = None):
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
