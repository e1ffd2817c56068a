"""A learning-rate range test for free: N constant rates trained together, the loss against the rate.

Contract. `lr_find(path, overrides=(), *, min_lr=1e-6, max_lr=1.0, members=16, steps=None,
logdir="runs", ...) -> LRFindResult` (`netspec lr-find SPEC`) makes a sweep of the spec file at
`path` (`--set` `overrides` applied first) over `optimizer.learning_rate`: `members` constant
rates, log-spaced from `min_lr` to `max_lr` (numpy's geomspace, each rounded to 3 significant
digits while that keeps them apart). A learning-rate schedule in the spec is replaced: the test is
of constant rates. Each member trains `steps` steps (default: `DEFAULT_STEPS`, or the spec's own
length when that is shorter; an explicit `steps` is taken as given, longer or not). The members
share every shape, so `netspec.training.sweep.run_sweep` trains them together in one vmapped
program; this module adds no training loop of its own. The sweep directory is the test's:

    <logdir>/<spec name>/lr-find-<time>/   `run_sweep`'s sweep directory (sweep.yaml, sweep.json,
                                           result.json), `tensorboard --logdir` it
      learning_rate=1e-06/ ...             one ordinary run directory per rate
      lr_find.png                          the loss against the rate (`plot`), WIDTH x HEIGHT
      events.out.tfevents.*                the same PNG as the TensorBoard image `IMAGE_TAG`: the
                                           directory is a run of its own beside its members
      lr_find.json                         the rates, their losses, the suggestion and its reason

What the members run differs from the spec only where a range test needs it (`_test_overrides`):
`train.steps`; `train.on_nonfinite: ignore`, so a rate too high to train goes on with its NaN
instead of failing the command, and is plotted as diverged; no early stopping, no evaluations
during training (the closing evaluation stays), no checkpoints but the last, no best checkpoint;
`summaries.every` a twentieth of the steps (`_every`), the scalars `loss`, `metrics`,
`learning_rate`; no histograms and no graph.

A member's loss (`loss_of`) is the mean of the training losses its run logged over the last fifth
of its steps (each the loss of one batch at a multiple of `summaries.every`, about five of them):
one batch's loss is noisy, and a mean over the end of training is not. A member whose loss there
is not finite (NaN, Inf) counts as infinite: diverged.

The suggestion (`suggest`) is fastai's "minimum" rule (`lr_min`, fastai 2's
`SuggestionMethod.Minimum`, "one-tenth the minimum before divergence"; from Smith, "Cyclical
Learning Rates for Training Neural Networks", WACV 2017, section 3.3, which reads the range test's
curve for the rate where the loss stops improving): the rate of the lowest loss, divided by 10.
Why this rule: fastai's "valley" and "steepest" rules read a range test's one run whose rate
rises with every step, where the loss at small rates is flat but noisy; here each point is its
own run from the same starting weights, so at small rates the loss falls slowly and steadily, the
longest valley spans the whole flat start and the steepest drop is where training barely begins
(for Adam on fashion_mlp after 200 steps, valley 4e-5 and steepest 1.6e-5; the spec trains well
at 1e-3, this rule's suggestion). The rate of the lowest loss after `steps` steps is near the
edge of stability (on a quadratic, plain SGD's fastest rate is 1 to 2 over the largest curvature
L, and it diverges above 2/L), so a tenth of it is a rate that trains fast yet is safe over a
longer run. A minimum at either end of the range is said in the reason: the curve has no valley
there, and a wider range may move the suggestion.

Stops: a signal while the members train stops the sweep as `run_sweep` does (its paragraph, exit
130 / 143), with a note that `netspec resume` finishes the members but only `netspec lr-find`
draws the curve. `validate_options` raises NetspecError for options out of range before anything
is read or written.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import NetspecError
from netspec.spec.schema import MAX_MEMBERS

DEFAULT_MIN_LR = 1e-6
DEFAULT_MAX_LR = 1.0
DEFAULT_MEMBERS = 16
DEFAULT_STEPS = 300  # a few hundred steps: the start of training, where a rate shows whether it trains or diverges
MIN_MEMBERS = 3  # fewer points draw no curve: one lowest point needs a neighbour on each side

RULE = "fastai's minimum rule (lr_min): the rate of the lowest loss divided by 10 (Smith 2017, section 3.3)"
DIVISOR = 10.0

WIDTH, HEIGHT = 640, 400  # the plot's size in pixels
IMAGE_TAG = "lr_find"  # the TensorBoard image's tag
IMAGE_FILE = "lr_find.png"
RESULT_FILE = "lr_find.json"


@dataclass(frozen=True)
class LRFindResult:
    """A finished range test. `rates` ascending and `losses` one per rate (`loss_of`: math.inf
    for a rate that diverged); `suggestion` and `minimum` are learning rates (`minimum` the one
    of the lowest loss, `suggestion` a tenth of it), `reason` the one line that says why."""

    directory: Path  # <logdir>/<name>/lr-find-<time>/: the sweep directory, a TensorBoard logdir
    rates: list[float]  # [members], ascending
    losses: list[float]  # [members], the loss of each rate; math.inf where it diverged
    steps: int  # steps each rate trained
    minimum: float  # the rate of the lowest loss
    suggestion: float  # minimum / 10
    reason: str  # one line
    image: Path  # lr_find.png
    event_file: Path  # the event file holding the same PNG as the image IMAGE_TAG
    run_dirs: list[Path]  # [members], each rate's run directory, in the order of `rates`


def validate_options(min_lr: float, max_lr: float, members: int, steps: int | None) -> None:
    """Raise NetspecError (one paragraph) for options a range test cannot use."""
    if not (math.isfinite(min_lr) and min_lr > 0):
        raise NetspecError(
            f"--min-lr must be a learning rate above 0 (the rates are log-spaced); found {min_lr:g}. E.g. --min-lr 1e-6."
        )
    if not (math.isfinite(max_lr) and max_lr > min_lr):
        raise NetspecError(
            f"--max-lr must be a finite rate above --min-lr ({min_lr:g}); found {max_lr:g}. The test tries rates from "
            "--min-lr up to --max-lr, e.g. --min-lr 1e-6 --max-lr 1."
        )
    if not MIN_MEMBERS <= members <= MAX_MEMBERS:
        raise NetspecError(
            f"--members is how many rates to try, from {MIN_MEMBERS} (a lowest point needs a neighbour on each side) "
            f"to {MAX_MEMBERS} (a sweep's most); found {members}. The default, {DEFAULT_MEMBERS}, is 2.5 rates a decade "
            "over the default range."
        )
    if steps is not None and steps < 1:
        raise NetspecError(
            f"--steps is how many steps each rate trains, at least 1; found {steps}. A few hundred (the default, "
            f"{DEFAULT_STEPS}) shows which rates train and which diverge."
        )


def rates_between(min_lr: float, max_lr: float, members: int) -> list[float]:
    """`members` log-spaced rates from min_lr to max_lr, each rounded to 3 significant digits
    (the members' names show them) unless that would make two alike, then to 6, else not at all."""
    exact = np.geomspace(min_lr, max_lr, members).tolist()
    for digits in (3, 6):
        rounded = [float(f"{r:.{digits}g}") for r in exact]
        if len(set(rounded)) == members:
            return rounded
    return [float(r) for r in exact]


def _every(steps: int) -> int:
    """summaries.every for a test of `steps` steps: about 20 logged losses; a divisor of `steps`
    near steps / 20 when there is one (no shorter last chunk to compile), else steps // 20."""
    target = max(1, steps // 20)
    divisors = [d for d in range(max(1, target // 2), target + 1) if steps % d == 0]
    return max(divisors) if divisors else target


def _test_overrides(steps: int, rates: Sequence[float]) -> list[str]:
    """The `--set` arguments that make the spec the range test's sweep (see the module docstring)."""
    return [
        f"train.steps={steps}",
        "train.on_nonfinite=ignore",
        "train.early_stopping=null",
        "eval.every=null",
        "checkpoint.every=null",
        "checkpoint.best=null",
        f"summaries.every={_every(steps)}",
        "summaries.scalars=[loss, metrics, learning_rate]",
        "summaries.histograms=[]",
        "summaries.graph=false",
        "sweep=" + json.dumps({"optimizer.learning_rate": list(rates)}),
    ]


def loss_of(steps_and_losses: Sequence[tuple[int, float]], steps: int) -> float:
    """A member's loss: the mean of the losses logged at steps >= steps - steps // 5 (the last
    one at least); math.inf when any of them is not finite, or none was logged."""
    start = steps - steps // 5
    window = [v for s, v in steps_and_losses if s >= start] or [v for _, v in steps_and_losses[-1:]]
    if not window or not all(math.isfinite(v) for v in window):
        return math.inf
    return float(np.mean(window))


def suggest(rates: Sequence[float], losses: Sequence[float], steps: int) -> tuple[float, float, str]:
    """(minimum, suggestion, reason) by `RULE` for `rates` ascending and their `losses`; raises
    NetspecError when every loss is infinite."""
    finite = [i for i, loss in enumerate(losses) if math.isfinite(loss)]
    if not finite:
        raise NetspecError(
            f"Every rate from {rates[0]:g} to {rates[-1]:g} diverged (its loss went NaN or Inf within {steps} steps), "
            "so the test found no rate that trains: lower --min-lr and --max-lr, e.g. by a factor of 1000."
        )
    best = min(finite, key=lambda i: (losses[i], i))  # the smaller rate among equals
    minimum = rates[best]
    suggestion = float(f"{minimum / DIVISOR:.3g}")
    reason = (
        f"a tenth of {minimum:g}, the rate whose loss after {steps} steps was lowest, {losses[best]:.4g}: "
        "fastai's minimum rule"
    )
    if best == len(rates) - 1:
        reason += f"; the loss was still falling at --max-lr {rates[-1]:g}, so a larger --max-lr may move it"
    elif best == 0:
        reason += f"; the loss was lowest at --min-lr {rates[0]:g}, so a smaller --min-lr may move it"
    lowest, highest = losses[best], max(losses[i] for i in finite)
    if lowest > 0 and highest <= 1.01 * lowest:  # every finite loss within 1 % of the lowest: a flat curve
        reason += "; the loss hardly changed with the rate (less than 1 %), so train longer (--steps)"
    return minimum, suggestion, reason


def lr_find(
    path: str | Path,
    overrides: Sequence[str] = (),
    *,
    min_lr: float = DEFAULT_MIN_LR,
    max_lr: float = DEFAULT_MAX_LR,
    members: int = DEFAULT_MEMBERS,
    steps: int | None = None,
    logdir: str | Path = "runs",
    data_dir: str | None = None,
    quiet: bool = False,
    echo: Callable[[str], Any] = print,
    started: float | None = None,
) -> LRFindResult:
    """Train `members` constant learning rates, log-spaced from `min_lr` to `max_lr`, on the spec
    file at `path` (`overrides`: `--set` KEY=VALUE, applied first) for `steps` steps each, all
    together in one vmapped program; plot each rate's loss and suggest a rate (see the module
    docstring for the directory, the loss and the rule: fastai's minimum rule, the rate of the
    lowest loss divided by 10, Smith 2017).

    Shapes and units: `rates`, `losses` and `run_dirs` of the result are lists of `members`
    items, the rates ascending in the optimizer's own units (a step's size for sgd), each loss in
    the spec's loss (the mean over the last fifth of the steps; math.inf for a rate that
    diverged); the image is WIDTH x HEIGHT pixels (RGB PNG). `echo` gets one line as the rates
    start training (none when `quiet`) and the sweep's own lines (a member that failed); the
    members train without progress bars or reports.

    Raises NetspecError for options out of range (`validate_options`) and for a spec with a
    `sweep` key (`--set sweep=null` takes its plain spec), SpecError for a spec with problems,
    NetspecError when every rate diverged (the plot is written first) or when a member fails for
    another reason, as a sweep does, and `Stopped` for SIGINT / SIGTERM."""
    from netspec.spec.check import check
    from netspec.spec.load import load
    from netspec.spec.sweep import is_sweep, sweep_of
    from netspec.training import interrupts
    from netspec.training.interrupts import SIGNAL_EXIT, Stopped, describe
    from netspec.training.sweep import run_sweep

    validate_options(min_lr, max_lr, members, steps)
    loaded = load(path, list(overrides))
    if is_sweep(loaded):
        raise NetspecError(
            f"{path} has a sweep key, and lr-find makes a sweep of its own, over optimizer.learning_rate. Test the "
            "plain spec with --set sweep=null, or one member with --set sweep=null --set KEY=VALUE for its values."
        )
    spec = check(loaded)  # the plain spec's problems first, worded as for `netspec run`
    steps = min(DEFAULT_STEPS, spec.steps) if steps is None else steps
    rates = rates_between(min_lr, max_lr, members)
    sweep = sweep_of(load(path, [*overrides, *_test_overrides(steps, rates)]))
    if not quiet:
        echo(
            f"Learning-rate range test of {spec.name}: {members} constant rates from {rates[0]:g} to {rates[-1]:g}, "
            f"{steps} steps each, training together..."
        )
    with interrupts.watch():
        try:
            result = run_sweep(
                sweep,
                logdir=logdir,
                run_name=time.strftime("lr-find-%Y%m%d-%H%M%S"),
                quiet=True,
                data_dir=data_dir,
                echo=echo,
                started=started,
                ranking=False,  # ranked by the last step's loss, which is not this test's figure
            )
        except Stopped as e:
            signum = {code: signum for signum, code in SIGNAL_EXIT.items()}[e.exit_code]
            raise Stopped(  # a line of its own, as the sweep's note: each ends in a command
                f"{e}\nThat resume finishes the rates' runs but draws no curve: for the curve and the suggestion, run "
                "netspec lr-find again.",
                signum,
            ) from None
        try:
            return _conclude(spec.name, sweep, result.sweep_dir, rates, steps)
        except interrupts.Interrupted as e:
            raise Stopped(
                f"{describe(e.signum, e.count)}: stopped after the rates trained, before the curve was drawn; "
                f"the members are in {result.sweep_dir}. Run netspec lr-find again for the curve and the suggestion.",
                e.signum,
            ) from None


def _conclude(name: str, sweep, directory: Path, rates: list[float], steps: int) -> LRFindResult:
    """Read each member's losses, draw and write the curve, then suggest (see `lr_find`)."""
    from tensorboard.backend.event_processing.event_accumulator import (  # type: ignore[import-untyped]
        EventAccumulator,
    )

    run_dirs = [directory / member.name for member in sweep.members]
    losses = []
    for run_dir in run_dirs:
        events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # every point, not a sample
        events.Reload()
        logged = [(e.step, e.value) for e in events.Scalars("loss")] if "loss" in events.Tags()["scalars"] else []
        losses.append(loss_of(logged, steps))
    try:
        minimum, suggestion, reason = suggest(rates, losses, steps)
    except NetspecError:
        _write(directory, name, rates, losses, steps, None, None, None)
        raise
    image, event_file = _write(directory, name, rates, losses, steps, minimum, suggestion, reason)
    return LRFindResult(directory, rates, losses, steps, minimum, suggestion, reason, image, event_file, run_dirs)


def _write(
    directory: Path,
    name: str,
    rates: list[float],
    losses: list[float],
    steps: int,
    minimum: float | None,
    suggestion: float | None,
    reason: str | None,
) -> tuple[Path, Path]:
    """lr_find.png, the event file with the same PNG, and lr_find.json; (png path, event file)."""
    from tensorboardX.proto.summary_pb2 import Summary

    from netspec.training.rundir import _json, write_atomically
    from netspec.training.summaries import EventFile

    png = plot(
        rates,
        losses,
        minimum=minimum,
        suggestion=suggestion,
        title=f"{name}: the loss after {steps} steps at each constant learning rate",
    )
    write_atomically(directory / IMAGE_FILE, png)
    events = EventFile(directory)
    try:
        image = Summary.Image(height=HEIGHT, width=WIDTH, colorspace=3, encoded_image_string=png)
        events.add_summary(Summary(value=[Summary.Value(tag=IMAGE_TAG, image=image)]), steps)
        events.sync()
    finally:
        events.close()
    record = {
        "name": name,
        "steps": steps,
        "rule": RULE,
        "rates": rates,
        "losses": losses,  # a diverged rate's infinite loss is written as null
        "minimum": minimum,
        "suggestion": suggestion,
        "reason": reason,
    }
    write_atomically(directory / RESULT_FILE, _json(record))
    return directory / IMAGE_FILE, events.path


# -- the plot ----------------------------------------------------------------------------------------------


def plot(
    rates: Sequence[float],
    losses: Sequence[float],
    *,
    minimum: float | None = None,
    suggestion: float | None = None,
    title: str = "",
) -> bytes:
    """The loss against the rate as an RGB PNG of WIDTH x HEIGHT pixels: the rate on a log axis
    (ticks at powers of 10), the loss on a linear one from the lowest loss to the highest at a
    rate up to the minimum's (the untrained start, so a diverging tail does not flatten the
    valley); a loss above that is a triangle on the top edge, a diverged (infinite) one a cross
    there. The minimum is a ring, the suggestion a dashed vertical line, labelled."""
    from PIL import Image, ImageDraw

    from netspec.training.summaries import _font

    font = _font(11)
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 72, WIDTH - 20, 36, HEIGHT - 56  # the plotting area

    def text_size(text: str) -> tuple[int, int]:
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        return int(x1 - x0), int(y1 - y0)

    def label(xy: tuple[float, float], text: str, fill: str = "black", align: str = "left") -> None:
        w, h = text_size(text)
        x = xy[0] - (w if align == "right" else w / 2 if align == "center" else 0)
        draw.text((x, xy[1] - h / 2), text, font=font, anchor="lt", fill=fill)

    # x: log10 of the rate, a little room at both ends
    lo_x, hi_x = math.log10(min(rates)), math.log10(max(rates))
    pad = 0.04 * (hi_x - lo_x or 1.0)
    lo_x, hi_x = lo_x - pad, hi_x + pad

    def x_of(rate: float) -> float:
        return left + (math.log10(rate) - lo_x) / (hi_x - lo_x) * (right - left)

    # y: the lowest finite loss to the highest finite one at a rate up to the minimum's
    finite = [loss for loss in losses if math.isfinite(loss)]
    if finite:
        best = min(range(len(losses)), key=lambda i: (losses[i] if math.isfinite(losses[i]) else math.inf, i))
        lo_y = min(finite)
        hi_y = max(loss for loss in losses[: best + 1] if math.isfinite(loss))
        if hi_y - lo_y <= 1e-12 * max(1.0, abs(lo_y)):
            hi_y = max(finite)
        if hi_y - lo_y <= 1e-12 * max(1.0, abs(lo_y)):
            hi_y = lo_y + max(1.0, abs(lo_y))
    else:
        lo_y, hi_y = 0.0, 1.0
    margin = 0.06 * (hi_y - lo_y)
    lo_y, hi_y = lo_y - margin, hi_y + margin

    def y_of(loss: float) -> float:
        return bottom - (min(loss, hi_y) - lo_y) / (hi_y - lo_y) * (bottom - top)

    grid, axis = (225, 225, 225), (90, 90, 90)
    # ticks and grid: powers of 10 on x (the end rates when the range holds fewer than two), 5 on y
    decades = list(range(math.ceil(lo_x), math.floor(hi_x) + 1))
    decades = decades[:: max(1, math.ceil(len(decades) / 8))]  # at most 8 labels: they overlap beyond that
    x_ticks = [10.0**k for k in decades] if len(decades) >= 2 else [min(rates), max(rates)]
    for rate in x_ticks:
        x = x_of(rate)
        draw.line([(x, top), (x, bottom)], fill=grid)
        label((x, bottom + 10), _rate_text(rate), align="center")
    for i in range(5):
        value = lo_y + margin + i * (hi_y - lo_y - 2 * margin) / 4
        y = y_of(value)
        draw.line([(left, y), (right, y)], fill=grid)
        label((left - 6, y), f"{value:.3g}", align="right")
    draw.rectangle([left, top, right, bottom], outline=axis)
    label(((left + right) / 2, bottom + 30), "learning rate (log scale)", align="center")
    label((left, top - 20), title or "loss against the learning rate")

    # the curve: finite points joined, a break at each diverged one
    blue, red, green = (31, 119, 180), (214, 39, 40), (44, 160, 44)
    points = [(x_of(r), y_of(loss) if math.isfinite(loss) else None) for r, loss in zip(rates, losses, strict=True)]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if y0 is not None and y1 is not None:
            draw.line([(x0, y0), (x1, y1)], fill=blue, width=2)
    drawn: set[str] = set()  # the markers the chart shows, which the legend names
    for (px, py), loss in zip(points, losses, strict=True):
        if py is None:  # diverged: a cross on the top edge
            draw.line([(px - 4, top + 2), (px + 4, top + 10)], fill=red, width=2)
            draw.line([(px - 4, top + 10), (px + 4, top + 2)], fill=red, width=2)
            drawn.add("cross")
        elif loss > hi_y:  # off the chart: a triangle on the top edge
            draw.polygon([(px, top + 1), (px - 4, top + 8), (px + 4, top + 8)], fill=blue)
            drawn.add("triangle")
        else:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=blue)
            drawn.add("dot")
    if minimum is not None:
        mx, my = points[list(rates).index(minimum)]
        if my is not None:
            draw.ellipse([mx - 7, my - 7, mx + 7, my + 7], outline=green, width=2)
            drawn.add("ring")
    if suggestion is not None and lo_x <= math.log10(suggestion) <= hi_x:
        sx = x_of(suggestion)
        for dash in range(top, bottom, 8):
            draw.line([(sx, dash), (sx, min(dash + 4, bottom))], fill=red, width=2)
        label((sx + 5, top + 12), f"suggested {_rate_text(suggestion)}", fill="rgb(214,39,40)")

    # the legend, under the axis title: each marker drawn, then its words
    ly, lx = HEIGHT - 10, 16
    for marker, words in (
        ("dot", "loss over the last fifth of the steps"),
        ("ring", "lowest"),
        ("cross", "diverged (NaN or Inf)"),
        ("triangle", "above the chart"),
    ):
        if marker not in drawn:
            continue
        if marker == "dot":
            draw.ellipse([lx + 1, ly - 3, lx + 7, ly + 3], fill=blue)
        elif marker == "ring":
            draw.ellipse([lx - 1, ly - 5, lx + 9, ly + 5], outline=green, width=2)
        elif marker == "cross":
            draw.line([(lx, ly - 4), (lx + 8, ly + 4)], fill=red, width=2)
            draw.line([(lx, ly + 4), (lx + 8, ly - 4)], fill=red, width=2)
        else:
            draw.polygon([(lx + 4, ly - 4), (lx, ly + 4), (lx + 8, ly + 4)], fill=blue)
        label((lx + 13, ly), words)
        lx += 13 + text_size(words)[0] + 18
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _rate_text(rate: float) -> str:
    """A rate as a tick reads it: 1e-06 -> 1e-6, 1 -> 1, 0.001 -> 1e-3, 0.0251 -> 0.0251."""
    text = f"{rate:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    elif rate < 0.01 and math.log10(rate).is_integer():
        text = f"1e{round(math.log10(rate))}"
    return text
