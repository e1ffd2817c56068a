"""Issue 11, kind 6: the command line can say what the file can. `--set key=null` removes a key
that takes no null (a key that does take null, such as optimizer.momentum, becomes null as in the
file), and setting one key of a mutually exclusive group (train.steps / train.epochs, the data
sources) replaces the others, on `validate`, `run` and `resume` alike."""

from __future__ import annotations

import json

import pytest
from support import XOR, cli, write

from netspec.spec.load import load

EPOCHS = XOR.replace("train: {steps: 20, batch_size: 4}", "train: {epochs: 10, batch_size: 4}")


def loaded(tmp_path, text, *sets):
    return load(write(tmp_path / "spec.yaml", text), list(sets)).data


def test_steps_replaces_epochs_and_epochs_replaces_steps(tmp_path):
    assert loaded(tmp_path, EPOCHS, "train.steps=50")["train"] == {"batch_size": 4, "steps": 50}
    assert loaded(tmp_path, XOR, "train.epochs=3")["train"] == {"batch_size": 4, "epochs": 3}
    assert loaded(tmp_path, XOR, "train={epochs: 3, batch_size: 2}")["train"] == {"epochs": 3, "batch_size": 2}


def test_a_data_source_replaces_the_other_sources(tmp_path):
    data = loaded(tmp_path, XOR, "data.npz={path: set.npz}")["data"]
    assert list(data) == ["npz"]


def test_null_removes_a_key_that_takes_no_null(tmp_path):
    assert "epochs" not in loaded(tmp_path, EPOCHS, "train.epochs=null")["train"]
    assert "metrics" not in loaded(tmp_path, XOR, "metrics=null")
    assert [layer["name"] for layer in loaded(tmp_path, XOR, "model.layers[0]=null")["model"]["layers"]] == [
        "hypothesis"
    ]
    assert "summaries" not in loaded(tmp_path, XOR, "summaries=null")


def test_null_is_a_value_where_the_key_takes_null(tmp_path):
    text = XOR.replace(
        "optimizer: {type: sgd, learning_rate: 0.1}", "optimizer: {type: sgd, learning_rate: 0.1, momentum: 0.9}"
    )
    assert loaded(tmp_path, text, "optimizer.momentum=null")["optimizer"] == {
        "type": "sgd",
        "learning_rate": 0.1,
        "momentum": None,
    }
    text = XOR.replace("optimizer: {type: sgd, learning_rate: 0.1}", "optimizer: {type: adafactor, learning_rate: 0.1}")
    assert loaded(tmp_path, text, "optimizer.clipping_threshold=null")["optimizer"]["clipping_threshold"] is None


@pytest.mark.parametrize(
    "sets, steps", [(["train.steps=7"], 7), (["train.epochs=null", "train.steps=6"], 6), (["train.epochs=2"], 2)]
)
def test_validate_says_what_the_command_line_said(tmp_path, sets, steps):
    spec = write(tmp_path / "spec.yaml", EPOCHS)
    outcome = cli("validate", spec, *[a for s in sets for a in ("--set", s)])
    assert outcome.exit_code == 0, outcome.output
    assert f"{steps} steps" in outcome.output


def test_removing_a_required_key_is_reported_at_the_set(tmp_path):
    spec = write(tmp_path / "spec.yaml", EPOCHS)
    outcome = cli("validate", spec, "--set", "train.epochs=null")
    outcome.assert_clean_failure("--set train.epochs=null: $.train: missing required key 'steps' (or 'epochs')")


@pytest.mark.slow
def test_run_and_resume_take_steps_on_an_epochs_spec(tmp_path):
    spec = write(tmp_path / "spec.yaml", EPOCHS)
    outcome = cli("run", spec, "--set", "train.steps=10", "--logdir", tmp_path / "runs", "--quiet")
    assert outcome.exit_code == 0, outcome.output
    (run_dir,) = (tmp_path / "runs" / "xor").iterdir()
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 10
    outcome = cli("resume", run_dir, "--set", "train.steps=20", "--quiet")
    assert outcome.exit_code == 0, outcome.output
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 20
    assert "steps: 20" in (run_dir / "spec.yaml").read_text() and "epochs" not in (run_dir / "spec.yaml").read_text()


@pytest.mark.slow
def test_resume_of_an_epochs_run_trains_longer_with_steps(tmp_path):
    spec = write(tmp_path / "spec.yaml", EPOCHS)  # 4 examples, batch 4: one step per epoch
    assert cli("run", spec, "--logdir", tmp_path / "runs", "--quiet").exit_code == 0
    (run_dir,) = (tmp_path / "runs" / "xor").iterdir()
    outcome = cli("resume", run_dir, "--set", "train.steps=20", "--quiet")
    assert outcome.exit_code == 0, outcome.output
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 20
