"""Runs that survive every interruption: the real `netspec run` is paused at a named phase
(`NETSPEC_TEST_PAUSE`, see netspec.interrupts), interrupted there (kill -9, SIGINT, SIGTERM, a
second SIGTERM, or its disk filled), and then:

- it ends with the documented exit code (130 SIGINT, 143 SIGTERM, 1 a full disk) and one
  paragraph on stderr saying what was kept and how to go on; kill -9 ends it silently;
- nothing is left half-written: no temporary file once the next command has opened the run,
  every event file reads back whole, and the events up to the kept checkpoint are all there;
- `netspec resume` either finishes the run exactly as an uninterrupted one (every parameter of
  the final and the best checkpoint, every scalar, histogram, image and text at every step of the
  training and evaluation runs, as TensorBoard's EventAccumulator reads them, and result.json) or
  says that nothing was kept.

A full disk is a real one: the logdir is a small tmpfs mounted for the test (as root) and filled
while the run is paused; where nothing can be mounted, the paused process's RLIMIT_FSIZE is set
to 0 instead, so every write that grows a file fails (EFBIG) as on a full disk.

Also here: two resumes of one run at once (the second is refused, naming the first), and
leftovers of cut-off writes, which the next command that opens the run removes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from support import NETSPEC, accumulator, cli, result_of, run_netspec, start_netspec

# Shuffled batches, dropout (per-step keys), Adam (optimizer state), a validation split that
# chooses the best checkpoint (and the test split measured once at the end), histograms of
# weights, biases, activations and gradients: everything a resume has to restore exactly.
SPEC = """
name: survive
seed: 3
data:
  npz: {path: data.npz}
  validation_split: 0.25
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
eval: {split: validation, every: 20, batch_size: 16}
summaries: {every: 10, histograms: [weights, biases, activations, gradients]}
checkpoint: {every: 20, keep: 2, best: accuracy}
"""
STEPS = 60
TIMINGS = {"train_seconds", "compile_seconds", "us_per_step", "first_step_seconds", "steps_per_second"}

# phase -> (where the process waits (NETSPEC_TEST_PAUSE), the last step summarised by then)
PHASES = {
    "before-run-dir": ("before-run-dir", -1),  # data loaded, nothing compiled or written
    # the run directory written, the training chunks compiling; step 0 is summarised beside the
    # compile, or, when it has ended first, beside the first chunk
    "compiling": ("compiling", -1),
    "before-first-checkpoint": ("chunk:10", 10),  # step 10 summarised, the chunk to step 20 running
    "mid-run": ("chunk:30", 30),  # checkpoint 20 kept, step 30 summarised, the chunk to 40 running
    "checkpoint-write": ("checkpoint-write:step-00000040.safetensors", 40),  # half of it written
    "closing": ("results", 60),  # the closing checkpoint and the final evaluations written, not result.json
    "closing-start": ("closing", 60),  # the closing checkpoint written, not the final evaluations
}
INTERRUPTIONS = ["kill -9", "SIGINT", "SIGTERM", "SIGTERM twice", "full disk"]

# phase x interruption -> (exit code, the checkpoint step a resume starts from, or None: nothing
# kept, or "none": no run directory at all). A full disk may let a write that fits in a file's
# last, already allocated page through: there the later of two checkpoints may be the one kept.
EXPECTED = {
    ("before-run-dir", "kill -9"): (-9, "none"),
    ("before-run-dir", "SIGINT"): (130, "none"),
    ("before-run-dir", "SIGTERM"): (143, "none"),
    ("before-run-dir", "SIGTERM twice"): (143, "none"),
    ("before-run-dir", "full disk"): (1, "none"),  # the run's directory could hold nothing: it is removed
    ("compiling", "kill -9"): (-9, None),
    ("compiling", "SIGINT"): (130, 0),  # before training: step 0 is checkpointed, to resume from
    ("compiling", "SIGTERM"): (143, 0),
    ("compiling", "SIGTERM twice"): (143, None),
    ("compiling", "full disk"): (1, None),
    ("before-first-checkpoint", "kill -9"): (-9, None),
    ("before-first-checkpoint", "SIGINT"): (130, 20),  # the chunk running finishes and is checkpointed
    ("before-first-checkpoint", "SIGTERM"): (143, 20),
    ("before-first-checkpoint", "SIGTERM twice"): (143, None),  # at once: no checkpoint yet
    ("before-first-checkpoint", "full disk"): (1, None),
    ("mid-run", "kill -9"): (-9, 20),
    ("mid-run", "SIGINT"): (130, 40),
    ("mid-run", "SIGTERM"): (143, 40),
    ("mid-run", "SIGTERM twice"): (143, 20),
    ("mid-run", "full disk"): (1, 20),
    ("checkpoint-write", "kill -9"): (-9, 20),
    ("checkpoint-write", "SIGINT"): (130, 50),  # the write completes, the next chunk too
    ("checkpoint-write", "SIGTERM"): (143, 50),
    ("checkpoint-write", "SIGTERM twice"): (143, 20),  # the half-written file is removed
    ("checkpoint-write", "full disk"): (1, (20, 40)),  # the second half may fit the first's page
    ("closing", "kill -9"): (-9, 60),  # a resume finishes the run, without training
    ("closing", "SIGINT"): (130, 60),
    ("closing", "SIGTERM"): (143, 60),
    ("closing", "SIGTERM twice"): (143, 60),
    ("closing", "full disk"): (1, 60),
    ("closing-start", "kill -9"): (-9, 60),
    ("closing-start", "full disk"): (1, 60),
}
# the cells that also run in the fast suite; the others are marked slow (they run in CI)
FAST = {("mid-run", "kill -9"), ("closing", "SIGTERM")}


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("survive")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)).astype(np.int64)
    np.savez(directory / "data.npz", x_train=x[:32], y_train=y[:32], x_test=x[32:], y_test=y[32:])
    (directory / "survive.yaml").write_text(SPEC)
    return directory / "survive.yaml"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """The subprocesses' environment: one JAX compilation cache for all of them (warm after the first)."""
    return {
        **os.environ,
        "NETSPEC_JAX_CACHE": os.environ.get("NETSPEC_JAX_CACHE") or str(tmp_path_factory.mktemp("jax-cache")),
    }


@pytest.fixture(scope="module")
def reference(spec_file, env, tmp_path_factory) -> Path:
    """The same run, never interrupted."""
    logdir = tmp_path_factory.mktemp("reference")
    done = run_netspec("run", spec_file, "--logdir", logdir, "--quiet", "--run-name", "r", env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return logdir / "survive" / "r"


# -- a small disk that can be filled ----------------------------------------------------------------


@contextlib.contextmanager
def small_disk(directory: Path):
    """A 4 MiB tmpfs at `directory` (True), or the directory as it is (False) when nothing can be mounted here."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(directory)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def fill(directory: Path) -> None:
    """Write a file in `directory` until its filesystem has no room left."""
    with open(directory / "filler", "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 16, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e


def make_disk_full(process: subprocess.Popen, logdir: Path, mounted: bool) -> None:
    if mounted:
        fill(logdir)
    else:  # no tmpfs: no file of the process may grow, as on a full disk (Python ignores SIGXFSZ: writes fail with EFBIG)
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))


def free_disk(logdir: Path) -> None:
    (logdir / "filler").unlink(missing_ok=True)


# -- driving the paused process ------------------------------------------------------------------------


def start(spec_file: Path, logdir: Path, env: dict, marker: Path, pause: str, *sets: str) -> subprocess.Popen:
    return start_netspec(
        "run",
        spec_file,
        "--logdir",
        logdir,
        "--quiet",
        "--run-name",
        "r",
        *(x for s in sets for x in ("--set", s)),
        env={**env, "NETSPEC_TEST_PAUSE": pause, "NETSPEC_TEST_PAUSE_FILE": str(marker)},
    )


def wait_until(condition, process: subprocess.Popen, what: str, timeout: float = 240.0) -> None:
    """Until condition() holds; fails (with the process's output) if the process ends first.
    The timeout only bounds a hang: where the process stops is set by the pause, not by time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"netspec exited {process.returncode} before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} after {timeout} s: {process.communicate()}")
        time.sleep(0.02)


def signals_seen(marker: Path) -> int:
    try:
        return marker.read_text().count("signal ")
    except FileNotFoundError:
        return 0


def interrupt(process: subprocess.Popen, marker: Path, how: str, logdir: Path, mounted: bool) -> tuple[int, str, str]:
    """Interrupt the paused process `how`, let it go on, and return (exit code, stdout, stderr)."""
    wait_until(lambda: marker.is_file() and marker.read_text().strip(), process, "the pause")
    if how == "kill -9":
        process.kill()
    elif how == "full disk":
        make_disk_full(process, logdir, mounted)
    else:
        signum = signal.SIGINT if how == "SIGINT" else signal.SIGTERM
        for n in range(2 if how.endswith("twice") else 1):
            process.send_signal(signum)
            wait_until(lambda n=n: signals_seen(marker) > n, process, f"signal {n + 1} to arrive")
    marker.unlink(missing_ok=True)  # go on
    out, err = process.communicate(timeout=240)
    return process.returncode, out, err


# -- reading runs back ---------------------------------------------------------------------------------


def events_of(directory: Path, up_to: int | None = None) -> dict:
    """Every scalar, histogram, image and text of a TensorBoard run, as {(kind, tag): [(step,
    value)]}, in the order TensorBoard keeps them (steps_per_second: its steps only, a timing),
    the steps <= `up_to` if given."""
    ea = accumulator(directory)
    tags = ea.Tags()
    out = {}
    for tag in tags["scalars"]:
        out["scalar", tag] = [(e.step, None if tag == "steps_per_second" else e.value) for e in ea.Scalars(tag)]
    for tag in tags["histograms"]:
        out["histogram", tag] = [
            (
                e.step,
                tuple(e.histogram_value.bucket),
                tuple(e.histogram_value.bucket_limit),
                e.histogram_value.min,
                e.histogram_value.max,
                e.histogram_value.num,
                e.histogram_value.sum,
                e.histogram_value.sum_squares,
            )
            for e in ea.Histograms(tag)
        ]
    for tag in tags["images"]:
        out["image", tag] = [(e.step, e.encoded_image_string) for e in ea.Images(tag)]
    for tag in tags["tensors"]:
        if not tag.startswith("_hparams_/"):  # the HParams session: its times differ; assert_finished_as looks at it
            out["tensor", tag] = [(e.step, e.tensor_proto.SerializeToString()) for e in ea.Tensors(tag)]
    if up_to is not None:
        out = {key: [point for point in points if point[0] <= up_to] for key, points in out.items()}
        out = {key: points for key, points in out.items() if points}
    return out


SPLITS = ("validation", "test")


def assert_same_events(
    got_dir: Path, want_dir: Path, up_to: int | None = None, splits_up_to: int | None = None
) -> None:
    """The TensorBoard runs of `got_dir` (training, validation/, test/) hold what those of
    `want_dir` do, each step once: all of it, or the steps <= `up_to` (`splits_up_to` for the
    evaluation runs)."""
    for sub in ("", *SPLITS):
        got, want = got_dir / sub, want_dir / sub
        limit = up_to if not sub or splits_up_to is None else splits_up_to
        theirs = events_of(want, limit) if want.is_dir() else {}
        mine = events_of(got, limit) if got.is_dir() else {}
        assert mine.keys() == theirs.keys(), (got, sorted(set(mine) ^ set(theirs)))
        for key in theirs:
            steps = [p[0] for p in mine[key]]
            assert len(steps) == len(set(steps)), f"{got}: {key} has a step twice: {steps}"
            assert mine[key] == theirs[key], f"{got}: {key} differs"


def assert_same_tensors(a: Path, b: Path) -> None:
    left, right = load_file(str(a)), load_file(str(b))
    assert left.keys() == right.keys()
    for key in left:
        assert left[key].dtype == right[key].dtype and left[key].tobytes() == right[key].tobytes(), (
            f"{a.name}: {key} differs"
        )


def assert_finished_as(run_dir: Path, reference: Path, steps: int = STEPS) -> None:
    """Bit for bit the uninterrupted run: parameters and optimizer state, best checkpoint, every
    event of every run at every step, the HParams session's end, result.json but its timings."""
    final = f"checkpoints/step-{steps:08d}.safetensors"
    assert_same_tensors(run_dir / final, reference / final)
    assert_same_tensors(run_dir / "checkpoints" / "best.safetensors", reference / "checkpoints" / "best.safetensors")
    assert_same_events(run_dir, reference)
    got, want = result_of(run_dir), result_of(reference)
    assert {k: v for k, v in got.items() if k not in TIMINGS} == {k: v for k, v in want.items() if k not in TIMINGS}
    assert sorted(accumulator(run_dir).PluginTagToContent("hparams")) == [
        "_hparams_/session_end_info",
        "_hparams_/session_start_info",
    ]


def leftovers(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.name.endswith(".tmp"))


def latest_step(run_dir: Path) -> int | None:
    steps = sorted(int(p.stem.split("-")[1]) for p in (run_dir / "checkpoints").glob("step-*.safetensors"))
    return steps[-1] if steps else None


# -- the matrix ---------------------------------------------------------------------------------------


def _cells():
    for (phase, how), expected in EXPECTED.items():
        marks = [] if (phase, how) in FAST else [pytest.mark.slow]
        yield pytest.param(phase, how, *expected, id=f"{phase}/{how.replace(' ', '-')}", marks=marks)


@pytest.mark.parametrize("phase, how, exit_code, kept", list(_cells()))
def test_an_interrupted_run_ends_clearly_and_resumes_bit_exactly(
    phase, how, exit_code, kept, spec_file, env, reference, tmp_path
):
    logdir, marker = tmp_path / "runs", tmp_path / "paused"
    with small_disk(logdir) if how == "full disk" else contextlib.nullcontext(False) as mounted:
        process = start(spec_file, logdir, env, marker, PHASES[phase][0])
        code, out, err = interrupt(process, marker, how, logdir, mounted)
        run_dir = logdir / "survive" / "r"
        if how == "full disk":
            free_disk(logdir)

        # the end: its exit code and one paragraph (kill -9: nothing), no traceback
        assert code == exit_code, (out, err)
        message = err.strip()
        if how == "kill -9":
            assert message == ""
        else:
            assert message and "\n" not in message and "Traceback" not in message, err
        if how.startswith("SIG"):
            assert message.startswith(
                ("Ctrl-C" if how == "SIGINT" else "SIGTERM") + (" twice: " if how.endswith("twice") else ": ")
            ), message
        if how == "full disk":
            assert ("No space left on device" if mounted else "File too large") in message, message

        # what it says it kept is what is there
        if kept == "none":
            assert not run_dir.exists(), sorted(run_dir.rglob("*"))
            if how != "kill -9":
                assert (
                    "No run directory was created" in message
                    or "Nothing was kept (no run directory remains)" in message
                ), message
            return
        step = latest_step(run_dir)
        if isinstance(kept, tuple):  # which of them a full disk let through
            assert step in kept, step
            kept = step
        assert step == kept, (step, kept)
        assert not (run_dir / "result.json").exists()
        if how != "kill -9":
            if kept is None:
                assert "cannot be resumed" in message and "start again" in message, message
            elif kept == STEPS:
                assert (
                    f"inish the run (final evaluation and result.json, no training) with: netspec resume {run_dir}"
                    in message
                ), message
            else:
                assert f"ontinue with: netspec resume {run_dir}" in message and f"step {kept} of {STEPS}" in message, (
                    message
                )
            assert leftovers(run_dir) == [], leftovers(
                run_dir
            )  # a process that ended by itself removed its temporary files
        # events complete: every summary step up to the kept checkpoint (when there is none, up
        # to the last one summarised), as the uninterrupted run wrote it; the closing's
        # evaluations only once written
        assert_same_events(
            run_dir,
            reference,
            up_to=PHASES[phase][1] if kept is None else kept,
            splits_up_to=STEPS - 1 if phase == "closing-start" else None,
        )

        # the next command: resume finishes the run bit for bit, or says nothing was kept
        resumed, output = cli("resume", run_dir, "--quiet")
        assert leftovers(run_dir) == [], leftovers(run_dir)
        if kept is None:
            assert resumed == 1 and "has no checkpoint to resume from" in output, output
            return
        assert resumed == 0, output
        assert_finished_as(run_dir, reference)


# -- one writer at a time -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGTERM twice"])
def test_a_signal_after_the_run_finished_changes_nothing(how, spec_file, env, reference, tmp_path):
    """Once result.json is written the run is finished: a signal while it reports and exits
    raises nothing (a SIGTERM there came out of the signal handlers' restoring as a traceback, or
    said the run stopped before it started, exit 143); the process exits 0, as finished."""
    marker = tmp_path / "marker"
    process = start(spec_file, tmp_path, env, marker, "done")
    code, out, err = interrupt(process, marker, how, tmp_path, mounted=False)
    assert code == 0 and "Traceback" not in err and "stopped" not in err, (code, out, err)
    assert_finished_as(tmp_path / "survive" / "r", reference)


@pytest.mark.slow
def test_a_second_resume_of_a_run_in_use_is_refused_naming_the_first(spec_file, env, reference, tmp_path):
    logdir, marker = tmp_path / "runs", tmp_path / "paused"
    first = start(spec_file, logdir, env, marker, "chunk:30")
    wait_until(lambda: marker.is_file() and marker.read_text().strip(), first, "the pause")
    run_dir = logdir / "survive" / "r"
    try:
        second = run_netspec("resume", run_dir, "--quiet", env=env, timeout=300)
        assert second.returncode == 1, second.stderr
        message = second.stderr.strip()
        assert "\n" not in message and "Traceback" not in message
        assert f"The run {run_dir} is in use: process {first.pid} on " in message and "netspec run" in message, message
        assert f"kill {first.pid}" in message
        # eval reads a run in use, but leaves its files alone (a write in progress is one of them)
        half = run_dir / "checkpoints" / ".step-00000040.safetensors.inprogress.tmp"
        half.write_bytes(b"another process's write")
        code, output = cli("eval", run_dir)
        assert code == 0, output
        assert half.exists()
    finally:
        marker.unlink(missing_ok=True)
    code, err = first.wait(timeout=240), first.stderr.read()
    assert code == 0, err
    assert_finished_as(run_dir, reference)  # the refused resume wrote nothing into it


@pytest.mark.slow
@pytest.mark.parametrize("command", ["resume", "eval", "predict"])
def test_the_next_command_that_opens_a_run_removes_what_cut_off_writes_left(command, reference, tmp_path):
    """kill -9 during the first checkpoint's write left its temporary file, a full disk a
    0-byte spec.yaml one: whichever command opens the run next removes them."""
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(reference, run_dir)
    (run_dir / "result.json").unlink()  # a run killed in its closing, for resume to finish
    (run_dir / "checkpoints" / ".step-00000020.safetensors.k9x2.tmp").write_bytes(b"half a checkpoint")
    (run_dir / ".spec.yaml.4242.tmp").write_bytes(b"")
    (run_dir / "validation" / ".hparams.4242.tmp").write_bytes(b"")
    if command == "resume":
        code, output = cli("resume", run_dir, "--quiet")
    elif command == "eval":
        code, output = cli("eval", run_dir)
    else:
        np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
        code, output = cli("predict", run_dir, "--input", tmp_path / "x.npy")
    assert code == 0, output
    assert leftovers(run_dir) == []


# after the first evaluation (step 20), the loss must fall by 10 at each: it cannot, so step 40 stops
EARLY = "train.early_stopping={metric: loss, patience: 1, min_delta: 10}"


@pytest.mark.slow
def test_an_early_stopped_run_killed_in_its_closing_is_finished_not_trained_on(spec_file, env, tmp_path):
    """Early stopping ends training before train.steps: the closing checkpoint says so, so a
    resume finishes the run at that step (not trains on to 60), as the uninterrupted run ended."""
    done = run_netspec(
        "run",
        spec_file,
        "--logdir",
        tmp_path / "ref",
        "--quiet",
        "--run-name",
        "r",
        "--set",
        EARLY,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    reference = tmp_path / "ref" / "survive" / "r"
    assert result_of(reference)["stopped"] == "early_stopping" and result_of(reference)["steps"] == 40
    logdir, marker = tmp_path / "runs", tmp_path / "paused"
    process = start(spec_file, logdir, env, marker, "results", EARLY)
    code, _, err = interrupt(process, marker, "kill -9", logdir, False)
    assert code == -9, err
    run_dir = logdir / "survive" / "r"
    code, output = cli("resume", run_dir, "--quiet")
    assert code == 0, output
    assert "Early stopping at step 40" in output
    assert_finished_as(run_dir, reference, steps=40)
    assert [s for s, _ in events_of(run_dir / "validation")["scalar", "loss"]] == [20, 40]  # each evaluation once
    code, output = cli("resume", run_dir, "--quiet")
    assert code == 1 and "already finished: early stopping ended it at step 40 of 60" in output, output


@pytest.mark.slow
def test_a_resume_into_a_full_disk_changes_nothing_and_resumes_once_there_is_space(spec_file, env, reference, tmp_path):
    """It wrote a 0-byte .spec.yaml.*.tmp and left it: now one paragraph, nothing left behind,
    and the run resumes bit for bit once there is space."""
    logdir, marker = tmp_path / "runs", tmp_path / "paused"
    with small_disk(logdir) as mounted:
        process = start(spec_file, logdir, env, marker, "chunk:30")
        code, _, err = interrupt(process, marker, "kill -9", logdir, mounted)
        assert code == -9, err
        run_dir = logdir / "survive" / "r"
        before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"}
        command = [str(NETSPEC), "resume", str(run_dir), "--quiet"]
        if mounted:
            fill(logdir)
            resume_env = env
        else:  # every write that grows a file fails (the limit set before netspec starts); no compilation cache to write
            command = [
                sys.executable,
                "-c",
                "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (0, "
                "resource.RLIM_INFINITY)); os.execv(sys.argv[1], sys.argv[1:])",
                *command,
            ]
            resume_env = {**env, "NETSPEC_JAX_CACHE": ""}
        full = subprocess.run(command, env=resume_env, capture_output=True, text=True, timeout=300)
        free_disk(logdir)
        assert full.returncode == 1, full.stderr
        message = full.stderr.strip()
        assert "\n" not in message and "Traceback" not in message, full.stderr
        assert f"Cannot write the run {run_dir} (spec.yaml): " in message, message
        assert f"The checkpoint at step 20 of {STEPS} and the events up to it are kept" in message
        assert message.endswith(f"Free some space, then continue with: netspec resume {run_dir}"), message
        assert leftovers(run_dir) == []
        assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"} == before
        code, output = cli("resume", run_dir, "--quiet")
        assert code == 0, output
        assert_finished_as(run_dir, reference)
