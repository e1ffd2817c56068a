"""The data sources a spec may name, and `DataInfo`: what `check` learns of the data.

Contract. `SOURCES` is the tuple of `data:` keys a spec chooses exactly one of (the schema's
`oneOf` is built from it; `arrays.source_of` finds the one given). `STANDARD` holds the named
data sets' facts (train and test sizes, one example's shape, the number of classes), so `validate`
knows `mnist` and `fashion_mnist` without their files; `FASHION_CLASSES` names Fashion-MNIST's
classes. `DataInfo` is what `arrays.describe` (or, for inline data and the named sets, `check`
itself) returns: the examples' count, shape and dtype, the labels' shape, the classes when known
and the labels' summaries (`labels.Labels`). `check` matches it against the model and the loss;
the Spec carries it (`Spec.data_info`), and a run directory records it in `ran.json`
(`netspec.training.resumption`), so eval and predict check a spec against the data as it ran.

Plain data only: no numpy, no jax, no files.
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
    """What `check` learns of a spec's training data, before any of it is loaded (see the module docstring)."""

    source: str
    num_train: int
    num_test: int | None
    x_shape: tuple[int, ...]  # one example
    x_dtype: str
    y_shape: tuple[int, ...]  # one label, () for a class index
    classes: int | None  # number of classes, when the data set says
    labels: Labels | None = None  # the training labels' summary, for the label rules (netspec.labels)
    test_labels: Labels | None = None  # the test split's, when the source has one and reading it is cheap


FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
