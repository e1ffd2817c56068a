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

from netspec.check import Layer

init_ = jax.nn.initializers


def _random_normal(mean=0.0, stddev=1.0):
    normal = init_.normal(stddev)
    return lambda key, shape, dtype=jnp.float32: mean + normal(key, shape, dtype)


def _truncated_normal(mean=0.0, stddev=1.0):
    normal = init_.truncated_normal(stddev)
    return lambda key, shape, dtype=jnp.float32: mean + normal(key, shape, dtype)


def _random_uniform(minval=0.0, maxval=1.0):
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, minval, maxval)


INITIALIZERS: dict[str, Callable[..., Callable]] = {
    "random_normal": _random_normal,
    "truncated_normal": _truncated_normal,
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


# -- layers -----------------------------------------------------------------------------------

def _dense(layer: Layer):
    (in_shape,) = layer.in_shapes
    units, use_bias = layer.args["units"], layer.args["use_bias"]
    kernel_init, bias_init = initializer(layer.args["kernel_init"]), initializer(layer.args["bias_init"])

    def init(key):
        k1, k2 = jax.random.split(key)
        params = {"kernel": kernel_init(k1, (in_shape[-1], units), jnp.float32)}
        if use_bias:
            params["bias"] = bias_init(k2, (units,), jnp.float32)
        return params, {}

    def apply(params, state, inputs, *, train, key):
        (x,) = inputs
        y = x @ params["kernel"].astype(x.dtype)
        if use_bias:
            y = y + params["bias"].astype(x.dtype)
        return y, state

    return init, apply


def _stateless(fn):
    """A layer with no parameters whose output is `fn(layer, x)`."""

    def build(layer: Layer):
        def init(key):
            return {}, {}

        def apply(params, state, inputs, *, train, key):
            return fn(layer, inputs[0]), state

        return init, apply

    return build


BUILDERS: dict[str, Callable[[Layer], tuple[Callable, Callable]]] = {
    "dense": _dense,
    "activation": _stateless(lambda layer, x: x),  # the network applies layer.args["activation"]
    "flatten": _stateless(lambda layer, x: x.reshape(x.shape[0], -1)),
    "reshape": _stateless(lambda layer, x: x.reshape((x.shape[0], *layer.out_shape))),
}
