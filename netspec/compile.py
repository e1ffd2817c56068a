"""Compile a checked Spec into a Program: pure JAX functions and one fused, jitted train chunk.

Contract: `compile_spec(spec) -> Program` with

    init(key) -> TrainState                       # step 0: params, model state, optimizer state
    apply(params, state, x, *, train, key, collect=None) -> y   # the output (probabilities etc.);
                                                  # `collect` (a dict) gets every layer's output
    loss_and_metrics(params, state, batch, *, train, key) -> (loss, (metrics, state))
    chunk(length) -> jitted (TrainState, data, keys) -> (TrainState, per-step {loss, metrics..})

`chunk(K)` runs K optimizer steps as one `lax.scan` inside one `jit`, the training data resident
on the device and passed as an argument (never closed over), the TrainState buffers donated.
Batches are gathered on the device: the whole set when batch_size equals it, else a
per-epoch permutation computed from (data key, epoch), so the order depends only on the seed
and the step: a chunk of any length, started at any step, gives the same batches.

Each layer runs under `jax.named_scope(<layer name>)`, the loss under `cost`, the update under
`train`, so the jaxpr (and TensorBoard's graph) is grouped by the spec's names. A sigmoid or
softmax output with a cross-entropy loss is compiled as logits + the log-sigmoid/log-softmax
form of the loss: the lecture's `-mean(y*log(h) + (1-y)*log(1-h))` cannot give NaN.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from netspec import layers as L
from netspec import registry as R
from netspec.check import Spec


class TrainState(NamedTuple):
    """Everything that changes during training; passed through jit and scan, donated."""

    step: jax.Array  # optimizer steps done
    params: Any
    model_state: Any
    opt_state: Any


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
    tx: optax.GradientTransformation
    keys: Keys
    init_key: jax.Array


# -- the network ------------------------------------------------------------------------------

def network(spec: Spec):
    """The model as one layer: `(init, apply)` where apply can stop before the output activation."""
    built = [(layer, *L.BUILDERS[layer.type](layer)) for layer in spec.layers]
    activations = [L.activation(layer.args["activation"]) if "activation" in layer.args else None for layer in spec.layers]

    def init(key):
        params, state = {}, {}
        for i, (layer, layer_init, _) in enumerate(built):
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


# -- loss and metrics -------------------------------------------------------------------------

def _loss_fn(spec: Spec) -> Callable:
    """loss(out, y) -> scalar; `out` is logits for cross-entropies (always: check guarantees it)."""
    loss = spec.loss
    kind = loss["type"]
    if kind == "binary_crossentropy":
        return lambda z, y: optax.sigmoid_binary_cross_entropy(z, y).mean()
    if kind == "categorical_crossentropy":
        smoothing = loss["label_smoothing"]

        def cce(z, y):
            if smoothing:
                y = optax.smooth_labels(y, smoothing)
            return optax.softmax_cross_entropy(z, y).mean()
        return cce
    if kind == "sparse_categorical_crossentropy":
        return lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y).mean()
    if kind == "mean_squared_error":
        return lambda p, y: jnp.mean((p - y) ** 2)
    if kind == "mean_absolute_error":
        return lambda p, y: jnp.mean(jnp.abs(p - y))
    if kind == "huber":
        return lambda p, y: optax.huber_loss(p, y, delta=loss["delta"]).mean()
    raise AssertionError(kind)


def _metric_fns(spec: Spec) -> dict[str, Callable]:
    """name -> fn(out, y) -> scalar, on the same `out` the loss sees."""
    kind = spec.loss["type"]
    out: dict[str, Callable] = {}
    for name in spec.metrics:
        if name == "accuracy":
            if kind == "binary_crossentropy":
                out[name] = lambda z, y: jnp.mean((z > 0) == (y > 0.5))
            elif kind == "categorical_crossentropy":
                out[name] = lambda z, y: jnp.mean(jnp.argmax(z, -1) == jnp.argmax(y, -1))
            else:
                out[name] = lambda z, y: jnp.mean(jnp.argmax(z, -1) == y)
        elif name == "mean_squared_error":
            out[name] = lambda p, y: jnp.mean((p - y) ** 2)
        elif name == "mean_absolute_error":
            out[name] = lambda p, y: jnp.mean(jnp.abs(p - y))
    return out


def label_dtype(spec: Spec):
    return jnp.int32 if spec.loss["type"] == "sparse_categorical_crossentropy" else jnp.float32


# -- optimizer --------------------------------------------------------------------------------

def learning_rate(value) -> float | Callable:
    """A number, or the optax schedule a `{type, args}` mapping names."""
    if not hasattr(value, "get"):
        return float(value)
    fn_name, fields, _ = R.SCHEDULES[value["type"]]
    args = {k: v for k, v in value.items() if k != "type" and k in fields}
    if value["type"] == "piecewise_constant":
        args["boundaries_and_scales"] = {int(k): float(v) for k, v in (args.get("boundaries_and_scales") or {}).items()}
    return getattr(optax, fn_name)(**args)


def optimizer(spec_optimizer) -> optax.GradientTransformation:
    """The optax transformation: optax's own optimizer, its learning rate injected as state
    (so it can be logged and varied without recompiling), after global-norm clipping if asked."""
    name = spec_optimizer["type"]
    args = {k: spec_optimizer[k] for k in R.OPTIMIZERS[name] if k in spec_optimizer}
    tx = optax.inject_hyperparams(getattr(optax, name), static_args=tuple(args))(
        learning_rate=learning_rate(spec_optimizer["learning_rate"]), **args)
    clip = spec_optimizer.get("clip_global_norm")
    return optax.chain(optax.clip_by_global_norm(clip), tx) if clip else tx


def current_learning_rate(opt_state):
    """The learning rate the optimizer used at its last step (inject_hyperparams keeps it)."""
    return optax.tree_utils.tree_get(opt_state, "learning_rate")


# -- the program ------------------------------------------------------------------------------

def compile_spec(spec: Spec) -> Program:
    """Spec -> Program (see the module docstring)."""
    net_init, net_apply = network(spec)
    loss_of = _loss_fn(spec)
    metric_fns = _metric_fns(spec)
    tx = optimizer(spec.optimizer)
    root = jax.random.key(spec.seed)
    init_key, data_key, step_key = jax.random.split(root, 3)
    keys = Keys(data=data_key, step=step_key)

    @jax.jit
    def init_state(key) -> TrainState:
        params, model_state = net_init(key)
        return TrainState(jnp.zeros((), jnp.int32), params, model_state, tx.init(params))

    def init(key=init_key) -> TrainState:
        return init_state(key)  # one compiled program, not one eager dispatch per initializer

    def apply(params, state, x, *, train=False, key=step_key, collect=None):
        return net_apply(params, state, x, train=train, key=key, collect=collect)[0]

    def loss_and_metrics(params, model_state, batch, *, train, key):
        x, y = batch
        out, new_state = net_apply(params, model_state, x, train=train, key=key, logits=spec.fused_loss or spec.loss.get("from_logits", False))
        with jax.named_scope("cost"):
            loss = loss_of(out, y)
            metrics = {name: fn(out, y) for name, fn in metric_fns.items()}
        return loss, (metrics, new_state)

    grad_fn = jax.value_and_grad(loss_and_metrics, has_aux=True)

    def train_step(state: TrainState, batch, key):
        (loss, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch, train=True, key=key)
        with jax.named_scope("train"):
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, model_state, opt_state), {"loss": loss, **metrics}

    batch_size = spec.train["batch_size"]
    n = spec.num_examples
    full_batch = batch_size == n
    per_epoch = n // batch_size
    shuffle = spec.train["shuffle"]

    def make_chunk(length: int):
        def chunk(state: TrainState, data, keys: Keys):
            x, y = data

            def order(step):
                epoch = step // per_epoch
                return jax.random.permutation(jax.random.fold_in(keys.data, epoch), n)

            def body(carry, _):
                state, perm = carry
                step = state.step
                if full_batch:
                    batch = (x, y)
                else:
                    i = step % per_epoch
                    if shuffle:
                        perm = jax.lax.cond(i == 0, lambda: order(step), lambda: perm)
                        idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
                        batch = (x[idx], y[idx])
                    else:
                        batch = (jax.lax.dynamic_slice_in_dim(x, i * batch_size, batch_size),
                                 jax.lax.dynamic_slice_in_dim(y, i * batch_size, batch_size))
                state, out = train_step(state, batch, jax.random.fold_in(keys.step, step))
                return (state, perm), out

            perm0 = order(state.step) if (shuffle and not full_batch) else jnp.zeros((0,), jnp.int32)
            (state, _), outputs = jax.lax.scan(body, (state, perm0), length=length)
            return state, outputs

        return jax.jit(chunk, donate_argnums=0)

    cache: dict[int, Callable] = {}

    def chunk(length: int):
        if length not in cache:
            cache[length] = make_chunk(length)
        return cache[length]

    return Program(init, apply, loss_and_metrics, chunk, train_step, tx, keys, init_key)
