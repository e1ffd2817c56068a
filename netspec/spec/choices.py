"""What a spec may name besides layers: activations, initializers, losses, metrics, optimizers and
schedules, and the summaries TensorBoard may be asked for.

Contract. Each registry is a plain dict from the name a spec writes to that entry's arguments, as
JSON Schema properties with their defaults and descriptions (`SCHEDULES` also names the optax
function and the required arguments). `ACTIVATION_DOCS`, `INITIALIZER_DOCS`, `LOSS_DOCS` and
`METRIC_DOCS` say what a name computes, wherever Keras or PyTorch would lead a reader to assume
otherwise: the README's tables and editors show them. `LOSS_KINDS` states once what each loss
means (its targets, the output activation it fuses with) for every stage that must agree: check's
label rules, the compiled loss and metrics, `netspec predict`. The schema and the docs are built
from here; the JAX side (`netspec.model.layers`, `netspec.compile.optim`) keeps dicts with the same
keys, and tests/model/test_registry.py proves the two agree and that every optimizer's and schedule's
arguments are exactly those of optax's own signature, with optax's defaults. Pure Python, no jax.
"""

from __future__ import annotations

from typing import NamedTuple

from netspec.spec.fields import Schema, boolean, integer, number

ACTIVATIONS: dict[str, dict[str, Schema]] = {
    "linear": {},
    "sigmoid": {},
    "tanh": {},
    "relu": {},
    "relu6": {},
    "leaky_relu": {"negative_slope": number(0.01, doc="the slope for x < 0")},
    "elu": {"alpha": number(1.0, doc="the value elu approaches for large negative x is -alpha")},
    "selu": {},
    "gelu": {
        "approximate": boolean(
            True,
            "true: the tanh approximation (jax.nn.gelu's default); false: the exact erf form (Keras's and PyTorch's default)",
        )
    },
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


INITIALIZERS: dict[str, dict[str, Schema]] = {
    "random_normal": {
        "mean": number(0.0, doc="mean of the normal distribution"),
        "stddev": number(1.0, exclusive_minimum=0, doc="standard deviation (tf.random_normal's 1.0, not Keras's 0.05)"),
    },
    "truncated_normal": {
        "mean": number(0.0, doc="mean of the normal distribution"),
        "stddev": number(1.0, exclusive_minimum=0, doc="standard deviation before truncation at 2 standard deviations"),
    },
    "random_uniform": {
        "minval": number(0.0, doc="lower bound (included)"),
        "maxval": number(1.0, doc="upper bound (excluded)"),
    },
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
MATRIX_INITIALIZERS = {
    "glorot_uniform",
    "glorot_normal",
    "xavier_uniform",
    "xavier_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "orthogonal",
}


LOSSES: dict[str, dict[str, Schema]] = {
    "binary_crossentropy": {
        "from_logits": boolean(False, "the output is a logit (last layer linear), not a probability")
    },
    "categorical_crossentropy": {
        "from_logits": boolean(False, "the output is logits (last layer linear), not probabilities"),
        "label_smoothing": number(
            0.0, minimum=0, maximum=1, doc="a: train on targets (1 - a) * y + a / classes (as Keras and PyTorch)"
        ),
    },
    "sparse_categorical_crossentropy": {
        "from_logits": boolean(False, "the output is logits (last layer linear), not probabilities")
    },
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


class LossKind(NamedTuple):
    """What a loss means, stated once for every stage that must agree: check's label rules, the
    JAX loss, its metrics and confusion matrix, `netspec predict` and the closing report.

    `targets`: "binary" (per output unit, class 0 or 1, or a probability), "classes" (one class
    per example: a class number, made one-hot where the loss wants it, or targets per class),
    "class_index" (one class number per example, as it is), "real" (any numbers: regression).
    `fused_activation`: the output activation the loss fuses with into its stable logits form
    (log-sigmoid, log-softmax), None for a regression loss. A classification loss is one that
    fuses."""

    targets: str
    fused_activation: str | None

    @property
    def classification(self) -> bool:
        return self.fused_activation is not None


LOSS_KINDS: dict[str, LossKind] = {
    "binary_crossentropy": LossKind("binary", "sigmoid"),
    "categorical_crossentropy": LossKind("classes", "softmax"),
    "sparse_categorical_crossentropy": LossKind("class_index", "softmax"),
    "mean_squared_error": LossKind("real", None),
    "mean_absolute_error": LossKind("real", None),
    "huber": LossKind("real", None),
}

# For each cross-entropy loss, the output activation it fuses with into the stable logits form.
FUSED_ACTIVATION: dict[str, str] = {
    name: kind.fused_activation for name, kind in LOSS_KINDS.items() if kind.fused_activation is not None
}


METRICS: dict[str, dict[str, Schema]] = {
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


OPTAX_SKIPPED = {
    "mask",
    "weight_decay_mask",
    "trust_ratio_mask",
    "mu_dtype",
    "accumulator_dtype",
    "dtype_momentum",
    "key",
    "learning_rate",
}


OPTIMIZERS: dict[str, dict[str, Schema]] = {
    "sgd": {"momentum": number(None, nullable=True), "nesterov": boolean(False)},
    "adam": {
        "b1": number(0.9),
        "b2": number(0.999),
        "eps": number(1e-8),
        "eps_root": number(0.0),
        "nesterov": boolean(False),
    },
    "adamw": {
        "b1": number(0.9),
        "b2": number(0.999),
        "eps": number(1e-8),
        "eps_root": number(0.0),
        "weight_decay": number(1e-4),
        "nesterov": boolean(False),
    },
    "adamax": {"b1": number(0.9), "b2": number(0.999), "eps": number(1e-8)},
    "adamaxw": {"b1": number(0.9), "b2": number(0.999), "eps": number(1e-8), "weight_decay": number(1e-4)},
    "nadam": {
        "b1": number(0.9),
        "b2": number(0.999),
        "eps": number(1e-8),
        "eps_root": number(0.0),
        "nesterov": boolean(True),
    },
    "nadamw": {
        "b1": number(0.9),
        "b2": number(0.999),
        "eps": number(1e-8),
        "eps_root": number(0.0),
        "weight_decay": number(1e-4),
        "nesterov": boolean(True),
    },
    "radam": {
        "b1": number(0.9),
        "b2": number(0.999),
        "eps": number(1e-8),
        "eps_root": number(0.0),
        "threshold": number(5.0),
        "nesterov": boolean(False),
    },
    "rmsprop": {
        "decay": number(0.9),
        "eps": number(1e-8),
        "initial_scale": number(0.0),
        "eps_in_sqrt": boolean(True),
        "centered": boolean(False),
        "momentum": number(None, nullable=True),
        "nesterov": boolean(False),
        "bias_correction": boolean(False),
    },
    "adagrad": {"initial_accumulator_value": number(0.1), "eps": number(1e-7)},
    "adadelta": {"rho": number(0.9), "eps": number(1e-6), "weight_decay": number(0.0)},
    "adafactor": {
        "min_dim_size_to_factor": integer(128),
        "decay_rate": number(0.8),
        "decay_offset": integer(0),
        "multiply_by_parameter_scale": boolean(True),
        "clipping_threshold": number(1.0, nullable=True),
        "momentum": number(None, nullable=True),
        "weight_decay_rate": number(None, nullable=True),
        "eps": number(1e-30),
        "factored": boolean(True),
    },
    "lamb": {
        "b1": number(0.9),
        "b2": number(0.999),
        "eps": number(1e-6),
        "eps_root": number(0.0),
        "weight_decay": number(0.0),
    },
    "lars": {
        "weight_decay": number(0.0),
        "trust_coefficient": number(0.001),
        "eps": number(0.0),
        "momentum": number(0.9),
        "nesterov": boolean(False),
    },
    "lion": {"b1": number(0.9), "b2": number(0.99), "weight_decay": number(1e-3)},
    "novograd": {
        "b1": number(0.9),
        "b2": number(0.25),
        "eps": number(1e-6),
        "eps_root": number(0.0),
        "weight_decay": number(0.0),
    },
    "fromage": {"min_norm": number(1e-6)},
    "yogi": {"b1": number(0.9), "b2": number(0.999), "eps": number(1e-3)},
    "amsgrad": {
        "b1": number(0.9),
        "b2": number(0.999),
        "eps": number(1e-8),
        "eps_root": number(0.0),
        "bias_correction_mu": boolean(True),
        "bias_correction_nu": boolean(True),
    },
    "adabelief": {
        "b1": number(0.9),
        "b2": number(0.999),
        "eps": number(1e-16),
        "eps_root": number(1e-16),
        "nesterov": boolean(False),
    },
    "adan": {
        "b1": number(0.98),
        "b2": number(0.92),
        "b3": number(0.99),
        "eps": number(1e-8),
        "eps_root": number(1e-8),
        "weight_decay": number(0.0),
    },
    "sm3": {"momentum": number(0.9)},
    "noisy_sgd": {"eta": number(0.01), "gamma": number(0.55), "seed": integer(None, minimum=0, nullable=True)},
    "sign_sgd": {},
    "optimistic_gradient_descent": {"alpha": number(1.0), "beta": number(1.0)},
    "rprop": {
        "eta_minus": number(0.5),
        "eta_plus": number(1.2),
        "min_step_size": number(1e-6),
        "max_step_size": number(50.0),
    },
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


_INIT_VALUE = number(doc="the learning rate at step 0", example=0.01)


SCHEDULES: dict[str, tuple[str, dict[str, Schema], tuple[str, ...]]] = {
    "constant": (
        "constant_schedule",
        {"value": number(doc="the learning rate at every step", example=0.01)},
        ("value",),
    ),
    "exponential_decay": (
        "exponential_decay",
        {
            "init_value": _INIT_VALUE,
            "transition_steps": integer(
                minimum=1, doc="steps over which the rate is multiplied by decay_rate once", example=1000
            ),
            "decay_rate": number(doc="factor per transition_steps", example=0.5),
            "transition_begin": integer(0, minimum=0, doc="steps at init_value before the decay starts"),
            "staircase": boolean(False, "decay in whole steps of transition_steps (else smoothly)"),
            "end_value": number(
                None, nullable=True, doc="bound the decayed rate (below for a decay, above for growth); null: no bound"
            ),
        },
        ("init_value", "transition_steps", "decay_rate"),
    ),
    "cosine_decay": (
        "cosine_decay_schedule",
        {
            "init_value": _INIT_VALUE,
            "decay_steps": integer(minimum=1, doc="steps over which the rate decays", example=1000),
            "alpha": number(0.0, doc="the final rate as a fraction of init_value"),
            "exponent": number(1.0, doc="power of the cosine curve"),
        },
        ("init_value", "decay_steps"),
    ),
    "warmup_cosine_decay": (
        "warmup_cosine_decay_schedule",
        {
            "init_value": _INIT_VALUE,
            "peak_value": number(doc="the rate at the end of the warmup", example=0.1),
            "warmup_steps": integer(minimum=0, doc="steps of linear warmup from init_value to peak_value", example=100),
            "decay_steps": integer(minimum=1, doc="total steps of warmup and cosine decay together", example=1000),
            "end_value": number(0.0, doc="the rate after decay_steps"),
            "exponent": number(1.0, doc="power of the cosine curve"),
        },
        ("init_value", "peak_value", "warmup_steps", "decay_steps"),
    ),
    "piecewise_constant": (
        "piecewise_constant_schedule",
        {
            "init_value": _INIT_VALUE,
            "boundaries_and_scales": {
                "type": ["null", "object"],
                "default": None,
                # YAML reads `1000:` as an integer key, JSON as a string: both are steps
                "propertyNames": {
                    "pattern": "^(0|[1-9][0-9]*)$",
                    "minimum": 0,
                    "errorMessage": "expected a step (an integer >= 0) as the key",
                },
                "additionalProperties": {
                    "type": "number",
                    "description": "the factor the rate is multiplied by from this step on",
                },
                "description": "{step: scale}: from each step on, the rate is multiplied by its scale",
                "examples": [{"1000": 0.1}],
            },
        },
        ("init_value",),
    ),
    "linear": (
        "linear_schedule",
        {
            "init_value": _INIT_VALUE,
            "end_value": number(doc="the rate after transition_steps", example=0.001),
            "transition_steps": integer(minimum=1, doc="steps of the linear change", example=1000),
            "transition_begin": integer(0, minimum=0, doc="steps at init_value before the change starts"),
        },
        ("init_value", "end_value", "transition_steps"),
    ),
}


SCALARS = ("loss", "metrics", "learning_rate", "steps_per_second")


HISTOGRAMS = ("weights", "biases", "activations", "gradients")
