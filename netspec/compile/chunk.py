"""K training steps as one compiled call, what the host reads after it, evaluation, and how a
chunk runs on this backend.

Contract.

    scan_chunk(config, length, *, streamed, check, full_batch, unroll)
        -> jitted (TrainState, Data, batches, Keys) -> (TrainState, ChunkOutputs)
    stepwise_chunk(config, length, *, streamed, check) -> the same, one jitted call per step
    evaluate(config, classes, key) -> jitted (params, model_state, Data, mask) -> ({tag: sum}, count, confusion)
    loop_policy(train, layers, backend) -> (loop, unroll): how chunks run here, and why

`scan_chunk` runs K optimizer steps as one `lax.scan` inside one `jit`, the training data resident
on the device and passed as an argument (never closed over), the TrainState buffers donated.
Each step gathers its batch on the device from the data (kept compact, e.g. uint8 images,
converted inside the step) by a row of example indices, int32 [K, batch], that the host makes
for the chunk (`netspec.data.arrays.BatchOrder`: a per-epoch permutation from (seed, epoch)), so
the order depends only on the seed and the step: chunks of any length give the same batches.
Data larger than the spec's `data.max_resident_mb` stays on the host instead: the host gathers
each chunk's batches by the same indices (the next chunk's while this one runs) and the chunk
scans over them, computing exactly the same steps. Step k's randomness is `fold_in(keys.step, k)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from types import SimpleNamespace

import jax
import jax.numpy as jnp

from netspec.compile.optim import current_learning_rate
from netspec.compile.state import ChunkOutputs, Data, Keys, TrainState
from netspec.compile.step import StepConfig, metrics_on_batch, nonfinite_probe, per_example, prepare_batch, train_step


def batch_of(config: StepConfig, data: Data, batch, streamed: bool):
    """The prepared batch of one step: indices into resident `data` (None: all of it), or (x, y) streamed."""
    if streamed:
        return prepare_batch(config, data, *batch)
    if batch is None:
        return prepare_batch(config, data, data.x, data.y)
    return prepare_batch(config, data, data.x[batch], data.y[batch])


def one_step(config: StepConfig, state: TrainState, data: Data, batch, keys: Keys, *, streamed: bool, check: bool):
    """One step; what it keeps of the step is [loss, non-finite layer (-1: none)], one small
    row that XLA writes in one go. Everything else the host reads is computed once per chunk
    by `chunk_outputs`: per step it would cost kernels the step itself does not need."""
    state, out = train_step(config, state, batch_of(config, data, batch, streamed), jax.random.fold_in(keys.step, state.step), check=check)
    return state, jnp.stack([out["loss"], out["nonfinite_layer"].astype(jnp.float32)])


def chunk_outputs(config: StepConfig, state: TrainState, rows, data: Data, last_batch, keys: Keys, *, streamed: bool,
                  check: bool) -> tuple[TrainState, ChunkOutputs]:
    """The state and what the host reads after a chunk (`rows`: one_step's, float32 [K, 2]); see
    `ChunkOutputs`. The metrics are measured on the last step's batch with the parameters after
    that step, in train mode with that step's key."""
    if config.state_sharding is not None:  # the chunk hands the state back where it found it
        state = jax.lax.with_sharding_constraint(state, config.state_sharding)
    metrics = metrics_on_batch(config, state.params, state.model_state, batch_of(config, data, last_batch, streamed),
                               jax.random.fold_in(keys.step, state.step - 1)) if config.metric_fns else {}
    layers = rows[:, 1].astype(jnp.int32)
    first = jnp.argmax(layers >= 0)
    nonfinite = None
    if config.check_chunk and not check:
        floats = [x for x in jax.tree_util.tree_leaves((state.params, state.model_state, state.opt_state))
                  if jnp.issubdtype(x.dtype, jnp.floating)]
        nonfinite = ~(jnp.all(jnp.isfinite(rows[:, 0])) & jnp.isfinite(nonfinite_probe(floats)))
    return state, ChunkOutputs(
        loss=rows[:, 0], metrics=metrics, learning_rate=jnp.asarray(current_learning_rate(state.opt_state), jnp.float32),
        skipped_steps=jnp.copy(state.skipped),  # a buffer of its own: the state is donated next
        loss_scale=jnp.copy(state.scaler.scale) if config.dynamic_scale else None,
        nonfinite_layer=jnp.where(layers[first] >= 0, layers[first], -1),
        nonfinite_step=state.step - rows.shape[0] + first + 1, nonfinite=nonfinite)


def _last(batches):
    return None if batches is None else jax.tree_util.tree_map(lambda a: a[-1], batches)


def scan_chunk(config: StepConfig, length: int, *, streamed: bool, check: bool, full_batch: bool, unroll: int) -> Callable:
    """`length` steps as one `lax.scan` in one `jit` (`unroll` steps per loop iteration). The
    returned function takes (state, data, batches, keys); `batches`: resident data: int32
    [length, batch] example indices into `data` (None: the whole set each step); streamed data:
    the (x, y) of every step, [length, batch, ...], gathered by the host, with `data` holding only
    the scaling. It returns the state and `chunk_outputs`."""

    def chunk(state: TrainState, data: Data, batches, keys: Keys):
        body = lambda state, batch: one_step(config, state, data, batch, keys, streamed=streamed, check=check)
        if full_batch and not streamed:
            state, rows = jax.lax.scan(body, state, None, length=length, unroll=unroll)
        else:
            state, rows = jax.lax.scan(body, state, batches, unroll=unroll)
        return chunk_outputs(config, state, rows, data, _last(batches), keys, streamed=streamed, check=check)

    return jax.jit(chunk, donate_argnums=0)


def stepwise_chunk(config: StepConfig, length: int, *, streamed: bool, check: bool) -> Callable:
    """The same steps as `scan_chunk`, one jitted call each (see `loop_policy`); it offers
    `.lower(...).compile()` as a jitted function does, compiling the step and the outputs once."""
    step = jax.jit(partial(one_step, config, streamed=streamed, check=check), donate_argnums=0)
    outputs = jax.jit(partial(chunk_outputs, config, streamed=streamed, check=check), donate_argnums=0)

    def chunk(state: TrainState, data: Data, batches, keys: Keys):
        rows = []
        for i in range(length):
            batch = None if batches is None else jax.tree_util.tree_map(lambda a: a[i], batches)
            state, row = step(state, data, batch, keys)
            rows.append(row)
        return outputs(state, jnp.stack(rows), data, _last(batches), keys)

    def lower(state, data, batches, keys):  # the interface of a jitted function, compiled once
        first = None if batches is None else jax.tree_util.tree_map(lambda a: a[0], batches)
        step.lower(state, data, first, keys).compile()
        outputs.lower(state, jnp.zeros((length, 2), jnp.float32), data, first, keys).compile()
        return SimpleNamespace(compile=lambda: chunk)

    chunk.lower = lower
    return chunk


def evaluate(config: StepConfig, *, classes: int | None, label_class: Callable, predicted_class: Callable | None, key) -> Callable:
    """Jitted (params, model_state, Data, mask) -> ({tag: sum over the split}, count, confusion
    [classes, classes] or None): a split stored as [batches, batch, ...] with a 0/1 mask for
    padding, in evaluation mode (dropout off, batch_norm's running statistics); confusion rows
    are the true class, columns the predicted one."""

    @jax.jit
    def run(params, model_state, data: Data, mask):
        def one(carry, batch):
            x, y, m = batch
            xb, yb = prepare_batch(config, data, x, y)
            values, out, _ = per_example(config, params, model_state, (xb, yb), train=False, key=key)
            sums = {k: jnp.sum(v * m) for k, v in values.items()}
            confusion = None
            if classes:
                confusion = (jax.nn.one_hot(label_class(yb).reshape(-1), classes) * m[:, None]).T @ jax.nn.one_hot(
                    predicted_class(out).reshape(-1), classes)
            return carry, (sums, confusion)

        _, (sums, confusion) = jax.lax.scan(one, None, (data.x, data.y, mask))
        sums = {k: v.sum() for k, v in sums.items()}
        return sums, mask.sum(), (confusion.sum(0) if classes else None)

    return run


def loop_policy(train: Mapping, layer_types: Sequence[str], backend: str) -> tuple[str, int]:
    """(loop, unroll): how a chunk runs on `backend` ("cpu", "gpu", "tpu"), the spec's
    `train.loop` and `train.unroll` resolved.

    loop: "scan" fuses a chunk's steps into one lax.scan; "steps" calls one jitted step each.
    XLA:CPU runs convolution gradients inside a while loop (lax.scan) about 5x slower than at the
    top level of a program (measured on jax 0.10.2: 265 ms vs 54 ms for one conv2 kernel
    gradient), so `auto` is "steps" for a model with a conv2d on a CPU, "scan" otherwise: the
    same steps in the same order, and the per-call overhead is nothing beside a conv step.
    unroll: steps per loop iteration. Unrolling the scan saves the loop's per-iteration cost (its
    counter, condition and, on GPU, a few kernel launches) once per extra step: fashion_mlp on an
    H200 ran 12 % faster with 2 steps per iteration (benchmarks/RESULTS.md). On CPU it buys
    little and lengthens every compile, so the default is 1 there and 2 on GPU and TPU."""
    on_cpu = backend == "cpu"
    loop = train["loop"]
    if loop == "auto":
        loop = "steps" if on_cpu and "conv2d" in layer_types else "scan"
    unroll = train["unroll"] or (1 if on_cpu else 2)
    return loop, unroll
