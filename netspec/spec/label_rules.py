"""The labels' rules: what targets fit a loss and an output, stated once for every data source.

Contract. `label_problems(labels, loss, out_shape, activation, ...)` applies every rule below to a
`Labels` summary of the targets (`netspec.data.labels`: the same summary for every source, inline
lists, IDX, npz, CSV and the named data sets' known facts) and returns `LabelProblem`s, in the
order a person should fix them, each with the value index it is shown by; `output_problems(loss,
activation)` says whether an output layer and a loss can train together at all, whatever the data.
Both judge, never read: `netspec.spec.check` calls them for every source and points each problem
at the labels (the inline `y`, or the data file). Pure Python, no numpy, no jax.

The rules, each stated once:

1. every target is a finite number;
2. a classification loss (the cross-entropies) needs labels of at least two classes; when the
   labels hold one, that is the only label problem reported (so no advice follows that the next
   message would reject);
3. `binary_crossentropy` targets lie in [0, 1] (class 0 or 1, or a probability);
4. class-index labels (`sparse_categorical_crossentropy`; `categorical_crossentropy` with one
   class number per example) are whole numbers from 0 to units - 1;
5. `categorical_crossentropy` targets given per class (one-hot, or a distribution) lie in [0, 1];
6. a regression loss's targets lie within what the output activation can produce (a sigmoid
   output never reaches 5);
7. (`output_problems`) a loss that takes logits (`from_logits: true`) needs an output that can
   be negative and positive: logits through relu, softplus, sigmoid or softmax (or, for the
   categorical losses, squeezed into [-1, 1] by tanh) cannot express a confident class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netspec.data.labels import Labels

CLASSIFICATION = ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy")


# The values an activation's output can take: (lowest, highest), both inclusive in the limit.
# Sources: the functions' definitions (jax.nn); gelu's and silu's minima are at x = -0.75 and
# x = -1.28; selu's lower bound is -scale * alpha (Klambauer et al. 2017).
OUTPUT_RANGE: dict[str, tuple[float, float]] = {
    "linear": (-math.inf, math.inf),
    "leaky_relu": (-math.inf, math.inf),
    "sigmoid": (0.0, 1.0),
    "softmax": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "relu": (0.0, math.inf),
    "relu6": (0.0, 6.0),
    "softplus": (0.0, math.inf),
    "elu": (-1.0, math.inf),  # -alpha: see output_range
    "selu": (-1.0507009873554805 * 1.6732632423543772, math.inf),
    "gelu": (-0.17, math.inf),
    "silu": (-0.2785, math.inf),
    "swish": (-0.2785, math.inf),
    "log_softmax": (-math.inf, 0.0),
}


def output_range(activation: Mapping[str, Any]) -> tuple[float, float]:
    """(lowest, highest) value of an activation `{type, args}`; elu's floor is -alpha."""
    if activation["type"] == "elu":
        return (-float(activation["alpha"]), math.inf)
    if activation["type"] == "leaky_relu" and activation["negative_slope"] <= 0:
        return (0.0, math.inf) if activation["negative_slope"] == 0 else (-math.inf, math.inf)
    return OUTPUT_RANGE[activation["type"]]


@dataclass(frozen=True)
class LabelProblem:
    """A broken rule: the message, and the value index (reading order) it is shown by, or None."""

    message: str
    index: int | None = None


def _value(v: float) -> str:
    return str(int(v)) if math.isfinite(v) and v == int(v) else f"{v:g}"


def _name(labels: Labels, v: float) -> str:
    if labels.names is not None and v == int(v) and 0 <= v < len(labels.names):
        return f"{_value(v)} ({labels.names[int(v)]!r})"
    return _value(v)


def label_problems(
    labels: Labels,
    loss: str,
    out_shape: tuple[int, ...],
    activation: Mapping[str, Any],
    *,
    class_indices: bool,
    what: str = "the labels",
    training: bool = True,
) -> list[LabelProblem]:
    """Every rule of the module docstring that `labels` break for `loss` and an output of
    `out_shape` through `activation`; `class_indices`: the labels are one class number per example
    (else one target per output value). `what` names the labels in the messages; rule 2 (two
    classes at least) holds for `training` labels only (a small test split may hold one class)."""
    if labels.count == 0:
        return []
    if labels.nonfinite_at is not None:
        return [
            LabelProblem(f"{what} hold a NaN or an infinity; every target must be a finite number", labels.nonfinite_at)
        ]
    span = f"{what} go from {_name(labels, labels.minimum)} to {_name(labels, labels.maximum)}"
    one_class = _one_class(labels, loss, class_indices=class_indices, what=what, training=training)
    if one_class is not None:
        return [one_class]
    problem: LabelProblem | None
    if loss == "binary_crossentropy":
        problem = _binary_targets(labels, span)
    elif loss in ("sparse_categorical_crossentropy", "categorical_crossentropy") and class_indices:
        problem = _class_numbers(labels, loss, out_shape, what, span)
    elif loss == "categorical_crossentropy":
        problem = _per_class_targets(labels, span)
    else:
        problem = _within_output(labels, loss, activation, span)
    return [] if problem is None else [problem]


def _one_class(labels: Labels, loss: str, *, class_indices: bool, what: str, training: bool) -> LabelProblem | None:
    """Rule 2: training labels of a classification loss hold at least two classes."""
    if (
        training
        and loss in CLASSIFICATION
        and (class_indices or loss == "binary_crossentropy")
        and len(labels.distinct) == 1
    ):
        only = _name(labels, labels.distinct[0])
        return LabelProblem(
            f"{what} hold one class: every label is {only}; a classifier learns nothing from one class. "
            "Give it examples of at least two classes (check data.limit, the label column, and that the data is not sorted by class)"
        )
    return None


def _binary_targets(labels: Labels, span: str) -> LabelProblem | None:
    """Rule 3: binary_crossentropy targets lie in [0, 1]."""
    bad = labels.argmin if labels.minimum < 0 else labels.argmax if labels.maximum > 1 else None
    if bad is None:
        return None
    hint = ""
    if labels.fraction_at is None and labels.minimum >= 0:
        n = int(labels.maximum) + 1
        hint = f"; for {n} classes use loss: sparse_categorical_crossentropy with units: {n} and activation: softmax in the last layer"
    return LabelProblem(
        f"binary_crossentropy needs targets between 0 and 1 (class 0 or 1, or a probability), but {span}{hint}",
        bad,
    )


def _class_numbers(labels: Labels, loss: str, out_shape: tuple[int, ...], what: str, span: str) -> LabelProblem | None:
    """Rule 4: class-index labels are whole numbers from 0 to units - 1."""
    units = out_shape[-1] if out_shape else 1
    if labels.fraction_at is not None:
        return LabelProblem(
            f"{loss} needs one whole class number per example, but {what} hold fractions; "
            "for targets given per class (one-hot or probabilities) give y one value per output unit",
            labels.fraction_at,
        )
    if labels.minimum < 0:
        return LabelProblem(f"class numbers start at 0, but {span}", labels.argmin)
    if labels.maximum >= units:
        classes = labels.classes
        named = f" ({', '.join(labels.names)})" if labels.names else ""
        counted = (
            f"{what} hold {classes} classes{named}" if classes else f"{what} go up to class {_value(labels.maximum)}"
        )
        return LabelProblem(
            f"{counted}, but the model's output has {units} units; make the last layer units: "
            f"{classes or int(labels.maximum) + 1}",
            labels.argmax,
        )
    return None


def _per_class_targets(labels: Labels, span: str) -> LabelProblem | None:
    """Rule 5: categorical_crossentropy targets given per class lie in [0, 1]."""
    bad = labels.argmin if labels.minimum < 0 else labels.argmax if labels.maximum > 1 else None
    if bad is None:
        return None
    return LabelProblem(
        f"categorical_crossentropy with one target per class needs values between 0 and 1 "
        f"(one-hot or probabilities), but {span}",
        bad,
    )


def _within_output(labels: Labels, loss: str, activation: Mapping[str, Any], span: str) -> LabelProblem | None:
    """Rule 6: a regression loss's targets lie within what the output activation can produce."""
    low, high = output_range(activation)
    if labels.minimum < low or labels.maximum > high:
        bad = labels.argmin if labels.minimum < low else labels.argmax
        return LabelProblem(
            f"the model's output goes through {activation['type']}, whose values lie in [{_value(low)}, {_value(high)}], "
            f"but {span}: {loss} can never reach them; use activation: linear in the last layer (or scale the targets into that range)",
            bad,
        )
    return None


def output_problems(loss: Mapping[str, Any], activation: Mapping[str, Any]) -> list[str]:
    """Rule 7: whether an output through `activation` can train with `loss` at all, whatever the data."""
    if loss["type"] not in CLASSIFICATION or not loss["from_logits"]:
        return []
    low, high = output_range(activation)
    name = activation["type"]
    if loss["type"] == "binary_crossentropy" and low >= 0:
        return [
            f"the loss has from_logits: true, so the last layer's output is a logit, any real number, but {name}'s output is "
            f"never negative: sigmoid(logit) stays at or above 0.5 and class 0 can never be predicted with confidence; "
            "use activation: linear in the last layer, or drop from_logits and use activation: sigmoid"
        ]
    if loss["type"] != "binary_crossentropy" and high - low <= 2:
        return [
            f"the loss has from_logits: true, so the last layer's outputs are logits, any real numbers, but {name} squeezes them "
            f"into [{_value(low)}, {_value(high)}], so softmax can never be confident of a class; use activation: linear in the "
            "last layer, or drop from_logits and use activation: softmax"
        ]
    return []
