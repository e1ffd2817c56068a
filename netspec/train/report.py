"""Train a checked Spec: the host loop over compiled chunks, the run directory, the report.

Contract: `run(spec, logdir=..., run_name=None, quiet=False, resume=None) -> RunResult`. A new run
claims `<logdir>/<spec.name>/<run-id>/` (an exclusive mkdir: never an existing directory), saves
the resolved spec (`spec.yaml`), where it came from (`run.json`) and the input scaling
(`preprocess.npz`), trains `spec.steps` steps in chunks of `summaries.every` steps and writes
summaries at every chunk boundary (and the untrained model at step 0), checkpoints every
`checkpoint.every` steps, at the end and when stopped, and finally `result.json`. Its events are
laid out as `netspec.summaries` says: training at the run directory's root (with the HParams
session), evaluations in `test/` or `validation/` beside it. When the evaluated split is
validation (it chose the model: early stopping, the best checkpoint) and the data has a test
split, the final evaluation also measures the test split, once: `final` holds both.

`resume=RUN_DIR` continues that run from its latest checkpoint: the state (parameters,
optimizer and model state, step) is restored exactly, the batch order and per-step keys are
functions of (seed, step), and the event files drop anything past the checkpoint (purge_step),
so a stopped and resumed run ends bit for bit as one never stopped.

The closing. When training ends (its last step, or early stopping) the final evaluations are
computed (the best checkpoint kept), then the closing checkpoint is written, recording how
training ended; only then are the final evaluations' events, the HParams status and
`result.json` written. A run interrupted after the closing checkpoint is finished by a resume
without training: the same evaluations of the same state, written again in place of what the
interrupted closing wrote (`summaries` keeps them in a file of their own), so it ends as one
never interrupted.

A sitting holds the run directory (`rundir.lock`) from when it claims or opens it to its end,
and first removes what cut-off writes left there. Every file is written whole or not at all,
and the events up to a checkpoint's step are on disk (fsynced) before the checkpoint is.

Stops: SIGINT/SIGTERM (`netspec.interrupts`) before the run directory exists stop at once, with
nothing written; while training, the first finishes the current chunk, checkpoints and raises
`Stopped` (exit 130 / 143), a second stops at once, keeping the last checkpoint; in the closing
they stop at once, for a resume to finish. A full disk ends the run with one paragraph saying
what was kept. A non-finite loss or gradient with `on_nonfinite: stop` raises an error naming
the step and layer, keeping the last good checkpoint (the chunk notices it once, at its end; the
host then runs that chunk again from the last checkpoint with the check in every step to name
them); early stopping ends the loop normally.
The host touches the program only between chunks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sys
import numpy as np
from netspec.spec.types import Spec
from netspec.train.feed import device_data

if TYPE_CHECKING:
    from netspec.train.loop import RunResult


class Progress:
    """A progress bar on a terminal (click's), silent otherwise."""

    def __init__(self, total: int, quiet: bool):
        self.bar = None
        if not quiet and sys.stdout.isatty():
            import click

            self.bar = click.progressbar(length=total, label="training", show_pos=True, item_show_func=lambda s: s, width=24)
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
        for xi, hi, pi, yi in zip(x, h, pred, y):
            echo(f"{_fmt(xi):<20} {_fmt(hi, 4):<24} {_fmt(pi):<12} {_fmt(yi)}")
    metrics = "  ".join(f"{k} {v:.6g}" for k, v in result.final.items())
    ran = len(result.losses) if result.steps_run is None else result.steps_run  # fewer than spec.steps after early stopping or a resume
    echo(f"{spec.name}: {ran} steps in {result.train_seconds:.2f} s ({1e6 * result.train_seconds / max(ran, 1):.1f} µs/step, compile {result.compile_seconds:.2f} s), "
         f"step {step} of {spec.steps}: {metrics}")
    echo(f"run directory: {result.run_dir}")
    echo(f"view it with:  tensorboard --logdir {result.run_dir.parent.parent}")


def _fmt(v, digits=None) -> str:
    arr = np.asarray(v).reshape(-1)
    if digits is None:
        items = [f"{a:g}" for a in arr]
    else:
        items = [f"{a:.{digits}f}" for a in arr]
    return "[" + " ".join(items) + "]" if len(items) > 1 else (items[0] if items else "")
