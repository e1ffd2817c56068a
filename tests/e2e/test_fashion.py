"""End to end on the real Fashion-MNIST (Debian's dataset-fashion-mnist, which CI installs): the
shipped fashion specs on small slices through the real CLI, their run directories read back as
TensorBoard reads them, `netspec eval`, streaming from the host, and reproducible reshuffling.

The shipped specs' own accuracy targets take minutes and are measured by hand, not here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import FASHION, SPECS, accumulator, netspec, run_spec

FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
if not all((FASHION / name).is_file() or (FASHION / f"{name}.gz").is_file() for name in FILES):
    pytest.skip(
        f"Fashion-MNIST is not installed in {FASHION} (apt-get install dataset-fashion-mnist)", allow_module_level=True
    )

from safetensors.numpy import load_file  # noqa: E402
from tensorboard.plugins.hparams import metadata as hparams_metadata  # noqa: E402

from netspec.spec.check import check  # noqa: E402
from netspec.spec.load import load  # noqa: E402
from netspec.training import feed as feed_module  # noqa: E402
from netspec.training.feed import Feed  # noqa: E402
from netspec.training.loop import run  # noqa: E402

pytestmark = pytest.mark.slow

MLP_SLICE = [
    "--set",
    "data.limit=3000",
    "--set",
    'train={"steps": 300, "batch_size": 100}',
    "--set",
    "summaries.every=100",
    "--set",
    "eval.every=100",
]
MLP_TEST_ACCURACY_FLOOR = 0.7  # measured 0.822 (3000 examples, 300 steps, seed 777)


def parse_metrics(output: str) -> dict[str, float]:
    """`accuracy 0.822  loss 0.509  ...` -> {"accuracy": 0.822, ...}"""
    words = output.split()
    return {k: float(v) for k, v in zip(words[::2], words[1::2], strict=True)}


# -- fashion_mlp on a slice -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    return run_spec("fashion_mlp", tmp_path_factory.mktemp("runs"), "--data-dir", FASHION, *MLP_SLICE)


@pytest.fixture(scope="module")
def mlp_result(mlp_run) -> dict:
    return json.loads((mlp_run / "result.json").read_text())


def test_mlp_learns_on_a_slice(mlp_result):
    final = mlp_result["final"]
    assert mlp_result["steps"] == 300
    assert final["test_accuracy"] > MLP_TEST_ACCURACY_FLOOR, final
    assert final["test_top_3_accuracy"] >= final["test_accuracy"]
    assert final["test_loss"] < 1.0


def test_mlp_train_scalars(mlp_run, mlp_result):
    ea = accumulator(mlp_run)
    for tag in ("loss", "accuracy", "top_3_accuracy", "learning_rate"):
        assert [e.step for e in ea.Scalars(tag)] == [0, 100, 200, 300], tag
    assert [e.value for e in ea.Scalars("learning_rate")] == pytest.approx([0.001] * 4)
    losses = [e.value for e in ea.Scalars("loss")]
    assert losses[0] == pytest.approx(np.log(10), abs=0.3) and losses[-1] < losses[0] / 2
    assert ea.Scalars("loss")[-1].value == pytest.approx(mlp_result["final"]["loss"])


def test_mlp_eval_scalars_at_every_evaluation(mlp_run, mlp_result):
    ea = accumulator(mlp_run / "test")
    for tag in ("accuracy", "loss"):
        assert [e.step for e in ea.Scalars(tag)] == [100, 200, 300], tag
    assert ea.Scalars("accuracy")[-1].value == pytest.approx(mlp_result["final"]["test_accuracy"])
    assert ea.Scalars("loss")[-1].value == pytest.approx(mlp_result["final"]["test_loss"])


def test_mlp_images(mlp_run):
    train = accumulator(mlp_run)
    (samples,) = train.Images("input/samples")
    assert samples.step == 0 and samples.height >= 28 and samples.width >= 28
    evaluation = accumulator(mlp_run / "test")
    confusion = evaluation.Images("confusion_matrix")
    assert [e.step for e in confusion] == [100, 200, 300]
    assert confusion[-1].height > 10 * 24 and confusion[-1].width > 10 * 24  # a labelled cell per class pair
    assert evaluation.Tags()["tensors"] == ["confusion_counts"]  # the final counts as a table, under its own tag


def test_mlp_histograms(mlp_run):
    ea = accumulator(mlp_run)
    assert {"layer1/kernel", "layer1/bias"} <= set(ea.Tags()["histograms"])
    kernel = ea.Histograms("layer1/kernel")
    assert [e.step for e in kernel] == [0, 100, 200, 300]
    assert kernel[0].histogram_value.num == 784 * 256
    assert ea.Histograms("layer1/bias")[0].histogram_value.num == 256


def test_mlp_hparams_hold_the_final_test_accuracy(mlp_run, mlp_result):
    # HParams values a session's metrics at the last point of each scalar of its run and the runs
    # below it: the final test accuracy is test/'s last point
    last = accumulator(mlp_run / "test").Scalars("accuracy")[-1]
    assert last.step == 300
    assert last.value == pytest.approx(mlp_result["final"]["test_accuracy"])
    content = accumulator(mlp_run).PluginTagToContent("hparams")
    assert "_hparams_/experiment" not in content
    start = hparams_metadata.parse_session_start_info_plugin_data(content["_hparams_/session_start_info"])
    assert start.hparams["batch_size"].number_value == 100 and start.hparams["steps"].number_value == 300


# -- netspec eval -----------------------------------------------------------------------------------


def test_eval_reproduces_the_final_test_accuracy(mlp_run, mlp_result):
    result = netspec("eval", str(mlp_run), "--data-dir", str(FASHION))
    assert result.exit_code == 0, result.output
    values = parse_metrics(result.stdout)
    assert set(values) == {"accuracy", "loss", "top_3_accuracy"}
    assert values["accuracy"] == pytest.approx(mlp_result["final"]["test_accuracy"], abs=1e-6)
    assert values["loss"] == pytest.approx(mlp_result["final"]["test_loss"], rel=1e-5)


def test_eval_on_the_train_split(mlp_run, mlp_result):
    result = netspec("eval", str(mlp_run), "--split", "train", "--data-dir", str(FASHION))
    assert result.exit_code == 0, result.output
    values = parse_metrics(result.stdout)
    assert values["accuracy"] > MLP_TEST_ACCURACY_FLOOR
    assert values["accuracy"] != pytest.approx(mlp_result["final"]["test_accuracy"], abs=1e-6)  # another split


def test_eval_on_a_split_the_run_lacks(mlp_run):
    result = netspec("eval", str(mlp_run), "--split", "validation", "--data-dir", str(FASHION))
    assert result.exit_code == 1
    assert "no validation split" in result.output and "Traceback" not in result.output


def test_eval_of_a_directory_that_is_no_run(tmp_path):
    for directory in (tmp_path, tmp_path / "nowhere"):
        result = netspec("eval", str(directory))
        assert result.exit_code == 1, result.output
        assert isinstance(result.exception, SystemExit)
        assert f"{directory} is not a netspec run directory" in result.output
        assert "Traceback" not in result.output


# -- fashion_cnn ------------------------------------------------------------------------------------


def test_cnn_runs_and_draws_its_layers(tmp_path):
    narrow = [
        "--set",
        "model.layers[0].filters=8",
        "--set",
        "model.layers[2].filters=16",
        "--set",
        "model.layers[5].units=32",
    ]
    run_dir = run_spec(
        "fashion_cnn",
        tmp_path,
        "--data-dir",
        FASHION,
        "--set",
        "data.limit=1000",
        "--set",
        'train={"steps": 20, "batch_size": 50}',
        "--set",
        "summaries.every=10",
        "--set",
        "eval.every=null",
        *narrow,
    )
    final = json.loads((run_dir / "result.json").read_text())["final"]
    assert np.isfinite(final["loss"]) and 0 <= final["test_accuracy"] <= 1
    ea = accumulator(run_dir)
    names = [node.name for node in ea.Graph().node]
    for box in ("conv1/", "pool1/", "conv2/", "pool2/", "dense/", "dropout/", "output/"):
        assert any(n.startswith(box) for n in names), box
    assert {"conv1/kernel", "conv1/bias"} <= set(ea.Tags()["histograms"])
    assert ea.Histograms("conv1/kernel")[0].histogram_value.num == 3 * 3 * 1 * 8


# -- streaming and reshuffling ------------------------------------------------------------------------

SMALL = [
    "data.limit=500",
    'train={"steps": 30, "batch_size": 50}',  # 10 steps an epoch: 3 epochs
    "summaries.every=10",
    "eval.every=null",
    "summaries.graph=false",
    "summaries.histograms=[]",
    "model.layers[0].units=32",
    "model.layers[1].units=32",
]


def spy_feed(made: list[Feed]) -> type[Feed]:
    """A Feed that appends each instance to `made`."""

    class SpyFeed(Feed):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    return SpyFeed


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    """Short fashion_mlp runs through `netspec.training.run`, keyed by what differs; each (result, streamed)."""
    logdir = tmp_path_factory.mktemp("small")
    variants = {
        "resident": [],
        "again": [],
        "streamed": ["data.max_resident_mb=0.001"],
        "other_seed": ["seed=778"],
        "no_shuffle": ["train.shuffle=false"],
    }
    out = {}
    for key, more in variants.items():
        spec = check(load(SPECS / "fashion_mlp.yaml", SMALL + more))
        feeds: list[Feed] = []
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(feed_module, "Feed", spy_feed(feeds))
            result = run(spec, logdir=logdir, run_name=key, quiet=True, data_dir=str(FASHION))
        (feed,) = feeds
        out[key] = (result, feed.streamed)
    return out


def params_of(result) -> dict[str, np.ndarray]:
    return load_file(str(sorted((result.run_dir / "checkpoints").glob("step-*.safetensors"))[-1]))


def test_streaming_from_the_host_gives_bit_identical_steps(small_runs):
    resident, streamed_flag = small_runs["resident"]
    streamed, flag = small_runs["streamed"]
    assert not streamed_flag and flag  # the budget decided where the data lives
    assert len(resident.losses) == len(streamed.losses) == 30
    assert streamed.losses == resident.losses  # bit for bit, every step
    a, b = params_of(resident), params_of(streamed)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_same_seed_same_loss_curve(small_runs):
    first, again = small_runs["resident"][0], small_runs["again"][0]
    assert first.losses == again.losses
    assert len(set(first.losses)) > 1  # it trained: a curve, not a constant


def test_different_seed_different_loss_curve(small_runs):
    assert small_runs["other_seed"][0].losses != small_runs["resident"][0].losses


def test_shuffling_changes_the_batches(small_runs):
    shuffled, plain = small_runs["resident"][0].losses, small_runs["no_shuffle"][0].losses
    assert shuffled != plain  # same seed and init: only the batch order differs
    assert shuffled[:10] != plain[:10]
