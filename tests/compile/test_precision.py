"""Mixed precision: the layers compute in bfloat16/float16 while parameters, loss and optimizer
stay float32; float16 gets a dynamic loss scale (halve and skip on overflow, grow after a period
of good steps) whose state is checkpointed, so a resumed run continues it exactly."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support import all_eqns, checked, train_in_chunks, validate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from netspec.compile.program import compile_spec
from netspec.compile.state import LOSS_SCALE_START
from netspec.training.loop import run


def _regression(compute: str, **precision) -> dict:
    """Targets of about 100 and a mean squared error: at the starting float16 loss scale (2^15)
    the output's gradient, ~2 * 100 * 2^15, overflows float16 (max 65504), so the dynamic scale
    must come down several times before a step can be applied."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).round(3)
    y = 100 + 10 * x[:, :1]
    return {
        "name": "precision",
        "seed": 0,
        "data": {"inline": {"x": x.tolist(), "y": y.round(3).tolist()}},
        "model": {
            "input": [4],
            "layers": [
                {"name": "layer1", "type": "dense", "units": 16, "activation": "relu"},
                {"name": "output", "type": "dense", "units": 1},
            ],
        },
        "loss": "mean_squared_error",
        "optimizer": {"type": "adam", "learning_rate": 0.5},
        "train": {"steps": 60, "batch_size": 8},
        "precision": {"compute": compute, **precision},
        "summaries": {"every": 10, "histograms": [], "graph": False},
    }


def _dtypes_of_dots(spec) -> set[str]:
    """The dtypes every matrix product of the training step computes in (backward pass included)."""
    program = compile_spec(spec)
    batch = jnp.zeros((8, 4), jnp.float32), jnp.zeros((8, 1), jnp.float32)
    jaxpr = jax.make_jaxpr(program.train_step)(program.init(), batch, program.keys.step)
    return {str(eqn.outvars[0].aval.dtype) for eqn in all_eqns(jaxpr.jaxpr) if eqn.primitive.name == "dot_general"}


@pytest.mark.parametrize("compute", ["bfloat16", "float16"])
def test_layers_compute_in_the_chosen_dtype_and_parameters_stay_float32(compute):
    spec = checked(_regression(compute))
    assert _dtypes_of_dots(spec) == {compute}
    state = compile_spec(spec).init()
    assert {str(a.dtype) for a in jax.tree.leaves(state.params)} == {"float32"}
    assert {str(a.dtype) for a in jax.tree.leaves(state.opt_state) if jnp.issubdtype(a.dtype, jnp.floating)} == {
        "float32"
    }
    assert _dtypes_of_dots(checked(_regression("float32"))) == {"float32"}


def test_float16_gets_a_dynamic_scale_that_backs_off_on_overflow_and_then_trains():
    spec = checked(_regression("float16"))
    assert spec.resolved["precision"]["loss_scale"] is None  # unset: dynamic, for float16
    program = compile_spec(spec)
    state, losses, _ = train_in_chunks(spec, program, [10] * 6)
    scale = float(state.scaler.scale)
    halvings = round(math.log2(LOSS_SCALE_START / scale))
    assert 3 <= halvings <= 12, scale  # it came down, and not to nothing
    assert int(state.skipped) == halvings  # one skipped step per halving, and no other
    assert all(np.isfinite(jax.tree.leaves(state.params)[0]).ravel())
    assert np.mean(losses[-8:]) < 0.1 * np.mean(losses[:8]), losses  # and it trained
    # float32 with the same spec never overflows: nothing is skipped, and there is no scaler
    plain = checked(_regression("float32"))
    state32, _, _ = train_in_chunks(plain, compile_spec(plain), [60])
    assert state32.scaler is None and int(state32.skipped) == 0


def test_the_dynamic_scale_grows_after_its_period_of_good_steps():
    raw = _regression("float32", loss_scale="dynamic", loss_scale_period=5)
    spec = checked(raw)
    state, _, _ = train_in_chunks(spec, compile_spec(spec), [12])
    # float32 never overflows here: two periods of 5 good steps, two doublings, 2 steps toward a third
    assert float(state.scaler.scale) == LOSS_SCALE_START * 4
    assert int(state.scaler.good_steps) == 2 and int(state.skipped) == 0


def test_a_static_power_of_two_scale_changes_nothing_in_float32():
    """Scaling by 2^k and unscaling the gradients changes float32 training only by rounding
    (XLA may fuse the scaled arithmetic differently)."""
    plain, scaled = checked(_regression("float32")), checked(_regression("float32", loss_scale=1024))
    a, losses_a, _ = train_in_chunks(plain, compile_spec(plain), [20])
    b, losses_b, _ = train_in_chunks(scaled, compile_spec(scaled), [20])
    np.testing.assert_allclose(losses_b, losses_a, rtol=1e-5)
    np.testing.assert_allclose(jax.tree.leaves(b.params)[0], jax.tree.leaves(a.params)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "value, message",
    [
        ("auto", "expected one of dynamic; found 'auto'"),
        (0, "expected a value > 0, found 0"),
    ],
)
def test_bad_loss_scales_are_pointed_at(tmp_path, value, message):
    import yaml

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_regression("float16", loss_scale=value), sort_keys=False))
    result = validate(path)
    assert result.exit_code == 1, result.output
    assert "precision.loss_scale" in result.output and message in result.output, result.output


@pytest.mark.slow
def test_a_float16_run_logs_its_scale_and_resumes_it_exactly(tmp_path):
    whole = run(checked(_regression("float16")), logdir=tmp_path / "whole", quiet=True)
    ea = EventAccumulator(str(whole.run_dir), size_guidance={"scalars": 0})
    ea.Reload()
    scales = [e.value for e in ea.Scalars("loss_scale")]
    assert scales[0] < LOSS_SCALE_START and len(scales) == 6
    assert [e.value for e in ea.Scalars("skipped_steps")][-1] == whole.final["skipped_steps"] > 0

    raw = _regression("float16")
    raw["train"]["steps"] = 30
    first = run(checked(raw), logdir=tmp_path / "parts", run_name="r", quiet=True)
    resumed = run(checked(_regression("float16")), logdir=tmp_path / "parts", quiet=True, resume=first.run_dir)
    assert first.losses + resumed.losses == whole.losses  # bit for bit, the scale included
    assert resumed.final == whole.final
