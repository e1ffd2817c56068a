"""Issue 11, kind 3 (labels, outputs and losses): every check of the labels is one rule stated once
(netspec.labels) and applied to every data source alike, inline, npz, csv, idx and the named data
sets; an output and a loss that cannot train together are refused whatever the data. Each case
runs `netspec validate` and asserts exit 1, the line and column, the words that name the cause,
one problem (no follow-on advice) and no traceback; and the same labels that fit are accepted."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from support import cli, write

SPEC = """\
name: labels
data:
{source}
model:
  input: [2]
  layers:
    - {{name: hidden, type: dense, units: 4, activation: tanh}}
    - {{name: output, type: dense, units: {units}, activation: {activation}}}
loss: {loss}
metrics: []
optimizer: {{type: sgd, learning_rate: 0.1}}
train: {{steps: 2, batch_size: 2}}
"""
SOURCE_LINE = 3  # the line of `  <source>:` in SPEC


def idx_labels(directory: Path, y: np.ndarray) -> None:
    directory.mkdir()
    x = np.zeros((len(y), 1, 2), np.uint8)
    for name, array in (("train-images-idx3-ubyte", x), ("train-labels-idx1-ubyte", y.astype(np.uint8))):
        header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
        (directory / f"{name}.gz").write_bytes(gzip.compress(header + array.tobytes()))


def source_text(tmp_path: Path, source: str, y: np.ndarray, *, text_labels: bool = False) -> str:
    """The spec's data section holding labels `y` ([examples] or [examples, values]) in `source`."""
    n = len(y)
    x = np.arange(2 * n, dtype=np.float32).reshape(n, 2) / (2 * n)
    if source == "inline":
        return f"  inline:\n    x: {x.tolist()}\n    y: {y.reshape(n, -1).tolist()}"
    if source == "npz":
        np.savez(tmp_path / "d.npz", x=x, y=y)
        return "  npz: {path: d.npz}"
    if source == "csv":
        names = ["setosa", "versicolor", "virginica"]
        cells = [names[int(v)] if text_labels else f"{v:g}" for v in y.reshape(-1)]
        write(
            tmp_path / "d.csv",
            "a,b,label\n" + "".join(f"{a:g},{b:g},{c}\n" for (a, b), c in zip(x, cells, strict=True)),
        )
        return "  csv: {path: d.csv, label: label}"
    if source == "idx":
        idx_labels(tmp_path / "digits", y)
        return "  idx: {path: digits}"
    raise AssertionError(source)


def validate(
    tmp_path: Path, source: str, y, *, units=1, activation="sigmoid", loss="binary_crossentropy", text_labels=False
):
    y = np.asarray(y)
    text = SPEC.format(
        source=source_text(tmp_path, source, y, text_labels=text_labels), units=units, activation=activation, loss=loss
    )
    if source == "idx":  # IDX images are [examples, 1, 2]: the model takes them flat
        text = text.replace("input: [2]", "input: [1, 2]").replace(
            "{name: hidden, type: dense", "{name: flat, type: flatten}\n    - {name: hidden, type: dense"
        )
    return cli("validate", write(tmp_path / "spec.yaml", text))


def assert_one_problem(outcome, source: str, *words: str) -> str:
    """Exit 1, exactly one problem, at the labels (inline: the y row named; files: the source's line), no traceback."""
    outcome.assert_clean_failure(*words)
    assert "1 problem\n" in outcome.output, outcome.output
    (line,) = [row for row in outcome.output.splitlines() if row.startswith("  ")]
    if source == "inline":
        assert "$.data.inline.y" in line, line
    else:
        assert f"spec.yaml:{SOURCE_LINE}:" in line and f"$.data.{source}:" in line, line
    return line


ALL = ["inline", "npz", "csv", "idx"]


# -- rule 2: at least two classes ------------------------------------------------------------------


@pytest.mark.parametrize("source", ALL)
@pytest.mark.parametrize(
    "loss, units, activation",
    [
        ("binary_crossentropy", 1, "sigmoid"),
        ("sparse_categorical_crossentropy", 3, "softmax"),
        ("categorical_crossentropy", 3, "softmax"),
    ],
)
def test_labels_of_one_class_are_one_message(tmp_path, source, loss, units, activation):
    line = assert_one_problem(
        validate(tmp_path, source, [1, 1, 1, 1], units=units, activation=activation, loss=loss),
        source,
        "hold one class",
        "every label is 1",
        "at least two classes",
    )
    assert "units" not in line  # no advice that the next message would reject


def test_a_csv_label_column_of_one_class_name_says_the_name(tmp_path):
    assert_one_problem(
        validate(
            tmp_path,
            "csv",
            [2, 2, 2],
            units=3,
            activation="softmax",
            loss="sparse_categorical_crossentropy",
            text_labels=True,
        ),
        "csv",
        "every label is 0 ('virginica')",
    )


# -- rule 3: binary targets in [0, 1] --------------------------------------------------------------


@pytest.mark.parametrize("source", ALL)
def test_binary_crossentropy_refuses_labels_past_1(tmp_path, source):
    """Today's bug: 0/1/2 in a CSV trained to a negative loss and accuracy 1."""
    line = assert_one_problem(
        validate(tmp_path, source, [0, 1, 2, 1]),
        source,
        "binary_crossentropy needs targets between 0 and 1",
        "go from 0 to 2",
        "sparse_categorical_crossentropy with units: 3",
    )
    if source == "inline":
        assert "$.data.inline.y[2]" in line


@pytest.mark.parametrize("source", ["inline", "npz", "csv"])
def test_binary_crossentropy_refuses_negative_targets(tmp_path, source):
    assert_one_problem(validate(tmp_path, source, [0.0, 1.0, -1.0, 0.5]), source, "between 0 and 1", "go from -1 to 1")


@pytest.mark.parametrize("source", ["inline", "npz", "csv"])
def test_binary_crossentropy_takes_probabilities(tmp_path, source):
    assert validate(tmp_path, source, [0.0, 0.25, 1.0, 0.5]).exit_code == 0


# -- rule 4: class numbers -------------------------------------------------------------------------


@pytest.mark.parametrize("source", ALL)
@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_class_numbers_past_the_output(tmp_path, source, loss):
    assert_one_problem(
        validate(tmp_path, source, [0, 1, 4, 2], units=3, activation="softmax", loss=loss),
        source,
        "go up to class 4",
        "output has 3 units",
        "units: 5",
    )


@pytest.mark.parametrize("source", ["inline", "npz", "csv"])
def test_class_numbers_are_whole(tmp_path, source):
    assert_one_problem(
        validate(
            tmp_path, source, [0, 1, 1.5, 2], units=3, activation="softmax", loss="sparse_categorical_crossentropy"
        ),
        source,
        "one whole class number per example",
        "fractions",
    )


@pytest.mark.parametrize("source", ["inline", "npz", "csv"])
def test_class_numbers_start_at_0(tmp_path, source):
    assert_one_problem(
        validate(
            tmp_path, source, [0, 1, -1, 2], units=3, activation="softmax", loss="sparse_categorical_crossentropy"
        ),
        source,
        "class numbers start at 0",
        "go from -1 to 2",
    )


@pytest.mark.parametrize("source", ALL)
def test_class_numbers_that_fit_are_accepted(tmp_path, source):
    assert (
        validate(
            tmp_path, source, [0, 1, 2, 1], units=3, activation="softmax", loss="sparse_categorical_crossentropy"
        ).exit_code
        == 0
    )


def test_the_named_data_sets_know_their_classes(tmp_path):
    text = SPEC.format(
        source="  fashion_mnist: {download: false}",
        units=5,
        activation="softmax",
        loss="sparse_categorical_crossentropy",
    )
    outcome = cli("validate", write(tmp_path / "spec.yaml", text.replace("input: [2]", "input: [784]")))
    outcome.assert_clean_failure("10 classes", "5 units", "units: 10")
    assert "1 problem\n" in outcome.output


# -- rule 5: per-class targets in [0, 1] -----------------------------------------------------------


@pytest.mark.parametrize("source", ["inline", "npz"])
def test_one_hot_targets_are_between_0_and_1(tmp_path, source):
    y = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 1], [1, 0, 0]], np.float32)
    assert_one_problem(
        validate(tmp_path, source, y, units=3, activation="softmax", loss="categorical_crossentropy"),
        source,
        "one target per class needs values between 0 and 1",
        "go from 0 to 2",
    )


# -- rule 1: finite targets ------------------------------------------------------------------------


def test_a_nan_label_in_a_file_is_refused(tmp_path):
    assert_one_problem(
        validate(tmp_path, "npz", np.array([0.0, np.nan, 1.0, 0.0], np.float32)), "npz", "NaN or an infinity"
    )


# -- rule 6: regression targets within the output's range -------------------------------------------


@pytest.mark.parametrize("source", ["inline", "npz", "csv"])
@pytest.mark.parametrize(
    "activation, y, words",
    [
        ("sigmoid", [0.1, 0.5, 5.0, 0.2], ("sigmoid, whose values lie in [0, 1]", "go from 0.1 to 5")),
        ("relu", [0.1, -3.0, 1.0, 0.2], ("relu, whose values lie in [0, inf]", "go from -3 to 1")),
        ("tanh", [0.5, -2.0, 0.0, 0.2], ("tanh, whose values lie in [-1, 1]",)),
    ],
)
@pytest.mark.parametrize("loss", ["mean_squared_error", "mean_absolute_error", "huber"])
def test_regression_targets_the_output_cannot_reach(tmp_path, source, activation, y, words, loss):
    assert_one_problem(
        validate(tmp_path, source, y, activation=activation, loss=loss), source, *words, "use activation: linear"
    )


@pytest.mark.parametrize("source", ["inline", "npz", "csv"])
def test_regression_targets_within_reach_are_accepted(tmp_path, source):
    assert (
        validate(tmp_path, source, [0.1, 0.5, 5.0, -2.0], activation="linear", loss="mean_squared_error").exit_code == 0
    )


# -- rule 7: an output and a loss that cannot train together ----------------------------------------


@pytest.mark.parametrize("activation", ["relu", "relu6", "softplus", "sigmoid", "softmax"])
def test_binary_logits_that_cannot_be_negative(tmp_path, activation):
    outcome = validate(
        tmp_path, "inline", [0, 1, 1, 0], activation=activation, loss="{type: binary_crossentropy, from_logits: true}"
    )
    outcome.assert_clean_failure(
        "from_logits: true", f"{activation}'s output is never negative", "use activation: linear"
    )
    assert "$.model.layers[1].activation" in outcome.output and "1 problem\n" in outcome.output


@pytest.mark.parametrize("activation", ["sigmoid", "softmax", "tanh"])
@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_categorical_logits_squeezed_into_a_small_range(tmp_path, activation, loss):
    outcome = validate(
        tmp_path, "inline", [0, 1, 2, 1], units=3, activation=activation, loss=f"{{type: {loss}, from_logits: true}}"
    )
    outcome.assert_clean_failure("from_logits: true", f"{activation} squeezes them", "use activation: linear")
    assert "1 problem\n" in outcome.output


@pytest.mark.parametrize(
    "loss, units, y",
    [
        ("binary_crossentropy", 1, [0, 1, 1, 0]),
        ("sparse_categorical_crossentropy", 3, [0, 1, 2, 1]),
        ("categorical_crossentropy", 3, [0, 1, 2, 1]),
    ],
)
@pytest.mark.parametrize("activation", ["linear", "leaky_relu"])
def test_logits_that_can_take_any_sign_are_accepted(tmp_path, loss, units, y, activation):
    assert (
        validate(
            tmp_path, "inline", y, units=units, activation=activation, loss=f"{{type: {loss}, from_logits: true}}"
        ).exit_code
        == 0
    )
