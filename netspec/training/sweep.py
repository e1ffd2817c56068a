"""Train a sweep: its members one after another, each an ordinary run, in one sweep directory.

Contract. `run_sweep(sweep, *, logdir="runs", run_name=None, quiet=False, data_dir=None,
echo=print, devices=None, started=None) -> SweepResult` (`netspec run` of a sweep spec; the
public `netspec.train_sweep`) claims the sweep directory `<logdir>/<name>/<run-id>/`
(`rundir.make_run_dir`; `run_name` names it) and writes there, before any member starts:

    sweep.yaml     the sweep's spec as loaded (--set applied): what a resume expands again
    sweep.json     `rundir.SWEEP_FILE`: the kind, the swept keys, each member's name, values and
                   `--set` arguments, and where relative data paths start (base_dir)
    <member>/      one ordinary run directory per member, named by its values (`Member.name`), so
                   `tensorboard --logdir runs` lists each member as a run of its own; its HParams
                   hold the swept keys (`Spec.swept`, `summaries.hparams_of`)
    result.json    at the end: the members ranked by the selection metric (`rank`)
    .lock          held (flock, `rundir.lock`) while a process writes the sweep

`resume_sweep(sweep_dir, overrides=(), ...)` (`netspec resume SWEEP_DIR`) continues it: a member
whose run has finished (its result.json written) is skipped, one with a checkpoint is resumed as
any run is (`loop.run` with `resume`: it ends bit for bit as if never stopped), the rest start
(a member directory without a checkpoint, which nothing can resume, is removed first). The
members are sweep.yaml expanded again, which must give the members sweep.json lists.

Members train one after another today: `train_members` runs each through `loop.run` exactly as
the plain run of its spec, so every member equals its own run bit for bit. `train_members` is
the one function the vmapped form replaces: members that share every array shape trained in one
compiled program over their stacked states (issue 14, part 2).

The selection metric (`selection`, `value_of`): a member is judged on its eval split when that is
the validation split (`data.validation_split` holds one out): on `checkpoint.best`'s tag (else
`loss`), its best value when it kept a best checkpoint by that tag, else its final one; otherwise
on the training data: that tag's final value (its last step's). Never on the test split: a member
chosen by its test figure would leave no test figure. Where swept keys make members select
differently (a validation split in some only, another `checkpoint.best`), every member is judged
on its training loss. A member without a finite value ranks after those with one, a failed
member last.

Stops. A signal while a member trains stops that member as it stops a plain run, with that run's
own paragraph (what was kept), to which the sweep adds which members finished and that `netspec
resume SWEEP_DIR` goes on; between members it stops at once, saying the same. A member that fails
(a NaN with `train.on_nonfinite: stop`, say) is reported and the sweep goes on to the next: once
all have run, result.json ranks it last and the command ends with exit 1, naming it. The test-only
pause phase `sweep-member:<name>` (`interrupts.pause`) comes before each member starts.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netspec.errors import NetspecError, SpecError, quoted
from netspec.spec.sweep import Member, Sweep
from netspec.spec.types import Spec, metric_mode
from netspec.training import interrupts
from netspec.training.interrupts import SIGNAL_EXIT, Stopped, describe, pause
from netspec.training.members import Outcome, Planned, train_group
from netspec.training.rundir import (
    SWEEP_FILE,
    _json,
    load_run_spec,
    lock,
    make_run_dir,
    member_place,
    renamed,
    write_atomically,
)

SWEEP_SPEC = "sweep.yaml"


RESULT = "result.json"  # a member's (loop) and the sweep's (`rank`): the same name, one level apart


@dataclass
class SweepResult:
    """A sweep's closing: its directory, how members were judged, and the ranked table."""

    sweep_dir: Path
    selection: dict  # {"split": "validation" or "train", "tag": "loss", ..., "mode": "min" or "max"}
    members: list  # result.json's rows, best first
    failed: list  # the names of the members that failed


def run_sweep(
    sweep: Sweep,
    *,
    logdir: str | Path = "runs",
    run_name: str | None = None,
    quiet: bool = False,
    data_dir: str | None = None,
    echo: Callable[[str], Any] = print,
    devices: int | None = None,
    started: float | None = None,
    ranking: bool = True,
) -> SweepResult:
    """Train every member of `sweep` in a new sweep directory, then rank them (see the module
    docstring); `ranking` False leaves the ranked table out of what `echo` is given (lr-find
    draws its own figure). Raises `Stopped` for SIGINT / SIGTERM (what was kept and how to go on) and
    NetspecError when a member failed (after ranking the others) or the sweep cannot start."""
    _one_process()
    sweep_dir: Path | None = None
    held = None
    with interrupts.watch() as signals:
        try:
            with signals.deferred():  # the directory and its records whole: a resume needs both
                sweep_dir = make_run_dir(logdir, sweep.name, run_name)
                held = lock(sweep_dir)
                write_atomically(sweep_dir / SWEEP_SPEC, sweep.text)
                write_atomically(sweep_dir / SWEEP_FILE, _json(_record(sweep)))
            if not quiet and (line := renamed(sweep_dir, run_name)):
                echo(line)
            plan = [Planned(m, sweep_dir / m.name, m.spec, False) for m in sweep.members]
            return _train_and_rank(
                sweep,
                sweep_dir,
                plan,
                quiet=quiet,
                data_dir=data_dir,
                echo=echo,
                devices=devices,
                started=started,
                ranking=ranking,
            )
        except interrupts.Interrupted as e:
            if sweep_dir is None:  # nothing written: the command's own words say so
                raise
            raise Stopped(f"{describe(e.signum, e.count)}: {_sweep_note(sweep, sweep_dir)}", e.signum) from None
        finally:
            if held is not None:
                held.release()


def resume_sweep(
    sweep_dir: str | Path,
    overrides: Sequence[str] = (),
    *,
    allow_setting_changes: bool = False,
    quiet: bool = False,
    data_dir: str | None = None,
    echo: Callable[[str], Any] = print,
    devices: int | None = None,
    started: float | None = None,
) -> SweepResult:
    """Continue the sweep in `sweep_dir`: skip its finished members, resume the stopped ones,
    start the rest, then rank them all. `overrides` (`--set`) and `allow_setting_changes` apply
    to every member that trains, as `netspec resume` of its run would. Raises as `run_sweep`."""
    _one_process()
    sweep_dir = Path(sweep_dir)
    with interrupts.watch():
        held = lock(sweep_dir)
        try:
            sweep = _expanded_again(sweep_dir, overrides)
        except interrupts.Interrupted as e:
            held.release()
            raise Stopped(
                f"{describe(e.signum, e.count)}: stopped before the resume started. Nothing in {sweep_dir} was "
                f"changed. Continue it with: netspec resume {quoted(sweep_dir)}",
                e.signum,
            ) from None
        except BaseException:
            held.release()
            raise
        try:
            # every member's --set is checked as `netspec resume` of its run checks it, the finished
            # ones too, before anything is written or removed: a refusal leaves the sweep as it was
            ran = [_ran_spec(sweep_dir, member, overrides, allow_setting_changes) for member in sweep.members]
            plan = [
                _plan(member, spec, sweep_dir, overrides, echo) for member, spec in zip(sweep.members, ran, strict=True)
            ]
            if overrides:  # what a later resume expands: the sweep as this one asks for it (more steps, ...)
                write_atomically(sweep_dir / SWEEP_SPEC, sweep.text)
            to_train = [p for p in plan if p is not None]
            if not to_train:
                echo(f"Every member of {sweep_dir} had finished; they are ranked again.")
            return _train_and_rank(
                sweep,
                sweep_dir,
                to_train,
                quiet=quiet,
                data_dir=data_dir,
                echo=echo,
                devices=devices,
                allow_setting_changes=allow_setting_changes,
                started=started,
            )
        except interrupts.Interrupted as e:
            raise Stopped(f"{describe(e.signum, e.count)}: {_sweep_note(sweep, sweep_dir)}", e.signum) from None
        finally:
            held.release()


def train_members(
    plan: Sequence[Planned],
    *,
    quiet: bool,
    data_dir: str | None,
    echo: Callable[[str], Any],
    devices: int | None,
    allow_setting_changes: bool = False,
    started: float | None = None,
) -> Iterator[Outcome]:
    """Train the planned members, yielding each one's outcome as its group ends. Members that
    `netspec.compile.members.groups` puts together (equal but for traced numbers and seeds, at
    one start step) train as one vmapped program (`netspec.training.members.train_group`); a
    member alone in its group trains as its plain run (`loop.run`), exactly. A member that fails
    is yielded with its paragraph and the others go on; `Stopped` (a signal) ends it, with what
    was kept."""
    from netspec.compile.members import groups
    from netspec.training.loop import run

    for number, indices in enumerate(groups([p.spec for p in plan], [_start_step(p) for p in plan])):
        members = [plan[i] for i in indices]
        for planned in members:
            pause(f"sweep-member:{planned.member.name}")
        first = started if number == 0 else None
        if len(members) > 1:
            yield from train_group(
                members,
                quiet=quiet,
                data_dir=data_dir,
                echo=echo,
                allow_setting_changes=allow_setting_changes,
                started=first,
                devices=devices,
            )
            continue
        (planned,) = members
        member, run_dir = planned.member, planned.run_dir
        if not quiet:
            echo(
                f"{'Resuming' if planned.resume else 'Training'} member {member.name} alone (no other member shares "
                "its compiled program: its shapes, steps or start differ)"
            )
        logdir, run_name = member_place(run_dir)
        try:
            result = run(
                planned.spec,
                logdir=logdir,
                run_name=run_name,
                quiet=quiet,
                data_dir=data_dir,
                echo=echo,
                resume=run_dir if planned.resume else None,
                devices=devices,
                allow_setting_changes=allow_setting_changes,
                started=first,
                member_of=run_dir.parent,  # as a group's members: ranked by the sweep, resumed with it
            )
        except Stopped:
            raise
        except NetspecError as e:
            echo(f"Member {member.name} failed: {e}")
            yield Outcome(member, run_dir, str(e))
            continue
        yield Outcome(member, Path(result.run_dir), None)


def _start_step(planned: Planned) -> int:
    """The step a planned member starts from: 0, or a resumed one's latest checkpoint's (by name)."""
    if not planned.resume:
        return 0
    steps = [int(p.stem.split("-")[-1]) for p in (planned.run_dir / "checkpoints").glob("step-*.safetensors")]
    return max(steps, default=0)


def _train_and_rank(
    sweep: Sweep,
    sweep_dir: Path,
    plan: Sequence[Planned],
    *,
    quiet: bool,
    data_dir: str | None,
    echo: Callable[[str], Any],
    devices: int | None,
    allow_setting_changes: bool = False,
    started: float | None,
    ranking: bool = True,
) -> SweepResult:
    """Train the plan, then write and print the ranking (unless not `ranking`); a signal's
    `Stopped` gains the sweep's note."""
    failed: dict[str, str] = {}
    try:
        outcomes = train_members(
            plan,
            quiet=quiet,
            data_dir=data_dir,
            echo=echo,
            devices=devices,
            allow_setting_changes=allow_setting_changes,
            started=started,
        )
        for outcome in outcomes:
            if outcome.error is not None:
                failed[outcome.member.name] = outcome.error
    except Stopped as e:
        signum = {code: signum for signum, code in SIGNAL_EXIT.items()}[e.exit_code]
        # a member trained alone (`member_of`) already names the sweep's resume: it is given once
        note = _sweep_note(sweep, sweep_dir, command=f"netspec resume {quoted(sweep_dir)}" not in str(e))
        raise Stopped(f"{e}\n{note[0].upper()}{note[1:]}", signum) from None  # a line of its own
    result = rank(sweep, sweep_dir, failed)
    interrupts.finished()  # the sweep's result.json whole is the sweep finished: a signal from here changes nothing
    write_atomically(sweep_dir / RESULT, _json(_table(sweep, result)))
    for line in ranking_lines(sweep, result) if ranking else []:
        echo(line)
    if result.failed:
        n = len(result.failed)
        raise NetspecError(
            f"{n} of {len(sweep.members)} members of the sweep {sweep_dir} failed ({', '.join(result.failed)}): "
            f"{'each says' if n > 1 else 'it says'} why above; the others are ranked in {sweep_dir / RESULT}."
        )
    return result


def _sweep_note(sweep: Sweep, sweep_dir: Path, *, command: bool = True) -> str:
    """What a stop leaves of the sweep and how to go on (no full stop after the command; without
    `command`, where the message already gives it, only what it leaves)."""
    finished = [m.name for m in sweep.members if (sweep_dir / m.name / RESULT).is_file()]
    started = [m.name for m in sweep.members if m.name not in finished and (sweep_dir / m.name).is_dir()]
    waiting = len(sweep.members) - len(finished) - len(started)
    parts = [f"{len(finished)} finished" + (f" ({_names(finished)})" if finished else "")]
    if started:
        parts.append(f"{len(started)} to resume ({_names(started)})")
    parts.append(f"{waiting} not started")
    left = f"the sweep {sweep_dir} stopped with {len(sweep.members)} members: {', '.join(parts)}."
    return f"{left} Continue the sweep with: netspec resume {quoted(sweep_dir)}" if command else left


def _names(names: list[str], most: int = 6) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


# -- resuming ----------------------------------------------------------------------------------------


def _expanded_again(sweep_dir: Path, overrides: Sequence[str]) -> Sweep:
    """The sweep of sweep.yaml, its relative data paths starting where the spec was; refused
    when it no longer gives the members sweep.json lists, or damaged."""
    record = _read_record(sweep_dir)
    spec_file = sweep_dir / SWEEP_SPEC
    if not spec_file.is_file():
        raise NetspecError(
            f"{sweep_dir} has no {SWEEP_SPEC}, the sweep's spec, so its members cannot be rebuilt; each member's "
            f"run directory in it can still be resumed on its own (netspec resume {quoted(sweep_dir)}/<member>)."
        )
    try:
        sweep = _sweep_of(spec_file, overrides, record)
    except (SpecError, _NoSweep) as e:
        try:
            _sweep_of(spec_file, (), record)  # the file itself, without this resume's --set
        except (SpecError, _NoSweep) as own:
            reason = own.problems[0] if isinstance(own, SpecError) and own.problems else own
            raise NetspecError(
                f"{spec_file}, the sweep's spec, is damaged ({reason}). Its members cannot be rebuilt from it: put "
                "back the spec the sweep was run with, or resume each member's run directory in it on its own "
                f"(netspec resume {quoted(sweep_dir)}/<member>)."
            ) from None
        if isinstance(e, _NoSweep):  # the file is whole: a --set took its sweep away
            raise NetspecError(
                f"{sweep_dir} is a sweep and resumes as one: a --set cannot take its sweep section away. To train "
                f"one member alone, resume its run directory (netspec resume {quoted(sweep_dir)}/<member>)."
            ) from None
        raise  # a --set of this resume's
    listed = [(m["name"], m["values"]) for m in record["members"]]
    if [(m.name, json.loads(json.dumps(dict(m.values)))) for m in sweep.members] != listed:
        raise NetspecError(
            f"{spec_file} no longer gives the members {sweep_dir / SWEEP_FILE} lists (was it edited, or does a "
            "--set change the sweep?); a sweep resumes with the members it started with. Train another sweep "
            "as a new run."
        )
    return sweep


class _NoSweep(Exception):
    """sweep.yaml (with a resume's --set) gives no sweep section."""


def _sweep_of(spec_file: Path, overrides: Sequence[str], record: dict) -> Sweep:
    """The sweep `spec_file` gives with `overrides`, its relative data paths starting where the spec
    was (`record`'s base_dir); raises SpecError, or _NoSweep when it has no sweep section."""
    from netspec.spec.load import load
    from netspec.spec.sweep import sweep_of

    loaded = load(spec_file, list(overrides))
    if not isinstance(loaded.data, Mapping) or not isinstance(loaded.data.get("sweep"), Mapping):
        raise _NoSweep("it holds no sweep section")
    loaded.source = str(Path(record["base_dir"]) / SWEEP_SPEC)
    return sweep_of(loaded)


def _read_record(sweep_dir: Path) -> dict:
    try:
        record = json.loads((sweep_dir / SWEEP_FILE).read_text())
        if not isinstance(record, dict) or not {"base_dir", "members", "keys"} <= set(record):
            raise ValueError("keys missing")
        return record
    except (OSError, ValueError) as e:
        raise NetspecError(
            f"{sweep_dir / SWEEP_FILE}, the sweep's list of its members, is missing or damaged ({e}); each member's "
            f"run directory in {sweep_dir} can still be resumed on its own (netspec resume {quoted(sweep_dir)}/<member>)."
        ) from None


def _ran_spec(sweep_dir: Path, member: Member, overrides: Sequence[str], allow_setting_changes: bool) -> Spec | None:
    """The spec a resume with `overrides` gives a member that has run (a checkpoint, or a
    result.json when `overrides` may train it on), its changes refused as a resume of its run
    would refuse them (`resumption.accepted_changes`, its spec alone: the data is compared when it
    trains); None for a member not started, or finished with nothing to change."""
    from netspec.training import resumption

    run_dir = sweep_dir / member.name
    finished = (run_dir / RESULT).is_file()
    if not (finished and overrides) and not any((run_dir / "checkpoints").glob("step-*.safetensors")):
        return None
    spec = load_run_spec(run_dir, overrides)
    if overrides:
        resumption.accepted_changes(
            run_dir, spec, None, allow_setting_changes=allow_setting_changes, sweep_dir=sweep_dir
        )
    return spec


def _plan(
    member: Member, ran: Spec | None, sweep_dir: Path, overrides: Sequence[str], echo: Callable[[str], Any]
) -> Planned | None:
    """What a resume does with `member` (`ran`: its `_ran_spec`): None (finished), resume it, or
    start it. A finished member resumes when `overrides` give it more steps, as `netspec resume` of
    its run would train on; one that early stopping ended stays finished, as `netspec resume` of its
    run refuses to train it on."""
    run_dir = sweep_dir / member.name
    if (run_dir / RESULT).is_file():
        if ran is None:
            return None
        try:
            result = json.loads((run_dir / RESULT).read_text())
            done = ran.steps if result.get("stopped") == "early_stopping" else int(result["steps"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            done = ran.steps  # an unreadable result.json: left as finished, as without overrides
        return Planned(member, run_dir, ran, True) if ran.steps > done else None
    if ran is not None:
        return Planned(member, run_dir, ran, True)
    # make_run_dir places it at <logdir>/<name>/<run-id>/<member> (`rundir.member_place`: on disk, not as typed)
    if Path(sweep_dir).resolve().parent.name != member.spec.name:
        raise NetspecError(
            f"The sweep {sweep_dir} has members still to start, and starts them in place only under a directory named "
            f"after its spec ({member.spec.name}/), as netspec run made it; move it back under such a directory, then "
            "resume it again."
        )
    if run_dir.exists():
        echo(f"{run_dir} holds no checkpoint to resume from (it was stopped before its first one); it starts again.")
        shutil.rmtree(run_dir)
    return Planned(member, run_dir, member.spec, False)


# -- the ranking --------------------------------------------------------------------------------------


def selection(specs: Sequence[Spec]) -> dict:
    """How the members are judged: {"split", "tag", "mode"} (see the module docstring)."""
    choices = {
        ("validation" if s.eval["split"] == "validation" else "train", s.checkpoint["best"] or "loss") for s in specs
    }
    split, tag = choices.pop() if len(choices) == 1 else ("train", "loss")
    return {"split": split, "tag": tag, "mode": metric_mode(tag)}


def value_of(spec: Spec, result: dict, chosen: dict) -> float | None:
    """A finished member's selection value from its result.json (None when it has none, or not a finite one)."""
    final = result.get("final") or {}
    if chosen["split"] == "validation":
        best = result.get("best") or {}
        if spec.checkpoint["best"] == chosen["tag"] and best.get("best") is not None:
            value = best["best"]
        else:
            value = final.get(f"validation_{chosen['tag']}")
    else:
        value = final.get(chosen["tag"])
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def rank(sweep: Sweep, sweep_dir: Path, failed: dict[str, str]) -> SweepResult:
    """Every member's row, best first: finished ones by their selection value (those without one
    after), then those that did not finish."""
    chosen = selection([m.spec for m in sweep.members])
    rows = []
    for member in sweep.members:
        run_dir = sweep_dir / member.name
        # on disk, as an export's manifest records it: a path as typed means nothing read from the file
        row: dict[str, Any] = {"member": member.name, "values": dict(member.values), "run_dir": str(run_dir.resolve())}
        try:
            result = json.loads((run_dir / RESULT).read_text())
        except (OSError, ValueError):
            error = failed.get(member.name, "it did not finish")
            rows.append({**row, "status": "failed", "selection": None, "final": None, "error": error})
            continue
        value = value_of(member.spec, result, chosen)
        final, steps = result.get("final"), result.get("steps")
        rows.append({**row, "status": "finished", "selection": value, "final": final, "steps": steps})
    sign = 1.0 if chosen["mode"] == "min" else -1.0
    rows.sort(key=lambda r: (r["status"] != "finished", r["selection"] is None, sign * (r["selection"] or 0.0)))
    rows = [{"rank": i, **row} for i, row in enumerate(rows, 1)]
    names = [r["member"] for r in rows if r["status"] != "finished"]
    return SweepResult(sweep_dir, chosen, rows, names)


def _table(sweep: Sweep, result: SweepResult) -> dict:
    """The sweep's result.json."""
    return {
        "name": sweep.name,
        "kind": sweep.kind,
        "keys": list(sweep.keys),
        "selection": result.selection,
        "members": result.members,
    }


def ranking_lines(sweep: Sweep, result: SweepResult) -> list[str]:
    """The console's table: rank, selection value, member, best first."""
    chosen = result.selection
    where = "validation split's" if chosen["split"] == "validation" else "last training step's"
    better = "lower" if chosen["mode"] == "min" else "higher"
    lines = [
        f"Sweep {sweep.name}: {len(sweep.members)} members ranked by the {where} {chosen['tag']} "
        f"({better} is better), in {result.sweep_dir}:",
        f"  {'rank':>4}  {chosen['tag']:>12}  member",
    ]
    for row in result.members:
        value = (
            "failed" if row["status"] != "finished" else "-" if row["selection"] is None else f"{row['selection']:.6g}"
        )
        lines.append(f"  {row['rank']:>4}  {value:>12}  {row['member']}")
    lines.append(
        f"The table is in {result.sweep_dir / RESULT}; tensorboard --logdir {quoted(result.sweep_dir)} shows every member."
    )
    return lines


def _record(sweep: Sweep) -> dict:
    """sweep.json: what a resume and `rundir.swept_keys` read back."""
    return {
        "name": sweep.name,
        "kind": sweep.kind,
        "keys": list(sweep.keys),
        "source": sweep.source,
        "base_dir": sweep.members[0].spec.base_dir,
        "members": [{"name": m.name, "values": dict(m.values), "set": list(m.overrides)} for m in sweep.members],
    }


def _one_process() -> None:
    """A sweep trains in one process for now; many processes (--coordinator) take a plain spec."""
    import jax

    if jax.process_count() > 1:
        raise NetspecError(
            "A sweep trains in one process, its members one after another; a run of many processes "
            "(--coordinator) takes a plain spec. Train each member that way with its --set values "
            "(netspec validate --set sweep=null checks the plain spec)."
        )
