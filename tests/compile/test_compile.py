"""Tests for netspec.compile: the stable logits form, name scopes, fused chunks, reproducibility."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from support import SPECS, all_eqns, batches_of, checked, on_device, train_in_chunks

from netspec.compile.program import compile_spec
from netspec.spec.check import check
from netspec.spec.load import load
from netspec.training.loop import run


def tree_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True))


# -- the stable logits form ---------------------------------------------------------------------


def _softmax_spec(loss: str) -> dict:
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 3, size=6)
    y = np.eye(3)[classes].tolist() if loss == "categorical_crossentropy" else classes.tolist()
    return {
        "name": "softmax3",
        "seed": 1,
        "data": {"inline": {"x": rng.normal(size=(6, 4)).round(3).tolist(), "y": y}},
        "model": {
            "input": [4],
            "layers": [
                {"name": "layer1", "type": "dense", "units": 5, "activation": "tanh"},
                {"name": "hypothesis", "type": "dense", "units": 3, "activation": "softmax"},
            ],
        },
        "loss": loss,
        "optimizer": {"type": "sgd", "learning_rate": 0.1},
        "train": {"steps": 10, "batch_size": 6},
    }


def _naive(loss: str):
    """The lecture's formulas, written on the probabilities the model outputs."""
    if loss == "binary_crossentropy":
        return lambda h, y: -jnp.mean(y * jnp.log(h) + (1 - y) * jnp.log(1 - h))
    if loss == "categorical_crossentropy":
        return lambda h, y: -jnp.mean(jnp.sum(y * jnp.log(h), -1))
    return lambda h, y: -jnp.mean(jnp.log(jnp.take_along_axis(h, y[:, None], -1)))


CROSS_ENTROPY_SPECS = {
    "binary_crossentropy": lambda: check(load(SPECS / "xor_nn.yaml")),  # the lecture's spec
    "categorical_crossentropy": lambda: checked(_softmax_spec("categorical_crossentropy")),
    "sparse_categorical_crossentropy": lambda: checked(_softmax_spec("sparse_categorical_crossentropy")),
}


@pytest.mark.slow
@pytest.mark.parametrize("loss", sorted(CROSS_ENTROPY_SPECS))
def test_saturated_outputs_give_finite_loss_and_gradients(loss):
    spec = CROSS_ENTROPY_SPECS[loss]()
    assert spec.loss["type"] == loss and spec.fused_loss
    program = compile_spec(spec)
    state = program.init()
    data = on_device(spec)
    batch = program.prepare_batch(data, data.x, data.y)
    key = program.keys.step

    def loss_of(params):
        return program.loss_and_metrics(params, state.model_state, batch, train=False, key=key)[0]

    def naive_of(params):
        h = program.apply(params, state.model_state, batch[0])
        return _naive(loss)(h, batch[1])

    # Moderate parameters: the fused form computes the same function as the lecture's formula.
    loss_and_grad, naive_and_grad = jax.jit(jax.value_and_grad(loss_of)), jax.jit(jax.value_and_grad(naive_of))
    value, grads = loss_and_grad(state.params)
    naive_value, naive_grads = naive_and_grad(state.params)
    np.testing.assert_allclose(value, naive_value, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(naive_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

    # Saturated: h is exactly 0 or 1 in float32, log(h) is -inf; the compiled loss stays finite.
    saturated = jax.tree.map(lambda p: p * 1e4, state.params)
    h = np.asarray(jax.jit(program.apply)(saturated, state.model_state, batch[0]))
    assert np.any((h == 0) | (h == 1)), "the outputs did not saturate; scale the parameters more"
    value, grads = loss_and_grad(saturated)
    assert np.isfinite(value)
    assert float(value) > 1.0  # saturated on the wrong side for some examples: a large, finite loss
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(np.asarray(g)))
    assert not np.isfinite(naive_and_grad(saturated)[0]), (
        "the naive formula should break here (else this test proves nothing)"
    )


def test_from_logits_with_a_linear_output_is_the_same_loss():
    spec = check(load(SPECS / "xor_nn.yaml"))
    logits_spec = check(
        load(
            SPECS / "xor_nn.yaml",
            ["model.layers[1].activation=linear", "loss={type: binary_crossentropy, from_logits: true}"],
        )
    )
    assert not logits_spec.fused_loss
    a, b = compile_spec(spec), compile_spec(logits_spec)
    state = a.init()
    data = on_device(spec)
    batch = a.prepare_batch(data, data.x, data.y)
    la = a.loss_and_metrics(state.params, state.model_state, batch, train=False, key=a.keys.step)
    lb = b.loss_and_metrics(state.params, state.model_state, batch, train=False, key=b.keys.step)
    assert tree_equal(la[0], lb[0]) and tree_equal(la[1][0], lb[1][0])


def test_binary_accuracy_thresholds_h_as_the_lecture():
    """accuracy counts h > 0.5 (the lecture's `cast(hypothesis > 0.5)`, and the run's report): a
    logit so small that sigmoid rounds it to exactly 0.5 in float32 is class 0, not class 1."""
    spec = check(load(SPECS / "xor_logistic.yaml"))
    program = compile_spec(spec)
    state = program.init()
    data = on_device(spec)
    x, y = program.prepare_batch(data, data.x, data.y)
    params = {"hypothesis": {"kernel": jnp.full((2, 1), 1e-8), "bias": jnp.zeros(1)}}  # z = 0, 1e-8, 1e-8, 2e-8
    h = np.asarray(program.apply(params, state.model_state, x))
    assert np.all(h == 0.5)
    _, (metrics, _) = program.loss_and_metrics(params, state.model_state, (x, y), train=False, key=program.keys.step)
    assert float(metrics["accuracy"]) == float(np.mean((h > 0.5) == (np.asarray(y) > 0.5))) == 0.5


# -- name scopes ----------------------------------------------------------------------------------


def _name_stacks(jaxpr) -> list[str]:
    """The name stack of every equation, sub-jaxprs included."""
    return [str(eqn.source_info.name_stack) for eqn in all_eqns(jaxpr)]


def test_every_layer_cost_and_train_are_named_scopes_of_the_step():
    spec = check(load(SPECS / "xor_wide.yaml"))
    program = compile_spec(spec)
    state = program.init()
    data = on_device(spec)
    batch = program.prepare_batch(data, data.x, data.y)
    closed = jax.make_jaxpr(program.train_step)(state, batch, program.keys.step)
    stacks = _name_stacks(closed.jaxpr)
    scopes = {part for s in stacks for part in re.split(r"[/()]", s) if part}
    names = [layer.name for layer in spec.layers]
    assert names == ["layer1", "layer2", "layer3", "hypothesis"]
    for name in [*names, "cost", "train"]:
        assert name in scopes, f"no equation of the step is under jax.named_scope({name!r}); scopes: {sorted(scopes)}"
    # the backward pass of every layer is there too (TensorBoard draws it under gradients/<layer>)
    for name in names:
        assert any("transpose" in s and name in re.split(r"[/()]", s) for s in stacks), name
    # each layer's forward matmul is in that layer's scope: one per dense layer, with its output shape
    dots = {
        str(e.source_info.name_stack): e.outvars[0].aval.shape
        for e in closed.jaxpr.eqns
        if e.primitive.name == "dot_general" and "transpose" not in str(e.source_info.name_stack)
    }
    assert dots == {f"jvp({layer.name})": (4, *layer.out_shape) for layer in spec.layers}


# -- chunks: any split of the steps gives the same training ----------------------------------------


def _minibatch_spec(batch_size: int, shuffle: bool = True) -> dict:
    rng = np.random.default_rng(42)
    x = rng.normal(size=(16, 3)).round(4)
    y = (x.sum(1, keepdims=True) > 0).astype(float)
    return {
        "name": "chunks",
        "seed": 3,
        "data": {"inline": {"x": x.tolist(), "y": y.tolist()}},
        "model": {
            "input": [3],
            "defaults": {"activation": "tanh"},
            "layers": [
                {"name": "layer1", "type": "dense", "units": 4},
                {"name": "hypothesis", "type": "dense", "units": 1, "activation": "sigmoid"},
            ],
        },
        "loss": "binary_crossentropy",
        "optimizer": {"type": "adam", "learning_rate": 0.05},
        "train": {"steps": 20, "batch_size": batch_size, "shuffle": shuffle},
    }


def chunk_scan(spec, program, length: int):
    """The lax.scan equation of a compiled chunk of `length` steps (its body is the training step)."""
    jaxpr = jax.make_jaxpr(program.train_chunk(length))(
        program.init(), on_device(spec), batches_of(spec, 0, length), program.keys
    )
    (scan,) = [e for e in all_eqns(jaxpr.jaxpr) if e.primitive.name == "scan"]
    return scan


@pytest.mark.slow
@pytest.mark.parametrize(
    "batch_size, shuffle", [(4, True), (4, False), (16, True)], ids=["shuffled", "in_order", "full_batch"]
)
def test_chunking_does_not_change_the_result(batch_size, shuffle):
    spec = checked(_minibatch_spec(batch_size, shuffle))
    program = compile_spec(spec)
    state20, losses20, initial = train_in_chunks(spec, program, [20])
    state5, losses5, _ = train_in_chunks(spec, program, [5] * 4)
    state1, losses1, _ = train_in_chunks(spec, program, [1] * 20)
    assert tree_equal(state20.params, state5.params), "4 chunks of 5 train differently from 1 chunk of 20"
    assert tree_equal(state20.params, state1.params), "20 chunks of 1 train differently from 1 chunk of 20"
    assert tree_equal(state20.opt_state, state5.opt_state) and tree_equal(state20.opt_state, state1.opt_state)
    assert losses20 == losses5 == losses1
    assert not tree_equal(state20.params, initial.params), "nothing was trained"
    # uneven chunks, as a run whose steps are not a multiple of summaries.every has
    state_mixed, losses_mixed, _ = train_in_chunks(spec, program, [1, 5, 1, 1, 5, 1, 1, 5])
    assert tree_equal(state20.params, state_mixed.params) and losses_mixed == losses20


@pytest.mark.slow
def test_scan_and_stepwise_loops_train_identically():
    """train.loop: steps (one jitted call per step, chosen for convolutions on CPU) runs the same
    steps as the fused scan."""
    results = {}
    for loop in ("scan", "steps"):
        raw = _minibatch_spec(4, True)
        raw["train"]["loop"] = loop
        spec = checked(raw)
        results[loop] = train_in_chunks(spec, compile_spec(spec), [5, 1, 5, 1, 8])
    (scan_state, scan_losses, _), (steps_state, steps_losses, _) = results["scan"], results["steps"]
    assert scan_losses == steps_losses
    assert tree_equal(scan_state.params, steps_state.params)


@pytest.mark.parametrize("batch_size", [4, 16], ids=["minibatch", "full_batch"])
def test_unrolled_scan_runs_the_same_steps(batch_size):
    """train.unroll (2 by default on GPU) runs the same steps, `unroll` to a loop iteration: the
    scan body holds that many; chunkings made of whole iterations train bit for bit alike; and
    against unroll 1 only the last bit may move (XLA fuses an unrolled body differently)."""
    results = {}
    for unroll in (1, 2):
        raw = _minibatch_spec(batch_size)
        raw["train"].update(loop="scan", unroll=unroll)
        spec = checked(raw)
        program = compile_spec(spec)
        results[unroll] = [train_in_chunks(spec, program, lengths) for lengths in ([20], [4, 2, 6, 8], [2] * 10)]
        assert chunk_scan(spec, program, 6).params["unroll"] == unroll
    for unroll, runs in results.items():
        (state, losses, _), *others = runs
        for other_state, other_losses, _ in others:
            assert other_losses == losses, f"unroll {unroll}: whole-iteration chunkings differ"
            assert tree_equal(other_state.params, state.params) and tree_equal(other_state.opt_state, state.opt_state)
    (state1, losses1, _), (state2, losses2, _) = results[1][0], results[2][0]
    np.testing.assert_allclose(losses2, losses1, rtol=1e-5)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), state2.params, state1.params
    )


def _step_body_size(on_nonfinite: str) -> int:
    """Equations in the scan body (the training step) of a 4-step chunk."""
    raw = _minibatch_spec(4)
    raw["train"]["on_nonfinite"] = on_nonfinite
    spec = checked(raw)
    scan = chunk_scan(spec, compile_spec(spec), 4)
    return sum(1 for _ in all_eqns(scan.params["jaxpr"].jaxpr))


def test_stop_adds_nothing_to_the_step_skip_step_checks_every_step():
    """on_nonfinite: stop (the default) notices a NaN once per chunk, from the losses and the
    final state, so its step is a hand-written loop's step (ignore's); skip_step must decide at
    every step, so it checks every step."""
    stop, ignore, skip = (_step_body_size(mode) for mode in ("stop", "ignore", "skip_step"))
    assert stop == ignore < skip


# -- reproducible: same spec + seed => the same losses, bit for bit --------------------------------


def _quick(seed: int = 777, every: int = 20) -> dict:
    spec = yaml.safe_load((SPECS / "xor_nn.yaml").read_text())
    spec["seed"] = seed
    spec["train"] = {"steps": 40, "batch_size": 4}
    spec["summaries"] = {"every": every, "graph": False, "histograms": [], "text": False, "hparams": False}
    return spec


@pytest.mark.slow
def test_same_spec_and_seed_give_identical_losses(tmp_path):
    first = run(checked(_quick()), logdir=tmp_path, quiet=True)
    second = run(checked(_quick()), logdir=tmp_path, quiet=True)
    assert first.run_dir != second.run_dir
    assert len(first.losses) == 40
    assert first.losses == second.losses  # bit for bit
    assert first.final == second.final
    # the chunk length is the summary interval; it must not change the training either
    assert run(checked(_quick(every=8)), logdir=tmp_path, quiet=True).losses == first.losses
    # a different seed is a different run
    other = run(checked(_quick(seed=778)), logdir=tmp_path, quiet=True)
    assert other.losses != first.losses
