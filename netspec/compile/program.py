"""Compile a checked Spec into a Program: pure JAX functions and the fused, jitted train chunk.

Contract: `compile_spec(spec, mesh=None) -> Program` with

    init(key=init_key) -> TrainState              step 0: params, model state, optimizer state
    apply(params, model_state, x, *, train=False, key, collect=None) -> y
                                                  the model's output (probabilities etc.) of a
                                                  prepared batch x [N, *model.input]
    loss_and_metrics(params, model_state, batch, *, train, key) -> (loss, (metrics, model_state))  (jitted)
    extras(params, model_state, sample) -> ({layer: activations}, gradients)   on a sample batch (jitted)
    train_chunk(length, *, streamed=False, diagnose=False)
        -> jitted (TrainState, Data, batches, Keys) -> (TrainState, ChunkOutputs)
    train_step(state, batch, key) -> (state, outputs)   one unjitted step (the graph draws it)
    evaluate(params, model_state, Data, mask) -> ({tag: sum}, count, confusion)
    prepare_batch(Data, x, y) -> (x, y)           as stored -> as the model and the loss take them
    loop, unroll                                  how chunks run on this backend (recorded by the run)
    conv, conv_reasons                            how each conv2d is computed here, and why a layer
                                                  `auto` would lower by im2col stayed native

The jitted functions are made once per spec by `functions(spec, configure, key)`, each taking
`hyper` first: the values a sweep member traces (`netspec.compile.members`: {} for a plain run,
whose Program binds it), so every member of a sweep group shares one compiled function.

This module only wires the pieces: the model (`netspec.model.network`), what the loss means
(`netspec.model.losses`), the optimizer (`optim`), the step (`step`) and the chunk (`chunk`).
Each layer runs under `jax.named_scope(<layer name>)`, the loss under `cost`, the update under
`train`, so the jaxpr (and TensorBoard's graph) is grouped by the spec's names. A sigmoid or
softmax output with a cross-entropy loss is compiled as logits plus the log-sigmoid/log-softmax
form of the loss: `-mean(y*log(h) + (1-y)*log(1-h))` cannot give NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from netspec.compile.chunk import Chunk, Evaluate, conv_policy, evaluate, loop_policy, scan_chunk, stepwise_chunk
from netspec.compile.optim import optimizer
from netspec.compile.state import LOSS_SCALE_START, Data, HostOrDevice, Keys, LossScale, TrainState
from netspec.compile.step import Batch, StepConfig, loss_and_metrics, prepare_batch, train_step
from netspec.machine import memory_budget
from netspec.model.conv import Lowering
from netspec.model.losses import encode_labels, label_class, loss_fn, metric_fns, num_classes, predicted_class
from netspec.model.network import NetworkApply, Tree, network
from netspec.spec.types import Spec


class Init(Protocol):
    def __call__(self, key: jax.Array = ...) -> TrainState: ...


class Apply(Protocol):
    def __call__(
        self,
        params: Tree,
        model_state: Tree,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array = ...,
        collect: dict[str, jax.Array] | None = None,
    ) -> jax.Array: ...


Hyper = dict[str, jax.Array]  # a sweep member's traced values by key (`netspec.compile.members`); {} for a plain run


class LossAndMetrics(Protocol):
    def __call__(
        self, params: Tree, model_state: Tree, batch: Batch, *, train: bool, key: jax.Array
    ) -> tuple[jax.Array, tuple[dict[str, jax.Array], Tree]]: ...


class TrainChunk(Protocol):
    def __call__(self, length: int, *, streamed: bool = False, diagnose: bool = False) -> Chunk: ...


class TrainStep(Protocol):
    def __call__(
        self, state: TrainState, batch: Batch, key: jax.Array, *, check: bool | None = None
    ) -> tuple[TrainState, dict[str, jax.Array]]: ...


class Program(NamedTuple):
    """A compiled spec (see the module docstring)."""

    init: Init
    apply: Apply
    loss_and_metrics: LossAndMetrics
    train_chunk: TrainChunk
    train_step: TrainStep  # one unjitted step, (state, batch, key) -> (state, outputs); for the graph
    evaluate: Evaluate  # jitted (params, model_state, Data, mask) -> ({tag: sum}, count, confusion)
    extras: Callable[..., Any]  # jitted (params, model_state, sample) -> ({layer: activations}, gradients)
    prepare_batch: Callable[
        [Data, HostOrDevice, HostOrDevice], Batch
    ]  # (Data, x, y) -> the batch as the model and loss take it
    tx: optax.GradientTransformation
    keys: Keys
    init_key: jax.Array
    state_sharding: Any  # with a mesh: where each TrainState leaf lives (the chunk keeps it there); else None
    loop: str  # "scan" or "steps": train.loop as resolved for this backend (`chunk.loop_policy`)
    conv: dict[str, Lowering]  # {conv2d layer: "native" or "im2col"}: train.conv as resolved (`chunk.conv_policy`)
    conv_reasons: dict[str, str]  # {conv2d layer: why `auto` left it native}, for the run directory
    unroll: int  # steps per scan iteration, as resolved


def step_config(
    spec: Spec,
    net_apply: NetworkApply,
    tx: optax.GradientTransformation,
    *,
    batch_sharding: jax.sharding.Sharding | None = None,
    state_sharding: Any = None,
) -> StepConfig:
    """The spec's choices for one step, decided once."""
    precision = spec.precision
    return StepConfig(
        net_apply=net_apply,
        loss_fn=loss_fn(spec),
        metric_fns=metric_fns(spec),
        encode_labels=encode_labels(spec),
        tx=tx,
        input_shape=spec.input_shape,
        compute_dtype=jnp.dtype(precision.compute),
        logits=spec.fused_loss or spec.from_logits,
        dynamic_scale=precision.dynamic_scale,
        static_scale=precision.static_scale,
        scale_period=precision.scale_period,
        # Which steps check their gradients: those that must decide at once (skip the update, halve
        # the loss scale) check every step. `stop` only has to notice: a NaN or Inf in the gradients
        # stays in the parameters or optimizer state (x - lr * NaN is NaN, and so is every later
        # update of it), so one probe of the state at the chunk's end, with the per-step losses,
        # tells whether a chunk went bad, and the host then finds the step and layer by running that
        # chunk again with the per-step check (`train_chunk(..., diagnose=True)`).
        skip_bad_steps=precision.dynamic_scale or spec.train["on_nonfinite"] == "skip_step",
        check_each_step=precision.dynamic_scale or spec.train["on_nonfinite"] == "skip_step",
        check_chunk=spec.train["on_nonfinite"] == "stop"
        and not (precision.dynamic_scale or spec.train["on_nonfinite"] == "skip_step"),
        param_layers=tuple(layer.name for layer in spec.layers),
        batch_sharding=batch_sharding,
        state_sharding=state_sharding,
    )


def conv_lowerings(spec: Spec, backend: str) -> tuple[dict[str, Lowering], dict[str, str]]:
    """`chunk.conv_policy` for this spec: the larger of its training and evaluation batches, its
    compute dtype and this machine's memory budget."""
    return conv_policy(
        spec.train["conv"],
        spec.layers,
        batch=max(spec.train["batch_size"], spec.eval["batch_size"]),
        itemsize=jnp.dtype(spec.precision.compute).itemsize,
        backend=backend,
        budget=memory_budget().bytes,
    )


def initializer(
    net_init: Callable[[jax.Array], tuple[Tree, Tree]],
    tx: optax.GradientTransformation,
    *,
    dynamic_scale: bool,
    default_key: jax.Array,
    opt_init: Callable[[Tree], Any] | None = None,
) -> Callable[..., TrainState]:
    """init(key=default_key) -> the TrainState at step 0: the network's parameters and state (one
    compiled initializer per kind of layer, `network`), the optimizer's state (`opt_init(params)`,
    by default `tx.init` jitted), the loss scale."""
    opt_init = opt_init or jax.jit(tx.init)

    def init(key: jax.Array = default_key) -> TrainState:
        params, model_state = net_init(key)
        scaler = (
            LossScale(jnp.full((), LOSS_SCALE_START, jnp.float32), jnp.zeros((), jnp.int32)) if dynamic_scale else None
        )
        return TrainState(
            jnp.zeros((), jnp.int32), params, model_state, opt_init(params), jnp.zeros((), jnp.int32), scaler
        )

    return init


def shardings(
    spec: Spec, mesh: jax.sharding.Mesh | None, init: Callable[..., TrainState], init_key: jax.Array
) -> tuple[Any, jax.sharding.Sharding | None]:
    """(where each TrainState leaf lives, how a batch is split) on `mesh`; (None, None) without one."""
    if mesh is None:
        return None, None
    from netspec import distribute

    state = distribute.state_shardings(jax.eval_shape(init, init_key), mesh, spec.resolved["distribute"]["params"])
    return state, jax.sharding.NamedSharding(mesh, distribute.batch_spec())


def chunk_maker(config: StepConfig, *, loop: str, unroll: int, full_batch: bool) -> Callable[..., Chunk]:
    """train_chunk(length, *, streamed=False, diagnose=False) -> the jitted chunk of `length`
    steps, compiled once per (length, streamed, check); `diagnose`: with the per-step check
    whatever the spec says, so its outputs name the first non-finite step and layer."""
    cache: dict[tuple[int, bool, bool], Chunk] = {}

    def train_chunk(length: int, *, streamed: bool = False, diagnose: bool = False) -> Chunk:
        check = config.check_each_step or diagnose
        if (length, streamed, check) not in cache:
            cache[length, streamed, check] = (
                scan_chunk(config, length, streamed=streamed, check=check, full_batch=full_batch, unroll=unroll)
                if loop == "scan"
                else stepwise_chunk(config, length, streamed=streamed, check=check)
            )
        return cache[length, streamed, check]

    return train_chunk


class Functions(NamedTuple):
    """A spec's jitted functions, each taking `hyper` (the traced values, `Hyper`) first; one
    compilation serves every member of a sweep group (`netspec.compile.members`)."""

    loss_and_metrics: Callable[..., Any]  # (hyper, params, model_state, batch, *, train, key)
    evaluate: Callable[..., Any]  # (hyper, params, model_state, Data, mask)
    extras: Callable[..., Any]  # (hyper, params, model_state, sample)


def functions(spec: Spec, configure: Callable[[Hyper], StepConfig], key: jax.Array) -> Functions:
    """The jitted functions of `spec` whose StepConfig `configure(hyper)` makes (for a plain run
    it ignores `hyper`); `key` is the evaluation's (dropout is off there; kept for the signature)."""

    def loss_and_metrics_of(
        hyper: Hyper, params: Tree, model_state: Tree, batch: Batch, *, train: bool, key: jax.Array
    ) -> tuple[jax.Array, tuple[dict[str, jax.Array], Tree]]:
        return loss_and_metrics(configure(hyper), params, model_state, batch, train=train, key=key)

    def extras(hyper: Hyper, params: Tree, model_state: Tree, sample: Batch) -> tuple[dict[str, jax.Array], Tree]:
        """({layer: activations}, gradients of the loss) on the sample batch, in evaluation mode."""
        config = configure(hyper)
        collect: dict[str, jax.Array] = {}
        config.net_apply(params, model_state, sample[0], train=False, key=key, collect=collect)
        grads = jax.grad(lambda p: loss_and_metrics(config, p, model_state, sample, train=False, key=key)[0])(params)
        return collect, grads

    return Functions(
        loss_and_metrics=jax.jit(loss_and_metrics_of, static_argnames=("train",)),
        evaluate=evaluate(
            configure,
            classes=num_classes(spec),
            label_class=label_class(spec),
            predicted_class=predicted_class(spec),
            key=key,
        ),
        extras=jax.jit(extras),
    )


@jax.jit
def seed_keys(seed: int | jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`tuple(jax.random.split(jax.random.key(seed), 3))`: (the initializers' key, one unused, kept
    so that the keys stay as they were, the steps' key), as one compiled program: as three eager
    operations it is three, 0.15 s of a small model's start-up on a 2-core CPU. `seed`: an int32
    (the spec's `seed`, 0 to 2**31 - 1)."""
    return tuple(jax.random.split(jax.random.key(seed), 3))


def compile_spec(spec: Spec, mesh: jax.sharding.Mesh | None = None) -> Program:
    """Spec -> Program (see the module docstring). With a `mesh` (`netspec.distribute`), every
    batch is split over its devices and XLA's partitioner inserts the collectives (data
    parallelism); where the parameters live is the spec's `distribute.params`."""
    backend = jax.default_backend()
    conv, conv_reasons = conv_lowerings(spec, backend)
    net_init, net_apply = network(spec.layers, conv=conv)
    tx = optimizer(spec.optimizer, seed=spec.seed)
    init_key, _, step_key = seed_keys(spec.seed)
    keys = Keys(step=step_key)
    init = initializer(net_init, tx, dynamic_scale=spec.precision.dynamic_scale, default_key=init_key)
    state_sharding, batch_sharding = shardings(spec, mesh, init, init_key)
    config = step_config(spec, net_apply, tx, batch_sharding=batch_sharding, state_sharding=state_sharding)

    def apply(
        params: Tree,
        model_state: Tree,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array = step_key,
        collect: dict[str, jax.Array] | None = None,
    ) -> jax.Array:
        return net_apply(params, model_state, x, train=train, key=key, collect=collect)[0]

    loop, unroll = loop_policy(spec.train, conv, backend)
    full_batch = spec.train["batch_size"] == spec.num_examples
    jitted = functions(spec, lambda hyper: config, keys.step)
    return Program(
        init=init,
        apply=apply,
        loss_and_metrics=partial(jitted.loss_and_metrics, {}),
        train_chunk=chunk_maker(config, loop=loop, unroll=unroll, full_batch=full_batch),
        train_step=partial(train_step, config),
        evaluate=partial(jitted.evaluate, {}),
        extras=partial(jitted.extras, {}),
        prepare_batch=partial(prepare_batch, config),
        tx=tx,
        keys=keys,
        init_key=init_key,
        state_sharding=state_sharding,
        loop=loop,
        conv=conv,
        conv_reasons=conv_reasons,
        unroll=unroll,
    )
