"""netspec.spec.summary and `netspec summary`: a model's cost from the pure-Python shape rules.

The counts against XLA's own (`jax.jit(...).lower(...).compile().cost_analysis()`, CPU): every
activation's (flops, transcendentals) per value, every layer example's forward count under
both conv2d lowerings, and every shipped spec's forward FLOPs per example; the parameter counts
against the compiled model (the trained checkpoints' are tests/e2e/test_summary.py's); the
totals' arithmetic; one table per group of a sweep's members; the command's formats and its
refusal of a spec that does not validate; and that it never imports jax and answers within
0.3 s for every shipped spec.

What is compared: `flops` with XLA's "flops" and `transcendentals` with its "transcendentals",
for the forward pass at evaluation (`Program.apply(..., train=False)`), per example: XLA's count
for a batch of 16 less its count for a batch of 8, divided by 8 (so that work done once per
batch, batch_norm's rsqrt of its running variance, drops out) for the layers; a batch of 8
divided by 8 for whole models.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from support import LAYER_EXAMPLES, ROOT, SHIPPED, XOR, checked, cli, probe_spec, validate, write

from netspec.compile.members import groups
from netspec.compile.program import compile_spec
from netspec.model import layers as L
from netspec.spec.choices import ACTIVATIONS
from netspec.spec.cost import ACTIVATION_OPS, activation_ops, layer_cost, model_costs, optimizer_state_elements
from netspec.spec.fields import defaults_of
from netspec.spec.summary import BACKWARD_FACTOR, render, summarize, summarize_sweep
from netspec.spec.sweep import load_checked, load_sweep


def xla_cost(fn, *args) -> tuple[float, float]:
    """(flops, transcendentals) XLA's cost analysis gives `jax.jit(fn)` on these arguments."""
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis  # older jax: one per device
    return analysis.get("flops", 0.0), analysis.get("transcendentals", 0.0)


# -- the rules against XLA's count ------------------------------------------------------------------


def test_every_activation_has_an_op_count():
    assert set(ACTIVATION_OPS) == set(ACTIVATIONS)


ACTIVATION_CASES = [(name, defaults_of(fields)) for name, fields in sorted(ACTIVATIONS.items())] + [
    ("elu", {"alpha": 2.0}),
    ("gelu", {"approximate": False}),
    ("leaky_relu", {"negative_slope": 0.2}),
]


@pytest.mark.parametrize(
    "name, args",
    ACTIVATION_CASES,
    ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in a.items())}" for n, a in ACTIVATION_CASES],
)
@pytest.mark.parametrize("shape", [(3, 10), (4, 7)], ids=str)
def test_activation_ops_equal_xla(name, args, shape):
    choice = {"type": name, **args}
    fn = L.activation(choice)
    batch = 8
    got = xla_cost(fn, jax.ShapeDtypeStruct((batch, *shape), jnp.float32))
    assert activation_ops(choice, shape) == (got[0] / batch, got[1] / batch)


LAYER_CASES = [
    pytest.param(t, i, lowering, id=f"{t}-{i}" + (f"-{lowering}" if lowering else ""))
    for t, examples in sorted(LAYER_EXAMPLES.items())
    for i in range(len(examples))
    for lowering in (("native", "im2col") if t == "conv2d" else (None,))
]


@pytest.mark.parametrize("layer_type, index, lowering", LAYER_CASES)
def test_layer_forward_count_equals_xla(layer_type, index, lowering):
    """Exact, but for one case: netspec.model.conv's im2col of a one-channel input sums kh x kw
    rank-1 products, kh x kw - 1 additions per output where the matrix-multiply convention
    counts kh x kw (2 per MAC): XLA counts one FLOP per output fewer than the rule."""
    spec = checked(probe_spec(*LAYER_EXAMPLES[layer_type][index]))
    (probe,) = [layer for layer in spec.layers if layer.name == "probe"]
    init, apply = L.build(probe, lowering=lowering)
    act = L.activation(probe.args["activation"]) if "activation" in probe.args else (lambda y: y)
    params, state = jax.eval_shape(init, jax.random.key(0))

    def forward(params, state, inputs):
        return act(apply(params, state, inputs, train=False, key=jax.random.key(0))[0])

    def cost(batch: int) -> tuple[float, float]:
        inputs = [jax.ShapeDtypeStruct((batch, *shape), jnp.float32) for shape in probe.in_shapes]
        return xla_cost(forward, params, state, inputs)

    (f8, t8), (f16, t16) = cost(8), cost(16)
    rule = layer_cost(probe, conv=lowering or "im2col")
    one_channel_im2col = lowering == "im2col" and probe.in_shapes[0][-1] == 1 and probe.args["groups"] == 1
    expected = rule.flops - (math.prod(probe.out_shape) if one_channel_im2col else 0)
    assert (expected, rule.transcendentals) == ((f16 - f8) / 8, (t16 - t8) / 8)


def _model_cost(spec, program) -> tuple[float, float]:
    """XLA's (flops, transcendentals) per example of the compiled model's forward pass at evaluation."""
    state = jax.eval_shape(program.init)
    batch = 8
    x = jax.ShapeDtypeStruct((batch, *spec.input_shape), jnp.float32)
    flops, transcendentals = xla_cost(
        lambda p, s, x: program.apply(p, s, x, train=False), state.params, state.model_state, x
    )
    return flops / batch, transcendentals / batch


SHIPPED_CASES = [pytest.param(path, "auto", id=path.stem) for path in SHIPPED] + [
    pytest.param(path, "native", id=f"{path.stem}-native") for path in SHIPPED if "cnn" in path.stem
]


@pytest.mark.parametrize("path, conv", SHIPPED_CASES)
def test_forward_flops_of_every_shipped_spec_within_xla_tolerance(path, conv):
    """2 % for a model of dense and conv2d layers only (flatten and dropout do no arithmetic at
    evaluation), 10 % with pooling or normalisation, as the issue asks; measured: within 0.3 %
    (the CNNs with im2col, by the one-channel convolution above: +0.29 %), 0.0 % natively."""
    spec = load_checked(path, [f"train.conv={conv}"])
    program = compile_spec(spec)
    summary = summarize(spec, program.conv)
    flops, transcendentals = _model_cost(spec, program)
    plain = {layer.type for layer in spec.layers} <= {"dense", "conv2d", "flatten", "dropout"}
    assert summary.totals.flops == pytest.approx(flops, rel=0.02 if plain else 0.10)
    assert summary.totals.flops == pytest.approx(flops, rel=0.005)  # what it measures today
    assert summary.totals.transcendentals == transcendentals


def test_auto_counts_conv_as_im2col_and_native_counts_only_the_taps_inside():
    auto = summarize(load_checked(ROOT / "specs/fashion_cnn.yaml"))
    native = summarize(load_checked(ROOT / "specs/fashion_cnn.yaml", ["train.conv=native"]))
    assert dict(auto.conv) == {"conv1": "im2col", "conv2": "im2col"} and "auto" in auto.conv_source
    assert dict(native.conv) == {"conv1": "native", "conv2": "native"}
    # 28x28 and 14x14 'same' 3x3 convolutions: per axis 3n - 2 of the 3n taps lie inside
    assert native.rows[0].macs == 82 * 82 * 32 and native.rows[2].macs == 40 * 40 * 32 * 64
    assert auto.rows[0].macs == 28 * 28 * 9 * 32 and auto.rows[2].macs == 14 * 14 * 9 * 32 * 64


# -- parameters and totals --------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_parameter_counts_equal_the_compiled_model(path):
    spec = load_checked(path)
    params = jax.eval_shape(compile_spec(spec).init).params
    summary = summarize(spec)
    assert {row.name: row.params for row in summary.rows} == {
        layer.name: sum(math.prod(a.shape) for a in jax.tree.leaves(params.get(layer.name, {})))
        for layer in spec.layers
    }
    assert summary.totals.params == sum(math.prod(a.shape) for a in jax.tree.leaves(params))


def test_the_totals_of_fashion_cnn():
    spec = load_checked(ROOT / "specs/fashion_cnn.yaml")
    summary, costs = summarize(spec), model_costs(spec.layers)
    t = summary.totals
    assert (t.params, t.param_bytes) == (421_642, 4 * 421_642)
    assert t.optimizer == "adam" and t.optimizer_state == 2 * t.params == optimizer_state_elements(
        spec.optimizer, [s for c in costs for s in c.params.values()]
    )
    assert t.optimizer_state_bytes == 4 * t.optimizer_state
    assert (t.macs, t.flops) == (sum(c.macs for c in costs), sum(c.flops for c in costs))
    assert t.activation_bytes == 4 * sum(math.prod(row.output) for row in summary.rows)
    assert t.training_flops_per_step == BACKWARD_FACTOR * t.flops * 100
    assert (t.steps_per_epoch, t.steps, t.training_flops) == (600, 3600, 3600 * t.training_flops_per_step)
    bf16 = summarize(load_checked(ROOT / "specs/fashion_cnn.yaml", ["precision.compute=bfloat16"]))
    assert bf16.totals.activation_bytes * 2 == t.activation_bytes and bf16.totals.param_bytes == t.param_bytes


def test_batch_norm_state_is_counted_apart(tmp_path):
    spec = checked(probe_spec([4, 4, 3], [], {"type": "batch_norm"}))
    summary = summarize(spec)
    assert summary.totals.state == 2 * 3 and summary.rows[0].params == 2 * 3
    assert "non-trainable" in render([summary])


# -- a sweep: one table per group ---------------------------------------------------------------------

SWEEP = XOR.replace(
    "seed: 0\n", "seed: 0\nsweep:\n  model.layers[0].units: [2, 8]\n  optimizer.learning_rate: [0.1, 0.5]\n", 1
)


def test_a_sweep_has_one_table_per_group_naming_its_members(tmp_path):
    sweep = load_sweep(write(tmp_path / "sweep.yaml", SWEEP))
    summaries = summarize_sweep(sweep)
    assert [s.members for s in summaries] == [
        ("units=2,learning_rate=0.1", "units=2,learning_rate=0.5"),
        ("units=8,learning_rate=0.1", "units=8,learning_rate=0.5"),
    ]
    assert [s.totals.params for s in summaries] == [2 * 2 + 2 + 2 + 1, 2 * 8 + 8 + 8 + 1]
    # the groups that train together (netspec.compile.members) each lie within one table
    for group in groups([m.spec for m in sweep.members]):
        names = {sweep.members[i].name for i in group}
        assert any(names <= set(s.members) for s in summaries)
    table = render(summaries)
    assert table.count("group 1 of 2, 2 members: units=2,learning_rate=0.1, units=2,learning_rate=0.5") == 1
    assert [line.split()[:3] for line in table.splitlines() if line.startswith("layer1 ")] == [
        ["layer1", "dense", "2"],
        ["layer1", "dense", "8"],
    ]
    data = json.loads(render(summaries, "json"))
    assert [g["members"] for g in data["groups"]] == [list(s.members) for s in summaries]


# -- the command --------------------------------------------------------------------------------------


def test_the_command_prints_the_table():
    code, output = cli("summary", ROOT / "specs/xor_wide.yaml")
    assert code == 0, output
    assert output.splitlines()[0] == "xor_wide: 2 -> 1, float32"
    assert "total                         261   230    584    124 bytes" in output
    assert "sgd: none" in output and "1 step per epoch; 10,001 steps" in output


def test_json_and_markdown_formats_and_set():
    code, output = cli("summary", ROOT / "specs/xor_wide.yaml", "--format", "json", "--set", "model.layers[0].units=4")
    assert code == 0, output
    data = json.loads(output)
    assert data["layers"][0] == {
        "name": "layer1",
        "type": "dense",
        "output": [4],
        "params": 12,
        "macs": 8,
        "flops": 2 * 8 + 4 + 3 * 4,  # products, bias, sigmoid's -x, +1 and 1/
        "transcendentals": 4,
        "activation_bytes": 16,
    }
    assert data["totals"]["training_flops_per_step"] == 3 * data["totals"]["flops"] * 4
    code, output = cli("summary", ROOT / "specs/fashion_cnn.yaml", "--format", "markdown")
    assert code == 0, output
    assert "| layer | type | output | params | MACs | FLOPs | activations |" in output
    assert "| `conv1` | conv2d | 28x28x32 | 320 | 225,792 | 501,760 | 98 KiB |" in output


def test_a_spec_that_does_not_validate_gets_validates_messages(tmp_path):
    bad = write(
        tmp_path / "bad.yaml", XOR.replace("units: 2", "units: 0").replace("loss: binary_crossentropy", "loss: nope")
    )
    code, output = cli("summary", bad)
    assert code == 1 and "Traceback" not in output
    assert output == validate(bad).output
    code, output = cli("summary", tmp_path / "missing.yaml")
    assert code == 1 and "missing.yaml" in output and "Traceback" not in output


TIMING = """
import json, statistics, sys, time
from contextlib import redirect_stdout
from io import StringIO
from netspec.cli import main
medians = {}
for path in sys.argv[1:]:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        with redirect_stdout(StringIO()):
            try:
                main(["summary", path], standalone_mode=False)
            except SystemExit as e:
                assert not e.code, e.code
        times.append(time.perf_counter() - start)
    medians[path] = statistics.median(times)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"jax", "jaxlib", "optax", "tensorboardX", "tensorboard"})
print(json.dumps({"medians": medians, "heavy": heavy}))
"""


def test_summary_never_imports_jax_and_takes_under_0_3_s_for_every_shipped_spec():
    """In a fresh process: the median of five in-process calls per shipped spec (the
    interpreter's start not counted), then which heavy modules were loaded."""
    done = subprocess.run(
        [sys.executable, "-c", TIMING, *map(str, SHIPPED)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["heavy"] == []
    slow = {path: seconds for path, seconds in found["medians"].items() if seconds >= 0.3}
    assert not slow, slow
