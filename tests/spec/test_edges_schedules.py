"""Issue 11, kind 3 (schedules): a learning-rate schedule whose arguments contradict each other or
the run is refused by `netspec validate` at the argument's line and column, instead of crashing in
optax or training on a negative, zero or non-finite rate. The pure-Python values validate
computes are optax's own, checked against optax over random arguments."""

from __future__ import annotations

import math

import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import XOR, cli, write

from netspec.spec.check import _schedule_value

# the schedule goes on line 16 of the spec: `optimizer:` then `  learning_rate: {...}` on its own line
BASE = XOR.replace("optimizer: {type: sgd, learning_rate: 0.1}", "optimizer:\n  type: sgd\n  learning_rate: {schedule}")
LINE = BASE.splitlines().index("  learning_rate: {schedule}") + 1


def validate(tmp_path, schedule: str, steps: int = 20):
    text = BASE.replace("{schedule}", schedule).replace("train: {steps: 20,", f"train: {{steps: {steps},")
    return cli("validate", write(tmp_path / "spec.yaml", text))


CASES = [
    # (schedule, steps, key path, words)
    (
        "{type: warmup_cosine_decay, init_value: 0, peak_value: 0.1, warmup_steps: 300, decay_steps: 200}",
        1000,
        "$.optimizer.learning_rate.decay_steps",
        ("must be larger than warmup_steps (300)", "warmup included"),
    ),
    (
        "{type: warmup_cosine_decay, init_value: 0, peak_value: 0.1, warmup_steps: 300, decay_steps: 2000}",
        200,
        "$.optimizer.learning_rate.warmup_steps",
        ("not shorter than the run (200 steps)", "never reach peak_value"),
    ),
    (
        "{type: exponential_decay, init_value: 0.1, transition_steps: 10, decay_rate: 0}",
        20,
        "$.optimizer.learning_rate.decay_rate",
        ("decay_rate must be positive", "constant schedule"),
    ),
    (
        "{type: exponential_decay, init_value: 0.1, transition_steps: 10, decay_rate: -0.5}",
        20,
        "$.optimizer.learning_rate.decay_rate",
        ("decay_rate must be positive", "flips the sign"),
    ),
    (
        "{type: exponential_decay, init_value: 0.1, transition_steps: 10, decay_rate: 0.5, transition_begin: 50}",
        20,
        "$.optimizer.learning_rate.transition_begin",
        ("starts changing at step 50", "after the run's last step (20)"),
    ),
    (
        "{type: linear, init_value: 0.1, end_value: -0.1, transition_steps: 10}",
        20,
        "$.optimizer.learning_rate",
        ("learning rate of -", "negative", "climb the loss"),
    ),
    (
        "{type: cosine_decay, init_value: 0.1, decay_steps: 10, alpha: -1}",
        20,
        "$.optimizer.learning_rate",
        ("negative",),
    ),
    (
        "{type: cosine_decay, init_value: 0.1, decay_steps: 10, exponent: -1}",
        20,
        "$.optimizer.learning_rate",
        ("not a finite number",),
    ),
    (
        "{type: constant, value: 0}",
        20,
        "$.optimizer.learning_rate",
        ("0 at every step of the run", "nothing would train"),
    ),
    (
        "{type: piecewise_constant, init_value: 0.1, boundaries_and_scales: {5: -1}}",
        20,
        "$.optimizer.learning_rate.boundaries_and_scales.5",
        ("scale must be >= 0",),
    ),
    (
        "{type: piecewise_constant, init_value: 0.1, boundaries_and_scales: {500: 0.1}}",
        20,
        "$.optimizer.learning_rate.boundaries_and_scales.500",
        ("after the run's last step (20)", "never apply"),
    ),
    ("{type: constant, value: -0.1}", 20, "$.optimizer.learning_rate", ("negative",)),
]


@pytest.mark.parametrize(
    "schedule, steps, path, words", CASES, ids=[f"{c[0].split(',')[0][7:]}-{i}" for i, c in enumerate(CASES)]
)
def test_a_schedule_that_cannot_be_right_is_refused_at_its_argument(tmp_path, schedule, steps, path, words):
    outcome = validate(tmp_path, schedule, steps)
    outcome.assert_clean_failure(*words)
    (line,) = [row for row in outcome.output.splitlines() if row.startswith("  ")]
    assert f"spec.yaml:{LINE}:" in line and f": {path}: " in line, line


@pytest.mark.parametrize(
    "schedule",
    [
        "{type: warmup_cosine_decay, init_value: 0, peak_value: 0.1, warmup_steps: 5, decay_steps: 20}",
        "{type: cosine_decay, init_value: 0.1, decay_steps: 10}",  # reaches 0 at step 10: fine, as optax means it
        "{type: exponential_decay, init_value: 0.1, transition_steps: 5, decay_rate: 0.5, end_value: 0.01}",
        "{type: linear, init_value: 0.1, end_value: 0.0, transition_steps: 20}",
        "{type: piecewise_constant, init_value: 0.1, boundaries_and_scales: {5: 0.5, 10: 0.1}}",
        "{type: constant, value: 0.1}",
    ],
)
def test_a_schedule_that_fits_the_run_is_accepted(tmp_path, schedule):
    outcome = validate(tmp_path, schedule)
    assert outcome.exit_code == 0, outcome.output


positive = st.floats(1e-4, 1.0)
SCHEDULES = st.one_of(
    st.builds(lambda v: {"type": "constant", "value": v}, positive),
    st.builds(
        lambda i, n, r, b, s, e: {
            "type": "exponential_decay",
            "init_value": i,
            "transition_steps": n,
            "decay_rate": r,
            "transition_begin": b,
            "staircase": s,
            "end_value": e,
        },
        positive,
        st.integers(1, 50),
        st.floats(0.05, 2.0),
        st.integers(0, 30),
        st.booleans(),
        st.none() | positive,
    ),
    st.builds(
        lambda i, n, a, x: {"type": "cosine_decay", "init_value": i, "decay_steps": n, "alpha": a, "exponent": x},
        positive,
        st.integers(1, 200),
        st.floats(0.0, 1.0),
        st.floats(0.5, 3.0),
    ),
    st.builds(
        lambda i, p, w, d, e, x: {
            "type": "warmup_cosine_decay",
            "init_value": i,
            "peak_value": p,
            "warmup_steps": w,
            "decay_steps": w + d,
            "end_value": e,
            "exponent": x,
        },
        st.floats(0.0, 0.1),
        positive,
        st.integers(0, 50),
        st.integers(1, 200),
        st.floats(0.0, 0.01),
        st.floats(0.5, 3.0),
    ),
    st.builds(
        lambda i, e, n, b: {
            "type": "linear",
            "init_value": i,
            "end_value": e,
            "transition_steps": n,
            "transition_begin": b,
        },
        positive,
        positive,
        st.integers(1, 100),
        st.integers(0, 30),
    ),
    st.builds(
        lambda i, bs: {"type": "piecewise_constant", "init_value": i, "boundaries_and_scales": bs},
        positive,
        st.dictionaries(st.integers(0, 150).map(str), st.floats(0.0, 2.0), max_size=4),
    ),
)
OPTAX = {
    "constant": "constant_schedule",
    "exponential_decay": "exponential_decay",
    "cosine_decay": "cosine_decay_schedule",
    "warmup_cosine_decay": "warmup_cosine_decay_schedule",
    "linear": "linear_schedule",
    "piecewise_constant": "piecewise_constant_schedule",
}


@settings(max_examples=150, deadline=None)
@given(SCHEDULES, st.integers(0, 300))
def test_validate_computes_the_rate_optax_computes(schedule, t):
    args = {k: v for k, v in schedule.items() if k != "type"}
    if schedule["type"] == "piecewise_constant":
        args["boundaries_and_scales"] = {int(k): v for k, v in args["boundaries_and_scales"].items()}
    expected = float(getattr(optax, OPTAX[schedule["type"]])(**args)(t))
    assert math.isclose(_schedule_value(schedule, t), expected, rel_tol=2e-5, abs_tol=1e-7), (schedule, t)
