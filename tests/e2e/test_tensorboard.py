"""TensorBoard shows netspec's runs as the README's workflow does, `tensorboard --logdir runs`,
read through a real TensorBoard server's HTTP API (the requests its HParams dashboard sends) and
its own EventAccumulator.

One logdir holds runs of two different specs: XOR at two learning rates, XOR run for 100 steps
and resumed to 200, and Fashion-MNIST on a slice, evaluated on a validation split (so its test
split is measured once, at the end). In it: every run is listed once (plus one run per evaluated
split), HParams holds every run's hyperparameters and final metrics with the varied ones marked,
a resumed run shows what it finally ran, Scalars has no charts of one point, text tags are plain,
confusion matrices are labelled, and NaN in histograms is one line.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from support import FASHION, SPECS, TensorBoardServer, accumulator, netspec, netspec_ok, result_of
from tensorboard.util import tensor_util

from netspec.data.sources import FASHION_CLASSES
from netspec.training.summaries import HPARAMS_FILE, confusion_image

XOR_STEPS = 200
FASHION_SLICE = [
    "--set",
    "data.limit=1000",
    "--set",
    "data.validation_split=0.1",
    "--set",
    "eval={split: validation, every: 20}",
    "--set",
    "train={steps: 40, batch_size: 50}",
    "--set",
    "summaries.every=20",
    "--set",
    "summaries.graph=false",
]
RUNS = {  # TensorBoard's run name -> the run's result.json steps
    "xor_nn/a": XOR_STEPS,
    "xor_nn/b": XOR_STEPS,
    "xor_nn/resumed": XOR_STEPS,
    "fashion_mlp/f": 40,
}
EVAL_RUNS = ["fashion_mlp/f/validation", "fashion_mlp/f/test"]


# -- the logdir and the servers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """The runs (about 10 s of training); returns (logdir, the fashion run's printed report)."""
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file() and not (FASHION / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION} (apt-get install dataset-fashion-mnist)")
    logdir = tmp_path_factory.mktemp("runs")
    xor = [SPECS / "xor_nn.yaml", "--logdir", logdir, "--quiet"]
    netspec_ok("run", *xor, "--set", f"train.steps={XOR_STEPS}", "--run-name", "a")
    netspec_ok(
        "run", *xor, "--set", f"train.steps={XOR_STEPS}", "--set", "optimizer.learning_rate=0.5", "--run-name", "b"
    )
    netspec_ok("run", *xor, "--set", "train.steps=100", "--run-name", "resumed")  # runs to its end, then trains longer
    netspec_ok("resume", logdir / "xor_nn" / "resumed", "--set", f"train.steps={XOR_STEPS}", "--quiet")
    report = netspec_ok(
        "run", SPECS / "fashion_mlp.yaml", "--logdir", logdir, "--run-name", "f", "--data-dir", FASHION, *FASHION_SLICE
    )
    return logdir, report


def wait_for(server: TensorBoardServer, runs: dict[str, int], timeout: float = 60) -> None:
    """Until every run's `loss` is loaded up to its last step (`runs`: run -> step)."""
    server.wait_until(
        lambda s: {run: s.get("/data/plugin/scalars/scalars", run=run, tag="loss")[-1][1] for run in runs},
        runs,
        timeout,
    )


@pytest.fixture(scope="module")
def servers(logdir, tmp_path_factory):
    """TensorBoard over the whole logdir, and over the XOR runs alone (a learning-rate sweep)."""
    root, _ = logdir
    logs = tmp_path_factory.mktemp("tensorboard")
    whole = TensorBoardServer(root, logs / "whole.log")
    sweep = TensorBoardServer(root / "xor_nn", logs / "sweep.log")
    try:
        wait_for(whole, RUNS)
        wait_for(
            sweep, {run.removeprefix("xor_nn/"): steps for run, steps in RUNS.items() if run.startswith("xor_nn/")}
        )
        yield whole, sweep
    finally:
        whole.close()
        sweep.close()


def metric_values(group: dict) -> dict[str, tuple[int, float]]:
    """A session group's metrics as "group/tag" (or "tag" for the training run) -> (step, value)."""
    out = {}
    for m in group["metricValues"]:
        name = m["name"]
        key = f"{name['group']}/{name['tag']}" if name.get("group") else name["tag"]
        out[key] = (int(m["trainingStep"]), m["value"])
    return out


def displayed_by_default(experiment: dict) -> list[str]:
    """The hyperparameters the HParams dashboard shows before anyone picks: it sorts those that
    differ first (a stable sort) and shows the first five (its _computeHParams, TensorBoard 2.21)."""
    infos = sorted(experiment["hparamInfos"], key=lambda h: not h.get("differs", False))
    return [h["name"] for h in infos[:5]]


# -- the run list -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_run_is_listed_once(servers):
    whole, _ = servers
    listed = whole.get("/data/runs")
    assert len(listed) == len(set(listed))
    # a run is one entry, plus one per split it evaluated: no container run, no train/ or eval/
    assert sorted(listed) == sorted([*RUNS, *EVAL_RUNS])


# -- HParams ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_hparams_is_one_experiment_of_every_run(servers):
    whole, _ = servers
    experiment = whole.experiment()
    infos = {h["name"]: h for h in experiment["hparamInfos"]}
    # the union of both specs' hyperparameters: XOR's layers and the MLP's
    assert {"hypothesis.units", "layer2.units", "optimizer.b1", "optimizer.learning_rate", "steps", "seed"} <= set(
        infos
    )
    for name in ("optimizer.learning_rate", "optimizer.type", "batch_size", "layer1.units"):
        assert infos[name].get("differs") is True, infos[name]
    assert infos["hypothesis.activation"].get("differs", False) is False  # only XOR has it, always sigmoid
    shown = displayed_by_default(experiment)
    assert all(infos[name].get("differs") for name in shown), shown
    metrics = {(m["name"].get("group", ""), m["name"]["tag"]) for m in experiment["metricInfos"]}
    assert {
        ("", "loss"),
        ("", "accuracy"),
        ("validation", "accuracy"),
        ("test", "accuracy"),
        ("test", "loss"),
    } <= metrics
    assert not [tag for _, tag in metrics if tag.startswith("hparam")]


@pytest.mark.slow
def test_a_learning_rate_sweep_shows_the_learning_rate_as_what_differs(servers):
    _, sweep = servers  # the XOR runs alone: the same spec, two learning rates (and a resume to the same steps)
    experiment = sweep.experiment()
    differing = sorted(h["name"] for h in experiment["hparamInfos"] if h.get("differs"))
    assert differing == ["optimizer.learning_rate"]
    assert displayed_by_default(experiment)[0] == "optimizer.learning_rate"
    groups = sweep.session_groups(experiment)
    assert {name: g["hparams"]["optimizer.learning_rate"] for name, g in groups.items()} == {
        "a": 0.1,
        "b": 0.5,
        "resumed": 0.1,
    }


@pytest.mark.slow
def test_the_hparams_table_holds_every_runs_hyperparameters_and_final_metrics(servers, logdir):
    whole, _ = servers
    root, _ = logdir
    experiment = whole.experiment()
    groups = whole.session_groups(experiment)
    assert sorted(groups) == sorted(RUNS)  # every run is a row, the fashion run too
    for run, steps in RUNS.items():
        group, result = groups[run], result_of(root / run)
        (session,) = group["sessions"]
        assert session["status"] == "STATUS_SUCCESS", run
        spec = yaml.safe_load((root / run / "spec.yaml").read_text())
        assert group["hparams"]["steps"] == steps == result["steps"], run
        assert (
            group["hparams"]["seed"] == spec["seed"] and group["hparams"]["batch_size"] == spec["train"]["batch_size"]
        ), run
        assert group["hparams"]["optimizer.learning_rate"] == pytest.approx(spec["optimizer"]["learning_rate"]), run
        values = metric_values(group)
        expected = {
            key.replace("validation_", "validation/").replace("test_", "test/"): value
            for key, value in result["final"].items()
        }
        assert set(expected) <= set(values), (run, sorted(values))
        for key, value in expected.items():
            assert values[key][0] == steps, (run, key)
            assert values[key][1] == pytest.approx(value, rel=1e-6), (run, key)
    assert groups["xor_nn/b"]["hparams"]["optimizer.learning_rate"] == 0.5
    assert groups["fashion_mlp/f"]["hparams"]["optimizer.type"] == "adam"
    assert "hypothesis.units" not in groups["fashion_mlp/f"]["hparams"]  # each row holds its own spec's


@pytest.mark.slow
def test_a_resumed_run_shows_what_it_finally_ran(servers, logdir):
    whole, _ = servers
    root, _ = logdir
    groups = whole.session_groups(whole.experiment())
    resumed, uninterrupted = groups["xor_nn/resumed"], groups["xor_nn/a"]
    assert resumed["hparams"]["steps"] == XOR_STEPS  # not the 100 it first ran
    assert resumed["hparams"] == uninterrupted["hparams"]
    values, same = metric_values(resumed), metric_values(uninterrupted)
    for tag in ("loss", "accuracy"):  # a resumed run ends bit for bit as one never stopped
        assert values[tag] == same[tag], tag
    # one session in the run directory, replaced whole: TensorBoard reads a tag's first metadata
    run_dir = root / "xor_nn" / "resumed"
    assert sorted(p.name for p in run_dir.iterdir() if "hparams" in p.name) == [HPARAMS_FILE]
    content = accumulator(run_dir).PluginTagToContent("hparams")
    assert sorted(content) == ["_hparams_/session_end_info", "_hparams_/session_start_info"]


@pytest.mark.slow
def test_scalars_have_no_charts_of_one_point(servers):
    whole, _ = servers
    tags = whole.get("/data/plugin/scalars/tags")
    assert sorted(tags) == sorted([*RUNS, *EVAL_RUNS])
    every_tag = {tag for run_tags in tags.values() for tag in run_tags}
    assert not [tag for tag in every_tag if tag.startswith("hparam")]
    for tag in every_tag:  # a chart of one point in every run is what hparam/<metric> was
        points = max(
            len(whole.get("/data/plugin/scalars/scalars", run=run, tag=tag)) for run in tags if tag in tags[run]
        )
        assert points > 1, tag
    # the evaluations overlay the training curves: the same tags
    assert set(tags["fashion_mlp/f/validation"]) == set(tags["fashion_mlp/f/test"]) <= set(tags["fashion_mlp/f"])


# -- the validation split chooses, the test split reports ---------------------------------------------


@pytest.mark.slow
def test_a_run_evaluated_on_validation_also_reports_the_test_split_once(servers, logdir):
    whole, _ = servers
    root, report = logdir
    final = result_of(root / "fashion_mlp" / "f")["final"]
    for metric in ("loss", "accuracy", "top_3_accuracy"):
        for split in ("validation", "test"):
            printed = re.search(rf"\b{split}_{metric} (\S+)", report)
            assert printed, (split, metric, report)
            assert float(printed.group(1)) == pytest.approx(final[f"{split}_{metric}"], rel=1e-5)
    steps = {
        run: [p[1] for p in whole.get("/data/plugin/scalars/scalars", run=run, tag="accuracy")] for run in EVAL_RUNS
    }
    assert steps == {"fashion_mlp/f/validation": [20, 40], "fashion_mlp/f/test": [40]}  # test: once, at the end
    group = whole.session_groups(whole.experiment())["fashion_mlp/f"]
    assert metric_values(group)["test/accuracy"] == (40, pytest.approx(final["test_accuracy"], rel=1e-6))


# -- text and images --------------------------------------------------------------------------------


@pytest.mark.slow
def test_text_tags_are_the_names_written(servers):
    whole, _ = servers
    tags = whole.get("/data/plugin/text/tags")
    resumed = [run for run in RUNS if "resumed" in run]
    assert resumed
    assert {run: sorted(t) for run, t in tags.items()} == {
        **{run: ["model_summary", "spec"] for run in RUNS},
        **{run: ["model_summary", "spec", "spec_changes"] for run in resumed},
        **{run: ["confusion_counts"] for run in EVAL_RUNS},
    }
    (change,) = whole.get("/data/plugin/text/text", run=resumed[0], tag="spec_changes")
    assert "<code>$.train.steps</code>" in change["text"] and change["step"] == 101, change
    (spec,) = whole.get("/data/plugin/text/text", run="xor_nn/b", tag="spec")
    assert "name: xor_nn" in spec["text"] and "learning_rate: 0.5" in spec["text"]


def _counts_table(run_dir: Path) -> tuple[list[str], np.ndarray]:
    """(class names, counts) from the final confusion_counts table, read with EventAccumulator."""
    (event,) = accumulator(run_dir).Tensors("confusion_counts")
    rows = [
        line.strip("|").split("|") for line in tensor_util.make_ndarray(event.tensor_proto).item().decode().splitlines()
    ]
    names = [cell.strip() for cell in rows[0][1:]]
    counts = np.array([[int(cell) for cell in row[1:]] for row in rows[2:]])
    return names, counts


@pytest.mark.slow
def test_confusion_matrix_images_carry_the_class_names(servers, logdir):
    whole, _ = servers
    root, _ = logdir
    names, counts = _counts_table(root / "fashion_mlp" / "f" / "test")
    assert names == list(FASHION_CLASSES) and counts.sum() > 0
    (image,) = whole.get("/data/plugin/images/images", run="fashion_mlp/f/test", tag="confusion_matrix")
    png = whole.get("/data/plugin/images/individualImage", **dict(urllib.parse.parse_qsl(image["query"])))
    shown = np.asarray(Image.open(BytesIO(png)).convert("RGB"))
    np.testing.assert_array_equal(shown, confusion_image(counts, FASHION_CLASSES))  # what TensorBoard shows
    assert not np.array_equal(confusion_image(counts, FASHION_CLASSES), confusion_image(counts, FASHION_CLASSES[::-1]))


def test_a_confusion_image_is_labelled_rows_true_columns_predicted():
    n = 4
    counts = np.zeros((n, n), int)
    counts[np.arange(n), (np.arange(n) + 1) % n] = 7  # true class i is always predicted as i + 1
    image = confusion_image(counts, ["cat", "dog", "bird", "fish"])
    blue = np.all(image == [8, 48, 107], axis=-1)  # a cell holding its whole row
    ys, xs = np.nonzero(blue)
    cell = round((xs.max() - xs.min() + 3) / n)  # cells are outlined: one pixel inside each edge
    left, top = xs.min() - 1, ys.min() - 1
    assert cell >= 24 and xs.max() - xs.min() + 3 == n * cell and ys.max() - ys.min() + 3 == n * cell

    def cell_colour(i, j):
        return image[top + i * cell + 3, left + j * cell + 3]

    assert (cell_colour(0, 1) == [8, 48, 107]).all() and (
        cell_colour(1, 0) == 255
    ).all()  # row: true; column: predicted
    ink = image.min(axis=-1) < 128
    for i in range(n):  # each row's name ends just left of the matrix
        assert ink[top + i * cell : top + (i + 1) * cell, left - 16 : left - 4].any(), f"row {i} has no name"
    for j in range(n):  # each column's name starts just above it
        assert ink[top - 16 : top - 4, left + j * cell : left + (j + 1) * cell].any(), f"column {j} has no name"
    assert ink[: 8 + 12, left:].any()  # "predicted class" above everything
    assert ink[top:, : 8 + 12].any()  # "true class" left of everything
    assert not ink[: top - 20, : left - 20].any()  # and the corner is empty: the ink above is labels, not noise


# -- NaN in histograms ------------------------------------------------------------------------------


def test_nonfinite_histograms_are_one_line_not_library_warnings(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    result = netspec(
        "run",
        SPECS / "xor_nn.yaml",
        "--logdir",
        tmp_path,
        "--quiet",
        "--run-name",
        "diverged",
        "--set",
        "optimizer.learning_rate=10",
        "--set",
        "model.defaults.activation=linear",
        "--set",
        "loss=mean_squared_error",
        "--set",
        "metrics=[]",
        "--set",
        "train.on_nonfinite=ignore",
        "--set",
        "train.steps=300",
        "--set",
        "summaries.histograms=[weights, biases, gradients]",
    )
    assert result.exit_code == 0, result.output
    output = result.output + "".join(r.getMessage() + "\n" for r in caplog.records)
    assert "found in input tensor" not in output  # tensorboardX's bare warning, once per NaN
    lines = [line for line in output.splitlines() if "NaN or Inf" in line]
    assert len(lines) == 1, output
    (line,) = lines
    for tag in ("layer1/kernel", "layer1/bias", "hypothesis/kernel", "hypothesis/kernel/gradients"):
        assert tag in line, line
    assert "steps 100, 200, 300" in line, line
    run_dir = tmp_path / "xor_nn" / "diverged"
    ea = accumulator(run_dir)
    assert np.isnan(ea.Scalars("loss")[-1].value)  # the scalars keep the NaN: it is where the loss went
    assert [e.step for e in ea.Histograms("layer1/kernel")] == [0]  # nothing finite left after step 0
