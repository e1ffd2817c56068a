"""Run directories under adversity: a full disk, a logdir that cannot exist, two runs racing for
one name, data gone missing (`netspec predict` on good and bad inputs is tests/test_predict.py's).

Each failure is exit 1 with one clear paragraph and no traceback, and never touches an earlier
run. Tests that train are marked slow (tiny step counts).
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from support import SPECS, assert_complete, assert_one_paragraph, netspec, run_dirs, start_netspec

from netspec.training import wire
from netspec.training.summaries import EventFile

QUICK = ("--set", "train.steps=20", "--set", "summaries.every=10")
XOR = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)


def tree_digest(directory: Path) -> dict[str, str]:
    """Every file under `directory` (relative path -> SHA-256 of its bytes)."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# -- a full disk ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    """A logdir holding one complete run, made before anything goes wrong."""
    logdir = tmp_path_factory.mktemp("full-disk")
    result = netspec("run", SPECS / "xor_nn.yaml", *QUICK, "--logdir", logdir, "--quiet", "--run-name", "earlier")
    assert result.exit_code == 0, result.output
    (run_dir,) = run_dirs(logdir)
    assert_complete(run_dir, 20)
    return logdir, run_dir


def fail_writes_to(monkeypatch, matches):
    """os.write raises ENOSPC, as a full disk does, for every file whose name `matches` (every
    file netspec writes in a run directory goes through os.write; the name comes from /proc)."""
    real = os.write

    def write(fd, data):
        try:
            name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            name = ""
        if matches(name):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


FULL_AT = {  # where the disk is full -> which files' writes fail
    "spec.yaml": lambda name: name.startswith(".spec.yaml."),
    "events": lambda name: name.startswith("events.out.tfevents.") and not name.endswith(".hparams"),
    "checkpoint": lambda name: name.startswith(".step-"),
    "result.json": lambda name: name.startswith(".result.json."),
}


@pytest.mark.slow
@pytest.mark.parametrize("where", sorted(FULL_AT))
def test_a_full_disk_is_one_message_and_spares_earlier_runs(where, earlier_run, monkeypatch):
    """One paragraph naming the run directory and the file, no traceback (tensorboardX's writer
    thread and atexit hook printed 14-29 lines of them), no temporary file left, earlier runs
    untouched; a run whose training had ended is finished by a resume once there is space."""
    logdir, earlier = earlier_run
    before = tree_digest(earlier)
    fail_writes_to(monkeypatch, FULL_AT[where])
    result = netspec("run", SPECS / "xor_nn.yaml", *QUICK, "--logdir", logdir, "--quiet", "--run-name", f"full-{where}")
    monkeypatch.undo()
    message = assert_one_paragraph(result, "No space left on device", single_line=False)
    run_dir = logdir / "xor_nn" / f"full-{where}"
    assert f"Cannot write the run {run_dir} (" in message  # the run directory and the file in it, not the logdir
    assert tree_digest(earlier) == before
    assert not (run_dir / "result.json").exists()  # never looks finished
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")], "a temporary file was left"
    if where == "result.json":  # training had ended: the closing checkpoint is kept, a resume finishes the run
        assert (
            f"Free some space, then finish the run (final evaluation and result.json, no training) with: netspec resume {run_dir}"
            in message
        )
        finished = netspec("resume", run_dir, "--quiet")
        assert finished.exit_code == 0, finished.output
        assert_complete(run_dir, 20)
    else:  # nothing to resume from: start again, here or elsewhere
        assert "No checkpoint had been written yet" in message or "Nothing was kept" in message, message
        assert "--logdir" in message, message


def event_steps(path: Path) -> list[int]:
    """The steps of the Summary events in one event file, as TensorBoard's own loader reads them
    (it stops at a half record, as it would wait for the rest)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return [e.step for e in EventFileLoader(str(path)).Load() if e.HasField("summary")]


def loss_event(step: int) -> bytes:
    return wire.event(1.0, step, [wire.scalar_value("loss", step / 10)])


def test_held_events_are_written_in_their_order_with_the_next_write(tmp_path):
    """A sweep's members hold their events between writes: a held event is in the file only once
    an event not held, `flush`, `sync` or `close` writes it, and the file is then as if each had
    been written alone."""
    events = EventFile(tmp_path)
    events.add_serialized(loss_event(1), hold=True)
    events.add_serialized(loss_event(2), hold=True)
    assert event_steps(events.path) == []
    events.add_serialized(loss_event(3))
    assert event_steps(events.path) == [1, 2, 3]
    for step, write in [(4, events.flush), (5, events.sync), (6, events.close)]:
        events.add_serialized(loss_event(step), hold=True)
        write()
        assert event_steps(events.path) == list(range(1, step + 1))
    with pytest.raises(AssertionError, match="an event after close"):  # held or not, never silently dropped
        events.add_serialized(loss_event(7), hold=True)
    alone = EventFile(tmp_path / "alone")
    for step in range(1, 7):
        alone.add_serialized(loss_event(step))
    alone.close()
    assert after_first_record(events.path) == after_first_record(alone.path)


def after_first_record(path: Path) -> bytes:
    """An event file's bytes after its first record (the file_version event, stamped when made)."""
    data = path.read_bytes()
    return data[12 + int.from_bytes(data[:8], "little") + 4 :]


def test_a_full_disk_part_way_through_held_events_cuts_the_file_back_to_the_whole_records_before(tmp_path, monkeypatch):
    """The disk fills part way through a write of held events: the OSError is raised, the file
    ends at the last record written before (TensorBoard reads every event in it, none half), and
    once there is space again the file goes on from there."""
    events = EventFile(tmp_path)
    events.add_serialized(loss_event(1))
    real = os.write

    def half(fd, data):
        real(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    for step in (2, 3):
        events.add_serialized(loss_event(step), hold=True)
    monkeypatch.setattr(os, "write", half)
    with pytest.raises(OSError, match="No space left on device"):
        events.add_serialized(loss_event(4))
    monkeypatch.undo()
    assert event_steps(events.path) == [1]
    size = events.path.stat().st_size
    events.add_serialized(loss_event(5), hold=True)
    events.close()  # the held events that failed are not written again: only 5
    assert event_steps(events.path) == [1, 5] and events.path.stat().st_size > size


# -- a logdir that cannot be -----------------------------------------------------------------------


@pytest.mark.parametrize("below", ["file.txt/runs", "file.txt/a/b"])
def test_a_logdir_under_a_file_is_refused_before_training(tmp_path, below):
    (tmp_path / "file.txt").write_text("not a directory\n")
    logdir = tmp_path / below
    result = netspec("run", SPECS / "xor_nn.yaml", *QUICK, "--logdir", logdir, "--quiet")
    message = assert_one_paragraph(result, "Not a directory", "--logdir", single_line=False)
    assert str(tmp_path / "file.txt") in message, message
    assert (tmp_path / "file.txt").read_text() == "not a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_a_logdir_that_is_a_file_is_a_bad_command_line(tmp_path):
    (tmp_path / "file.txt").write_text("not a directory\n")
    result = netspec("run", SPECS / "xor_nn.yaml", *QUICK, "--logdir", tmp_path / "file.txt", "--quiet")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output  # click's check of --logdir
    assert "is a file" in result.stderr
    assert (tmp_path / "file.txt").read_text() == "not a directory\n"


@pytest.mark.parametrize("name", ["../../escaped", "..", "a/b", "/tmp/abs"])
def test_a_run_name_cannot_leave_the_logdir(tmp_path, name):
    result = netspec(
        "run", SPECS / "xor_nn.yaml", *QUICK, "--logdir", tmp_path / "logs" / "runs", "--quiet", "--run-name", name
    )
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "a run name is one directory name" in result.stderr
    assert list(tmp_path.iterdir()) == []


# -- two runs racing for one name -------------------------------------------------------------------


@pytest.mark.slow
def test_two_runs_started_together_get_two_complete_directories(tmp_path):
    env = {
        **os.environ,
        "NETSPEC_JAX_CACHE": str(tmp_path / "jax-cache"),
    }  # shared, empty: both compile and write it at once
    command = ["run", SPECS / "xor_nn.yaml", *QUICK, "--logdir", tmp_path / "runs", "--quiet", "--run-name", "x"]
    processes = [start_netspec(*command, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    for p, (out, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, (out, err)
        assert "Traceback" not in err
    runs = run_dirs(tmp_path / "runs")
    assert [p.name for p in runs] == ["x", "x-1"]
    for run_dir in runs:
        assert_complete(run_dir, 20)
        assert list(run_dir.glob("events.out.tfevents.*"))  # the training run is the run directory
    assert (runs[0] / "spec.yaml").read_text() == (runs[1] / "spec.yaml").read_text()


# -- data gone missing ------------------------------------------------------------------------------

NPZ_SPEC = """\
name: from_npz
data:
  npz: {path: points.npz}
model:
  input: [2]
  layers:
    - {name: out, type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {type: sgd, learning_rate: 0.1}
train: {steps: 20, batch_size: 4}
summaries: {every: 10}
"""


def npz_spec(directory: Path) -> Path:
    np.savez(directory / "points.npz", x=XOR, y=np.array([[0], [1], [1], [0]], np.float32))
    spec = directory / "spec.yaml"
    spec.write_text(NPZ_SPEC)
    assert netspec("validate", spec).exit_code == 0
    return spec


def test_a_missing_data_file_stops_the_run_before_a_run_directory_exists(tmp_path):
    spec = npz_spec(tmp_path)
    (tmp_path / "points.npz").unlink()
    result = netspec("run", spec, "--logdir", tmp_path / "runs", "--quiet")
    assert_one_paragraph(result, str(tmp_path / "points.npz"), "data.npz.path", single_line=False)
    assert not (tmp_path / "runs").exists()


def test_data_that_vanishes_after_the_check_stops_the_run_before_a_run_directory_exists(tmp_path, monkeypatch):
    from netspec import cli

    spec = npz_spec(tmp_path)
    real = cli._load_and_check

    def check_then_delete(*args, **kwargs):
        checked = real(*args, **kwargs)
        (tmp_path / "points.npz").unlink()
        return checked

    monkeypatch.setattr(cli, "_load_and_check", check_then_delete)
    result = netspec("run", spec, "--logdir", tmp_path / "runs", "--quiet")
    assert_one_paragraph(result, str(tmp_path / "points.npz"), single_line=False)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kind", ["run", "sweep"])
def test_a_held_directory_is_refused_as_a_run_or_as_a_sweep(tmp_path, kind):
    from netspec.errors import NetspecError
    from netspec.training.rundir import SWEEP_FILE, lock

    if kind == "sweep":
        (tmp_path / SWEEP_FILE).write_text("{}")
    held = lock(tmp_path)  # a second open file of the lock: refused as another process's would be
    try:
        with pytest.raises(NetspecError, match=f"^The {kind} {tmp_path} is in use: process "):
            lock(tmp_path)
    finally:
        held.release()
