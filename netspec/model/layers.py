"""The JAX side of the registries: layers, activations and initializers as pure functions.

Contract (in the spirit of jax.example_libraries.stax): `BUILDERS[type](layer)` takes a checked
`netspec.check.Layer` and returns `(init, apply)`:

    init(key) -> (params, state)                     # dicts of arrays; state is {} for most layers
    apply(params, state, inputs, *, train, key) -> (y, state)

`inputs` is a list of arrays with the batch axis first; `apply` does NOT apply the layer's
`activation` field: the network does (`netspec.compile.network`), so it can leave the output
layer's activation out and hand the loss logits. Keys mirror `netspec.registry` exactly (a test
checks), and each output shape equals the registry's pure-Python shape rule.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Mapping
import jax
import jax.numpy as jnp

from netspec.spec.types import Layer
from netspec.spec.fields import as_pair


init_ = jax.nn.initializers


def _shifted(normal):
    """jax's zero-mean `normal(stddev)` initializer with a `mean` too (Keras' arguments)."""
    def make(mean=0.0, stddev=1.0):
        draw = normal(stddev)
        return lambda key, shape, dtype=jnp.float32: mean + draw(key, shape, dtype)

    return make


def _random_uniform(minval=0.0, maxval=1.0):
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, minval, maxval)


INITIALIZERS: dict[str, Callable[..., Callable]] = {
    "random_normal": _shifted(init_.normal),
    "truncated_normal": _shifted(init_.truncated_normal),
    "random_uniform": _random_uniform,
    "glorot_uniform": init_.glorot_uniform,
    "glorot_normal": init_.glorot_normal,
    "xavier_uniform": init_.xavier_uniform,
    "xavier_normal": init_.xavier_normal,
    "he_uniform": init_.he_uniform,
    "he_normal": init_.he_normal,
    "lecun_uniform": init_.lecun_uniform,
    "lecun_normal": init_.lecun_normal,
    "orthogonal": lambda scale=1.0: init_.orthogonal(scale),
    "zeros": lambda: init_.zeros,
    "ones": lambda: init_.ones,
    "constant": lambda value=0.0: init_.constant(value),
}


ACTIVATIONS: dict[str, Callable] = {
    "linear": lambda x: x,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "leaky_relu": jax.nn.leaky_relu,
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
    "swish": jax.nn.swish,
    "silu": jax.nn.silu,
    "softmax": jax.nn.softmax,
    "log_softmax": jax.nn.log_softmax,
}


def _args(choice: Mapping) -> dict:
    return {k: v for k, v in choice.items() if k != "type"}


def initializer(choice: Mapping) -> Callable:
    """A jax initializer `(key, shape, dtype) -> array` from a checked `{type, args}` mapping."""
    return INITIALIZERS[choice["type"]](**_args(choice))


def activation(choice: Mapping) -> Callable:
    """An activation function from a checked `{type, args}` mapping."""
    fn = ACTIVATIONS[choice["type"]]
    args = _args(choice)
    return partial(fn, **args) if args else fn


def _kernel_and_bias(layer: Layer, kernel_shape: tuple, outputs: int):
    """init(key) -> ({"kernel": float32 `kernel_shape`, "bias": [outputs] if use_bias}, {})."""
    kernel_init, bias_init = initializer(layer.args["kernel_init"]), initializer(layer.args["bias_init"])

    def init(key):
        k1, k2 = jax.random.split(key)
        params = {"kernel": kernel_init(k1, kernel_shape, jnp.float32)}
        if layer.args["use_bias"]:
            params["bias"] = bias_init(k2, (outputs,), jnp.float32)
        return params, {}

    return init


def _plus_bias(params, y):
    return y + params["bias"].astype(y.dtype) if "bias" in params else y


def _dense(layer: Layer):
    (in_shape,) = layer.in_shapes
    units = layer.args["units"]

    def apply(params, state, inputs, *, train, key):
        (x,) = inputs
        return _plus_bias(params, x @ params["kernel"].astype(x.dtype)), state

    return _kernel_and_bias(layer, (in_shape[-1], units), units), apply


def _no_params(key):
    return {}, {}


def _merge(fn):
    """A layer with no parameters whose output is `fn(layer, inputs)`."""

    def build(layer: Layer):
        def apply(params, state, inputs, *, train, key):
            return fn(layer, inputs), state

        return _no_params, apply

    return build


def _stateless(fn):
    """A layer with no parameters whose output is `fn(layer, x)` of its one input."""
    return _merge(lambda layer, inputs: fn(layer, inputs[0]))


def _conv2d(layer: Layer):
    (h, w, c) = layer.in_shapes[0]
    a = layer.args
    kh, kw = as_pair(a["kernel_size"])
    strides, dilation = as_pair(a["strides"]), as_pair(a["dilation"])
    groups, filters = a["groups"], a["filters"]
    padding = a["padding"].upper()

    def apply(params, state, inputs, *, train, key):
        (x,) = inputs
        y = jax.lax.conv_general_dilated(
            x, params["kernel"].astype(x.dtype), window_strides=strides, padding=padding, rhs_dilation=dilation,
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)
        return _plus_bias(params, y), state

    return _kernel_and_bias(layer, (kh, kw, c // groups, filters), filters), apply


def _pool(kind: str):
    def build(layer: Layer):
        a = layer.args
        window = (1, *as_pair(a["pool_size"]), 1)
        strides = (1, *as_pair(a["strides"] if a["strides"] is not None else a["pool_size"]), 1)
        padding = a["padding"].upper()

        (oh, ow, _) = layer.out_shape
        tiles = window == strides and (padding == "VALID" or (oh * window[1], ow * window[2]) == tuple(layer.in_shapes[0][:2]))

        def apply(params, state, inputs, *, train, key):
            (x,) = inputs
            if tiles:
                # Non-overlapping windows: a reshape and a reduction. Same values as reduce_window,
                # and on CPU its gradient is 5x cheaper than reduce_window's select_and_scatter.
                n, c = x.shape[0], x.shape[-1]
                x = x[:, : oh * window[1], : ow * window[2]].reshape(n, oh, window[1], ow, window[2], c)
                return (x.max(axis=(2, 4)) if kind == "max" else x.mean(axis=(2, 4))), state
            if kind == "max":
                return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, padding), state
            total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, padding)
            if padding == "VALID":
                return total / (window[1] * window[2]), state
            count = jax.lax.reduce_window(jnp.ones(x.shape[1:3], x.dtype)[None, :, :, None], 0.0, jax.lax.add, window, strides, padding)
            return total / count, state  # padding not counted, as Keras and TensorFlow do

        return _no_params, apply

    return build


def _dropout(layer: Layer):
    rate = layer.args["rate"]

    def apply(params, state, inputs, *, train, key):
        (x,) = inputs
        if not train or rate == 0:
            return x, state
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x)), state

    return _no_params, apply


def _norm_params(layer: Layer, size: int) -> dict:
    params = {}
    if layer.args["scale"]:
        params["scale"] = jnp.ones((size,), jnp.float32)
    if layer.args["center"]:
        params["offset"] = jnp.zeros((size,), jnp.float32)
    return params


def _affine(params, y):
    if "scale" in params:
        y = y * params["scale"].astype(y.dtype)
    if "offset" in params:
        y = y + params["offset"].astype(y.dtype)
    return y


def _batch_norm(layer: Layer):
    size = layer.in_shapes[0][-1]
    momentum, eps = layer.args["momentum"], layer.args["epsilon"]

    def init(key):
        return _norm_params(layer, size), {"mean": jnp.zeros((size,), jnp.float32), "var": jnp.ones((size,), jnp.float32)}

    def apply(params, state, inputs, *, train, key):
        (x,) = inputs
        axes = tuple(range(x.ndim - 1))
        if train:
            x32 = x.astype(jnp.float32)
            mean, var = jnp.mean(x32, axes), jnp.var(x32, axes)
            state = {"mean": momentum * state["mean"] + (1 - momentum) * mean,
                     "var": momentum * state["var"] + (1 - momentum) * var}
        else:
            mean, var = state["mean"], state["var"]
        y = (x - mean.astype(x.dtype)) * jax.lax.rsqrt(var + eps).astype(x.dtype)
        return _affine(params, y), state

    return init, apply


def _layer_norm(layer: Layer):
    size = layer.in_shapes[0][-1]
    eps = layer.args["epsilon"]

    def apply(params, state, inputs, *, train, key):
        (x,) = inputs
        mean = jnp.mean(x, -1, keepdims=True)
        var = jnp.var(x, -1, keepdims=True)
        return _affine(params, (x - mean) * jax.lax.rsqrt(var + eps)), state

    return (lambda key: (_norm_params(layer, size), {})), apply


BUILDERS: dict[str, Callable[[Layer], tuple[Callable, Callable]]] = {
    "conv2d": _conv2d,
    "max_pool": _pool("max"),
    "avg_pool": _pool("avg"),
    "global_avg_pool": _stateless(lambda layer, x: jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))),
    "dropout": _dropout,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "add": _merge(lambda layer, xs: sum(xs[1:], xs[0])),
    "concat": _merge(lambda layer, xs: jnp.concatenate(xs, axis=layer.args["axis"] if layer.args["axis"] < 0 else layer.args["axis"] + 1)),
    "dense": _dense,
    "activation": _stateless(lambda layer, x: x),  # the network applies layer.args["activation"]
    "flatten": _stateless(lambda layer, x: x.reshape(x.shape[0], -1)),
    "reshape": _stateless(lambda layer, x: x.reshape((x.shape[0], *layer.out_shape))),
}
