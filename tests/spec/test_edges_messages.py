"""Issue 11, kind 4: a message names the real cause and the fix, and one mistake gives one message
(no follow-on errors from an earlier one). Every case runs `netspec validate` and asserts exit 1,
the line and column, the words of the cause and the fix, the number of problems, no traceback."""

from __future__ import annotations

import pytest
from support import SPECS, cli, problem_lines, write

IMAGES = """\
name: images
data:
  inline:
    x: {x}
    y: [0, 1, 2, 1]
model:
  input: [4, 4, 1]
  layers:
{layers}
loss: {loss}
optimizer: {{type: adam, learning_rate: 0.01}}
train: {{steps: 2, batch_size: 2}}
"""
X = [[[[float((i + r + c) % 3)] for c in range(4)] for r in range(4)] for i in range(4)]
LAYER_LINE = 9  # the line of the first layer


def validate(tmp_path, layers: list[str], loss: str = "sparse_categorical_crossentropy", y: str | None = None):
    text = IMAGES.format(x=X, layers="\n".join(f"    - {layer}" for layer in layers), loss=loss)
    if y is not None:
        text = text.replace("y: [0, 1, 2, 1]", f"y: {y}")
    return cli("validate", write(tmp_path / "spec.yaml", text))


CONV = "{name: conv, type: conv2d, filters: 2, kernel_size: 3, padding: same, activation: relu}"
POOL = "{name: pool, type: max_pool, pool_size: 2}"
DENSE = "{name: hidden, type: dense, units: 5, activation: relu}"
OUT = "{name: output, type: dense, units: 3, activation: softmax}"


@pytest.mark.parametrize(
    "layers, culprit, got",
    [
        ([CONV, OUT], 1, "[4, 4, 2] from 'conv'"),
        ([CONV, POOL, OUT], 2, "[2, 2, 2] from 'pool'"),
        ([CONV, POOL, DENSE, OUT], 2, "[2, 2, 2] from 'pool'"),
        (["{name: shape, type: reshape, shape: [16, 1]}", OUT], 1, "[16, 1] from 'shape'"),
    ],
    ids=["conv-dense", "conv-pool-dense", "conv-pool-dense-dense", "reshape-dense"],
)
@pytest.mark.parametrize(
    "loss, y",
    [
        ("sparse_categorical_crossentropy", None),
        ("categorical_crossentropy", None),
        ("binary_crossentropy", "[[0], [1], [1], [0]]"),
    ],
)
def test_a_dense_layer_after_a_conv_says_a_flatten_is_missing(tmp_path, layers, culprit, got, loss, y):
    if loss == "binary_crossentropy":
        layers = [*layers[:-1], "{name: output, type: dense, units: 1, activation: sigmoid}"]
    outcome = validate(tmp_path, layers, loss, y)
    outcome.assert_clean_failure(
        "a flatten layer is missing before", got, "acts on the last axis only", "{name: flatten, type: flatten}"
    )
    (problem,) = problem_lines(outcome.output)  # and not also a complaint about the labels or the units
    assert f"spec.yaml:{LAYER_LINE + culprit}:" in problem and f"$.model.layers[{culprit}]" in problem
    assert "units:" not in problem and "labels" not in problem


def test_with_the_flatten_the_same_model_is_valid(tmp_path):
    outcome = validate(tmp_path, [CONV, POOL, "{name: flat, type: flatten}", DENSE, OUT])
    assert outcome.exit_code == 0, outcome.output


@pytest.mark.parametrize(
    "layers, line, words",
    [
        # conv2d on flat input: one message; the pool after it is not checked against a made-up shape
        (
            ["{name: flat, type: flatten}", CONV, POOL, "{name: flat2, type: flatten}", OUT],
            1,
            ("conv2d needs an input of shape [height, width, channels]",),
        ),
        (
            ["{name: pool, type: max_pool, pool_size: 9, padding: valid}", "{name: flat, type: flatten}", OUT],
            0,
            ("a 9x9 pool does not fit the 4x4 input",),
        ),
        (
            [CONV, "{name: add, type: add, inputs: [conv, nowhere]}", "{name: flat, type: flatten}", OUT],
            1,
            ("no earlier layer is named 'nowhere'",),
        ),
    ],
)
def test_a_failed_layer_gives_one_message_not_one_per_later_layer(tmp_path, layers, line, words):
    outcome = validate(tmp_path, layers)
    outcome.assert_clean_failure(*words)
    (problem,) = problem_lines(outcome.output)
    assert f"spec.yaml:{LAYER_LINE + line}:" in problem, problem
    assert "found []" not in outcome.output


def test_one_class_in_the_labels_is_said_once_and_nothing_else_is_advised(tmp_path):
    outcome = validate(tmp_path, [CONV, "{name: flat, type: flatten}", OUT], y="[2, 2, 2, 2]")
    outcome.assert_clean_failure("hold one class", "every label is 2")
    (problem,) = problem_lines(outcome.output)
    assert "units" not in problem


@pytest.mark.parametrize(
    "setting, words",
    [
        (
            "name=my run!",
            ("expected a run name of letters, digits", "the character U+0020 (a space) at position 3 is not allowed"),
        ),
        ("name=-x", ("it may not start with '-'",)),
        ("name=ab/c", ("the character '/' at position 3 is not allowed",)),
        ("model.layers[0].name=la:yer", ("expected a layer name", "the character ':' at position 3 is not allowed")),
        ("model.layers[0].name=input", ("other than 'input'", "'input' is reserved")),
        ("model.layers[0].name=1st", ("starting with a letter or '_'", "it may not start with '1'")),
        ("data.scale=1/0", ("1/N with N > 0",)),
        ("data.scale=2/255", ("1/N with N > 0 such as 1/255", "found '2/255'")),
        ("model.layers[0].units=0", ("expected a value >= 1, found 0",)),
        ("data.validation_split=0.95", ("expected a value <= 0.9, found 0.95",)),
    ],
)
def test_a_value_refused_by_a_pattern_or_range_says_which_part_and_the_rule(setting, words):
    outcome = cli("validate", SPECS / "xor_nn.yaml", "--set", setting)
    outcome.assert_clean_failure(f"--set {setting}: ", *words)
    assert "1 problem\n" in outcome.output, outcome.output
