"""K training steps as one compiled call, what the host reads after it, evaluation, and how a
chunk runs on this backend.

Contract.

    scan_chunk(config, length, *, streamed, check, full_batch, unroll)
        -> jitted (TrainState, Data, batches, Keys) -> (TrainState, ChunkOutputs)
    stepwise_chunk(config, length, *, streamed, check) -> the same, one jitted call per step
    scan_steps(config, length, ...) -> the same chunk, not jitted (`netspec.compile.members` vmaps it)
    evaluate(configure, classes, key) -> jitted (hyper, params, model_state, Data, mask) -> ({tag: sum}, count, confusion)
    conv_policy(choice, layers, ...) -> ({conv layer: lowering}, {layer: why native}): im2col or native
    loop_policy(train, conv, backend) -> (loop, unroll): how chunks run here, and why

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
from typing import Any, Protocol, cast

import jax
import jax.numpy as jnp

from netspec.compile.optim import current_learning_rate
from netspec.compile.state import ChunkOutputs, Data, HostOrDevice, Keys, LossScale, TrainState
from netspec.compile.step import (
    Batch,
    StepConfig,
    metrics_on_batch,
    nonfinite_probe,
    per_example,
    prepare_batch,
    train_step,
)
from netspec.model.conv import Lowering, patches_bytes
from netspec.model.network import Tree
from netspec.spec.fields import as_pair
from netspec.spec.types import Layer

# What a chunk is given to say each step's batch: int32 example indices into resident data ([K,
# batch] for a chunk, [batch] for a step), None (the whole set each step), or, streamed, the (x, y)
# the host gathered ([K, batch, ...], [batch, ...]).
Batches = jax.Array | Batch | None


class Lowered(Protocol):
    """What `Chunk.lower(...)` gives: `.compile()` -> the chunk, compiled."""

    def compile(self) -> Callable[..., Any]: ...


class Chunk(Protocol):
    """A compiled chunk of steps: (state, data, batches, keys) -> (state, outputs), the state donated;
    `.lower(...).compile()` compiles it ahead of its first call, as a jitted function's does."""

    def __call__(
        self, state: TrainState, data: Data, batches: Batches, keys: Keys, /
    ) -> tuple[TrainState, ChunkOutputs]: ...

    def lower(self, state: TrainState, data: Data, batches: Batches, keys: Keys, /) -> Lowered: ...


Evaluate = Callable[[Tree, Tree, Data, jax.Array], tuple[dict[str, jax.Array], jax.Array, jax.Array | None]]


def batch_of(config: StepConfig, data: Data, batch: Batches, streamed: bool) -> Batch:
    """The prepared batch of one step: indices into resident `data` (None: all of it), or (x, y) streamed."""
    if streamed:
        assert isinstance(batch, tuple)  # streamed: the (x, y) the host gathered
        return prepare_batch(config, data, *batch)
    if batch is None:
        return prepare_batch(config, data, data.x, data.y)
    return prepare_batch(config, data, data.x[batch], data.y[batch])


def one_step(
    config: StepConfig, state: TrainState, data: Data, batch: Batches, keys: Keys, *, streamed: bool, check: bool
) -> tuple[TrainState, jax.Array]:
    """One step; what it keeps of the step is [loss, non-finite layer (-1: none)], one small
    row that XLA writes in one go. Everything else the host reads is computed once per chunk
    by `chunk_outputs`: per step it would cost kernels the step itself does not need."""
    state, out = train_step(
        config, state, batch_of(config, data, batch, streamed), jax.random.fold_in(keys.step, state.step), check=check
    )
    return state, jnp.stack([out["loss"], out["nonfinite_layer"].astype(jnp.float32)])


def chunk_outputs(
    config: StepConfig,
    state: TrainState,
    rows: jax.Array,
    data: Data,
    last_batch: Batches,
    keys: Keys,
    *,
    streamed: bool,
    check: bool,
) -> tuple[TrainState, ChunkOutputs]:
    """The state and what the host reads after a chunk (`rows`: one_step's, float32 [K, 2]); see
    `ChunkOutputs`. The metrics are measured on the last step's batch with the parameters after
    that step, in train mode with that step's key."""
    if config.state_sharding is not None:  # the chunk hands the state back where it found it
        state = jax.lax.with_sharding_constraint(state, config.state_sharding)  # type: ignore[no-untyped-call]  # jax leaves it unannotated
    metrics = (
        metrics_on_batch(
            config,
            state.params,
            state.model_state,
            batch_of(config, data, last_batch, streamed),
            jax.random.fold_in(keys.step, state.step - 1),
        )
        if config.metric_fns
        else {}
    )
    layers = rows[:, 1].astype(jnp.int32)
    first = jnp.argmax(layers >= 0)
    nonfinite = None
    if config.check_chunk and not check:
        floats = [
            x
            for x in jax.tree_util.tree_leaves((state.params, state.model_state, state.opt_state))
            if jnp.issubdtype(x.dtype, jnp.floating)
        ]
        nonfinite = ~(jnp.all(jnp.isfinite(rows[:, 0])) & jnp.isfinite(nonfinite_probe(floats)))
    return state, ChunkOutputs(
        loss=rows[:, 0],
        metrics=metrics,
        learning_rate=jnp.asarray(current_learning_rate(state.opt_state), jnp.float32),
        skipped_steps=jnp.copy(state.skipped),  # a buffer of its own: the state is donated next
        loss_scale=jnp.copy(_scaler(state).scale) if config.dynamic_scale else None,
        nonfinite_layer=jnp.where(layers[first] >= 0, layers[first], -1),
        nonfinite_step=state.step - rows.shape[0] + first + 1,
        nonfinite=nonfinite,
    )


def _scaler(state: TrainState) -> LossScale:
    """The dynamic loss scale of a state that has one (a spec with a dynamic loss scale: `program.init`)."""
    assert state.scaler is not None
    return state.scaler


def _last(batches: Batches) -> Batches:
    return None if batches is None else jax.tree_util.tree_map(lambda a: a[-1], batches)


def scan_steps(
    config: StepConfig, length: int, *, streamed: bool, check: bool, full_batch: bool, unroll: int
) -> Callable[[TrainState, Data, Batches, Keys], tuple[TrainState, ChunkOutputs]]:
    """`scan_chunk`'s function before `jit`: (state, data, batches, keys) -> (state, outputs)."""

    def chunk(state: TrainState, data: Data, batches: Batches, keys: Keys) -> tuple[TrainState, ChunkOutputs]:
        def body(state: TrainState, batch: Any) -> tuple[TrainState, Any]:
            return one_step(config, state, data, batch, keys, streamed=streamed, check=check)

        if full_batch and not streamed:
            state, rows = jax.lax.scan(body, state, None, length=length, unroll=unroll)
        else:
            state, rows = jax.lax.scan(body, state, batches, unroll=unroll)
        return chunk_outputs(config, state, rows, data, _last(batches), keys, streamed=streamed, check=check)

    return chunk


def scan_chunk(config: StepConfig, length: int, *, streamed: bool, check: bool, full_batch: bool, unroll: int) -> Chunk:
    """`length` steps as one `lax.scan` in one `jit` (`unroll` steps per loop iteration). The
    returned function takes (state, data, batches, keys); `batches`: resident data: int32
    [length, batch] example indices into `data` (None: the whole set each step); streamed data:
    the (x, y) of every step, [length, batch, ...], gathered by the host, with `data` holding only
    the scaling. It returns the state and `chunk_outputs`."""
    chunk = scan_steps(config, length, streamed=streamed, check=check, full_batch=full_batch, unroll=unroll)
    return cast(Chunk, jax.jit(chunk, donate_argnums=0))


def stepwise_chunk(config: StepConfig, length: int, *, streamed: bool, check: bool) -> Chunk:
    """The same steps as `scan_chunk`, one jitted call each (see `loop_policy`); it offers
    `.lower(...).compile()` as a jitted function does, compiling the step and the outputs once."""
    return StepwiseChunk(
        jax.jit(partial(one_step, config, streamed=streamed, check=check), donate_argnums=0),
        jax.jit(partial(chunk_outputs, config, streamed=streamed, check=check), donate_argnums=0),
        length,
    )


class StepwiseChunk:
    """A chunk of `length` calls of a jitted `step(state, data, batch, keys) -> (state, row)`,
    then the jitted `outputs(state, rows [length, ...], data, last batch, keys)`; step i takes
    row i of the chunk's `batches` (a sweep group's too: [length, members, batch])."""

    def __init__(self, step: Any, outputs: Any, length: int) -> None:  # jitted functions (their .lower)
        self.step, self.outputs, self.length = step, outputs, length

    def _batch(self, batches: Batches, i: int) -> Batches:
        return None if batches is None else jax.tree_util.tree_map(partial(_row, i), batches)

    def __call__(
        self, state: TrainState, data: Data, batches: Batches, keys: Keys, /
    ) -> tuple[TrainState, ChunkOutputs]:
        rows = []
        for i in range(self.length):
            state, row = self.step(state, data, self._batch(batches, i), keys)
            rows.append(row)
        last = self._batch(batches, self.length - 1)
        result: tuple[TrainState, ChunkOutputs] = self.outputs(state, jnp.stack(rows), data, last, keys)
        return result

    def lower(self, state: TrainState, data: Data, batches: Batches, keys: Keys, /) -> Lowered:
        """The interface of a jitted function: compiles the step and the outputs once."""
        first = self._batch(batches, 0)
        _, row = jax.eval_shape(self.step, state, data, first, keys)
        self.step.lower(state, data, first, keys).compile()
        rows = jnp.zeros((self.length, *row.shape), row.dtype)
        self.outputs.lower(state, rows, data, first, keys).compile()
        return _Compiled(self)


def _row(i: int, a: jax.Array) -> jax.Array:
    return a[i]


class _Compiled:
    """`StepwiseChunk.lower(...)`: its `compile()` is the chunk itself (its parts compiled already)."""

    def __init__(self, chunk: StepwiseChunk) -> None:
        self.chunk = chunk

    def compile(self) -> StepwiseChunk:
        return self.chunk


def evaluate(
    configure: Callable[[Any], StepConfig],
    *,
    classes: int | None,
    label_class: Callable[[jax.Array], jax.Array],
    predicted_class: Callable[[jax.Array], jax.Array] | None,
    key: jax.Array,
) -> Evaluate:
    """Jitted (hyper, params, model_state, Data, mask) -> ({tag: sum over the split}, count,
    confusion [classes, classes] or None): a split stored as [batches, batch, ...] with a 0/1 mask
    for padding, in evaluation mode (dropout off, batch_norm's running statistics), the step
    config `configure(hyper)` (`hyper`: a sweep member's traced values, {} for a plain run);
    confusion rows are the true class, columns the predicted one."""

    @jax.jit
    def run(
        hyper: Any, params: Tree, model_state: Tree, data: Data, mask: jax.Array
    ) -> tuple[dict[str, jax.Array], jax.Array, jax.Array | None]:
        config = configure(hyper)

        def one(
            carry: None, batch: tuple[HostOrDevice, HostOrDevice, jax.Array]
        ) -> tuple[None, tuple[dict[str, jax.Array], jax.Array | None]]:
            x, y, m = batch
            xb, yb = prepare_batch(config, data, x, y)
            values, out, _ = per_example(config, params, model_state, (xb, yb), train=False, key=key)
            sums = {k: jnp.sum(v * m) for k, v in values.items()}
            confusion = None
            if classes:
                assert predicted_class is not None  # a model with classes has a predicted class
                confusion = (jax.nn.one_hot(label_class(yb).reshape(-1), classes) * m[:, None]).T @ jax.nn.one_hot(
                    predicted_class(out).reshape(-1), classes
                )
            return carry, (sums, confusion)

        _, (sums, confusion) = jax.lax.scan(one, None, (data.x, data.y, mask))
        sums = {k: v.sum() for k, v in sums.items()}
        return sums, mask.sum(), (confusion.sum(0) if confusion is not None else None)  # (None without classes)

    return run


# The share of the memory budget the im2col patches of one training step may take; above it
# `conv_policy` keeps the largest layers native. The patches of every conv2d layer live from the
# forward pass to the backward (the kernel's gradient is patches^T @ dy), on top of what
# validate's estimate counts, so they get a quarter: fashion_cnn's are 110 MB at batch 100.
IM2COL_SHARE = 0.25


def conv_policy(
    choice: str, layers: Sequence[Layer], *, batch: int, itemsize: int, backend: str, budget: int
) -> tuple[dict[str, Lowering], dict[str, str]]:
    """({conv2d layer name: "native" or "im2col"}, {layer name: why it is native}): how each
    convolution is computed on `backend`, the spec's `train.conv` (`choice`) resolved.

    XLA:CPU's convolution is slow, and its gradient is slowest inside a while loop: fashion_cnn's
    two convolutions trained 13x slower inside lax.scan than at the top level of a program, which
    kept conv nets out of the fused scan on CPU (benchmarks/conv_scan_repro.py). im2col (slices
    and one matrix multiply, `netspec.model.conv`) computes the same numbers at matrix-multiply
    speed inside the scan (benchmarks/RESULTS.md, "Convolutions on CPU"), so `auto` is im2col on
    CPU and native on GPU and TPU (cuDNN, the MXU). Its price is memory: patches of `batch`
    examples at `itemsize` bytes, kernel area times the input; while their sum exceeds
    `IM2COL_SHARE` of `budget` bytes, the layer with the largest patches stays native (and says
    so). `native` and `im2col` force the choice for every layer."""
    convs = [layer for layer in layers if layer.type == "conv2d"]
    if choice != "auto":
        forced = cast(Lowering, choice)  # the schema admits auto, native and im2col
        return {layer.name: forced for layer in convs}, {}
    if backend != "cpu":
        return {layer.name: "native" for layer in convs}, {}
    sizes = {layer.name: _patches_bytes(layer, batch, itemsize) for layer in convs}
    lowering: dict[str, Lowering] = {layer.name: "im2col" for layer in convs}
    reasons: dict[str, str] = {}
    limit = int(IM2COL_SHARE * budget)
    for name in sorted(sizes, key=lambda n: -sizes[n]):
        total = sum(sizes[n] for n, how in lowering.items() if how == "im2col")
        if total <= limit:
            break
        lowering[name] = "native"
        reasons[name] = (
            f"native: im2col patches of {sizes[name] / 2**20:.0f} MiB per step would take the conv layers' "
            f"patches to {total / 2**20:.0f} MiB, over {IM2COL_SHARE:.0%} of the {budget / 2**30:.1f} GiB memory budget"
        )
    return lowering, reasons


def _patches_bytes(layer: Layer, batch: int, itemsize: int) -> int:
    args = layer.args
    height, width, channels = layer.in_shapes[0]  # a checked conv2d's input
    return patches_bytes(
        (height, width, channels),
        as_pair(args["kernel_size"]),
        as_pair(args["strides"]),
        args["padding"],
        as_pair(args["dilation"]),
        batch,
        itemsize,
    )


def loop_policy(train: Mapping[str, Any], conv: Mapping[str, Lowering], backend: str) -> tuple[str, int]:
    """(loop, unroll): how a chunk runs on `backend` ("cpu", "gpu", "tpu"), the spec's
    `train.loop` and `train.unroll` resolved, given how each conv2d is lowered (`conv_policy`).

    loop: "scan" fuses a chunk's steps into one lax.scan; "steps" calls one jitted step each.
    XLA:CPU runs its native convolution's gradients inside a while loop (lax.scan) far slower
    than at the top level of a program (fashion_cnn: 13x; one conv kernel's gradient 790 ms
    against 24 ms, benchmarks/conv_scan_repro.py), so `auto` is "steps" on a CPU only for a model
    with a conv2d left native; with im2col, conv nets run in the scan like every other model.
    unroll: steps per loop iteration. Unrolling the scan saves the loop's per-iteration cost (its
    counter, condition and, on GPU, a few kernel launches) once per extra step: fashion_mlp on an
    H200 ran 12 % faster with 2 steps per iteration (benchmarks/RESULTS.md). On CPU it buys
    little and lengthens every compile, so the default is 1 there and 2 on GPU and TPU."""
    on_cpu = backend == "cpu"
    loop = train["loop"]
    if loop == "auto":
        loop = "steps" if on_cpu and "native" in conv.values() else "scan"
    unroll: int = train["unroll"] or (1 if on_cpu else 2)
    return loop, unroll
