"""The layer registry: every layer type a spec may name, with its fields and its shape rule.

Contract. `LAYERS` maps a layer type to its `LayerKind`: the type's spec fields (JSON Schema
properties with their defaults and descriptions), which of them are required, whether it takes one
input or many, what it computes where Keras or PyTorch would suggest otherwise (`doc`, for the
README and editors), and its shape rule `shape(fields, in_shapes) -> out_shape` on shapes without
the batch axis, which raises `ShapeMismatch` (naming the field to point at) when the inputs cannot
work. `DEFAULTABLE` declares the fields `model.defaults` may set, each with its default. The
schema, the resolver, `check` (shapes through the whole model), `cost` and the docs read it; the
JAX side is `netspec.model.layers.BUILDERS`, with the same keys: tests/model/test_registry.py proves that
each builder takes exactly these fields and that each shape rule gives what `jax.eval_shape` gives
for the layer. Pure Python, no jax.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netspec.spec.fields import INT32, MAX_WIDTH, Schema, as_pair, boolean, choice, integer, number, pair

Shape = tuple[int, ...]  # one example's shape, without the batch axis
Fields = Mapping[str, Any]  # a layer's spec fields, as checked (every default filled in)


class ShapeMismatch(ValueError):
    """A layer cannot take the shapes it is given. `field` names the spec key to point at."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class LayerKind:
    """A layer type: its spec fields (JSON Schema properties), which are required, its shape rule."""

    fields: Mapping[str, Schema]
    shape: Callable[[Fields, Sequence[Sequence[int]]], Shape]
    required: tuple[str, ...] = ()
    inputs: str = "one"  # "one" or "many"
    doc: str = ""


def _defaultable(name: str, default: object, what: str, **schema: object) -> Schema:
    """A field `model.defaults` may set: its schema, its default, and a description saying both."""
    shown = default if isinstance(default, str) else json.dumps(default)
    return {**schema, "default": default, "description": f"{what}; default: {shown} (or model.defaults.{name})"}


# The fields `model.defaults` may set, each declared once, here, with its default: the schema states
# it (putting the choice of names in place of the name-or-mapping ones: `netspec.spec.schema`), the
# docs show it, and the resolver (`netspec.spec.defaults`) gives it to every layer that has the field
# and neither sets it nor gets it from model.defaults.
ACTIVATION_FIELD = _defaultable(
    "activation", "linear", "activation applied to the layer's output: a name or {type, its arguments}"
)


KERNEL_INIT_FIELD = _defaultable(
    "kernel_init", "glorot_uniform", "initializer of the kernel: a name or {type, its arguments}"
)


BIAS_INIT_FIELD = _defaultable(
    "bias_init",
    "zeros",
    "initializer of the bias: a name or {type, its arguments}, not one that scales by fan-in/fan-out",
)


USE_BIAS_FIELD = _defaultable("use_bias", True, "add a bias", type="boolean")


DEFAULTABLE: dict[str, Schema] = {
    "activation": ACTIVATION_FIELD,
    "kernel_init": KERNEL_INIT_FIELD,
    "bias_init": BIAS_INIT_FIELD,
    "use_bias": USE_BIAS_FIELD,
}


def _dense_shape(layer: Fields, in_shapes: Sequence[Sequence[int]]) -> Shape:
    (shape,) = in_shapes
    return tuple(shape[:-1]) + (layer["units"],)


def _same_shape(layer: Fields, in_shapes: Sequence[Sequence[int]]) -> Shape:
    return tuple(in_shapes[0])


def _flatten_shape(layer: Fields, in_shapes: Sequence[Sequence[int]]) -> Shape:
    n = 1
    for d in in_shapes[0]:
        n *= d
    return (n,)


def _reshape_shape(layer: Fields, in_shapes: Sequence[Sequence[int]]) -> Shape:
    target = list(layer["shape"])
    n = 1
    for d in in_shapes[0]:
        n *= d
    known = 1
    for d in target:
        if d != -1:
            known *= d
    if -1 in target:
        if known == 0 or n % known:
            raise ShapeMismatch(f"cannot reshape {tuple(in_shapes[0])} ({n} values) to {tuple(target)}", "shape")
        target[target.index(-1)] = n // known
    elif known != n:
        raise ShapeMismatch(
            f"cannot reshape {tuple(in_shapes[0])} ({n} values) to {tuple(target)} ({known} values)", "shape"
        )
    return tuple(target)


def _image(layer_type: str, shape: Sequence[int]) -> Sequence[int]:
    if len(shape) != 3:
        raise ShapeMismatch(
            f"{layer_type} needs an input of shape [height, width, channels], found {list(shape)}; "
            f"for flat images put a reshape layer before it, e.g. {{type: reshape, shape: [28, 28, 1]}}"
        )
    return shape


def window_out(size: int, window: int, stride: int, padding: str, dilation: int = 1) -> int:
    """Output length of a convolution or pooling window along one axis (as XLA/TensorFlow compute it)."""
    if padding == "same":
        return -(-size // stride)
    span = dilation * (window - 1) + 1
    return (size - span) // stride + 1 if size >= span else 0


def _conv2d_shape(layer: Fields, in_shapes: Sequence[Sequence[int]]) -> Shape:
    h, w, c = _image("conv2d", in_shapes[0])
    (kh, kw), (sh, sw), (dh, dw) = as_pair(layer["kernel_size"]), as_pair(layer["strides"]), as_pair(layer["dilation"])
    groups, filters = layer["groups"], layer["filters"]
    if c % groups:
        raise ShapeMismatch(f"groups={groups} must divide the {c} input channels", "groups")
    if filters % groups:
        raise ShapeMismatch(f"groups={groups} must divide filters={filters}", "groups")
    oh, ow = window_out(h, kh, sh, layer["padding"], dh), window_out(w, kw, sw, layer["padding"], dw)
    if oh < 1 or ow < 1:
        raise ShapeMismatch(
            f"a {kh}x{kw} kernel (dilation {dh}x{dw}) does not fit the {h}x{w} input with padding valid", "kernel_size"
        )
    return (oh, ow, filters)


def _pool_shape(layer_type: str) -> Callable[[Fields, Sequence[Sequence[int]]], Shape]:
    def rule(layer: Fields, in_shapes: Sequence[Sequence[int]]) -> Shape:
        h, w, c = _image(layer_type, in_shapes[0])
        (ph, pw) = as_pair(layer["pool_size"])
        (sh, sw) = as_pair(layer["strides"] if layer["strides"] is not None else layer["pool_size"])
        oh, ow = window_out(h, ph, sh, layer["padding"]), window_out(w, pw, sw, layer["padding"])
        if oh < 1 or ow < 1:
            raise ShapeMismatch(f"a {ph}x{pw} pool does not fit the {h}x{w} input with padding valid", "pool_size")
        return (oh, ow, c)

    return rule


def _global_pool_shape(layer: Fields, in_shapes: Sequence[Sequence[int]]) -> Shape:
    shape = in_shapes[0]
    if len(shape) < 2:
        raise ShapeMismatch(f"global_avg_pool needs an input with spatial axes and channels, found {list(shape)}")
    return (shape[-1],)


def _add_shape(layer: Fields, in_shapes: Sequence[Sequence[int]]) -> Shape:
    first = tuple(in_shapes[0])
    for s in in_shapes[1:]:
        if tuple(s) != first:
            raise ShapeMismatch(
                f"add needs inputs of one shape, found {' and '.join(str(list(x)) for x in in_shapes)}", "inputs"
            )
    return first


def _concat_shape(layer: Fields, in_shapes: Sequence[Sequence[int]]) -> Shape:
    rank = len(in_shapes[0])
    axis = layer["axis"]
    if not -rank <= axis < rank:
        raise ShapeMismatch(f"axis {axis} is out of range for inputs of rank {rank} (batch axis not counted)", "axis")
    axis %= rank
    for s in in_shapes[1:]:
        if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, in_shapes[0], strict=True)) if i != axis):
            raise ShapeMismatch(
                f"concat along axis {layer['axis']} needs the other axes equal, found {' and '.join(str(list(x)) for x in in_shapes)}",
                "inputs",
            )
    out = list(in_shapes[0])
    out[axis] = sum(s[axis] for s in in_shapes)
    return tuple(out)


PADDING = choice(
    ["valid", "same"],
    "valid",
    "valid: no padding; same: output size ceil(input / stride), as TensorFlow's SAME (an odd padding puts the extra row or column at the bottom or right)",
)


OPTIONAL_STRIDES = {
    "anyOf": [{"type": "null"}, *pair()["anyOf"]],
    "default": None,
    "description": "step between windows: an int or [height, width]; default (null): pool_size, as Keras and PyTorch",
}


LAYERS: dict[str, LayerKind] = {
    "dense": LayerKind(
        fields={
            "units": integer(minimum=1, maximum=MAX_WIDTH, doc="number of output units", example=10),
            "activation": ACTIVATION_FIELD,
            "use_bias": USE_BIAS_FIELD,
            "kernel_init": KERNEL_INIT_FIELD,
            "bias_init": BIAS_INIT_FIELD,
        },
        required=("units",),
        shape=_dense_shape,
        doc="fully connected: activation(x @ kernel + bias) over the last axis; kernel [inputs, units] as Keras (PyTorch's Linear stores [units, inputs])",
    ),
    "activation": LayerKind(
        fields={"activation": {"description": "the activation function: a name or {type, its arguments}"}},
        required=("activation",),
        shape=_same_shape,
        doc="an activation function on its own",
    ),
    "flatten": LayerKind(
        fields={},
        shape=_flatten_shape,
        doc="all axes but the batch into one, in row-major order of channels-last data (as Keras; a PyTorch flatten of [channels, height, width] orders the values differently)",
    ),
    "reshape": LayerKind(
        fields={
            "shape": {
                "type": "array",
                "items": {
                    "type": ["integer"],
                    "maximum": INT32 - 1,
                    "anyOf": [
                        {
                            "const": -1,
                            "errorMessage": "expected a size >= 1, or -1 for the one size inferred from the others",
                        },
                        {"minimum": 1},
                    ],
                },
                "minItems": 1,
                "contains": {"const": -1},
                "minContains": 0,
                "maxContains": 1,
                "description": "the new shape of one example, without the batch axis; one -1 is inferred from the others",
                "examples": [[28, 28, 1]],
                "errorMessage": "expected a shape: a list of sizes >= 1, with at most one -1 (inferred)",
            }
        },
        required=("shape",),
        shape=_reshape_shape,
        doc="to `shape` (without the batch axis; one -1 is inferred), in row-major order",
    ),
    "conv2d": LayerKind(
        fields={
            "filters": integer(minimum=1, maximum=MAX_WIDTH, doc="number of output channels", example=32),
            "kernel_size": pair(doc="the window: an int or [height, width]", example=3),
            "strides": pair(1, doc="step between windows: an int or [height, width]"),
            "padding": PADDING,
            "dilation": pair(1, doc="spacing between the kernel's taps: an int or [height, width]"),
            "groups": integer(
                1,
                minimum=1,
                doc="split channels and filters into this many independent groups (both must divide by it)",
            ),
            "activation": ACTIVATION_FIELD,
            "use_bias": USE_BIAS_FIELD,
            "kernel_init": KERNEL_INIT_FIELD,
            "bias_init": BIAS_INIT_FIELD,
        },
        required=("filters", "kernel_size"),
        shape=_conv2d_shape,
        doc="2-D convolution over channels-last [height, width, channels] inputs, as Keras (PyTorch's Conv2d is channels-first); "
        "kernel [height, width, channels / groups, filters]; padding `same` is TensorFlow's SAME",
    ),
    "max_pool": LayerKind(
        fields={
            "pool_size": pair(2, doc="the window: an int or [height, width]"),
            "strides": OPTIONAL_STRIDES,
            "padding": PADDING,
        },
        shape=_pool_shape("max_pool"),
        doc="maximum over each window; strides default to pool_size; `same` pads with -inf",
    ),
    "avg_pool": LayerKind(
        fields={
            "pool_size": pair(2, doc="the window: an int or [height, width]"),
            "strides": OPTIONAL_STRIDES,
            "padding": PADDING,
        },
        shape=_pool_shape("avg_pool"),
        doc="mean over each window; strides default to pool_size; with padding `same` the padded cells are not counted "
        "(as Keras and TensorFlow; PyTorch's AvgPool2d counts them by default, count_include_pad=True)",
    ),
    "global_avg_pool": LayerKind(
        fields={},
        shape=_global_pool_shape,
        doc="mean over all axes but the batch and the last (channels): [h, w, c] -> [c]",
    ),
    "dropout": LayerKind(
        fields={"rate": number(minimum=0, maximum=0.999, doc="fraction of units dropped while training", example=0.5)},
        required=("rate",),
        shape=_same_shape,
        doc="while training, zeroes each unit with probability `rate` and scales the kept ones by 1 / (1 - rate) "
        "(inverted dropout, as Keras and PyTorch), with its own random key each step; identity at evaluation",
    ),
    "batch_norm": LayerKind(
        fields={
            "momentum": number(
                0.99,
                minimum=0,
                maximum=1,
                doc="weight of the old running statistics: running = momentum * running + (1 - momentum) * batch (Keras's convention; PyTorch's momentum is 1 minus this)",
            ),
            "epsilon": number(
                1e-3,
                exclusive_minimum=0,
                doc="added to the variance before the square root (Keras's 1e-3; PyTorch's is 1e-5)",
            ),
            "center": boolean(True, "learn an offset (beta) added after normalising"),
            "scale": boolean(True, "learn a scale (gamma) multiplied after normalising"),
        },
        shape=_same_shape,
        doc="(x - mean) / sqrt(var + epsilon) * scale + offset over every axis but the last (channels): while training with the batch's "
        "mean and biased variance, updating running = momentum * running + (1 - momentum) * batch (Keras's convention and defaults, "
        "momentum 0.99, epsilon 1e-3; PyTorch's momentum 0.1 weighs the new batch, and its running variance is unbiased); "
        "at evaluation with the running statistics (model state, starting at mean 0 and variance 1)",
    ),
    "layer_norm": LayerKind(
        fields={
            "epsilon": number(
                1e-5,
                exclusive_minimum=0,
                doc="added to the variance before the square root (PyTorch's 1e-5; Keras's is 1e-3)",
            ),
            "center": boolean(True, "learn an offset (beta) per feature"),
            "scale": boolean(True, "learn a scale (gamma) per feature"),
        },
        shape=_same_shape,
        doc="(x - mean) / sqrt(var + epsilon) * scale + offset over each example's last axis (biased variance); epsilon 1e-5 as PyTorch (Keras: 1e-3)",
    ),
    "add": LayerKind(
        fields={}, shape=_add_shape, inputs="many", doc="elementwise sum of its `inputs` (e.g. a residual connection)"
    ),
    "concat": LayerKind(
        fields={"axis": integer(-1, doc="the axis to join along, without the batch axis (-1: the last)")},
        shape=_concat_shape,
        inputs="many",
        doc="concatenates its `inputs` along `axis` (the batch axis not counted)",
    ),
}
