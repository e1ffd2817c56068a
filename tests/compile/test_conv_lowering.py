"""A conv net trains bit for bit reproducibly with either lowering of conv2d (train.conv: native or
im2col): the same losses however the steps are chunked, the same run twice, a resumed run ending
on the uninterrupted one's parameters; the two lowerings train the same model to float32 rounding;
result.json records the choice; auto on this CPU lowers by im2col and runs in the fused scan."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file
from support import result_of, train_in_chunks, write

from netspec.compile.program import compile_spec
from netspec.spec.check import check
from netspec.spec.load import load
from netspec.training.loop import run
from netspec.training.rundir import load_run_spec

SPEC = """\
name: small_cnn
seed: 3
data:
  npz: {{path: images.npz}}
model:
  input: [8, 8, 2]
  defaults: {{activation: relu}}
  layers:
    - {{name: conv1, type: conv2d, filters: 4, kernel_size: 3, padding: same}}
    - {{name: pool1, type: max_pool, pool_size: 2}}
    - {{name: conv2, type: conv2d, filters: 6, kernel_size: [2, 3], strides: 2, padding: valid, groups: 2}}
    - {{name: flatten, type: flatten}}
    - {{name: dropout, type: dropout, rate: 0.2}}
    - {{name: output, type: dense, units: 3, activation: softmax}}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
optimizer: {{type: adam, learning_rate: 0.01}}
train: {{steps: 12, batch_size: 8, conv: {conv}}}
summaries: {{every: 6, graph: false}}
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cnn")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8, 8, 2)).astype(np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) > 0).astype(np.int64) + (x[:, 4:].mean(axis=(1, 2, 3)) > 0)
    np.savez(directory / "images.npz", x=x, y=y)
    return directory


def spec_file(data_dir, conv: str):
    return write(data_dir / f"cnn_{conv}.yaml", SPEC.format(conv=conv))


def leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


@pytest.mark.slow
@pytest.mark.parametrize("conv", ["native", "im2col"])
def test_chunking_and_reruns_do_not_change_a_conv_net(conv, data_dir):
    spec = check(load(spec_file(data_dir, conv)))
    program = compile_spec(spec)
    assert program.conv == {"conv1": conv, "conv2": conv}
    whole, losses, initial = train_in_chunks(spec, program, [12])
    chunked, chunked_losses, _ = train_in_chunks(spec, program, [5, 1, 6])
    again, again_losses, _ = train_in_chunks(spec, compile_spec(spec), [12])
    assert losses == chunked_losses == again_losses
    for a, b, c in zip(leaves(whole.params), leaves(chunked.params), leaves(again.params), strict=True):
        assert a.tobytes() == b.tobytes() == c.tobytes()
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(whole.params), leaves(initial.params), strict=True))


@pytest.mark.slow
def test_both_lowerings_train_the_same_model_to_float32_rounding(data_dir):
    results = {}
    for conv in ("native", "im2col"):
        spec = check(load(spec_file(data_dir, conv)))
        program = compile_spec(spec)
        results[conv] = train_in_chunks(spec, program, [12])
    (native, native_losses, native_init), (im2col, im2col_losses, im2col_init) = results["native"], results["im2col"]
    for a, b in zip(leaves(native_init.params), leaves(im2col_init.params), strict=True):
        assert a.tobytes() == b.tobytes()  # the same parameters: the lowering is not in the checkpoint
    np.testing.assert_allclose(im2col_losses, native_losses, rtol=1e-5)
    for a, b in zip(leaves(native.params), leaves(im2col.params), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("conv", ["native", "im2col"])
def test_a_resumed_conv_run_ends_bit_for_bit_as_the_uninterrupted_one(conv, data_dir, tmp_path):
    path = spec_file(data_dir, conv)
    whole = run(check(load(path)), logdir=tmp_path, run_name="whole", quiet=True)
    part = run(check(load(path, ["train.steps=6"])), logdir=tmp_path, run_name="part", quiet=True)
    resumed = run(load_run_spec(part.run_dir, ["train.steps=12"]), resume=part.run_dir, quiet=True)
    assert resumed.losses == whole.losses[6:]
    final = "checkpoints/step-00000012.safetensors"
    left, right = load_file(str(whole.run_dir / final)), load_file(str(part.run_dir / final))
    assert left.keys() == right.keys()
    assert all(left[key].tobytes() == right[key].tobytes() for key in left)
    ran = result_of(part.run_dir)["ran"]
    assert ran["conv"] == {"conv1": conv, "conv2": conv}


@pytest.mark.slow
def test_auto_on_this_cpu_lowers_by_im2col_inside_the_fused_scan(data_dir, tmp_path):
    if jax.default_backend() != "cpu":
        pytest.skip("the rule under test is the CPU's")
    result = run(check(load(spec_file(data_dir, "auto"))), logdir=tmp_path, run_name="auto", quiet=True)
    ran = result_of(result.run_dir)["ran"]
    assert ran["conv"] == {"conv1": "im2col", "conv2": "im2col"} and ran["loop"] == "scan"
    assert "conv_fallbacks" not in ran


BIG_INPUT = """\
name: big_input
seed: 0
data:
  npz: {path: big.npz}
model:
  input: [32, 32, 8]
  layers:
    - {name: conv1, type: conv2d, filters: 4, kernel_size: 3, padding: same, activation: relu}
    - {name: pool1, type: max_pool, pool_size: 4}
    - {name: conv2, type: conv2d, filters: 4, kernel_size: 3, padding: same, activation: relu}
    - {name: flatten, type: flatten}
    - {name: output, type: dense, units: 2, activation: softmax}
loss: sparse_categorical_crossentropy
optimizer: {type: sgd, learning_rate: 0.01}
train: {steps: 4, batch_size: 8}
summaries: {every: 2, graph: false}
"""


@pytest.mark.slow
def test_a_layer_whose_patches_exceed_the_budget_stays_native_and_the_run_says_so(tmp_path, monkeypatch):
    """conv1's im2col patches at the evaluation batch (1,000 examples of 32x32x8, 3x3): 295 MB, over
    a quarter of a 600 MB budget; conv2's (8x8x4 after the pool): 9 MB, within it. The run keeps
    conv1 native, lowers conv2 by im2col, says why in result.json, and (a conv left native on CPU)
    runs one call per step."""
    if jax.default_backend() != "cpu":
        pytest.skip("the rule under test is the CPU's")
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "big.npz", x=rng.normal(size=(24, 32, 32, 8)).astype(np.float32), y=rng.integers(0, 2, 24))
    monkeypatch.setenv("NETSPEC_MEMORY_BUDGET", "600MB")
    result = run(check(load(write(tmp_path / "big.yaml", BIG_INPUT))), logdir=tmp_path, run_name="r", quiet=True)
    ran = result_of(result.run_dir)["ran"]
    assert ran["conv"] == {"conv1": "native", "conv2": "im2col"}
    assert list(ran["conv_fallbacks"]) == ["conv1"] and "memory budget" in ran["conv_fallbacks"]["conv1"]
    assert ran["loop"] == "steps"
