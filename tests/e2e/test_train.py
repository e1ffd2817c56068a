"""End to end: the shipped specs through the real CLI reach the lecture's results, and their run
directories read back as TensorBoard reads them (its EventAccumulator, and the real server)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
import yaml
from support import SPECS, accumulator, free_port, result_of, run_spec
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from netspec.compile.program import compile_spec
from netspec.spec.check import check
from netspec.spec.load import load

# -- the lecture's results -------------------------------------------------------------------------

LECTURE = {  # spec -> final accuracy the lecture reaches (README's "Shipped specs" table)
    "xor_logistic": 0.5,  # one logistic unit cannot separate XOR: it must fail
    "xor_nn": 1.0,
    "xor_wide": 1.0,
    "xor_tensorboard": 1.0,
}


def test_every_shipped_xor_spec_has_an_expected_result():
    assert sorted(LECTURE) == sorted(p.stem for p in SPECS.glob("xor_*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("spec", sorted(LECTURE))
def test_shipped_spec_reaches_the_lecture_result(spec, tmp_path):
    run_dir = run_spec(spec, tmp_path, catch_exceptions=False)
    result = result_of(run_dir)
    assert result["name"] == spec
    assert result["steps"] == 10001
    final = result["final"]
    assert final["accuracy"] == LECTURE[spec], f"{spec}: {final}"
    if LECTURE[spec] < 1:
        assert final["loss"] == pytest.approx(math.log(2), abs=1e-4)  # h = 0.5 everywhere: it learned nothing
    else:
        assert final["loss"] < 0.1
    assert (run_dir / "spec.yaml").is_file()
    assert check(load(run_dir / "spec.yaml")).steps == 10001  # the resolved spec is a valid spec


# -- what TensorBoard reads back ---------------------------------------------------------------------

STEPS = 250  # not a multiple of summaries.every (100): the last chunk is shorter


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Short runs of xor_tensorboard (every summary) and xor_wide (weights and biases only)."""
    logdir = tmp_path_factory.mktemp("runs")
    return {
        "logdir": logdir,
        "xor_tensorboard": run_spec("xor_tensorboard", logdir, "--set", f"train.steps={STEPS}", catch_exceptions=False),
        "xor_wide": run_spec("xor_wide", logdir, "--set", f"train.steps={STEPS}", catch_exceptions=False),
    }


def _steps(events) -> list[int]:
    return [e.step for e in events]


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["xor_tensorboard", "xor_wide"])
def test_scalars_at_every_summary_step(runs, spec):
    ea = accumulator(runs[spec])
    want = [0, 100, 200, STEPS]
    assert set(ea.Tags()["scalars"]) == {"loss", "accuracy", "learning_rate", "steps_per_second"}
    for tag in ("loss", "accuracy", "learning_rate"):
        assert _steps(ea.Scalars(tag)) == want, tag
    assert _steps(ea.Scalars("steps_per_second")) == want[1:]  # no rate before the first chunk
    assert all(e.value > 0 for e in ea.Scalars("steps_per_second"))
    lr = 0.01 if spec == "xor_tensorboard" else 0.1
    assert [e.value for e in ea.Scalars("learning_rate")] == pytest.approx([lr] * 4)
    final = result_of(runs[spec])["final"]
    assert ea.Scalars("loss")[-1].value == pytest.approx(final["loss"])
    assert ea.Scalars("accuracy")[-1].value == pytest.approx(final["accuracy"])
    assert all(0 <= e.value <= 1 for e in ea.Scalars("accuracy"))


@pytest.mark.slow  # the `runs` fixture trains two models
def test_histograms_are_scoped_by_layer_and_hold_the_parameters(runs):
    ea = accumulator(runs["xor_tensorboard"])
    params = ["layer1/kernel", "layer1/bias", "hypothesis/kernel", "hypothesis/bias"]
    extras = ["layer1/activations", "hypothesis/activations", *[f"{p}/gradients" for p in params]]
    assert set(ea.Tags()["histograms"]) == {*params, *extras}
    for tag in params + extras:
        assert _steps(ea.Histograms(tag)) == [0, 100, 200, STEPS], tag
    # step 0 is the untrained model: the histograms hold exactly the initial parameters
    initial = compile_spec(check(load(runs["xor_tensorboard"] / "spec.yaml"))).init().params
    for tag in params:
        layer, name = tag.split("/")
        value = np.asarray(initial[layer][name])
        h = ea.Histograms(tag)[0].histogram_value
        assert h.num == value.size
        assert h.min == pytest.approx(value.min()) and h.max == pytest.approx(value.max())
        assert h.sum == pytest.approx(value.sum(), abs=1e-5)
    # activations over the 4 examples: layer1 has 2 units, the sigmoid output lies in (0, 1)
    act = ea.Histograms("layer1/activations")[-1].histogram_value
    assert act.num == 4 * 2 and 0 <= act.min <= act.max <= 1


@pytest.mark.slow  # the `runs` fixture trains two models
def test_only_the_histograms_asked_for(runs):
    ea = accumulator(runs["xor_wide"])
    layers = ["layer1", "layer2", "layer3", "hypothesis"]
    assert set(ea.Tags()["histograms"]) == {f"{layer}/{p}" for layer in layers for p in ("kernel", "bias")}


@pytest.mark.slow  # the `runs` fixture trains two models
def test_graph_is_scoped_by_the_spec_layer_names(runs):
    for spec, layers in [
        ("xor_tensorboard", ["layer1", "hypothesis"]),
        ("xor_wide", ["layer1", "layer2", "layer3", "hypothesis"]),
    ]:
        ea = accumulator(runs[spec])
        assert ea.Tags()["graph"]
        nodes = {n.name: n for n in ea.Graph().node}
        boxes = {n.rsplit("/", 1)[0] for n in nodes if "/" in n}
        for layer in layers:
            assert layer in boxes, f"no {layer}/... nodes"
            assert f"gradients/{layer}" in boxes, f"no gradients/{layer}/... nodes"
            assert nodes[f"{layer}/kernel"].op == "VariableV2"
            assert nodes[f"{layer}/bias"].op == "VariableV2"
            # the forward matmul reads the layer's kernel, and its gradient box exists
            assert any(n.startswith(f"{layer}/dot_general") and f"{layer}/kernel" in nodes[n].input for n in nodes), (
                layer
            )
        assert any(b.startswith("cost") for b in boxes) and any(b.startswith("train") for b in boxes)
        assert any(b.startswith("gradients/cost") for b in boxes)
        assert nodes["input/x"].op == "Placeholder" and nodes["input/y"].op == "Placeholder"
        top_level = sorted(n for n in nodes if "/" not in n)
        assert not top_level, f"nodes outside every box: {top_level}"
        for node in nodes.values():  # every edge names an existing node
            for ref in node.input:
                assert ref.lstrip("^").split(":")[0] in nodes, (node.name, ref)


@pytest.mark.slow  # the `runs` fixture trains two models
def test_spec_text_is_the_resolved_spec(runs):
    run_dir = runs["xor_tensorboard"]
    ea = accumulator(run_dir)
    assert "spec" in ea.Tags()["tensors"]  # exactly `spec`, not tensorboardX's `spec/text_summary`
    assert ea.SummaryMetadata("spec").plugin_data.plugin_name == "text"
    (event,) = ea.Tensors("spec")
    assert event.step == 0
    text = tensor_util.make_ndarray(event.tensor_proto).item().decode()
    assert (run_dir / "spec.yaml").read_text().strip() in text
    assert "name: xor_tensorboard" in text


@pytest.mark.slow  # the `runs` fixture trains two models
def test_hparams_hold_the_hyperparameters_and_final_metrics(runs):
    run_dir = runs["xor_tensorboard"]
    ea = accumulator(run_dir)  # the training run is the session: no extra run holds the hparams
    content = ea.PluginTagToContent("hparams")
    # no experiment summary (TensorBoard would use one run's for every run in the logdir)
    assert set(content) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}
    start = hparams_metadata.parse_session_start_info_plugin_data(content["_hparams_/session_start_info"])
    assert {"optimizer.type", "optimizer.learning_rate", "seed", "batch_size", "steps"} <= set(start.hparams)
    assert start.hparams["optimizer.learning_rate"].number_value == pytest.approx(0.01)
    assert start.hparams["optimizer.type"].string_value == "adam"
    assert start.hparams["seed"].number_value == yaml.safe_load((SPECS / "xor_tensorboard.yaml").read_text())["seed"]
    assert start.hparams["steps"].number_value == STEPS
    end = hparams_metadata.parse_session_end_info_plugin_data(content["_hparams_/session_end_info"])
    assert end.status == 1  # STATUS_SUCCESS
    # the metrics HParams shows are the curves' last points: no hparam/* charts of one point
    assert not [tag for tag in ea.Tags()["scalars"] if tag.startswith("hparam")]
    final = result_of(run_dir)["final"]
    for metric in ("loss", "accuracy"):
        last = ea.Scalars(metric)[-1]
        assert last.step == STEPS and last.value == pytest.approx(final[metric])


# -- run directories --------------------------------------------------------------------------------

QUICK = ["--set", "train.steps=10", "--set", "summaries.graph=false"]


@pytest.mark.slow
def test_two_runs_get_two_directories(tmp_path):
    first = run_spec("xor_nn", tmp_path, *QUICK, catch_exceptions=False)
    second = run_spec("xor_nn", tmp_path, *QUICK, catch_exceptions=False)
    assert first != second and first.parent == second.parent == tmp_path / "xor_nn"
    for run_dir in (first, second):
        assert (run_dir / "result.json").is_file() and (run_dir / "spec.yaml").is_file()
    assert not accumulator(second).Tags()["graph"]  # graph: false is honoured


@pytest.mark.slow
def test_run_name_is_never_reused(tmp_path):
    for _ in range(2):
        run_spec("xor_nn", tmp_path, *QUICK, "--run-name", "x", catch_exceptions=False)
    assert sorted(p.name for p in (tmp_path / "xor_nn").iterdir()) == ["x", "x-1"]
    assert result_of(tmp_path / "xor_nn" / "x")["steps"] == result_of(tmp_path / "xor_nn" / "x-1")["steps"] == 10


# -- the real TensorBoard server ---------------------------------------------------------------------


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


@pytest.mark.slow
def test_tensorboard_serves_the_run(runs, tmp_path):
    logdir, run_dir = runs["logdir"], runs["xor_tensorboard"]
    run = run_dir.relative_to(logdir).as_posix()  # the training run is the run directory
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "tensorboard.log", "w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tensorboard.main",
                "--logdir",
                str(logdir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--load_fast=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline, tags = time.monotonic() + 60, {}
            while time.monotonic() < deadline:
                assert server.poll() is None, (tmp_path / "tensorboard.log").read_text()
                try:
                    tags = json.loads(_get(f"{base}/data/plugin/scalars/tags"))
                    if run in tags and "loss" in tags[run]:
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            assert run in tags, f"TensorBoard did not list {run} within 60 s: {tags}"
            assert {"loss", "accuracy", "learning_rate", "steps_per_second"} <= set(tags[run])

            query = urllib.parse.urlencode({"run": run, "tag": "loss"})
            points = json.loads(_get(f"{base}/data/plugin/scalars/scalars?{query}"))  # [wall_time, step, value]
            assert [p[1] for p in points] == [0, 100, 200, STEPS]
            assert points[-1][2] == pytest.approx(result_of(run_dir)["final"]["loss"])

            graph = _get(f"{base}/data/plugin/graphs/graph?{urllib.parse.urlencode({'run': run})}")
            assert 'name: "layer1/kernel"' in graph
            assert 'name: "gradients/layer1/' in graph
            assert 'op: "dot_general"' in graph
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


# -- step 0, beside the compile or beside the first chunk --------------------------------------------


def _events_by_step(run_dir):
    """{(kind, tag): [(step, value as bytes or floats)]} of the training run's scalars and histograms."""
    ea = accumulator(run_dir)
    tags = ea.Tags()
    found = {
        ("scalar", t): [(e.step, e.value) for e in ea.Scalars(t)] for t in tags["scalars"] if t != "steps_per_second"
    }
    found |= {
        ("histogram", t): [(e.step, e.histogram_value.bucket, e.histogram_value.bucket_limit) for e in ea.Histograms(t)]
        for t in tags["histograms"]
    }
    return found, ea.Graph() is not None


@pytest.mark.parametrize("compiled_first", [False, True])
def test_step_zero_is_the_same_beside_the_compile_or_the_first_chunk(compiled_first, tmp_path, monkeypatch):
    """A new run whose chunks compiled before its step 0 was written trains first and writes step
    0 beside its first chunk, from a copy of the initial state (the chunk donates the state it is
    given): the events and the training are those of a run that wrote step 0 first."""
    from netspec.training import interrupts

    extra = ("--set", "train.steps=300", "--set", "summaries.every=100")
    with monkeypatch.context() as other:  # the other order
        other.setattr(interrupts.Finish, "done", lambda self: not compiled_first)
        reference = run_spec("xor_nn", tmp_path / "first", *extra)
    monkeypatch.setattr(interrupts.Finish, "done", lambda self: compiled_first)
    run_dir = run_spec("xor_nn", tmp_path / "then", *extra)
    mine, theirs = _events_by_step(run_dir), _events_by_step(reference)
    assert mine == theirs
    events, has_graph = mine
    assert has_graph and events[("scalar", "loss")][0][0] == 0
    assert [s for s, *_ in events[("histogram", "layer1/kernel")]] == [0, 100, 200, 300]
    assert result_of(run_dir)["final"] == result_of(reference)["final"]
