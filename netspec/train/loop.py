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
import time
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple
from pathlib import Path
import numpy as np
import netspec
from netspec import distribute
from netspec.train import interrupts
from netspec.train import rundir
from netspec.spec.types import Spec
from netspec.data.arrays import BatchOrder
from netspec.errors import NetspecError
from netspec.train.interrupts import Stopped, pause
from netspec.train.feed import Feed, device_data, load_arrays, padded, split_means
from netspec.train.report import Progress, REPORT_TABLE_MAX, report
from netspec.train.rundir import _json, _write_atomically, make_run_dir, record_resume, spec_yaml, write_preprocess


@dataclass
class RunResult:
    run_dir: Path
    final: dict
    train_seconds: float
    compile_seconds: float
    losses: list = field(default_factory=list)  # (step, loss) at every step, for reproducibility checks
    steps_run: int | None = None  # steps the training that ended the run took in its sitting (None: len(losses))


def chunk_lengths(total: int, every: int) -> list[int]:
    """Chunks of `every` steps, then the remainder: summaries land on multiples of `every` and the end."""
    lengths = [every] * (total // every)
    if total % every:
        lengths.append(total % every)
    return lengths


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
        from netspec.train import checkpoint

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

    from netspec.train import checkpoint
    from netspec.spec.types import metric_mode
    from netspec.compile.optim import current_learning_rate
    from netspec.compile.program import compile_spec
    from netspec.train.summaries import Summaries

    from netspec.train import resumption

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
        run_dir = make_run_dir(logdir if writer else scratch, spec.name, run_name)
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
        run_dir = Path(resume) if writer else make_run_dir(scratch, spec.name, run_name)
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
    sample = program.prepare_batch(data, *sample)
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
            from netspec.train.graph import step_graph

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
        n: program.train_chunk(n, streamed=feed.streamed).lower(state, data, feed.batches(start_step, n), program.keys).compile()
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
        bad_layer, bad_step = int(outputs.nonfinite_layer), int(outputs.nonfinite_step)
        noticed = bool(outputs.nonfinite) if outputs.nonfinite is not None else False  # stop without a per-step check: the chunk went bad somewhere
        if spec.train["on_nonfinite"] == "stop" and (bad_layer >= 0 or noticed):
            if bad_layer < 0:
                bad_step, bad_layer = locate_nonfinite(chunk)
            raise _nonfinite(spec, run_dir, bad_step, bad_layer, checkpoints.latest(), chunk, outputs.loss)
        losses.extend(float(v) for v in outputs.loss)
        last = {"loss": float(outputs.loss[-1]), **{k: float(v) for k, v in outputs.metrics.items()},
                "learning_rate": float(outputs.learning_rate)}
        if outputs.loss_scale is not None:
            last["loss_scale"] = float(outputs.loss_scale)
        if spec.train["on_nonfinite"] == "skip_step" or outputs.loss_scale is not None:
            last["skipped_steps"] = float(outputs.skipped_steps)
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
        diagnose = program.train_chunk(chunk.length, streamed=feed.streamed, diagnose=True)
        _, outputs = diagnose(replay, data, feed.batches(begin, chunk.length), program.keys)
        outputs = jax.device_get(outputs)
        return int(outputs.nonfinite_step), int(outputs.nonfinite_layer)

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
