"""Issue 11, kind 5: model selection never looks at the test set silently. Early stopping and the
best checkpoint choose on a validation split; a spec that would choose on the test split is
refused by `netspec validate` with how to hold a validation split out; with one, evaluations
during training run on it, and the test split is measured once, at the end, for the record."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import accumulator, cli, write

SPEC = """\
name: select
seed: 1
data:
  npz: {{path: d.npz}}
{extra_data}model:
  input: [4]
  layers:
    - {{name: hidden, type: dense, units: 8, activation: tanh}}
    - {{name: output, type: dense, units: 3, activation: softmax}}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
optimizer: {{type: adam, learning_rate: 0.01}}
train:
  steps: 60
  batch_size: 8
{early}eval:
  every: 20
{split}checkpoint:
  every: 20
{best}summaries:
  every: 20
"""


@pytest.fixture
def data_dir(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)).astype(np.int64)
    np.savez(tmp_path / "d.npz", x_train=x[:48], y_train=y[:48], x_test=x[48:], y_test=y[48:])
    return tmp_path


def spec(data_dir, *, validation=False, early=False, best=False, split=None):
    text = SPEC.format(
        extra_data="  validation_split: 0.25\n" if validation else "",
        early="  early_stopping: {metric: accuracy, patience: 2}\n" if early else "",
        split=f"  split: {split}\n" if split else "",
        best="  best: loss\n" if best else "",
    )
    return write(data_dir / "spec.yaml", text)


def line_of(path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize(
    "early, best", [(True, False), (False, True), (True, True)], ids=["early_stopping", "best", "both"]
)
def test_selecting_on_the_test_split_is_refused(data_dir, early, best):
    path = spec(data_dir, early=early, best=best)
    outcome = cli("validate", path)
    outcome.assert_clean_failure("no validation split", "test split", "overstate", "data.validation_split: 0.1")
    (problem,) = [row for row in outcome.output.splitlines() if row.startswith("  ")]
    key = "early_stopping:" if early else "best:"
    assert f"spec.yaml:{line_of(path, key)}:" in problem, problem


def test_an_explicit_test_split_with_a_validation_split_is_refused_at_eval_split(data_dir):
    path = spec(data_dir, validation=True, early=True, split="test")
    outcome = cli("validate", path)
    outcome.assert_clean_failure("eval.split is test", "eval.split: validation")
    assert f"spec.yaml:{line_of(path, 'split: test')}:" in outcome.output


@pytest.mark.parametrize("early, best", [(True, False), (False, True)], ids=["early_stopping", "best"])
def test_with_a_validation_split_selection_is_accepted_and_runs_on_it(data_dir, early, best):
    assert cli("validate", spec(data_dir, validation=True, early=early, best=best)).exit_code == 0


def test_without_selection_the_test_split_may_be_watched(data_dir):
    """Evaluations that choose nothing may run on the test split, as the lecture's programs do."""
    assert cli("validate", spec(data_dir)).exit_code == 0


@pytest.mark.slow
def test_a_run_selects_on_validation_and_reports_test_once(data_dir):
    path = spec(data_dir, validation=True, best=True)
    outcome = cli("run", path, "--logdir", data_dir / "runs", "--quiet")
    assert outcome.exit_code == 0, outcome.output
    (run_dir,) = (data_dir / "runs" / "select").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert "split: validation" in (run_dir / "spec.yaml").read_text()
    assert {"validation_loss", "validation_accuracy", "test_loss", "test_accuracy"} <= set(result["final"])
    # the best checkpoint is the step whose *validation* loss was lowest; the test split was measured once, at the end
    validation = {e.step: e.value for e in accumulator(run_dir / "validation").Scalars("loss")}
    assert sorted(validation) == [0, 20, 40, 60] or sorted(validation) == [20, 40, 60], validation
    assert result["best"]["best_step"] == min(
        (s for s in validation if s), key=lambda s: (validation[s], s)
    )  # the last step counts too
    assert [e.step for e in accumulator(run_dir / "test").Scalars("loss")] == [60]
    # netspec eval reports the honest number: the test split, of the model chosen on validation
    outcome = cli("eval", run_dir)
    assert outcome.exit_code == 0, outcome.output
    assert (
        outcome.output
        == cli("eval", run_dir, "--split", "test").output
        != cli("eval", run_dir, "--split", "validation").output
    )
