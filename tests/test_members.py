"""`netspec eval` and `netspec predict` on a sweep directory: `--member best` (rank 1 of the
sweep's result.json, the default), `--member K` (1-based, in sweep.json's order) or a member's
name, each the same as the command on that member's run directory, and `--member ensemble`, a deep
ensemble whose probabilities are the mean of the members' own (each computed here by `netspec
predict` of the member's run directory) and whose metrics are those of that mean; the refusals
(a K out of range, an unknown name, --member on a plain run, best without result.json, a member
that did not finish, members trained on other data) are one paragraph each.

Three tiny sweeps are trained once for the module (inline XOR over the hidden layer's units; three
inline classes from logits over the seed; two npz files over the data path); the tests that use
them are marked slow.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from support import XOR, assert_one_paragraph, netspec, write

from netspec.errors import NetspecError
from netspec.inference import (
    evaluate_ensemble,
    evaluate_run,
    is_sweep,
    predict_ensemble,
    predict_run,
    sweep_member,
    sweep_members,
)

BINARY = (
    XOR.replace("seed: 0\n", "seed: 0\nsweep:\n  model.layers[0].units: [2, 3, 4]\n")
    .replace("learning_rate: 0.1", "learning_rate: 2.0")
    .replace("steps: 20", "steps: 60")
    .replace("every: 10", "every: 30")
)
UNITS = ["units=2", "units=3", "units=4"]  # sweep.json's order: --member 1, 2, 3
POINTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)  # XOR's examples, its only (training) split
LABELS = np.array([0, 1, 1, 0])

CLASSES = """\
name: three
seed: 0
sweep:
  seed: [0, 1]
data:
  inline:
    x: [[0, 0], [0, 1], [1, 0], [1, 1], [0.5, 0.5], [0.2, 0.9]]
    y: [[0], [1], [2], [0], [1], [2]]
model:
  input: [2]
  layers:
    - {name: hidden, type: dense, units: 8, activation: tanh}
    - {name: out, type: dense, units: 3, activation: linear}
loss: {type: sparse_categorical_crossentropy, from_logits: true}
metrics: [accuracy, {type: top_k_accuracy, k: 2}]
optimizer: {type: adam, learning_rate: 0.05}
train: {steps: 40, batch_size: 6}
summaries: {every: 20, graph: false}
"""
THREE = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [0.5, 0.5], [0.2, 0.9]], np.float32)
THREE_LABELS = np.array([0, 1, 2, 0, 1, 2])

FILES = """\
name: files
seed: 0
sweep:
  data.npz.path: [a.npz, b.npz]
data:
  npz: {path: a.npz}
model:
  input: [2]
  layers:
    - {name: out, type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
metrics: [accuracy]
optimizer: {type: sgd, learning_rate: 0.5}
train: {steps: 10, batch_size: 4}
summaries: {every: 10, graph: false}
"""


def sweep(spec: Path, logdir: Path) -> Path:
    """`netspec run SPEC`, a sweep, trained into <logdir>/<name>/s; its directory."""
    result = netspec("run", spec, "--logdir", logdir, "--quiet", "--run-name", "s")
    assert result.exit_code == 0, result.output
    (sweep_dir,) = logdir.glob("*/s")
    return sweep_dir


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("binary")
    return sweep(write(tmp / "xor.yaml", BINARY), tmp / "runs")


@pytest.fixture(scope="module")
def classes(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("classes")
    return sweep(write(tmp / "three.yaml", CLASSES), tmp / "runs")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("files")
    np.savez(tmp / "a.npz", x=POINTS, y=LABELS[:, None].astype(np.float32))
    np.savez(tmp / "b.npz", x=POINTS, y=1 - LABELS[:, None].astype(np.float32))
    return sweep(write(tmp / "files.yaml", FILES), tmp / "runs")


@pytest.fixture(scope="module")
def stopped(binary, tmp_path_factory) -> Path:
    """The binary sweep as a stop in its last member leaves it: no ranking, units=4 unfinished."""
    copy = tmp_path_factory.mktemp("stopped") / "s"
    shutil.copytree(binary, copy)
    (copy / "result.json").unlink()
    (copy / "units=4" / "result.json").unlink()
    return copy


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("inputs")
    np.save(tmp / "xor.npy", POINTS)
    np.save(tmp / "three.npy", THREE)
    return {"xor": tmp / "xor.npy", "three": tmp / "three.npy"}


def ranked(sweep_dir: Path) -> list[str]:
    return [row["member"] for row in json.loads((sweep_dir / "result.json").read_text())["members"]]


def ok(*args) -> tuple[str, str]:
    """`netspec ARGS`, which must exit 0: (stdout, stderr)."""
    result = netspec(*args)
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def predicted(run_dir: Path, points: Path, out: Path, *member) -> np.ndarray:
    """`netspec predict RUN_DIR --input POINTS --output OUT.npy [--member M]`: the outputs."""
    ok("predict", run_dir, "--input", points, "--output", out, *member)
    return np.load(out)


# -- choosing one member -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sweep_without_member_is_its_best_member_said_in_one_line(binary):
    best = ranked(binary)[0]
    stdout, stderr = ok("eval", binary)
    assert stdout == ok("eval", binary / best)[0]
    line, evaluated = stderr.strip().splitlines()
    assert f"using its best member, {best} (rank 1 of 3 by the last training step's loss)" in line
    assert evaluated == f"Evaluated {binary / best} on the train split (4 examples)."
    assert ok("eval", binary, "--member", "best")[0] == stdout
    member = sweep_member(binary)
    assert (member.name, member.run_dir, member.rank, member.total) == (best, binary / best, 1, 3)


@pytest.mark.slow
def test_k_counts_from_one_in_sweep_json_order_and_a_name_is_the_same_member(binary):
    listed = [m["name"] for m in json.loads((binary / "sweep.json").read_text())["members"]]
    assert listed == UNITS
    for k, name in enumerate(UNITS, 1):
        member = sweep_member(binary, k)
        assert (member.name, member.position) == (name, k) == (sweep_member(binary, str(k)).name, k)
        assert sweep_member(binary, name) == member and member.rank == ranked(binary).index(name) + 1
    assert [m.name for m in sweep_members(binary)] == UNITS
    stdout, stderr = ok("eval", binary, "--member", "2")
    assert "Using member units=3" in stderr and "2 of 3 in sweep.json's order" in stderr
    assert stdout == ok("eval", binary, "--member", "units=3")[0] == ok("eval", binary / "units=3")[0]
    values = evaluate_run(sweep_member(binary, 2).run_dir)
    assert stdout.strip() == "  ".join(f"{k} {v:.6g}" for k, v in values.items())


@pytest.mark.slow
def test_predict_chooses_members_as_eval_does(binary, inputs, tmp_path):
    best = ranked(binary)[0]
    stdout, stderr = ok("predict", binary, "--input", inputs["xor"])
    assert stdout == ok("predict", binary / best, "--input", inputs["xor"])[0]
    assert "using its best member" in stderr
    assert (
        ok("predict", binary, "--input", inputs["xor"], "--member", "3")[0]
        == ok("predict", binary / "units=4", "--input", inputs["xor"])[0]
    )
    outputs, _, _ = predict_run(sweep_member(binary, "units=2").run_dir, inputs["xor"])
    assert np.array_equal(outputs, predicted(binary, inputs["xor"], tmp_path / "one.npy", "--member", "units=2"))


# -- the ensemble ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ensemble_probabilities_are_the_mean_of_the_members_own(binary, inputs, tmp_path):
    own = [predicted(binary / name, inputs["xor"], tmp_path / f"{name}.npy") for name in UNITS]  # each member's
    mean = np.mean(own, axis=0)
    ensemble = predicted(binary, inputs["xor"], tmp_path / "ensemble.npy", "--member", "ensemble")
    np.testing.assert_allclose(ensemble, mean, rtol=1e-6, atol=1e-7)
    assert ensemble.shape == (4, 1) and ensemble.dtype == np.float32
    stdout, stderr = ok("predict", binary, "--input", inputs["xor"], "--member", "ensemble")
    lines = stdout.strip().splitlines()
    assert lines[0] == "prediction,output_0" and "ensemble" in stderr
    assert [int(line.split(",")[0]) for line in lines[1:]] == (mean.ravel() > 0.5).astype(int).tolist()
    outputs, classes_, names = predict_ensemble(binary, inputs["xor"])
    np.testing.assert_allclose(outputs, mean, rtol=1e-6, atol=1e-7)
    assert classes_.tolist() == (mean.ravel() > 0.5).astype(int).tolist() and names == []


@pytest.mark.slow
def test_ensemble_eval_reports_its_own_metrics_and_the_members_mean(binary, inputs, tmp_path):
    result = evaluate_ensemble(binary)
    assert result.split == "train" and list(result.members) == UNITS  # XOR's one split: its training data
    for name in UNITS:
        assert result.members[name] == evaluate_run(binary / name)
    assert result.mean == pytest.approx({k: np.mean([m[k] for m in result.members.values()]) for k in result.mean})
    # the ensemble's figures, from its members' own predictions on the split
    p = np.mean([predicted(binary / name, inputs["xor"], tmp_path / f"{name}.npy") for name in UNITS], 0).ravel()
    p64 = p.astype(np.float64)
    assert result.ensemble["accuracy"] == pytest.approx(np.mean((p > 0.5) == LABELS))
    assert result.ensemble["loss"] == pytest.approx(-np.mean(LABELS * np.log(p64) + (1 - LABELS) * np.log(1 - p64)))
    assert list(result.ensemble) == list(result.mean) == list(result.members["units=2"])  # evaluate_run's order
    assert set(result.ensemble) == {"loss", "accuracy"}

    stdout, stderr = ok("eval", binary, "--member", "ensemble")
    rows = [line.split() for line in stdout.strip().splitlines()]
    assert [" ".join(r[:-4]) for r in rows] == ["ensemble of 3", "mean of members", *UNITS]
    for row, figures in zip(rows, [result.ensemble, result.mean, *result.members.values()], strict=True):
        assert row[-4:] == [x for tag, value in figures.items() for x in (tag, f"{value:.6g}")]
    assert "on the train split" in stderr


@pytest.mark.slow
def test_an_ensemble_of_logits_averages_softmax_probabilities(classes, inputs, tmp_path):
    names = [m.name for m in sweep_members(classes)]
    assert names == ["seed=0", "seed=1"]
    logits = [predicted(classes / name, inputs["three"], tmp_path / f"{name}.npy") for name in names]
    softmax = [
        np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
        for z in logits
    ]
    mean = np.mean(softmax, axis=0)
    outputs, predicted_classes, _ = predict_ensemble(classes, inputs["three"])
    np.testing.assert_allclose(outputs, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs.sum(-1), 1.0, rtol=1e-6)
    assert predicted_classes.tolist() == mean.argmax(-1).tolist()
    result = evaluate_ensemble(classes)
    assert result.ensemble["loss"] == pytest.approx(-np.mean(np.log(mean[np.arange(6), THREE_LABELS])), rel=1e-5)
    assert result.ensemble["accuracy"] == pytest.approx(np.mean(mean.argmax(-1) == THREE_LABELS))
    top2 = np.argsort(-mean, -1)[:, :2]
    hits = [label in row for label, row in zip(THREE_LABELS, top2, strict=True)]
    assert result.ensemble["top_2_accuracy"] == pytest.approx(np.mean(hits))
    assert set(result.ensemble) == set(result.mean) == {"loss", "accuracy", "top_2_accuracy"}


@pytest.mark.slow
def test_an_ensemble_leaves_out_a_member_that_did_not_finish(stopped, binary, inputs, tmp_path):
    result = netspec("eval", stopped, "--member", "ensemble")
    assert result.exit_code == 0, result.output
    assert "leaves out 1 of its 3 members" in result.stderr and "units=4" in result.stderr
    assert result.stdout.splitlines()[0].startswith("ensemble of 2 ")
    own = [predicted(binary / name, inputs["xor"], tmp_path / f"{name}.npy") for name in UNITS[:2]]
    outputs, _, _ = predict_ensemble(stopped, inputs["xor"])
    np.testing.assert_allclose(outputs, np.mean(own, 0), rtol=1e-6, atol=1e-7)


# -- refusals ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_an_ensemble_of_one_finished_member_is_refused_naming_it(binary, inputs, tmp_path, command):
    """Averaging one member's probabilities is that member: the message names it to use instead."""
    copy = tmp_path / "s"
    shutil.copytree(binary, copy)
    (copy / "result.json").unlink()
    for name in UNITS[1:]:
        (copy / name / "result.json").unlink()
    extra = ["--input", inputs["xor"]] if command == "predict" else []
    assert_one_paragraph(
        netspec(command, copy, "--member", "ensemble", *extra),
        "Only one member",
        f"use --member {UNITS[0]}",
        "an ensemble averages two or more",
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "member, words",
    [
        ("0", ["--member 0", "has 3 members", "K is 1 to 3", "1 is units=2"]),
        ("4", ["--member 4", "K is 1 to 3"]),
        ("-1", ["no member of that name", "a number K from 1 to 3"]),
        ("units=5", ["'units=5'", "no member of that name", "did you mean", "units=2, units=3, units=4"]),
    ],
)
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_a_member_the_sweep_does_not_have_is_one_paragraph(binary, inputs, command, member, words):
    extra = ["--input", inputs["xor"]] if command == "predict" else []
    assert_one_paragraph(netspec(command, binary, "--member", member, *extra), *words)
    with pytest.raises(NetspecError, match=r"K is 1 to 3|no member of that name"):
        sweep_member(binary, member)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_member_on_a_plain_run_directory_is_refused(binary, inputs, command):
    extra = ["--input", inputs["xor"]] if command == "predict" else []
    message = assert_one_paragraph(
        netspec(command, binary / "units=3", "--member", "best", *extra), "a run directory of its own", "Drop --member"
    )
    assert f"netspec {command} {binary} --member units=3" in message
    assert not is_sweep(binary / "units=3") and is_sweep(binary)


def test_member_on_a_directory_that_is_no_sweep_is_refused(tmp_path):
    assert_one_paragraph(netspec("eval", tmp_path, "--member", "2"), "not a sweep directory", "Drop --member")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_best_without_result_json_says_to_resume_or_choose_k(stopped, inputs, command):
    extra = ["--input", inputs["xor"]] if command == "predict" else []
    for member in ([], ["--member", "best"]):
        assert_one_paragraph(
            netspec(command, stopped, *member, *extra),
            "has no result.json",
            "2 finished: units=2, units=3",
            f"netspec resume {stopped}",
            "--member K (1 to 3",
        )
    assert ok(command, stopped, "--member", "1", *extra)[0] == ok(command, stopped / "units=2", *extra)[0]


@pytest.mark.slow
def test_a_member_that_did_not_finish_or_failed_is_refused(stopped, binary, tmp_path):
    # unranked (stopped): the finished members are named, not --member best, which needs the ranking
    assert_one_paragraph(
        netspec("eval", stopped, "--member", "3"),
        "units=4 (3 of 3)",
        "did not finish",
        "resume",
        "choose a member that finished: units=2, units=3.",
    )
    failed = tmp_path / "failed"
    shutil.copytree(stopped, failed)
    table = json.loads((binary / "result.json").read_text())
    for row in table["members"]:
        if row["member"] == "units=4":
            row.update(status="failed", error="Training stopped at step 7: the loss is NaN.")
    write(failed / "result.json", json.dumps(table))
    assert_one_paragraph(
        netspec("eval", failed, "--member", "units=4"),
        "failed (Training stopped at step 7: the loss is NaN)",
        "(--member best, or one of units=2, units=3)",  # ranked: best is there
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_members_trained_on_other_data_form_no_ensemble(files, inputs, command):
    extra = ["--input", inputs["xor"]] if command == "predict" else []
    assert_one_paragraph(
        netspec(command, files, "--member", "ensemble", *extra),
        "cannot form an ensemble",
        "their data differ (data.npz.path: a.npz in path=a.npz, b.npz in path=b.npz)",
        "--member best, K or NAME",
    )
    ok(command, files, "--member", "2", *extra)  # each member alone is fine


def test_a_damaged_sweep_json_is_one_paragraph(tmp_path):
    write(tmp_path / "sweep.json", "{[: not what was written\n")
    assert_one_paragraph(netspec("eval", tmp_path), "sweep.json", "damaged", "on its own")
    write(tmp_path / "sweep.json", json.dumps({"members": [{"name": "../elsewhere"}]}))
    assert_one_paragraph(netspec("eval", tmp_path, "--member", "1"), "'../elsewhere' is not a member's directory name")
