"""A sweep's members compiled together (`netspec.compile.members`): which members share a program,
and that every number a member may vary is traced correctly: for every optimizer, every
learning-rate schedule, and the layers, activations and losses with number arguments, a group of
two members whose every number differs trains each member as its plain program does (to float32
rounding), and a frozen member keeps its state."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support import write

from netspec import load_spec
from netspec.compile.members import (
    _compiled_leaves,
    _get,
    compile_group,
    groups,
    member_batches,
    split,
    substitute,
    take,
    traced_keys,
    unstack,
    untraceable,
)
from netspec.compile.program import compile_spec
from netspec.spec.choices import OPTIMIZERS
from netspec.training.feed import Feed, batch_order, load_arrays, training_inputs

# 3 classes, 12 examples of 4 features, one-hot labels: every loss with a number argument applies.
DATA = json.dumps(
    {
        "x": [[(i * 7 + j * 3) % 5 / 4 - 0.5 for j in range(4)] for i in range(12)],
        "y": [[1.0 if i % 3 == k else 0.0 for k in range(3)] for i in range(12)],
    }
)
CLASSIFIER = f"""\
name: kinds
seed: 0
data:
  inline: {DATA}
model:
  input: [4]
  layers:
    - {{name: hidden, type: dense, units: 8, activation: {{type: leaky_relu, negative_slope: 0.2}}}}
    - {{name: drop, type: dropout, rate: 0.25}}
    - {{name: more, type: dense, units: 6, activation: {{type: elu, alpha: 0.7}}}}
    - {{name: output, type: dense, units: 3, activation: softmax}}
loss: {{type: categorical_crossentropy, label_smoothing: 0.1}}
metrics: [accuracy]
optimizer: OPTIMIZER
train: {{steps: 12, batch_size: 4}}
summaries: {{every: 6, graph: false}}
"""
REGRESSION = CLASSIFIER.replace(
    "loss: {type: categorical_crossentropy, label_smoothing: 0.1}\nmetrics: [accuracy]",
    "loss: {type: huber, delta: 0.5}\nmetrics: []",
).replace("activation: softmax", "activation: linear")
SCHEDULE_ARGS = {
    "constant": {"value": 0.05},
    "exponential_decay": {"init_value": 0.05, "transition_steps": 3, "decay_rate": 0.8, "end_value": 0.01},
    "cosine_decay": {"init_value": 0.05, "decay_steps": 10, "alpha": 0.1, "exponent": 1.5},
    "warmup_cosine_decay": {"init_value": 0.0, "peak_value": 0.05, "warmup_steps": 3, "decay_steps": 10},
    "linear": {"init_value": 0.05, "end_value": 0.01, "transition_steps": 8},
    "piecewise_constant": {"init_value": 0.05, "boundaries_and_scales": {"3": 0.5, "8": 0.2}},
}


def spec_with(tmp_path, optimizer: dict, text: str = CLASSIFIER):
    return load_spec(write(tmp_path / "kinds.yaml", text.replace("OPTIMIZER", json.dumps(optimizer))))


def other_numbers(spec):
    """`spec` with every number the compiled step reads changed (halved; 0 becomes 0.01)."""
    return substitute(
        spec, {path: (v * 0.5 if v else 0.01) for path, v in _compiled_leaves(spec) if isinstance(v, float)}
    )


def batches(spec, arrays, steps: int):
    return Feed(arrays.train, batch_order(spec, arrays), streamed=False, full_batch=False).batches(0, steps)


def assert_members_equal_their_plain_runs(specs, steps: int = 5, members: list[int] | None = None) -> None:
    """Each member of the group of `specs` (or those at `members`) trains `steps` steps as its
    plain program does."""
    assert groups(specs) == [list(range(len(specs)))]
    group = compile_group(specs)
    arrays = load_arrays(specs[0])
    inputs = training_inputs(specs[0], arrays, group.members[0], None)
    assert untraceable(specs, inputs.sample) == []
    states = group.states([m.init() for m in group.members])
    each = [batches(spec, arrays, steps) for spec in specs]
    shared = each[0] if group.shared_batches else member_batches(each)
    grouped, outputs = jax.device_get(group.train_chunk(steps)(states, inputs.data, shared, group.keys))
    for i, spec in enumerate(specs):
        if members is not None and i not in members:
            continue
        plain = compile_spec(spec)
        state, out = jax.device_get(plain.train_chunk(steps)(plain.init(), inputs.data, each[i], plain.keys))
        np.testing.assert_allclose(outputs.loss[i], out.loss, rtol=2e-6, err_msg=f"member {i}'s losses")
        mine = jax.tree_util.tree_map(lambda a, i=i: a[i], grouped.train)
        for (path, a), (_, b) in zip(
            jax.tree_util.tree_leaves_with_path(mine.params),
            jax.tree_util.tree_leaves_with_path(state.params),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"member {i}: {jax.tree_util.keystr(path)}")
        np.testing.assert_allclose(outputs.learning_rate[i], out.learning_rate, rtol=1e-6)


@pytest.mark.slow  # 25 optimizers, three compilations each
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_number_is_traced(tmp_path, name):
    """Every optimizer, its numbers (and the layers', activations' and loss's) all differing."""
    spec = spec_with(tmp_path, {"type": name, "learning_rate": 0.01})
    other = other_numbers(spec)
    assert traced_keys([spec, other])  # the numbers do differ, and are traced
    assert_members_equal_their_plain_runs([spec, other], steps=3, members=[1])  # the one whose numbers are traced


# The numbers optax decides on in Python: members that differ there train apart (`untraceable`).
UNTRACEABLE = {
    "exponential_decay": ["optimizer.learning_rate.decay_rate"],  # with an end_value: the clip's direction
    "warmup_cosine_decay": ["optimizer.learning_rate.peak_value"],  # alpha = 0 when the peak is 0
    "piecewise_constant": [  # it checks that every scale is >= 0
        "optimizer.learning_rate.boundaries_and_scales.3",
        "optimizer.learning_rate.boundaries_and_scales.8",
    ],
}


@pytest.mark.parametrize("schedule", sorted(SCHEDULE_ARGS))
def test_every_schedule_number_is_traced_or_kept_apart(tmp_path, schedule):
    rate = {"type": schedule, **SCHEDULE_ARGS[schedule]}
    spec = spec_with(tmp_path, {"type": "sgd", "learning_rate": rate, "momentum": 0.5})
    other = other_numbers(spec)
    keys = traced_keys([spec, other])
    assert any(k.startswith("optimizer.learning_rate.") for k in keys), keys
    arrays = load_arrays(spec)
    sample = training_inputs(spec, arrays, compile_spec(spec), None).sample
    static = untraceable([spec, other], sample)
    assert static == UNTRACEABLE.get(schedule, [])
    if static:  # apart: each alone; and members that agree there, but not elsewhere, still together
        assert split([spec, other], static) == [[0], [1]]
        other = substitute(other, {keys[k]: _get(spec, keys[k]) for k in static})
    assert_members_equal_their_plain_runs([spec, other], steps=10)


def test_a_regression_loss_number_is_traced(tmp_path):
    spec = spec_with(tmp_path, {"type": "adam", "learning_rate": 0.01}, REGRESSION)
    assert "loss.delta" in traced_keys([spec, other_numbers(spec)])
    assert_members_equal_their_plain_runs([spec, other_numbers(spec)])


def test_seeds_train_together_each_with_its_own_keys_and_batches(tmp_path):
    specs = [spec_with(tmp_path, {"type": "sgd", "learning_rate": lr}) for lr in (0.1, 0.3)]
    specs = [*specs, substitute(specs[0], {("seed",): 5})]  # another seed: its init, dropout and batch order
    assert compile_group(specs).shared_batches is False
    assert_members_equal_their_plain_runs(specs)


def test_members_that_differ_in_shape_data_or_settings_train_apart(tmp_path):
    base = spec_with(tmp_path, {"type": "adam", "learning_rate": 0.01})
    wider = load_spec(write(tmp_path / "w.yaml", (tmp_path / "kinds.yaml").read_text().replace("units: 8", "units: 9")))
    longer = load_spec(
        write(tmp_path / "l.yaml", (tmp_path / "kinds.yaml").read_text().replace("steps: 12", "steps: 13"))
    )
    lr = other_numbers(base)
    assert groups([base, wider, lr, longer]) == [[0, 2], [1], [3]]
    assert groups([base, lr], starts=[0, 6]) == [[0], [1]]  # resumed from different steps


def test_a_validation_split_keeps_members_of_other_seeds_apart(tmp_path):
    text = CLASSIFIER.replace("OPTIMIZER", '{"type": "sgd", "learning_rate": 0.1}').replace(
        "  inline:", "  validation_split: 0.25\n  inline:"
    )
    spec = load_spec(write(tmp_path / "v.yaml", text))
    reseeded = load_spec(write(tmp_path / "v1.yaml", text.replace("seed: 0", "seed: 1")))
    assert groups([spec, reseeded]) == [[0], [1]]  # each seed holds out other examples
    assert groups([spec, other_numbers(spec)]) == [[0, 1]]


def test_a_frozen_member_keeps_its_state_while_the_others_train(tmp_path):
    specs = [spec_with(tmp_path, {"type": "adam", "learning_rate": lr}) for lr in (0.01, 0.02)]
    group = compile_group(specs)
    arrays = load_arrays(specs[0])
    inputs = training_inputs(specs[0], arrays, group.members[0], None)
    states = group.states([m.init() for m in group.members])
    before = jax.device_get(states.train)
    states = states._replace(active=jnp.asarray([True, False]))
    after, _ = group.train_chunk(3)(states, inputs.data, inputs.feed.batches(0, 3), group.keys)
    after = jax.device_get(after.train)
    for a, b in zip(jax.tree_util.tree_leaves(after), jax.tree_util.tree_leaves(before), strict=True):
        np.testing.assert_array_equal(a[1], b[1])  # frozen: as it was, step count included
    assert int(after.step[0]) == 3 and int(after.step[1]) == 0


@pytest.mark.slow  # a step and outputs compiled for the group and each member
def test_a_group_of_steps_chunks_trains_as_its_members_plain_runs(tmp_path):
    """`train.loop: steps` (one jitted call per step: a native conv2d on a CPU): the group's step
    and outputs vmapped as the scan's are."""
    text = CLASSIFIER.replace("train: {steps: 12, batch_size: 4}", "train: {steps: 12, batch_size: 4, loop: steps}")
    spec = spec_with(tmp_path, {"type": "adam", "learning_rate": 0.01}, text)
    assert compile_spec(spec).loop == "steps"
    specs = [spec, other_numbers(spec), substitute(spec, {("seed",): 3})]
    assert_members_equal_their_plain_runs(specs, steps=4)


CONV = """\
name: tiles
seed: 0
data:
  inline:
    x: X
    y: Y
model:
  input: [6, 6, 1]
  layers:
    - {name: conv, type: conv2d, filters: 4, kernel_size: 3, padding: same, activation: relu}
    - {name: pool, type: max_pool, pool_size: 2}
    - {name: conv2, type: conv2d, filters: 3, kernel_size: 2, activation: tanh}
    - {name: flat, type: flatten}
    - {name: output, type: dense, units: 2, activation: softmax}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
optimizer: {type: adam, learning_rate: 0.01}
train: {steps: 8, batch_size: 4}
summaries: {every: 4, graph: false}
"""


def test_a_conv_group_on_a_cpu_loops_over_its_members_and_trains_each_as_its_plain_run(tmp_path):
    rng = np.random.default_rng(0)
    x = np.round(rng.random((8, 6, 6, 1)), 2).tolist()
    text = CONV.replace("x: X", f"x: {json.dumps(x)}").replace("y: Y", f"y: {[i % 2 for i in range(8)]}")
    spec = load_spec(write(tmp_path / "tiles.yaml", text))
    specs = [spec, other_numbers(spec), substitute(spec, {("seed",): 2})]
    group = compile_group(specs)
    assert group.across == ("map" if jax.default_backend() == "cpu" else "vmap")
    assert_members_equal_their_plain_runs(specs, steps=4)


def test_unstack_gives_each_members_slice():
    tree = {"a": np.arange(6.0).reshape(3, 2), "b": (np.arange(3), None), "c": {"d": np.ones((3, 1, 2))}}
    each = unstack(tree, 3)
    assert len(each) == 3
    for i, member in enumerate(each):
        expected = take(tree, i)
        assert jax.tree_util.tree_structure(member) == jax.tree_util.tree_structure(expected)
        for got, want in zip(jax.tree_util.tree_leaves(member), jax.tree_util.tree_leaves(expected), strict=True):
            np.testing.assert_array_equal(got, want)
    assert unstack({"x": None}, 2) == [{"x": None}, {"x": None}]
