"""What a run says on the terminal: the progress bar while it trains, the report when it ends.

Contract. `Progress(total, quiet)` is click's progress bar when stdout is a terminal and the run
is not quiet, silent otherwise; the loop's `callbacks.ProgressBar` advances it after each chunk.
`report(spec, program, table, step, arrays, result, echo)` prints the lecture's closing report:
for a training set of at most `REPORT_TABLE_MAX` examples a table of every input, the model's
output, its prediction and the target (the prediction is `netspec.model.losses.output_class`'s,
as in evaluation and `netspec predict`), then the steps, time and final metrics, the run
directory and the `tensorboard` command. It writes nothing to the run directory; `loop` calls it
once the closing is written, unless the run is quiet or this process is not the writer.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

from netspec.errors import quoted
from netspec.spec.types import Spec
from netspec.training.feed import device_data

if TYPE_CHECKING:
    from netspec.training.loop import RunResult


class Progress:
    """A progress bar on a terminal (click's), silent otherwise."""

    def __init__(self, total: int, quiet: bool):
        self.bar = None
        if not quiet and sys.stdout.isatty():
            import click

            self.bar = click.progressbar(
                length=total, label="training", show_pos=True, item_show_func=lambda s: s, width=24
            )
            self.bar.__enter__()

    def update(self, n: int, text: str) -> None:
        if self.bar is not None:
            self.bar.update(n, text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


REPORT_TABLE_MAX = 32  # examples: the closing report lists every one of a set this small


def report(spec: Spec, program, table, step: int, arrays, result: RunResult, echo) -> None:
    """The lecture's closing report: a table for small data sets (`table`: the trained (params,
    model state) on the host, or None; its prediction is `compile.output_class`'s, as netspec
    predict's and evaluation's), the final metrics, the TensorBoard line."""
    import jax

    from netspec.model.losses import output_class

    if table is not None:
        x, y = arrays.train
        data = device_data(arrays.train, arrays)
        h = np.asarray(jax.device_get(program.apply(*table, program.prepare_batch(data, data.x, data.y)[0])))
        decide = output_class(spec)
        pred = h if decide is None else decide(h)  # a regression model's prediction is its output
        echo(f"{'input':<20} {'hypothesis':<24} {'prediction':<12} target")
        for xi, hi, pi, yi in zip(x, h, pred, y, strict=True):
            echo(f"{_fmt(xi):<20} {_fmt(hi, 4):<24} {_fmt(pi):<12} {_fmt(yi)}")
    metrics = "  ".join(f"{k} {v:.6g}" for k, v in result.final.items())
    ran = (
        len(result.losses) if result.steps_run is None else result.steps_run
    )  # fewer than spec.steps after early stopping or a resume
    echo(
        f"{spec.name}: {ran} steps in {result.train_seconds:.2f} s ({1e6 * result.train_seconds / max(ran, 1):.1f} µs/step, compile {result.compile_seconds:.2f} s), "
        f"step {step} of {spec.steps}: {metrics}"
    )
    echo(f"run directory: {result.run_dir}")
    echo(f"view it with:  tensorboard --logdir {quoted(result.run_dir.parent.parent)}")


def _fmt(v, digits=None) -> str:
    arr = np.asarray(v).reshape(-1)
    items = [f"{a:g}" for a in arr] if digits is None else [f"{a:.{digits}f}" for a in arr]
    return "[" + " ".join(items) + "]" if len(items) > 1 else (items[0] if items else "")
