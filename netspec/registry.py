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

def number(default=None, *, minimum=None, exclusive_minimum=None, maximum=None, nullable=False, doc=""):
    s: dict = {"type": ["number", "null"] if nullable else "number"}
    if default is not None or nullable:
        s["default"] = default
    if minimum is not None:
        s["minimum"] = minimum
    if exclusive_minimum is not None:
        s["exclusiveMinimum"] = exclusive_minimum
    if maximum is not None:
        s["maximum"] = maximum
    if doc:
        s["description"] = doc
    return s


def integer(default=None, *, minimum=None, nullable=False, doc=""):
    s: dict = {"type": ["integer", "null"] if nullable else "integer"}
    if default is not None or nullable:
        s["default"] = default
    if minimum is not None:
        s["minimum"] = minimum
    if doc:
        s["description"] = doc
    return s


def boolean(default: bool, doc=""):
    s = {"type": "boolean", "default": default}
    if doc:
        s["description"] = doc
    return s


def choice(names, default=None, doc=""):
    s: dict = {"enum": list(names)}
    if default is not None:
        s["default"] = default
    if doc:
        s["description"] = doc
    return s


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


LAYERS: dict[str, LayerKind] = {
    "dense": LayerKind(
        fields={
            "units": integer(minimum=1, doc="number of output units"),
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

SCALARS = ("loss", "metrics", "learning_rate", "steps_per_second")
HISTOGRAMS = ("weights", "biases", "activations", "gradients")


def defaults_of(fields: Mapping[str, dict]) -> dict:
    """The default value of every field that has one."""
    return {k: s["default"] for k, s in fields.items() if "default" in s}
