"""Tests for netspec.spec.cost: per-layer costs against what the compiled model really holds, the
optimizer state against optax's own, and the memory estimate (the budget it is checked against is
tests/test_machine.py's).

Like the shape-agreement test in tests/model/test_registry.py, one parametrized test walks every
layer example: the parameter and state arrays the pure-Python rules name are exactly (names and
shapes) those the layer's JAX init creates.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import pytest
from support import LAYER_EXAMPLES, SHIPPED, SPECS, checked, probe_spec

from netspec.compile import optim
from netspec.compile.program import compile_spec
from netspec.model import layers as L
from netspec.spec.check import check
from netspec.spec.choices import OPTIMIZERS
from netspec.spec.cost import (
    OPTIMIZER_COPIES,
    RULES,
    RUNTIME_RESIDENT,
    layer_cost,
    model_costs,
    optimizer_state_elements,
    training_memory,
)
from netspec.spec.fields import defaults_of
from netspec.spec.layers import LAYERS
from netspec.spec.load import load


def test_every_layer_type_has_a_cost_rule():
    assert set(RULES) == set(LAYERS)


CASES = [
    pytest.param(t, i, id=f"{t}-{i}") for t, examples in sorted(LAYER_EXAMPLES.items()) for i in range(len(examples))
]


@pytest.mark.parametrize("layer_type, index", CASES)
def test_cost_rule_names_the_arrays_the_layer_creates(layer_type, index):
    input_shape, before, layer = LAYER_EXAMPLES[layer_type][index]
    spec = checked(probe_spec(input_shape, before, layer))
    (probe,) = [layer for layer in spec.layers if layer.name == "probe"]
    params, state = jax.eval_shape(L.build(probe)[0], jax.random.key(0))
    cost = layer_cost(probe)
    assert cost.params == {k: v.shape for k, v in params.items()}
    assert cost.state == {k: v.shape for k, v in state.items()}
    assert cost.param_count == sum(math.prod(v.shape) for v in params.values())
    assert cost.out_shape == probe.out_shape
    assert cost.activation_bytes == 4 * math.prod(probe.out_shape)
    assert layer_cost(probe, 2).activation_bytes == 2 * math.prod(probe.out_shape)  # a bfloat16 compute dtype
    assert cost.macs >= 0 and cost.flops >= 2 * cost.macs


def test_dense_and_conv_arithmetic():
    spec = checked(
        {
            "name": "arith",
            "data": {"inline": {"x": [[[[0.0]] * 6] * 6], "y": [[0.0]]}},
            "model": {
                "input": [6, 6, 1],
                "layers": [
                    {"name": "conv", "type": "conv2d", "filters": 4, "kernel_size": 3},  # 4x4x4 out
                    {"name": "flat", "type": "flatten"},
                    {"name": "out", "type": "dense", "units": 1, "use_bias": False},
                ],
            },
            "loss": "mean_squared_error",
            "metrics": [],
            "optimizer": {"type": "sgd", "learning_rate": 0.1},
            "train": {"steps": 1, "batch_size": 1},
        }
    )
    conv, flat, out = model_costs(spec.layers)
    assert (conv.param_count, conv.macs, conv.flops) == (3 * 3 * 4 + 4, 4 * 4 * 4 * 9, 2 * 576 + 64)
    assert (flat.saved_bytes, flat.macs) == (0, 0)  # a view
    assert (out.param_count, out.macs, out.flops) == (64, 64, 128)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_parameter_counts_equal_the_compiled_model_for_every_shipped_spec(path):
    spec = check(load(path))
    program = compile_spec(spec)
    state = jax.eval_shape(program.init)
    costs = model_costs(spec.layers)
    assert {c.name: {k: tuple(v) for k, v in c.params.items()} for c in costs} == jax.tree.map(
        lambda a: a.shape, state.params
    )
    assert sum(c.state_count for c in costs) == sum(math.prod(a.shape) for a in jax.tree.leaves(state.model_state))
    per_param = sum(math.prod(a.shape) for a in jax.tree.leaves(state.opt_state) if a.ndim >= 1)
    assert optimizer_state_elements(spec.optimizer, [s for c in costs for s in c.params.values()]) == per_param


SHAPES = [(300, 200), (200,), (3, 3, 16, 32), (1, 7), (130, 1, 140)]
VARIANTS = [(name, {}) for name in sorted(OPTIMIZERS)] + [
    ("sgd", {"momentum": 0.9}),
    ("rmsprop", {"centered": True}),
    ("rmsprop", {"momentum": 0.5}),
    ("adafactor", {"momentum": 0.9}),
    ("adafactor", {"factored": False}),
    ("adafactor", {"min_dim_size_to_factor": 2}),
]


@pytest.mark.parametrize(
    "name, extra",
    VARIANTS,
    ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in e.items()) or 'defaults'}" for n, e in VARIANTS],
)
def test_optimizer_state_equals_optax_init(name, extra):
    optimizer = {
        "type": name,
        "learning_rate": 0.01,
        "clip_global_norm": None,
        **defaults_of(OPTIMIZERS[name]),
        **extra,
    }
    params = {str(i): jnp.zeros(s) for i, s in enumerate(SHAPES)}
    state = jax.eval_shape(optim.optimizer(optimizer).init, params)
    real = sum(math.prod(a.shape) for a in jax.tree.leaves(state) if a.ndim >= 1)
    assert optimizer_state_elements(optimizer, SHAPES) == real


def test_every_optimizer_has_a_state_rule():
    assert set(OPTIMIZER_COPIES) == set(OPTIMIZERS)


def test_memory_parts_add_up():
    spec = check(load(SPECS / "fashion_mlp.yaml"))
    costs = model_costs(spec.layers)
    parts = training_memory(
        costs,
        input_shape=spec.input_shape,
        optimizer=spec.optimizer,
        batch_size=100,
        devices=None,
        example_bytes=784,
        label_bytes=1,
        num_train=54000,
        num_eval=6000,
        eval_batch_size=1000,
        chunk_steps=100,
        max_resident_bytes=2048 * 2**20,
        budget_kind="device",
    )
    n = sum(c.param_count for c in costs)
    by_what = {p.what.split(" (")[0]: p.bytes for p in parts}
    assert by_what["parameters"] == by_what["their gradients"] == 4 * n
    assert by_what["adam's state"] == 8 * n
    assert by_what["the training data"] == 54000 * 785
    assert "the JAX runtime" not in by_what  # a device budget: the host's share is not the device's
    streamed = training_memory(
        costs,
        input_shape=spec.input_shape,
        optimizer=spec.optimizer,
        batch_size=100,
        devices=None,
        example_bytes=784,
        label_bytes=1,
        num_train=54000,
        num_eval=None,
        eval_batch_size=1000,
        chunk_steps=100,
        max_resident_bytes=1000,
        budget_kind="host",
    )
    by_what = {p.what.split(" (")[0]: p.bytes for p in streamed}
    assert by_what["two chunks of streamed batches"] == 2 * 100 * 100 * 785 and "the training data" not in by_what
    assert by_what["the JAX runtime"] == RUNTIME_RESIDENT
