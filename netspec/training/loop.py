"""Train a checked Spec: the host loop over compiled chunks, from the run's start to its closing.

Contract: `run(spec, *, logdir="runs", run_name=None, quiet=False, data_dir=None, echo=print,
resume=None, devices=None, allow_setting_changes=False, started=None) -> RunResult` (the public
`netspec.train`; `netspec run` and `netspec resume` call it). A sitting (`sitting.Sitting`) loads
the data (`feed.load_arrays`), compiles the Program (`netspec.compile.program.compile_spec`) on
the mesh `distribute.mesh_for` makes, then either claims a new run directory
(`<logdir>/<spec.name>/<run-id>/`, `rundir.make_run_dir`) and writes what a run starts with
(spec.yaml, run.json, preprocess.npz, ran.json), or with `resume=RUN_DIR` reopens that run at its
latest checkpoint that loads, after `netspec.training.resumption` has accepted what changed. It then
runs `spec.steps` steps in chunks of `summaries.every` (the untrained model is written at step 0),
dispatching each chunk before it finishes the one before, so the host writes a chunk's summaries,
evaluations and checkpoints (`callbacks`) while the next one runs on the device. The host touches
the program only between chunks.

A resumed run ends bit for bit as one never stopped: the state is restored exactly, the batch
order and per-step keys are functions of (seed, step), and the event files drop anything past
the checkpoint (purge_step).

The closing. When training ends (its last step, or early stopping) the final evaluations are
computed (the best checkpoint kept; when the validation split chose the model and the data has a
test split, the test split is measured too, once: `RunResult.final` holds both), then the closing
checkpoint records how training ended; only then are the final evaluations' events, the HParams
status and `result.json` written, and the report printed (`report`). A run interrupted after the
closing checkpoint is finished by a resume without training: the same evaluations of the same
state, written in place of what the interrupted closing wrote.

Stops: SIGINT/SIGTERM (`interrupts`) before the run directory exists stop at once, with nothing
written; while training, the first finishes the current chunk, checkpoints and raises `Stopped`
(exit 130 / 143), a second stops at once, keeping the last checkpoint; in the closing they stop
at once, for a resume to finish. A full disk ends the run with one paragraph saying what was kept
(`Sitting.cannot_write`). A non-finite loss or gradient with `on_nonfinite: stop` raises an error
naming the step and layer, keeping the last good checkpoint (the chunk notices it once, at its
end; the host then runs that chunk again from the last checkpoint with the per-step check to find
them); early stopping ends the loop normally.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from netspec import distribute
from netspec.compile.optim import with_spec_rate
from netspec.errors import NetspecError, quoted
from netspec.spec.summary import as_json, summarize
from netspec.spec.types import Spec
from netspec.training import interrupts
from netspec.training.callbacks import (
    Checkpointing,
    DispatchedChunk,
    Evaluation,
    FinishedChunk,
    NonfiniteGuard,
    ProgressBar,
    Timing,
    TrainingSummaries,
    chunk_values,
    device_copy,
    start_work,
    warm_copies,
)
from netspec.training.feed import TrainingInputs, chunk_batches, load_arrays, padded, split_means, training_inputs
from netspec.training.interrupts import Stopped, pause
from netspec.training.report import REPORT_TABLE_MAX, Progress, report
from netspec.training.rundir import (
    _json,
    _write_atomically,
    make_run_dir,
    record_resume,
    renamed,
    spec_yaml,
    write_preprocess,
)
from netspec.training.sitting import Sitting


@dataclass
class RunResult:
    """A finished run: its directory, final metrics and timings (seconds)."""

    run_dir: Path
    final: dict  # the last chunk's scalars, and `<split>_<tag>` of the final evaluations
    train_seconds: float
    compile_seconds: float
    losses: list = field(default_factory=list)  # every step's loss of this sitting, for reproducibility checks
    steps_run: int | None = None  # steps the training that ended the run took in its sitting (None: len(losses))
    ran: dict = field(default_factory=dict)  # the choices made for this machine: loop, unroll, devices, loss_scale


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
    import os

    import jax

    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "netspec" / "jax"
    directory = os.environ.get("NETSPEC_JAX_CACHE", str(default))
    if directory and not jax.config.jax_compilation_cache_dir:  # type: ignore[attr-defined]  # jax's Config declares no option attributes
        jax.config.update("jax_compilation_cache_dir", directory)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


def run(
    spec: Spec,
    *,
    logdir: str | Path = "runs",
    run_name: str | None = None,
    quiet: bool = False,
    data_dir: str | None = None,
    echo=print,
    resume: str | Path | None = None,
    devices: int | None = None,
    allow_setting_changes: bool = False,
    started: float | None = None,
    member_of: str | Path | None = None,
) -> RunResult:
    """Train `spec` and write its run directory, or with `resume` continue the run in that
    directory from its latest checkpoint that loads (or, when its training had ended, finish it
    without training); what a resume may change of the spec is `netspec.training.resumption`'s
    (`allow_setting_changes`: the training settings too). `started`: when the process started
    (time.perf_counter(); result.json's first_step_seconds counts from it). `member_of`: the
    sweep directory this run is a member of: no closing report (the sweep ranks its members), and
    a stop names the sweep's resume, which resumes this run and goes on with the others. See the module
    docstring. Raises `Stopped` for SIGINT / SIGTERM and NetspecError for anything else that ends
    it early (a full disk included), each one paragraph saying what was kept and how to go on."""
    where = Sitting(spec, resume, None if member_of is None else Path(member_of))
    with interrupts.watch() as signals, signals.modes():
        failed, signalled = True, False
        try:
            opened = _open(
                spec,
                where,
                signals,
                logdir=logdir,
                run_name=run_name,
                data_dir=data_dir,
                echo=echo,
                resume=resume,
                devices=devices,
                allow_setting_changes=allow_setting_changes,
            )
            if resume is None and not quiet and opened.writer and (line := renamed(opened.run_dir, run_name)):
                echo(line)
            if resume is not None and not quiet and opened.writer:
                echo(
                    f"Resuming {opened.run_dir} at step {opened.start_step} of {spec.steps}"
                    + (": finishing it (no training)." if opened.finishing else ".")
                )
            result = _train_and_close(
                spec,
                opened,
                where,
                signals,
                quiet=quiet,
                echo=echo,
                started=time.perf_counter() if started is None else started,
                report=member_of is None,
            )
            failed = False
            return result
        except interrupts.Interrupted as e:
            signalled = True
            raise where.stopped(e) from None
        except OSError as e:  # a full disk, a read-only or vanished run directory
            where.abandon_if_empty()
            raise where.cannot_write(e) from None
        finally:
            with signals.deferred():  # the clean-up runs whole; a signal meanwhile changes nothing
                where.release(failed)
                if failed and not signalled:  # a new run's compile, begun before the error, ends first
                    interrupts.settle()


class Opened(NamedTuple):
    """A sitting's start: the run directory claimed or reopened, the program, the state to train on."""

    run_dir: Path
    program: Any
    state: Any  # TrainState, placed on the mesh
    start_step: int
    arrays: Any  # netspec.data.arrays.Arrays
    mesh: Any
    changes: list  # what a resume changed of the spec (netspec.training.resumption)
    meta: dict  # the restored checkpoint's metadata ({} for a new run)
    closing: dict | None  # how training ended, when a resume finds its closing checkpoint
    finishing: bool  # a resume that only finishes the run (no training)
    reclosing: bool  # a resume that trains on after an unfinished closing (what it wrote is replaced)
    spec_text: str | None  # spec.yaml as a new run wrote it (None on resume)
    writer: bool  # this process writes the run (process 0)
    early: Any = None  # a new run's (TrainingInputs, compiling, lowered): its chunks began compiling before init


def _open(
    spec: Spec, where: Sitting, signals, *, logdir, run_name, data_dir, echo, resume, devices, allow_setting_changes
) -> Opened:
    """Load the data, compile, and claim a new run directory or reopen `resume` at its checkpoint."""
    from netspec.compile.program import compile_spec
    from netspec.training import resumption

    writer = distribute.is_writer()
    if resume is not None and writer:
        where.hold(Path(resume))  # first: a run in use is refused before anything loads
    arrays = load_arrays(spec, data_dir)  # data errors surface before anything is written
    # a resume continues the same run: refused changes end here, before anything compiles or is written
    changes = (
        []
        if resume is None
        else resumption.accepted_changes(resume, spec, arrays, allow_setting_changes=allow_setting_changes)
    )
    pause("before-run-dir")
    use_compilation_cache()
    mesh = _mesh(spec, devices)
    program = signals.wait_for(lambda: compile_spec(spec, mesh))
    early = None
    if resume is None:  # its chunks compile while its parameters are initialized (a resume's step is its checkpoint's)
        inputs = training_inputs(spec, arrays, program, mesh)
        lengths = chunk_lengths(spec.steps, spec.summaries["every"])
        early = (inputs, *_compile_chunks(program, _state_shapes(program), 0, inputs, lengths, signals))
        # the initializers' many small calls wait for the chunks' lowering, as the first summaries do
        # (`_first_summaries`): beside it each would wait its turn at the GIL (3.8 s at 400 layers, 0.5 s after);
        # then they run here, while the worker thread compiles
        wait_lowered(early[2])
        state = program.init()
    else:
        state = signals.wait_for(program.init)
    scratch = where.scratch = (
        None if writer else Path(tempfile.mkdtemp(prefix="netspec-process-"))
    )  # other processes write nothing real
    if resume is None:
        run_dir = _new_run(spec, where, signals, arrays, logdir if writer else scratch, run_name)
        opened = Opened(
            run_dir, program, state, 0, arrays, mesh, changes, {}, None, False, False, spec_yaml(spec), writer, early
        )
    else:
        opened = _reopen(
            spec,
            signals,
            resume,
            program=program,
            state=state,
            arrays=arrays,
            mesh=mesh,
            changes=changes,
            writer=writer,
            scratch=scratch,
            run_name=run_name,
            echo=echo,
        )
    if mesh is not None:  # a checkpoint holds whole arrays, so it restores on any device count
        opened = opened._replace(state=distribute.place(opened.state, program.state_sharding))
    return opened


def _mesh(spec: Spec, devices: int | None):
    """The device mesh of the spec's distribute section (`devices`: --devices in its place), or None for one device."""
    asked = spec.resolved["distribute"]
    return distribute.mesh_for(
        devices or asked["devices"],
        batch_size=spec.train["batch_size"],
        params=asked["params"],
        fsdp_devices=asked["fsdp_devices"],
    )


def _reopen(
    spec: Spec,
    signals,
    resume,
    *,
    program,
    state,
    arrays,
    mesh,
    changes: list,
    writer: bool,
    scratch: Path | None,
    run_name,
    echo,
) -> Opened:
    """Reopen the run `resume` at its newest checkpoint that loads (`state`: the initial state to
    restore into) and record the resume."""
    from netspec.training import checkpoint

    signals.begin_graceful()
    # the newest checkpoint that loads (one damaged or of another model is set aside, said in one line)
    restored = checkpoint.Checkpoints(Path(resume) / "checkpoints", keep=1).restore(
        state, notice=echo, set_aside=writer
    )
    if restored is None:
        raise NetspecError(
            f"{resume} has no checkpoint to resume from (checkpoints/step-*.safetensors); start it again with netspec run."
        )
    latest, restored_state = restored
    # the rate this spec asks for, not the one the checkpoint was written with (`with_spec_rate`)
    state = restored_state._replace(opt_state=with_spec_rate(restored_state.opt_state, state.opt_state))
    meta = checkpoint.metadata(latest)
    closing, finishing, reclosing = _resume_kind(spec, Path(resume), meta, int(state.step))
    if writer:
        run_dir = Path(resume)
    else:
        assert scratch is not None  # a process that does not write has its scratch directory
        run_dir = make_run_dir(scratch, spec.name, run_name)
    _write_atomically(run_dir / "spec.yaml", spec_yaml(spec))  # what runs from here, --set overrides included
    if writer:
        record_resume(run_dir, spec, arrays, changes, int(state.step), echo)
    return Opened(
        run_dir,
        program,
        state,
        int(state.step),
        arrays,
        mesh,
        changes,
        meta,
        closing,
        finishing,
        reclosing,
        None,
        writer,
    )


def _new_run(spec: Spec, where: Sitting, signals, arrays, logdir, run_name) -> Path:
    """Claim a new run directory and write what it starts with: spec.yaml, run.json, preprocess.npz, ran.json."""
    from netspec.training import resumption

    run_dir = make_run_dir(logdir, spec.name, run_name)
    where.hold(run_dir)
    signals.begin_graceful()  # from here a first signal stops at a checkpoint
    _write_atomically(run_dir / "spec.yaml", spec_yaml(spec))
    _write_atomically(
        run_dir / "run.json", json.dumps({"spec_source": spec.source, "base_dir": spec.base_dir}, indent=2) + "\n"
    )
    write_preprocess(
        run_dir, arrays
    )  # what `netspec predict` needs to treat new inputs as the training data was treated
    resumption.record(run_dir, spec, arrays)  # what ran, for resume to compare with and predict to check with
    return run_dir


def _resume_kind(spec: Spec, resume: Path, meta: dict, at: int) -> tuple[dict | None, bool, bool]:
    """(the closing to finish or None, finishing, reclosing) of a resume from a checkpoint at step
    `at`; raises NetspecError for a run that already finished."""
    closing: dict | None = meta.get("closing")
    stopped_early = closing is not None and closing["stopped"] == "early_stopping"
    ended = closing is not None and (at >= spec.steps or stopped_early)
    results = (resume / "result.json").is_file()
    if ended and not results and at <= spec.steps:
        return (
            closing,
            True,
            False,
        )  # interrupted between its closing checkpoint and result.json: finish it, no training
    if ended and stopped_early and at < spec.steps:
        raise NetspecError(
            f"{resume} already finished: early stopping ended it at step {at} of {spec.steps} (its result.json "
            f"says so). Its best checkpoint is what netspec eval and predict use."
        )
    if at >= spec.steps:
        raise NetspecError(
            f"{resume} already finished its {spec.steps} steps. To train longer: netspec resume {quoted(resume)} --set train.steps=N."
        )
    return None, False, closing is not None and not results  # trains on: what that closing wrote is replaced


def _summaries(spec: Spec, opened: Opened, inputs: TrainingInputs):
    """The run's event writers: a resumed run continues its event files (purge_step drops anything
    written after the checkpoint; TensorBoard drops steps >= purge_step, and the checkpoint's own
    step was written before it); the evaluation run is opened at once, so its purge holds even
    before its first evaluation. A run finished here writes no training events; it (or one
    trained on after a closing cut short) replaces what that closing wrote."""
    from netspec.training.summaries import Summaries

    evaluating = inputs.eval_data is not None and spec.eval["every"] and not opened.finishing
    return Summaries(
        opened.run_dir,
        spec,
        purge_step=opened.start_step + 1 if opened.spec_text is None else None,
        splits=[spec.eval["split"]] if evaluating else [],
        training=not opened.finishing,
        replace_closing=opened.finishing or opened.reclosing,
    )


def _first_summaries(
    spec: Spec,
    opened: Opened,
    inputs: TrainingInputs,
    summaries,
    writer: TrainingSummaries,
    graphs: dict | None = None,
    lowered: threading.Event | None = None,
    compiling: interrupts.Finish | None = None,
) -> Callable[[], None] | None:
    """What a sitting writes before training: a resume's changes; a new run's spec text, sample
    images, the untrained model at step 0 (`_step_zero`) and graph. `graphs`: where the members of
    a sweep group keep the step's graph, drawn once for them all (their steps differ only in
    numbers). `lowered` (`_compile_chunks`'): the step-0 figures and the graph wait for it, to be
    traced while XLA compiles the chunks (it lets go of the GIL) rather than while they are
    traced: two Python threads take turns, and a 400-layer net's chunks took 4.4 s to compile
    beside them, 3.3 s alone. `compiling` (`begin_compile`'s finish): when the chunks have
    compiled by then, training starts first: step 0 is returned, of a copy of the initial state,
    for the loop to write once the first chunk has run (`after_first_chunk`), with the compile of
    the copies the loop takes (`warm_copies`): about 0.25-0.4 s less to the first step of a small model
    on a 2-core CPU, the compiles of the step-0 forward pass and the copies, and the graph's
    tracing. The copy is made without compiling anything (device_put). One process only: the
    processes of a multi-process run must issue the same programs in the same order."""
    import jax

    from netspec.training import resumption

    config = spec.summaries
    if opened.changes and config["text"] and not opened.finishing:  # at the first step that ran with them
        summaries.changes_text(resumption.markdown(opened.changes, opened.start_step), opened.start_step)
    if opened.spec_text is None:
        return None
    summaries.spec_text(opened.spec_text)
    summaries.model_summary_text(opened.program.conv)
    summaries.sample_images(opened.arrays.train.x[:16], spec.data_info)
    wait_lowered(lowered)
    if compiling is not None and compiling.done() and jax.process_count() == 1:
        # a copy of its own: the first chunk takes (donates) the state it is given
        initial = jax.device_put(opened.state, may_alias=False)
        return partial(_step_zero, spec, opened.program, initial, inputs, summaries, writer, graphs)
    _step_zero(spec, opened.program, opened.state, inputs, summaries, writer, graphs)
    return None


def after_first_chunk(outputs, state, timing: Timing, step_zeros: list[Callable[[], None]]) -> None:
    """What a loop put off for its first chunk (`_first_summaries`), done once that chunk has run
    (waited for: its time is its own) and before anything of it: the compile of the copies the
    loop takes of `state` (the state the chunk returned, `warm_copies`), then each run's step 0.
    That time is not training: `timing.exclude` leaves it out of the chunk's and the loop's."""
    import jax

    jax.block_until_ready(outputs)
    began = time.perf_counter()
    warm_copies(state)
    for step_zero in step_zeros:
        step_zero()
    timing.exclude(time.perf_counter() - began)


def _step_zero(
    spec: Spec, program, state, inputs: TrainingInputs, summaries, writer: TrainingSummaries, graphs: dict | None
) -> None:
    """Write a new run's step 0: the untrained model's loss and metrics on the sample batch, the
    rate step 1 uses, its histograms, and the step's graph (see `_first_summaries`)."""
    import jax

    from netspec.compile.optim import current_learning_rate

    # the sample batch is an argument, never closed over (a constant in the program; across processes, not even allowed)
    loss0, (metrics0, _) = jax.device_get(
        program.loss_and_metrics(state.params, state.model_state, inputs.sample, train=False, key=program.keys.step)
    )
    values = {"loss": loss0, **metrics0, "learning_rate": float(current_learning_rate(state.opt_state))}
    writer.write(0, values, None, state.params, writer.dispatch(state, 0))
    if spec.summaries["graph"]:
        from netspec.training.graph import step_graph

        graphs = {} if graphs is None else graphs
        if "step" not in graphs:
            graphs["step"] = step_graph(
                program.train_step, state, inputs.sample, program.keys.step, arg_names=_graph_names(state)
            )
        summaries.graph(graphs["step"])


def _plan(spec: Spec, opened: Opened) -> list[int]:
    """The lengths of the chunks this sitting runs. A run resumed off the grid (it finished a
    shorter last chunk, then was given more steps) first steps up to the next multiple of
    `summaries.every`, so summaries and checkpoints stay on it; a finishing resume runs none."""
    if opened.finishing:
        return []
    every, start = spec.summaries["every"], opened.start_step
    head = min(-start % every, spec.steps - start)
    return ([head] if head else []) + chunk_lengths(spec.steps - start - head, every)


def _compile_chunks(program, state, start_step: int, inputs: TrainingInputs, lengths: list[int], signals):
    """`begin_compile` of the sitting's chunks. `state`: the state to train, or its shapes
    (`_state_shapes`: a new run compiles while its parameters are initialized)."""
    return begin_compile(
        signals,
        lambda n: program.train_chunk(n, streamed=inputs.feed.streamed).lower(
            state, inputs.data, inputs.feed.batches(start_step, n), program.keys
        ),
        lengths,
    )


def _state_shapes(program):
    """The shapes, dtypes and placements of `program.init()`'s TrainState, without computing it."""
    import jax

    shapes = jax.eval_shape(program.init)
    if program.state_sharding is None:
        return shapes
    return jax.tree_util.tree_map(
        lambda shape, sharding: jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding),
        shapes,
        program.state_sharding,
    )


def begin_compile(signals, lower: Callable[[int], Any], lengths: list[int]):
    """Start compiling a sitting's chunks, `lower(length)` for each length, on the worker thread (a
    signal can stop the wait) and return (`finish() -> ({length: the compiled chunk}, seconds the
    compilation took)`, `lowered`: a threading.Event set once every chunk is traced and lowered,
    also when lowering fails, when XLA's compile begins). XLA compiles while the main thread
    initializes and writes the first summaries (the step-0 metrics and histograms, the graph), so
    they overlap instead of adding up; the main thread's Python waits for `lowered` first
    (`wait_lowered`)."""
    lowered = threading.Event()

    def compile_all() -> tuple[dict, float]:
        start = time.perf_counter()
        try:
            ready = {n: lower(n) for n in sorted(set(lengths))}
        finally:
            lowered.set()
        compiled = {n: chunk.compile() for n, chunk in ready.items()}
        return compiled, time.perf_counter() - start

    return signals.begin(compile_all), lowered


def wait_lowered(lowered: threading.Event | None) -> None:
    """Wait for `begin_compile`'s `lowered` (None: nothing to wait for), as interruptibly as the
    compile's own wait: Python beside the chunks' tracing takes turns with it at the GIL."""
    while lowered is not None and not lowered.wait(0.05):
        pass


def _train_and_close(
    spec: Spec, opened: Opened, where: Sitting, signals, *, quiet: bool, echo, started: float, report: bool = True
) -> RunResult:
    """Train the sitting's chunks with the callbacks, then close the run (see the module docstring)."""
    from netspec.training import checkpoint

    program, run_dir = opened.program, opened.run_dir
    lengths = _plan(spec, opened)
    if opened.early is not None:  # a new run's chunks, compiling since before its init (`_open`)
        inputs, compiling, lowered = opened.early
    else:
        inputs = training_inputs(spec, opened.arrays, program, opened.mesh)
        compiling, lowered = _compile_chunks(program, opened.state, opened.start_step, inputs, lengths, signals)
    summaries = _summaries(spec, opened, inputs)
    checkpoints = checkpoint.Checkpoints(run_dir / "checkpoints", keep=spec.checkpoint["keep"])
    writer, evaluation, saver = _writers(spec, opened, inputs, summaries, checkpoints)
    pause("compiling")
    step_zero = _first_summaries(spec, opened, inputs, summaries, writer, lowered=lowered, compiling=compiling)
    if step_zero is None:  # else they compile beside the first chunk, with step 0
        warm_copies(opened.state)  # beside XLA's compile of the chunks, not in the training time
    compiled, compile_seconds = compiling()
    if (
        signals.requested and not opened.finishing
    ):  # Ctrl-C while setting up: a new run keeps its step 0, to resume from
        if opened.spec_text is not None:
            if step_zero is not None:  # its events before its checkpoint
                step_zero()
            saver.save(opened.state, opened.start_step)
        summaries.close()
        raise _stopped(signals, opened.start_step, spec, run_dir, where.resumed_by(run_dir))
    locate = partial(
        _locate_nonfinite,
        opened,
        inputs,
        compiled,
        lengths,
        checkpoints,
        signals,
        echo if not quiet and opened.writer else None,
    )
    callbacks = [
        NonfiniteGuard(spec, run_dir, checkpoints.latest, locate),
        writer,
        evaluation,
        saver,
        ProgressBar(progress := Progress(spec.steps - opened.start_step, quiet)),
    ]
    trained = _train_chunks(
        spec, opened, inputs, compiled, lengths, callbacks, signals, Timing(started), progress, step_zero
    )
    dropped = summaries.dropped_note()
    if dropped and opened.writer:  # even with --quiet: it replaces tensorboardX's warnings, one per value
        echo(dropped)
    if signals.requested and trained.step < spec.steps and not opened.finishing:
        saver.save(trained.state, trained.step)
        summaries.close()
        raise _stopped(signals, trained.step, spec, run_dir, where.resumed_by(run_dir))
    closing = opened.closing or _closing(opened, trained, compile_seconds)
    return _close(
        spec,
        opened,
        inputs,
        trained,
        closing,
        summaries,
        evaluation,
        saver,
        where,
        signals,
        quiet=quiet or not report,
        echo=echo,
    )


def _writers(
    spec: Spec, opened: Opened, inputs: TrainingInputs, summaries, checkpoints
) -> tuple[TrainingSummaries, Evaluation, Checkpointing]:
    """The callbacks that write the run: its training summaries, evaluations and checkpoints."""
    program = opened.program
    wanted_hist = set(spec.summaries["histograms"])
    extras = partial(program.extras, sample=inputs.sample) if wanted_hist & {"activations", "gradients"} else None
    writer = TrainingSummaries(spec, summaries, extras)
    evaluation = Evaluation(
        spec,
        summaries,
        checkpoints,
        None if inputs.eval_data is None else lambda s: program.evaluate(s.params, s.model_state, *inputs.eval_data),
        opened.arrays.class_names,
        opened.meta.get("tracking"),
    )
    saver = Checkpointing(spec, summaries, checkpoints, lambda: evaluation.tracking)
    return writer, evaluation, saver


def _closing(opened: Opened, trained: Trained, compile_seconds: float) -> dict:
    """How this sitting's training ended, as the closing checkpoint records it."""
    return {
        "stopped": trained.stop_reason,
        "last": trained.last,
        "start_step": opened.start_step,
        "train_seconds": trained.seconds,
        "compile_seconds": compile_seconds,
        "first_step_seconds": trained.first_step_seconds,
    }


def _stopped(signals, step: int, spec: Spec, run_dir: Path, resumed_by: Path) -> Stopped:
    return Stopped(
        f"{interrupts.describe(signals.signum)}: stopped after step {step} of {spec.steps}; checkpoint and events "
        f"are saved in {run_dir}. Continue with: netspec resume {quoted(resumed_by)}",
        signals.signum,
    )


class Trained(NamedTuple):
    """Where the training of a sitting ended."""

    state: Any
    step: int
    stop_reason: str | None  # "early_stopping", "signal", or None (the last step)
    last: dict  # the last chunk's scalars
    losses: list  # every step's loss
    seconds: float  # the loop's wall time
    first_step_seconds: float | None


@contextlib.contextmanager
def chunk_loop(feed, progress):
    """A training loop over chunks (a run's, a sweep group's): its `feed` and `progress` bar are
    closed however it ends, and the objects that exist when it begins (jax's, the compiled
    programs', the run's: hundreds of thousands) are left out of the garbage collector's passes
    until then (`gc.freeze`), so a full collection during training looks only at what the loop
    made. One full collection took 50 ms in the middle of a 2-member XOR sweep's 210 ms of
    training. What the loop makes is collected as ever; the objects are handed back after it."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        progress.close()
        feed.close()


def _train_chunks(
    spec: Spec,
    opened: Opened,
    inputs: TrainingInputs,
    compiled: dict,
    lengths: list[int],
    callbacks: list,
    signals,
    timing: Timing,
    progress,
    step_zero: Callable[[], None] | None = None,
) -> Trained:
    """The loop: dispatch each chunk, then finish the one before it (its summaries, evaluations,
    checkpoints) while this one runs; stop at a callback's reason or a signal. `step_zero`: a new
    run's step 0 still to write (`_first_summaries`), written once the first chunk has run (so
    that chunk's time is its own, Timing.exclude leaving step 0's out), before anything of it
    (`after_first_chunk`)."""
    losses: list[float] = []
    state, step, pending, stop_reason, last = opened.state, opened.start_step, None, None, {}
    evaluation = next(c for c in callbacks if c.name == "evaluation")

    def finish(chunk: DispatchedChunk) -> str | None:
        nonlocal last
        outputs = distribute.to_host(chunk.outputs)
        steps_per_second = timing.steps_per_second(chunk.dispatched, chunk.length)
        finished = FinishedChunk(
            chunk.end,
            chunk.length,
            outputs,
            chunk_values(spec, outputs),
            steps_per_second,
            chunk.state,
            chunk.params,
            chunk.work,
        )
        reason = None
        for callback in callbacks:
            if callback.name == "summaries":  # the chunk is good (the guard ran): its steps count
                losses.extend(float(v) for v in outputs.loss)
                last = finished.values
            reason = callback.on_chunk_end(finished, reason) or reason
        return reason

    loop_start = time.perf_counter()
    with chunk_loop(inputs.feed, progress):
        for i, n in enumerate(lengths):
            end = step + n
            batches = chunk_batches(inputs.feed, lengths, i, step)
            dispatched = time.perf_counter()
            state, outputs = compiled[n](state, inputs.data, batches, opened.program.keys)
            if step_zero is not None:  # ahead of `_dispatch`, which takes the copies and the extras it compiles
                after_first_chunk(outputs, state, timing, [step_zero])
                step_zero = None
            chunk = _dispatch(callbacks, state, end, n, dispatched, outputs)
            if pending is not None:
                stop_reason = finish(pending) or stop_reason
            pending = chunk
            if spec.train["early_stopping"] is not None and evaluation.due(end) and not stop_reason:
                stop_reason = (
                    finish(chunk) or stop_reason
                )  # early stopping decides before the next chunk runs: a stop is at this step
                pending = None
            step = end
            if signals.requested:
                stop_reason = "signal"
            if stop_reason:
                break
        if pending is not None:
            stop_reason = finish(pending) or stop_reason
    seconds = time.perf_counter() - loop_start - timing.excluded
    return Trained(state, step, stop_reason, last, losses, seconds, timing.first)


def _dispatch(callbacks: list, state, end: int, length: int, dispatched: float, outputs) -> DispatchedChunk:
    """What the host needs of this state is copied on the device now, before the next chunk takes
    (donates) it, and the callbacks' device work is started; the host reads both while the next
    chunk runs."""
    needs = [callback.needs(end) for callback in callbacks]
    keep_state = any(n.state for n in needs)
    snapshot = device_copy(state) if keep_state else None
    wants_params = any(n.params for n in needs)
    params = snapshot.params if snapshot is not None else (device_copy(state.params) if wants_params else None)
    return DispatchedChunk(end, length, dispatched, outputs, snapshot, params, start_work(callbacks, state, end))


def _locate_nonfinite(
    opened: Opened,
    inputs: TrainingInputs,
    compiled: dict,
    lengths: list[int],
    checkpoints,
    signals,
    echo,
    end: int,
    length: int,
) -> tuple[int, int]:
    """(step, layer) of the first non-finite step of the chunk of `length` steps ending at `end`
    (-1, -1 if running it again does not find one): the chunk runs again with the per-step check,
    from the state before it, which the last checkpoint (or the run's start) and the same compiled
    chunks since give back step for step."""
    import jax

    from netspec.training import checkpoint

    program = opened.program
    begin = end - length
    latest = checkpoints.latest()
    replay = (
        program.init() if latest is None else _restored(checkpoint.load(latest, program.init()), program.init())
    )  # no checkpoint: the run began at 0
    if opened.mesh is not None:
        replay = distribute.place(replay, program.state_sharding)
    at = int(replay.step)
    starts = list(itertools.accumulate(lengths[:-1], initial=opened.start_step))  # steps done before each chunk
    if at not in starts:  # not a chunk boundary of this sitting: the same chunks cannot follow it
        return -1, -1
    if echo is not None:
        echo(
            f"A NaN or Inf appeared in steps {begin + 1}-{end}; running them again from step {at} to find the step and layer."
        )
    for start, n in zip(starts, lengths, strict=True):
        if start >= at and start + n <= begin:
            if signals.requested:  # Ctrl-C: stop looking
                return -1, -1
            replay, _ = compiled[n](replay, inputs.data, inputs.feed.batches(start, n), program.keys)
    diagnose = program.train_chunk(length, streamed=inputs.feed.streamed, diagnose=True)
    _, outputs = jax.device_get(diagnose(replay, inputs.data, inputs.feed.batches(begin, length), program.keys))
    return int(outputs.nonfinite_step), int(outputs.nonfinite_layer)


def _restored(state, fresh):
    """A checkpoint's state with the rate the sitting's spec asks for (`optim.with_spec_rate`)."""
    return state._replace(opt_state=with_spec_rate(state.opt_state, fresh.opt_state))


def _final_evaluations(
    spec: Spec, opened: Opened, inputs: TrainingInputs, state, step: int, evaluation: Evaluation
) -> list:
    """[(split, (values, confusion))] of the closing: the eval split (its best checkpoint kept: the
    last step may be the best), and, when the validation split chose the model, the test split,
    looked at once, here, for the figure to report (it goes into its own test/ run)."""
    program = opened.program
    measured = []
    if inputs.eval_data is not None:
        evaluated = split_means(program.evaluate(state.params, state.model_state, *inputs.eval_data))
        if evaluation.best_tag:  # again in a resume that finishes: then not better
            evaluation.keep_best(evaluated[0][evaluation.best_tag], step, state)
        measured.append((spec.eval["split"], evaluated))
    if spec.eval["split"] == "validation" and opened.arrays.test is not None:
        test = padded(opened.arrays.test, opened.arrays, spec.eval["batch_size"], inputs.n_devices, opened.mesh)
        measured.append(("test", split_means(program.evaluate(state.params, state.model_state, *test))))
    return measured


def _close(
    spec: Spec,
    opened: Opened,
    inputs: TrainingInputs,
    trained: Trained,
    closing: dict,
    summaries,
    evaluation: Evaluation,
    saver: Checkpointing,
    where: Sitting,
    signals,
    *,
    quiet: bool,
    echo,
    ran: dict | None = None,
) -> RunResult:
    """The closing: its evaluations first, then the closing checkpoint recording how training
    ended; what is written after it (the final evaluations' events, the HParams status,
    result.json, the report) a resume that finds it writes again (see the module docstring).
    `signals` None: a sweep member closing while its group trains on (signals stay graceful);
    `ran`: more of what ran, for result.json (a sweep group's size)."""
    state, step = trained.state, trained.step
    measured = _final_evaluations(spec, opened, inputs, state, step, evaluation)
    if not opened.finishing:
        saver.save(state, step, closing=closing)
    where.phase = "closing"
    if signals is not None:
        signals.end_graceful()  # from here a signal stops at once: a resume finishes the run
    pause("closing")
    final = dict(closing["last"])
    for split, (values, confusion) in measured:
        summaries.evaluation(step, values, confusion, opened.arrays.class_names, split=split, final=True)
        final.update({f"{split}_{k}": v for k, v in values.items()})
    summaries.commit_closing()
    pause("results")
    summaries.session(status="success")
    summaries.close()
    ran = {
        "loop": opened.program.loop,
        "unroll": opened.program.unroll if opened.program.loop == "scan" else None,
        "devices": inputs.n_devices,
        "loss_scale": spec.precision.loss_scale,
        "conv": opened.program.conv or None,  # {conv2d layer: "im2col" or "native"}
        **({"conv_fallbacks": opened.program.conv_reasons} if opened.program.conv_reasons else {}),
        **(ran or {}),
    }
    train_seconds, steps_run = closing["train_seconds"], step - closing["start_step"]
    result = RunResult(
        opened.run_dir, final, train_seconds, closing["compile_seconds"], trained.losses, steps_run=steps_run, ran=ran
    )
    tracking = evaluation.tracking if evaluation.best_tag else None
    if signals is not None:  # result.json whole is the run finished: a signal from here changes nothing
        signals.finished()
    _write_atomically(
        opened.run_dir / "result.json",
        _json(
            {
                "name": spec.name,
                "steps": step,
                "planned_steps": spec.steps,
                "final": final,
                "stopped": closing["stopped"],
                "best": tracking,
                "ran": ran,
                "train_seconds": train_seconds,
                "compile_seconds": closing["compile_seconds"],
                "us_per_step": 1e6 * train_seconds / max(steps_run, 1),
                "first_step_seconds": closing["first_step_seconds"],
                "steps_per_second": steps_run / train_seconds if train_seconds else None,
                "summary": as_json(summarize(spec, opened.program.conv)),
            }
        ),
    )
    where.phase = "done"
    pause("done")
    _announce(spec, opened, state, step, closing["stopped"], evaluation, result, quiet=quiet, echo=echo)
    return result


def _announce(
    spec: Spec, opened: Opened, state, step: int, stop_reason, evaluation: Evaluation, result: RunResult, *, quiet, echo
):
    """Early stopping's line, and the closing report (small data sets get the table of every
    example, from whole parameters on this host: every process takes part in gathering them)."""
    if stop_reason == "early_stopping":
        early, tracking = spec.train["early_stopping"], evaluation.tracking
        echo(
            f"Early stopping at step {step}: {early['metric']} did not improve by {early['min_delta']} for "
            f"{early['patience']} evaluations; the best, {tracking['best']:.6g} at step {tracking['best_step']}, "
            f"is in checkpoints/best.safetensors (netspec eval uses it)."
        )
    if not quiet:
        table = (
            distribute.gather((state.params, state.model_state))
            if len(opened.arrays.train.x) <= REPORT_TABLE_MAX
            else None
        )
        if opened.writer:
            report(spec, opened.program, table, int(step), opened.arrays, result, echo)


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
