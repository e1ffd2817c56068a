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

import contextlib
import itertools
import json
import os
import shutil
import tempfile
import sys
import time
import zipfile
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple
from pathlib import Path

import numpy as np

import netspec
from netspec import distribute, interrupts, rundir
from netspec.check import Spec, plain
from netspec.data import BatchOrder
from netspec.errors import NetspecError
from netspec.interrupts import Stopped, pause


@dataclass
class RunResult:
    run_dir: Path
    final: dict
    train_seconds: float
    compile_seconds: float
    losses: list = field(default_factory=list)  # (step, loss) at every step, for reproducibility checks
    steps_run: int | None = None  # steps the training that ended the run took in its sitting (None: len(losses))


def make_run_dir(logdir: str | Path, spec: Spec, run_name: str | None) -> Path:
    """Claim a new, empty run directory; never reuse an existing one (`rundir.make_run_dir`)."""
    return rundir.make_run_dir(logdir, spec.name, run_name)


def spec_yaml(spec: Spec) -> str:
    from netspec.load import dump

    return dump(plain(spec.resolved))


def chunk_lengths(total: int, every: int) -> list[int]:
    """Chunks of `every` steps, then the remainder: summaries land on multiples of `every` and the end."""
    lengths = [every] * (total // every)
    if total % every:
        lengths.append(total % every)
    return lengths


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


def use_compilation_cache() -> None:
    """JAX's persistent compilation cache under the user cache (`$XDG_CACHE_HOME/netspec/jax`,
    `NETSPEC_JAX_CACHE` to move it, empty to turn it off): a spec run again, or resumed, loads
    its compiled programs instead of compiling them again (XLA:CPU takes ~0.5 s for each)."""
    import jax

    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "netspec" / "jax"
    directory = os.environ.get("NETSPEC_JAX_CACHE", str(default))
    if directory and not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", directory)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


def _json(value) -> str:
    """Strict JSON (a NaN or Inf, e.g. a diverged loss, becomes null)."""
    def clean(v):
        if isinstance(v, float) and not np.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(value), indent=2, allow_nan=False) + "\n"


def _write_atomically(path: Path, text: str) -> None:
    rundir.write_atomically(path, text)


def load_run_spec(run_dir: str | Path, overrides=(), *, recorded_data: bool = False, notice=None) -> Spec:
    """The checked spec of an existing run directory: its resolved spec.yaml, relative data paths
    starting where the original spec was (run.json's base_dir). With `recorded_data` (eval,
    predict) the data is taken as the run recorded it (ran.json's data_info) instead of read
    from its files, so a run whose data has moved can still be used; a run without that record
    (an older netspec), or with a damaged one (said in one line to `notice`), reads its data.
    Raises NetspecError naming spec.yaml or run.json when one is missing or damaged, with what
    can still be done, and SpecError for a bad `overrides` (`--set`) entry."""
    from netspec import resumption
    from netspec.check import check
    from netspec.errors import SpecError
    from netspec.load import load

    run_dir = Path(run_dir)
    spec_file, info_file = run_dir / "spec.yaml", run_dir / "run.json"
    if not spec_file.is_file() and not info_file.is_file():
        raise NetspecError(f"{run_dir} is not a netspec run directory (it has no spec.yaml and run.json).")
    if not spec_file.is_file():
        raise NetspecError(f"The run directory {run_dir} has no spec.yaml, the resolved spec the run trained with, so its "
                           f"model cannot be rebuilt. {_SPEC_RECOVERY}")
    base_dir = _run_base_dir(run_dir, info_file)
    data_info = None
    if recorded_data:
        try:
            record = resumption.read_record(run_dir)
            data_info = record.data_info if record is not None else None
        except resumption.DamagedRecord as e:
            if notice is not None:
                notice(f"{run_dir / resumption.RECORD} is damaged ({e.detail}); the run's spec is checked against its data files instead.")
    loaded = None
    try:
        loaded = load(spec_file, list(overrides))
        loaded.source = str(Path(base_dir) / spec_file.name)  # relative data paths start where the spec was
        return check(loaded, data_info=data_info)
    except SpecError as e:
        # Problems from --set are the user's to fix, as for any spec; the rest are in the file,
        # which the run wrote itself, so something changed it (or its data) since.
        in_file = [p for p in e.problems if not p.source.startswith("--set")]
        if not in_file:
            raise
        first = in_file[0]
        where = f"{spec_file}:{first.line}:{first.col}" if first.line is not None else str(spec_file)
        more = f" (and {len(in_file) - 1} more problem{'s' if len(in_file) > 2 else ''})" if len(in_file) > 1 else ""
        problem = f"{where}: {first.path}: {first.message.rstrip('.')}{more}"
        if overrides:
            _overrides_misfit(run_dir, spec_file, loaded, problem, base_dir, data_info)
        data = loaded.data.get("data") if loaded is not None and isinstance(loaded.data, dict) else None
        data_only = isinstance(data, dict) and "inline" not in data and all(p.path.startswith("$.data") for p in in_file)
        if data_only and data_info is None:
            raise _data_gone(run_dir, problem, base_dir, "rebuilt") from None
        raise NetspecError(f"The run's spec.yaml is damaged: {problem}. {_SPEC_RECOVERY}") from None


_SPEC_RECOVERY = ("The spec as it ran is also in the run's TensorBoard events (tensorboard --logdir on the run, Text tab, "
                  "tag spec; unless summaries.text was off): save that text as spec.yaml; and, resolved, in the run's ran.json "
                  "(its \"spec\" mapping is JSON, which is YAML: saved alone as spec.yaml, it is the spec). The checkpoints and "
                  "events are untouched.")


def _overrides_misfit(run_dir: Path, spec_file: Path, loaded, problem: str, base_dir: str, data_info) -> None:
    """When spec.yaml checks alone and only the `--set` values make its keys wrong (another
    optimizer.type leaves the old one's arguments behind), raise that, as a resume refuses a
    change of meaning or as the --set's problem; return when spec.yaml itself is damaged."""
    from netspec import resumption
    from netspec.check import check
    from netspec.errors import SpecError
    from netspec.load import load

    try:
        bare = load(spec_file)
        bare.source = str(Path(base_dir) / spec_file.name)
        check(bare, data_info=data_info)
    except (SpecError, NetspecError):
        return
    refused = [d for d in resumption.differences(bare.data, loaded.data) if d.kind == resumption.MEANING]
    if refused:
        raise resumption.refusal(run_dir, refused, compared="--set, against spec.yaml")
    raise NetspecError(f"The --set values do not fit the run's spec.yaml: {problem}. Set that key too (or to null to remove "
                       f"it); spec.yaml, the checkpoints and the events are untouched.")


def _data_gone(run_dir: Path, problem: str, base_dir: str, what: str) -> NetspecError:
    """The run's training data is not where its spec says: not damage, and what still works."""
    return NetspecError(f"The run in {run_dir} cannot be {what} without its training data as it was: {problem}. Relative data "
                        f"paths start at {base_dir} (from run.json). Put the data back, or point data in spec.yaml to where it is "
                        f"now; netspec predict needs only the run directory.")


def _run_base_dir(run_dir: Path, info_file: Path) -> str:
    """run.json's base_dir: the directory the run's spec was in. Raises NetspecError naming
    run.json when it is missing or damaged."""
    try:
        base_dir = json.loads(info_file.read_text(encoding="utf-8"))["base_dir"]
        if not isinstance(base_dir, str):
            raise TypeError(f"base_dir is {base_dir!r}, not a directory name")
        return base_dir
    except FileNotFoundError:
        what = "has no run.json"
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        detail = f"no {e}" if isinstance(e, KeyError) else str(getattr(e, "strerror", None) or e)
        what = f"has a damaged run.json ({detail})"
    raise NetspecError(f"The run directory {run_dir} {what}. It records the directory the run's spec was in, where relative "
                       f"data paths start. Write it again as {{\"spec_source\": \"<the spec file>\", \"base_dir\": \"<its directory>\"}} "
                       f"and run the command again; spec.yaml, the checkpoints and the events are untouched.") from None


def run(spec: Spec, *, logdir: str | Path = "runs", run_name: str | None = None, quiet: bool = False,
        data_dir: str | None = None, echo=print, resume: str | Path | None = None, devices: int | None = None,
        allow_setting_changes: bool = False) -> RunResult:
    """Train `spec` and write its run directory, or with `resume` continue the run in that
    directory from its latest checkpoint that loads (or, when its training had ended, finish it
    without training); what a resume may change of the spec is `netspec.resumption`'s
    (`allow_setting_changes`: the training settings too). See the module docstring. Raises
    `Stopped` for SIGINT / SIGTERM and NetspecError for anything else that ends it early (a
    full disk included), each one paragraph saying what was kept and how to go on."""
    where = _Where(spec, resume)
    with interrupts.watch() as signals, signals.modes():
        failed = True
        try:
            result = _sitting(spec, where, signals, logdir=logdir, run_name=run_name, quiet=quiet, data_dir=data_dir, echo=echo,
                              resume=resume, devices=devices, allow_setting_changes=allow_setting_changes)
            failed = False
            return result
        except interrupts.Interrupted as e:
            raise where.stopped(e) from None
        except OSError as e:  # a full disk, a read-only or vanished run directory
            where.abandon_if_empty()
            raise where.cannot_write(e) from None
        finally:
            with signals.deferred():  # the clean-up runs whole; a signal meanwhile changes nothing
                where.release(failed)


class _Where:
    """How far a sitting got, for the paragraph that ends it early, and what it holds: the run
    directory once it exists (and the lock on it), a process's scratch directory."""

    def __init__(self, spec: Spec, resume):
        self.spec = spec
        self.resume = None if resume is None else Path(resume)
        self.run_dir: Path | None = None
        self.phase = "training"  # then "closing" (training ended, results not yet written), "done"
        self.scratch: Path | None = None
        self.removed: Path | None = None  # a new run's directory, taken away as it held nothing
        self._lock = None

    def hold(self, run_dir: Path) -> None:
        """Lock the run directory for this sitting (refused, naming the holder, while another
        process writes it), then remove what cut-off writes left there."""
        self._lock = rundir.lock(run_dir)
        self.run_dir = run_dir
        rundir.remove_leftovers(run_dir)

    def abandon_if_empty(self) -> None:
        """A new run that failed before writing anything into its directory (a full disk) takes
        the directory away again: nothing of it could be used."""
        if self.resume is None and self.run_dir is not None and self._lock is not None:
            with contextlib.suppress(OSError):
                rundir.remove_leftovers(self.run_dir)
                if {p.name for p in self.run_dir.iterdir()} <= {rundir.LOCK_FILE}:
                    (self.run_dir / rundir.LOCK_FILE).unlink(missing_ok=True)
                    self.run_dir.rmdir()
                    self.removed, self.run_dir = self.run_dir, None

    def release(self, failed: bool) -> None:
        if self._lock is not None:
            if failed and self.run_dir is not None:  # our own cut-off writes clean up after themselves; this is the last word
                with contextlib.suppress(OSError):
                    rundir.remove_leftovers(self.run_dir)
            self._lock.release()
            self._lock = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _kept(self) -> tuple[str, str, bool]:
        """(what the run directory holds now, what to do next, whether that is to start again)."""
        from netspec import checkpoint

        again = "run the same netspec run command to start again"
        if self.run_dir is None:
            if self.resume is not None:
                return f"Nothing in {self.resume} was changed", f"continue it with: netspec resume {self.resume}", False
            if self.removed is not None:
                return f"Nothing was kept (its empty directory {self.removed} was removed)", again, True
            return "No run directory was created", again, True
        if self.phase == "done":
            return f"The run had finished; everything is in {self.run_dir}", "", False
        latest = checkpoint.Checkpoints(self.run_dir / "checkpoints", keep=1).latest()
        if latest is None:
            return (f"No checkpoint had been written yet, so the run cannot be resumed ({self.run_dir} holds its events so far)",
                    again, True)
        try:
            meta = checkpoint.metadata(latest)
        except NetspecError:
            meta = {}
        step = meta.get("step", latest.stem.split("-")[-1].lstrip("0") or "0")
        if "closing" in meta:
            return (f"Its training had ended; the checkpoint at step {step} and the events up to it are kept in {self.run_dir}",
                    f"finish the run (final evaluation and result.json, no training) with: netspec resume {self.run_dir}", False)
        return (f"The checkpoint at step {step} of {self.spec.steps} and the events up to it are kept in {self.run_dir}",
                f"continue with: netspec resume {self.run_dir}", False)

    def stopped(self, e: interrupts.Interrupted) -> Stopped:
        """The paragraph for a signal that stopped the sitting where it was."""
        if self.run_dir is None:
            what = "stopped before the " + ("resume" if self.resume is not None else "run") + " started"
        elif self.phase == "closing":
            what = "stopped after training, before the run's results were written"
        elif self.phase == "done":
            what = "stopped after the run finished"
        else:
            what = "stopped at once, without waiting for a checkpoint" if e.count > 1 else "stopped"
        kept, then, _ = self._kept()  # no full stop after a command: it would be copied with it
        return Stopped(f"{interrupts.describe(e.signum, e.count)}: {what}. {kept}." + (f" {then[0].upper()}{then[1:]}" if then else ""),
                       e.signum)

    def cannot_write(self, e: OSError) -> NetspecError:
        """The paragraph for a write that failed (a full disk): the file, the cause, what was kept."""
        cause = e.strerror or str(e)
        directory = self.run_dir or self.removed
        if e.filename and directory is not None and Path(e.filename).is_relative_to(directory):
            file = f" ({Path(e.filename).relative_to(directory)})"  # the run directory is named already
        else:
            file = f" ({e.filename})" if e.filename else ""
        if self.run_dir is None:
            at = f" {self.removed}" if self.removed else ""
            return NetspecError(f"Cannot write the run{at}{file}: {cause}. Nothing was kept (no run directory remains): free some "
                                f"space or choose another --logdir, and run the same netspec run command again.")
        kept, then, again = self._kept()
        if not then:
            return NetspecError(f"Cannot write {e.filename or self.run_dir}: {cause}. {kept}.")
        other = " (or choose another --logdir)" if again and self.resume is None else ""
        return NetspecError(f"Cannot write the run {self.run_dir}{file}: {cause}. {kept}. Free some space{other}, then {then}")


def _sitting(spec: Spec, where: _Where, signals: interrupts.Interrupts, *, logdir, run_name, quiet, data_dir, echo, resume, devices,
             allow_setting_changes) -> RunResult:
    """`run`'s work: set up or open the run directory, train, close. See the module docstring."""
    import jax
    import jax.numpy as jnp

    from netspec import checkpoint
    from netspec.check import metric_mode
    from netspec.compile import compile_spec, current_learning_rate
    from netspec.summaries import Summaries

    from netspec import resumption

    writer = distribute.is_writer()
    if resume is not None and writer:
        where.hold(Path(resume))  # first: a run in use is refused before anything loads
    arrays = load_arrays(spec, data_dir)  # data errors surface before anything is written
    # a resume continues the same run: refused changes end here, before anything compiles or is written
    changes = [] if resume is None else resumption.accepted_changes(resume, spec, arrays, allow_setting_changes=allow_setting_changes)
    pause("before-run-dir")
    use_compilation_cache()
    mesh = distribute.mesh_for(spec, devices)
    program = signals.wait_for(lambda: compile_spec(spec, mesh))
    state = signals.wait_for(program.init)
    meta: dict = {}
    closing = None  # how the run's training ended, when a resume finds it had
    finishing = reclosing = False  # a resume that only finishes the run; one that trains on after an unfinished closing
    scratch = where.scratch = None if writer else Path(tempfile.mkdtemp(prefix="netspec-process-"))  # other processes write nothing real
    if resume is None:
        run_dir = make_run_dir(logdir if writer else scratch, spec, run_name)
        where.hold(run_dir)
        signals.begin_graceful()  # from here a first signal stops at a checkpoint
        text = spec_yaml(spec)
        _write_atomically(run_dir / "spec.yaml", text)
        _write_atomically(run_dir / "run.json", json.dumps({"spec_source": spec.source, "base_dir": spec.base_dir}, indent=2) + "\n")
        # what `netspec predict` needs to treat new inputs as the training data was treated
        write_preprocess(run_dir, arrays)
        resumption.record(run_dir, spec, arrays)  # what ran, for resume to compare with and predict to check with
    else:
        signals.begin_graceful()
        # the newest checkpoint that loads (one damaged or of another model is set aside, said in one line)
        restored = checkpoint.Checkpoints(Path(resume) / "checkpoints", keep=1).restore(state, notice=echo, set_aside=writer)
        if restored is None:
            raise NetspecError(f"{resume} has no checkpoint to resume from (checkpoints/step-*.safetensors); start it again with netspec run.")
        latest, state = restored
        meta = checkpoint.metadata(latest)
        closing = meta.get("closing")
        at = int(state.step)
        ended = closing is not None and (at >= spec.steps or closing["stopped"] == "early_stopping")
        results = (Path(resume) / "result.json").is_file()
        if ended and not results and at <= spec.steps:
            finishing = True  # interrupted between its closing checkpoint and result.json: finish it, no training
        elif ended and closing["stopped"] == "early_stopping" and at < spec.steps:
            raise NetspecError(f"{resume} already finished: early stopping ended it at step {at} of {spec.steps} (its result.json "
                               f"says so). Its best checkpoint is what netspec eval and predict use.")
        elif at >= spec.steps:
            raise NetspecError(f"{resume} already finished its {spec.steps} steps. To train longer: netspec resume {resume} --set train.steps=N.")
        else:
            reclosing = closing is not None and not results  # trains on: what that closing wrote is replaced
            closing = None
        run_dir = Path(resume) if writer else make_run_dir(scratch, spec, run_name)
        _write_atomically(run_dir / "spec.yaml", spec_yaml(spec))  # what runs from here, --set overrides included
        if writer:
            record_resume(run_dir, spec, arrays, changes, int(state.step), echo)
    start_step = int(state.step)
    checkpoints = checkpoint.Checkpoints(run_dir / "checkpoints", keep=spec.checkpoint["keep"])
    if mesh is not None:  # a checkpoint holds whole arrays, so it restores on any device count
        state = distribute.place(state, program.state_sharding)

    full_batch = spec.train["batch_size"] == spec.num_examples
    order = BatchOrder(len(arrays.train.x), spec.train["batch_size"], seed=spec.seed, shuffle=spec.train["shuffle"] and not full_batch)
    # Across processes each one feeds its own shard of every batch (streamed), rather than every
    # device holding the whole set.
    streamed = jax.process_count() > 1 or arrays.train.x.nbytes + arrays.train.y.nbytes > spec.data["max_resident_mb"] * 2**20
    feed = Feed(arrays.train, order, streamed=streamed, full_batch=full_batch, mesh=mesh)
    data = device_data(feed.resident, arrays)
    n_devices = 1 if mesh is None else mesh.devices.size
    if mesh is not None:
        data = distribute.place(data, distribute.replicated(data, mesh))
    eval_split = {"test": arrays.test, "validation": arrays.validation}.get(spec.eval["split"] or "")
    eval_data = padded(eval_split, arrays, spec.eval["batch_size"], n_devices, mesh) if eval_split is not None else None
    # a resumed run continues its event files; purge_step drops anything written after the checkpoint
    # (TensorBoard drops steps >= purge_step, and the checkpoint's own step was written before it);
    # the evaluation run is opened at once, so its purge holds even before its first evaluation.
    # A run finished here writes no training events; it (or one trained on after a closing cut
    # short) replaces what that closing wrote.
    evaluating = eval_data is not None and spec.eval["every"] and not finishing
    summaries = Summaries(run_dir, spec, purge_step=start_step + 1 if resume is not None else None,
                          splits=[spec.eval["split"]] if evaluating else [], training=not finishing,
                          replace_closing=finishing or reclosing)
    config = spec.summaries
    wanted_scalars = set(config["scalars"])
    wanted_hist = set(config["histograms"])

    sample_size = max(n_devices, min(256, len(arrays.train.x)) // n_devices * n_devices)
    sample = [arrays.train.x[:sample_size], arrays.train.y[:sample_size]]
    if mesh is not None:  # split over the devices like a training batch
        sample = [distribute.from_host(mesh, a.shape, a.__getitem__) for a in sample]
    sample = program.prepare(data, *sample)
    # the sample batch is an argument, never closed over (a constant in the program; across
    # processes, not even allowed)
    eval_fn = partial(jax.jit(lambda params, mstate, batch: program.loss_and_metrics(params, mstate, batch, train=False,
                                                                                     key=program.keys.step)), batch=sample)
    extras_fn = partial(_extras_fn(program), sample=sample) if wanted_hist & {"activations", "gradients"} else None

    if changes and config["text"] and not finishing:  # at the first step that ran with them
        summaries.changes_text(resumption.markdown(changes, start_step), start_step)
    if resume is None:
        summaries.spec_text(text)
        summaries.sample_images(arrays.train.x[:16], spec.data_info)
        if config["graph"]:
            from netspec.graph import step_graph

            graph = step_graph(program.train_step, state, sample, program.keys.step, arg_names=_graph_names(state))
            summaries.graph(graph)

    def write(step, values, params, extras, steps_per_second):
        scalars = {}
        if "loss" in wanted_scalars:
            scalars["loss"] = values["loss"]
        if "metrics" in wanted_scalars:
            scalars.update({k: v for k, v in values.items() if k not in ("loss", "learning_rate")})
        if "learning_rate" in wanted_scalars:
            scalars["learning_rate"] = values["learning_rate"]
        if "steps_per_second" in wanted_scalars and steps_per_second is not None:
            scalars["steps_per_second"] = steps_per_second
        summaries.scalars(step, scalars)
        if wanted_hist:
            activations, gradients = jax.device_get(extras) if extras is not None else (None, None)
            summaries.histograms(step, distribute.gather(params), activations=activations, gradients=gradients)

    def evaluate(split_data):
        return split_means(program.evaluate(state.params, state.model_state, *split_data))

    early = spec.train["early_stopping"]
    best_tag = spec.checkpoint["best"]
    best_mode = metric_mode(best_tag) if best_tag else None
    tracking = meta.get("tracking", {"best": None, "best_step": None, "early_best": None, "bad_evals": 0})

    def better(value, than, mode, min_delta=0.0):
        return than is None or (value > than + min_delta if mode == "max" else value < than - min_delta)

    def save_checkpoint(tree, step, **more):
        summaries.sync()  # the events up to the checkpoint are on disk before it: a resume after kill -9 has no gap
        return checkpoints.save(tree, step, {"spec": spec.name, "tracking": tracking, **more})

    if resume is None:  # step 0: the untrained model
        loss0, (metrics0, _) = jax.device_get(eval_fn(state.params, state.model_state))
        write(0, {"loss": loss0, **metrics0, "learning_rate": float(current_learning_rate(state.opt_state))},
              state.params, extras_fn(state.params, state.model_state) if extras_fn is not None else None,
              None)  # the rate step 1 uses

    every = config["every"]
    # a run resumed off the grid (it finished a shorter last chunk, then was given more steps)
    # first steps up to the next multiple of `every`, so summaries and checkpoints stay on it
    head = min(-start_step % every, spec.steps - start_step)
    lengths = ([head] if head else []) + chunk_lengths(spec.steps - start_step - head, every)
    if finishing:  # no training: straight to the closing
        lengths = []
    pause("compiling")
    compile_start = time.perf_counter()
    compiled = signals.wait_for(lambda: {
        n: program.chunk(n, streamed=feed.streamed).lower(state, data, feed.batches(start_step, n), program.keys).compile()
        for n in sorted(set(lengths))})
    compile_seconds = time.perf_counter() - compile_start
    if signals.requested and not finishing:  # Ctrl-C while setting up: a new run keeps its step 0, to resume from
        if resume is None:
            save_checkpoint(state, start_step)
        summaries.close()
        raise Stopped(f"{interrupts.describe(signals.signum)}: stopped after step {start_step} of {spec.steps}; checkpoint and "
                      f"events are saved in {run_dir}. Continue with: netspec resume {run_dir}", signals.signum)

    losses: list[float] = []
    progress = Progress(spec.steps - start_step, quiet)
    last: dict = {}
    timing = {"first": None, "previous": None}
    eval_every = spec.eval["every"]
    ckpt_every = spec.checkpoint["every"]
    stop_reason = None
    copy = jax.jit(lambda tree: jax.tree_util.tree_map(jnp.copy, tree))

    def finish(chunk: _Chunk) -> str | None:
        """Host work for a chunk already dispatched (the next one runs meanwhile): summaries,
        evaluation, checkpoints, and whether to stop."""
        nonlocal last
        outputs = jax.device_get(chunk.outputs)
        now = time.perf_counter()
        elapsed = now - max(chunk.dispatched, timing["previous"] or 0.0)
        timing["previous"] = now
        if timing["first"] is None:
            timing["first"] = chunk.dispatched - netspec.STARTED + elapsed / chunk.length
        bad_layer, bad_step = int(outputs.pop("nonfinite_layer")), int(outputs.pop("nonfinite_step"))
        noticed = bool(outputs.pop("nonfinite", False))  # stop without a per-step check: the chunk went bad somewhere
        skipped = int(outputs.pop("skipped"))
        if spec.train["on_nonfinite"] == "stop" and (bad_layer >= 0 or noticed):
            if bad_layer < 0:
                bad_step, bad_layer = locate_nonfinite(chunk)
            raise _nonfinite(spec, run_dir, bad_step, bad_layer, checkpoints.latest(), chunk, outputs["loss"])
        losses.extend(float(v) for v in outputs["loss"])
        last = {k: float(v[-1] if k == "loss" else v) for k, v in outputs.items()}
        if spec.train["on_nonfinite"] == "skip_step" or "loss_scale" in last:
            last["skipped_steps"] = float(skipped)
        write(chunk.end, last, chunk.params, chunk.extras, chunk.length / elapsed if elapsed > 0 else None)
        reason = None
        if chunk.evaluation is not None:
            values, confusion = split_means(chunk.evaluation)
            if best_tag and better(values[best_tag], tracking["best"], best_mode):
                tracking.update(best=values[best_tag], best_step=chunk.end)
                checkpoints.save_best(chunk.state, chunk.end, {"spec": spec.name, best_tag: values[best_tag]})
            if early is not None:
                if better(values[early["metric"]], tracking["early_best"], early["mode"], early["min_delta"]):
                    tracking.update(early_best=values[early["metric"]], bad_evals=0)
                else:
                    tracking["bad_evals"] += 1
                    if tracking["bad_evals"] >= early["patience"]:
                        reason = "early_stopping"
            if reason is None:  # an early stop's evaluation is the final one: the closing writes it, once
                summaries.evaluation(chunk.end, values, confusion, arrays.class_names, split=spec.eval["split"])
        if chunk.checkpoint and reason is None:  # an early stop's checkpoint is the closing one, which says so
            save_checkpoint(chunk.state, chunk.end)
        progress.update(chunk.length, "  ".join(f"{k} {v:.4g}" for k, v in last.items()))
        pause(f"chunk:{chunk.end}")
        return reason

    def locate_nonfinite(chunk: _Chunk) -> tuple[int, int]:
        """(step, layer) of the first non-finite step of a chunk that went bad (-1, -1 if running
        it again does not find one): the chunk runs again with the per-step check, from the state
        before it, which the last checkpoint (or the run's start) and the same compiled chunks
        since give back step for step."""
        begin = chunk.end - chunk.length
        latest = checkpoints.latest()
        replay = program.init() if latest is None else checkpoint.load(latest, program.init())  # no checkpoint: the run began at 0
        if mesh is not None:
            replay = distribute.place(replay, program.state_sharding)
        at = int(replay.step)
        if at not in starts:  # not a chunk boundary of this sitting: the same chunks cannot follow it
            return -1, -1
        if not quiet and writer:
            echo(f"A NaN or Inf appeared in steps {begin + 1}-{chunk.end}; running them again from step {at} to find the step and layer.")
        for start, n in zip(starts, lengths):
            if start >= at and start + n <= begin:
                if signals.requested:  # Ctrl-C: stop looking
                    return -1, -1
                replay, _ = compiled[n](replay, data, feed.batches(start, n), program.keys)
        diagnose = program.chunk(chunk.length, streamed=feed.streamed, diagnose=True)
        _, outputs = diagnose(replay, data, feed.batches(begin, chunk.length), program.keys)
        outputs = jax.device_get(outputs)
        return int(outputs["nonfinite_step"]), int(outputs["nonfinite_layer"])

    starts = list(itertools.accumulate(lengths[:-1], initial=start_step))  # steps done before each chunk
    loop_start = time.perf_counter()
    pending: _Chunk | None = None
    step = start_step
    try:
        for i, n in enumerate(lengths):
            end = step + n
            batches = feed.batches(step, n)
            if i + 1 < len(lengths):
                feed.prefetch(end, lengths[i + 1])
            dispatched = time.perf_counter()
            state, outputs = compiled[n](state, data, batches, program.keys)
            # What the host needs of this state is copied on the device now, before the next
            # chunk takes (donates) it; the host reads the copies while the next chunk runs.
            evaluate_now = eval_data is not None and eval_every and end % eval_every == 0 and end != spec.steps
            checkpoint_now = bool(ckpt_every and end % ckpt_every == 0 and end != spec.steps)
            keep_state = checkpoint_now or bool(evaluate_now and best_tag)
            snapshot = copy(state) if keep_state else None
            params = snapshot.params if keep_state else (copy(state.params) if wanted_hist else None)
            evaluation = program.evaluate(state.params, state.model_state, *eval_data) if evaluate_now else None
            extras = extras_fn(state.params, state.model_state) if extras_fn is not None else None
            chunk = _Chunk(end, n, dispatched, outputs, params, extras, evaluation, snapshot, checkpoint_now)
            if pending is not None:
                stop_reason = finish(pending) or stop_reason
            pending = chunk
            if early is not None and evaluate_now and not stop_reason:
                # early stopping decides before the next chunk runs, so a stop is at this step
                stop_reason = finish(chunk) or stop_reason
                pending = None
            step = end
            if signals.requested:
                stop_reason = "signal"
            if stop_reason:
                break
        if pending is not None:
            stop_reason = finish(pending) or stop_reason
            pending = None
    finally:
        progress.close()
        feed.close()
    loop_seconds = time.perf_counter() - loop_start
    dropped = summaries.dropped_note()
    if dropped and writer:  # even with --quiet: it replaces tensorboardX's warnings, one per value
        echo(dropped)
    if signals.requested and step < spec.steps and not finishing:
        save_checkpoint(state, step)
        summaries.close()
        raise Stopped(f"{interrupts.describe(signals.signum)}: stopped after step {step} of {spec.steps}; checkpoint and events "
                      f"are saved in {run_dir}. Continue with: netspec resume {run_dir}", signals.signum)

    # The closing. Its evaluations are computed first (the last step may be the best), then the
    # closing checkpoint records how training ended; what is written after it, a resume that
    # finds it writes again (see the module docstring).
    if closing is None:
        closing = {"stopped": stop_reason, "last": last, "start_step": start_step, "train_seconds": loop_seconds,
                   "compile_seconds": compile_seconds, "first_step_seconds": timing["first"]}
    evaluated = tested = None
    if eval_data is not None:
        evaluated = evaluate(eval_data)
        value = evaluated[0][best_tag] if best_tag else None
        if best_tag and better(value, tracking["best"], best_mode):  # again in a resume that finishes: then not better
            tracking.update(best=value, best_step=step)
            checkpoints.save_best(state, step, {"spec": spec.name, best_tag: value})
    if spec.eval["split"] == "validation" and arrays.test is not None:
        # The validation split chose the model (early stopping, best checkpoint); the test split
        # is looked at once, here, for the figure to report, and goes into its own test/ run.
        tested = evaluate(padded(arrays.test, arrays, spec.eval["batch_size"], n_devices, mesh))
    if not finishing:
        save_checkpoint(state, step, closing=closing)
    where.phase = "closing"
    signals.end_graceful()  # from here a signal stops at once: a resume finishes the run
    pause("closing")
    stop_reason = closing["stopped"]
    final = dict(closing["last"])
    for split, measured in ((spec.eval["split"], evaluated), ("test", tested)):
        if measured is not None:
            values, confusion = measured
            summaries.evaluation(step, values, confusion, arrays.class_names, split=split, final=True)
            final.update({f"{split}_{k}": v for k, v in values.items()})
    summaries.commit_closing()
    pause("results")
    summaries.session(status="success")
    summaries.close()
    train_seconds, ran = closing["train_seconds"], step - closing["start_step"]
    result = RunResult(run_dir, final, train_seconds, closing["compile_seconds"], losses, steps_run=ran)
    _write_atomically(run_dir / "result.json", _json({
        "name": spec.name, "steps": step, "planned_steps": spec.steps, "final": final,
        "stopped": stop_reason, "best": tracking if best_tag else None,
        "train_seconds": train_seconds, "compile_seconds": closing["compile_seconds"],
        "us_per_step": 1e6 * train_seconds / max(ran, 1), "first_step_seconds": closing["first_step_seconds"],
        "steps_per_second": ran / train_seconds if train_seconds else None,
    }))
    where.phase = "done"
    if stop_reason == "early_stopping":
        echo(f"Early stopping at step {step}: {early['metric']} did not improve by {early['min_delta']} for "
             f"{early['patience']} evaluations; the best, {tracking['best']:.6g} at step {tracking['best_step']}, "
             f"is in checkpoints/best.safetensors (netspec eval uses it).")
    if not quiet:
        # small data sets get the lecture's table, from whole parameters on this host (every
        # process takes part in gathering them)
        table = distribute.gather((state.params, state.model_state)) if len(arrays.train.x) <= REPORT_TABLE_MAX else None
        if writer:
            report(spec, program, table, int(step), arrays, result, echo)
    return result


class _Chunk(NamedTuple):
    """A dispatched chunk and the device values the host will read once it is done."""

    end: int  # steps done after it
    length: int
    dispatched: float
    outputs: dict
    params: object  # a copy of the parameters after it (for histograms), or None
    extras: object  # (activations, gradients) for histograms, or None
    evaluation: object  # program.evaluate(...) results, or None
    state: object  # a copy of the whole TrainState (for a checkpoint), or None
    checkpoint: bool


def _nonfinite(spec: Spec, run_dir: Path, step: int, layer_index: int, kept: Path | None, chunk: _Chunk, losses) -> NetspecError:
    """The error for a NaN or Inf with on_nonfinite: stop, at `step` in `layer_index` (len(layers):
    the loss alone; -1: not found again, so only the chunk and its losses can be named)."""
    if layer_index < 0:
        bad = np.flatnonzero(~np.isfinite(np.asarray(losses)))
        first_loss = f" (the loss first at step {chunk.end - chunk.length + 1 + bad[0]})" if bad.size else ""
        what = f"Training stopped: a NaN or Inf appeared in steps {chunk.end - chunk.length + 1}-{chunk.end}{first_loss}, and running them again did not show the step and layer."
    elif layer_index < len(spec.layers):
        what = f"Training stopped at step {step}: the gradients of layer {spec.layers[layer_index].name!r} (the first, in spec order, to go non-finite) became NaN or Inf."
    else:
        what = f"Training stopped at step {step}: the loss became NaN or Inf."
    kept_text = f"The last good checkpoint is kept: {kept}." if kept else "No checkpoint had been written yet (see checkpoint.every)."
    return NetspecError(
        f"{what} {kept_text} "
        f"Lower optimizer.learning_rate, clip the gradients (optimizer.clip_global_norm), or set "
        f"train.on_nonfinite: skip_step to skip such steps. Run directory: {run_dir}")


class Feed:
    """The `batches` argument of each chunk: example indices into resident data, or, for data
    larger than the device budget, the examples themselves gathered on the host by the same
    indices (the next chunk's on a background thread while the current one runs)."""

    def __init__(self, split, order: BatchOrder, *, streamed: bool, full_batch: bool, mesh=None):
        self.split, self.order, self.streamed, self.full_batch, self.mesh = split, order, streamed, full_batch, mesh
        self.resident = type(split)(split.x[:0], split.y[:0]) if streamed else split
        self._pending: dict = {}
        self._pool = None

    def _gather(self, start: int, n: int):
        import jax

        idx = self.order.indices(start, n)
        if self.mesh is not None:  # each process gathers only the rows its own devices train on
            return distribute.rows_from_host(self.mesh, self.split.x, idx), distribute.rows_from_host(self.mesh, self.split.y, idx)
        return jax.device_put(self.split.x[idx]), jax.device_put(self.split.y[idx])

    def batches(self, start: int, n: int):
        if not self.streamed:
            return None if self.full_batch else self.order.indices(start, n)
        pending = self._pending.pop((start, n), None)
        return pending.result() if pending is not None else self._gather(start, n)

    def prefetch(self, start: int, n: int) -> None:
        if self.streamed:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(1, thread_name_prefix="netspec-feed")
            self._pending[start, n] = self._pool.submit(self._gather, start, n)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def load_arrays(spec: Spec, data_dir: str | None = None):
    from netspec.data import load

    return load(spec.data, Path(spec.base_dir), seed=spec.seed, data_dir=data_dir)


def device_data(split, arrays):
    """A split on the device as stored (uint8 images stay uint8), with its scaling."""
    import jax.numpy as jnp

    from netspec.compile import Data

    return Data(jnp.asarray(split.x), jnp.asarray(split.y), jnp.asarray(arrays.shift), jnp.asarray(arrays.scale))


def padded(split, arrays, batch_size: int, devices: int = 1, mesh=None):
    """(Data shaped [batches, batch, ...], mask) for evaluation: padded to whole batches (a batch a
    multiple of the device count), padding masked out; with a mesh, split along the batch axis
    (each process puts only its own devices' part)."""
    import jax.numpy as jnp

    from netspec.compile import Data

    n = len(split.x)
    batch_size = -(-min(batch_size, n) // devices) * devices
    batches = -(-n // batch_size)
    pad = batches * batch_size - n

    def shape(a):
        a = np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
        a = a.reshape(batches, batch_size, *a.shape[1:])
        return jnp.asarray(a) if mesh is None else distribute.from_host(mesh, a.shape, a.__getitem__, axis=1)

    mask = np.ones(n, np.float32)  # padded with zeros like the data
    scaling = (jnp.asarray(arrays.shift), jnp.asarray(arrays.scale))
    if mesh is not None:
        scaling = distribute.place(scaling, distribute.replicated(scaling, mesh))
    return Data(shape(split.x), shape(split.y), *scaling), shape(mask)


def split_means(evaluation) -> tuple[dict[str, float], np.ndarray | None]:
    """({tag: mean over the split}, confusion matrix or None) from `program.evaluate`'s device result."""
    import jax

    sums, count, confusion = jax.device_get(evaluation)
    return {k: float(v) / float(count) for k, v in sums.items()}, confusion


def finished_state(spec: Spec, run_dir: Path, *, notice=None):
    """(program, state) of a run from its best checkpoint if it kept one, else its latest; one
    that does not load (damaged, or another model's) is passed over for the one before it, said
    in one line to `notice`. Raises NetspecError when there is none, or when none loads, naming
    each file and why."""
    from netspec import checkpoint
    from netspec.compile import compile_spec

    program = compile_spec(spec)
    restored = checkpoint.Checkpoints(Path(run_dir) / "checkpoints", keep=1).restore(program.init(), prefer_best=True, notice=notice)
    if restored is None:
        raise NetspecError(f"{run_dir} has no checkpoint (checkpoints/step-*.safetensors or best.safetensors): the run stopped "
                           f"before its first one (see checkpoint.every), or they were deleted, so there are no trained parameters "
                           f"to use. Its TensorBoard events still show the training; train it again with netspec run.")
    return program, restored[1]


def evaluate_run(run_dir: str | Path, *, split: str | None = None, data_dir: str | None = None, notice=None) -> dict:
    """`netspec eval`: {metric tag: mean} of a finished run on a split ("test", "validation",
    "train"; default: test when the data has one, the honest figure for a model chosen on the
    validation split; else the spec's eval.split), from its best checkpoint if it kept one
    (early stopping, checkpoint.best), else its latest (one that does not load is passed over,
    said in one line to `notice`). The spec is checked against the data as the run recorded it;
    the split itself is read from the data files. Raises NetspecError for a damaged run
    directory (naming the file), data that is missing or no longer of the shapes the run
    trained on, or a split the data does not have."""
    from netspec.errors import DataError

    spec = load_run_spec(run_dir, recorded_data=True, notice=notice)
    run_dir = Path(run_dir)
    rundir.tidy(run_dir)  # leftovers of cut-off writes go, unless another process holds the run
    try:
        arrays = load_arrays(spec, data_dir)
    except DataError as e:
        raise _data_gone(run_dir, str(e).rstrip("."), spec.base_dir, "evaluated") from None
    found = (tuple(arrays.train.x.shape[1:]), tuple(arrays.train.y.shape[1:]))
    ran = (tuple(spec.data_info.x_shape), tuple(spec.data_info.y_shape))
    if found != ran:
        raise NetspecError(f"The data of the run in {run_dir} is not what it trained on: examples of shape {list(found[0])} and "
                           f"labels of shape {list(found[1])}, where it trained on {list(ran[0])} and {list(ran[1])}. Put the "
                           f"training data back, or point data in spec.yaml to it.")
    split = split or ("test" if arrays.test is not None else spec.eval["split"] or "test")
    chosen = {"test": arrays.test, "validation": arrays.validation, "train": arrays.train}[split]
    if chosen is None:
        raise NetspecError(f"The run's data has no {split} split. Choose --split train" + (", test" if arrays.test is not None else "") + ".")
    program, state = finished_state(spec, run_dir, notice=notice)
    return split_means(program.evaluate(state.params, state.model_state, *padded(chosen, arrays, spec.eval["batch_size"])))[0]


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_inputs(path: str | Path, spec: Spec, *, feature_names: tuple[str, ...] | None = None, notice=None) -> np.ndarray:
    """Examples to predict on, shaped [N, *model.input], as read (float32 from CSV): .npy, .npz
    (`x` or its only array), .csv, or one image for an image model.

    A CSV file is read with the training CSV's delimiter (else ","). Its first row is a header
    when none of its cells is a number, or when it names every feature in `feature_names` (the
    training data's, in training order; None when the run records none). With a header and
    `feature_names`, the columns are picked by name, in training order, whatever their order in
    the file; other columns are ignored. Otherwise the columns are the features in order, and
    `notice(text)` (one line) says so when that is a guess: no header, or a header the run has
    no names to match. Raises NetspecError naming the file: unreadable, a missing column (with
    the columns found), a cell that is not a number, or a shape the model does not take."""
    from netspec import datasets as D

    path = Path(path)
    if not path.exists():
        raise NetspecError(f"No such input file: {path}.")
    suffix = path.suffix.lower()
    D.open_data_file(path, "an input file").close()  # a regular file within the read limit, whatever its kind
    try:
        if suffix == ".npy":
            x = D.read_npy(path)
        elif suffix == ".npz":
            with D.open_npz(path) as (archive, headers):
                keys = sorted(headers)
                key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise NetspecError(f"{path} holds {', '.join(keys) or 'no arrays'}; name the inputs x.")
                x = D.read_npz_array(archive, headers[key], path)
        elif suffix == ".csv":
            x = _read_csv_numbers(path, spec, feature_names, notice or (lambda text: None))
        elif suffix in IMAGE_SUFFIXES:
            x = _read_image(path, spec.input_shape)[None]
        else:
            raise NetspecError(f"{path}: unknown input type {suffix!r}; give .npy, .npz, .csv or an image ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise NetspecError(f"Cannot read {path}: {e}.") from None
    if x.dtype == object:
        raise NetspecError(f"{path} holds Python objects; give numbers.")
    size = int(np.prod(spec.input_shape))
    if x.size == size:
        return x.reshape((1, *spec.input_shape))
    if x.ndim >= 1 and x.size % size == 0 and int(np.prod(x.shape[1:])) == size:
        return x.reshape((len(x), *spec.input_shape))
    raise NetspecError(f"{path} holds an array of shape {list(x.shape)}; the model takes examples of shape {list(spec.input_shape)} ({size} values each).")


def _read_csv_numbers(path: Path, spec: Spec, feature_names: tuple[str, ...] | None, notice) -> np.ndarray:
    """float32 [N, F] from a CSV file, its columns chosen as `read_inputs` says."""
    import csv

    from netspec.data import source_of
    from netspec.datasets import _numbered_rows

    source = source_of(spec.data)
    delimiter = spec.data["csv"]["delimiter"] if source == "csv" else ","
    import io

    from netspec.datasets import _bounded_lines, open_data_file

    # -sig: a spreadsheet's byte-order mark is not part of a name; lines are bounded as the training CSV's are
    with io.TextIOWrapper(open_data_file(path, "a CSV file"), encoding="utf-8-sig", newline="") as f:
        try:
            rows = list(_numbered_rows(csv.reader(_bounded_lines(f, path), delimiter=delimiter)))
        except csv.Error as e:
            raise ValueError(f"not a CSV file ({e})") from None
    if not rows:
        raise NetspecError(f"{path} holds no rows; give one example per row, one column per feature.")
    first, header = rows[0][0], [cell.strip() for cell in rows[0][1]]
    if not any(_is_number(cell) for cell in header) or (feature_names and set(feature_names) <= set(header)):
        rows = rows[1:]
        if not rows:
            raise NetspecError(f"{path} has a header but no rows of examples.")
    else:
        header = None
    width = len(header) if header is not None else len(rows[0][1])
    for line, row in rows:
        if len(row) != width:
            raise NetspecError(f"{path}: row {line} has {len(row)} cells, but row {first} has {width}; every row needs the same number.")
    columns = list(range(width))
    if header is not None and feature_names:
        missing = [name for name in feature_names if name not in header]
        if missing:
            raise NetspecError(f"{path} has no column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}: the model "
                               f"takes the features {', '.join(map(repr, feature_names))} (by name, in any order; other columns are "
                               f"ignored), and the header names {', '.join(map(repr, header))}. Rename the columns to match.")
        twice = next((name for name in feature_names if header.count(name) > 1), None)
        if twice is not None:
            raise NetspecError(f"{path}: the header names {twice!r} {header.count(twice)} times; the model's feature {twice!r} "
                               "must be one column. Rename or remove the others.")
        columns = [header.index(name) for name in feature_names]
    elif header is not None:
        if source != "csv":
            why = f"it trained on {source} data, which names no features"
        elif not spec.data["csv"]["header"]:
            why = "its training CSV had no header"
        else:
            why = "its preprocess.npz records no feature names (written by an older netspec)"
        notice(f"{path}: the header ({', '.join(header)}) was ignored, as this run has no feature names to match it "
               f"({why}); its {width} columns are taken in order as the model's inputs.")
    elif feature_names:
        if width != len(feature_names):
            raise NetspecError(f"{path} has {width} columns and no header; the model takes {len(feature_names)} features, "
                               f"{', '.join(map(repr, feature_names))}. Give a header naming them to pick them by name.")
        notice(f"{path} has no header, so its {width} columns are taken in the training order: {', '.join(feature_names)}.")
    for line, row in rows:
        bad = next((row[c] for c in columns if not _is_number(row[c])), None)
        if bad is not None:
            raise NetspecError(f"{path}: row {line} has {bad!r}, not a number; every cell must be a number"
                               + (" (a header names its columns with words)." if line == first and header is None and bad.strip() else "."))
    return np.asarray([[float(row[c]) for c in columns] for _, row in rows], np.float32)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_image(path: Path, input_shape) -> np.ndarray:
    """The pixels of one image, uint8 [height, width] (or [height, width, 3] for a 3-channel
    model). Raises NetspecError for a file that is not an image or of another size."""
    from PIL import Image, UnidentifiedImageError

    channels = input_shape[-1] if len(input_shape) == 3 else 1
    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if channels == 3 else "L")
            pixels = np.asarray(image)
    except UnidentifiedImageError:
        raise NetspecError(f"{path} is not an image this tool can read.") from None
    height, width = input_shape[0], input_shape[1] if len(input_shape) > 1 else None
    if len(input_shape) < 2 or pixels.shape[:2] != (height, width):
        raise NetspecError(f"{path} is {pixels.shape[1]}x{pixels.shape[0]} pixels; the model takes {list(input_shape)}. Resize it first.")
    return pixels


class Preprocess(NamedTuple):
    """What `netspec predict` needs of the training data (the run's preprocess.npz)."""

    shift: np.ndarray  # float32, () or the stored example's shape: x_scaled = (x - shift) * scale
    scale: np.ndarray
    class_names: list[str]  # empty when the data set names no classes
    feature_names: tuple[str, ...] | None  # the training CSV's feature columns, in order; None when not known


def write_preprocess(run_dir: Path, arrays) -> None:
    """The run's preprocess.npz: what `netspec predict` needs to treat new inputs as the training
    data was treated (`read_preprocess`). Written whole or not at all. Raises OSError."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, shift=arrays.shift, scale=arrays.scale, class_names=np.asarray(arrays.class_names or [], dtype=str),
             feature_names=np.asarray(arrays.feature_names or [], dtype=str))
    rundir.write_atomically(run_dir / "preprocess.npz", buffer.getvalue())


def record_resume(run_dir: Path, spec: Spec, arrays, changes, step: int, echo) -> None:
    """What a resume that goes ahead records: ran.json and the accepted changes
    (`resumption.record`), and preprocess.npz again when it is missing or damaged (the resume
    has the training data it came from), said in one line."""
    from netspec import resumption

    resumption.record(run_dir, spec, arrays, changes, step=step, notice=echo)
    try:
        read_preprocess(run_dir, spec)
    except NetspecError:
        write_preprocess(run_dir, arrays)
        echo(f"{run_dir / 'preprocess.npz'} was missing or damaged; it is written again from the training data.")


def read_preprocess(run_dir: str | Path, spec: Spec) -> Preprocess:
    """A run's preprocess.npz. Raises NetspecError naming it when it is missing or damaged."""
    path = Path(run_dir) / "preprocess.npz"
    try:
        with np.load(path, allow_pickle=False) as pre:
            shift, scale = pre["shift"].astype(np.float32), pre["scale"].astype(np.float32)
            class_names = [str(n) for n in pre["class_names"]]
            feature_names = tuple(str(n) for n in pre["feature_names"]) if "feature_names" in pre.files else None
        example = tuple(spec.data_info.x_shape)
        for name, value in (("shift", shift), ("scale", scale)):
            if value.shape not in ((), example):
                raise ValueError(f"its {name} has shape {list(value.shape)}, the training examples {list(example)}")
        if feature_names is not None and len(feature_names) not in (0, int(np.prod(example))):
            raise ValueError(f"it names {len(feature_names)} features, the training examples have {int(np.prod(example))}")
    except FileNotFoundError:
        problem = "has no preprocess.npz"
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as e:
        problem = f"has a damaged preprocess.npz ({getattr(e, 'strerror', None) or e})"
    else:
        return Preprocess(shift, scale, class_names, feature_names or None)
    raise NetspecError(f"The run directory {run_dir} {problem}: the input scaling, class names and feature names that training "
                       f"took from its data, which predict applies to new inputs. netspec eval still works (it reads the "
                       f"training data itself). To predict, restore the file from a copy of the run, or train the spec "
                       f"again (with the same data and seed it writes the same file).") from None


def predict_run(run_dir: str | Path, input_path: str | Path, *, notice=None) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """`netspec predict`: (outputs float32 [N, ...], predicted classes int32 [N] or None, class
    names) of a finished run on new inputs, scaled as its training data was; the class is
    `compile.output_class`'s, as in evaluation and the report. CSV columns are matched to the
    training features by name (`read_inputs`; `notice` gets its one-line notes, and one for a
    checkpoint passed over). Needs only the run directory: the spec is checked against the data
    as the run recorded it (ran.json), not against the data files. Raises NetspecError for a
    damaged run directory (naming the file) or unreadable inputs."""
    import jax

    from netspec.compile import Data, num_classes, output_class

    spec = load_run_spec(run_dir, recorded_data=True, notice=notice)  # the data as recorded: its files are not needed
    run_dir = Path(run_dir)
    rundir.tidy(run_dir)  # leftovers of cut-off writes go, unless another process holds the run
    pre = read_preprocess(run_dir, spec)
    x = read_inputs(input_path, spec, feature_names=pre.feature_names, notice=notice)
    x = x.reshape((len(x), *spec.data_info.x_shape))  # as the training data is stored: the scaling's shape
    program, state = finished_state(spec, run_dir, notice=notice)
    data = Data(x, np.zeros((len(x), *spec.data_info.y_shape), np.float32), pre.shift, pre.scale)  # labels as stored: none
    inputs, _ = program.prepare(data, data.x, data.y)
    outputs = np.asarray(jax.device_get(program.apply(state.params, state.model_state, inputs)))
    classes = output_class(spec)(outputs).reshape(len(x)) if num_classes(spec) else None
    return outputs, classes, pre.class_names


def _extras_fn(program):
    """Jitted (params, state, sample) -> (activations per layer, gradients per param) on a sample batch."""
    import jax

    def extras(params, mstate, sample):
        collect: dict = {}
        program.apply(params, mstate, sample[0], collect=collect)
        grads = jax.grad(lambda p: program.loss_and_metrics(p, mstate, sample, train=False, key=program.keys.step)[0])(params)
        return collect, grads

    return jax.jit(extras)


def _graph_names(state):
    """Names for the graph's input nodes: `<layer>/<param>` for parameters, `input/x`, `input/y`."""
    import jax

    def name_of(path):
        parts = []
        for p in path:
            key = getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))
            parts.append(str(key))
        return "/".join(parts)

    names_state = jax.tree_util.tree_map_with_path(lambda path, _: name_of(path), state)
    names_state = names_state._replace(
        step="train/step",
        skipped="train/skipped",
        scaler=None if state.scaler is None else type(state.scaler)("train/loss_scale", "train/loss_scale_good_steps"),
        params=jax.tree_util.tree_map_with_path(lambda path, _: name_of(path), state.params),
        opt_state=jax.tree_util.tree_map_with_path(lambda path, _: "train/" + name_of(path), state.opt_state),
    )
    return (names_state, ("input/x", "input/y"), "train/key")


REPORT_TABLE_MAX = 32  # examples: the closing report lists every one of a set this small


def report(spec: Spec, program, table, step: int, arrays, result: RunResult, echo) -> None:
    """The lecture's closing report: a table for small data sets (`table`: the trained (params,
    model state) on the host, or None; its prediction is `compile.output_class`'s, as netspec
    predict's and evaluation's), the final metrics, the TensorBoard line."""
    import jax

    from netspec.compile import output_class

    if table is not None:
        x, y = arrays.train
        data = device_data(arrays.train, arrays)
        h = np.asarray(jax.device_get(program.apply(*table, program.prepare(data, data.x, data.y)[0])))
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
