"""One training step, as top-level pure functions of a `StepConfig` made once from the Spec.

Contract. `step_config(spec, ...) -> StepConfig` holds the model, loss, metrics, optimizer and
the choices the spec made (compute dtype, loss scaling, the non-finite policy). Then:

    prepare_batch(config, data, x, y) -> (x, y)       as stored -> scaled input, encoded labels
    per_example(config, params, model_state, batch, *, train, key, metrics=True)
        -> ({"loss": [N], tag: [N]...}, output, model_state)
    loss_and_metrics(config, params, model_state, batch, *, train, key) -> (loss, (metrics, model_state))
    train_step(config, state, batch, key, *, check) -> (TrainState, {"loss", "nonfinite_layer"})
    metrics_on_batch(config, params, model_state, batch, key) -> {tag: mean}

A step computes the loss, its gradients and the update, as a hand-written step does; with
`check` (on_nonfinite: skip_step, a dynamic loss scale, or a diagnosing replay) it also probes
each layer's gradients and skips a bad update. Mixed precision: the layers compute in
`compute_dtype` (each casts its float32 parameters to its input's dtype); the loss, gradients
and optimizer stay float32. Loss scaling follows Micikevicius et al. 2018 (Keras's
LossScaleOptimizer, jmp): scale the loss before the backward pass, unscale the gradients after.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from netspec.compile.state import LOSS_SCALE_MAX, Data, HostOrDevice, LossScale, TrainState
from netspec.model.losses import PerExample
from netspec.model.network import NetworkApply, Tree

Batch = tuple[jax.Array, jax.Array]  # (x, y) of one step, prepared: as the model and the loss take them


class StepConfig(NamedTuple):
    """Everything one step needs, made once from the Spec (`netspec.compile.program`)."""

    net_apply: NetworkApply  # netspec.model.network's apply
    loss_fn: PerExample  # fn(z, y) -> [N]
    metric_fns: dict[str, PerExample]  # tag -> fn(z, y) -> [N]
    encode_labels: Callable[[jax.Array], jax.Array]  # labels as stored -> as the loss takes them
    tx: optax.GradientTransformation
    input_shape: tuple[int, ...]  # model.input
    compute_dtype: np.dtype[Any]  # the layers' dtype (precision.compute)
    logits: bool  # the loss takes logits (a fused output activation, or from_logits)
    dynamic_scale: bool  # a dynamic loss scale (float16), in TrainState.scaler
    static_scale: float  # a fixed loss scale (1.0: none)
    scale_period: int  # steps without overflow before a dynamic scale doubles
    skip_bad_steps: bool  # keep the old state at a bad step (on_nonfinite: skip_step, dynamic scale)
    check_each_step: bool  # probe every step's gradients (skipping must decide at once)
    check_chunk: bool  # on_nonfinite: stop without a per-step check: probe the state once per chunk
    param_layers: tuple[str, ...]  # layer names, in spec order (the per-layer probe's order)
    batch_sharding: jax.sharding.Sharding | None  # with a mesh: where a batch lives (split over the devices)
    state_sharding: (
        Any  # with a mesh: where each TrainState leaf lives (a TrainState-shaped tree of shardings), else None
    )


def prepare_batch(config: StepConfig, data: Data, x: HostOrDevice, y: HostOrDevice) -> Batch:
    """(x, y) as stored -> (x float32 scaled and shaped as model.input, y as the loss takes it),
    on the device, split over the devices with a mesh."""
    # Under jit (training, evaluation) x and y are traced jax arrays. `netspec predict` calls this on
    # the host's numpy arrays, which stay numpy through it; every jax operation after takes them as Arrays.
    x, y = cast(Batch, (x, y))
    x = ((x.astype(jnp.float32) - data.shift) * data.scale).reshape((x.shape[0], *config.input_shape))
    batch = (x, config.encode_labels(y))
    if config.batch_sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, config.batch_sharding)  # type: ignore[no-untyped-call]  # jax leaves it unannotated
    return batch


def per_example(
    config: StepConfig,
    params: Tree,
    model_state: Tree,
    batch: Batch,
    *,
    train: bool,
    key: jax.Array,
    metrics: bool = True,
) -> tuple[dict[str, jax.Array], jax.Array, Tree]:
    """({"loss", and the metrics unless `metrics` is False: per-example values [N]}, the loss's
    input (float32), the new model state)."""
    x, y = batch
    out, new_state = config.net_apply(
        params, model_state, x.astype(config.compute_dtype), train=train, key=key, logits=config.logits
    )
    out = out.astype(jnp.float32)
    with jax.named_scope("cost"):
        values = {
            "loss": config.loss_fn(out, y),
            **({name: fn(out, y) for name, fn in config.metric_fns.items()} if metrics else {}),
        }
    return values, out, new_state


def loss_and_metrics(
    config: StepConfig, params: Tree, model_state: Tree, batch: Batch, *, train: bool, key: jax.Array
) -> tuple[jax.Array, tuple[dict[str, jax.Array], Tree]]:
    """(the mean loss, ({tag: mean metric}, the new model state)) of one batch."""
    values, _, new_state = per_example(config, params, model_state, batch, train=train, key=key)
    with jax.named_scope("cost"):
        means = {k: jnp.mean(v) for k, v in values.items()}
    loss = means.pop("loss")
    return loss, (means, new_state)


def _scaled(config: StepConfig) -> bool:
    return config.dynamic_scale or config.static_scale != 1.0


def _scaled_loss(
    config: StepConfig,
    params: Tree,
    model_state: Tree,
    batch: Batch,
    scale: float | jax.Array,
    *,
    train: bool,
    key: jax.Array,
) -> tuple[jax.Array, tuple[jax.Array, Tree]]:
    """The training objective alone, times the loss scale: the metrics are not computed per step
    (see `netspec.compile.chunk.chunk_outputs`), so the step does what a hand-written step does."""
    values, _, new_state = per_example(config, params, model_state, batch, train=train, key=key, metrics=False)
    with jax.named_scope("cost"):
        loss = jnp.mean(values["loss"])
        scaled = loss * scale if _scaled(config) else loss
    return scaled, (loss, new_state)


def gradients(
    config: StepConfig,
    params: Tree,
    model_state: Tree,
    batch: Batch,
    scale: float | jax.Array,
    *,
    train: bool,
    key: jax.Array,
) -> tuple[tuple[jax.Array, Tree], Tree]:
    """((loss, model state), gradients): the gradients of the (scaled) loss, unscaled."""
    (_, (loss, new_state)), grads = jax.value_and_grad(partial(_scaled_loss, config), has_aux=True)(
        params, model_state, batch, scale, train=train, key=key
    )
    if _scaled(config):
        grads = jax.tree_util.tree_map(lambda g: g / scale, grads)
    return (loss, new_state), grads


# Leaves of at most this many elements are probed together, stacked by (shape, dtype): XLA compiles
# one reduction per operand, and a deep model has thousands of small leaves (400 dense layers of 4
# units: 802 parameters, 1.6 s to compile one reduction each, 0.4 s stacked in groups). Larger
# leaves are reduced in place: stacking them would copy them. The copies made are at most
# MAX_LAYERS * 4 (parameters and optimizer moments) * 4096 elements, 64 MB in float32.
PROBE_STACKED_SIZE = 4096


def nonfinite_probe(tree: Any) -> jax.Array:
    """NaN when any element of `tree` is inf or NaN, else 0 (float32 scalar): 0 * x is 0 for every
    finite x and NaN for inf and NaN, and a sum of zeros cannot overflow, as a plain sum of large
    gradients could. Large arrays are reduced one by one (XLA can fuse that with the optimizer's own
    pass over them); small ones stacked by shape and dtype first (see PROBE_STACKED_SIZE)."""
    total = jnp.zeros((), jnp.float32)
    small: dict[tuple[tuple[int, ...], Any], list[jax.Array]] = {}
    for x in jax.tree_util.tree_leaves(tree):
        if x.size <= PROBE_STACKED_SIZE:
            small.setdefault((tuple(x.shape), x.dtype), []).append(x)
        else:
            total = total + jnp.sum(x * 0, dtype=jnp.float32)
    for group in small.values():
        stacked = group[0] if len(group) == 1 else jnp.stack(group)
        total = total + jnp.sum(stacked * 0, dtype=jnp.float32)
    return total


def next_loss_scale(scaler: LossScale, finite: jax.Array, overflow: jax.Array, period: int) -> LossScale:
    """The dynamic loss scale after a step: halved (not below 1) at an overflow, doubled (not
    above LOSS_SCALE_MAX) after `period` finite steps in a row."""
    grown = scaler.good_steps + 1 >= period
    scale = jnp.where(
        overflow,
        jnp.maximum(scaler.scale / 2, 1.0),
        jnp.where(finite & grown, jnp.minimum(scaler.scale * 2, LOSS_SCALE_MAX), scaler.scale),
    )
    return LossScale(scale, jnp.where(finite & ~grown, scaler.good_steps + 1, 0))


def train_step(
    config: StepConfig, state: TrainState, batch: Batch, key: jax.Array, *, check: bool | None = None
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One update. With `check` (default: the spec's `check_each_step`), a step whose loss or
    gradients are non-finite is not applied where it can be skipped (on_nonfinite: skip_step, or
    an overflow the dynamic loss scale answers by halving) and counted in `skipped`; any other is
    `bad`. Returns the new state and {"loss", "nonfinite_layer"}: for a bad step the first layer,
    in spec order, whose gradients were non-finite (len(layers): the loss alone), else -1.
    Without `check` (stop, ignore) the step does what a hand-written step does and nothing more."""
    check = config.check_each_step if check is None else check
    layers = config.param_layers
    scale: float | jax.Array = config.static_scale
    if config.dynamic_scale:
        assert state.scaler is not None  # a dynamic scale lives in the state (`program.init`)
        scale = state.scaler.scale
    (loss, model_state), grads = gradients(config, state.params, state.model_state, batch, scale, train=True, key=key)
    with jax.named_scope("train"):
        if check:
            layer_ok = jnp.isfinite(jnp.stack([nonfinite_probe(grads[name]) for name in layers]))
            finite = jnp.isfinite(loss) & jnp.all(layer_ok)
        else:
            layer_ok, finite = jnp.ones((len(layers),), bool), jnp.array(True)
        scaler, bad = state.scaler, ~finite
        if config.dynamic_scale:  # gradients that overflow at a finite loss: the scale is to blame, not the model
            assert state.scaler is not None
            overflow = jnp.isfinite(loss) & ~finite & (state.scaler.scale > 1)
            scaler, bad = next_loss_scale(state.scaler, finite, overflow, config.scale_period), ~finite & ~overflow

        updates, opt_state = config.tx.update(grads, state.opt_state, state.params)
        params = cast(Tree, optax.apply_updates(state.params, updates))  # the same tree as state.params
        if config.skip_bad_steps:
            # Keep the old state. A select, not lax.cond (a conditional costs a device-to-host
            # sync per step on GPU). With `stop` no select is needed: the run ends at the first
            # bad step and the last good checkpoint on disk is what stays.
            params, model_state, opt_state = jax.tree_util.tree_map(
                lambda n, o: jnp.where(finite, n, o),
                (params, model_state, opt_state),
                (state.params, state.model_state, state.opt_state),
            )
        nonfinite_layer = jnp.where(bad, jnp.where(jnp.all(layer_ok), len(layers), jnp.argmin(layer_ok)), -1)
        step = state.step + 1  # in the train box too: nothing of the step is drawn outside a box
        skipped = state.skipped + jnp.logical_not(finite).astype(jnp.int32)
    return (
        TrainState(step, params, model_state, opt_state, skipped, scaler),
        {"loss": loss, "nonfinite_layer": nonfinite_layer.astype(jnp.int32)},
    )


def metrics_on_batch(
    config: StepConfig, params: Tree, model_state: Tree, batch: Batch, key: jax.Array
) -> dict[str, jax.Array]:
    """The spec's metrics on one training batch, as the training step sees it (train mode: the
    same dropout masks, batch statistics), means over the batch."""
    values, _, _ = per_example(config, params, model_state, batch, train=True, key=key)
    return {k: jnp.mean(v) for k, v in values.items() if k != "loss"}
