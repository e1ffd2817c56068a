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

from netspec.data.labels import Labels


SOURCES = ("inline", "mnist", "fashion_mnist", "idx", "npz", "csv")  # data: exactly one of these


STANDARD = {  # the named data sets: (train examples, test examples, example shape, classes), known without reading them
    "mnist": (60000, 10000, (28, 28), 10),
    "fashion_mnist": (60000, 10000, (28, 28), 10),
}


@dataclass(frozen=True)
class DataInfo:
    source: str
    num_train: int
    num_test: int | None
    x_shape: tuple[int, ...]  # one example
    x_dtype: str
    y_shape: tuple[int, ...]  # one label, () for a class index
    classes: int | None  # number of classes, when the data set says
    labels: Labels | None = None  # the training labels' summary, for the label rules (netspec.labels)
    test_labels: Labels | None = None  # the test split's, when the source has one and reading it is cheap


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
