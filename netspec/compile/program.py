"""Compile a checked Spec into a Program: pure JAX functions and one fused, jitted train chunk.

Contract: `compile_spec(spec) -> Program` with

    init(key) -> TrainState                       # step 0: params, model state, optimizer state
    apply(params, state, x, *, train, key, collect=None) -> y   # the output (probabilities etc.);
                                                  # `collect` (a dict) gets every layer's output
    loss_and_metrics(params, state, batch, *, train, key) -> (loss, (metrics, state))
    chunk(length, streamed=False, diagnose=False) -> jitted (TrainState, Data, batches, keys) -> (TrainState, {loss per step, metrics..})

`chunk(K)` runs K optimizer steps as one `lax.scan` inside one `jit`, the training data resident
on the device and passed as an argument (never closed over), the TrainState buffers donated.
Each step gathers its batch on the device from the data (kept compact, e.g. uint8 images,
converted inside the step) by a row of example indices, int32 [K, batch], that the host makes
for the chunk (`netspec.data.batch_indices`: a per-epoch permutation from (seed, epoch)), so
the order depends only on the seed and the step: chunks of any length give the same batches.
Data larger than the spec's `data.max_resident_mb` stays on the host instead: the host gathers
each chunk's batches by the same indices (the next chunk's while this one runs) and the chunk
scans over them, computing exactly the same steps.

Each layer runs under `jax.named_scope(<layer name>)`, the loss under `cost`, the update under
`train`, so the jaxpr (and TensorBoard's graph) is grouped by the spec's names. A sigmoid or
softmax output with a cross-entropy loss is compiled as logits + the log-sigmoid/log-softmax
form of the loss: the lecture's `-mean(y*log(h) + (1-y)*log(1-h))` cannot give NaN.
"""

from __future__ import annotations

import inspect
import json
from functools import partial
from types import SimpleNamespace
from typing import Any, Callable, NamedTuple
import jax
import jax.numpy as jnp
import numpy as np
import optax
from netspec.model import layers as L

from netspec.spec.types import Spec, metric_name, plain
from netspec.spec.choices import FUSED_ACTIVATION, OPTIMIZERS, SCHEDULES


class TrainState(NamedTuple):
    """Everything that changes during training; passed through jit and scan, donated."""

    step: jax.Array  # steps done (skipped ones included)
    params: Any
    model_state: Any
    opt_state: Any
    skipped: jax.Array  # steps whose loss or gradients were non-finite, so their update was not applied
    scaler: Any = None  # the dynamic loss scale (LossScale), when the spec asks for one


class LossScale(NamedTuple):
    """Dynamic loss scaling (float16): the scale halves at a step whose gradients overflow (that
    step is skipped) and doubles after `period` steps in a row without overflow."""

    scale: jax.Array  # float32
    good_steps: jax.Array  # int32: steps in a row without overflow since the scale last changed


LOSS_SCALE_START = 2.0**15  # Keras' and jmp's starting scale


LOSS_SCALE_MAX = 2.0**24  # a loss times this stays finite in float32


class Keys(NamedTuple):
    """Per-run random keys, arguments of the compiled chunk (so a sweep can vmap seeds)."""

    data: jax.Array  # shuffling
    step: jax.Array  # dropout and other per-step randomness


class Program(NamedTuple):
    init: Callable
    apply: Callable
    loss_and_metrics: Callable
    chunk: Callable
    train_step: Callable  # one unjitted step, (state, batch, key) -> (state, outputs); for the graph
    evaluate: Callable  # jitted (params, model_state, Data, mask) -> ({tag: sum}, count, confusion)
    prepare: Callable  # (Data, x, y) -> the batch as the model and loss take it
    tx: optax.GradientTransformation
    keys: Keys
    init_key: jax.Array
    state_sharding: Any  # with a mesh: where each TrainState leaf lives (the chunk keeps it there); else None


def network(spec: Spec):
    """The model as one layer: `(init, apply)` where apply can stop before the output activation."""
    built = [(layer, *L.BUILDERS[layer.type](layer)) for layer in spec.layers]
    activations = [L.activation(layer.args["activation"]) if "activation" in layer.args else None for layer in spec.layers]
    # One compiled initializer per kind of layer (type, arguments, shapes), shared by the layers
    # alike: XLA compiles one program holding every layer's random initializers in time that grows
    # faster than the depth (100 dense layers of 4 units: 17.5 s, against 1.1 s this way, the
    # values bit for bit the same; benchmarks/compile_depth.py).
    compiled: dict[tuple, Callable] = {}
    inits = [compiled.setdefault((layer.type, json.dumps(plain(layer.args), sort_keys=True, default=str), layer.in_shapes,
                                  layer.out_shape), jax.jit(layer_init)) for layer, layer_init, _ in built]

    def init(key):
        params, state = {}, {}
        for i, ((layer, _, _), layer_init) in enumerate(zip(built, inits)):
            with jax.named_scope(layer.name):
                params[layer.name], state[layer.name] = layer_init(jax.random.fold_in(key, i))
        return params, state

    def apply(params, state, x, *, train, key, logits=False, collect=None):
        """The output (or its logits when `logits`); `collect` (a dict) receives every layer's output."""
        values = {"input": x}
        new_state = {}
        last = len(built) - 1
        for i, ((layer, _, layer_apply), act) in enumerate(zip(built, activations)):
            with jax.named_scope(layer.name):
                y, new_state[layer.name] = layer_apply(
                    params[layer.name], state[layer.name], [values[r] for r in layer.inputs],
                    train=train, key=jax.random.fold_in(key, i))
                if act is not None and not (logits and i == last):
                    y = act(y)
            values[layer.name] = y
            if collect is not None:
                collect[layer.name] = y
        return values[spec.layers[-1].name], new_state

    return init, apply


def _per_example(v):
    return v.reshape(v.shape[0], -1).mean(-1)


def _loss_fn(spec: Spec) -> Callable:
    loss = spec.loss
    kind = loss["type"]
    if kind == "binary_crossentropy":
        return lambda z, y: _per_example(optax.sigmoid_binary_cross_entropy(z, y))
    if kind == "categorical_crossentropy":
        smoothing = loss["label_smoothing"]
        return lambda z, y: optax.softmax_cross_entropy(z, optax.smooth_labels(y, smoothing) if smoothing else y)
    if kind == "sparse_categorical_crossentropy":
        return lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y)
    if kind == "mean_squared_error":
        return lambda p, y: _per_example((p - y) ** 2)
    if kind == "mean_absolute_error":
        return lambda p, y: _per_example(jnp.abs(p - y))
    if kind == "huber":
        return lambda p, y: _per_example(optax.huber_loss(p, y, delta=loss["delta"]))
    raise AssertionError(kind)


def output_class(spec: Spec) -> Callable | None:
    """model output [N, ..., units] -> predicted class indices (int32), or None for a regression
    loss (no classes). binary_crossentropy: class 1 when the probability is above one half,
    i.e. a probability > 0.5 or a logit > 0, per unit ([N, 1] -> [N, 1]); a probability of exactly
    0.5 or a logit of exactly 0 is class 0. categorical and sparse crossentropy: the largest output
    ([N, classes] -> [N]), the first of equals."""
    kind = spec.loss["type"]
    if kind == "binary_crossentropy":
        threshold = 0.0 if spec.loss.get("from_logits") else 0.5
        return lambda h: (h > threshold).astype(np.int32)
    if kind in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        return lambda h: h.argmax(-1).astype(np.int32)
    return None


def _class_index(spec: Spec) -> Callable:
    """labels, as the loss takes them -> class indices (for accuracy and the confusion matrix):
    binary 0/1 targets (float32) -> int32 of the same shape, 1 above 0.5; one-hot [N, classes]
    -> [N]; sparse class indices [N] stay as they are."""
    if spec.loss["type"] == "binary_crossentropy":
        return lambda y: (y > 0.5).astype(np.int32)
    if spec.loss["type"] == "categorical_crossentropy":
        return lambda y: y.argmax(-1).astype(np.int32)
    return lambda y: y


def _model_output(spec: Spec) -> Callable:
    """the loss's input (logits when the output activation is fused into the loss: `apply(...,
    logits=True)`) -> the model output, through the same activation function `apply` uses."""
    if not spec.fused_loss:
        return lambda out: out
    return L.activation(spec.layers[-1].args["activation"])


def predicted_class(spec: Spec) -> Callable | None:
    """the loss's input (what evaluation and the metrics see; jax) -> predicted class indices:
    `output_class` of the model output, so evaluation decides on the very numbers `netspec
    predict` and the report decide on (a logit of 1e-8 is a sigmoid of exactly 0.5 in float32:
    class 0 for them all). None for a regression loss."""
    decide = output_class(spec)
    if decide is None:
        return None
    to_output = _model_output(spec)
    return lambda out: decide(to_output(out))


def _metric_fns(spec: Spec) -> dict[str, Callable]:
    """tag -> fn(out, y) -> per-example values, from the same `out` the loss sees (logits when
    the output activation is fused into the loss), each metric on the model output."""
    truth, guess, to_output = _class_index(spec), predicted_class(spec), _model_output(spec)
    out: dict[str, Callable] = {}
    for metric in spec.metrics:
        name, kind = metric_name(metric), metric["type"]
        if kind == "accuracy":
            out[name] = lambda z, y: _per_example((guess(z) == truth(y)).astype(jnp.float32))
        elif kind == "top_k_accuracy":  # on the model output too, so top-1 is accuracy even among ties
            k = metric["k"]
            out[name] = lambda z, y, k=k: jnp.any(jax.lax.top_k(to_output(z), k)[1] == truth(y)[:, None], -1).astype(jnp.float32)
        elif kind == "mean_squared_error":  # of the model output: probabilities, not the fused loss's logits
            out[name] = lambda p, y: _per_example((to_output(p) - y) ** 2)
        elif kind == "mean_absolute_error":
            out[name] = lambda p, y: _per_example(jnp.abs(to_output(p) - y))
    return out


def num_classes(spec: Spec) -> int | None:
    """Classes of a classification model (2 for binary with one output unit), else None (a
    regression loss, or binary_crossentropy over several units: one yes/no per unit)."""
    if spec.loss["type"] not in FUSED_ACTIVATION:
        return None
    if spec.loss["type"] == "binary_crossentropy":
        return 2 if spec.output_shape[-1] == 1 else None
    return spec.output_shape[-1]


class Data(NamedTuple):
    """A split resident on the device as stored (images uint8), with its scaling arguments."""

    x: jax.Array
    y: jax.Array
    shift: jax.Array
    scale: jax.Array


def _prepare(spec: Spec) -> Callable:
    """(x, y) as stored -> (x float32 scaled and shaped as model.input, y as the loss wants), on device."""
    one_hot = spec.loss["type"] == "categorical_crossentropy" and tuple(spec.data_info.y_shape) != spec.output_shape
    sparse = spec.loss["type"] == "sparse_categorical_crossentropy"

    def prepare(data: Data, x, y):
        x = ((x.astype(jnp.float32) - data.shift) * data.scale).reshape((x.shape[0], *spec.input_shape))
        if one_hot:
            y = jax.nn.one_hot(y.reshape(y.shape[0]), spec.output_shape[-1])
        elif sparse:
            y = y.reshape(y.shape[0]).astype(jnp.int32)
        else:
            y = y.astype(jnp.float32).reshape((y.shape[0], *spec.output_shape))
        return x, y

    return prepare


def learning_rate(value) -> float | Callable:
    """A number, or the optax schedule a `{type, args}` mapping names."""
    if not hasattr(value, "get"):
        return float(value)
    fn_name, fields, _ = SCHEDULES[value["type"]]
    args = {k: v for k, v in value.items() if k != "type" and k in fields}
    if value["type"] == "piecewise_constant":
        args["boundaries_and_scales"] = {int(k): float(v) for k, v in (args.get("boundaries_and_scales") or {}).items()}
    return getattr(optax, fn_name)(**args)


def optimizer(spec_optimizer, *, seed: int = 0) -> optax.GradientTransformation:
    """The optax transformation: optax's own optimizer, its learning rate injected as state
    (so it can be logged and varied without recompiling), after global-norm clipping if asked."""
    name = spec_optimizer["type"]
    args = {k: spec_optimizer[k] for k in OPTIMIZERS[name] if k in spec_optimizer}
    if "seed" in OPTIMIZERS[name]:  # noisy_sgd: its noise follows the spec's seed unless it names its own
        chosen = args.pop("seed")
        args["key"] = jax.random.key(seed if chosen is None else chosen)
    factory = getattr(optax, name)
    # inject_hyperparams takes any callable default for a schedule: adafactor's dtype_momentum
    # (jnp.float32) was called as one, and adafactor with momentum crashed at its first step
    dtypes = tuple(n for n, p in inspect.signature(factory).parameters.items() if n != "learning_rate" and callable(p.default))
    tx = optax.inject_hyperparams(factory, static_args=tuple(args) + dtypes)(
        learning_rate=learning_rate(spec_optimizer["learning_rate"]), **args)
    clip = spec_optimizer.get("clip_global_norm")
    return optax.chain(optax.clip_by_global_norm(clip), tx) if clip else tx


def _nonfinite_probe(tree) -> jax.Array:
    """NaN when any element of `tree` is inf or NaN, else 0: one reduction per array, which XLA
    can fuse with the optimizer's own pass over it (0 * x is 0 for every finite x, NaN for inf
    and NaN, and a sum of zeros cannot overflow, as a plain sum of large gradients could)."""
    total = jnp.zeros((), jnp.float32)
    for x in jax.tree_util.tree_leaves(tree):
        total = total + jnp.sum(x * 0, dtype=jnp.float32)
    return total


def current_learning_rate(opt_state):
    """The learning rate the optimizer used at its last step (inject_hyperparams keeps it)."""
    # With a schedule, inject_hyperparams also keeps the schedule's own state under the same name.
    return optax.tree_utils.tree_get(opt_state, "learning_rate", filtering=lambda _, value: isinstance(value, jax.Array))


def compile_spec(spec: Spec, mesh: jax.sharding.Mesh | None = None) -> Program:
    """Spec -> Program (see the module docstring). With a `mesh` (`netspec.distribute`), every
    batch is split over its devices and XLA's partitioner inserts the collectives (data parallelism);
    where the parameters live is the caller's choice (`netspec.distribute`)."""
    net_init, net_apply = network(spec)
    loss_of = _loss_fn(spec)
    metric_fns = _metric_fns(spec)
    tx = optimizer(spec.optimizer, seed=spec.seed)
    root = jax.random.key(spec.seed)
    init_key, data_key, step_key = jax.random.split(root, 3)
    keys = Keys(data=data_key, step=step_key)
    precision = spec.resolved["precision"]
    compute_dtype = jnp.dtype(precision["compute"])
    # loss_scale: a number (static), dynamic, or unset: dynamic for float16, none otherwise
    dynamic_scale = precision["loss_scale"] == "dynamic" or (precision["loss_scale"] is None and precision["compute"] == "float16")
    static_scale = 1.0 if dynamic_scale or precision["loss_scale"] is None else float(precision["loss_scale"])
    scale_period = precision["loss_scale_period"]

    opt_init = jax.jit(tx.init)

    def init_state(key) -> TrainState:
        params, model_state = net_init(key)  # one compiled initializer per kind of layer (`network`)
        scaler = LossScale(jnp.full((), LOSS_SCALE_START, jnp.float32), jnp.zeros((), jnp.int32)) if dynamic_scale else None
        return TrainState(jnp.zeros((), jnp.int32), params, model_state, opt_init(params), jnp.zeros((), jnp.int32), scaler)

    def init(key=init_key) -> TrainState:
        return init_state(key)

    def apply(params, state, x, *, train=False, key=step_key, collect=None):
        return net_apply(params, state, x, train=train, key=key, collect=collect)[0]

    state_sharding = batch_sharding = None
    if mesh is not None:
        from netspec import distribute

        state_sharding = distribute.state_shardings(jax.eval_shape(init_state, init_key), mesh, spec.resolved["distribute"]["params"])
        batch_sharding = jax.sharding.NamedSharding(mesh, distribute.batch_spec())
    prepare_one = _prepare(spec)

    def prepare(data, x, y):
        x, y = prepare_one(data, x, y)
        if batch_sharding is not None:
            x, y = jax.lax.with_sharding_constraint((x, y), batch_sharding)
        return x, y
    guess, truth, classes = predicted_class(spec), _class_index(spec), num_classes(spec)
    logits_out = spec.fused_loss or spec.loss.get("from_logits", False)

    def per_example(params, model_state, batch, *, train, key, metrics=True):
        """{"loss", and the metrics unless `metrics` is False: per-example values}, output, model state."""
        x, y = batch
        # Mixed precision: the layers compute in `compute_dtype` (each casts its float32
        # parameters to its input's dtype); the loss sees float32 outputs.
        out, new_state = net_apply(params, model_state, x.astype(compute_dtype), train=train, key=key, logits=logits_out)
        out = out.astype(jnp.float32)
        with jax.named_scope("cost"):
            values = {"loss": loss_of(out, y), **({name: fn(out, y) for name, fn in metric_fns.items()} if metrics else {})}
        return values, out, new_state

    def loss_and_metrics(params, model_state, batch, *, train, key):
        values, _, new_state = per_example(params, model_state, batch, train=train, key=key)
        with jax.named_scope("cost"):
            means = {k: jnp.mean(v) for k, v in values.items()}
        loss = means.pop("loss")
        return loss, (means, new_state)

    def loss_only(params, model_state, batch, scale, *, train, key):
        """The training objective alone, times the loss scale: the metrics are not computed per
        step (see `chunk_outputs`), so the step does what a hand-written step does."""
        values, _, new_state = per_example(params, model_state, batch, train=train, key=key, metrics=False)
        with jax.named_scope("cost"):
            loss = jnp.mean(values["loss"])
            scaled = loss * scale if dynamic_scale or static_scale != 1.0 else loss
        return scaled, (loss, new_state)

    value_and_grad = jax.value_and_grad(loss_only, has_aux=True)

    def grad_fn(params, model_state, batch, scale, *, train, key):
        """(loss, model state), gradients (unscaled)."""
        (_, (loss, new_state)), grads = value_and_grad(params, model_state, batch, scale, train=train, key=key)
        if dynamic_scale or static_scale != 1.0:
            grads = jax.tree_util.tree_map(lambda g: g / scale, grads)
        return (loss, new_state), grads

    skip_bad_steps = dynamic_scale or spec.train["on_nonfinite"] == "skip_step"  # keep the old state at a bad step
    # Which steps check their gradients: those that must decide at once (skip the update, halve
    # the loss scale) check every step. `stop` only has to notice: a NaN or Inf in the gradients
    # stays in the parameters or optimizer state (x - lr * NaN is NaN, and so is every later
    # update of it), so one probe of the state at the chunk's end, with the per-step losses,
    # tells whether a chunk went bad, and the host then finds the step and layer by running that
    # chunk again with the per-step check (`chunk(..., diagnose=True)`; netspec.train).
    check_each_step = skip_bad_steps
    check_chunk = spec.train["on_nonfinite"] == "stop" and not check_each_step
    param_layers = [layer.name for layer in spec.layers]

    def next_scale(scaler: LossScale, finite, overflow) -> LossScale:
        grown = scaler.good_steps + 1 >= scale_period
        scale = jnp.where(overflow, jnp.maximum(scaler.scale / 2, 1.0),
                          jnp.where(finite & grown, jnp.minimum(scaler.scale * 2, LOSS_SCALE_MAX), scaler.scale))
        return LossScale(scale, jnp.where(finite & ~grown, scaler.good_steps + 1, 0))

    def train_step(state: TrainState, batch, key, *, check: bool = check_each_step):
        """One update. With `check`, a step whose loss or gradients are non-finite is not applied
        where it can be skipped (on_nonfinite: skip_step, or an overflow the dynamic loss scale
        answers by halving) and counted in `skipped`; any other is `bad`. Returns the new state
        and {"loss", "nonfinite_layer"}: for a bad step the first layer, in spec order, whose
        gradients were non-finite (len(layers): the loss alone), else -1. Without `check` (stop,
        ignore) the step does what a hand-written step does and nothing more."""
        scale = state.scaler.scale if dynamic_scale else static_scale
        (loss, model_state), grads = grad_fn(state.params, state.model_state, batch, scale, train=True, key=key)
        with jax.named_scope("train"):
            if check:
                layer_ok = jnp.isfinite(jnp.stack([_nonfinite_probe(grads[name]) for name in param_layers]))
                finite = jnp.isfinite(loss) & jnp.all(layer_ok)
            else:
                layer_ok, finite = jnp.ones((len(param_layers),), bool), jnp.array(True)
            scaler, bad = state.scaler, ~finite
            if dynamic_scale:  # gradients that overflow at a finite loss: the scale is to blame, not the model
                overflow = jnp.isfinite(loss) & ~finite & (state.scaler.scale > 1)
                scaler, bad = next_scale(state.scaler, finite, overflow), ~finite & ~overflow

            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            if skip_bad_steps:
                # Keep the old state. A select, not lax.cond (a conditional costs a device-to-host
                # sync per step on GPU). With `stop` no select is needed: the run ends at the first
                # bad step and the last good checkpoint on disk is what stays.
                params, model_state, opt_state = jax.tree_util.tree_map(
                    lambda n, o: jnp.where(finite, n, o), (params, model_state, opt_state),
                    (state.params, state.model_state, state.opt_state))
            nonfinite_layer = jnp.where(bad, jnp.where(jnp.all(layer_ok), len(param_layers), jnp.argmin(layer_ok)), -1)
            step = state.step + 1  # in the train box too: nothing of the step is drawn outside a box
            skipped = state.skipped + jnp.logical_not(finite).astype(jnp.int32)
        return (TrainState(step, params, model_state, opt_state, skipped, scaler),
                {"loss": loss, "nonfinite_layer": nonfinite_layer.astype(jnp.int32)})

    def metrics_of(params, model_state, batch, key):
        """The spec's metrics on one training batch, as the training step sees it (train mode: the
        same dropout masks, batch statistics), means over the batch."""
        values, _, _ = per_example(params, model_state, batch, train=True, key=key)
        return {k: jnp.mean(v) for k, v in values.items() if k != "loss"}

    @jax.jit
    def evaluate(params, model_state, data: Data, mask):
        """Sums over a split stored as [batches, batch, ...] with a 0/1 mask for padding: {tag: sum}, count, confusion."""
        def one(carry, batch):
            x, y, m = batch
            xb, yb = prepare(data, x, y)
            values, out, _ = per_example(params, model_state, (xb, yb), train=False, key=keys.step)
            sums = {k: jnp.sum(v * m) for k, v in values.items()}
            confusion = None
            if classes:
                confusion = (jax.nn.one_hot(truth(yb).reshape(-1), classes) * m[:, None]).T @ jax.nn.one_hot(guess(out).reshape(-1), classes)
            return carry, (sums, confusion)

        _, (sums, confusion) = jax.lax.scan(one, None, (data.x, data.y, mask))
        sums = {k: v.sum() for k, v in sums.items()}
        return sums, mask.sum(), (confusion.sum(0) if classes else None)

    full_batch = spec.train["batch_size"] == spec.num_examples

    def batch_of(data: Data, batch, streamed: bool):
        """The prepared batch of one step: indices into resident `data` (None: all of it), or (x, y) streamed."""
        if streamed:
            return prepare(data, *batch)
        if batch is None:
            return prepare(data, data.x, data.y)
        return prepare(data, data.x[batch], data.y[batch])

    def one_step(state: TrainState, data: Data, batch, keys: Keys, *, streamed: bool, check: bool):
        """One step; what it keeps of the step is [loss, non-finite layer (-1: none)], one small
        row that XLA writes in one go. Everything else the host reads is computed once per chunk
        by `chunk_outputs`: per step it would cost kernels the step itself does not need."""
        state, out = train_step(state, batch_of(data, batch, streamed), jax.random.fold_in(keys.step, state.step), check=check)
        return state, jnp.stack([out["loss"], out["nonfinite_layer"].astype(jnp.float32)])

    def chunk_outputs(state: TrainState, rows, data: Data, last_batch, keys: Keys, *, streamed: bool, check: bool):
        """What the host reads after a chunk (`rows`: one_step's, [steps, 2]): the loss of every
        step, the metrics on the last step's batch (with the parameters after that step, in train
        mode with that step's key), the learning rate the last step used, the steps skipped so
        far, the first non-finite step and layer of the chunk (-1: none; from the per-step
        check), and with on_nonfinite: stop and no per-step check, `nonfinite`: whether any
        step's loss or anything in the final state is NaN or Inf."""
        if state_sharding is not None:  # the chunk hands the state back where it found it
            state = jax.lax.with_sharding_constraint(state, state_sharding)
        metrics = metrics_of(state.params, state.model_state, batch_of(data, last_batch, streamed),
                             jax.random.fold_in(keys.step, state.step - 1)) if metric_fns else {}
        layers = rows[:, 1].astype(jnp.int32)
        first = jnp.argmax(layers >= 0)
        noticed = {}
        if check_chunk and not check:
            floats = [x for x in jax.tree_util.tree_leaves((state.params, state.model_state, state.opt_state))
                      if jnp.issubdtype(x.dtype, jnp.floating)]
            noticed["nonfinite"] = ~(jnp.all(jnp.isfinite(rows[:, 0])) & jnp.isfinite(_nonfinite_probe(floats)))
        return state, {"loss": rows[:, 0], **metrics, "learning_rate": jnp.asarray(current_learning_rate(state.opt_state), jnp.float32),
                       "nonfinite_layer": jnp.where(layers[first] >= 0, layers[first], -1),
                       "nonfinite_step": state.step - rows.shape[0] + first + 1, **noticed,
                       "skipped": jnp.copy(state.skipped),  # a buffer of its own: the state is donated next
                       **({"loss_scale": jnp.copy(state.scaler.scale)} if dynamic_scale else {})}

    def last_of(batches):
        return None if batches is None else jax.tree_util.tree_map(lambda a: a[-1], batches)

    def make_chunk(length: int, streamed: bool, check: bool):
        def chunk(state: TrainState, data: Data, batches, keys: Keys):
            """`length` steps. `batches`: resident data: int32 [length, batch] example indices into
            `data` (None: the whole set each step); streamed data: the (x, y) of every step,
            [length, batch, ...], gathered by the host, with `data` holding only the scaling.
            Returns the state and `chunk_outputs`."""
            body = lambda state, batch: one_step(state, data, batch, keys, streamed=streamed, check=check)
            if full_batch and not streamed:
                state, rows = jax.lax.scan(body, state, None, length=length, unroll=unroll)
            else:
                state, rows = jax.lax.scan(body, state, batches, unroll=unroll)
            return chunk_outputs(state, rows, data, last_of(batches), keys, streamed=streamed, check=check)

        return jax.jit(chunk, donate_argnums=0)

    def make_stepwise(length: int, streamed: bool, check: bool):
        """The same steps as `make_chunk`, one jitted call each (see `loop` below)."""
        step = jax.jit(partial(one_step, streamed=streamed, check=check), donate_argnums=0)
        outputs = jax.jit(partial(chunk_outputs, streamed=streamed, check=check), donate_argnums=0)

        def chunk(state: TrainState, data: Data, batches, keys: Keys):
            rows = []
            for i in range(length):
                batch = None if batches is None else jax.tree_util.tree_map(lambda a: a[i], batches)
                state, row = step(state, data, batch, keys)
                rows.append(row)
            return outputs(state, jnp.stack(rows), data, last_of(batches), keys)

        def lower(state, data, batches, keys):  # the interface of a jitted function, compiled once
            first = None if batches is None else jax.tree_util.tree_map(lambda a: a[0], batches)
            step.lower(state, data, first, keys).compile()
            outputs.lower(state, jnp.zeros((length, 2), jnp.float32), data, first, keys).compile()
            return SimpleNamespace(compile=lambda: chunk)

        chunk.lower = lower
        return chunk

    # XLA:CPU runs convolution gradients inside a while loop (lax.scan) about 5x slower than at
    # the top level of a program (measured on jax 0.10.2: 265 ms vs 54 ms for one conv2 kernel
    # gradient). There, the chunk calls one jitted step per step instead: the same steps in the
    # same order, and the per-call overhead is nothing beside a conv step.
    loop = spec.train["loop"]
    on_cpu = jax.default_backend() == "cpu"
    if loop == "auto":
        has_conv = any(layer.type == "conv2d" for layer in spec.layers)
        loop = "steps" if has_conv and on_cpu else "scan"
    # Unrolling the scan saves the loop's per-iteration cost (its counter, condition and, on GPU,
    # a few kernel launches) once per extra step: fashion_mlp on an H200 ran 12 % faster with 2 steps
    # per iteration (benchmarks/RESULTS.md). On CPU it buys little and lengthens every compile.
    unroll = spec.train["unroll"] or (1 if on_cpu else 2)
    cache: dict[tuple, Callable] = {}

    def chunk(length: int, *, streamed: bool = False, diagnose: bool = False):
        """The jitted chunk of `length` steps; `diagnose`: with the per-step check whatever the
        spec says, so its outputs name the first non-finite step and layer."""
        check = check_each_step or diagnose
        if (length, streamed, check) not in cache:
            cache[length, streamed, check] = (make_chunk if loop == "scan" else make_stepwise)(length, streamed, check)
        return cache[length, streamed, check]

    return Program(init, apply, loss_and_metrics, chunk, train_step, evaluate, prepare, tx, keys, init_key, state_sharding)
