"""`netspec.load`: positions of every key and value, `--set` overrides, and the limits that keep an
untrusted spec file from costing time or memory."""

from __future__ import annotations

import time

import pytest
from support import billion_laughs

from netspec.errors import SpecError
from netspec.spec import load as L
from netspec.spec.load import apply_override, json_path, load, parse, split_override

TEXT = """\
name: demo
model:
  input: [2]
  layers:
    - name: first
      units: 3
    - {name: second, units: 1}
train: {steps: 10}
"""


def only_problem(excinfo):
    (problem,) = excinfo.value.problems
    return problem


# -- positions --------------------------------------------------------------------------------


def test_positions_of_nested_keys_and_values():
    loaded = parse(TEXT, "s.yaml")
    assert loaded.data["model"]["layers"][1] == {"name": "second", "units": 1}
    assert loaded.where(("name",)) == ("s.yaml", 1, 7)
    assert loaded.where(("name",), key=True) == ("s.yaml", 1, 1)
    assert loaded.where(("model",), key=True) == ("s.yaml", 2, 1)
    assert loaded.where(("model", "input")) == ("s.yaml", 3, 10)
    assert loaded.where(("model", "layers", 0, "units")) == ("s.yaml", 6, 14)
    assert loaded.where(("model", "layers", 0, "units"), key=True) == ("s.yaml", 6, 7)
    assert loaded.where(("train", "steps")) == ("s.yaml", 8, 16)
    assert loaded.where(("train", "steps"), key=True) == ("s.yaml", 8, 9)


def test_positions_of_list_items():
    loaded = parse(TEXT, "s.yaml")
    assert loaded.where(("model", "input", 0)) == ("s.yaml", 3, 11)
    assert loaded.where(("model", "layers", 0)) == ("s.yaml", 5, 7)  # the block item's first key
    assert loaded.where(("model", "layers", 1)) == ("s.yaml", 7, 7)  # the flow mapping's '{'
    assert loaded.where(("model", "layers", 1, "name")) == ("s.yaml", 7, 14)
    assert loaded.where(("model", "layers", 1, "units")) == ("s.yaml", 7, 29)


def test_a_missing_path_falls_back_to_its_nearest_parent():
    loaded = parse(TEXT, "s.yaml")
    assert loaded.where(("model", "layers", 1, "activation")) == loaded.where(("model", "layers", 1))
    assert loaded.where(("nothing", "here")) == ("s.yaml", 1, 1)
    problem = loaded.problem(("model", "layers", 0, "units"), "too many")
    assert str(problem) == "s.yaml:6:14: $.model.layers[0].units: too many"


def test_json_path():
    assert json_path(()) == "$"
    assert json_path(("model", "layers", 2, "units")) == "$.model.layers[2].units"


def test_values_are_plain_data():
    loaded = parse("a: 1\nb: 1.5\nc: true\nd: null\ne: text\nf: 2024-01-01\ng: [1, x]\n", "s")
    assert loaded.data == {"a": 1, "b": 1.5, "c": True, "d": None, "e": "text", "f": "2024-01-01", "g": [1, "x"]}


def test_small_aliases_are_allowed():
    loaded = parse("a: &shape [28, 28]\nb: *shape\n", "s")
    assert loaded.data == {"a": [28, 28], "b": [28, 28]}


# -- --set ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, path, value",
    [
        ("a.b=1", ("a", "b"), "1"),
        ("model.layers[0].units=5", ("model", "layers", 0, "units"), "5"),
        ("model.layers.0.units=5", ("model", "layers", 0, "units"), "5"),
        ("metrics=[accuracy]", ("metrics",), "[accuracy]"),
        ("name=a=b", ("name",), "a=b"),
    ],
)
def test_split_override(text, path, value):
    assert split_override(text) == (path, value)


@pytest.mark.parametrize("text", ["no_equals", "=3", ".a=1", "a..b=1", "a[x]=1"])
def test_split_override_refuses_what_is_not_key_equals_value(text):
    with pytest.raises(SpecError) as excinfo:
        split_override(text)
    problem = only_problem(excinfo)
    assert problem.source == f"--set {text}" and problem.line is None
    assert "expected --set dotted.key=value" in problem.message


def overridden(*texts):
    loaded = parse(TEXT, "s.yaml")
    for text in texts:
        apply_override(loaded, text)
    return loaded


def test_set_a_nested_key():
    loaded = overridden("train.steps=1")
    assert loaded.data["train"] == {"steps": 1}
    assert loaded.where(("train", "steps")) == ("--set train.steps=1", None, None)
    assert loaded.where(("train",)) == ("s.yaml", 8, 8)  # the rest still points into the file


@pytest.mark.parametrize("text", ["model.layers[0].units=5", "model.layers.0.units=5"])
def test_set_a_list_item(text):
    loaded = overridden(text)
    assert loaded.data["model"]["layers"][0]["units"] == 5
    assert loaded.where(("model", "layers", 0, "units")) == (f"--set {text}", None, None)
    assert loaded.where(("model", "layers", 0, "name")) == ("s.yaml", 5, 13)


def test_set_a_list_value():
    loaded = overridden("metrics=[accuracy, mean_squared_error]")
    assert loaded.data["metrics"] == ["accuracy", "mean_squared_error"]
    assert loaded.where(("metrics", 1)) == ("--set metrics=[accuracy, mean_squared_error]", None, None)


def test_set_values_are_yaml():
    loaded = overridden("a=0.5", "b=true", "c=", "d=hello world", "e={x: 1}", "f='7'")
    assert [loaded.data[k] for k in "abcdef"] == [0.5, True, None, "hello world", {"x": 1}, "7"]


def test_set_creates_missing_keys_and_they_point_at_the_set():
    loaded = overridden("summaries.every=10", "a.b.c=1")
    assert loaded.data["summaries"] == {"every": 10}
    assert loaded.data["a"] == {"b": {"c": 1}}
    assert loaded.where(("a",), key=True) == ("--set a.b.c=1", None, None)
    assert loaded.where(("a", "b")) == ("--set a.b.c=1", None, None)


def test_set_replacing_a_subtree_forgets_its_old_positions():
    loaded = overridden("model.layers[1]={name: out, units: 4}")
    origin = ("--set model.layers[1]={name: out, units: 4}", None, None)
    assert loaded.data["model"]["layers"][1] == {"name": "out", "units": 4}
    assert loaded.where(("model", "layers", 1, "units")) == origin
    assert loaded.where(("model", "layers", 1, "units"), key=True) == origin


@pytest.mark.parametrize(
    "text, path, message",
    [
        (
            "model.layers[5].units=3",
            "$.model.layers[5]",
            "there is no item 5 here: this is a list of 2 items (indices 0 to 1)",
        ),
        ("model.input.0.x=3", "$.model.input[0].x", "cannot set 'x' here: the value here is 2, not a mapping"),
        ("name.first=x", "$.name.first", "not a mapping"),
        ("train.steps=[1,", "$.train.steps", "cannot parse the value: YAML syntax error"),
        ("train.steps=!!python/name:os.system", "$.train.steps", "is not allowed"),
    ],
)
def test_bad_set(text, path, message):
    loaded = parse(TEXT, "s.yaml")
    with pytest.raises(SpecError) as excinfo:
        apply_override(loaded, text)
    problem = only_problem(excinfo)
    assert (problem.source, problem.line, problem.path) == (f"--set {text}", None, path)
    assert message in problem.message


def test_load_applies_overrides_in_order(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(TEXT)
    loaded = load(spec, ["train.steps=5", "train.steps=6"])
    assert loaded.data["train"]["steps"] == 6
    assert loaded.source == str(spec)


# -- limits and safety ------------------------------------------------------------------------


def test_billion_laughs_is_refused_quickly():
    text = billion_laughs()
    start = time.perf_counter()
    with pytest.raises(SpecError) as excinfo:
        parse(text, "laughs.yaml")
    assert time.perf_counter() - start < 1.0
    problem = only_problem(excinfo)
    assert "aliases" in problem.message and str(L.MAX_VALUES) in problem.message
    assert problem.line is not None and problem.path.startswith("$.lol")


def test_a_recursive_alias_is_refused():
    with pytest.raises(SpecError) as excinfo:
        parse("a: &a [*a, *a]\n", "s")
    assert "a recursive alias" in only_problem(excinfo).message


def test_nesting_up_to_the_limit_loads():
    depth = L.MAX_DEPTH - 1
    loaded = parse("a: " + "[" * depth + "]" * depth + "\n", "s")
    expected: list = []
    for _ in range(depth - 1):
        expected = [expected]
    assert loaded.data["a"] == expected


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * (L.MAX_DEPTH + 1) + "]" * (L.MAX_DEPTH + 1) + "\n",
        "".join("  " * i + f"k{i}:\n" for i in range(L.MAX_DEPTH + 2)) + "  " * (L.MAX_DEPTH + 2) + "leaf: 1\n",
    ],
)
def test_nesting_deeper_than_the_limit_is_refused(text):
    with pytest.raises(SpecError) as excinfo:
        parse(text, "s")
    problem = only_problem(excinfo)
    assert f"deeper than {L.MAX_DEPTH} levels" in problem.message
    assert "<key>" not in problem.path


def test_a_file_over_the_size_limit_is_refused(tmp_path):
    spec = tmp_path / "big.yaml"
    spec.write_text("# " + "x" * L.MAX_FILE_BYTES + "\nname: big\n")
    with pytest.raises(SpecError) as excinfo:
        load(spec)
    problem = only_problem(excinfo)
    assert problem.source == str(spec)
    assert f"at most {L.MAX_FILE_BYTES} bytes" in problem.message


@pytest.mark.parametrize(
    "text, line, col, path",
    [
        ("a: 1\nb: 2\na: 3\n", 3, 1, "$.a"),
        ("m:\n  x: 1\n  y: 2\n  x: 3\n", 4, 3, "$.m.x"),
        ("l:\n  - {k: 1, k: 2}\n", 2, 12, "$.l[0].k"),
    ],
)
def test_duplicate_keys_are_refused(text, line, col, path):
    with pytest.raises(SpecError) as excinfo:
        parse(text, "s")
    problem = only_problem(excinfo)
    assert (problem.line, problem.col, problem.path) == (line, col, path)
    assert "duplicate key" in problem.message and "also at line" in problem.message


def test_merge_keys_are_refused():
    with pytest.raises(SpecError) as excinfo:
        parse("base: &b {units: 1}\nlayer:\n  <<: *b\n  name: x\n", "s")
    problem = only_problem(excinfo)
    assert (problem.line, problem.col, problem.path) == (3, 3, "$.layer")
    assert "merge keys ('<<') are not supported" in problem.message


@pytest.mark.parametrize(
    "text",
    [
        "a: !!python/object/apply:os.system ['echo hi']\n",
        "a: !!python/name:os.system\n",
        "a: !custom 1\n",
        "!!set {a, b}\n",
    ],
)
def test_non_standard_tags_are_refused(text):
    with pytest.raises(SpecError) as excinfo:
        parse(text, "s")
    assert "is not allowed" in only_problem(excinfo).message


def test_a_key_must_be_a_scalar():
    with pytest.raises(SpecError) as excinfo:
        parse("? [a, b]\n: 1\n", "s")
    assert "a key must be a plain scalar" in only_problem(excinfo).message


def test_text_must_be_utf8(tmp_path):
    spec = tmp_path / "latin1.yaml"
    spec.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(SpecError) as excinfo:
        load(spec)
    problem = only_problem(excinfo)
    assert (problem.line, problem.col) == (1, 10)
    assert "not UTF-8" in problem.message


def test_a_utf8_byte_order_mark_is_fine():
    assert parse("\ufeffname: x\n", "s").data == {"name": "x"}


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n"])
def test_an_empty_file_is_one_clear_problem(text):
    with pytest.raises(SpecError) as excinfo:
        parse(text, "s")
    assert "the file is empty" in only_problem(excinfo).message


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(SpecError) as excinfo:
        load(tmp_path / "nope.yaml")
    assert only_problem(excinfo).message == "no such file"
    with pytest.raises(SpecError) as excinfo:
        load(tmp_path)
    assert "directory" in only_problem(excinfo).message


@pytest.mark.parametrize("before", ["a\rb\r", "a\r\nb\r\n", "a\nb\n", "a\u2028b\x85", "key: value\r  x", ""])
def test_a_bad_byte_and_a_control_character_are_placed_alike(before):
    """Both count lines as YAML does (CR, LF, CR LF, NEL, U+2028/9 end a line): a non-UTF-8 byte and
    a forbidden character at the same place get the same line and column."""
    with pytest.raises(SpecError) as bad_byte:
        parse(before.encode() + b"\x80", "s.yaml")
    with pytest.raises(SpecError) as control:
        parse(before.encode() + b"\x07", "s.yaml")
    (p,), (q,) = bad_byte.value.problems, control.value.problems
    assert (p.line, p.col) == (q.line, q.col), (p, q)
