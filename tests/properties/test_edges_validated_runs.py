"""Issue 11, kind 2: a spec that `validate` accepts must run. Integral floats in integer fields
(`units: 1.0e+2`, `train.steps: 2.0e+1`, `seed: 1.0`) come out of `check` as Python ints
(tests/spec/test_edges_integers.py walks every such field); here the invariant is tested whole, as a
property: the shipped specs are mutated (hypothesis, seeded), and whenever `netspec validate`
accepts a mutant, `netspec run` on it ends with exit 0 or a clean error of the user's, never
netspec's "failed unexpectedly" and never a traceback. Each run is cut to a few steps, by a
mutation that validate sees too, so what runs is exactly what was validated."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import FASHION, SPECS, cli, write

from netspec.spec.load import dump, parse

SHIPPED = sorted(p for p in SPECS.glob("*.yaml") if not p.name.startswith("mnist"))  # MNIST is not on this machine
EXAMPLES = 300  # mutants; about a quarter validate and run (at least CASES: test_the_property_ran_enough_runs)
CASES = 40  # at least: in CI (derandomized) 65 of the 300 validate and run

# values that are right for the schema and may be wrong for the program: integral floats, exponents
# without a dot, zero, large and negative numbers, and the other types
PLAUSIBLE = st.sampled_from([1, 2, 3, 1.0, 2.0, 3.0, 1.0e1, 2.0e1, 0.5, 1e-3])
EXTREME = st.sampled_from([0, -1, 1e3, 2**31 - 1, 2**31, 2**40, 1e12])
NUMBERS = st.one_of(PLAUSIBLE, PLAUSIBLE, PLAUSIBLE, EXTREME)
ADDED = {  # keys a spec may have that the shipped ones do not, with values of their kind
    ("train", "unroll"): NUMBERS,
    ("eval", "every"): NUMBERS,
    ("eval", "batch_size"): NUMBERS,
    ("checkpoint", "every"): NUMBERS,
    ("checkpoint", "keep"): NUMBERS,
    ("summaries", "every"): NUMBERS,
    ("seed",): NUMBERS,
    ("data", "validation_split"): NUMBERS,
    ("data", "limit"): NUMBERS,
    ("data", "max_resident_mb"): NUMBERS,
    ("precision", "loss_scale"): NUMBERS | st.just("dynamic"),
    ("precision", "compute"): st.sampled_from(["bfloat16", "float16"]),
    ("optimizer", "clip_global_norm"): NUMBERS,
    ("train", "on_nonfinite"): st.sampled_from(["skip_step", "ignore"]),
    ("train", "loop"): st.sampled_from(["scan", "steps"]),
    ("train", "early_stopping"): st.fixed_dictionaries(
        {"metric": st.sampled_from(["loss", "accuracy"]), "patience": NUMBERS}
    ),
    ("optimizer", "learning_rate"): st.fixed_dictionaries(
        {
            "type": st.just("exponential_decay"),
            "init_value": NUMBERS,
            "transition_steps": NUMBERS,
            "decay_rate": NUMBERS,
        }
    ),
}


def leaves(value, here=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, here + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, here + (i,))
    else:
        yield here


def put(data, path, value):
    for part in path[:-1]:
        data = data.setdefault(part, {}) if isinstance(data, dict) else data[part]
    data[path[-1]] = value


def short(data: dict) -> dict:
    """A few steps, whatever the spec says (epochs replaced), and a small slice of large data."""
    data = copy.deepcopy(data)
    train = data.setdefault("train", {})
    if not isinstance(train, dict):
        return data
    train.pop("epochs", None)
    steps = train.get("steps")
    train["steps"] = steps if isinstance(steps, (int, float)) and not isinstance(steps, bool) and steps <= 4 else 4
    if isinstance(data.get("data"), dict) and "fashion_mnist" in data["data"]:
        data["data"]["limit"] = 300
        data["data"]["fashion_mnist"] = {"dir": str(FASHION), "download": False}
    return data


ran = {"accepted": 0, "refused": 0}


@pytest.mark.slow
@pytest.mark.skipif(
    not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)"
)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(SHIPPED), st.data())
def test_a_spec_that_validates_runs(tmp_path_factory, spec_path, draw):
    data = parse(spec_path.read_text(), str(spec_path)).data
    for _ in range(draw.draw(st.integers(1, 2), label="mutations")):
        if draw.draw(st.booleans(), label="add a key"):
            path = draw.draw(st.sampled_from(sorted(ADDED)), label="key")
            put(data, path, draw.draw(ADDED[path], label="value"))
        else:
            paths = [p for p in leaves(data) if p[-1] not in ("x", "y") and "inline" not in p]
            path = draw.draw(st.sampled_from(paths), label="leaf")
            put(data, path, draw.draw(st.one_of(NUMBERS, NUMBERS, NUMBERS, st.none(), st.booleans()), label="value"))
    directory = tmp_path_factory.mktemp("mutant")
    spec = write(directory / spec_path.name, dump(short(data)))
    checked = cli("validate", spec)
    assert "Traceback" not in checked.output and "unexpectedly" not in checked.output, checked.output
    if checked.exit_code != 0:
        ran["refused"] += 1
        return
    ran["accepted"] += 1
    outcome = cli("run", spec, "--logdir", directory / "runs", "--quiet")
    assert "unexpectedly" not in outcome.output and "Traceback" not in outcome.output, (
        spec.read_text(),
        outcome.output,
    )
    assert outcome.exit_code in (0, 1), (spec.read_text(), outcome.output)


@pytest.mark.slow
@pytest.mark.skipif(
    not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)"
)
def test_the_property_ran_enough_runs():
    """The property above is only as strong as the number of accepted mutants it ran."""
    if not ran["accepted"] + ran["refused"]:
        pytest.skip("the property test did not run in this session")
    print(f"validated-runs property: {ran['accepted']} mutants validated and ran, {ran['refused']} refused by validate")
    assert ran["accepted"] >= CASES, ran
