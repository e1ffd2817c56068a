"""Paths as users type them: every command takes run directories, logdirs and outputs given relative
(`.`, `..`), through a symbolic link (`LINK`, `LINK/..`, which the OS reads through the link and
os.path.abspath reads as text), with spaces; nothing is written anywhere else, and every command a
message suggests works when pasted into a shell from the same directory."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from support import XOR, netspec, write

pytestmark = pytest.mark.slow  # these train

CHECKPOINTED = XOR.replace(
    "summaries: {every: 10, graph: false}", "summaries: {every: 10, graph: false}\ncheckpoint: {every: 10}"
)
SWEPT = CHECKPOINTED.replace("seed: 0\n", "seed: 0\nsweep:\n  seed: [0, 1]\n")


def everything(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


@pytest.mark.parametrize("text", [CHECKPOINTED, SWEPT], ids=["run", "sweep"])
def test_a_logdir_through_a_link_and_up_is_the_directory_the_link_leads_to(tmp_path, monkeypatch, text):
    """`--logdir LINK/..` is LINK's target's parent, as the OS reads it: the run (its checkpoints,
    written through temporary files) and a sweep's members go there, and nothing beside the link."""
    spec = write(tmp_path / "xor.yaml", text)
    (tmp_path / "real" / "runs" / "inner").mkdir(parents=True)
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "link").symlink_to(tmp_path / "real" / "runs" / "inner")
    monkeypatch.chdir(tmp_path / "here")
    result = netspec("run", spec, "--logdir", "link/..", "--run-name", "r", "--quiet")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "real" / "runs" / "xor" / "r"
    done = [run_dir] if text is CHECKPOINTED else [run_dir / "seed=0", run_dir / "seed=1"]
    for d in done:
        assert json.loads((d / "result.json").read_text())["steps"] == 20
        assert "step-00000020.safetensors" in {p.name for p in (d / "checkpoints").iterdir()}
    assert everything(tmp_path / "here") == {Path("link")}


def test_a_sweep_reached_through_a_link_resumes_in_place(tmp_path, monkeypatch):
    import shutil

    spec = write(tmp_path / "xor.yaml", SWEPT)
    assert netspec("run", spec, "--logdir", tmp_path / "runs", "--run-name", "s", "--quiet").exit_code == 0
    sweep_dir = tmp_path / "runs" / "xor" / "s"
    whole = json.loads((sweep_dir / "result.json").read_text())
    shutil.rmtree(sweep_dir / "seed=1")  # a member still to start: its place is read from the sweep's
    (tmp_path / "result.json").write_bytes((sweep_dir / "result.json").read_bytes())
    (sweep_dir / "result.json").unlink()
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "L").symlink_to(sweep_dir)
    monkeypatch.chdir(tmp_path / "here")
    result = netspec("resume", "L", "--quiet")
    assert result.exit_code == 0, result.output
    again = json.loads((sweep_dir / "result.json").read_text())
    assert [(m["member"], m["final"]) for m in again["members"]] == [
        (m["member"], m["final"]) for m in whole["members"]
    ]
    assert all(Path(m["run_dir"]).is_absolute() and Path(m["run_dir"]).parent == sweep_dir for m in again["members"])
    assert everything(tmp_path / "here") == {Path("L")}


def test_the_commands_messages_suggest_work_when_pasted(tmp_path, monkeypatch):
    """A logdir with a space: the report's `tensorboard --logdir` and a finished run's resume
    refusal name it as one shell argument."""
    spec = write(tmp_path / "xor.yaml", CHECKPOINTED)
    monkeypatch.chdir(tmp_path)
    result = netspec("run", spec, "--logdir", "my runs", "--run-name", "r")
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if "tensorboard --logdir" in line]
    assert shlex.split(line.split("view it with:")[1]) == ["tensorboard", "--logdir", "my runs"]
    refused = netspec("resume", "my runs/xor/r")
    assert refused.exit_code == 1
    command = refused.stderr.split("To train longer: ")[1].rstrip(".\n")
    assert shlex.split(command) == ["netspec", "resume", "my runs/xor/r", "--set", "train.steps=N"]


def test_a_run_directory_given_as_dot_is_named_by_its_path(tmp_path, monkeypatch):
    spec = write(tmp_path / "xor.yaml", CHECKPOINTED)
    assert netspec("run", spec, "--logdir", tmp_path, "--run-name", "r", "--quiet").exit_code == 0
    monkeypatch.chdir(tmp_path / "xor" / "r")
    refused = netspec("resume", ".")
    assert refused.exit_code == 1 and f"{tmp_path / 'xor' / 'r'} already finished" in refused.stderr, refused.output


def test_a_logdir_that_is_a_dangling_link_is_said_so(tmp_path):
    spec = write(tmp_path / "xor.yaml", XOR)
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    result = netspec("run", spec, "--logdir", tmp_path / "gone", "--quiet")
    assert result.exit_code == 1
    assert f"{tmp_path / 'gone'} is a symbolic link to {tmp_path / 'nowhere'}, which does not exist" in result.stderr


def test_outputs_name_files_and_their_folders_are_made(tmp_path):
    spec = write(tmp_path / "xor.yaml", XOR)
    assert netspec("run", spec, "--logdir", tmp_path, "--run-name", "r", "--quiet").exit_code == 0
    run_dir = tmp_path / "xor" / "r"
    np.save(tmp_path / "x.npy", np.array([[0, 1], [1, 1]], np.float32))
    for command in (["predict", run_dir, "--input", tmp_path / "x.npy"], ["export", run_dir]):
        refused = netspec(*command, "--output", f"{tmp_path}/out/")
        assert refused.exit_code == 2 and "ends in '/', a directory" in refused.output, refused.output
    assert not (tmp_path / "out").exists()
    made = netspec("predict", run_dir, "--input", tmp_path / "x.npy", "--output", tmp_path / "new" / "p.npy")
    assert made.exit_code == 0, made.output
    assert np.load(tmp_path / "new" / "p.npy").shape == (2, 1)


def test_a_member_named_with_a_trailing_slash_is_that_member(tmp_path):
    spec = write(tmp_path / "xor.yaml", XOR.replace("seed: 0\n", "seed: 0\nsweep:\n  seed: [0, 1]\n"))
    assert netspec("run", spec, "--logdir", tmp_path, "--run-name", "s", "--quiet").exit_code == 0
    sweep_dir = tmp_path / "xor" / "s"
    by_name = netspec("eval", sweep_dir, "--member", "seed=1/", "--split", "train")
    assert by_name.exit_code == 0, by_name.output
    assert by_name.stdout == netspec("eval", sweep_dir / "seed=1", "--split", "train").stdout


@pytest.mark.parametrize(
    "text", [XOR, XOR.replace("seed: 0\n", "seed: 0\nsweep:\n  seed: [0, 1]\n")], ids=["run", "sweep"]
)
def test_a_run_name_that_is_taken_says_where_the_run_went(tmp_path, text):
    spec = write(tmp_path / "xor.yaml", text)
    first = netspec("run", spec, "--logdir", tmp_path, "--run-name", "r")
    assert first.exit_code == 0 and "exists, so this run is" not in first.output, first.output
    again = netspec("run", spec, "--logdir", tmp_path, "--run-name", "r")
    assert again.exit_code == 0, again.output
    assert f"{tmp_path / 'xor' / 'r'} exists, so this run is {tmp_path / 'xor' / 'r-1'}." in again.output
