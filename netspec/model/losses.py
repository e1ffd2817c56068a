"""What a loss means, on the JAX side: the loss and the metrics per example, labels as the loss
takes them, and which class an output is. One place, used by the compiled step, evaluation (the
confusion matrix), `netspec predict` and the closing report, so they cannot disagree.

Contract. Built from the checked Spec (its `LossKind`, `netspec.spec.choices.LOSS_KINDS`):

    loss_fn(spec) -> fn(z, y) -> float32 [N]       the loss of each example
    metric_fns(spec) -> {tag: fn(z, y) -> [N]}     each metric of each example
    encode_labels(spec) -> fn(y) -> y              labels as stored -> as the loss takes them
    output_class(spec) -> fn(h) -> int32           model output -> predicted class (numpy or jax)
    predicted_class(spec) -> fn(z) -> int32        the loss's input -> predicted class
    label_class(spec) -> fn(y) -> int32            encoded labels -> class (accuracy, confusion)
    num_classes(spec) -> int | None

`z` is what the loss sees: the logits when the output activation is fused into the loss (the
stable log-sigmoid / log-softmax forms of optax's `sigmoid_binary_cross_entropy` and
`softmax_cross_entropy`; Keras instead clips probabilities at 1e-7), else the model output.
`h` is the model output itself. A regression loss has no classes (None).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from netspec.model.layers import activation, known_zero
from netspec.spec.choices import LOSS_KINDS
from netspec.spec.types import Spec, metric_name

PerExample = Callable[[jax.Array, jax.Array], jax.Array]  # fn(z, y) -> [N]: a loss or a metric of each example
Outputs = TypeVar("Outputs", np.ndarray[Any, Any], jax.Array)  # numpy (predict, the report) or jax (evaluation)


class Decide(Protocol):
    """model outputs -> predicted class indices, numpy for numpy and jax for jax."""

    def __call__(self, h: Outputs, /) -> Outputs: ...


def per_example_mean(v: jax.Array) -> jax.Array:
    """[N, ...] -> [N]: the mean over everything but the batch axis."""
    return v.reshape(v.shape[0], -1).mean(-1)


def loss_fn(spec: Spec) -> PerExample:
    """fn(z, y) -> float32 [N]: the spec's loss of each example (training takes the mean,
    evaluation sums over the split). Formulas are optax's own (huber: `optax.huber_loss`)."""
    loss = spec.loss
    kind = loss["type"]
    if kind == "binary_crossentropy":
        return lambda z, y: per_example_mean(optax.sigmoid_binary_cross_entropy(z, y))
    if kind == "categorical_crossentropy":
        smoothing = loss["label_smoothing"]
        return lambda z, y: optax.softmax_cross_entropy(
            z, optax.smooth_labels(y, smoothing) if not known_zero(smoothing) else y
        )
    if kind == "sparse_categorical_crossentropy":
        return lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y)
    if kind == "mean_squared_error":
        return lambda p, y: per_example_mean((p - y) ** 2)
    if kind == "mean_absolute_error":
        return lambda p, y: per_example_mean(jnp.abs(p - y))
    if kind == "huber":
        return lambda p, y: per_example_mean(optax.huber_loss(p, y, delta=loss["delta"]))
    raise AssertionError(kind)


def output_class(spec: Spec) -> Decide | None:
    """model output [N, ..., units] -> predicted class indices (int32; numpy or jax arrays), or
    None for a regression loss (no classes). Binary targets: class 1 when the probability is
    above one half, i.e. a probability > 0.5 or a logit > 0 (from_logits), per unit ([N, 1] ->
    [N, 1]); a probability of exactly 0.5 or a logit of exactly 0 is class 0. Classes: the largest
    output ([N, classes] -> [N]), the first of equals."""
    kind = LOSS_KINDS[spec.loss["type"]]
    if kind.targets == "binary":
        threshold = 0.0 if spec.from_logits else 0.5

        def above(h: Outputs) -> Outputs:
            return (h > threshold).astype(np.int32)

        return above
    if kind.classification:

        def largest(h: Outputs) -> Outputs:
            indices: Outputs = h.argmax(-1)  # (numpy's stubs type an argmax along an axis as Any)
            return indices.astype(np.int32)

        return largest
    return None


def label_class(spec: Spec) -> Callable[[jax.Array], jax.Array]:
    """labels, as the loss takes them (`encode_labels`) -> class indices (accuracy, the confusion
    matrix): binary 0/1 targets (float32) -> int32 of the same shape, 1 above 0.5; one-hot or
    per-class targets [N, classes] -> [N]; class indices [N] stay as they are."""
    targets = LOSS_KINDS[spec.loss["type"]].targets
    if targets == "binary":
        return lambda y: (y > 0.5).astype(np.int32)
    if targets == "classes":
        return lambda y: y.argmax(-1).astype(np.int32)
    return lambda y: y


def model_output(spec: Spec) -> Callable[[jax.Array], jax.Array]:
    """the loss's input (logits when the output activation is fused into the loss: `apply(...,
    logits=True)`) -> the model output, through the same activation function `apply` uses."""
    if not spec.fused_loss:
        return lambda out: out
    return activation(spec.layers[-1].args["activation"])


def predicted_class(spec: Spec) -> Callable[[jax.Array], jax.Array] | None:
    """the loss's input (what evaluation and the metrics see; jax) -> predicted class indices:
    `output_class` of the model output, so evaluation decides on the very numbers `netspec
    predict` and the report decide on (a logit of 1e-8 is a sigmoid of exactly 0.5 in float32:
    class 0 for them all). None for a regression loss."""
    decide = output_class(spec)
    if decide is None:
        return None
    to_output = model_output(spec)
    return lambda out: decide(to_output(out))


def metric_fns(spec: Spec) -> dict[str, PerExample]:
    """tag -> fn(z, y) -> per-example values, from the same `z` the loss sees (logits when the
    output activation is fused into the loss), each metric on the model output."""
    truth, guess, to_output = label_class(spec), predicted_class(spec), model_output(spec)
    out: dict[str, PerExample] = {}
    for metric in spec.metrics:
        name, kind = metric_name(metric), metric["type"]
        if kind == "accuracy":
            assert guess is not None  # the schema takes accuracy only with a classification loss
            out[name] = lambda z, y: per_example_mean((guess(z) == truth(y)).astype(jnp.float32))
        elif kind == "top_k_accuracy":  # on the model output too, so top-1 is accuracy even among ties

            def top_k(z: jax.Array, y: jax.Array, k: int = metric["k"]) -> jax.Array:
                return jnp.any(jax.lax.top_k(to_output(z), k)[1] == truth(y)[:, None], -1).astype(jnp.float32)

            out[name] = top_k
        elif kind == "mean_squared_error":  # of the model output: probabilities, not the fused loss's logits
            out[name] = lambda p, y: per_example_mean((to_output(p) - y) ** 2)
        elif kind == "mean_absolute_error":
            out[name] = lambda p, y: per_example_mean(jnp.abs(to_output(p) - y))
    return out


def num_classes(spec: Spec) -> int | None:
    """Classes of a classification model (2 for binary targets with one output unit), else None
    (a regression loss, or binary targets over several units: one yes/no per unit)."""
    kind = LOSS_KINDS[spec.loss["type"]]
    if not kind.classification:
        return None
    if kind.targets == "binary":
        return 2 if spec.output_shape[-1] == 1 else None
    return spec.output_shape[-1]


def encode_labels(spec: Spec) -> Callable[[jax.Array], jax.Array]:
    """labels as stored -> as the loss takes them (on the device): class numbers one-hot where
    the loss wants targets per class, int32 class indices for sparse categorical crossentropy,
    else float32 shaped as the model's output."""
    targets = LOSS_KINDS[spec.loss["type"]].targets
    one_hot = targets == "classes" and tuple(spec.data_info.y_shape) != spec.output_shape
    classes = spec.output_shape[-1]

    def encode(y: jax.Array) -> jax.Array:
        if one_hot:
            return jax.nn.one_hot(y.reshape(y.shape[0]).astype(jnp.int32), classes)  # class numbers, as stored
        if targets == "class_index":
            return y.reshape(y.shape[0]).astype(jnp.int32)
        return y.astype(jnp.float32).reshape((y.shape[0], *spec.output_shape))

    return encode
