"""A catalogue of broken specs: each one is refused by `netspec validate` with exit 1, the right
file:line:col and key path, a message that says what is wrong, and no traceback.

Most cases are BASE (tests/support.py: a valid spec in block style, so every key has its own line)
with one mistake. The line numbers of BASE are written next to it there; a case names the line and
column of the first problem reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from support import BASE, BATCH, LOSS, LR, STEPS, UNITS0, UNITS1, X, Y, edit, netspec, problem_lines

MODEL_BLOCK = BASE[BASE.index("model:\n") : BASE.index("loss:")]


@dataclass(frozen=True)
class Case:
    id: str
    text: str | bytes | None  # None: the file does not exist
    where: tuple[int, int] | str  # (line, col) in spec.yaml, or the source prefix of a --set problem
    path: str  # the key path of the first problem
    message: str | tuple[str, ...]  # substrings of the first problem's message
    sets: tuple[str, ...] = ()


CASES = [
    # -- YAML syntax and encoding ---------------------------------------------------------------
    Case("yaml_unclosed_bracket", edit((X, X[:-1])), (6, 5), "$", "is a closing ']' or a ',' missing?"),
    Case(
        "yaml_unquoted_brackets_in_a_flow_key",
        edit(("seed: 777", "seed: 777\nsweep: {model.layers[0].units: [2, 4]}")),
        (3, 21),
        "$",
        ("is a closing '}' or a ',' missing?", "must be quoted, as in {'model.layers[0].units': [2, 4]}"),
    ),
    Case("yaml_bad_indentation", edit(("  input: [2]", "   input: [2]")), (9, 3), "$", "check the indentation"),
    Case("yaml_tab", edit(("  input: [2]", "\tinput: [2]")), (8, 1), "$", "replace the tab with spaces"),
    Case(
        "yaml_duplicate_key",
        edit(("seed: 777", "seed: 777\nseed: 778")),
        (3, 1),
        "$.seed",
        "duplicate key 'seed' (also at line 2)",
    ),
    Case(
        "not_utf8",
        edit(("name: xor_nn", "name: xor_NN")).encode().replace(b"NN", b"\xff\xfe"),
        (1, 11),
        "$",
        "not UTF-8 text (byte 0xff)",
    ),
    Case("empty_file", "", (1, 1), "$", "the file is empty"),
    Case("missing_file", None, "spec.yaml", "$", "no such file"),
    Case(
        "python_object_tag",
        edit(("seed: 777", 'seed: !!python/object/apply:os.system ["echo hi"]')),
        (2, 7),
        "$.seed",
        "tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
    ),
    Case("custom_tag", edit(("seed: 777", "seed: !mytag 777")), (2, 7), "$.seed", "tag '!mytag' is not allowed"),
    # -- unknown keys and misspelt names --------------------------------------------------------
    Case(
        "unknown_top_level_key",
        edit(("seed: 777", "sead: 777")),
        (2, 1),
        "$.sead",
        "unknown key 'sead'; did you mean 'seed'?",
    ),
    Case(
        "unknown_layer_key",
        edit((UNITS0, "      unit: 2")),
        (13, 7),
        "$.model.layers[0].unit",
        "unknown key 'unit'; did you mean 'units'?",
    ),
    Case(
        "misspelt_layer_type",
        edit(("      type: dense\n      units: 2", "      type: dnse\n      units: 2")),
        (12, 13),
        "$.model.layers[0].type",
        "found 'dnse' (string); did you mean 'dense'?",
    ),
    Case(
        "misspelt_activation",
        edit(("{activation: sigmoid", "{activation: sigmod")),
        (9, 26),
        "$.model.defaults.activation",
        "found 'sigmod' (string); did you mean 'sigmoid'?",
    ),
    Case(
        "misspelt_optimizer",
        edit(("  type: sgd", "  type: adma")),
        (20, 9),
        "$.optimizer.type",
        "found 'adma' (string); did you mean 'adam'?",
    ),
    Case(
        "misspelt_initializer",
        edit(("kernel_init: random_normal", "kernel_init: random_normla")),
        (9, 48),
        "$.model.defaults.kernel_init",
        "did you mean 'random_normal'?",
    ),
    Case(
        "misspelt_loss",
        edit((LOSS, "loss: binary_crossentropi")),
        (17, 7),
        "$.loss",
        "did you mean 'binary_crossentropy'?",
    ),
    Case(
        "unknown_optimizer_argument",
        edit((LR, LR + "\n  momentun: 0.9")),
        (22, 3),
        "$.optimizer.momentun",
        "did you mean 'momentum'? (valid keys here: clip_global_norm, learning_rate, momentum, nesterov, type)",
    ),
    Case(
        "unknown_schedule",
        edit((LR, "  learning_rate: {type: cosine_decy, init_value: 0.1, decay_steps: 100}")),
        (21, 25),
        "$.optimizer.learning_rate.type",
        "did you mean 'cosine_decay'?",
    ),
    Case(
        "schedule_missing_argument",
        edit((LR, "  learning_rate: {type: cosine_decay, init_value: 0.1}")),
        (21, 3),
        "$.optimizer.learning_rate",
        "missing required key 'decay_steps'",
    ),
    # -- types and ranges -----------------------------------------------------------------------
    Case(
        "units_not_a_number",
        edit((UNITS0, '      units: "ten"')),
        (13, 14),
        "$.model.layers[0].units",
        "expected an integer, found 'ten' (string)",
    ),
    Case(
        "learning_rate_not_a_number",
        edit((LR, '  learning_rate: "fast"')),
        (21, 18),
        "$.optimizer.learning_rate",
        "expected a number or a mapping, found 'fast' (string)",
    ),
    Case(
        "steps_not_an_integer",
        edit((STEPS, "  steps: 1.5")),
        (23, 10),
        "$.train.steps",
        "expected an integer, found 1.5 (number)",
    ),
    Case(
        "activation_not_a_name",
        edit((UNITS1, UNITS1 + "      activation: 5\n")),
        (17, 19),
        "$.model.layers[1].activation",
        "expected a string or a mapping, found 5 (integer)",
    ),
    Case(
        "units_negative",
        edit((UNITS0, "      units: -3")),
        (13, 14),
        "$.model.layers[0].units",
        "expected a value >= 1, found -3 (integer)",
    ),
    Case(
        "batch_size_zero",
        edit((BATCH, "  batch_size: 0")),
        (24, 15),
        "$.train.batch_size",
        "expected a value >= 1, found 0 (integer)",
    ),
    Case(
        "steps_zero", edit((STEPS, "  steps: 0")), (23, 10), "$.train.steps", "expected a value >= 1, found 0 (integer)"
    ),
    Case(
        "learning_rate_negative",
        edit((LR, "  learning_rate: -0.1")),
        (21, 18),
        "$.optimizer.learning_rate",
        "expected a value > 0, found -0.1 (number)",
    ),
    Case(
        "layer_name_with_space",
        edit(("    - name: layer1", '    - name: "layer 1"')),
        (11, 13),
        "$.model.layers[0].name",
        "found 'layer 1' (string)",
    ),
    # -- required keys --------------------------------------------------------------------------
    Case("missing_model", BASE.replace(MODEL_BLOCK, ""), (1, 1), "$", "missing required key 'model'"),
    Case("missing_units", edit((UNITS1, "")), (14, 7), "$.model.layers[1]", "missing required key 'units'"),
    Case(
        "steps_and_epochs",
        edit((STEPS, STEPS + "\n  epochs: 3")),
        (22, 1),
        "$.train",
        "give either steps or epochs, not both",
    ),
    Case(
        "neither_steps_nor_epochs",
        edit((STEPS + "\n", "")),
        (22, 1),
        "$.train",
        "missing required key 'steps' (or 'epochs')",
    ),
    # -- references between layers --------------------------------------------------------------
    Case(
        "dangling_inputs",
        edit((UNITS1, UNITS1 + "      inputs: layr1\n")),
        (17, 15),
        "$.model.layers[1].inputs",
        "no earlier layer is named 'layr1'; did you mean 'layer1'?",
    ),
    Case(
        "inputs_names_a_later_layer",
        edit((UNITS0, UNITS0 + "\n      inputs: hypothesis")),
        (14, 15),
        "$.model.layers[0].inputs",
        "'hypothesis' is this layer or a later one",
    ),
    Case(
        "duplicate_layer_name",
        edit(("    - name: hypothesis", "    - name: layer1")),
        (14, 13),
        "$.model.layers[1].name",
        "duplicate layer name 'layer1' (first used by layers[0], line 11)",
    ),
    # -- data against the model -----------------------------------------------------------------
    Case(
        "x_rows_of_three_for_input_of_two",
        edit((X, "    x: [[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0]]")),
        (5, 8),
        "$.data.inline.x",
        ("has shape [3]", "but model.input is [2]"),
    ),
    Case(
        "y_two_columns_for_one_unit",
        edit((Y, "    y: [[0, 1], [1, 0], [1, 0], [0, 1]]")),
        (6, 8),
        "$.data.inline.y",
        "each target of y has shape [2], but the model's output has shape [1]",
    ),
    Case(
        "x_and_y_row_counts_differ",
        edit((Y, "    y: [[0], [1], [1]]")),
        (6, 8),
        "$.data.inline.y",
        "y has 3 rows but x has 4",
    ),
    Case(
        "ragged_x",
        edit((X, "    x: [[0, 0], [0, 1], [1], [1, 1]]")),
        (5, 25),
        "$.data.inline.x[2]",
        "item 0 has shape [2], item 2 has [1]",
    ),
    Case(
        "non_numeric_x",
        edit((X, '    x: [[0, 0], [0, "a"], [1, 0], [1, 1]]')),
        (5, 21),
        "$.data.inline.x[1][1]",
        "expected a number in x, found 'a' (string)",
    ),
    Case(
        "data_without_a_source",
        edit(("  inline:\n" + X + "\n" + Y + "\n", "  validation_split: 0.5\n")),
        (3, 1),
        "$.data",
        "exactly one source",
    ),
    Case(
        "data_with_two_sources",
        edit(("  inline:\n", "  mnist: {download: false}\n  inline:\n")),
        (3, 1),
        "$.data",
        ("exactly one source", "inline, mnist"),
    ),
    Case(
        "unroll_zero",
        edit((STEPS, STEPS + "\n  unroll: 0")),
        (24, 11),
        "$.train.unroll",
        "expected a value >= 1, found 0 (integer)",
    ),
    Case(
        "unroll_without_a_scan",
        edit((STEPS, STEPS + "\n  loop: steps\n  unroll: 2")),
        (25, 11),
        "$.train.unroll",
        "train.loop: steps has no scan loop",
    ),
    Case(
        "batch_size_larger_than_data",
        edit((BATCH, "  batch_size: 8")),
        (24, 15),
        "$.train.batch_size",
        "batch_size 8 is larger than the 4 training examples",
    ),
    # -- loss, output and metrics ---------------------------------------------------------------
    Case(
        "bce_with_relu_output",
        edit((UNITS1, UNITS1 + "      activation: relu\n")),
        (17, 19),
        "$.model.layers[1].activation",
        "binary_crossentropy expects probabilities from a sigmoid output, but the last layer's activation is relu",
    ),
    Case(
        "from_logits_with_sigmoid_output",
        edit((LOSS, "loss: {type: binary_crossentropy, from_logits: true}")),
        (9, 26),
        "$.model.defaults.activation",
        ("the loss has from_logits: true", "sigmoid's output is never negative", "use activation: linear"),
    ),
    Case(
        "cce_with_one_output_unit",
        edit((LOSS, "loss: categorical_crossentropy"), (UNITS1, UNITS1 + "      activation: softmax\n")),
        (16, 14),
        "$.model.layers[1].units",
        "categorical_crossentropy needs an output of shape [classes] with at least 2 classes",
    ),
    Case(
        "accuracy_with_mse",
        edit((LOSS, "loss: mean_squared_error")),
        (18, 11),
        "$.metrics[0]",
        "accuracy needs a classification loss",
    ),
    # -- --set overrides ------------------------------------------------------------------------
    Case(
        "set_without_equals",
        BASE,
        "--set train.steps",
        "$",
        "expected --set dotted.key=value",
        sets=("--set", "train.steps"),
    ),
    Case(
        "set_unparseable_value",
        BASE,
        "--set train.steps=[1,",
        "$.train.steps",
        "cannot parse the value",
        sets=("--set", "train.steps=[1,"),
    ),
    Case(
        "set_list_index_out_of_range",
        BASE,
        "--set model.layers[5].units=3",
        "$.model.layers[5]",
        "there is no item 5 here: this is a list of 2 items",
        sets=("--set", "model.layers[5].units=3"),
    ),
    Case(
        "set_negative_steps",
        BASE,
        "--set train.steps=-5",
        "$.train.steps",
        "expected a value >= 1, found -5 (integer)",
        sets=("--set", "train.steps=-5"),
    ),
    Case("set_into_a_number", BASE, "--set seed.x=1", "$.seed.x", "cannot set 'x' here", sets=("--set", "seed.x=1")),
]


def validate(tmp_path, text, *args):
    """Write `text` to tmp_path/spec.yaml (unless None) and run `netspec validate` on it in-process."""
    spec = tmp_path / "spec.yaml"
    if isinstance(text, bytes):
        spec.write_bytes(text)
    elif text is not None:
        spec.write_text(text, encoding="utf-8")
    return netspec("validate", spec, *args)


def assert_clean_failure(result):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def test_catalogue_is_large_and_ids_are_unique():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


def test_base_spec_is_valid(tmp_path):
    result = validate(tmp_path, BASE)
    assert result.exit_code == 0, result.output
    assert "spec.yaml: ok" in result.output


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_spec(tmp_path, case: Case):
    result = validate(tmp_path, case.text, *case.sets)
    assert_clean_failure(result)
    where = f"spec.yaml:{case.where[0]}:{case.where[1]}" if isinstance(case.where, tuple) else case.where
    first = problem_lines(result.output)[0]
    assert f"{where}: {case.path}: " in first, result.output
    for part in (case.message,) if isinstance(case.message, str) else case.message:
        assert part in first, result.output


def test_python_tag_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    result = validate(tmp_path, edit(("seed: 777", f'seed: !!python/object/apply:os.system ["touch {marker}"]')))
    assert_clean_failure(result)
    assert "is not allowed" in result.output
    assert not marker.exists()


def test_every_problem_is_reported_in_file_order(tmp_path):
    text = edit(("seed: 777", "sead: 777"), (UNITS0, "      units: -2"), (BATCH, "  batch_size: 0"))
    result = validate(tmp_path, text)
    assert_clean_failure(result)
    assert "spec.yaml: 3 problems" in result.output
    lines = problem_lines(result.output)
    assert len(lines) == 3, result.output
    assert "spec.yaml:2:1: $.sead: unknown key" in lines[0]
    assert "spec.yaml:13:14: $.model.layers[0].units: expected a value >= 1" in lines[1]
    assert "spec.yaml:24:15: $.train.batch_size: expected a value >= 1" in lines[2]


def test_every_meaning_problem_is_reported_in_file_order(tmp_path):
    text = edit((UNITS1, UNITS1 + "      inputs: layr1\n"), ("    - name: hypothesis", "    - name: layer1"))
    result = validate(tmp_path, text)
    assert_clean_failure(result)
    assert "spec.yaml: 2 problems" in result.output
    lines = problem_lines(result.output)
    assert "spec.yaml:14:13: $.model.layers[1].name: duplicate layer name" in lines[0]
    assert "spec.yaml:17:15: $.model.layers[1].inputs: no earlier layer" in lines[1]


def test_a_misspelt_required_key_is_one_problem(tmp_path):
    result = validate(tmp_path, edit((UNITS0, "      unit: 2")))
    assert_clean_failure(result)
    assert "spec.yaml: 1 problem" in result.output
    assert "missing required key" not in result.output


def test_each_file_gets_its_own_report(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(BASE)
    bad.write_text(edit((STEPS, "  steps: 0")))
    result = netspec("validate", good, bad)
    assert_clean_failure(result)
    assert "good.yaml: ok" in result.output
    assert "bad.yaml: 1 problem" in result.output
