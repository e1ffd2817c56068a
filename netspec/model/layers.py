"""Layers, activations and initializers as pure JAX functions (stax's room).

Contract (in the spirit of jax.example_libraries.stax): a layer builder takes its input shapes,
its output shape (both without the batch axis, as the spec's pure-Python shape rules computed
them: `netspec.spec.layers`) and its spec fields as keyword arguments, and returns `(init, apply)`:

    dense(in_shapes, out_shape, *, units, use_bias, kernel_init, bias_init) -> (init, apply)
    init(key) -> (params, state)                     dicts of float32 arrays; state is {} for most
    apply(params, state, inputs, *, train, key) -> (y, state)

`BUILDERS` maps each layer type to its builder; `build(layer)` calls it with a checked layer's
fields. `inputs` is a list of arrays with the batch axis first; `apply` does NOT apply the layer's
`activation` field: the network does (`netspec.model.network`), so it can leave the output layer's
activation out and hand the loss logits. A test checks every builder's keyword arguments against
the registry's fields, and every output shape against the shape rule. `ACTIVATIONS` and
`INITIALIZERS` map the spec's names to jax's own functions (`activation(choice)`,
`initializer(choice)` with the choice's arguments).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from netspec.model.conv import Lowering, convolve
from netspec.spec.fields import as_pair
from netspec.spec.types import Layer

init_ = jax.nn.initializers

Shape = tuple[int, ...]  # one example's shape, without the batch axis
Arrays = dict[str, jax.Array]  # a layer's parameters, or its state, by name
Activation = Callable[[jax.Array], jax.Array]
Init = Callable[[jax.Array], tuple[Arrays, Arrays]]  # init(key) -> (params, state)


class Initializer(Protocol):
    """An initializer as a layer calls it, (key, shape, dtype) -> array: each of jax's is one."""

    def __call__(self, key: jax.Array, shape: Sequence[int], dtype: DTypeLike = ..., /) -> jax.Array: ...


class Apply(Protocol):
    """A layer's forward pass: apply(params, state, inputs, *, train, key) -> (y, state)."""

    def __call__(
        self, params: Arrays, state: Arrays, inputs: Sequence[jax.Array], *, train: bool, key: jax.Array
    ) -> tuple[jax.Array, Arrays]: ...


Builder = Callable[..., tuple[Init, Apply]]  # builder(in_shapes, out_shape, **the type's spec fields) -> (init, apply)


def known_zero(value: Any) -> bool:
    """Whether a spec's number is 0 as a Python number: a shortcut that skips work. A sweep member's
    traced number (`netspec.compile.members`) is never known to be 0, so the work is done, and done
    right for 0 too."""
    return isinstance(value, (int, float)) and value == 0


def _shifted(normal: Callable[[float], Initializer]) -> Callable[..., Initializer]:
    """jax's zero-mean `normal(stddev)` initializer with a `mean` too (Keras' arguments)."""

    def make(*, mean: float, stddev: float) -> Initializer:
        draw = normal(stddev)
        return lambda key, shape, dtype=jnp.float32: mean + draw(key, shape, dtype)

    return make


def _random_uniform(*, minval: float, maxval: float) -> Initializer:
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, minval, maxval)


def _orthogonal(*, scale: float) -> Initializer:
    return init_.orthogonal(scale)


def _constant(*, value: float) -> Initializer:
    return init_.constant(value)


# name -> a factory taking that initializer's spec arguments (their defaults are the registry's:
# a checked spec passes every one)
INITIALIZERS: dict[str, Callable[..., Initializer]] = {
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
    "orthogonal": _orthogonal,
    "zeros": lambda: init_.zeros,
    "ones": lambda: init_.ones,
    "constant": _constant,
}


ACTIVATIONS: dict[str, Callable[..., jax.Array]] = {
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


def _args(choice: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in choice.items() if k != "type"}


def initializer(choice: Mapping[str, Any]) -> Initializer:
    """A jax initializer `(key, shape, dtype) -> array` from a checked `{type, args}` mapping."""
    return INITIALIZERS[choice["type"]](**_args(choice))


def activation(choice: Mapping[str, Any]) -> Activation:
    """An activation function from a checked `{type, args}` mapping."""
    fn = ACTIVATIONS[choice["type"]]
    args = _args(choice)
    return partial(fn, **args) if args else fn


def _kernel_and_bias(
    kernel_init: Mapping[str, Any], bias_init: Mapping[str, Any], use_bias: bool, kernel_shape: Shape, outputs: int
) -> Init:
    """init(key) -> ({"kernel": float32 `kernel_shape`, "bias": float32 [outputs] if use_bias}, {})."""
    init_kernel, init_bias = initializer(kernel_init), initializer(bias_init)

    def init(key: jax.Array) -> tuple[Arrays, Arrays]:
        k1, k2 = jax.random.split(key)
        params = {"kernel": init_kernel(k1, kernel_shape, jnp.float32)}
        if use_bias:
            params["bias"] = init_bias(k2, (outputs,), jnp.float32)
        return params, {}

    return init


def _plus_bias(params: Arrays, y: jax.Array) -> jax.Array:
    return y + params["bias"].astype(y.dtype) if "bias" in params else y


def _no_params(key: jax.Array) -> tuple[Arrays, Arrays]:
    return {}, {}


def _stateless(fn: Callable[[Sequence[jax.Array]], jax.Array]) -> Apply:
    """An apply with no parameters whose output is `fn(inputs)` (the list of input arrays)."""

    def apply(
        params: Arrays, state: Arrays, inputs: Sequence[jax.Array], *, train: bool, key: jax.Array
    ) -> tuple[jax.Array, Arrays]:
        return fn(inputs), state

    return apply


def dense(
    in_shapes: Sequence[Shape],
    out_shape: Shape,
    *,
    units: int,
    use_bias: bool,
    kernel_init: Mapping[str, Any],
    bias_init: Mapping[str, Any],
) -> tuple[Init, Apply]:
    """Fully connected over the last axis: x [N, ..., in] @ kernel [in, units] + bias [units]
    (Keras's Dense). The network applies the layer's activation."""
    (in_shape,) = in_shapes

    def apply(
        params: Arrays, state: Arrays, inputs: Sequence[jax.Array], *, train: bool, key: jax.Array
    ) -> tuple[jax.Array, Arrays]:
        (x,) = inputs
        return _plus_bias(params, x @ params["kernel"].astype(x.dtype)), state

    return _kernel_and_bias(kernel_init, bias_init, use_bias, (in_shape[-1], units), units), apply


def conv2d(
    in_shapes: Sequence[Shape],
    out_shape: Shape,
    *,
    filters: int,
    kernel_size: int | Sequence[int],
    strides: int | Sequence[int],
    padding: str,
    dilation: int | Sequence[int],
    groups: int,
    use_bias: bool,
    kernel_init: Mapping[str, Any],
    bias_init: Mapping[str, Any],
    lowering: Lowering = "native",
) -> tuple[Init, Apply]:
    """2-D convolution of x [N, height, width, channels] with a kernel [kh, kw, channels / groups,
    filters] (NHWC / HWIO, as `lax.conv_general_dilated`; 'same' padding as XLA and TensorFlow pad).
    `lowering` is not a field of the layer but how this backend computes it: "native" (XLA's
    convolution) or "im2col" (slices and one matrix multiply; `netspec.model.conv`), chosen by
    `compile.chunk.conv_policy`; the parameters are the same either way."""
    c = in_shapes[0][-1]
    kh, kw = as_pair(kernel_size)
    window_strides, rhs_dilation = as_pair(strides), as_pair(dilation)

    def apply(
        params: Arrays, state: Arrays, inputs: Sequence[jax.Array], *, train: bool, key: jax.Array
    ) -> tuple[jax.Array, Arrays]:
        (x,) = inputs
        kernel = params["kernel"].astype(x.dtype)
        y = convolve(
            x, kernel, strides=window_strides, padding=padding, dilation=rhs_dilation, groups=groups, lowering=lowering
        )
        return _plus_bias(params, y), state

    return _kernel_and_bias(kernel_init, bias_init, use_bias, (kh, kw, c // groups, filters), filters), apply


def _pool(
    kind: str,
    in_shapes: Sequence[Shape],
    out_shape: Shape,
    pool_size: int | Sequence[int],
    strides: int | Sequence[int] | None,
    padding: str,
) -> tuple[Init, Apply]:
    window = (1, *as_pair(pool_size), 1)
    steps = (1, *as_pair(strides if strides is not None else pool_size), 1)
    xla_padding = padding.upper()
    (oh, ow, _) = out_shape
    tiles = window == steps and (xla_padding == "VALID" or (oh * window[1], ow * window[2]) == tuple(in_shapes[0][:2]))

    def apply(
        params: Arrays, state: Arrays, inputs: Sequence[jax.Array], *, train: bool, key: jax.Array
    ) -> tuple[jax.Array, Arrays]:
        (x,) = inputs
        if tiles:
            # Non-overlapping windows: a reshape and a reduction. Same values as reduce_window,
            # and on CPU its gradient is 5x cheaper than reduce_window's select_and_scatter.
            n, c = x.shape[0], x.shape[-1]
            x = x[:, : oh * window[1], : ow * window[2]].reshape(n, oh, window[1], ow, window[2], c)
            return (x.max(axis=(2, 4)) if kind == "max" else x.mean(axis=(2, 4))), state
        if kind == "max":
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, steps, xla_padding), state
        total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, steps, xla_padding)
        if xla_padding == "VALID":
            return total / (window[1] * window[2]), state
        count = jax.lax.reduce_window(
            jnp.ones(x.shape[1:3], x.dtype)[None, :, :, None], 0.0, jax.lax.add, window, steps, xla_padding
        )
        return total / count, state  # padding not counted, as Keras and TensorFlow do

    return _no_params, apply


def max_pool(
    in_shapes: Sequence[Shape],
    out_shape: Shape,
    *,
    pool_size: int | Sequence[int],
    strides: int | Sequence[int] | None,
    padding: str,
) -> tuple[Init, Apply]:
    """The maximum over each window of x [N, h, w, c] (strides default to the window)."""
    return _pool("max", in_shapes, out_shape, pool_size, strides, padding)


def avg_pool(
    in_shapes: Sequence[Shape],
    out_shape: Shape,
    *,
    pool_size: int | Sequence[int],
    strides: int | Sequence[int] | None,
    padding: str,
) -> tuple[Init, Apply]:
    """The mean over each window of x [N, h, w, c], padding not counted (Keras, TensorFlow)."""
    return _pool("avg", in_shapes, out_shape, pool_size, strides, padding)


def global_avg_pool(in_shapes: Sequence[Shape], out_shape: Shape) -> tuple[Init, Apply]:
    """The mean over every spatial axis: [N, h, w, c] -> [N, c]."""
    return _no_params, _stateless(lambda xs: jnp.mean(xs[0], axis=tuple(range(1, xs[0].ndim - 1))))


def dropout(in_shapes: Sequence[Shape], out_shape: Shape, *, rate: float) -> tuple[Init, Apply]:
    """Inverted dropout (Keras): while training each value is kept with probability 1 - rate and
    scaled by 1 / (1 - rate), with the layer's own key each step; identity at evaluation."""

    def apply(
        params: Arrays, state: Arrays, inputs: Sequence[jax.Array], *, train: bool, key: jax.Array
    ) -> tuple[jax.Array, Arrays]:
        (x,) = inputs
        if not train or known_zero(rate):
            return x, state
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x)), state

    return _no_params, apply


def _norm_params(size: int, center: bool, scale: bool) -> Arrays:
    params: Arrays = {}
    if scale:
        params["scale"] = jnp.ones((size,), jnp.float32)
    if center:
        params["offset"] = jnp.zeros((size,), jnp.float32)
    return params


def _affine(params: Arrays, y: jax.Array) -> jax.Array:
    if "scale" in params:
        y = y * params["scale"].astype(y.dtype)
    if "offset" in params:
        y = y + params["offset"].astype(y.dtype)
    return y


def batch_norm(
    in_shapes: Sequence[Shape], out_shape: Shape, *, momentum: float, epsilon: float, center: bool, scale: bool
) -> tuple[Init, Apply]:
    """Batch normalisation (Ioffe and Szegedy 2015) over every axis but the last, with Keras's
    running statistics: running = momentum * running + (1 - momentum) * batch (the biased batch
    variance), used at evaluation; the statistics are float32 model state."""
    size = in_shapes[0][-1]

    def init(key: jax.Array) -> tuple[Arrays, Arrays]:
        return _norm_params(size, center, scale), {
            "mean": jnp.zeros((size,), jnp.float32),
            "var": jnp.ones((size,), jnp.float32),
        }

    def apply(
        params: Arrays, state: Arrays, inputs: Sequence[jax.Array], *, train: bool, key: jax.Array
    ) -> tuple[jax.Array, Arrays]:
        (x,) = inputs
        axes = tuple(range(x.ndim - 1))
        if train:
            x32 = x.astype(jnp.float32)
            mean, var = jnp.mean(x32, axes), jnp.var(x32, axes)
            state = {
                "mean": momentum * state["mean"] + (1 - momentum) * mean,
                "var": momentum * state["var"] + (1 - momentum) * var,
            }
        else:
            mean, var = state["mean"], state["var"]
        y = (x - mean.astype(x.dtype)) * jax.lax.rsqrt(var + epsilon).astype(x.dtype)
        return _affine(params, y), state

    return init, apply


def layer_norm(
    in_shapes: Sequence[Shape], out_shape: Shape, *, epsilon: float, center: bool, scale: bool
) -> tuple[Init, Apply]:
    """Layer normalisation (Ba et al. 2016) of each example over its last axis."""
    size = in_shapes[0][-1]

    def apply(
        params: Arrays, state: Arrays, inputs: Sequence[jax.Array], *, train: bool, key: jax.Array
    ) -> tuple[jax.Array, Arrays]:
        (x,) = inputs
        mean = jnp.mean(x, -1, keepdims=True)
        var = jnp.var(x, -1, keepdims=True)
        return _affine(params, (x - mean) * jax.lax.rsqrt(var + epsilon)), state

    return (lambda key: (_norm_params(size, center, scale), {})), apply


def add(in_shapes: Sequence[Shape], out_shape: Shape) -> tuple[Init, Apply]:
    """The elementwise sum of the inputs (a residual connection)."""
    return _no_params, _stateless(lambda xs: sum(xs[1:], xs[0]))


def concat(in_shapes: Sequence[Shape], out_shape: Shape, *, axis: int) -> tuple[Init, Apply]:
    """The inputs concatenated along `axis` (counted without the batch axis)."""
    return _no_params, _stateless(lambda xs: jnp.concatenate(xs, axis=axis if axis < 0 else axis + 1))


def activation_only(in_shapes: Sequence[Shape], out_shape: Shape) -> tuple[Init, Apply]:
    """The identity: the network applies the layer's `activation`."""
    return _no_params, _stateless(lambda xs: xs[0])


def flatten(in_shapes: Sequence[Shape], out_shape: Shape) -> tuple[Init, Apply]:
    """Every axis but the batch into one."""
    return _no_params, _stateless(lambda xs: xs[0].reshape(xs[0].shape[0], -1))


def reshape(in_shapes: Sequence[Shape], out_shape: Shape, *, shape: Sequence[int]) -> tuple[Init, Apply]:
    """To `shape` (its -1 resolved by the shape rule: `out_shape`)."""
    return _no_params, _stateless(lambda xs: xs[0].reshape((xs[0].shape[0], *out_shape)))


# layer type -> builder(in_shapes, out_shape, **the type's spec fields but `activation`) -> (init, apply);
# tests/model/test_registry.py checks each builder's keyword arguments against the registry's fields.
BUILDERS: dict[str, Builder] = {
    "conv2d": conv2d,
    "max_pool": max_pool,
    "avg_pool": avg_pool,
    "global_avg_pool": global_avg_pool,
    "dropout": dropout,
    "batch_norm": batch_norm,
    "layer_norm": layer_norm,
    "add": add,
    "concat": concat,
    "dense": dense,
    "activation": activation_only,
    "flatten": flatten,
    "reshape": reshape,
}


def build(layer: Layer, *, lowering: Lowering | None = None) -> tuple[Init, Apply]:
    """(init, apply) of a checked layer: its builder with its spec fields as keyword arguments;
    `lowering` ("native" or "im2col"), for a conv2d only, says how this backend computes it."""
    fields = {k: v for k, v in layer.args.items() if k != "activation"}
    if lowering is not None:
        fields["lowering"] = lowering
    return BUILDERS[layer.type](layer.in_shapes, layer.out_shape, **fields)
