"""Runs that survive: resume continues bit for bit, Ctrl-C / SIGTERM / kill -9 on the real
command leave a run that resumes, a NaN stops with the last good checkpoint kept (or is skipped),
early stopping keeps the best checkpoint for `netspec eval`, and a checkpoint of another model is
refused before anything is written. Run directories are read back as TensorBoard reads them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file
from support import SPECS, accumulator, netspec, result_of, run_netspec, start_netspec

from netspec.compile.program import compile_spec
from netspec.inference import evaluate_run
from netspec.spec.check import check
from netspec.spec.load import load
from netspec.training import checkpoint
from netspec.training.callbacks import nonfinite_error
from netspec.training.feed import device_data, load_arrays
from netspec.training.interrupts import Stopped
from netspec.training.loop import RunResult, run
from netspec.training.rundir import LOCK_FILE, load_run_spec

pytestmark = pytest.mark.slow


# 32 random training examples in batches of 8, reshuffled every epoch, with dropout (per-step
# keys) and Adam (optimizer state): everything a resume has to restore exactly.
SHUFFLED = """
name: shuffled
seed: 3
data:
  npz: {path: data.npz}
model:
  input: [4]
  defaults: {activation: tanh}
  layers:
    - {name: layer1, type: dense, units: 8}
    - {name: dropout, type: dropout, rate: 0.2}
    - {name: output, type: dense, units: 3, activation: softmax}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
optimizer: {type: adam, learning_rate: 0.01}
train: {steps: 60, batch_size: 8}
eval: {every: 20, batch_size: 16}
summaries: {every: 10, histograms: [weights]}
checkpoint: {every: 10, keep: 2}
"""
STEPS = 60

# Linear layers and a squared error: a learning rate multiplied by 1e6 at step 200 makes the
# weights grow geometrically until they overflow, a few steps later. Checkpoints every 100
# steps, so a good one (step 200) exists before the NaN.
DIVERGING = """
name: diverging
seed: 0
data:
  inline:
    x: [[1, 2], [2, 1], [3, 0], [0, 3]]
    y: [[3], [3], [3], [3]]
model:
  input: [2]
  layers:
    - {name: layer1, type: dense, units: 4}
    - {name: output, type: dense, units: 1}
loss: mean_squared_error
metrics: [mean_absolute_error]
optimizer:
  type: sgd
  learning_rate: {type: piecewise_constant, init_value: 0.01, boundaries_and_scales: {200: 1.0e+6}}
train: {steps: 400, batch_size: 4}
summaries: {every: 100}
checkpoint: {every: 100}
"""


# -- helpers ------------------------------------------------------------------------------------------


def scalars(path: Path, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in accumulator(path).Scalars(tag)]


def evaluation_run(run_dir: Path) -> Path:
    """The run's evaluation run: test/ or validation/, the split its resolved spec evaluated."""
    return run_dir / yaml.safe_load((run_dir / "spec.yaml").read_text())["eval"]["split"]


def assert_each_step_once(points: list[tuple[int, float]]) -> None:
    steps = [s for s, _ in points]
    assert len(steps) == len(set(steps)), f"duplicated steps: {steps}"
    assert steps == sorted(steps), f"steps out of order: {steps}"


def only_run_dir(logdir: Path) -> Path:
    (run_dir,) = [p for p in logdir.glob("*/*") if p.is_dir()]
    return run_dir


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under `directory` with its size and modification time (but the lock file, which
    names whoever last held the run, refused or not)."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in directory.rglob("*")
        if p.is_file() and p.name != LOCK_FILE
    }


def assert_bit_identical_files(a: Path, b: Path) -> None:
    left, right = load_file(str(a)), load_file(str(b))
    assert left.keys() == right.keys()
    for key in left:
        assert left[key].dtype == right[key].dtype, key
        assert left[key].tobytes() == right[key].tobytes(), f"{key} differs"


def all_finite(tree) -> bool:
    import jax

    return all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(tree))


@pytest.fixture(scope="module")
def shuffled_spec(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("shuffled")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)).astype(np.int64)
    np.savez(directory / "data.npz", x_train=x[:32], y_train=y[:32], x_test=x[32:], y_test=y[32:])
    (directory / "shuffled.yaml").write_text(SHUFFLED)
    return directory / "shuffled.yaml"


def run_in_process(spec_file: Path, logdir: Path, run_name: str, *overrides: str) -> RunResult:
    return run(check(load(spec_file, list(overrides))), logdir=logdir, run_name=run_name, quiet=True)


# -- 1. bit-exact resume, in process ------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(shuffled_spec, tmp_path_factory) -> RunResult:
    return run_in_process(shuffled_spec, tmp_path_factory.mktemp("runs"), "A")


def _stop_by_sigint_after(step: int, monkeypatch):
    """Send this process SIGINT once the train summaries of `step` are written (the loop stops
    after the chunk it is running then, as it does for a person's Ctrl-C)."""
    from netspec.training.summaries import Summaries

    original = Summaries.training

    def training_then_sigint(self, at, *args, **kwargs):
        original(self, at, *args, **kwargs)
        if at == step:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Summaries, "training", training_then_sigint)


@pytest.mark.parametrize("how", ["finished_on_the_grid", "finished_off_the_grid", "stopped_by_sigint"])
def test_resume_is_bit_exact(how, uninterrupted, shuffled_spec, tmp_path, monkeypatch):
    """Run B stops part way (a run of fewer steps; one of 25 steps, off the summary grid; Ctrl-C),
    then is resumed to the same 60 steps as the uninterrupted run A: the same parameters and
    optimizer state bit for bit, the same loss at every step, each summary step exactly once."""
    a = uninterrupted
    losses_b: list[float] = []
    if how == "stopped_by_sigint":
        _stop_by_sigint_after(30, monkeypatch)
        with pytest.raises(Stopped) as stopped:
            run_in_process(shuffled_spec, tmp_path, "B")
        monkeypatch.undo()
        assert stopped.value.exit_code == 130
        run_dir = only_run_dir(tmp_path)
        assert f"netspec resume {run_dir}" in str(stopped.value)
    else:
        b = run_in_process(shuffled_spec, tmp_path, "B", f"train.steps={30 if how == 'finished_on_the_grid' else 25}")
        run_dir, losses_b = b.run_dir, b.losses
    stop_step = checkpoint.metadata(checkpoint.Checkpoints(run_dir / "checkpoints", keep=1).latest())["step"]
    assert 0 < stop_step < STEPS

    resumed = run(load_run_spec(run_dir, [f"train.steps={STEPS}"]), resume=run_dir, quiet=True)
    assert resumed.run_dir == run_dir
    assert result_of(run_dir)["steps"] == STEPS

    # the state: every leaf of the final checkpoint (params, Adam's moments and count, step)
    final = f"checkpoints/step-{STEPS:08d}.safetensors"
    assert_bit_identical_files(a.run_dir / final, run_dir / final)
    # the loss at every step
    assert len(resumed.losses) == STEPS - stop_step
    assert resumed.losses == a.losses[stop_step:]
    if losses_b:
        assert losses_b + resumed.losses == a.losses

    # as TensorBoard reads it: each step once, A's value at every step of A
    for tag in ("loss", "accuracy", "learning_rate"):
        want, got = dict(scalars(a.run_dir, tag)), scalars(run_dir, tag)
        assert_each_step_once(got)
        got = dict(got)
        assert set(want) <= set(got), f"{tag}: steps missing after resume: {sorted(set(want) - set(got))}"
        assert {s: got[s] for s in want} == want, tag
        extra = set(got) - set(want)  # only where B's shorter run ended off the grid
        assert extra == ({25} if how == "finished_off_the_grid" else set()), tag
    for s, value in scalars(run_dir, "loss")[1:]:
        assert np.float32(value) == np.float32(a.losses[s - 1]), s
    weights = accumulator(run_dir).Histograms("layer1/kernel")
    assert_each_step_once([(e.step, 0.0) for e in weights])
    # evaluations: A's at every step A evaluated, each once (B also evaluated where it ended)
    for tag in ("loss", "accuracy"):
        want, got = dict(scalars(a.run_dir / "test", tag)), scalars(run_dir / "test", tag)
        assert_each_step_once(got)
        assert {s: dict(got)[s] for s in want} == want, tag


def test_a_resume_within_the_same_second_keeps_the_events(shuffled_spec, tmp_path, monkeypatch):
    import types

    import netspec.training.summaries

    monkeypatch.setattr(
        netspec.training.summaries, "time", types.SimpleNamespace(time=lambda: 1795000000.0)
    )  # one second for both
    b = run_in_process(shuffled_spec, tmp_path, "B", "train.steps=30")
    (
        b.run_dir / "checkpoints" / "step-00000030.safetensors"
    ).unlink()  # as if killed after step 30's events, before its checkpoint
    monkeypatch.setattr(
        os, "getpid", lambda: 1
    )  # another process, whose pid sorts first in a file name of the same second
    run(load_run_spec(b.run_dir, ["train.steps=40"]), resume=b.run_dir, quiet=True)
    # the resumed file is read after the first (named so), so its purge hides the first's step 30
    points = scalars(b.run_dir, "loss")
    assert_each_step_once(points)
    assert [s for s, _ in points] == [0, 10, 20, 30, 40]


def test_resume_refuses_a_finished_run(uninterrupted):
    result = netspec("resume", str(uninterrupted.run_dir))
    assert result.exit_code == 1
    assert f"already finished its {STEPS} steps" in result.output and "--set train.steps=" in result.output


def test_a_resume_says_where_it_continues(uninterrupted, tmp_path):
    copy = tmp_path / "A"
    shutil.copytree(uninterrupted.run_dir, copy)
    result = netspec("resume", str(copy), "--set", f"train.steps={STEPS + 10}")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"Resuming {copy} at step {STEPS} of {STEPS + 10}."
    assert "Resuming" not in netspec("resume", str(copy), "--quiet", "--set", f"train.steps={STEPS + 20}").output


def test_resume_without_a_checkpoint_is_a_clear_error(shuffled_spec, tmp_path):
    run_dir = run_in_process(shuffled_spec, tmp_path, "C", "train.steps=10").run_dir
    for path in (run_dir / "checkpoints").iterdir():
        path.unlink()
    before = snapshot(run_dir)
    result = netspec("resume", str(run_dir))
    assert result.exit_code == 1 and "has no checkpoint to resume from" in result.output
    assert snapshot(run_dir) == before


# -- 2, 3. signals and kill -9 on the real command --------------------------------------------------

LONG_XOR = ["--set", "train.steps=2000000", "--set", "summaries.every=1000", "--set", "checkpoint.every=1000"]


def start_long_run(logdir: Path) -> subprocess.Popen:
    return start_netspec("run", SPECS / "xor_wide.yaml", "--logdir", logdir, "--quiet", *LONG_XOR)


def wait_for_checkpoint(process: subprocess.Popen, logdir: Path, timeout: float = 60.0) -> Path:
    """The run directory, once its first step checkpoint is on disk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(logdir.glob("xor_wide/*/checkpoints/step-*.safetensors"))
        if found:
            return found[0].parent.parent
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"netspec run exited {process.returncode} before its first checkpoint:\n{out}\n{err}")
        time.sleep(0.1)
    process.kill()
    process.communicate()
    pytest.fail(f"no checkpoint after {timeout} s")


def finish(process: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"netspec did not stop within {timeout} s:\n{out}\n{err}")
    return process.returncode, out, err


def resume_cli(run_dir: Path, steps: int) -> subprocess.CompletedProcess:
    return run_netspec("resume", run_dir, "--quiet", "--set", f"train.steps={steps}", timeout=300)


def assert_loss_every_1000_steps_up_to(run_dir: Path, end: int) -> None:
    points = scalars(run_dir, "loss")
    assert_each_step_once(points)
    assert [s for s, _ in points] == list(range(0, end + 1, 1000))
    assert all(np.isfinite(v) for _, v in points)


@pytest.mark.parametrize("signum, exit_code, name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_stops_with_a_checkpoint_and_the_run_resumes(signum, exit_code, name, tmp_path):
    process = start_long_run(tmp_path)
    run_dir = wait_for_checkpoint(process, tmp_path)
    process.send_signal(signum)
    code, out, err = finish(process)
    assert code == exit_code, err
    assert "Traceback" not in err + out
    match = re.search(r"stopped after step (\d+) of 2000000", err)
    assert match, err
    stop = int(match.group(1))
    assert err.startswith(f"{name}: ")
    assert f"netspec resume {run_dir}" in err
    assert stop % 1000 == 0
    latest = checkpoint.Checkpoints(run_dir / "checkpoints", keep=1).latest()
    assert latest.name == f"step-{stop:08d}.safetensors"
    assert checkpoint.metadata(latest)["step"] == stop
    assert not (run_dir / "result.json").exists()
    assert_loss_every_1000_steps_up_to(run_dir, stop)  # flushed on the way out

    if signum == signal.SIGINT:  # resuming is the same for both; once is enough
        end = stop + 2000
        resumed = resume_cli(run_dir, end)
        assert resumed.returncode == 0, resumed.stderr
        assert result_of(run_dir)["steps"] == end
        assert_loss_every_1000_steps_up_to(run_dir, end)
        assert checkpoint.Checkpoints(run_dir / "checkpoints", keep=1).latest().name == f"step-{end:08d}.safetensors"


def test_kill_9_leaves_a_run_that_loads_reads_back_and_resumes(tmp_path):
    process = start_long_run(tmp_path)
    run_dir = wait_for_checkpoint(process, tmp_path)
    time.sleep(0.5)  # somewhere in the middle of later chunks, summaries or checkpoint writes
    process.kill()
    code, _, _ = finish(process)
    assert code == -signal.SIGKILL

    latest = checkpoint.Checkpoints(run_dir / "checkpoints", keep=1).latest()
    step = checkpoint.metadata(latest)["step"]
    state = checkpoint.load(latest, compile_spec(load_run_spec(run_dir)).init())
    assert int(state.step) == step and all_finite(state.params)
    ea = accumulator(run_dir)  # a half-written last record must not break reading
    loss_steps = [e.step for e in ea.Scalars("loss")]
    assert len(loss_steps) == len(set(loss_steps))
    assert set(range(0, step + 1, 1000)) <= set(loss_steps), "summaries before the checkpoint must be on disk"

    # a write cut off by kill -9 leaves its temporary file; the resume clears it away
    partial = run_dir / "checkpoints" / f".step-{step + 1000:08d}.safetensors.x1y2z3.tmp"
    partial.write_bytes(b"half a checkpoint")
    end = step + 2000
    resumed = resume_cli(run_dir, end)
    assert resumed.returncode == 0, resumed.stderr
    assert result_of(run_dir)["steps"] == end
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    assert_loss_every_1000_steps_up_to(run_dir, end)  # what the killed run wrote past the checkpoint is purged


# -- 4. NaN ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diverging_spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("diverging") / "diverging.yaml"
    path.write_text(DIVERGING)
    return path


def test_nan_stops_naming_the_step_and_layer_and_keeps_the_last_good_checkpoint(diverging_spec, tmp_path):
    result = netspec("run", str(diverging_spec), "--logdir", str(tmp_path), "--quiet")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    message = result.output
    match = re.search(r"Training stopped at step (\d+): the gradients of layer 'layer1' .* became NaN or Inf", message)
    assert match, message
    nan_step = int(match.group(1))
    assert 200 < nan_step <= 300  # the rate jumps after step 200
    run_dir = only_run_dir(tmp_path)
    kept = run_dir / "checkpoints" / "step-00000200.safetensors"
    assert f"The last good checkpoint is kept: {kept}" in message
    assert "train.on_nonfinite: skip_step" in message  # says what to do

    saved = checkpoint.Checkpoints(run_dir / "checkpoints", keep=1)
    assert [s for s, _ in saved.steps()] == [100, 200]  # nothing at or after the NaN
    assert checkpoint.metadata(kept)["step"] == 200 < nan_step
    state = checkpoint.load(kept, compile_spec(load_run_spec(run_dir)).init())
    assert int(state.step) == 200 and int(state.skipped) == 0
    assert all_finite(state.params) and all_finite(state.opt_state)
    assert not (run_dir / "result.json").exists()
    points = scalars(run_dir, "loss")
    assert [s for s, _ in points] == [0, 100, 200]  # the chunk with the NaN is not summarised
    assert all(np.isfinite(v) for _, v in points)


def _first_nonfinite(spec_path: Path, *sets: str) -> tuple[int, int]:
    """(step, layer index) of the first non-finite step, from one diagnosing chunk over the whole run."""
    spec = check(load(spec_path, list(sets)))
    program = compile_spec(spec)
    arrays = load_arrays(spec)
    assert spec.train["batch_size"] == spec.num_examples  # full batch: no indices
    _, outputs = program.train_chunk(spec.steps, diagnose=True)(
        program.init(), device_data(arrays.train, arrays), None, program.keys
    )
    return int(outputs.nonfinite_step), int(outputs.nonfinite_layer)


@pytest.mark.parametrize(
    "sets", [(), ("checkpoint.every=null", "summaries.every=20")], ids=["checkpoint-before", "no-checkpoint"]
)
def test_nan_is_located_exactly_whatever_the_last_checkpoint(diverging_spec, tmp_path, sets):
    """The step and layer named are those a check at every step finds, whether the chunk is run
    again from a checkpoint just before it or from step 0 through many chunks."""
    truth_step, truth_layer = _first_nonfinite(diverging_spec, *sets)
    assert 200 < truth_step <= 300 and truth_layer == 0
    args = [x for s in sets for x in ("--set", s)]
    result = netspec("run", str(diverging_spec), "--logdir", str(tmp_path), "--quiet", *args)
    assert result.exit_code == 1, result.output
    assert f"Training stopped at step {truth_step}: the gradients of layer 'layer1' " in result.output
    if sets:
        assert "No checkpoint had been written yet" in result.output
    assert not (only_run_dir(tmp_path) / "result.json").exists()


def test_nan_not_found_again_names_the_chunk_and_its_first_bad_loss(tmp_path):
    losses = np.array([1.0] * 41 + [np.inf] + [np.nan] * 58)
    spec = check(load(SPECS / "xor_wide.yaml", []))
    message = str(nonfinite_error(spec, tmp_path, -1, -1, None, 300, 100, losses))
    assert message.startswith(
        "Training stopped: a NaN or Inf appeared in steps 201-300 (the loss first at step 242), "
        "and running them again did not show the step and layer."
    )
    assert "No checkpoint had been written yet" in message and str(tmp_path) in message


def test_nan_with_skip_step_completes_and_counts_the_skipped_steps(diverging_spec, tmp_path):
    result = netspec(
        "run", str(diverging_spec), "--logdir", str(tmp_path), "--quiet", "--set", "train.on_nonfinite=skip_step"
    )
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path)
    report = result_of(run_dir)
    assert report["steps"] == 400 and report["stopped"] is None
    skipped = report["final"]["skipped_steps"]
    assert 0 < skipped < 200
    points = scalars(run_dir, "skipped_steps")
    assert [s for s, _ in points] == [100, 200, 300, 400]
    values = [v for _, v in points]
    assert values[:2] == [0, 0] and values == sorted(values) and values[-1] == skipped
    final = checkpoint.Checkpoints(run_dir / "checkpoints", keep=1).latest()
    state = checkpoint.load(final, compile_spec(load_run_spec(run_dir)).init())
    assert int(state.step) == 400 and int(state.skipped) == skipped
    assert all_finite(state.params) and all_finite(state.opt_state)


def test_nan_with_ignore_runs_to_the_end_unchecked(diverging_spec, tmp_path):
    """on_nonfinite: ignore checks nothing, as a hand-written loop: the run ends normally, NaN and all."""
    result = netspec(
        "run", str(diverging_spec), "--logdir", str(tmp_path), "--quiet", "--set", "train.on_nonfinite=ignore"
    )
    assert result.exit_code == 0, result.output
    report = result_of(only_run_dir(tmp_path))
    assert report["steps"] == 400 and report["final"]["loss"] is None  # NaN, written as null
    assert "skipped_steps" not in report["final"]


def test_a_huge_learning_rate_without_nan_is_no_traceback(tmp_path):
    """xor_wide with learning rate 1e30: the fused sigmoid loss stays finite (no NaN), the
    weights become ~1e31 and nearly equal; their histograms must not crash the run (numpy cannot
    cut such a range into 30 bins)."""
    result = netspec(
        "run",
        str(SPECS / "xor_wide.yaml"),
        "--logdir",
        str(tmp_path),
        "--quiet",
        "--set",
        "train.steps=300",
        "--set",
        "optimizer.learning_rate=1.0e+30",
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path)
    assert [e.step for e in accumulator(run_dir).Histograms("layer1/kernel")] == [0, 100, 200, 300]


# -- 5. early stopping ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def early_stopped(shuffled_spec, tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("early")
    result = netspec(
        "run",
        str(shuffled_spec),
        "--logdir",
        str(logdir),
        "--quiet",
        "--set",
        "train.steps=100",
        "--set",
        "eval.every=10",
        "--set",
        "data.validation_split=0.25",  # select on validation
        # after step 10 the learning rate jumps 1000-fold, so the validation loss at step 20 is worse than at 10
        "--set",
        "optimizer.learning_rate={type: piecewise_constant, init_value: 0.01, boundaries_and_scales: {10: 1000}}",
        "--set",
        "train.early_stopping={metric: loss, patience: 1, min_delta: 0.5}",
    )
    assert result.exit_code == 0, result.output
    assert "Early stopping at step" in result.output
    return only_run_dir(logdir)


def test_early_stopping_stops_and_keeps_the_best(early_stopped):
    report = result_of(early_stopped)
    assert report["stopped"] == "early_stopping"
    assert report["planned_steps"] == 100 and report["steps"] < 100
    best = early_stopped / "checkpoints" / "best.safetensors"
    assert best.is_file()
    best_step = report["best"]["best_step"]
    assert checkpoint.metadata(best)["step"] == best_step
    evaluations = dict(scalars(evaluation_run(early_stopped), "loss"))
    assert np.float32(report["best"]["best"]) == np.float32(evaluations[best_step])
    # patience 1: the first evaluation is the best, the second (after the jump) does not beat it by 0.5
    assert best_step == 10
    assert report["steps"] == 20  # it stops at the evaluation that decided it
    assert_each_step_once(scalars(early_stopped, "loss"))
    assert (
        checkpoint.Checkpoints(early_stopped / "checkpoints", keep=1).latest().name
        == f"step-{report['steps']:08d}.safetensors"
    )


def test_eval_of_an_early_stopped_run_uses_the_best_checkpoint(early_stopped):
    report = result_of(early_stopped)
    best_step = report["best"]["best_step"]
    at_best = {tag: dict(scalars(evaluation_run(early_stopped), tag))[best_step] for tag in ("loss", "accuracy")}
    at_end = {tag: dict(scalars(evaluation_run(early_stopped), tag))[report["steps"]] for tag in ("loss", "accuracy")}
    assert at_best["loss"] != at_end["loss"]  # otherwise this test could not tell them apart

    result = netspec("eval", str(early_stopped), "--split", "validation")
    assert result.exit_code == 0, result.output
    words = result.stdout.split()
    printed = {k: float(v) for k, v in zip(words[::2], words[1::2], strict=True)}
    assert printed == pytest.approx(at_best, rel=1e-5)
    exact = evaluate_run(early_stopped, split="validation")
    assert {k: np.float32(v) for k, v in exact.items()} == {k: np.float32(v) for k, v in at_best.items()}


def test_early_stopping_evaluates_each_step_once(early_stopped):
    assert_each_step_once(scalars(evaluation_run(early_stopped), "accuracy"))


# -- 6. a checkpoint of another model ------------------------------------------------------------------


@pytest.fixture
def xor_run(tmp_path) -> Path:
    result = netspec(
        "run",
        str(SPECS / "xor_wide.yaml"),
        "--logdir",
        str(tmp_path / "runs"),
        "--quiet",
        "--set",
        "train.steps=200",
        "--set",
        "checkpoint.every=100",
    )
    assert result.exit_code == 0, result.output
    return only_run_dir(tmp_path / "runs")


def test_resume_with_an_edited_spec_is_refused_before_training(xor_run):
    """(Every kind of change: tests/training/test_resume_changes.py.)"""
    spec_file = xor_run / "spec.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["model"]["layers"][0]["units"] = 12  # layer1: 10 -> 12 units
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    before = snapshot(xor_run)
    result = netspec("resume", str(xor_run), "--set", "train.steps=400")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "$.model.layers[0].units: 10 -> 12" in result.output, result.output
    assert snapshot(xor_run) == before  # no event file, no checkpoint, no result.json touched


def test_resume_passes_over_another_runs_checkpoint(xor_run, tmp_path):
    """A checkpoint of another model in the run's place is passed over for the one before it, said
    in one line, and kept aside (no later save keeps it in place of a sound one)."""
    other = netspec(
        "run", str(SPECS / "xor_nn.yaml"), "--logdir", str(tmp_path / "other"), "--quiet", "--set", "train.steps=100"
    )
    assert other.exit_code == 0, other.output
    foreign = checkpoint.Checkpoints(only_run_dir(tmp_path / "other") / "checkpoints", keep=1).latest()
    shutil.copy(foreign, xor_run / "checkpoints" / "step-00000300.safetensors")  # now the latest
    result = netspec("resume", str(xor_run), "--set", "train.steps=400", "--quiet")
    assert result.exit_code == 0, result.output
    assert "step-00000300.safetensors does not load (of another model" in result.output
    assert "using step-00000200.safetensors instead" in result.output
    assert (xor_run / "checkpoints" / "step-00000300.safetensors.damaged").read_bytes() == foreign.read_bytes()
    assert result_of(xor_run)["steps"] == 400
    assert (
        checkpoint.metadata(xor_run / "checkpoints" / "step-00000300.safetensors")["step"] == 300
    )  # its own, trained again
