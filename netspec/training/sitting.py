"""How far one sitting of a run got (a new run, or one resume), what it holds, and the paragraph
that ends it early.

Contract. `Sitting(spec, resume, member_of=None)` is created before anything is written (a sweep
member's names its sweep's directory: the resume the paragraphs give is the sweep's). `hold(run_dir)` locks
the run directory for the sitting (`rundir.lock`: refused, naming the holder, while another
process writes it) and removes what cut-off writes left there; `phase` moves from "training" to
"closing" (training ended, results not yet written) to "done". When the sitting ends early,
`stopped(interrupted)` (a signal) or `cannot_write(oserror)` (a full disk) give the one paragraph
that says what was kept and how to go on; `abandon_if_empty()` takes away a new run's directory
that holds nothing; `release(failed)` unlocks it.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from netspec.errors import NetspecError, quoted
from netspec.spec.types import Spec
from netspec.training import interrupts, rundir
from netspec.training.interrupts import Stopped


class Sitting:
    """How far a sitting got, for the paragraph that ends it early, and what it holds: the run
    directory once it exists (and the lock on it), a process's scratch directory."""

    def __init__(self, spec: Spec, resume, member_of: Path | None = None):
        self.spec = spec
        self.resume = None if resume is None else Path(resume)
        self.member_of = member_of  # a sweep's directory, for its member's run: what a resume names
        self.run_dir: Path | None = None
        self.phase = "training"  # then "closing" (training ended, results not yet written), "done"
        self.scratch: Path | None = None
        self.removed: Path | None = None  # a new run's directory, taken away as it held nothing
        self._lock: rundir.RunLock | None = None

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
            if (
                failed and self.run_dir is not None
            ):  # our own cut-off writes clean up after themselves; this is the last word
                with contextlib.suppress(OSError):
                    rundir.remove_leftovers(self.run_dir)
            self._lock.release()
            self._lock = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def resumed_by(self, run_dir: Path) -> Path:
        """The directory whose `netspec resume` continues `run_dir`: its sweep's, for a member (the
        sweep's resume resumes it and goes on with the others), else its own."""
        return self.member_of if self.member_of is not None else run_dir

    def _kept(self) -> tuple[str, str, bool]:
        """(what the run directory holds now, what to do next, whether that is to start again)."""
        from netspec.training import checkpoint

        again = "run the same netspec run command to start again"
        if self.run_dir is None:
            if self.resume is not None:
                return (
                    f"Nothing in {self.resume} was changed",
                    f"continue it with: netspec resume {quoted(self.resumed_by(self.resume))}",
                    False,
                )
            if self.removed is not None:
                return f"Nothing was kept (its empty directory {self.removed} was removed)", again, True
            return "No run directory was created", again, True
        if self.phase == "done":
            return f"The run had finished; everything is in {self.run_dir}", "", False
        latest = checkpoint.Checkpoints(self.run_dir / "checkpoints", keep=1).latest()
        if latest is None:
            return (
                f"No checkpoint had been written yet, so the run cannot be resumed ({self.run_dir} holds its events so far)",
                again,
                True,
            )
        try:
            meta = checkpoint.metadata(latest)
        except NetspecError:
            meta = {}
        step = meta.get("step", latest.stem.split("-")[-1].lstrip("0") or "0")
        if "closing" in meta:
            return (
                f"Its training had ended; the checkpoint at step {step} and the events up to it are kept in {self.run_dir}",
                "finish the run (final evaluation and result.json, no training) with: netspec resume "
                f"{self.resumed_by(self.run_dir)}",
                False,
            )
        return (
            f"The checkpoint at step {step} of {self.spec.steps} and the events up to it are kept in {self.run_dir}",
            f"continue with: netspec resume {quoted(self.resumed_by(self.run_dir))}",
            False,
        )

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
        return Stopped(
            f"{interrupts.describe(e.signum, e.count)}: {what}. {kept}."
            + (f" {then[0].upper()}{then[1:]}" if then else ""),
            e.signum,
        )

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
            return NetspecError(
                f"Cannot write the run{at}{file}: {cause}. Nothing was kept (no run directory remains): free some "
                f"space or choose another --logdir, and run the same netspec run command again."
            )
        kept, then, again = self._kept()
        if not then:
            return NetspecError(f"Cannot write {e.filename or self.run_dir}: {cause}. {kept}.")
        other = " (or choose another --logdir)" if again and self.resume is None else ""
        return NetspecError(
            f"Cannot write the run {self.run_dir}{file}: {cause}. {kept}. Free some space{other}, then {then}"
        )
