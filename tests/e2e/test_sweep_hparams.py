"""A sweep in TensorBoard, read through a real TensorBoard server's HTTP API: the requests its
HParams dashboard sends (POST /data/plugin/hparams/experiment and .../session_groups, JSON bodies)
and its Scalars dashboard's (/data/plugin/scalars/tags and .../scalars).

Two logdirs, each its own server. A 2x2 grid (learning rate x the first layer's units), trained
for 20 steps with a validation split, as the sweep command prints to look at it (`tensorboard
--logdir SWEEP_DIR`): every member is a session group named by its values, holding its swept
values and its final metrics (the training loss, the validation split's), numeric where the
parallel coordinates need numbers; the swept keys are the hyperparameters the dashboard shows
before anyone picks; each member has train and eval curves. And the HParams sessions alone of a
5-key grid's 32 members (written by netspec's own `Summaries`, nothing trained): all five keys are
shown by default, the most the dashboard shows.

What the dashboard shows by default is read from the installed frontend (`dashboard_defaults`):
TensorBoard 2.21's tf-hparams-query-pane shows the first five hyperparameters after a stable sort
that puts those whose value differs between sessions first, in the order the backend answers
(which with `hparamsLimit`, always sent, is by name: `_sort_and_reduce_to_hparams_limit`), and the
first five metrics in the backend's order, sorted by (tag, group).
"""

from __future__ import annotations

import functools
import math
import re
import zipfile
from pathlib import Path

import pytest
import tensorboard
from support import TensorBoardServer, netspec, result_of, write

from netspec.spec.sweep import load_sweep
from netspec.training.summaries import Summaries, hparams_of

BASE = """\
name: blobs
seed: 0
data:
  inline:
    x: [[0, 0], [0, 1], [1, 0], [1, 1], [0.1, 0.1], [0.1, 0.9], [0.9, 0.1], [0.9, 0.9],
        [0.2, 0], [0, 0.8], [0.8, 0], [1, 0.8], [0, 0.2], [0.2, 1], [1, 0.2], [0.8, 1]]
    y: [[0], [1], [1], [0], [0], [1], [1], [0], [0], [1], [1], [0], [0], [1], [1], [0]]
  validation_split: 0.25
model:
  input: [2]
  defaults: {activation: tanh}
  layers:
    - {name: hidden, type: dense, units: 4}
    - {name: drop, type: dropout, rate: 0.1}
    - {name: out, type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
metrics: [accuracy]
optimizer: {type: sgd, learning_rate: 0.1}
train: {steps: 20, batch_size: 4}
eval: {split: validation, every: 10}
summaries: {every: 10, graph: false}
"""
STEPS = 20
GRID = "sweep:\n  optimizer.learning_rate: [0.1, 0.3]\n  model.layers[0].units: [3, 4]\n"
KEYS = ["optimizer.learning_rate", "model.layers[0].units"]
MEMBERS = {  # name -> the swept values, in KEYS' order
    "learning_rate=0.1,units=3": (0.1, 3),
    "learning_rate=0.1,units=4": (0.1, 4),
    "learning_rate=0.3,units=3": (0.3, 3),
    "learning_rate=0.3,units=4": (0.3, 4),
}
# Five keys, three of which the spec's own flattening also names (hidden.units, drop.rate,
# batch_size) and one pushed into every layer that takes it (hidden.activation).
WIDE = (
    "sweep:\n  optimizer.learning_rate: [0.1, 0.3]\n  model.layers[0].units: [3, 4]\n"
    "  model.layers[1].rate: [0.1, 0.2]\n  train.batch_size: [4, 6]\n  model.defaults.activation: [tanh, relu]\n"
)
WIDE_KEYS = [
    "optimizer.learning_rate",
    "model.layers[0].units",
    "model.layers[1].rate",
    "train.batch_size",
    "model.defaults.activation",
]
FINAL = {
    "loss": "loss",
    "accuracy": "accuracy",
    "validation/loss": "validation_loss",
    "validation/accuracy": "validation_accuracy",
}  # metric -> result.json's key


# -- what the dashboard shows by default, from the installed frontend --------------------------------


@functools.cache
def dashboard_defaults() -> tuple[int, int]:
    """(hyperparameters, metrics) the HParams dashboard shows before anyone picks, read from the
    installed TensorBoard's frontend (webfiles.zip, tf-hparams-query-pane's _computeHParams and
    _computeMetrics): the first N hyperparameters once those that differ are sorted first, the
    first M metrics."""
    bundle = Path(tensorboard.__file__).parent / "webfiles.zip"
    with zipfile.ZipFile(bundle) as files:
        js = files.read("index.js").decode()
    hparams = re.search(
        r"\.sort\(\((\w+),(\w+)\)=>\1\.info\.differs===\2\.info\.differs\?0:\1\.info\.differs\?-1:1\);"
        r"let (\w+)=Math\.min\((\d+),\w+\.length\);for\(let (\w+)=0;\5<\3;\5\+\+\)\w+\[\5\]\.displayed=!0",
        js,
    )
    metrics = re.search(
        r"metricInfos\.forEach\(\((\w+),(\w+)\)=>\{let \w+=\{info:\1,filter:\{.{0,200}?\},displayed:\2<(\d+)\}", js
    )
    assert hparams and metrics, (
        f"TensorBoard {tensorboard.__version__}'s HParams dashboard no longer chooses its default columns as 2.21 "
        "did (differing hyperparameters first, then the first N; the first M metrics): read _computeHParams and "
        f"_computeMetrics in {bundle}'s index.js and say here what it shows by default"
    )
    return int(hparams.group(4)), int(metrics.group(3))


def displayed_by_default(experiment: dict) -> tuple[list[str], list[str]]:
    """(hyperparameter names, metric names) the dashboard shows for `experiment` as the server
    answered it: those that differ first (a stable sort), then the first N; the first M metrics."""
    n_hparams, n_metrics = dashboard_defaults()
    infos = sorted(experiment["hparamInfos"], key=lambda h: not h.get("differs", False))
    hparams = [h["name"] for h in infos[:n_hparams]]
    return hparams, [metric_name(m["name"]) for m in experiment["metricInfos"][:n_metrics]]


def metric_name(name: dict) -> str:
    """A metric's name as "group/tag" ("tag" for the training run's own)."""
    return f"{name['group']}/{name['tag']}" if name.get("group") else name["tag"]


def metric_values(group: dict) -> dict[str, tuple[int, float | str]]:
    """A session group's metrics by name: (step, value); a NaN is the string "NaN" in the JSON."""
    return {metric_name(m["name"]): (int(m["trainingStep"]), m["value"]) for m in group["metricValues"]}


# -- the logdirs and their servers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """The 2x2 grid, trained (a few seconds)."""
    root = tmp_path_factory.mktemp("sweep")
    spec = write(root / "grid.yaml", BASE.replace("seed: 0\n", "seed: 0\n" + GRID))
    result = netspec("run", spec, "--logdir", root / "runs", "--run-name", "s", "--quiet")
    assert result.exit_code == 0, result.output
    return root / "runs" / "blobs" / "s"


@pytest.fixture(scope="module")
def wide_dir(tmp_path_factory) -> Path:
    """The 5-key grid's 32 members, each run directory holding only its finished HParams session,
    written as a run writes it (`Summaries.session`)."""
    root = tmp_path_factory.mktemp("wide")
    sweep = load_sweep(write(root / "wide.yaml", BASE.replace("seed: 0\n", "seed: 0\n" + WIDE)))
    assert len(sweep.members) == 32
    for member in sweep.members:
        (root / member.name).mkdir()
        summaries = Summaries(root / member.name, member.spec, training=False)
        summaries.session(status="success")
        summaries.close()
    return root


@pytest.fixture(scope="module")
def servers(sweep_dir, wide_dir, tmp_path_factory):
    """TensorBoard over the trained sweep (`tensorboard --logdir SWEEP_DIR`, as the command says)
    and over the 5-key sweep's sessions, both loaded."""
    logs = tmp_path_factory.mktemp("tensorboard")
    trained, wide = TensorBoardServer(sweep_dir, logs / "trained.log"), TensorBoardServer(wide_dir, logs / "wide.log")
    try:
        # every member's last loss loaded, in its training run (which holds its session) and its evaluation run
        runs = [*MEMBERS, *(f"{m}/validation" for m in MEMBERS)]
        trained.wait_until(
            lambda tb: {run: tb.get("/data/plugin/scalars/scalars", run=run, tag="loss")[-1][1] for run in runs},
            dict.fromkeys(runs, STEPS),
        )
        wide.wait_until(lambda tb: len(tb.session_groups(tb.experiment())), 32)
        yield trained, wide
    finally:
        trained.close()
        wide.close()


# -- the HParams table ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_member_is_a_session_group_with_its_swept_values_and_final_metrics(servers, sweep_dir):
    trained, _ = servers
    groups = trained.session_groups(trained.experiment())
    assert sorted(groups) == sorted(MEMBERS)  # named by their values, nothing else
    for name, values in MEMBERS.items():
        group, result = groups[name], result_of(sweep_dir / name)
        (session,) = group["sessions"]
        assert session["status"] == "STATUS_SUCCESS", name
        assert [group["hparams"][key] for key in KEYS] == pytest.approx(values), name
        shown = metric_values(group)
        for metric, key in FINAL.items():
            step, value = shown[metric]
            assert step == STEPS == result["steps"], (name, metric)
            assert value == pytest.approx(result["final"][key], rel=1e-6), (name, metric)
    lrs = {name: groups[name]["hparams"]["optimizer.learning_rate"] for name in MEMBERS}
    assert len(set(lrs.values())) == 2  # each member's own values, not one member's for all


@pytest.mark.slow
def test_the_swept_keys_are_the_hyperparameters_shown_by_default(servers):
    trained, _ = servers
    experiment = trained.experiment()
    infos = {h["name"]: h for h in experiment["hparamInfos"]}
    assert set(KEYS) <= set(infos)
    # what differs between the members is the swept keys, once each: not also `hidden.units`,
    # the spec's own name for the first layer's units, which would take one of the five columns
    assert sorted(name for name, h in infos.items() if h.get("differs")) == sorted(KEYS)
    hparams, metrics = displayed_by_default(experiment)
    assert sorted(hparams[: len(KEYS)]) == sorted(KEYS), hparams
    # the final training loss and the validation split's figures are columns before anyone picks
    assert {"loss", "validation/loss", "validation/accuracy"} <= set(metrics), metrics


@pytest.mark.slow
def test_five_swept_keys_are_all_shown_by_default(servers):
    _, wide = servers
    experiment = wide.experiment()
    differing = sorted(h["name"] for h in experiment["hparamInfos"] if h.get("differs"))
    assert differing == sorted(WIDE_KEYS)
    hparams, _ = displayed_by_default(experiment)
    assert sorted(hparams) == sorted(WIDE_KEYS) and len(WIDE_KEYS) == dashboard_defaults()[0]
    groups = wide.session_groups(experiment)
    assert {g["hparams"]["model.defaults.activation"] for g in groups.values()} == {"tanh", "relu"}  # names, not JSON
    assert {(g["hparams"]["train.batch_size"], g["hparams"]["model.layers[1].rate"]) for g in groups.values()} == {
        (4, 0.1),
        (4, 0.2),
        (6, 0.1),
        (6, 0.2),
    }


@pytest.mark.slow
def test_parallel_coordinates_can_draw_every_member(servers):
    """The plot draws one line per session group through an axis per column shown: a group needs
    a value on every axis, a number on a numeric one (a NaN metric is no value to it)."""
    trained, _ = servers
    experiment = trained.experiment()
    infos = {h["name"]: h for h in experiment["hparamInfos"]}
    groups = trained.session_groups(experiment)
    for key, values in zip(KEYS, zip(*MEMBERS.values(), strict=True), strict=True):
        assert infos[key]["type"] == "DATA_TYPE_FLOAT64", infos[key]  # a numeric axis, an interval domain
        domain = infos[key]["domainInterval"]
        assert (domain["minValue"], domain["maxValue"]) == pytest.approx((min(values), max(values)))
    hparams, metrics = displayed_by_default(experiment)
    for name, group in groups.items():
        for key in hparams:
            value = group["hparams"][key]
            numeric = infos[key]["type"] == "DATA_TYPE_FLOAT64"
            assert isinstance(value, (int, float)) if numeric else isinstance(value, (str, bool)), (name, key, value)
        shown = metric_values(group)
        for metric in metrics:
            value = shown[metric][1]
            assert isinstance(value, (int, float)) and math.isfinite(value), (name, metric, value)


# -- the curves -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_member_has_train_and_eval_scalars(servers, sweep_dir):
    trained, _ = servers
    tags = trained.get("/data/plugin/scalars/tags")
    assert sorted(tags) == sorted([*MEMBERS, *(f"{m}/validation" for m in MEMBERS)])
    for name in MEMBERS:
        final = result_of(sweep_dir / name)["final"]
        for run, prefix in ((name, ""), (f"{name}/validation", "validation_")):
            assert {"loss", "accuracy"} <= set(tags[run]), run
            for tag in ("loss", "accuracy"):
                points = trained.get("/data/plugin/scalars/scalars", run=run, tag=tag)
                steps = [step for _, step, _ in points]
                assert steps == sorted(steps) and len(steps) > 1 and steps[-1] == STEPS, (run, tag, steps)
                assert points[-1][2] == pytest.approx(final[prefix + tag], rel=1e-6), (run, tag)
        evaluated = [
            step for _, step, _ in trained.get("/data/plugin/scalars/scalars", run=f"{name}/validation", tag="loss")
        ]
        assert evaluated == [10, 20]  # eval.every


# -- without a server ---------------------------------------------------------------------------------------


def test_the_dashboard_shows_five_hyperparameters_and_five_metrics_by_default():
    assert dashboard_defaults() == (5, 5)


def test_only_the_swept_keys_differ_between_the_members_hparams(tmp_path):
    sweep = load_sweep(write(tmp_path / "wide.yaml", BASE.replace("seed: 0\n", "seed: 0\n" + WIDE)))
    rows = [hparams_of(member.spec) for member in sweep.members]
    names = {name for row in rows for name in row}
    differing = sorted(name for name in names if len({repr(row.get(name)) for row in rows}) > 1)
    assert differing == sorted(WIDE_KEYS)
    for row, member in zip(rows, sweep.members, strict=True):
        assert {key: row[key] for key in WIDE_KEYS} == dict(member.values)
    # the values no key set keep the spec's own names
    assert {"out.activation", "out.units", "optimizer.type", "seed", "steps", "loss"} <= set(rows[0])
