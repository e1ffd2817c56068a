"""What a spec may name: layers, activations, initializers, losses, metrics, optimizers, schedules.

Contract: each registry is a plain dict from the name a spec uses to that entry's arguments, as
JSON Schema properties with their defaults and descriptions; `ACTIVATION_DOCS`, `INITIALIZER_DOCS`,
`LOSS_DOCS`, `METRIC_DOCS` (and each `LayerKind.doc`) say what a name computes, wherever Keras or
PyTorch would lead a reader to assume otherwise: the README's tables and editors show them. This module is pure Python (no jax): the schema and
`validate` are built from it. The JAX side (`netspec.layers`, `netspec.compile`) keeps a dict with
the same keys; `tests/test_registry.py` proves the two agree, and that every optimizer's and
schedule's arguments here are exactly those of optax's own signature, with optax's defaults.

A layer entry also carries its shape rule: `shape(layer, in_shapes) -> out_shape` on shapes without
the batch axis, raising `ShapeMismatch` when the inputs cannot work. The rule must equal what
`jax.eval_shape` gives for the layer's apply; the registry test walks every layer to prove it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping


class ShapeMismatch(ValueError):
    """A layer cannot take the shapes it is given. `field` names the spec key to point at."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


# -- small schema helpers ---------------------------------------------------------------------
# A nullable field lists "null" first: yaml-language-server builds a completion's text from the
# first type, and a null default under a first type "string" crashes its completion. A field with
# no default carries one example, which an editor inserts as the value to type over, so a
# completed skeleton is valid as inserted (an empty value would be null, a bare 0 below minimum).

INT32 = 2**31  # integers are 32-bit in the compiled program (JAX without x64): step counts, sizes and seeds past it would wrap or overflow there


def _scalar(kind: str, default, nullable: bool, doc: str, example=None, **bounds) -> dict:
    s: dict = {"type": ["null", kind] if nullable else kind}
    if default is not None or nullable:
        s["default"] = default
    s.update({k: v for k, v in bounds.items() if v is not None})
    if doc:
        s["description"] = doc
    if example is not None and "default" not in s:
        s["examples"] = [example]
    return s


def number(default=None, *, minimum=None, exclusive_minimum=None, maximum=None, nullable=False, doc="", example=None):
    return _scalar("number", default, nullable, doc, example, minimum=minimum, exclusiveMinimum=exclusive_minimum, maximum=maximum)


def integer(default=None, *, minimum=-INT32, maximum=INT32 - 1, nullable=False, doc="", example=None):
    return _scalar("integer", default, nullable, doc, example, minimum=minimum, maximum=maximum)


def boolean(default: bool, doc=""):
    return _scalar("boolean", default, False, doc)


def choice(names, default=None, doc=""):
    s: dict = {"type": "string", "enum": list(names)}
    if default is not None:
        s["default"] = default
    if doc:
        s["description"] = doc
    return s


MAX_WIDTH = 1 << 20  # units or filters per layer: a typo of a few zeros is an error, not an hour of allocation
# Sizes are typed ["integer"], which means "integer": for "integer" an editor's completion writes a
# new item as 0, an invalid size, and with an item `default` it reuses a tab stop; for a list of
# types it leaves the item for the writer to fill.
SIZE = {"type": ["integer"], "minimum": 1, "maximum": INT32 - 1}
SHAPE = {"type": "array", "items": SIZE, "minItems": 1, "maxItems": 8}

# -- activations ------------------------------------------------------------------------------
# name -> its arguments (an activation is written `relu` or `{type: leaky_relu, negative_slope: 0.2}`)

ACTIVATIONS: dict[str, dict] = {
    "linear": {},
    "sigmoid": {},
    "tanh": {},
    "relu": {},
    "relu6": {},
    "leaky_relu": {"negative_slope": number(0.01, doc="the slope for x < 0")},
    "elu": {"alpha": number(1.0, doc="the value elu approaches for large negative x is -alpha")},
    "selu": {},
    "gelu": {"approximate": boolean(True, "true: the tanh approximation (jax.nn.gelu's default); false: the exact erf form (Keras's and PyTorch's default)")},
    "softplus": {},
    "swish": {},
    "silu": {},
    "softmax": {},
    "log_softmax": {},
}

# What each activation computes, where a Keras or PyTorch user would assume otherwise (docs, editors).
ACTIVATION_DOCS: dict[str, str] = {
    "linear": "the identity (no activation)",
    "sigmoid": "1 / (1 + exp(-x)); before binary_crossentropy it is fused into the loss (logits form)",
    "tanh": "tanh(x)",
    "relu": "max(x, 0)",
    "relu6": "min(max(x, 0), 6)",
    "leaky_relu": "x for x >= 0, negative_slope * x below; slope 0.01 as PyTorch (Keras's LeakyReLU layer: 0.3)",
    "elu": "x for x > 0, alpha * (exp(x) - 1) below",
    "selu": "scale * elu(x, alpha) with the fixed SELU constants (scale 1.0507, alpha 1.6733)",
    "gelu": "x * Phi(x); by default its tanh approximation (jax's default); `approximate: false` is the exact erf form that Keras and PyTorch use by default",
    "softplus": "log(1 + exp(x))",
    "swish": "x * sigmoid(x) (the same function as silu)",
    "silu": "x * sigmoid(x) (the same function as swish)",
    "softmax": "exp(x) / sum(exp(x)) over the last axis; before a categorical cross-entropy it is fused into the loss (logits form)",
    "log_softmax": "x - logsumexp(x) over the last axis",
}

# -- initializers -----------------------------------------------------------------------------
# A kernel is [inputs, units] (dense) or [height, width, channels / groups, filters] (conv2d), as in
# Keras; fan_in = inputs (times the kernel's area), fan_out = units or filters (times the area).

INITIALIZERS: dict[str, dict] = {
    "random_normal": {"mean": number(0.0, doc="mean of the normal distribution"),
                      "stddev": number(1.0, exclusive_minimum=0, doc="standard deviation (tf.random_normal's 1.0, not Keras's 0.05)")},
    "truncated_normal": {"mean": number(0.0, doc="mean of the normal distribution"),
                         "stddev": number(1.0, exclusive_minimum=0, doc="standard deviation before truncation at 2 standard deviations")},
    "random_uniform": {"minval": number(0.0, doc="lower bound (included)"), "maxval": number(1.0, doc="upper bound (excluded)")},
    "glorot_uniform": {},
    "glorot_normal": {},
    "xavier_uniform": {},
    "xavier_normal": {},
    "he_uniform": {},
    "he_normal": {},
    "lecun_uniform": {},
    "lecun_normal": {},
    "orthogonal": {"scale": number(1.0, doc="multiplies the orthogonal matrix")},
    "zeros": {},
    "ones": {},
    "constant": {"value": number(0.0, doc="every element's value")},
}

# What each initializer draws: the fan modes and truncation follow Keras (jax.nn.initializers);
# PyTorch's *_normal_ initializers draw untruncated normals and its layers default to other ones.
INITIALIZER_DOCS: dict[str, str] = {
    "random_normal": "mean + stddev * N(0, 1); stddev 1.0 as TensorFlow 1's tf.random_normal (Keras's RandomNormal: 0.05)",
    "truncated_normal": "mean + stddev * N(0, 1) redrawn outside 2 standard deviations (not rescaled), as Keras's TruncatedNormal (whose stddev defaults to 0.05)",
    "random_uniform": "uniform in [minval, maxval); default [0, 1) (Keras's RandomUniform: [-0.05, 0.05])",
    "glorot_uniform": "uniform in [-l, l], l = sqrt(6 / (fan_in + fan_out)); the default kernel_init, as in Keras (PyTorch's layers default to kaiming_uniform with a = sqrt(5))",
    "glorot_normal": "normal truncated at 2 standard deviations and rescaled to variance 2 / (fan_in + fan_out), as Keras (PyTorch's xavier_normal_ is not truncated)",
    "xavier_uniform": "the same as glorot_uniform",
    "xavier_normal": "the same as glorot_normal",
    "he_uniform": "uniform in [-l, l], l = sqrt(6 / fan_in) (PyTorch's kaiming_uniform_ with a = 0)",
    "he_normal": "normal truncated at 2 standard deviations and rescaled to variance 2 / fan_in, as Keras (PyTorch's kaiming_normal_ is not truncated)",
    "lecun_uniform": "uniform in [-l, l], l = sqrt(3 / fan_in)",
    "lecun_normal": "normal truncated at 2 standard deviations and rescaled to variance 1 / fan_in, as Keras",
    "orthogonal": "a random (semi-)orthogonal matrix times scale; a conv kernel is taken as [height * width * channels, filters]",
    "zeros": "0; the default bias_init",
    "ones": "1",
    "constant": "value",
}

# Initializers that need a weight matrix (fan-in/fan-out); never a bias vector.
MATRIX_INITIALIZERS = {"glorot_uniform", "glorot_normal", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal",
                       "lecun_uniform", "lecun_normal", "orthogonal"}

# -- layers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerKind:
    """A layer type: its spec fields (JSON Schema properties), which are required, its shape rule."""

    fields: Mapping[str, dict]
    shape: Callable[[Mapping, list[tuple]], tuple]
    required: tuple[str, ...] = ()
    inputs: str = "one"  # "one" or "many"
    doc: str = ""


# The schema puts the choice of names in place of these fields (`netspec.schema`); here they carry
# what the field means.
ACTIVATION_FIELD = {"description": "activation applied to the layer's output: a name or {type, its arguments}; default: linear (or model.defaults.activation)"}
KERNEL_INIT_FIELD = {"description": "initializer of the kernel: a name or {type, its arguments}; default: glorot_uniform (or model.defaults.kernel_init)"}
BIAS_INIT_FIELD = {"description": "initializer of the bias: a name or {type, its arguments}, not one that scales by fan-in/fan-out; default: zeros (or model.defaults.bias_init)"}
USE_BIAS_FIELD = boolean(True, "add a bias (default true, or model.defaults.use_bias)")


def _one(in_shapes):
    return in_shapes[0]


def _dense_shape(layer, in_shapes):
    (shape,) = in_shapes
    return tuple(shape[:-1]) + (layer["units"],)


def _same_shape(layer, in_shapes):
    return tuple(in_shapes[0])


def _flatten_shape(layer, in_shapes):
    n = 1
    for d in in_shapes[0]:
        n *= d
    return (n,)


def _reshape_shape(layer, in_shapes):
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
        raise ShapeMismatch(f"cannot reshape {tuple(in_shapes[0])} ({n} values) to {tuple(target)} ({known} values)", "shape")
    return tuple(target)


def pair(default=None, *, minimum=1, doc="", example=None):
    """An int or a [height, width] pair (anyOf by JSON type, so each branch's error reads plainly)."""
    s: dict = {"anyOf": [
        {"type": "integer", "minimum": minimum, "maximum": INT32 - 1},
        {"type": "array", "items": {"type": "integer", "minimum": minimum, "maximum": INT32 - 1}, "minItems": 2, "maxItems": 2},
    ]}
    if default is not None:
        s["default"] = default
    elif example is not None:
        s["examples"] = [example]
    if doc:
        s["description"] = doc
    return s


def as_pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _image(layer_type, shape):
    if len(shape) != 3:
        raise ShapeMismatch(
            f"{layer_type} needs an input of shape [height, width, channels], found {list(shape)}; "
            f"for flat images put a reshape layer before it, e.g. {{type: reshape, shape: [28, 28, 1]}}")
    return shape


def window_out(size: int, window: int, stride: int, padding: str, dilation: int = 1) -> int:
    """Output length of a convolution or pooling window along one axis (as XLA/TensorFlow compute it)."""
    if padding == "same":
        return -(-size // stride)
    span = dilation * (window - 1) + 1
    return (size - span) // stride + 1 if size >= span else 0


def _conv2d_shape(layer, in_shapes):
    h, w, c = _image("conv2d", in_shapes[0])
    (kh, kw), (sh, sw), (dh, dw) = as_pair(layer["kernel_size"]), as_pair(layer["strides"]), as_pair(layer["dilation"])
    groups, filters = layer["groups"], layer["filters"]
    if c % groups:
        raise ShapeMismatch(f"groups={groups} must divide the {c} input channels", "groups")
    if filters % groups:
        raise ShapeMismatch(f"groups={groups} must divide filters={filters}", "groups")
    oh, ow = window_out(h, kh, sh, layer["padding"], dh), window_out(w, kw, sw, layer["padding"], dw)
    if oh < 1 or ow < 1:
        raise ShapeMismatch(f"a {kh}x{kw} kernel (dilation {dh}x{dw}) does not fit the {h}x{w} input with padding valid", "kernel_size")
    return (oh, ow, filters)


def _pool_shape(layer_type):
    def rule(layer, in_shapes):
        h, w, c = _image(layer_type, in_shapes[0])
        (ph, pw) = as_pair(layer["pool_size"])
        (sh, sw) = as_pair(layer["strides"] if layer.get("strides") is not None else layer["pool_size"])
        oh, ow = window_out(h, ph, sh, layer["padding"]), window_out(w, pw, sw, layer["padding"])
        if oh < 1 or ow < 1:
            raise ShapeMismatch(f"a {ph}x{pw} pool does not fit the {h}x{w} input with padding valid", "pool_size")
        return (oh, ow, c)
    return rule


def _global_pool_shape(layer, in_shapes):
    shape = in_shapes[0]
    if len(shape) < 2:
        raise ShapeMismatch(f"global_avg_pool needs an input with spatial axes and channels, found {list(shape)}")
    return (shape[-1],)


def _add_shape(layer, in_shapes):
    first = tuple(in_shapes[0])
    for s in in_shapes[1:]:
        if tuple(s) != first:
            raise ShapeMismatch(f"add needs inputs of one shape, found {' and '.join(str(list(x)) for x in in_shapes)}", "inputs")
    return first


def _concat_shape(layer, in_shapes):
    rank = len(in_shapes[0])
    axis = layer["axis"]
    if not -rank <= axis < rank:
        raise ShapeMismatch(f"axis {axis} is out of range for inputs of rank {rank} (batch axis not counted)", "axis")
    axis %= rank
    for s in in_shapes[1:]:
        if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, in_shapes[0])) if i != axis):
            raise ShapeMismatch(f"concat along axis {layer['axis']} needs the other axes equal, found {' and '.join(str(list(x)) for x in in_shapes)}", "inputs")
    out = list(in_shapes[0])
    out[axis] = sum(s[axis] for s in in_shapes)
    return tuple(out)


PADDING = choice(["valid", "same"], "valid", "valid: no padding; same: output size ceil(input / stride), as TensorFlow's SAME (an odd padding puts the extra row or column at the bottom or right)")
OPTIONAL_STRIDES = {"anyOf": [{"type": "null"}, *pair()["anyOf"]], "default": None,
                    "description": "step between windows: an int or [height, width]; default (null): pool_size, as Keras and PyTorch"}

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
        fields={"activation": ACTIVATION_FIELD},
        required=("activation",),
        shape=_same_shape,
        doc="an activation function on its own",
    ),
    "flatten": LayerKind(fields={}, shape=_flatten_shape,
                         doc="all axes but the batch into one, in row-major order of channels-last data (as Keras; a PyTorch flatten of [channels, height, width] orders the values differently)"),
    "reshape": LayerKind(
        fields={"shape": {"type": "array", "items": {"type": ["integer"], "maximum": INT32 - 1, "anyOf": [
                              {"const": -1, "errorMessage": "expected a size >= 1, or -1 for the one size inferred from the others"},
                              {"minimum": 1}]},
                          "minItems": 1, "contains": {"const": -1}, "minContains": 0, "maxContains": 1,
                          "description": "the new shape of one example, without the batch axis; one -1 is inferred from the others",
                          "examples": [[28, 28, 1]], "errorMessage": "expected a shape: a list of sizes >= 1, with at most one -1 (inferred)"}},
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
            "groups": integer(1, minimum=1, doc="split channels and filters into this many independent groups (both must divide by it)"),
            "activation": ACTIVATION_FIELD, "use_bias": USE_BIAS_FIELD, "kernel_init": KERNEL_INIT_FIELD, "bias_init": BIAS_INIT_FIELD,
        },
        required=("filters", "kernel_size"),
        shape=_conv2d_shape,
        doc="2-D convolution over channels-last [height, width, channels] inputs, as Keras (PyTorch's Conv2d is channels-first); "
            "kernel [height, width, channels / groups, filters]; padding `same` is TensorFlow's SAME",
    ),
    "max_pool": LayerKind(
        fields={"pool_size": pair(2, doc="the window: an int or [height, width]"), "strides": OPTIONAL_STRIDES, "padding": PADDING},
        shape=_pool_shape("max_pool"), doc="maximum over each window; strides default to pool_size; `same` pads with -inf",
    ),
    "avg_pool": LayerKind(
        fields={"pool_size": pair(2, doc="the window: an int or [height, width]"), "strides": OPTIONAL_STRIDES, "padding": PADDING},
        shape=_pool_shape("avg_pool"),
        doc="mean over each window; strides default to pool_size; with padding `same` the padded cells are not counted "
            "(as Keras and TensorFlow; PyTorch's AvgPool2d counts them by default, count_include_pad=True)",
    ),
    "global_avg_pool": LayerKind(fields={}, shape=_global_pool_shape, doc="mean over all axes but the batch and the last (channels): [h, w, c] -> [c]"),
    "dropout": LayerKind(
        fields={"rate": number(minimum=0, maximum=0.999, doc="fraction of units dropped while training", example=0.5)},
        required=("rate",), shape=_same_shape,
        doc="while training, zeroes each unit with probability `rate` and scales the kept ones by 1 / (1 - rate) "
            "(inverted dropout, as Keras and PyTorch), with its own random key each step; identity at evaluation",
    ),
    "batch_norm": LayerKind(
        fields={"momentum": number(0.99, minimum=0, maximum=1, doc="weight of the old running statistics: running = momentum * running + (1 - momentum) * batch (Keras's convention; PyTorch's momentum is 1 minus this)"),
                "epsilon": number(1e-3, exclusive_minimum=0, doc="added to the variance before the square root (Keras's 1e-3; PyTorch's is 1e-5)"),
                "center": boolean(True, "learn an offset (beta) added after normalising"),
                "scale": boolean(True, "learn a scale (gamma) multiplied after normalising")},
        shape=_same_shape,
        doc="(x - mean) / sqrt(var + epsilon) * scale + offset over every axis but the last (channels): while training with the batch's "
            "mean and biased variance, updating running = momentum * running + (1 - momentum) * batch (Keras's convention and defaults, "
            "momentum 0.99, epsilon 1e-3; PyTorch's momentum 0.1 weighs the new batch, and its running variance is unbiased); "
            "at evaluation with the running statistics (model state, starting at mean 0 and variance 1)",
    ),
    "layer_norm": LayerKind(
        fields={"epsilon": number(1e-5, exclusive_minimum=0, doc="added to the variance before the square root (PyTorch's 1e-5; Keras's is 1e-3)"),
                "center": boolean(True, "learn an offset (beta) per feature"),
                "scale": boolean(True, "learn a scale (gamma) per feature")},
        shape=_same_shape,
        doc="(x - mean) / sqrt(var + epsilon) * scale + offset over each example's last axis (biased variance); epsilon 1e-5 as PyTorch (Keras: 1e-3)",
    ),
    "add": LayerKind(fields={}, shape=_add_shape, inputs="many", doc="elementwise sum of its `inputs` (e.g. a residual connection)"),
    "concat": LayerKind(fields={"axis": integer(-1, doc="the axis to join along, without the batch axis (-1: the last)")},
                        shape=_concat_shape, inputs="many", doc="concatenates its `inputs` along `axis` (the batch axis not counted)"),
}

# Fields that `model.defaults` may set; each applies to the layers whose type has that field.
DEFAULTABLE = ("activation", "kernel_init", "bias_init", "use_bias")

# -- losses -----------------------------------------------------------------------------------
# `kind` says what the labels and the output are, so `check` can match loss, output and data.

LOSSES: dict[str, dict] = {
    "binary_crossentropy": {"from_logits": boolean(False, "the output is a logit (last layer linear), not a probability")},
    "categorical_crossentropy": {
        "from_logits": boolean(False, "the output is logits (last layer linear), not probabilities"),
        "label_smoothing": number(0.0, minimum=0, maximum=1, doc="a: train on targets (1 - a) * y + a / classes (as Keras and PyTorch)"),
    },
    "sparse_categorical_crossentropy": {"from_logits": boolean(False, "the output is logits (last layer linear), not probabilities")},
    "mean_squared_error": {},
    "mean_absolute_error": {},
    "huber": {"delta": number(1.0, exclusive_minimum=0, doc="where the loss turns from quadratic to linear")},
}

# What each loss computes. Every loss is a mean over the output units of each example, then over the
# batch. The cross-entropies take the output's logits: a sigmoid or softmax output is fused into
# the loss (`FUSED_ACTIVATION`), so they are exact and never clip (Keras, given probabilities,
# clips them to [1e-7, 1 - 1e-7]; PyTorch's BCELoss clamps each log at -100).
LOSS_DOCS: dict[str, str] = {
    "binary_crossentropy": "-(y log p + (1 - y) log(1 - p)) per output unit, targets in [0, 1]; computed from the logit z of the sigmoid output "
                           "as -(y log_sigmoid(z) + (1 - y) log_sigmoid(-z)): exact, no clipping of p (Keras clips p to [1e-7, 1 - 1e-7]); "
                           "`from_logits: true` takes z from a linear last layer",
    "categorical_crossentropy": "-sum(y log p) over the classes, y one-hot or a distribution (integer labels are made one-hot); computed from "
                                "the logits z of the softmax output as -sum(y log_softmax(z)): exact, no clipping (Keras clips p at 1e-7); "
                                "label_smoothing a trains on (1 - a) y + a / classes",
    "sparse_categorical_crossentropy": "-log p[label] for an integer class label; computed as -log_softmax(z)[label] from the logits of the "
                                       "softmax output: exact, no clipping; PyTorch's CrossEntropyLoss is this with `from_logits: true`",
    "mean_squared_error": "(p - y)^2, mean over the output units",
    "mean_absolute_error": "|p - y|, mean over the output units",
    "huber": "0.5 e^2 where |e| <= delta, delta (|e| - delta / 2) beyond, e = p - y (Keras's Huber, PyTorch's HuberLoss; "
             "PyTorch's SmoothL1Loss is this divided by delta)",
}

# For each cross-entropy loss, the output activation it fuses with into the stable logits form.
FUSED_ACTIVATION = {
    "binary_crossentropy": "sigmoid",
    "categorical_crossentropy": "softmax",
    "sparse_categorical_crossentropy": "softmax",
}

METRICS: dict[str, dict] = {
    "accuracy": {},
    "top_k_accuracy": {"k": integer(5, minimum=1, doc="count a hit when the label is among the k largest outputs")},
    "mean_squared_error": {},
    "mean_absolute_error": {},
}

METRIC_DOCS: dict[str, str] = {
    "accuracy": "fraction of correct classes: the largest output (the first of equals) for the categorical losses; for "
                "binary_crossentropy each unit is class 1 when its probability is above 0.5 (a logit above 0), a target "
                "above 0.5 is class 1, averaged over the units",
    "top_k_accuracy": "fraction of examples whose label is among the k largest outputs (tag top_<k>_accuracy)",
    "mean_squared_error": "(p - y)^2 of the model output (probabilities after a fused sigmoid or softmax, not logits)",
    "mean_absolute_error": "|p - y| of the model output (probabilities after a fused sigmoid or softmax, not logits)",
}

# -- optimizers -------------------------------------------------------------------------------
# Each optimizer's arguments exactly as optax's own function names them, with optax's defaults.
# `learning_rate` is common to all and may be a schedule; it is not repeated here. Arguments that
# take functions, masks or dtypes are not spec-able and are left out (listed in OPTAX_SKIPPED).

OPTAX_SKIPPED = {"mask", "weight_decay_mask", "trust_ratio_mask", "mu_dtype", "accumulator_dtype", "dtype_momentum", "key", "learning_rate"}

_EPS = number  # readability below
OPTIMIZERS: dict[str, dict] = {
    "sgd": {"momentum": number(None, nullable=True), "nesterov": boolean(False)},
    "adam": {"b1": number(0.9), "b2": number(0.999), "eps": number(1e-8), "eps_root": number(0.0), "nesterov": boolean(False)},
    "adamw": {"b1": number(0.9), "b2": number(0.999), "eps": number(1e-8), "eps_root": number(0.0), "weight_decay": number(1e-4), "nesterov": boolean(False)},
    "adamax": {"b1": number(0.9), "b2": number(0.999), "eps": number(1e-8)},
    "adamaxw": {"b1": number(0.9), "b2": number(0.999), "eps": number(1e-8), "weight_decay": number(1e-4)},
    "nadam": {"b1": number(0.9), "b2": number(0.999), "eps": number(1e-8), "eps_root": number(0.0), "nesterov": boolean(True)},
    "nadamw": {"b1": number(0.9), "b2": number(0.999), "eps": number(1e-8), "eps_root": number(0.0), "weight_decay": number(1e-4), "nesterov": boolean(True)},
    "radam": {"b1": number(0.9), "b2": number(0.999), "eps": number(1e-8), "eps_root": number(0.0), "threshold": number(5.0), "nesterov": boolean(False)},
    "rmsprop": {
        "decay": number(0.9), "eps": number(1e-8), "initial_scale": number(0.0), "eps_in_sqrt": boolean(True),
        "centered": boolean(False), "momentum": number(None, nullable=True), "nesterov": boolean(False), "bias_correction": boolean(False),
    },
    "adagrad": {"initial_accumulator_value": number(0.1), "eps": number(1e-7)},
    "adadelta": {"rho": number(0.9), "eps": number(1e-6), "weight_decay": number(0.0)},
    "adafactor": {
        "min_dim_size_to_factor": integer(128), "decay_rate": number(0.8), "decay_offset": integer(0),
        "multiply_by_parameter_scale": boolean(True), "clipping_threshold": number(1.0, nullable=True),
        "momentum": number(None, nullable=True), "weight_decay_rate": number(None, nullable=True),
        "eps": number(1e-30), "factored": boolean(True),
    },
    "lamb": {"b1": number(0.9), "b2": number(0.999), "eps": number(1e-6), "eps_root": number(0.0), "weight_decay": number(0.0)},
    "lars": {"weight_decay": number(0.0), "trust_coefficient": number(0.001), "eps": number(0.0), "momentum": number(0.9), "nesterov": boolean(False)},
    "lion": {"b1": number(0.9), "b2": number(0.99), "weight_decay": number(1e-3)},
    "novograd": {"b1": number(0.9), "b2": number(0.25), "eps": number(1e-6), "eps_root": number(0.0), "weight_decay": number(0.0)},
    "fromage": {"min_norm": number(1e-6)},
    "yogi": {"b1": number(0.9), "b2": number(0.999), "eps": number(1e-3)},
    "amsgrad": {"b1": number(0.9), "b2": number(0.999), "eps": number(1e-8), "eps_root": number(0.0), "bias_correction_mu": boolean(True), "bias_correction_nu": boolean(True)},
    "adabelief": {"b1": number(0.9), "b2": number(0.999), "eps": number(1e-16), "eps_root": number(1e-16), "nesterov": boolean(False)},
    "adan": {"b1": number(0.98), "b2": number(0.92), "b3": number(0.99), "eps": number(1e-8), "eps_root": number(1e-8), "weight_decay": number(0.0)},
    "sm3": {"momentum": number(0.9)},
    "noisy_sgd": {"eta": number(0.01), "gamma": number(0.55), "seed": integer(None, minimum=0, nullable=True)},
    "sign_sgd": {},
    "optimistic_gradient_descent": {"alpha": number(1.0), "beta": number(1.0)},
    "rprop": {"eta_minus": number(0.5), "eta_plus": number(1.2), "min_step_size": number(1e-6), "max_step_size": number(50.0)},
}

# What each optimizer argument means (optax's docstrings, shortened); (optimizer, argument) where
# one optimizer means something else by the name.
_OPTIMIZER_ARG_DOCS = {
    "b1": "decay rate of the average of past gradients (first moment)",
    "b2": "decay rate of the average of past squared gradients (second moment)",
    "b3": "decay rate of the average of the squared term",
    "eps": "small constant added to the denominator (outside the square root), against division by zero",
    "eps_root": "small constant added inside the square root of the denominator (needed for gradients through the optimizer)",
    "nesterov": "use Nesterov momentum",
    "momentum": "decay rate of the momentum term; null: no momentum",
    "weight_decay": "strength of decoupled weight decay, multiplied by the learning rate (as PyTorch's AdamW)",
    "threshold": "threshold for variance tractability",
    "decay": "decay rate of the average of past squared gradients",
    "initial_scale": "initial value of the squared-gradient average (PyTorch uses 0, TensorFlow 1 uses 1)",
    "eps_in_sqrt": "add eps inside the square root of the denominator rather than outside",
    "centered": "divide by the variance of past gradients rather than their second moment",
    "bias_correction": "bias-correct the second-moment estimate (and the first with centered)",
    "initial_accumulator_value": "initial value of the squared-gradient accumulator",
    "rho": "decay rate of the running averages of squared gradients and updates",
    "min_dim_size_to_factor": "factor the second-moment statistics only of dimensions at least this large",
    "decay_rate": "controls the second moment's decay schedule",
    "decay_offset": "the step a fine-tuning run starts from (shifts the decay schedule)",
    "multiply_by_parameter_scale": "scale the learning rate by each parameter's norm (else it is an absolute step size)",
    "clipping_threshold": "clip each update's root mean square at this (>= 1); null: no clipping",
    "weight_decay_rate": "rate of weight decay; null: none",
    "factored": "use factored second-moment estimates",
    "trust_coefficient": "multiplier of the trust ratio",
    "min_norm": "smallest norm used for gradients and parameters in the trust ratio, against division by zero",
    "bias_correction_mu": "bias-correct the first-moment estimate (false: as the AMSGrad paper)",
    "bias_correction_nu": "bias-correct the second-moment estimate before its running maximum (false: as the AMSGrad paper)",
    "eta": "initial variance of the Gaussian noise added to the gradients",
    "gamma": "noise variance decays as (1 + step) ** -gamma",
    "seed": "seed of the gradient noise; null: the spec's seed",
    "alpha": "coefficient of the current gradient",
    "beta": "coefficient of the negative momentum (the previous gradient)",
    "eta_minus": "factor that shrinks a step size when its gradient changes sign",
    "eta_plus": "factor that grows a step size when its gradient keeps its sign",
    "min_step_size": "smallest step size",
    "max_step_size": "largest step size",
}
_OPTIMIZER_ARG_DOCS_FOR = {
    ("adamax", "b2"): "decay rate of the running maximum of past gradients",
    ("adamaxw", "b2"): "decay rate of the running maximum of past gradients",
    ("lion", "b1"): "rate to combine the momentum and the current gradient",
    ("lion", "b2"): "decay rate of the momentum of past gradients",
    ("adan", "b1"): "decay rate of the average of gradients",
    ("adan", "b2"): "decay rate of the average of gradient differences",
    ("lars", "momentum"): "decay rate of the momentum",
    ("lars", "eps"): "constant added to the trust ratio's denominator",
    ("sm3", "momentum"): "decay rate of the momentum term",
    ("adabelief", "eps_root"): "small constant added to the second moment of the prediction error",
}
for _name, _args in OPTIMIZERS.items():
    for _arg, _schema in _args.items():
        _schema["description"] = _OPTIMIZER_ARG_DOCS_FOR.get((_name, _arg), _OPTIMIZER_ARG_DOCS[_arg])

# -- learning-rate schedules ------------------------------------------------------------------
# spec name -> (optax function name, its arguments as optax names them)

_INIT_VALUE = number(doc="the learning rate at step 0", example=0.01)
SCHEDULES: dict[str, tuple[str, dict, tuple[str, ...]]] = {
    "constant": ("constant_schedule", {"value": number(doc="the learning rate at every step", example=0.01)}, ("value",)),
    "exponential_decay": (
        "exponential_decay",
        {"init_value": _INIT_VALUE,
         "transition_steps": integer(minimum=1, doc="steps over which the rate is multiplied by decay_rate once", example=1000),
         "decay_rate": number(doc="factor per transition_steps", example=0.5),
         "transition_begin": integer(0, minimum=0, doc="steps at init_value before the decay starts"),
         "staircase": boolean(False, "decay in whole steps of transition_steps (else smoothly)"),
         "end_value": number(None, nullable=True, doc="bound the decayed rate (below for a decay, above for growth); null: no bound")},
        ("init_value", "transition_steps", "decay_rate"),
    ),
    "cosine_decay": (
        "cosine_decay_schedule",
        {"init_value": _INIT_VALUE, "decay_steps": integer(minimum=1, doc="steps over which the rate decays", example=1000),
         "alpha": number(0.0, doc="the final rate as a fraction of init_value"), "exponent": number(1.0, doc="power of the cosine curve")},
        ("init_value", "decay_steps"),
    ),
    "warmup_cosine_decay": (
        "warmup_cosine_decay_schedule",
        {"init_value": _INIT_VALUE, "peak_value": number(doc="the rate at the end of the warmup", example=0.1),
         "warmup_steps": integer(minimum=0, doc="steps of linear warmup from init_value to peak_value", example=100),
         "decay_steps": integer(minimum=1, doc="total steps of warmup and cosine decay together", example=1000),
         "end_value": number(0.0, doc="the rate after decay_steps"), "exponent": number(1.0, doc="power of the cosine curve")},
        ("init_value", "peak_value", "warmup_steps", "decay_steps"),
    ),
    "piecewise_constant": (
        "piecewise_constant_schedule",
        {"init_value": _INIT_VALUE, "boundaries_and_scales": {
            "type": ["null", "object"], "default": None,
            # YAML reads `1000:` as an integer key, JSON as a string: both are steps
            "propertyNames": {"pattern": "^(0|[1-9][0-9]*)$", "minimum": 0, "errorMessage": "expected a step (an integer >= 0) as the key"},
            "additionalProperties": {"type": "number", "description": "the factor the rate is multiplied by from this step on"},
            "description": "{step: scale}: from each step on, the rate is multiplied by its scale",
            "examples": [{"1000": 0.1}],
        }},
        ("init_value",),
    ),
    "linear": (
        "linear_schedule",
        {"init_value": _INIT_VALUE, "end_value": number(doc="the rate after transition_steps", example=0.001),
         "transition_steps": integer(minimum=1, doc="steps of the linear change", example=1000),
         "transition_begin": integer(0, minimum=0, doc="steps at init_value before the change starts")},
        ("init_value", "end_value", "transition_steps"),
    ),
}

SOURCES = ("inline", "mnist", "fashion_mnist", "idx", "npz", "csv")  # data: exactly one of these
STANDARD = {  # the named data sets: (train examples, test examples, example shape, classes), known without reading them
    "mnist": (60000, 10000, (28, 28), 10),
    "fashion_mnist": (60000, 10000, (28, 28), 10),
}

SCALARS = ("loss", "metrics", "learning_rate", "steps_per_second")
HISTOGRAMS = ("weights", "biases", "activations", "gradients")


def defaults_of(fields: Mapping[str, dict]) -> dict:
    """The default value of every field that has one."""
    return {k: s["default"] for k, s in fields.items() if "default" in s}
