"""Train a group of a sweep's members together: one compiled program, one run directory each.

Contract. `train_group(plan, *, quiet, data_dir, echo, allow_setting_changes=False, started=None)
-> [Outcome]` trains the planned members (`Planned`: the member, its run directory, its spec,
whether it resumes) that `netspec.compile.members.groups` put together: their data is loaded and
placed on the device once, their chunk compiled once (`compile_group`: vmapped over the members'
stacked states), and each member is written as the ordinary run its plain `netspec run` writes
(`netspec.training.loop`'s pieces, one set per member: spec.yaml, run.json, events, checkpoints,
evaluations, result.json), so `netspec eval`, `predict` and `resume` take a member's directory as
they take any run's.

Per member, as its own run would: its callbacks (`netspec.training.callbacks`) see its slice of
each chunk's outputs and state; its evaluations, best checkpoint and early stopping are its own.
A member that stops early, or whose loss or gradients go non-finite (`train.on_nonfinite: stop`),
is frozen (`MemberStates.active`: its state stays as it was while the others train on): an early
stop closes its run at once (its final evaluation, result.json), a non-finite one is reported with
its own paragraph (the step and layer, found by running its chunk again alone) and ends as a
failed member (`Outcome.error`); the others go on.

Resuming: members resume from their latest checkpoints, all at one step (`groups` puts members of
different steps apart); one whose checkpoint could not be read at that step (it fell back to an
older one) or whose run only needs finishing is left to `loop.run` after the group, as its plain
resume.

Stops. A first SIGINT/SIGTERM finishes the chunk, checkpoints every member still training and
raises `Stopped` (the sweep adds which members finished and how to resume); a second stops at
once, each member keeping its last checkpoint. A full disk ends the group with one paragraph.
`pause("chunk:<step>")` is reached after each chunk, as in a plain run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from netspec.errors import NetspecError
from netspec.spec.sweep import Member
from netspec.spec.types import Spec
from netspec.training import interrupts
from netspec.training.callbacks import (
    FinishedChunk,
    NonfiniteGuard,
    Timing,
    TrainingSummaries,
    device_copy,
    member_columns,
    nonfinite_noticed,
    start_work,
    warm_copies,
)
from netspec.training.feed import Feed, batch_order, chunk_batches, load_arrays, training_inputs
from netspec.training.interrupts import Stopped, describe, pause
from netspec.training.loop import (
    Opened,
    Trained,
    _close,
    _closing,
    _first_summaries,
    _locate_nonfinite,
    _new_run,
    _plan,
    _reopen,
    _summaries,
    _writers,
    after_first_chunk,
    begin_compile,
    chunk_loop,
    use_compilation_cache,
)
from netspec.training.report import Progress
from netspec.training.rundir import member_place, spec_yaml
from netspec.training.sitting import Sitting


class Planned(NamedTuple):
    """A member to train in this sitting: where, on which spec, and whether it resumes."""

    member: Member
    run_dir: Path  # <sweep dir>/<member name>
    spec: Spec  # the member's spec; a resumed member's is its run directory's (`load_run_spec`)
    resume: bool  # continue run_dir from its latest checkpoint


class Outcome(NamedTuple):
    """How a member's training in this sitting ended: finished (error None) or failed."""

    member: Member
    run_dir: Path
    error: str | None


class _Member:
    """One member's host side: its sitting, run, writers and callbacks, what it trained."""

    def __init__(self, slot: int, planned: Planned):
        self.slot, self.planned, self.spec = slot, planned, planned.spec
        self.where = Sitting(planned.spec, planned.run_dir if planned.resume else None, planned.run_dir.parent)
        self.run_dir = planned.run_dir
        self.opened: Opened  # set once its run directory is claimed or reopened (`_open_member`)
        self.inputs: Any = None
        self.checkpoints: Any = None
        self.guard: Any = None  # its NonfiniteGuard and TrainingSummaries (also in `callbacks`)
        self.writer: Any = None
        self.summaries: Any = None
        self.callbacks: list = []
        self.evaluation: Any = None
        self.saver: Any = None
        self.losses: list = []  # each good chunk's losses, float32 [steps] (a row of the group's chunk)
        self.last_row: tuple[dict, int] = ({}, 0)  # its last good chunk's (`member_columns`, its slot)
        self.training = True  # not frozen
        self.outcome: Outcome | None = None

    @property
    def last(self) -> dict[str, float]:
        """Its last good chunk's `chunk_values` (read from the group's columns only when asked)."""
        columns, slot = self.last_row
        return {name: column[slot] for name, column in columns.items()}

    def ended(self, error: str | None) -> None:
        self.training = False
        self.outcome = Outcome(self.planned.member, self.run_dir, error)


class _LazyChunks(dict):
    """A member's own plain chunks, compiled when first asked for (only to find a non-finite step)."""

    def __init__(self, program, streamed: bool):
        super().__init__()
        self.program, self.streamed = program, streamed

    def __missing__(self, length: int):
        self[length] = self.program.train_chunk(length, streamed=self.streamed)
        return self[length]


class _GroupFeed:
    """The group chunk's `batches`: the members' shared batches, or each member's stacked."""

    def __init__(self, feeds: list[Feed], shared: bool):
        self.feeds, self.shared, self.streamed = feeds, shared, feeds[0].streamed

    def batches(self, start: int, n: int):
        from netspec.compile.members import member_batches

        if self.shared:
            return self.feeds[0].batches(start, n)
        return member_batches([feed.batches(start, n) for feed in self.feeds])

    def prefetch(self, start: int, n: int) -> None:
        for feed in self.feeds[:1] if self.shared else self.feeds:
            feed.prefetch(start, n)

    def close(self) -> None:
        for feed in self.feeds:
            feed.close()


def train_group(
    plan: Sequence[Planned],
    *,
    quiet: bool,
    data_dir: str | None,
    echo: Callable[[str], Any],
    allow_setting_changes: bool = False,
    started: float | None = None,
    devices: int | None = None,
) -> list[Outcome]:
    """Train the planned members together (see the module docstring); each member's outcome, in
    plan order. `devices` (--devices; default the spec's distribute.devices, else all): the
    members spread over them (`netspec.distribute.members_mesh`). Raises `Stopped` for SIGINT /
    SIGTERM and NetspecError for a full disk or data that cannot be read, each saying what was
    kept."""
    arrays = load_arrays(plan[0].spec, data_dir)
    parts = _traceable_parts(plan, arrays)
    if len(parts) > 1:  # a number optax cannot take traced differs: a program per value of it
        outcomes = []
        for part in parts:
            outcomes += train_group(
                part,
                quiet=quiet,
                data_dir=data_dir,
                echo=echo,
                allow_setting_changes=allow_setting_changes,
                started=started if part is parts[0] else None,
                devices=devices,
            )
        return outcomes
    members = [_Member(i, p) for i, p in enumerate(plan)]
    with interrupts.watch() as signals, signals.modes():
        try:
            left = _train(
                members,
                signals,
                arrays,
                quiet=quiet,
                data_dir=data_dir,
                echo=echo,
                allow=allow_setting_changes,
                started=time.perf_counter() if started is None else started,
                devices=devices,
            )
        except interrupts.Interrupted as e:
            for m in members:  # what they held is written, as each event was before it was held
                if m.summaries is not None:
                    with suppress(OSError):  # a full disk too: the stop is what to report
                        m.summaries.flush()
            what = "stopped at once, without waiting for a checkpoint" if e.count > 1 else "stopped"
            raise Stopped(
                f"{describe(e.signum, e.count)}: the {len(members)} members training together {what}; {_kept(members)}.",
                e.signum,
            ) from None
        except OSError as e:  # a full disk, a read-only or vanished directory
            raise NetspecError(
                f"Cannot write the members' runs ({e.filename or 'a file'}): {e.strerror or e}. {_kept(members)}: "
                "free some space, then resume the sweep (netspec resume SWEEP_DIR)."
            ) from None
        finally:
            with signals.deferred():
                for m in members:
                    m.where.release(m.outcome is None or m.outcome.error is not None)
    for m in left:  # after the group: each as its plain resume would
        m.outcome = _plain_resume(m, quiet=quiet, data_dir=data_dir, echo=echo, allow=allow_setting_changes)
    return [m.outcome for m in members if m.outcome is not None]


def _kept(members: Sequence[_Member]) -> str:
    """What the stopped members keep, as a clause: a member stopped before its first checkpoint
    keeps nothing to resume from (the sweep's resume starts it again)."""
    kept = sum(any((m.run_dir / "checkpoints").glob("step-*.safetensors")) for m in members)
    if kept == len(members):
        return "each keeps its last checkpoint and the events up to it"
    if not kept:
        return "none had written a checkpoint yet, so each starts again when the sweep resumes"
    return (
        f"{kept} keep their last checkpoint and the events up to it; the other {len(members) - kept}, with no "
        "checkpoint yet, start again when the sweep resumes"
    )


def _traceable_parts(plan: Sequence[Planned], arrays) -> list[list[Planned]]:
    """`plan` in parts that can each train as one program (`netspec.compile.members.untraceable`);
    a part of one member runs as a group of one."""
    from netspec.compile.members import split, traced_keys, untraceable
    from netspec.compile.program import compile_spec
    from netspec.training.feed import device_data

    specs = [p.spec for p in plan]
    if not traced_keys(specs):
        return [list(plan)]
    two = type(arrays.train)(arrays.train.x[:2], arrays.train.y[:2])  # a sample to trace on, not the whole split
    sample = compile_spec(specs[0]).prepare_batch(device_data(two, arrays), two.x, two.y)
    names = untraceable(specs, sample)
    return [[plan[i] for i in part] for part in split(specs, names)] if names else [list(plan)]


def _plain_resume(m: _Member, *, quiet, data_dir, echo, allow) -> Outcome:
    from netspec.training.loop import run

    try:
        result = run(
            m.spec,
            quiet=quiet,
            data_dir=data_dir,
            echo=echo,
            resume=m.run_dir,
            allow_setting_changes=allow,
            member_of=m.run_dir.parent,
        )
    except Stopped:
        raise
    except NetspecError as e:
        echo(f"Member {m.planned.member.name} failed: {e}")
        return Outcome(m.planned.member, m.run_dir, str(e))
    return Outcome(m.planned.member, Path(result.run_dir), None)


def _train(
    members: list[_Member], signals, arrays, *, quiet, data_dir, echo, allow, started: float, devices: int | None
) -> list[_Member]:
    """Open, compile, train and close the group; returns the members left to a plain resume."""
    from netspec.compile.members import compile_group
    from netspec.distribute import members_mesh
    from netspec.training import resumption

    for m in members:
        if m.planned.resume:
            m.where.hold(m.planned.run_dir)  # first: a member in use elsewhere is refused before anything loads
    specs = [m.spec for m in members]
    changes = [
        resumption.accepted_changes(m.run_dir, m.spec, arrays, allow_setting_changes=allow) if m.planned.resume else []
        for m in members
    ]
    pause("before-run-dir")
    use_compilation_cache()
    group = signals.wait_for(lambda: compile_group(specs))
    for m, program, change in zip(members, group.members, changes, strict=True):
        state = signals.wait_for(program.init)
        m.opened = _open_member(m, program, state, change, arrays, signals, echo)
        m.run_dir = m.opened.run_dir
    start = Counter(m.opened.start_step for m in members if not m.opened.finishing).most_common(1)
    left = [m for m in members if m.opened.finishing or not start or m.opened.start_step != start[0][0]]
    for m in left:
        m.where.release(False)
    live = [m for m in members if m not in left]
    if not live:
        return left
    spec = live[0].spec
    mesh = members_mesh(
        devices or spec.resolved["distribute"]["devices"], len(live), batch_size=spec.train["batch_size"]
    )
    if left or mesh is not None:  # the group of these members on these devices (nothing is compiled yet)
        group = signals.wait_for(lambda: compile_group([m.spec for m in live], mesh))
        for m, program in zip(live, group.members, strict=True):
            m.opened = m.opened._replace(program=program)
    for slot, m in enumerate(live):
        m.slot = slot
    if not quiet:
        where = "" if mesh is None else f" on {mesh.devices.size} devices ({dict(mesh.shape)})"
        names = ", ".join(m.planned.member.name for m in live)
        echo(f"Training {len(live)} members together in one program{where}: {names}")
    _train_live(live, group, arrays, signals, quiet=quiet, echo=echo, started=started)
    return left


def _open_member(m: _Member, program, state, changes: list, arrays, signals, echo) -> Opened:
    """A member's run directory, claimed (a new member) or reopened at its checkpoint."""
    run_dir = m.planned.run_dir
    if m.planned.resume:
        return _reopen(
            m.spec,
            signals,
            run_dir,
            program=program,
            state=state,
            arrays=arrays,
            mesh=None,
            changes=changes,
            writer=True,
            scratch=None,
            run_name=None,
            echo=echo,
        )
    made = _new_run(m.spec, m.where, signals, arrays, *member_place(run_dir))
    return Opened(made, program, state, 0, arrays, None, changes, {}, None, False, False, spec_yaml(m.spec), True)


def _train_live(live: list[_Member], group, arrays, signals, *, quiet: bool, echo, started: float) -> None:
    """Train the members of `live` (opened, all at one step) together, then close each."""
    from netspec.training import checkpoint

    first = live[0]
    inputs = training_inputs(first.spec, arrays, first.opened.program, None)
    feeds = [
        Feed(
            arrays.train, batch_order(m.spec, arrays), streamed=inputs.feed.streamed, full_batch=inputs.feed.full_batch
        )
        for m in live
    ]
    feed = _GroupFeed(feeds, group.shared_batches)
    chunk_data = inputs.data  # the chunk's copy of the training data: on a mesh, on every device
    if group.mesh is not None:
        from netspec import distribute

        chunk_data = distribute.place(chunk_data, distribute.replicated(chunk_data, group.mesh))
    graphs: dict = {}
    for m, member_feed in zip(live, feeds, strict=True):
        opened = m.opened
        m.inputs = inputs._replace(feed=member_feed)
        m.summaries = _summaries(m.spec, opened, m.inputs)
        checkpoints = checkpoint.Checkpoints(opened.run_dir / "checkpoints", keep=m.spec.checkpoint["keep"])
        m.writer, m.evaluation, m.saver = _writers(m.spec, opened, m.inputs, m.summaries, checkpoints)
        m.guard = NonfiniteGuard(m.spec, opened.run_dir, checkpoints.latest, locate=_unset)  # its replay: set below
        m.callbacks = [m.guard, m.writer, m.evaluation, m.saver]
        m.checkpoints = checkpoints
    states = group.states([m.opened.state for m in live])
    start = first.opened.start_step
    lengths = _plan(first.spec, first.opened)

    compiling, lowered = begin_compile(
        signals,
        lambda n: group.train_chunk(n, streamed=feed.streamed).lower(
            states, inputs.data, feed.batches(start, n), group.keys
        ),
        lengths,
    )
    pause("compiling")
    # as a plain run's (`_first_summaries`): members whose chunk compiled first write step 0 once it has run
    later = [
        zero
        for m in live
        if (zero := _first_summaries(m.spec, m.opened, m.inputs, m.summaries, m.writer, graphs, lowered, compiling))
    ]
    if not later:
        warm_copies(states.train)  # beside XLA's compile of the chunk, not in the training time
    compiled, compile_seconds = compiling()
    for m in live:  # the per-member replay that names a non-finite step and layer: its own plain chunks
        m.guard.locate = partial(
            _locate_nonfinite,
            m.opened,
            m.inputs,
            _LazyChunks(m.opened.program, feed.streamed),
            lengths,
            m.checkpoints,
            signals,
            echo if not quiet else None,
        )
    if signals.requested:  # Ctrl-C while setting up: new members keep their step 0, to resume from
        for zero in later:  # its events before its checkpoint
            zero()
        for m in live:
            if m.opened.spec_text is not None:
                m.saver.save(m.opened.state, start)
            m.summaries.close()
        raise _stopped(signals, start, first.spec, len(live))
    _Loop(
        live, group, chunk_data, feed, signals, compiled, compile_seconds, quiet=quiet, echo=echo, started=started
    ).run(start, lengths, later)


def _stopped(signals, step: int, spec: Spec, count: int) -> Stopped:
    return Stopped(
        f"{describe(signals.signum)}: stopped after step {step} of {spec.steps}; the checkpoints and events of the "
        f"{count} members training together are saved.",
        signals.signum,
    )


class _Params(NamedTuple):
    """A copy of the stacked parameters alone, when no member needs the whole state at a step."""

    params: Any


class _GroupChunk(NamedTuple):
    """A group chunk dispatched: its outputs on the device, and each training member's dispatch."""

    end: int
    length: int
    dispatched: float
    outputs: Any  # ChunkOutputs, each field [members, ...]
    members: dict[int, dict]  # slot -> {callback name: the device work it started}
    snapshot: Any  # a copy of the stacked TrainState (or its `_Params`) a member reads on the host, else None
    closing_work: bool  # an evaluation or a checkpoint is due for the training members at its end


WRITE_EVERY = 1.0  # seconds: about the longest a member's training events are held before they are written


class _Loop:
    """The group's loop over chunks, and each member's closing. The members' training events are
    held (`EventFile.add_serialized`) and written together about once every `WRITE_EVERY` seconds
    (a write a file costs a small model's group more host time than its chunk trains), and at
    once at a chunk with evaluations or checkpoints, before a member's non-finite step is looked
    for, at a stop and at a member's closing: a kill -9 loses only events after the last
    checkpoint, which a resume writes again."""

    def __init__(self, live, group, data, feed, signals, compiled, compile_seconds, *, quiet, echo, started):
        import jax

        from netspec.compile.members import take

        self.live, self.group, self.data, self.feed, self.signals = live, group, data, feed, signals
        self.compiled, self.compile_seconds, self.quiet, self.echo = compiled, compile_seconds, quiet, echo
        self.spec = live[0].spec
        self.timing = Timing(started)
        self.progress = Progress(self.spec.steps - live[0].opened.start_step, quiet)
        # a member's slice (one compiled program whatever the member), on the device where its
        # evaluation's data is (on a mesh too)
        member = jax.jit(take)
        self.member = (
            member if group.mesh is None else lambda tree, i: jax.device_put(member(tree, i), jax.devices()[0])
        )
        self.states: Any = None
        self.loop_start = time.perf_counter()
        self.written = self.finished = self.loop_start  # the members' events last written; a chunk last finished
        self.ran = {"members": len(live), "members_loop": group.across}

    def training(self) -> list[_Member]:
        return [m for m in self.live if m.training]

    def run(self, start: int, lengths: list[int], later: list | None = None) -> None:
        """Train the group's chunks from `start`; `later`: members' step 0 still to write
        (`_first_summaries`), written once the first chunk has run, with the copies' compile, their
        time left out of the chunk's (as a plain run's `_train_chunks`)."""
        import jax

        from netspec.compile.members import take

        self.states = self.group.states([m.opened.state for m in self.live])
        step, pending, stopping = start, None, False
        early = any(m.spec.train["early_stopping"] is not None for m in self.live)
        self.loop_start = self.written = self.finished = time.perf_counter()
        with chunk_loop(self.feed, self.progress):
            for i, n in enumerate(lengths):
                end = step + n
                batches = chunk_batches(self.feed, lengths, i, step)
                dispatched = time.perf_counter()
                self.states, outputs = self.compiled[n](self.states, self.data, batches, self.group.keys)
                if later:
                    after_first_chunk(outputs, self.states.train, self.timing, later)
                    later = None
                chunk = self._dispatch(end, n, dispatched, outputs)
                if pending is not None:
                    self._finish(pending)
                pending = chunk
                if early and any(m.evaluation.due(end) for m in self.training()):
                    self._finish(chunk)  # early stopping decides before the next chunk runs
                    pending = None
                step = end
                if self.signals.requested:
                    stopping = True
                if stopping or not self.training():
                    break
            if pending is not None:
                self._finish(pending)
        training = self.training()
        if stopping and step < self.spec.steps and training:
            final = jax.device_get(self.states.train)
            for m in training:
                m.saver.save(take(final, m.slot), step)
                m.summaries.close()
            raise _stopped(self.signals, step, self.spec, len(training))
        if training:
            # every member's: training ends with its last chunk, as a plain run's does (the state read
            # back for the closings, and the closings of the others, are not training)
            seconds = time.perf_counter() - self.loop_start - self.timing.excluded
            final = jax.device_get(self.states.train)
            if stopping:  # a signal in the last chunk: as a plain run's closing, the closing checkpoints, then the stop
                for m in training:
                    trained = self._trained(m, take(final, m.slot), step, "signal", seconds)
                    m.saver.save(trained.state, step, closing=_closing(m.opened, trained, self.compile_seconds))
                    m.summaries.close()
                raise _stopped(self.signals, step, self.spec, len(training))  # a resume finishes them
            # from here a signal stops at once, as in a plain run's closing: a resume finishes
            # the members whose closing checkpoint is written and trains the others on
            self.signals.immediate()
            for m in training:
                self._close(m, take(final, m.slot), step, None, seconds)

    def _dispatch(self, end: int, length: int, dispatched: float, outputs) -> _GroupChunk:
        """Start each training member's device work (its evaluation, histogram extras) on its
        slice of the state, unstacked on the device, and copy the stacked state when a member
        will read it on the host (a checkpoint, histograms, an early stop's closing): the next
        chunk donates it, and `_finish` reads the copy once for all while that chunk runs. The
        members' callbacks are alike (`groups`: one spec but for traced numbers), so the first
        training member's say what every one's need and when each evaluates."""
        training = self.training()
        if not training:
            return _GroupChunk(end, length, dispatched, outputs, {}, None, False)
        first = training[0]
        due = first.evaluation.due(end)
        needs = [c.needs(end) for c in first.callbacks]
        if due or first.writer.extras is not None:
            started = {m.slot: start_work(m.callbacks, self.member(self.states.train, m.slot), end) for m in training}
        else:  # without a state to work on, no callback starts anything
            started = {m.slot: {} for m in training}
        if due or any(n.state for n in needs):
            snapshot = device_copy(self.states.train)
        elif any(n.params for n in needs):  # the parameters alone (histograms): less to copy and read
            snapshot = _Params(device_copy(self.states.train.params))
        else:
            snapshot = None
        return _GroupChunk(end, length, dispatched, outputs, started, snapshot, due or first.saver.due(end))

    def _finish(self, chunk: _GroupChunk) -> None:
        """Read the chunk's outputs once; then, in a plain run's order, each member's non-finite
        check (only where its chunk noticed one), the summaries of every member still good
        (`TrainingSummaries.write_members`), and each member's evaluation and checkpoint where one
        is due. A group pays its host time per member: the callbacks with nothing to do at this
        chunk are not called."""
        from netspec import distribute
        from netspec.compile.members import take, unstack
        from netspec.compile.state import TrainState
        from netspec.training.histograms import member_histograms

        outputs, snapshot = distribute.to_host((chunk.outputs, chunk.snapshot))
        steps_per_second = self.timing.steps_per_second(chunk.dispatched, chunk.length)
        wanted = self.live[0].writer.histograms  # the members' summaries are alike (`groups`)
        stacked = None if snapshot is None else snapshot.params
        made = member_histograms(stacked, wanted, len(self.live)) if stacked is not None else None
        columns = member_columns(self.spec, outputs)
        noticed = nonfinite_noticed(self.spec, outputs).tolist()
        if any(noticed):  # a member's non-finite step is found by running its chunks again: it may take long
            self._write_held()
        whole = isinstance(snapshot, TrainState)
        each: list | None = None

        def finished(m: _Member) -> FinishedChunk:
            nonlocal each
            each = each if each is not None else unstack(outputs, len(self.live))
            return FinishedChunk(
                chunk.end,
                chunk.length,
                each[m.slot],
                {name: column[m.slot] for name, column in columns.items()},
                steps_per_second,
                take(snapshot, m.slot) if whole else None,
                None,  # the histograms of its parameters are made (`made`)
                chunk.members[m.slot],
                None if made is None else made[m.slot],
            )

        good = []
        for m in self.live:
            if not m.training or m.slot not in chunk.members:
                continue
            if noticed[m.slot]:
                try:
                    m.guard.on_chunk_end(finished(m), None)
                except NetspecError as e:  # its loss or gradients went non-finite: it alone stops
                    self._freeze(m)
                    self.echo(f"Member {m.planned.member.name} failed: {e}")
                    m.summaries.close()
                    m.ended(str(e))
                    continue
            good.append(m)
        # held, unless the next chunk's end would find them waiting longer than WRITE_EVERY, or this
        # one's evaluations (written at once) and checkpoints, or a member's closing, come next
        now = time.perf_counter()
        hold = not chunk.closing_work and 2 * now - self.finished < self.written + WRITE_EVERY
        self.written, self.finished = self.written if hold else now, now
        TrainingSummaries.write_members(
            [m.writer for m in good],
            [m.slot for m in good],
            chunk.end,
            columns,
            steps_per_second,
            made,
            chunk.members,
            hold,
        )
        rows = list(outputs.loss)  # each member's losses, float32 [steps]
        for m in good:  # the chunk is good: its steps count
            m.losses.append(rows[m.slot])  # made a list of floats once, at its closing
            m.last_row = (columns, m.slot)
        for m in good if chunk.closing_work else ():
            if m.evaluation.name not in chunk.members[m.slot] and not m.saver.due(chunk.end):
                continue
            mine, reason = finished(m), None
            for callback in (m.evaluation, m.saver):  # after the summaries, as in `m.callbacks`
                reason = callback.on_chunk_end(mine, reason) or reason
            if reason == "early_stopping":
                self._freeze(m)
                self._close(m, mine.state, chunk.end, reason)
        self.progress.update(chunk.length, f"{len(self.training())} of {len(self.live)} members training")
        pause(f"chunk:{chunk.end}")

    def _write_held(self) -> None:
        """Write what the training members hold now, before work that may take long."""
        for m in self.training():
            m.summaries.flush()
        self.written = time.perf_counter()

    def _freeze(self, m: _Member) -> None:
        m.training = False
        self.states = self.states._replace(active=self.group.place(self.states.active.at[m.slot].set(False)))

    def _trained(self, m: _Member, state, step: int, reason: str | None, seconds: float | None) -> Trained:
        """Where member `m`'s training ended; `seconds`: its training time, the loop's until now
        unless given."""
        seconds = time.perf_counter() - self.loop_start - self.timing.excluded if seconds is None else seconds
        losses = np.concatenate(m.losses).tolist() if m.losses else []
        return Trained(state, step, reason, m.last, losses, seconds, self.timing.first)

    def _close(self, m: _Member, state, step: int, reason: str | None, seconds: float | None = None) -> None:
        """Close member `m`'s run (its final evaluation, result.json); `seconds`: its training
        time, the loop's until now unless given."""
        trained = self._trained(m, state, step, reason, seconds)
        closing = m.opened.closing or _closing(m.opened, trained, self.compile_seconds)
        _close(
            m.spec,
            m.opened,
            m.inputs,
            trained,
            closing,
            m.summaries,
            m.evaluation,
            m.saver,
            m.where,
            None,
            quiet=True,
            echo=self.echo,
            ran=self.ran,
        )
        m.ended(None)


def _unset(end: int, length: int) -> tuple[int, int]:
    raise AssertionError("a member's non-finite replay is set once its chunks are compiled")
