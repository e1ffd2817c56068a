"""netspec.training.sweep without training: how members are judged and ranked (the validation
split's figure, else the training data's, never the test split's), and the HParams a member
writes (every swept key, as the sweep names it). Training a sweep is tests/e2e/test_sweep.py's."""

from __future__ import annotations

import json

import pytest
from support import XOR, write

from netspec.spec.sweep import load_sweep
from netspec.training.rundir import SWEEP_FILE, swept_keys
from netspec.training.summaries import hparams_of
from netspec.training.sweep import rank, selection

HELD_OUT = XOR.replace(
    "    x: [[0, 0], [0, 1], [1, 0], [1, 1]]\n    y: [[0], [1], [1], [0]]\n",
    "    x: [[0, 0], [0, 1], [1, 0], [1, 1], [0, 0], [0, 1], [1, 0], [1, 1]]\n"
    "    y: [[0], [1], [1], [0], [0], [1], [1], [0]]\n  validation_split: 0.25\n",
)


def sweep_of(tmp_path, text: str, block: str):
    return load_sweep(write(tmp_path / "spec.yaml", text.replace("seed: 0\n", "seed: 0\n" + block, 1)))


def finish(sweep_dir, member, final: dict, best: dict | None = None) -> None:
    """Write the member's result.json as a finished run has it."""
    write(sweep_dir / member.name / "result.json", json.dumps({"steps": 20, "final": final, "best": best}))


def test_without_a_validation_split_members_are_judged_on_the_training_loss(tmp_path):
    sweep = sweep_of(tmp_path, XOR, "sweep:\n  seed: [0, 1, 2]\n")
    assert selection([m.spec for m in sweep.members]) == {"split": "train", "tag": "loss", "mode": "min"}
    a, b, c = sweep.members
    finish(tmp_path, a, {"loss": 0.5, "test_loss": 0.1})  # a test figure is never the one judged
    finish(tmp_path, b, {"loss": 0.2, "test_loss": 0.9})
    ranked = rank(sweep, tmp_path, {c.name: "Training stopped at step 2: ..."})
    assert [(r["rank"], r["member"], r["status"], r["selection"]) for r in ranked.members] == [
        (1, b.name, "finished", 0.2),
        (2, a.name, "finished", 0.5),
        (3, c.name, "failed", None),
    ]
    assert ranked.members[2]["error"].startswith("Training stopped") and ranked.failed == [c.name]
    assert ranked.members[0]["values"] == {"seed": 1} and ranked.members[0]["run_dir"] == str(tmp_path / b.name)


def test_with_a_validation_split_members_are_judged_on_it_by_their_best_checkpoint(tmp_path):
    text = HELD_OUT.replace("metrics: [accuracy]", "metrics: [accuracy]\ncheckpoint: {best: accuracy}")
    sweep = sweep_of(tmp_path, text, "sweep:\n  seed: [0, 1, 2]\n")
    assert selection([m.spec for m in sweep.members]) == {"split": "validation", "tag": "accuracy", "mode": "max"}
    a, b, c = sweep.members
    finish(tmp_path, a, {"loss": 0.1, "accuracy": 1.0, "validation_accuracy": 0.5, "test_accuracy": 1.0}, {"best": 0.5})
    finish(tmp_path, b, {"loss": 0.9, "accuracy": 0.5, "validation_accuracy": 0.5}, {"best": 1.0})
    finish(tmp_path, c, {"loss": float("nan"), "validation_accuracy": None}, {"best": None})
    ranked = rank(sweep, tmp_path, {})
    assert [(r["member"], r["selection"]) for r in ranked.members] == [(b.name, 1.0), (a.name, 0.5), (c.name, None)]
    assert not ranked.failed


def test_without_a_best_checkpoint_the_final_validation_figure_is_judged(tmp_path):
    sweep = sweep_of(tmp_path, HELD_OUT, "sweep:\n  seed: [0, 1]\n")
    assert selection([m.spec for m in sweep.members])["split"] == "validation"
    a, b = sweep.members
    finish(tmp_path, a, {"loss": 0.1, "validation_loss": 0.7})
    finish(tmp_path, b, {"loss": 0.9, "validation_loss": 0.3})
    assert [r["member"] for r in rank(sweep, tmp_path, {}).members] == [b.name, a.name]


def test_members_that_select_differently_are_judged_on_the_training_loss(tmp_path):
    sweep = sweep_of(tmp_path, HELD_OUT, "sweep:\n  data.validation_split: [0.0, 0.25]\n")
    assert selection([m.spec for m in sweep.members]) == {"split": "train", "tag": "loss", "mode": "min"}


def test_a_members_hparams_hold_every_swept_key(tmp_path):
    block = "sweep:\n  train.shuffle: [true, false]\n  optimizer.learning_rate: [0.1, {type: constant, value: 0.2}]\n"
    sweep = sweep_of(tmp_path, XOR, block)
    rows = [hparams_of(m.spec) for m in sweep.members]
    assert [(r["train.shuffle"], r["optimizer.learning_rate"]) for r in rows] == [
        (True, 0.1),
        (True, json.dumps({"type": "constant", "value": 0.2})),
        (False, 0.1),
        (False, json.dumps({"type": "constant", "value": 0.2})),
    ]
    assert "train.shuffle" not in hparams_of(load_sweep(tmp_path / "spec.yaml", ["sweep={seed: [0]}"]).members[0].spec)


@pytest.mark.parametrize("listed", [True, False])
def test_a_member_run_directory_knows_its_sweep_keys(tmp_path, listed):
    """So a member resumed on its own (`netspec resume SWEEP_DIR/MEMBER`) keeps them in HParams."""
    record = {"keys": ["optimizer.learning_rate", "seed"], "members": [{"name": "learning_rate=0.1,seed=0"}]}
    write(tmp_path / SWEEP_FILE, json.dumps(record))
    name = "learning_rate=0.1,seed=0" if listed else "other"
    assert swept_keys(tmp_path / name) == (("optimizer.learning_rate", "seed") if listed else ())
    assert swept_keys(tmp_path / "nowhere" / "run") == ()


@pytest.mark.parametrize("on_nonfinite, loss_scale", [("stop", False), ("skip_step", False), ("stop", True)])
def test_a_groups_values_are_each_members_chunk_values(tmp_path, on_nonfinite, loss_scale):
    """`member_columns` reads a group's stacked outputs at once; each member's row is what
    `chunk_values` gives for its slice, in the same order (the order the scalars are written)."""
    import numpy as np

    from netspec.compile.members import unstack
    from netspec.compile.state import ChunkOutputs
    from netspec.spec import load_spec
    from netspec.training.callbacks import chunk_values, member_columns

    text = XOR.replace(
        "train: {steps: 20, batch_size: 4}", f"train: {{steps: 20, batch_size: 4, on_nonfinite: {on_nonfinite}}}"
    )
    spec = load_spec(write(tmp_path / "s.yaml", text))
    rng = np.random.default_rng(0)
    members = 5
    outputs = ChunkOutputs(
        loss=rng.standard_normal((members, 7)).astype(np.float32),
        metrics={"accuracy": rng.random(members).astype(np.float32), "mae": rng.random(members).astype(np.float32)},
        learning_rate=rng.random(members).astype(np.float32),
        skipped_steps=rng.integers(0, 9, members).astype(np.int32),
        loss_scale=rng.random(members).astype(np.float32) if loss_scale else None,
        nonfinite_layer=np.full(members, -1, np.int32),
        nonfinite_step=np.zeros(members, np.int32),
        nonfinite=None,
    )
    each = unstack(outputs, members)
    columns = member_columns(spec, outputs)
    for m in range(members):
        expected = chunk_values(spec, each[m])
        row = {name: column[m] for name, column in columns.items()}
        assert row == expected and list(row) == list(expected)


@pytest.mark.parametrize(
    "with_checkpoint, said",
    [
        (3, "each keeps its last checkpoint and the events up to it"),
        (0, "none had written a checkpoint yet, so each starts again when the sweep resumes"),
        (1, "1 keep their last checkpoint and the events up to it; the other 2, with no checkpoint yet, start again"),
    ],
)
def test_a_stopped_groups_message_says_which_members_keep_a_checkpoint(tmp_path, with_checkpoint, said):
    """A group stopped before its members' first checkpoint (a second Ctrl-C while it compiles)
    does not promise checkpoints it never wrote."""
    from types import SimpleNamespace

    from netspec.training.members import _kept

    members = [SimpleNamespace(run_dir=tmp_path / f"m{i}") for i in range(3)]
    for m in members[:with_checkpoint]:
        write(m.run_dir / "checkpoints" / "step-20.safetensors", "")
    assert _kept(members).startswith(said)
