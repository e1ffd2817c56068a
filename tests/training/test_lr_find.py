"""The learning-rate range test (netspec/training/lr_find.py, `netspec lr-find`): on a quadratic
whose divergence threshold is known (plain SGD on a loss of largest curvature L diverges above
2/L), the rates above it diverge, those below it train, and the suggestion lies below it and within
two decades of it; the curve is an image in the test directory's own event file, the same PNG as
lr_find.png; the command prints the API's suggestion; bad options, and a spec with a sweep, are one
paragraph and exit 1, nothing written."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from support import XOR, accumulator, assert_one_paragraph, netspec, result_of, write

from netspec.cli import lr_find as lr_find_command
from netspec.errors import NetspecError
from netspec.training.lr_find import (
    DEFAULT_MAX_LR,
    DEFAULT_MEMBERS,
    DEFAULT_MIN_LR,
    HEIGHT,
    IMAGE_FILE,
    IMAGE_TAG,
    RESULT_FILE,
    WIDTH,
    loss_of,
    lr_find,
    plot,
    rates_between,
    suggest,
)

# A least-squares fit with one dense unit, no bias, from zero weights, the whole data set each step:
# the loss is the quadratic mean((x . w - y)^2), its Hessian (2/n) X^T X. A cosine schedule is
# written on purpose: the test replaces it with each constant rate.
X = [[2.0, 0.0], [0.0, 1.0], [-2.0, 0.0], [0.0, -1.0]]
Y = [[2.0], [1.0], [-2.0], [-1.0]]
QUADRATIC = f"""\
name: quadratic
seed: 0
data:
  inline:
    x: {X}
    y: {Y}
model:
  input: [2]
  layers:
    - {{name: w, type: dense, units: 1, use_bias: false, kernel_init: zeros}}
loss: mean_squared_error
optimizer: {{type: sgd, learning_rate: {{type: cosine_decay, init_value: 0.1, decay_steps: 100}}}}
train: {{steps: 100, batch_size: 4, shuffle: false}}
summaries: {{every: 10, graph: false}}
"""
STEPS = 100
RANGE = {"min_lr": 1e-3, "max_lr": 10.0, "members": 16}


def divergence_threshold() -> float:
    """2 / L, L the largest eigenvalue of the loss's Hessian (2/n) X^T X."""
    x = np.asarray(X)
    return 2.0 / float(np.linalg.eigvalsh(2.0 / len(x) * x.T @ x).max())


def initial_loss() -> float:
    """The loss at the starting weights, zero: mean(y^2)."""
    return float(np.mean(np.square(Y)))


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    """The API's range test on the quadratic."""
    spec = write(tmp_path_factory.mktemp("spec") / "quadratic.yaml", QUADRATIC)
    logdir = tmp_path_factory.mktemp("runs")
    return lr_find(spec, steps=STEPS, logdir=logdir, echo=lambda line: None, **RANGE)


@pytest.fixture(scope="module")
def printed(tmp_path_factory) -> tuple[str, Path]:
    """The command on the same quadratic written as a sweep (`--set sweep=null` takes its plain
    spec), without --steps (the spec's own 100 are fewer than the default 300): (stdout, logdir)."""
    text = QUADRATIC.replace("seed: 0\n", "seed: 0\nsweep:\n  seed: [0, 1]\n")
    spec = write(tmp_path_factory.mktemp("spec") / "quadratic.yaml", text)
    logdir = tmp_path_factory.mktemp("runs")
    args = ["--min-lr", RANGE["min_lr"], "--max-lr", RANGE["max_lr"], "--members", RANGE["members"]]
    result = netspec("lr-find", spec, "--set", "sweep=null", *args, "--logdir", logdir)
    assert result.exit_code == 0, result.output
    return result.stdout, logdir


# -- trained --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_rates_above_the_threshold_diverge_and_those_below_train(found):
    threshold = divergence_threshold()
    assert found.rates == sorted(found.rates) and len(found.rates) == RANGE["members"]
    assert found.rates[0] == RANGE["min_lr"] and found.rates[-1] == RANGE["max_lr"]
    for rate, loss in zip(found.rates, found.losses, strict=True):
        if rate > threshold:
            assert loss == math.inf or loss > initial_loss(), (rate, loss)
        else:
            assert loss < initial_loss(), (rate, loss)


@pytest.mark.slow
def test_the_suggestion_is_a_tenth_of_the_lowest_and_safely_below_the_threshold(found):
    threshold = divergence_threshold()
    best = min(range(len(found.losses)), key=found.losses.__getitem__)
    assert found.minimum == found.rates[best] < threshold
    assert found.suggestion == pytest.approx(found.minimum / 10, rel=1e-2)
    assert threshold / 100 < found.suggestion < threshold
    assert "fastai's minimum rule" in found.reason and "\n" not in found.reason


@pytest.mark.slow
def test_each_rate_is_a_constant_rate_trained_for_the_steps_asked(found):
    for rate, run_dir in zip(found.rates, found.run_dirs, strict=True):
        assert result_of(run_dir)["steps"] == STEPS
        ran = yaml.safe_load((run_dir / "spec.yaml").read_text())
        assert ran["optimizer"]["learning_rate"] == pytest.approx(rate)  # the schedule replaced by a number
        assert ran["train"]["on_nonfinite"] == "ignore"


@pytest.mark.slow
def test_the_curve_is_an_image_in_the_tests_own_event_file_and_a_png_beside_it(found):
    assert found.event_file.parent == found.directory and found.image == found.directory / IMAGE_FILE
    (event,) = accumulator(found.directory).Images(IMAGE_TAG)
    assert (event.width, event.height) == (WIDTH, HEIGHT)
    assert event.encoded_image_string == found.image.read_bytes()
    decoded = Image.open(io.BytesIO(event.encoded_image_string))
    assert decoded.format == "PNG" and decoded.size == (WIDTH, HEIGHT) and decoded.mode == "RGB"
    record = json.loads((found.directory / RESULT_FILE).read_text())
    assert record["suggestion"] == found.suggestion and record["rates"] == found.rates
    assert record["losses"] == [None if loss == math.inf else loss for loss in found.losses]


@pytest.mark.slow
def test_the_command_prints_the_apis_suggestion_and_where_the_test_is(found, printed):
    out, logdir = printed
    (suggestion,) = re.findall(r"^Suggested learning rate: (\S+) \(", out, re.MULTILINE)
    assert float(suggestion) == found.suggestion
    (directory,) = (logdir / "quadratic").glob("lr-find-*")
    assert f"tensorboard --logdir {directory}" in out and str(directory / IMAGE_FILE) in out
    assert json.loads((directory / RESULT_FILE).read_text())["steps"] == STEPS  # capped by the spec's own steps
    assert "ranked by" not in out  # the sweep's own ranking (by the last step's loss) is not printed
    # the table of every rate's loss, under its header, the lowest marked
    lines = out.splitlines()
    header = lines.index(next(line for line in lines if line.split() == ["learning", "rate", "loss"]))
    rows = lines[header + 1 : header + 1 + len(found.rates)]
    assert [float(row.split()[0]) for row in rows] == pytest.approx(found.rates, rel=1e-2)
    assert sum("<- lowest" in row for row in rows) == 1


# -- not trained -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["--min-lr", "0"], ["--min-lr", "above 0"]),
        (["--min-lr", "nan"], ["--min-lr"]),
        (["--min-lr", "1", "--max-lr", "0.1"], ["--max-lr", "above --min-lr"]),
        (["--max-lr", "inf"], ["--max-lr"]),
        (["--members", "2"], ["--members", "from 3"]),
        (["--members", "5000"], ["--members", "1024"]),
        (["--steps", "0"], ["--steps", "at least 1"]),
    ],
)
def test_a_bad_option_is_one_paragraph_and_nothing_is_written(tmp_path, args, words):
    logdir = tmp_path / "runs"
    result = netspec("lr-find", write(tmp_path / "xor.yaml", XOR), *args, "--logdir", logdir)
    assert_one_paragraph(result, *words)
    assert not logdir.exists()


def test_a_spec_with_a_sweep_is_refused_saying_how_to_test_its_plain_spec(tmp_path):
    spec = write(tmp_path / "s.yaml", XOR.replace("seed: 0\n", "seed: 0\nsweep:\n  seed: [0, 1]\n"))
    logdir = tmp_path / "runs"
    assert_one_paragraph(netspec("lr-find", spec, "--logdir", logdir), "has a sweep key", "--set sweep=null")
    assert not logdir.exists()


def test_the_commands_defaults_are_the_apis():
    defaults = {p.name: p.default for p in lr_find_command.params}
    assert (defaults["min_lr"], defaults["max_lr"], defaults["members"]) == (
        DEFAULT_MIN_LR,
        DEFAULT_MAX_LR,
        DEFAULT_MEMBERS,
    )


def test_rates_are_log_spaced_from_min_to_max_and_kept_apart():
    rates = rates_between(1e-6, 1.0, 16)
    assert rates[0] == 1e-6 and rates[-1] == 1.0 and len(set(rates)) == 16
    np.testing.assert_allclose(np.diff(np.log10(rates)), 0.4, atol=0.01)  # 3 significant digits
    assert len(set(rates_between(1e-3, 1.0001e-3, 5))) == 5  # too close for 3 digits: more are kept


def test_a_members_loss_is_the_mean_over_the_last_fifth_and_infinite_once_not_finite():
    logged = [(s, float(100 - s)) for s in range(0, 101, 5)]  # steps 0..100 every 5: 80..100 is the last fifth
    assert loss_of(logged, 100) == pytest.approx(np.mean([20, 15, 10, 5, 0]))
    assert loss_of([*logged[:-1], (100, math.nan)], 100) == math.inf
    assert loss_of([], 100) == math.inf


def test_the_rule_names_a_minimum_at_either_end_of_the_range():
    rates = [1e-3, 1e-2, 1e-1, 1.0]
    minimum, suggestion, reason = suggest(rates, [3.0, 2.0, 1.0, math.inf], 50)
    assert (minimum, suggestion) == (1e-1, 1e-2) and "--m" not in reason
    assert "larger --max-lr" in suggest(rates, [3.0, 2.0, 1.5, 1.0], 50)[2]
    assert "smaller --min-lr" in suggest(rates, [1.0, 2.0, 3.0, math.inf], 50)[2]
    # a flat curve says so; one that rises steeply from its lowest point does not
    assert "hardly changed" in suggest(rates, [1.0, 1.005, 1.002, 1.009], 50)[2]
    assert "hardly changed" not in suggest(rates, [0.76, 5.0, 1e10, 1.3e37], 50)[2]
    with pytest.raises(NetspecError, match="Every rate"):
        suggest(rates, [math.inf] * 4, 50)


@pytest.mark.parametrize(
    "losses",
    [[2.0, 1.0, 0.5, 9.0, math.inf], [1.0] * 5, [math.inf] * 5, [2.0, 1e30, 1.0, 0.5, 3.0]],
    ids=["valley", "flat", "diverged", "huge"],
)
def test_the_plot_is_a_png_of_the_documented_size_whatever_the_losses(losses):
    rates = rates_between(1e-4, 1.0, 5)
    finite = [i for i, loss in enumerate(losses) if math.isfinite(loss)]
    minimum = rates[min(finite, key=losses.__getitem__)] if finite else None
    png = plot(rates, losses, minimum=minimum, suggestion=minimum and minimum / 10, title="t")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
    # the legend (the bottom band) names only the markers drawn: a red cross for a diverged rate
    legend = np.asarray(image.convert("RGB"))[HEIGHT - 16 : HEIGHT - 3]
    red = (np.abs(legend.astype(int) - (214, 39, 40)).sum(axis=-1) < 60).any()
    assert red == (not all(math.isfinite(loss) for loss in losses)), losses
