"""netspec.spec.sweep: a spec's `sweep` expanded into members, each checked as a spec of its own.

The members (a grid's every combination in order, a random search's draws from the spec's seed),
their names, each member's spec equal to the plain spec with the member's `--set` values, the
sweep section's refusals at their line:col, validate's messages (the member named, the sweep
key's line, one message per member a bad value is in, a problem of every member once), and
validate of a sweep staying pure Python. Training a sweep is tests/e2e/test_sweep.py's.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest
from support import XOR, cli, problem_lines, write

from netspec.errors import SpecError
from netspec.spec import load_spec, load_sweep
from netspec.spec.load import load
from netspec.spec.schema import MAX_MEMBERS
from netspec.spec.sweep import NAME_LIMIT, member_names
from netspec.spec.types import plain


def with_sweep(block: str, base: str = XOR) -> str:
    """The XOR spec with `block` (the sweep: lines) after its seed line: the sweep key is line 3."""
    return base.replace("seed: 0\n", "seed: 0\n" + block, 1)


GRID = with_sweep("sweep:\n  optimizer.learning_rate: [0.03, 0.1, 0.3, 1.0]\n  seed: [0, 1, 2, 3]\n")
#  1 name   2 seed   3 sweep   4   optimizer.learning_rate   5   seed

RANDOM = with_sweep(
    "sweep:\n"
    "  samples: 6\n"
    "  axes:\n"
    "    optimizer.learning_rate: {log_uniform: [0.001, 1.0]}\n"
    "    optimizer.momentum: {uniform: [0.5, 0.99]}\n"
    "    model.layers[0].units: {choice: [2, 4, 8]}\n"
)


def sweep_of(tmp_path, text: str, *sets: str):
    return load_sweep(write(tmp_path / "spec.yaml", text), sets)


def problems(tmp_path, text: str, *sets: str) -> list[str]:
    with pytest.raises(SpecError) as e:
        sweep_of(tmp_path, text, *sets)
    return [str(p).replace(str(tmp_path / "spec.yaml"), "spec.yaml") for p in e.value.problems]


# -- the members ------------------------------------------------------------------------------------


def test_a_grid_is_every_combination_the_last_key_fastest(tmp_path):
    sweep = sweep_of(tmp_path, GRID)
    assert sweep.kind == "grid" and sweep.name == "xor"
    assert sweep.keys == ("optimizer.learning_rate", "seed")
    assert [tuple(m.values.values()) for m in sweep.members] == [
        (lr, seed) for lr in (0.03, 0.1, 0.3, 1.0) for seed in (0, 1, 2, 3)
    ]
    assert [m.name for m in sweep.members][:5] == [
        "learning_rate=0.03,seed=0",
        "learning_rate=0.03,seed=1",
        "learning_rate=0.03,seed=2",
        "learning_rate=0.03,seed=3",
        "learning_rate=0.1,seed=0",
    ]
    for member in sweep.members:
        assert member.spec.optimizer["learning_rate"] == member.values["optimizer.learning_rate"]
        assert member.spec.seed == member.values["seed"]
        assert member.spec.swept == ("optimizer.learning_rate", "seed")
        assert "sweep" not in member.spec.resolved


@pytest.mark.parametrize("text", [GRID, RANDOM], ids=["grid", "random"])
def test_each_member_is_the_plain_spec_with_its_set_values(tmp_path, text):
    """`Member.overrides` (--set sweep=null, then each value) give the member's spec exactly."""
    path = write(tmp_path / "spec.yaml", text)
    for member in load_sweep(path).members:
        plain_run = load_spec(path, member.overrides)
        assert plain(plain_run.resolved) == plain(member.spec.resolved), member.name
        assert plain_run.steps == member.spec.steps and plain_run.layers == member.spec.layers


def test_a_random_search_is_drawn_from_the_spec_seed(tmp_path):
    first, again = sweep_of(tmp_path, RANDOM), sweep_of(tmp_path, RANDOM)
    assert first.kind == "random" and len(first.members) == 6
    values = [dict(m.values) for m in first.members]
    assert values == [dict(m.values) for m in again.members]  # the same seed, the same members
    other = sweep_of(tmp_path, RANDOM.replace("seed: 0\n", "seed: 1\n", 1))
    assert values != [dict(m.values) for m in other.members]
    for v in values:
        assert 0.001 <= v["optimizer.learning_rate"] <= 1.0 and 0.5 <= v["optimizer.momentum"] <= 0.99
        assert v["model.layers[0].units"] in (2, 4, 8)
        for key in ("optimizer.learning_rate", "optimizer.momentum"):  # 6 significant digits: the name shows it whole
            assert float(f"{v[key]:g}") == v[key]
    assert [m.spec.layers[0].args["units"] for m in first.members] == [v["model.layers[0].units"] for v in values]


def test_the_random_draws_are_pinned(tmp_path):
    """random.Random(seed).random() is the one sequence Python promises never to change; the draws
    are a formula of it, so these members are the same on every machine and Python version."""
    import random

    rng = random.Random(0)
    u = [rng.random() for _ in range(3)]
    first = sweep_of(tmp_path, RANDOM).members[0].values
    assert first["optimizer.learning_rate"] == float(f"{math.exp(math.log(0.001) + math.log(1000.0) * u[0]):.6g}")
    assert first["optimizer.momentum"] == float(f"{0.5 + 0.49 * u[1]:.6g}")
    assert first["model.layers[0].units"] == [2, 4, 8][int(u[2] * 3)]


def test_samples_written_as_a_whole_float_is_that_many(tmp_path):
    assert len(sweep_of(tmp_path, RANDOM.replace("samples: 6", "samples: 3.0e+0")).members) == 3


def test_a_value_null_removes_the_key_as_set_does(tmp_path):
    sweep = sweep_of(tmp_path, with_sweep("sweep:\n  optimizer.momentum: [null, 0.9]\n"))
    assert [m.spec.optimizer["momentum"] for m in sweep.members] == [None, 0.9]
    assert [m.name for m in sweep.members] == ["momentum=null", "momentum=0.9"]


# -- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys, row, name",
    [
        (["optimizer.learning_rate", "seed"], [0.1, 2], "learning_rate=0.1,seed=2"),
        (["optimizer.learning_rate"], [1e-05], "learning_rate=1e-05"),
        (["optimizer.learning_rate"], [1.0], "learning_rate=1"),
        (["seed"], [12345678901], "seed=12345678901"),  # integers whole, not 1.23457e+10
        (["train.shuffle"], [False], "shuffle=false"),
        (["model.layers[0].activation"], ["leaky relu/x"], "activation=leaky_relu_x"),
        (["model.layers[0].units", "model.layers[1].units"], [4, 8], "model.layers.0.units=4,model.layers.1.units=8"),
        (["data.csv.features[1]"], ["age"], "features.1=age"),
        (
            ["optimizer.learning_rate"],
            [{"type": "cosine_decay", "init_value": 0.1, "decay_steps": 100}],
            "learning_rate=cosine_decay+init_value=0.1+decay_steps=100",
        ),
    ],
)
def test_a_member_is_named_by_its_values(keys, row, name):
    assert member_names(keys, [row]) == [name]


def test_names_are_one_safe_directory_name_each_and_unique():
    names = member_names(["model.layers[0].activation"], [["relu"], ["relu"], ["x" * 500], ["../..", "a"][:1]])
    assert names[:2] == ["activation=relu,member=1", "activation=relu,member=2"]
    assert len(names[2]) == NAME_LIMIT
    assert all(re.fullmatch(r"[A-Za-z0-9._,=+\-]+", n) and "/" not in n for n in names)
    assert names[3] == "activation=.._.."


# -- the sweep section's refusals, at their line:col --------------------------------------------------


@pytest.mark.parametrize(
    "block, expected",
    [
        ("sweep:\n  seed: []\n", "spec.yaml:4:9: $.sweep.seed: expected a list of at least 1 item, found 0"),
        ("sweep:\n  seed: 3\n", "spec.yaml:4:9: $.sweep.seed: expected a list, found 3 (integer)"),
        ("sweep: {}\n", "spec.yaml:3:8: $.sweep: expected a mapping with at least 1 key, found an empty one"),
        ("sweep: [1, 2]\n", "spec.yaml:3:8: $.sweep: expected a mapping, found list"),
        (
            "sweep:\n  samples: 4\n  axes:\n    seed: {normal: [0, 1]}\n",
            "spec.yaml:6:12: $.sweep.axes.seed.normal: unknown key 'normal'",
        ),
        (
            "sweep:\n  samples: 4\n  axes:\n    optimizer.learning_rate: {uniform: [0.3, 0.1]}\n",
            "spec.yaml:6:40: $.sweep.axes['optimizer.learning_rate'].uniform: expected [lo, hi] with lo < hi; found [0.3, 0.1]",
        ),
        (
            "sweep:\n  samples: 4\n  axes:\n    optimizer.learning_rate: {log_uniform: [0, 1]}\n",
            "log_uniform draws on a log scale, so lo must be above 0; found [0, 1]",
        ),
        (
            "sweep:\n  samples: 4\n  axes:\n    seed: {uniform: [0, 1], choice: [1]}\n",
            "an axis is one of {log_uniform: [lo, hi]}, {uniform: [lo, hi]} or {choice: [values]}",
        ),
        (
            f"sweep:\n  samples: {MAX_MEMBERS + 1}\n  axes:\n    seed: {{choice: [1]}}\n",
            f"spec.yaml:4:12: $.sweep.samples: expected a value <= {MAX_MEMBERS}, found {MAX_MEMBERS + 1} (integer)",
        ),
        ("sweep:\n  samples: 4\n", "spec.yaml:3:1: $.sweep: missing required key 'axes'"),
        (
            "sweep:\n  samples: 4\n  axes: {seed: {choice: [1]}}\n  train.steps: [10]\n",
            "spec.yaml:6:3: $.sweep['train.steps']: a random search (samples, axes) names its keys under axes",
        ),
        (
            "sweep:\n  seed: ["
            + ", ".join(map(str, range(64)))
            + "]\n  train.steps: ["
            + ", ".join(map(str, range(1, 18)))
            + "]\n",
            f"spec.yaml:3:1: $.sweep: this grid has 1088 members (64 x 17); a sweep may have at most {MAX_MEMBERS}",
        ),
        (
            "sweep:\n  optimizer learning rate: [0.1]\n",
            "spec.yaml:4:3: $.sweep.optimizer learning rate: a sweep key is a dotted key path as --set takes it",
        ),
        ("sweep:\n  name: [a, b]\n", "spec.yaml:4:3: $.sweep.name: every member has the spec's name"),
        (
            "sweep:\n  optimizer: [{type: sgd, learning_rate: 0.1}]\n  optimizer.learning_rate: [0.1]\n",
            "spec.yaml:5:3: $.sweep['optimizer.learning_rate']: optimizer.learning_rate is inside optimizer, which this sweep also sets",
        ),
        (
            "sweep:\n  model.layers[0].units: [2]\n  model.layers.0.units: [4]\n",
            "model.layers.0.units is the key model.layers[0].units again, written another way",
        ),
        (
            "sweep:\n  optimizer.learning_rate: [0.1, 0.3, 0.10]\n",
            "spec.yaml:4:39: $.sweep['optimizer.learning_rate'][2]: optimizer.learning_rate lists 0.1 again (as value 1 and 3)",
        ),
        ("sweep:\n  model.layers[0].units: [2, 4, 2.0]\n", "model.layers[0].units lists 2 again (as value 1 and 3)"),
        (
            "sweep:\n  samples: 3\n  axes:\n    model.layers[0].units: {uniform: [2, 8]}\n",
            "$.sweep.axes['model.layers[0].units'].uniform: model.layers[0].units takes a whole number and uniform "
            "draws fractions, so every member would be refused; draw from whole numbers instead, e.g. "
            "{choice: [2, 3, 4, 5, 6, 7, 8]}",
        ),
        (  # 11 whole numbers: every one of them, not 8 that leave some out
            "sweep:\n  samples: 3\n  axes:\n    seed: {uniform: [0, 10]}\n",
            "e.g. {choice: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}",
        ),
        (
            "sweep:\n  samples: 4\n  axis:\n    optimizer.learning_rate: {log_uniform: [0.01, 1]}\n",
            "spec.yaml:3:1: $.sweep: missing required key 'axes' (found 'axis': misspelt?)",
        ),
        (
            "sweep:\n  samples: 3\n  axes:\n    train.batch_size: {log_uniform: [2, 64]}\n",
            "e.g. {choice: [2, 4, 8, 16, 32, 64]}",
        ),
        (
            "sweep:\n  samples: 3\n  axes:\n    train.batch_size: {uniform: [2.2, 2.8]}\n",
            "e.g. {choice: [2, 3]}",
        ),
        (
            "sweep:\n  samples: 3\n  axes:\n    train.batch_size: {log_uniform: [1, 1000]}\n",
            "e.g. {choice: [1, 3, 7, 19, 52, 140, 370, 1000]}",
        ),
        (
            "sweep:\n  samples: 3\n  axes:\n    train.steps: {uniform: [100, 100000]}\n",
            "e.g. {choice: [100, 14000, 29000, 43000, 57000, 71000, 86000, 100000]}",
        ),
        (
            "sweep:\n  samples: 4\n  axes:\n    seed: {choice: [0, 1]}\n  seed: [0, 1]\n",
            "spec.yaml:7:3: $.sweep.seed: a random search (samples, axes) names its keys under axes",
        ),
    ],
    ids=[
        "empty_list",
        "not_a_list",
        "empty_sweep",
        "not_a_mapping",
        "unknown_axis_kind",
        "lo_above_hi",
        "log_uniform_from_zero",
        "two_kinds",
        "too_many_samples",
        "random_without_axes",
        "grid_key_in_a_random_search",
        "too_many_members",
        "bad_key",
        "name",
        "key_inside_another",
        "same_key_twice",
        "a_value_twice",
        "a_number_twice_written_two_ways",
        "uniform_on_a_whole_number_key",
        "uniform_on_a_seed_lists_every_whole_number",
        "axes_misspelt",
        "log_uniform_on_a_whole_number_key",
        "uniform_between_two_whole_numbers",
        "log_uniform_over_three_decades",
        "uniform_over_a_wide_range",
        "grid_key_beside_samples_and_axes",
    ],
)
def test_the_sweep_section_is_refused_at_its_line(tmp_path, block, expected):
    found = problems(tmp_path, with_sweep(block))
    assert any(expected in p for p in found), found


# -- validate: each member checked, the member named, the sweep key's line -----------------------------


def test_validate_prints_the_member_count(tmp_path):
    code, output = cli("validate", write(tmp_path / "spec.yaml", GRID))
    assert code == 0 and output.strip() == f"{tmp_path / 'spec.yaml'}: ok (16 members)"


def test_a_bad_value_is_one_message_per_member_it_is_in(tmp_path):
    spec = write(
        tmp_path / "spec.yaml", GRID.replace("[0.03, 0.1, 0.3, 1.0]", "[0.1, -1]").replace("[0, 1, 2, 3]", "[0, 1]")
    )
    code, output = cli("validate", spec)
    assert code == 1
    assert problem_lines(output) == [
        f"{spec}:4:3: sweep member learning_rate=-1,seed=0: $.optimizer.learning_rate: expected a value > 0, found -1 (integer)",
        f"{spec}:4:3: sweep member learning_rate=-1,seed=1: $.optimizer.learning_rate: expected a value > 0, found -1 (integer)",
    ]
    assert f"{spec}: 2 problems" in output


def test_a_problem_every_member_has_is_listed_once_naming_none(tmp_path):
    text = GRID.replace("metrics: [accuracy]", "metrics: [accuracy]\nsumaries: {}").replace(
        "optimizer.learning_rate:", "optimizer.learnin_rate:"
    )
    found = problems(tmp_path, text)
    assert len(found) == 2, found
    assert found[0].startswith(
        "spec.yaml:4:3: $.optimizer.learnin_rate: unknown key 'learnin_rate'; did you mean 'learning_rate'?"
    )
    assert "sumaries" in found[1] and "sweep member" not in found[1]


def test_a_member_problem_elsewhere_keeps_its_own_line(tmp_path):
    """A value that makes another key wrong (a batch larger than the data) points at that key."""
    text = with_sweep("sweep:\n  train.batch_size: [4, 8]\n")
    (problem,) = problems(tmp_path, text)
    assert problem.startswith("spec.yaml:4:3: sweep member batch_size=8: $.train.batch_size:"), problem


def test_a_sweep_set_on_the_command_line_is_checked_there_too(tmp_path):
    spec = write(tmp_path / "spec.yaml", XOR)
    code, output = cli("validate", spec, "--set", "sweep={seed: [0, 1], optimizer.learning_rate: [0.1, 0]}")
    assert code == 1
    assert problem_lines(output)[0].startswith(
        "--set sweep={seed: [0, 1], optimizer.learning_rate: [0.1, 0]}: sweep member seed=0,learning_rate=0:"
    )
    code, output = cli("validate", spec, "--set", "sweep.seed=[0, 1, 2]")
    assert code == 0 and "ok (3 members)" in output


# -- the plain spec, and the API's two doors ---------------------------------------------------------------


def test_set_sweep_null_is_the_plain_spec(tmp_path):
    spec = write(tmp_path / "spec.yaml", GRID)
    assert "sweep" not in load(spec, ["sweep=null"]).data  # the override machinery removes it
    code, output = cli("validate", spec, "--set", "sweep=null")
    assert code == 0 and f"{spec}: ok (xor: 2 layers" in output
    assert load_spec(spec, ["sweep=null"]).optimizer["learning_rate"] == 0.1


def test_load_spec_refuses_a_sweep_and_says_what_to_do(tmp_path):
    spec = write(tmp_path / "spec.yaml", GRID)
    with pytest.raises(SpecError) as e:
        load_spec(spec)
    (problem,) = e.value.problems
    assert (problem.line, problem.col, problem.path) == (3, 1, "$.sweep")
    assert "netspec.load_sweep" in problem.message and "--set sweep=null" in problem.message


def test_load_sweep_refuses_a_plain_spec(tmp_path):
    with pytest.raises(SpecError, match=r"no sweep key; load it with netspec\.load_spec"):
        sweep_of(tmp_path, XOR)


def test_validate_of_a_sweep_loads_no_jax(tmp_path):
    spec = write(tmp_path / "spec.yaml", GRID)
    code = (
        "import sys\n"
        "from netspec.cli import main\n"
        f"sys.argv = ['netspec', 'validate', {str(spec)!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code)\n"
        "print('heavy', sorted(m for m in ('jax', 'jaxlib', 'optax', 'tensorboardX', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "ok (16 members)" in out.stdout and "exit 0" in out.stdout, out.stdout + out.stderr
    assert "heavy []" in out.stdout, out.stdout


def test_a_set_of_a_swept_key_is_refused_at_the_sweep_key(tmp_path):
    """Every member would take the sweep's value: the --set would change nothing (a newcomer's
    `netspec validate grid.yaml --set optimizer.learning_rate=0.5` said ok). A --set of a key
    holding it (the whole optimizer) sets more than the sweep replaces, and is kept."""
    found = problems(tmp_path, GRID, "optimizer.learning_rate=0.5")
    assert len(found) == 1 and "--set optimizer.learning_rate=0.5 sets a key this sweep varies" in found[0]
    assert re.match(r"spec\.yaml:\d+:3: ", found[0]), found[0]  # at the sweep's key
    assert len(sweep_of(tmp_path, GRID, "optimizer={type: adam, learning_rate: 0.01}").members) == 16
    assert problems(tmp_path, GRID, "seed=5")
    assert len(sweep_of(tmp_path, GRID, "train.steps=5").members) == 16
