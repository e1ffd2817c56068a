"""What a spec may name: layers, activations, initializers, losses, metrics, optimizers, schedules.

Contract: each registry is a plain dict from the name a spec uses to that entry's arguments, as
JSON Schema properties with their defaults. This module is pure Python (no jax): the schema and
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

def _scalar(kind: str, default, nullable: bool, doc: str, **bounds) -> dict:
    s: dict = {"type": [kind, "null"] if nullable else kind}
    if default is not None or nullable:
        s["default"] = default
    s.update({k: v for k, v in bounds.items() if v is not None})
    if doc:
        s["description"] = doc
    return s


def number(default=None, *, minimum=None, exclusive_minimum=None, maximum=None, nullable=False, doc=""):
    return _scalar("number", default, nullable, doc, minimum=minimum, exclusiveMinimum=exclusive_minimum, maximum=maximum)


def integer(default=None, *, minimum=None, nullable=False, doc=""):
    return _scalar("integer", default, nullable, doc, minimum=minimum)


def boolean(default: bool, doc=""):
    return _scalar("boolean", default, False, doc)


def choice(names, default=None, doc=""):
    s: dict = {"enum": list(names)}
    if default is not None:
        s["default"] = default
    if doc:
        s["description"] = doc
    return s


MAX_WIDTH = 1 << 20  # units or filters per layer: a typo of a few zeros is an error, not an hour of allocation
SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 8}

# -- activations ------------------------------------------------------------------------------
# name -> its arguments (an activation is written `relu` or `{type: leaky_relu, negative_slope: 0.2}`)

ACTIVATIONS: dict[str, dict] = {
    "linear": {},
    "sigmoid": {},
    "tanh": {},
    "relu": {},
    "relu6": {},
    "leaky_relu": {"negative_slope": number(0.01)},
    "elu": {"alpha": number(1.0)},
    "selu": {},
    "gelu": {"approximate": boolean(True)},
    "softplus": {},
    "swish": {},
    "silu": {},
    "softmax": {},
    "log_softmax": {},
}

# -- initializers -----------------------------------------------------------------------------

INITIALIZERS: dict[str, dict] = {
    "random_normal": {"mean": number(0.0), "stddev": number(1.0, exclusive_minimum=0)},
    "truncated_normal": {"mean": number(0.0), "stddev": number(1.0, exclusive_minimum=0)},
    "random_uniform": {"minval": number(0.0), "maxval": number(1.0)},
    "glorot_uniform": {},
    "glorot_normal": {},
    "xavier_uniform": {},
    "xavier_normal": {},
    "he_uniform": {},
    "he_normal": {},
    "lecun_uniform": {},
    "lecun_normal": {},
    "orthogonal": {"scale": number(1.0)},
    "zeros": {},
    "ones": {},
    "constant": {"value": number(0.0)},
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


ACTIVATION_FIELD = {"description": "activation applied to the layer's output (name or {type, args})"}
INIT_FIELD = {"description": "initializer (name or {type, args})"}


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
    if target.count(-1) > 1:
        raise ShapeMismatch("at most one dimension of shape may be -1", "shape")
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


def pair(default=None, *, minimum=1, doc=""):
    """An int or a [height, width] pair."""
    s: dict = {
        "if": {"type": "integer"}, "then": {"minimum": minimum},
        "else": {"type": "array", "items": {"type": "integer", "minimum": minimum}, "minItems": 2, "maxItems": 2},
    }
    if default is not None:
        s["default"] = default
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


PADDING = choice(["valid", "same"], "valid")
OPTIONAL_STRIDES = {"if": {"type": "null"}, "then": {}, "else": pair(), "default": None, "description": "int or [height, width]; default: pool_size"}

LAYERS: dict[str, LayerKind] = {
    "dense": LayerKind(
        fields={
            "units": {**integer(minimum=1, doc="number of output units"), "maximum": MAX_WIDTH},
            "activation": ACTIVATION_FIELD,
            "use_bias": boolean(True),
            "kernel_init": INIT_FIELD,
            "bias_init": INIT_FIELD,
        },
        required=("units",),
        shape=_dense_shape,
        doc="fully connected: activation(x @ kernel + bias) over the last axis",
    ),
    "activation": LayerKind(
        fields={"activation": ACTIVATION_FIELD},
        required=("activation",),
        shape=_same_shape,
        doc="an activation function on its own",
    ),
    "flatten": LayerKind(fields={}, shape=_flatten_shape, doc="all axes but the batch into one"),
    "reshape": LayerKind(
        fields={"shape": {"type": "array", "items": {"type": "integer", "minimum": -1, "not": {"const": 0}}, "minItems": 1}},
        required=("shape",),
        shape=_reshape_shape,
        doc="to `shape` (without the batch axis; one -1 is inferred)",
    ),
    "conv2d": LayerKind(
        fields={
            "filters": {**integer(minimum=1), "maximum": MAX_WIDTH}, "kernel_size": pair(doc="int or [height, width]"), "strides": pair(1),
            "padding": PADDING, "dilation": pair(1), "groups": integer(1, minimum=1),
            "activation": ACTIVATION_FIELD, "use_bias": boolean(True), "kernel_init": INIT_FIELD, "bias_init": INIT_FIELD,
        },
        required=("filters", "kernel_size"),
        shape=_conv2d_shape,
        doc="2-D convolution over [height, width, channels] inputs",
    ),
    "max_pool": LayerKind(
        fields={"pool_size": pair(2), "strides": OPTIONAL_STRIDES, "padding": PADDING},
        shape=_pool_shape("max_pool"), doc="maximum over each window",
    ),
    "avg_pool": LayerKind(
        fields={"pool_size": pair(2), "strides": OPTIONAL_STRIDES, "padding": PADDING},
        shape=_pool_shape("avg_pool"), doc="mean over each window (padding not counted)",
    ),
    "global_avg_pool": LayerKind(fields={}, shape=_global_pool_shape, doc="mean over all spatial axes: [h, w, c] -> [c]"),
    "dropout": LayerKind(
        fields={"rate": number(minimum=0, maximum=0.999, doc="fraction of units dropped while training")},
        required=("rate",), shape=_same_shape, doc="drops units while training (its own key each step); identity at evaluation",
    ),
    "batch_norm": LayerKind(
        fields={"momentum": number(0.99, minimum=0, maximum=1), "epsilon": number(1e-3, exclusive_minimum=0),
                "center": boolean(True), "scale": boolean(True)},
        shape=_same_shape,
        doc="normalises over the batch while training, with running statistics (model state) at evaluation",
    ),
    "layer_norm": LayerKind(
        fields={"epsilon": number(1e-5, exclusive_minimum=0), "center": boolean(True), "scale": boolean(True)},
        shape=_same_shape, doc="normalises each example over its last axis",
    ),
    "add": LayerKind(fields={}, shape=_add_shape, inputs="many", doc="elementwise sum of its `inputs` (e.g. a residual connection)"),
    "concat": LayerKind(fields={"axis": integer(-1)}, shape=_concat_shape, inputs="many", doc="concatenates its `inputs` along `axis`"),
}

# Fields that `model.defaults` may set; each applies to the layers whose type has that field.
DEFAULTABLE = ("activation", "kernel_init", "bias_init", "use_bias")

# -- losses -----------------------------------------------------------------------------------
# `kind` says what the labels and the output are, so `check` can match loss, output and data.

LOSSES: dict[str, dict] = {
    "binary_crossentropy": {"from_logits": boolean(False, "the output is a logit (linear), not a probability")},
    "categorical_crossentropy": {
        "from_logits": boolean(False, "the output is logits (linear), not probabilities"),
        "label_smoothing": number(0.0, minimum=0, maximum=1),
    },
    "sparse_categorical_crossentropy": {"from_logits": boolean(False, "the output is logits (linear), not probabilities")},
    "mean_squared_error": {},
    "mean_absolute_error": {},
    "huber": {"delta": number(1.0, exclusive_minimum=0)},
}

# For each cross-entropy loss, the output activation it fuses with into the stable logits form.
FUSED_ACTIVATION = {
    "binary_crossentropy": "sigmoid",
    "categorical_crossentropy": "softmax",
    "sparse_categorical_crossentropy": "softmax",
}

METRICS: dict[str, dict] = {
    "accuracy": {},
    "top_k_accuracy": {"k": integer(5, minimum=1)},
    "mean_squared_error": {},
    "mean_absolute_error": {},
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
    "noisy_sgd": {"eta": number(0.01), "gamma": number(0.55), "seed": integer(None, nullable=True)},
    "sign_sgd": {},
    "optimistic_gradient_descent": {"alpha": number(1.0), "beta": number(1.0)},
    "rprop": {"eta_minus": number(0.5), "eta_plus": number(1.2), "min_step_size": number(1e-6), "max_step_size": number(50.0)},
}

# -- learning-rate schedules ------------------------------------------------------------------
# spec name -> (optax function name, its arguments as optax names them)

SCHEDULES: dict[str, tuple[str, dict, tuple[str, ...]]] = {
    "constant": ("constant_schedule", {"value": number()}, ("value",)),
    "exponential_decay": (
        "exponential_decay",
        {"init_value": number(), "transition_steps": integer(minimum=1), "decay_rate": number(), "transition_begin": integer(0, minimum=0),
         "staircase": boolean(False), "end_value": number(None, nullable=True)},
        ("init_value", "transition_steps", "decay_rate"),
    ),
    "cosine_decay": (
        "cosine_decay_schedule",
        {"init_value": number(), "decay_steps": integer(minimum=1), "alpha": number(0.0), "exponent": number(1.0)},
        ("init_value", "decay_steps"),
    ),
    "warmup_cosine_decay": (
        "warmup_cosine_decay_schedule",
        {"init_value": number(), "peak_value": number(), "warmup_steps": integer(minimum=0), "decay_steps": integer(minimum=1),
         "end_value": number(0.0), "exponent": number(1.0)},
        ("init_value", "peak_value", "warmup_steps", "decay_steps"),
    ),
    "piecewise_constant": (
        "piecewise_constant_schedule",
        {"init_value": number(), "boundaries_and_scales": {
            "type": ["object", "null"], "default": None,
            "additionalProperties": {"type": "number"},
            "description": "{step: scale}: at each step the value is multiplied by its scale",
        }},
        ("init_value",),
    ),
    "linear": (
        "linear_schedule",
        {"init_value": number(), "end_value": number(), "transition_steps": integer(minimum=1), "transition_begin": integer(0, minimum=0)},
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
