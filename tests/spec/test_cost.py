"""Tests for netspec.cost: per-layer costs against what the compiled model really holds, the
optimizer state against optax's own, the memory estimate and the budget.

Like the shape-agreement test in tests/model/test_registry.py, one parametrized test walks every layer
example: the parameter and state arrays the pure-Python rules name are exactly (names and shapes)
those the layer's JAX init creates.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from netspec.compile import optim
from netspec.compile.program import compile_spec

from netspec.model import layers as L

from netspec.spec.check import check
from netspec.spec.load import load
from netspec.machine import BUDGET_ENV, Budget, _gpu_memory, format_bytes, memory_budget, parse_bytes
from netspec.spec.choices import OPTIMIZERS
from netspec.spec.cost import OPTIMIZER_COPIES, RULES, RUNTIME_RESIDENT, layer_cost, model_costs, optimizer_state_elements, training_memory
from netspec.spec.fields import defaults_of
from netspec.spec.layers import LAYERS
from support import LAYER_EXAMPLES, SHIPPED, SPECS, checked, probe_spec


def test_every_layer_type_has_a_cost_rule():
    assert set(RULES) == set(LAYERS)


CASES = [pytest.param(t, i, id=f"{t}-{i}") for t, examples in sorted(LAYER_EXAMPLES.items()) for i in range(len(examples))]


@pytest.mark.parametrize("layer_type, index", CASES)
def test_cost_rule_names_the_arrays_the_layer_creates(layer_type, index):
    input_shape, before, layer = LAYER_EXAMPLES[layer_type][index]
    spec = checked(probe_spec(input_shape, before, layer))
    (probe,) = [l for l in spec.layers if l.name == "probe"]
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
    spec = checked({
        "name": "arith", "data": {"inline": {"x": [[[[0.0]] * 6] * 6], "y": [[0.0]]}},
        "model": {"input": [6, 6, 1], "layers": [
            {"name": "conv", "type": "conv2d", "filters": 4, "kernel_size": 3},  # 4x4x4 out
            {"name": "flat", "type": "flatten"},
            {"name": "out", "type": "dense", "units": 1, "use_bias": False}]},
        "loss": "mean_squared_error", "metrics": [], "optimizer": {"type": "sgd", "learning_rate": 0.1},
        "train": {"steps": 1, "batch_size": 1}})
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
    assert {c.name: {k: tuple(v) for k, v in c.params.items()} for c in costs} == jax.tree.map(lambda a: a.shape, state.params)
    assert sum(c.state_count for c in costs) == sum(math.prod(a.shape) for a in jax.tree.leaves(state.model_state))
    per_param = sum(math.prod(a.shape) for a in jax.tree.leaves(state.opt_state) if a.ndim >= 1)
    assert optimizer_state_elements(spec.optimizer, [s for c in costs for s in c.params.values()]) == per_param


SHAPES = [(300, 200), (200,), (3, 3, 16, 32), (1, 7), (130, 1, 140)]
VARIANTS = [(name, {}) for name in sorted(OPTIMIZERS)] + [
    ("sgd", {"momentum": 0.9}), ("rmsprop", {"centered": True}), ("rmsprop", {"momentum": 0.5}),
    ("adafactor", {"momentum": 0.9}), ("adafactor", {"factored": False}), ("adafactor", {"min_dim_size_to_factor": 2}),
]


@pytest.mark.parametrize("name, extra", VARIANTS, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in e.items()) or 'defaults'}" for n, e in VARIANTS])
def test_optimizer_state_equals_optax_init(name, extra):
    optimizer = {"type": name, "learning_rate": 0.01, "clip_global_norm": None, **defaults_of(OPTIMIZERS[name]), **extra}
    params = {str(i): jnp.zeros(s) for i, s in enumerate(SHAPES)}
    state = jax.eval_shape(optim.optimizer(optimizer).init, params)
    real = sum(math.prod(a.shape) for a in jax.tree.leaves(state) if a.ndim >= 1)
    assert optimizer_state_elements(optimizer, SHAPES) == real


def test_every_optimizer_has_a_state_rule():
    assert set(OPTIMIZER_COPIES) == set(OPTIMIZERS)


@pytest.mark.parametrize("text, expected", [
    ("24GiB", 24 * 2**30), ("24 G", 24 * 2**30), ("8000MB", 8000 * 2**20), ("1e9", 10**9), ("512k", 512 * 2**10),
    ("1.5TiB", int(1.5 * 2**40)), ("", None), ("lots", None), ("-1G", None), ("0", None), ("inf", None), ("12 parsecs", None),
])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


def test_format_bytes():
    assert [format_bytes(n) for n in (12, 1536, 2**40 * 8, 47 * 2**20 + 1)] == ["12 bytes", "1.5 KiB", "8 TiB", "47 MiB"]


def test_the_budget_is_the_environment_variable_when_set(monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "80GiB")
    assert memory_budget() == Budget(80 * 2**30, f"{BUDGET_ENV}=80GiB", "device")
    monkeypatch.setenv(BUDGET_ENV, "plenty")  # not a size: the detected budget
    assert memory_budget().origin != f"{BUDGET_ENV}=plenty"


def test_the_host_budget_counts_an_address_space_limit():
    code = "from netspec import machine; b = machine.host_memory(); print(b.bytes, b.kind, b.origin)"
    limit = 3 * 2**30
    out = subprocess.run([sys.executable, "-c", f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit})); {code}"],
                         capture_output=True, text=True, check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}).stdout.split(maxsplit=2)
    assert int(out[0]) == limit and out[1] == "address" and "ulimit -v" in out[2]
    unlimited = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(maxsplit=2)
    assert int(unlimited[0]) > limit or "cgroup" in unlimited[2]


def test_no_gpu_budget_on_a_cpu_platform(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert _gpu_memory() is None


def test_memory_parts_add_up():
    spec = check(load(SPECS / "fashion_mlp.yaml"))
    costs = model_costs(spec.layers)
    parts = training_memory(costs, input_shape=spec.input_shape, optimizer=spec.optimizer, batch_size=100, devices=None,
                              example_bytes=784, label_bytes=1, num_train=54000, num_eval=6000, eval_batch_size=1000,
                              chunk_steps=100, max_resident_bytes=2048 * 2**20, budget_kind="device")
    n = sum(c.param_count for c in costs)
    by_what = {p.what.split(" (")[0]: p.bytes for p in parts}
    assert by_what["parameters"] == by_what["their gradients"] == 4 * n
    assert by_what["adam's state"] == 8 * n
    assert by_what["the training data"] == 54000 * 785
    assert "the JAX runtime" not in by_what  # a device budget: the host's share is not the device's
    streamed = training_memory(costs, input_shape=spec.input_shape, optimizer=spec.optimizer, batch_size=100, devices=None,
                                 example_bytes=784, label_bytes=1, num_train=54000, num_eval=None, eval_batch_size=1000,
                                 chunk_steps=100, max_resident_bytes=1000, budget_kind="host")
    by_what = {p.what.split(" (")[0]: p.bytes for p in streamed}
    assert by_what["two chunks of streamed batches"] == 2 * 100 * 100 * 785 and "the training data" not in by_what
    assert by_what["the JAX runtime"] == RUNTIME_RESIDENT


def test_the_gpu_budget_from_nvidia_smi(tmp_path, monkeypatch):
    """With a CUDA plugin installed and JAX_PLATFORMS not leaving it out, the budget is GPU 0's
    memory as nvidia-smi reports it, times what XLA preallocates (a fake plugin and nvidia-smi)."""
    (tmp_path / "jax_cuda12_plugin").mkdir()
    (tmp_path / "jax_cuda12_plugin" / "__init__.py").write_text("")
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200, 143771'\n")
    smi.chmod(0o755)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    budget = _gpu_memory()
    assert budget == Budget(int(143771 * 2**20 * 0.75), "0.75 of the memory of GPU 0 (NVIDIA H200, nvidia-smi), what XLA preallocates", "device")
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    assert _gpu_memory().bytes == 143771 * 2**20
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert _gpu_memory() is None
    smi.write_text("#!/bin/sh\nexit 9\n")  # a broken driver: the host's memory instead
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    assert _gpu_memory() is None
