"""A spec file is untrusted text: a catalogue of hostile inputs, each refused by `netspec validate`
with exit 1, a message that names the problem, its position, no traceback, and nothing executed
or imported. Bombs (aliases, size, depth, count) are refused fast and with little memory.

Each case is SPEC (a valid spec in block style, line numbers beside it) with something hostile
written in, or a whole hostile file. `tests/spec/test_load.py` tests `netspec.load` itself; this file
goes through the command a person (or a pre-commit hook) runs on a file from anywhere.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import SHIPPED, billion_laughs, netspec, problem_lines, validate

from netspec.errors import SpecError
from netspec.machine import BUDGET_ENV
from netspec.spec import load as L
from netspec.spec.cost import DEPTH_MEASURED, MAX_LAYERS, MAX_SUMMARY_POINTS

SPEC = """\
name: hostile
seed: 0
data:
  inline:
    x: [[0, 0], [0, 1], [1, 0], [1, 1]]
    y: [[0], [1], [1], [0]]
model:
  input: [2]
  layers:
    - {name: hidden, type: dense, units: 2, activation: sigmoid}
    - {name: out, type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer:
  type: sgd
  learning_rate: 0.1
train:
  steps: 10
  batch_size: 4
"""
#  1 name  2 seed  3 data  4 inline  5 x  6 y  7 model  8 input  9 layers  10 hidden  11 out
# 12 loss  13 optimizer  14 type  15 learning_rate  16 train  17 steps  18 batch_size

# Every payload below does its harm under yaml.unsafe_load (checked when this file was written):
# touches MARKER, or imports EVIL, a module that leaves MARKER behind when imported or called.
EVIL = "netspec_hostile_evil"
EVIL_SOURCE = """\
import pathlib
pathlib.Path(MARKER).write_text("imported")
def boom(*args, **kwargs):
    pathlib.Path(MARKER).write_text("called")
class Thing:
    def __init__(self, *args, **kwargs):
        boom()
    def __setstate__(self, state):
        boom()
"""


def edit(old: str, new: str) -> str:
    """SPEC with `old` (present exactly once) replaced by `new`."""
    assert SPEC.count(old) == 1, old
    return SPEC.replace(old, new)


def mapping_laughs(levels: int = 12, width: int = 8) -> str:
    lines = ["m0: &m0 {" + ", ".join(f"k{j}: lol" for j in range(width)) + "}"]
    for i in range(1, levels + 1):
        lines.append(f"m{i}: &m{i} {{" + ", ".join(f"k{j}: *m{i - 1}" for j in range(width)) + "}")
    return SPEC + "\n".join(lines) + "\n"


TAG = "the YAML tag 'tag:yaml.org,2002:{}' is not allowed"
TOO_LARGE = "a spec's numbers must be finite"


@dataclass(frozen=True)
class Case:
    id: str
    text: str | bytes | Callable[[Path], str | bytes]  # a callable gets tmp_path (for MARKER)
    where: tuple[int, int] | str | None  # (line, col); None: the whole file; str: the --set source
    path: str
    message: tuple[str, ...]
    args: tuple[str, ...] = ()
    limits: dict = field(default_factory=dict)  # netspec.load limits lowered for this case (speed)


def marked(text: str) -> Callable[[Path], str]:
    return lambda tmp: text.replace("MARKER", str(tmp / "MARKER"))


CASES = [
    # -- code execution through tags: refused before any constructor could run -----------------
    Case(
        "python_object_apply_os_system",
        marked(edit("seed: 0", 'seed: !!python/object/apply:os.system ["touch MARKER"]')),
        (2, 7),
        "$.seed",
        (TAG.format("python/object/apply:os.system"), "no Python objects"),
    ),
    Case(
        "python_object_apply_module_function",
        edit("seed: 0", f"seed: !!python/object/apply:{EVIL}.boom []"),
        (2, 7),
        "$.seed",
        (TAG.format(f"python/object/apply:{EVIL}.boom"),),
    ),
    Case(
        "python_name",
        edit("seed: 0", "seed: !!python/name:os.system"),
        (2, 7),
        "$.seed",
        (TAG.format("python/name:os.system"),),
    ),
    Case(
        "python_name_imports",
        edit("seed: 0", f"seed: !!python/name:{EVIL}.boom"),
        (2, 7),
        "$.seed",
        (TAG.format(f"python/name:{EVIL}.boom"),),
    ),
    Case(
        "python_module",
        edit("seed: 0", "seed: !!python/module:os"),
        (2, 7),
        "$.seed",
        (TAG.format("python/module:os"),),
    ),
    Case(
        "python_module_imports",
        edit("seed: 0", f"seed: !!python/module:{EVIL}"),
        (2, 7),
        "$.seed",
        (TAG.format(f"python/module:{EVIL}"),),
    ),
    Case(
        "python_object_new",
        edit("seed: 0", f"seed: !!python/object/new:{EVIL}.Thing [1]"),
        (2, 7),
        "$.seed",
        (TAG.format(f"python/object/new:{EVIL}.Thing"),),
    ),
    Case(
        "python_object_apply_subprocess",
        marked(edit("seed: 0", "seed: !!python/object/apply:subprocess.check_call [[touch, MARKER]]")),
        (2, 7),
        "$.seed",
        (TAG.format("python/object/apply:subprocess.check_call"),),
    ),
    Case(
        "python_object_state",
        edit("seed: 0", f"seed: !!python/object:{EVIL}.Thing {{a: 1}}"),
        (2, 7),
        "$.seed",
        (TAG.format(f"python/object:{EVIL}.Thing"),),
    ),
    Case(
        "python_tuple",
        edit("  input: [2]", "  input: !!python/tuple [2]"),
        (8, 10),
        "$.model.input",
        (TAG.format("python/tuple"),),
    ),
    Case(
        "python_tag_on_a_nested_value",
        marked(edit("  learning_rate: 0.1", '  learning_rate: !!python/object/apply:os.system ["touch MARKER"]')),
        (15, 18),
        "$.optimizer.learning_rate",
        (TAG.format("python/object/apply:os.system"),),
    ),
    Case(
        "python_tag_on_a_key",
        edit("seed: 0", f"!!python/name:{EVIL}.boom : 0"),
        (2, 1),
        "$",
        (TAG.format(f"python/name:{EVIL}.boom"),),
    ),
    Case(
        "verbatim_python_tag",
        marked(edit("seed: 0", 'seed: !<tag:yaml.org,2002:python/object/apply:os.system> ["touch MARKER"]')),
        (2, 7),
        "$.seed",
        (TAG.format("python/object/apply:os.system"),),
    ),
    Case(
        "tag_directive_to_python",
        marked(
            "%TAG !py! tag:yaml.org,2002:python/\n---\n"
            + edit("seed: 0", 'seed: !py!object/apply:os.system ["touch MARKER"]')
        ),
        (4, 7),
        "$.seed",
        (TAG.format("python/object/apply:os.system"),),
    ),
    Case(
        "custom_include_tag",
        edit("  input: [2]", "  input: !include other.yaml"),
        (8, 10),
        "$.model.input",
        ("the YAML tag '!include' is not allowed", "no Python objects or custom tags"),
    ),
    Case("set_tag", edit("seed: 0", "seed: !!set {a, b}"), (2, 7), "$.seed", (TAG.format("set"),)),
    Case(
        "python_tag_in_set_override",
        SPEC,
        "--set seed=!!python/object/apply:os.system [true]",
        "$.seed",
        ("cannot parse the value", TAG.format("python/object/apply:os.system")),
        args=("--set", "seed=!!python/object/apply:os.system [true]"),
    ),
    Case(
        "scalar_tag_on_a_list",
        edit("  input: [2]", "  input: !!float [2]"),
        (8, 10),
        "$.model.input",
        ("the YAML tag 'tag:yaml.org,2002:float' does not fit a list",),
    ),
    Case("impossible_bool", edit("seed: 0", "seed: !!bool maybe"), (2, 7), "$.seed", ("cannot read 'maybe' as bool",)),
    Case("impossible_int", edit("seed: 0", "seed: !!int seven"), (2, 7), "$.seed", ("cannot read 'seven' as int",)),
    # -- aliases: bombs and cycles --------------------------------------------------------------
    Case(
        "billion_laughs",
        billion_laughs(),
        (6, 7),
        "$.lol5",
        ("expands to 12345679021 values through YAML aliases", f"at most {L.MAX_VALUES}"),
    ),
    Case(
        "billion_laughs_of_mappings",
        mapping_laughs(),
        (24, 5),
        "$.m5",
        ("through YAML aliases", f"at most {L.MAX_VALUES}"),
    ),
    Case(
        "recursive_list_alias",
        edit("seed: 0", "seed: &s [*s]"),
        (2, 7),
        "$.seed[0]",
        ("a recursive alias: this list holds an alias to itself",),
    ),
    Case(
        "recursive_mapping_alias",
        edit("seed: 0", "seed: &s {again: *s}"),
        (2, 7),
        "$.seed.again",
        ("a recursive alias: this mapping holds an alias to itself",),
    ),
    Case(
        "mutually_recursive_aliases",
        edit("seed: 0", "seed: &a [&b [*a, *b]]"),
        (2, 7),
        "$.seed[0][0]",
        ("a recursive alias",),
    ),
    Case(
        "recursive_alias_deep_inside",
        edit("  input: [2]", "  input: &i [1, [2, [3, {x: [*i]}]]]"),
        (8, 10),
        "$.model.input[1][1][1].x[0]",
        ("a recursive alias",),
    ),
    Case(
        "alias_to_an_unknown_anchor",
        edit("seed: 0", "seed: *nowhere"),
        (2, 7),
        "$",
        ("YAML syntax error", "found undefined alias 'nowhere'"),
    ),
    Case(
        "merge_key",
        edit("  type: sgd\n", "  <<: {type: sgd}\n"),
        (14, 3),
        "$.optimizer",
        ("merge keys ('<<') are not supported", "write the keys out"),
    ),
    Case(
        "merge_key_through_an_alias",
        "base: &b {type: dense, units: 2}\n"
        + edit(
            "    - {name: hidden, type: dense, units: 2, activation: sigmoid}",
            "    - {<<: *b, name: hidden, activation: sigmoid}",
        ),
        (11, 8),
        "$.model.layers[0]",
        ("merge keys ('<<') are not supported",),
    ),
    # -- duplicate keys (PyYAML would keep the last one silently) -------------------------------
    Case(
        "duplicate_top_level_key",
        edit("loss: binary_crossentropy\n", "loss: binary_crossentropy\nloss: mean_squared_error\n"),
        (13, 1),
        "$.loss",
        ("duplicate key 'loss' (also at line 12)", "a key may appear once"),
    ),
    Case(
        "duplicate_nested_key",
        edit("  learning_rate: 0.1\n", "  learning_rate: 0.1\n  learning_rate: 100\n"),
        (16, 3),
        "$.optimizer.learning_rate",
        ("duplicate key 'learning_rate' (also at line 15)",),
    ),
    Case(
        "duplicate_key_in_a_flow_mapping",
        edit("units: 1,", "units: 1, units: 9,"),
        (11, 42),
        "$.model.layers[1].units",
        ("duplicate key 'units' (also at line 11)",),
    ),
    Case(
        "duplicate_key_spelt_differently",
        edit("seed: 0", "seed: 0\n'seed': 1"),
        (3, 1),
        "$.seed",
        ("duplicate key 'seed' (also at line 2)",),
    ),
    # -- size, depth, count ---------------------------------------------------------------------
    Case(
        "over_the_size_limit",
        SPEC + "# " + "x" * L.MAX_FILE_BYTES + "\n",
        None,
        "$",
        (f"a spec may be at most {L.MAX_FILE_BYTES} bytes",),
    ),
    Case(
        "nested_one_level_too_deep",
        edit("seed: 0", "seed: " + "[" * (L.MAX_DEPTH + 1) + "]" * (L.MAX_DEPTH + 1)),
        (2, 7 + L.MAX_DEPTH),
        "$.seed" + "[0]" * L.MAX_DEPTH,
        (f"nests deeper than {L.MAX_DEPTH} levels",),
    ),
    Case(
        "nested_ten_thousand_deep",
        edit("seed: 0", "seed: " + "[" * 10_000 + "]" * 10_000),
        (2, 7 + L.MAX_DEPTH + 1),
        "$",
        (f"nests deeper than {L.MAX_DEPTH} levels",),
    ),
    Case(
        "nested_block_mappings_deep",
        "".join("  " * i + f"k{i}:\n" for i in range(500)),
        (L.MAX_DEPTH + 2, 2 * L.MAX_DEPTH + 3),
        "$",
        (f"nests deeper than {L.MAX_DEPTH} levels",),
    ),
    # the limits lowered, to keep it fast: the 1,001st node (root, name, hostile, seed, [, 996 items) stops the reading
    Case(
        "more_values_than_the_limit",
        edit("seed: 0", "seed: [" + ", ".join(["1"] * 100_000) + "]"),
        (2, 8 + 3 * 995),
        "$",
        ("holds more than 1000 values", "large data belongs in a data file"),
        limits={"MAX_VALUES": 1000},
    ),
    Case(
        "more_values_than_the_limit_through_aliases",
        edit("seed: 0", "seed: [&a [" + ", ".join(["1"] * 100) + "]" + ", *a" * 10 + "]"),
        (2, 7),
        "$.seed",
        ("values through YAML aliases", "at most 1000"),
        limits={"MAX_VALUES": 1000},
    ),
    # -- encodings and characters ---------------------------------------------------------------
    Case(
        "latin1_bytes",
        edit("name: hostile", "name: hostilé").encode("latin-1"),
        (1, 13),
        "$",
        ("not UTF-8 text (byte 0xe9)", "save it as UTF-8"),
    ),
    Case("random_binary", b"name: x\n" + bytes(range(128, 256)), (2, 1), "$", ("not UTF-8 text (byte 0x80)",)),
    Case("utf16_with_bom", SPEC.encode("utf-16"), (1, 1), "$", ("not UTF-8 text (byte 0xff)",)),
    Case("utf16_without_bom", SPEC.encode("utf-16-le"), (1, 2), "$", ("U+0000 is not allowed", "UTF-16 or binary")),
    Case(
        "nul_byte",
        edit("loss: binary_crossentropy", "loss: binary\0crossentropy").encode(),
        (12, 13),
        "$",
        ("U+0000 is not allowed",),
    ),
    Case("control_character", edit("name: hostile", "name: host\x07ile"), (1, 11), "$", ("U+0007 is not allowed",)),
    # -- numbers beyond any sense ---------------------------------------------------------------
    # YAML 1.2 reads 1e400 (no '.', no sign) as a number, as JSON does: too large, not text
    Case(
        "float_1e400",
        edit("  learning_rate: 0.1", "  learning_rate: 1e400"),
        (15, 18),
        "$.optimizer.learning_rate",
        ("1e400 is too large",),
    ),
    Case(
        "float_with_sign_1e400",
        edit("  learning_rate: 0.1", "  learning_rate: 1.0e+400"),
        (15, 18),
        "$.optimizer.learning_rate",
        ("is too large",),
    ),
    Case(
        "float_nan",
        edit("  learning_rate: 0.1", "  learning_rate: .nan"),
        (15, 18),
        "$.optimizer.learning_rate",
        ("the number .nan is not a number",),
    ),
    Case(
        "float_inf",
        edit("  learning_rate: 0.1", "  learning_rate: .inf"),
        (15, 18),
        "$.optimizer.learning_rate",
        ("the number .inf is infinite",),
    ),
    Case(
        "int_10000_digits",
        edit("  steps: 10", "  steps: " + "9" * 10_000),
        (17, 10),
        "$.train.steps",
        ("(10000 characters) is too large", TOO_LARGE),
    ),
    Case(
        "int_past_64_bits", edit("seed: 0", f"seed: {2**64}"), (2, 7), "$.seed", (f"the number {2**64} is too large",)
    ),
    Case(
        "int_in_a_set_override",
        SPEC,
        "--set train.steps=" + "9" * 5000,
        "$.train.steps",
        ("(5000 characters) is too large",),
        args=("--set", "train.steps=" + "9" * 5000),
    ),
    Case(
        "int_past_64_bits_in_data",
        edit("[0, 1], [1, 0]", f"[0, 1], [{2**70}, 0]"),
        (5, 26),
        "$.data.inline.x[2][0]",
        ("is too large",),
    ),
    # -- very long keys -------------------------------------------------------------------------
    Case(
        "key_of_100k_characters",
        SPEC + "k" * 100_000 + ": 1\n",
        (19, 100_001),
        "$",
        ("could not find expected ':'", "a key on one line may be at most 1024 characters"),
    ),
    Case(
        "explicit_key_of_100k_characters",
        SPEC + "? " + "k" * 100_000 + "\n: 1\n",
        (19, 3),
        "$.kkkkkkkkkkkkkkkkkkkk... (100000 characters)",
        ("unknown key 'kkkkkkkkkkkkkkkkkkkkkk", "..."),
    ),
    Case(
        "quoted_key_of_1000_characters",
        edit("seed: 0", '"' + "s" * 1000 + '": 0'),
        (2, 1),
        "$.ssssssssssssssssssss... (1000 characters)",
        ("unknown key",),
    ),
]


@pytest.fixture
def evil_module(tmp_path, monkeypatch):
    """An importable module that would leave tmp_path/MARKER behind if imported or called."""
    (tmp_path / f"{EVIL}.py").write_text(EVIL_SOURCE.replace("MARKER", repr(str(tmp_path / "MARKER"))))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(EVIL, None)
    yield tmp_path / "MARKER"
    sys.modules.pop(EVIL, None)


def test_catalogue_ids_are_unique():
    assert len({c.id for c in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_spec_is_refused(case: Case, tmp_path, evil_module, monkeypatch):
    for name, value in case.limits.items():
        monkeypatch.setattr(L, name, value)
    (tmp_path / "other.yaml").write_text(SPEC)  # what `!include other.yaml` would pull in
    text = case.text(tmp_path) if callable(case.text) else case.text
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    start = time.perf_counter()
    result = validate(spec, *case.args)
    elapsed = time.perf_counter() - start

    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # anything else is a traceback
    assert "Traceback" not in result.output
    assert result.output.startswith(f"{spec}: 1 problem\n"), result.output[:500]
    (first,) = problem_lines(result.output)
    if case.where is None:
        where = str(spec)
    elif isinstance(case.where, str):
        where = case.where
    else:
        where = f"{spec}:{case.where[0]}:{case.where[1]}"
    assert first.startswith(f"{where}: {case.path}: "), first[:500]
    for part in case.message:
        assert part in first, first[:500]
    assert len(first) < len(where) + 600, "a hostile value must not blow up the message"
    assert elapsed < 2.5, f"refusing took {elapsed:.2f} s"
    assert not evil_module.exists(), evil_module.read_text()
    assert EVIL not in sys.modules


@pytest.mark.parametrize(
    "case",
    [
        c
        for c in CASES
        if c.id in ("python_object_apply_os_system", "python_module_imports", "billion_laughs", "nul_byte")
    ],
    ids=lambda c: c.id,
)
def test_run_refuses_it_too_and_writes_nothing(case: Case, tmp_path, evil_module):
    text = case.text(tmp_path) if callable(case.text) else case.text
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    result = netspec("run", spec, "--logdir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output and case.message[0] in result.output, result.output
    assert not (tmp_path / "runs").exists()
    assert not evil_module.exists() and EVIL not in sys.modules


def test_billion_laughs_is_refused_fast_and_small():
    text = billion_laughs()
    L.parse("a: 1\n", "warm-up")  # imports and regex compilation are not the bomb's cost
    start = time.perf_counter()
    with pytest.raises(SpecError):
        L.parse(text, "laughs.yaml")
    assert time.perf_counter() - start < 0.5

    tracemalloc.start()
    try:
        with pytest.raises(SpecError) as excinfo:
            L.parse(text, "laughs.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert "through YAML aliases" in excinfo.value.problems[0].message


@pytest.mark.parametrize("levels, width", [(30, 2), (6, 100), (20, 10)], ids=["deep", "wide", "huge"])
def test_alias_bombs_of_other_shapes_are_refused_fast(levels, width):
    start = time.perf_counter()
    with pytest.raises(SpecError) as excinfo:
        L.parse(billion_laughs(levels, width), "laughs.yaml")
    assert time.perf_counter() - start < 0.5
    assert f"at most {L.MAX_VALUES}" in excinfo.value.problems[0].message


def test_aliases_within_the_limit_still_load():
    loaded = L.parse(billion_laughs(levels=3, width=10), "s")  # 1,111 values after expansion
    assert len(loaded.data["lol3"]) == 10 and loaded.data["lol3"][9][9][9] == ["lol"] * 10


def test_a_fan_out_of_one_big_string_costs_no_memory(tmp_path):
    big = "x" * 50_000
    text = (
        SPEC.replace("name: hostile", "name: &n hostile")
        + f"description: &d {big}\nextra: ["
        + ", ".join(["*d"] * 2000)
        + "]\n"
    )
    tracemalloc.start()
    try:
        with pytest.raises(SpecError):
            from netspec.spec.check import check

            check(L.parse(text, "s"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.1f} MiB"  # 2,000 references, not 2,000 copies (100 MB)


@pytest.mark.slow  # ~8 s: PyYAML is pure Python; it reads MAX_VALUES nodes before refusing
def test_the_biggest_flat_file_is_refused_in_bounded_time():
    n = (L.MAX_FILE_BYTES - 16) // 2
    text = "a: [" + "1," * n + "]\n"
    start = time.perf_counter()
    with pytest.raises(SpecError) as excinfo:
        L.parse(text, "big.yaml")
    assert time.perf_counter() - start < 60  # without the composer's count: minutes and ~650 MB
    assert f"more than {L.MAX_VALUES} values" in excinfo.value.problems[0].message


def test_a_date_that_does_not_exist_is_only_text(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC + "description: 2024-13-45\n")
    result = validate(spec)
    assert result.exit_code == 0, result.output


def test_the_largest_64_bit_integers_are_numbers():
    assert L.parse(f"a: {2**63 - 1}\nb: {-(2**63)}\n", "s").data == {"a": 2**63 - 1, "b": -(2**63)}


# -- what a spec may ask of the machine: the run plan and the model's size (netspec.cost) -----------


def refused_at(spec: Path, path: str, *words: str, args: tuple = (), env: dict | None = None) -> str:
    """validate and run both refuse `spec` with one problem at `path` holding `words`; returns it."""
    result = netspec("validate", spec, *args, env=env)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    (problem,) = problem_lines(result.output)
    assert f": {path}: " in problem, problem
    for word in words:
        assert word in problem, problem
    runs = spec.parent / "runs"
    result = netspec("run", spec, *args, "--logdir", runs, "--quiet", env=env)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit) and "Traceback" not in result.output, (
        result.output
    )
    assert words[0] in result.output and not runs.exists()
    return problem


@pytest.mark.parametrize(
    "sets, path, words",
    [
        (
            ("train.steps=1000000000", "summaries.every=1"),
            "$.summaries.every",
            (
                "1000000000 steps with a summary every 1 steps are 1000000001 summary points",
                f"at most {MAX_SUMMARY_POINTS}",
                "Set summaries.every to 10001 or more",
            ),
        ),
        (
            (
                "train.steps=9000000",
                "eval.every=100",
                "data.inline.x=[[0, 0], [0, 1], [1, 0], [1, 1], [1, 1]]",
                "data.inline.y=[[0], [1], [1], [0], [0]]",
                "data.validation_split=0.2",
            ),
            "$.eval.every",
            (
                "9000000 steps with eval.every 100 are 90000 evaluations; a run makes at most 10000",
                "Set eval.every to 900 or more",
            ),
        ),
        (
            ("train.steps=2000000000", "summaries.every=50000", "checkpoint.every=50000"),
            "$.checkpoint.every",
            (
                "2000000000 steps with checkpoint.every 50000 are 40000 checkpoints; a run makes at most 10000",
                "Set checkpoint.every to 200000 or more",
            ),
        ),
    ],
    ids=["summaries", "evaluations", "checkpoints"],
)
def test_a_plan_past_what_a_run_may_write_is_refused(sets, path, words, tmp_path):
    """10**9 steps with summaries.every: 1 validated, then built a list of 10**9 chunk lengths."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    refused_at(spec, path, *words, args=tuple(a for s in sets for a in ("--set", s)))


def test_a_plan_at_the_bounds_is_valid(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    steps = (MAX_SUMMARY_POINTS - 1) * 100
    sets = [
        f"train.steps={steps}",
        "summaries.every=100",
        "checkpoint.every=1000",
    ]  # 99,999 summary points, 9,999 checkpoints
    result = validate(spec, *(a for s in sets for a in ("--set", s)))
    assert result.exit_code == 0, result.output


def deep_spec(n: int, units: int = 4) -> str:
    layers = "".join(f"    - {{name: d{i}, type: dense, units: {units}, activation: tanh}}\n" for i in range(n - 1))
    return edit("    - {name: hidden, type: dense, units: 2, activation: sigmoid}\n", layers)


def test_a_model_deeper_than_compiles_is_refused(tmp_path):
    """10,000 dense layers validated in 9 s, then the run aborted with std::bad_alloc at 5 GB."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(deep_spec(MAX_LAYERS + 1))
    start = time.perf_counter()
    problem = refused_at(
        spec,
        "$.model.layers",
        f"the model has {MAX_LAYERS + 1} layers; netspec compiles at most {MAX_LAYERS}",
        "Use fewer, wider layers",
    )
    assert time.perf_counter() - start < 10
    assert DEPTH_MEASURED in problem
    spec.write_text(deep_spec(MAX_LAYERS))
    assert validate(spec).exit_code == 0


def test_validate_of_a_deep_model_takes_milliseconds_a_layer(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(deep_spec(MAX_LAYERS))
    validate(spec)  # imports
    start = time.perf_counter()
    assert validate(spec).exit_code == 0
    assert time.perf_counter() - start < 3.0  # 0.25 s here; it was 0.6 s before alike layers were checked once


@pytest.mark.parametrize(
    "broken, at, words",
    [
        ("{name: d500, type: dense, unit: 4, activation: tanh}", "$.model.layers[500].unit", "did you mean 'units'"),
        ("{name: d500, type: dense, units: four, activation: tanh}", "$.model.layers[500].units", "'four' (string)"),
        ("{name: 'd 500', type: dense, units: 4, activation: tanh}", "$.model.layers[500].name", "a layer name"),
        ("{type: dense, units: 4, activation: tanh}", "$.model.layers[500]", "'name'"),
        ("{name: d500, type: dense, units: 4, activation: tanhh}", "$.model.layers[500].activation", "'tanh'"),
    ],
    ids=["misspelt key", "wrong type", "bad name", "no name", "misspelt activation"],
)
def test_a_mistake_in_one_of_many_alike_layers_is_found_at_that_layer(tmp_path, broken, at, words):
    """The schema checks one layer of each kind when a model repeats layers alike but for their
    names; a mistake in any one of them is still found, at that layer's own line."""
    text = deep_spec(MAX_LAYERS).replace(
        "    - {name: d500, type: dense, units: 4, activation: tanh}\n", f"    - {broken}\n"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    result = validate(spec)
    assert result.exit_code == 1, result.output
    (problem,) = problem_lines(result.output)
    line = 1 + text.splitlines().index(f"    - {broken}")
    assert f"spec.yaml:{line}:" in problem and f": {at}: " in problem and words in problem, problem


def test_alike_layers_are_checked_and_filled_as_each_one_alone(monkeypatch):
    """The folded check and the filling once per kind of layer give what every layer checked and
    filled on its own gives: the resolved spec, key order included, for every shipped spec and
    a deep one whose layers write their keys, and those of their initializers, in different orders."""
    import copy
    import json
    import random

    from netspec.spec import defaults, messages
    from netspec.spec.load import parse

    texts = [path.read_text() for path in SHIPPED] + [deep_spec(300)]
    loaded = [parse(t, "spec.yaml") for t in texts]
    rng = random.Random(0)
    shuffled = copy.deepcopy(loaded[-1].data)

    def shuffle(mapping: dict) -> None:
        items = list(mapping.items())
        rng.shuffle(items)
        mapping.clear()
        mapping.update(items)

    for layer in shuffled["model"]["layers"][:-1]:
        layer["kernel_init"] = {"type": "random_normal", "stddev": 0.5, "mean": 0.1}
        shuffle(layer)
        shuffle(layer["kernel_init"])
    datas = [one.data for one in loaded] + [shuffled]
    folded = [json.dumps(defaults.resolve(copy.deepcopy(d))) for d in datas]
    assert all(messages.schema_problems(one) == [] for one in loaded)
    monkeypatch.setattr(
        defaults, "_fill_items", lambda schema, items: [defaults.fill_defaults(schema, i) for i in items]
    )
    monkeypatch.setattr(messages, "_alike_layers_folded", lambda data: None)
    assert folded == [json.dumps(defaults.resolve(copy.deepcopy(d))) for d in datas]
    assert all(messages.schema_problems(one) == [] for one in loaded)


def test_a_model_too_large_for_the_memory_is_refused_at_its_largest_layer(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    layers = (
        "model.layers=[{name: a, type: dense, units: 100000}, {name: b, type: dense, units: 20000, activation: relu}, "
        "{name: out, type: dense, units: 1, activation: sigmoid}]"
    )
    refused_at(
        spec,
        "$.model.layers[1]",
        "training this spec needs at least 14.9 GiB of memory, more than the budget of 12 GiB "
        "(NETSPEC_MEMORY_BUDGET=12GiB)",
        "parameters (2 billion float32) 7.45 GiB, their gradients 7.45 GiB",
        "The parameters take the most: layer 'b' (dense) alone holds 2000020000 (kernel [100000, 20000], bias [20000])",
        args=("--set", layers),
        env={BUDGET_ENV: "12GiB"},
    )
    refused_at(
        spec,
        "$.model.layers[1]",
        "adam's state (2 x the parameters) 14.9 GiB",
        args=("--set", layers, "--set", "optimizer.type=adam"),
        env={BUDGET_ENV: "16GiB"},
    )  # what fits with sgd does not with adam's two more copies


CONV = (
    SPEC.replace(
        "  inline:\n    x: [[0, 0], [0, 1], [1, 0], [1, 1]]\n    y: [[0], [1], [1], [0]]\n", "  fashion_mnist: {}\n"
    )
    .replace("input: [2]", "input: [784]")
    .replace("binary_crossentropy", "sparse_categorical_crossentropy")
    .replace(
        "    - {name: hidden, type: dense, units: 2, activation: sigmoid}\n    - {name: out, type: dense, units: 1, activation: sigmoid}\n",
        "    - {name: image, type: reshape, shape: [28, 28, 1]}\n    - {name: conv, type: conv2d, filters: 64, kernel_size: 3, padding: same}\n"
        "    - {name: flat, type: flatten}\n    - {name: out, type: dense, units: 10, activation: softmax}\n",
    )
)


def test_a_batch_too_large_for_the_memory_is_refused_at_the_batch_size(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(CONV)
    refused_at(
        spec,
        "$.train.batch_size",
        "the activations of one batch of 10000 kept for the backward pass 1.9 GiB",
        "each example keeps 196 KiB for the backward pass (layer 'conv' 196 KiB); use a smaller batch_size",
        args=("--set", "train.batch_size=10000"),
        env={BUDGET_ENV: "2GiB"},
    )


def test_data_too_large_for_the_memory_is_refused_at_the_data(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(CONV.replace("filters: 64", "filters: 1"))
    refused_at(
        spec,
        "$.data.fashion_mnist",
        "the training data (60000 examples) 44.9 MiB",
        "The data takes the most",
        "data.max_resident_mb",
        env={BUDGET_ENV: "40MiB"},
    )


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_spec_fits_a_small_machine(path, monkeypatch):
    """The largest shipped spec (fashion_cnn, mnist_cnn: at least 629 MiB on this CPU with the
    runtime and the host's copies of the data, 268 MiB on a device) fits a 1 GiB device: validate
    admits them all far from any real machine's memory."""
    monkeypatch.setenv(BUDGET_ENV, "1GiB")
    from netspec.spec.check import check

    check(L.load(path))


def test_a_run_directory_record_is_not_estimated_again(tmp_path, monkeypatch):
    """A run's own record of its data (check(data_info=...): predict, eval, resume) was admitted
    where the run started; another machine's budget does not refuse using it."""
    from netspec.spec.check import check

    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    info = check(L.load(spec)).data_info
    monkeypatch.setenv(BUDGET_ENV, "100")
    with pytest.raises(SpecError, match="more than the budget of 100 bytes"):
        check(L.load(spec))
    check(L.load(spec), data_info=info)
