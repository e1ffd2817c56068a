"""Ctrl-C and SIGTERM for `netspec run` and `resume`: when they act, and what a stop raises.

Contract: while an `Interrupts` is watching (`watch()`; the command installs one first thing,
and `netspec.training.loop.run` installs its own when called directly), SIGINT and SIGTERM are
handled in three modes, nested as context managers:

- immediate (the default: nothing of the run is on disk yet, or the run is closing): the
  handler raises `Interrupted` where the program is.
- `graceful()` (training: the run directory exists and can be checkpointed): the first signal
  is only recorded (`requested`); the program looks at it at its next safe point (a chunk
  boundary), checkpoints and stops. A second signal raises `Interrupted` at once.
- `deferred()` (a few lines that must not be cut in two): signals are recorded and, if one is
  due to raise, it is raised when the block ends.

`Interrupted` is a BaseException, as KeyboardInterrupt is, so no `except Exception` on the way
swallows it; the code that knows what was kept turns it into `Stopped`, one paragraph with the
signal's exit code (130 for SIGINT, 143 for SIGTERM: 128 + the signal's number, as a shell
reports it; a second signal of a kind exits as that kind). Every file a run writes is written
whole or not at all (a temporary name, then a rename; event records in one write each), so
raising anywhere leaves nothing half-written.

`pause(phase)` is for tests only: with `NETSPEC_TEST_PAUSE=<phase>` and `NETSPEC_TEST_PAUSE_FILE=
<path>` in the environment, the process writes its pid to that file when it reaches the phase
and waits there until the file is deleted; every signal it receives meanwhile appends a line
`signal <number>` to the file, and takes effect when it continues, as if it had arrived at that
point. The phases are named where `pause` is called (`before-run-dir`, `compiling`,
`chunk:<step>`, `checkpoint-write:<file name>`, `closing`, `results`). Without the variable it
does nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import queue

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

from netspec.errors import NetspecError

SIGNAL_EXIT: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}


SIGNAL_NAME: dict[int, str] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class Interrupted(BaseException):
    """A signal that stops the program where it is (immediate mode, or a second signal)."""

    def __init__(self, signum: int, count: int):
        super().__init__(signum, count)
        self.signum, self.count = signum, count


class Stopped(NetspecError):
    """Training stopped before its end by a signal; the message says what was kept and how to go on."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = SIGNAL_EXIT[signum]


def describe(signum: int, count: int = 1) -> str:
    """How a stop message names its cause: 'Ctrl-C', 'SIGTERM', 'Ctrl-C twice', 'SIGTERM twice'."""
    return SIGNAL_NAME[signum] + (" twice" if count > 1 else "")


class Interrupts:
    """SIGINT / SIGTERM while a run is being made (see the module docstring for the modes)."""

    def __init__(self):
        self.signum: int | None = None  # the latest signal: its kind is the exit code
        self.count = 0
        self._graceful = 0
        self._deferred = 0
        self._raised = False
        self._closed = False  # the block has ended: a signal now raises nothing
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        """Whether a signal asked the program to stop."""
        return self.count > 0

    def __enter__(self) -> Interrupts:
        global _active
        if threading.current_thread() is threading.main_thread():  # only there can Python handle signals
            for signum in SIGNAL_EXIT:
                self._previous[signum] = signal.signal(signum, self._handle)
        self._outer, _active = _active, self
        return self

    def __exit__(self, *exc) -> None:
        """The handlers as they were, or, in a process whose command then only exits (`calm_after`),
        ignored. A signal while they are put back raises nothing: the block's work has ended (a
        SIGTERM there came out of this method as a traceback)."""
        global _active
        self._closed = True
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if _calm else handler)
        _active = self._outer

    def _handle(self, signum, frame) -> None:
        self.signum, self.count = signum, self.count + 1
        _acknowledge(signum)
        self._maybe_raise()

    def _maybe_raise(self) -> None:
        if self._closed or self._raised or self._deferred or not self.count or (self._graceful and self.count < 2):
            return
        self._raised = True  # once: signals during the clean-up that follows only set the exit code
        assert self.signum is not None  # a count means a signal came
        raise Interrupted(self.signum, self.count)

    def finished(self) -> None:
        """The work is done and written (a run's result.json, a sweep's): from here a signal is
        recorded and raises nothing; the process only reports and exits."""
        self._closed = True

    def begin_graceful(self) -> None:
        """From here a first signal is recorded for the program to act on at its next safe point."""
        self._graceful += 1

    def end_graceful(self) -> None:
        """Back to immediate; raises `Interrupted` for a signal the program did not act on."""
        self._graceful -= 1
        self._maybe_raise()

    def immediate(self) -> None:
        """Back to immediate however many graceful stretches began (a sweep group's closing: each
        member's opening began one); raises `Interrupted` for a signal the program did not act on."""
        self._graceful = 0
        self._maybe_raise()

    @contextlib.contextmanager
    def graceful(self):
        """`begin_graceful` for the block, `end_graceful` after it."""
        self.begin_graceful()
        try:
            yield self
        except BaseException:
            self._graceful -= 1
            raise
        self.end_graceful()

    @contextlib.contextmanager
    def modes(self):
        """The modes as they were before the block, however it ends (a stop part way through a
        graceful stretch leaves no count behind)."""
        saved = self._graceful, self._deferred
        try:
            yield self
        finally:
            self._graceful, self._deferred = saved

    @contextlib.contextmanager
    def deferred(self):
        """Signals wait until the block ends."""
        self._deferred += 1
        try:
            yield self
        finally:
            self._deferred -= 1
        self._maybe_raise()

    def wait_for(self, fn):
        """fn() run on a worker thread while this (main) thread stays ready for signals: a
        compilation in XLA holds the thread that calls it for as long as it takes (minutes for
        a deep model), and a signal handler runs only on the main thread between Python
        instructions. If a signal raises meanwhile, the worker is left to finish on its own
        (the process then ends with `os._exit`, see `workers_left`). Returns fn's result or
        raises its error."""
        return self.begin(fn)()

    def begin(self, fn):
        """Start fn() on the worker thread now and return `finish()`, which waits for it as
        `wait_for` does (ready for signals) and returns its result or raises its error
        (`finish.done()`: whether it has ended, without waiting): the main thread does other work
        meanwhile (the run's first summaries while its chunks compile)."""
        job = _Job(fn)
        if threading.current_thread() is not threading.main_thread() or not self._previous:
            job.value = fn()  # here, its error raised at once
            job.done.set()
        else:
            _worker().put(job)
        return Finish(job)


class Finish:
    """`Signals.begin`'s result: call it to wait for the job's result (as `wait_for` does, ready
    for signals; its error raised); `done()`: whether it has ended, without waiting."""

    def __init__(self, job: _Job):
        self._job = job

    def done(self) -> bool:
        return self._job.done.is_set()

    def __call__(self):
        job = self._job
        while not job.done.wait(0.05):
            pass
        if job.error is not None:
            raise job.error
        return job.value


class _Job:
    def __init__(self, fn):
        self.fn, self.value, self.error, self.done = fn, None, None, threading.Event()

    def run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as e:
            self.error = e
        finally:
            self.done.set()


_jobs: queue.SimpleQueue[_Job] | None = None


_running: list[_Job] = []


def _worker():
    """One long-lived daemon thread for every `wait_for` job. Long-lived on purpose: a thread
    that has just finished running XLA code still runs its C++ thread-local destructors, and
    the process aborts (SIGABRT) if it exits meanwhile; an idle thread waiting on a queue is
    simply left behind at exit."""
    global _jobs
    if _jobs is None:
        import queue

        jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        _jobs = jobs

        def serve():
            while True:
                job = jobs.get()
                _running.append(job)
                try:
                    job.run()
                finally:
                    _running.remove(job)

        threading.Thread(target=serve, name="netspec-compile", daemon=True).start()
    return _jobs


def settle() -> None:
    """Wait until every job given to the worker thread so far has ended: an error (not a signal)
    that ends a sitting while a job it began still runs (a new run's chunks compile from before
    its run directory is claimed) leaves none behind, so the process ends normally and an
    in-process caller goes on with no job of the failed run running."""
    if _jobs is None:
        return
    marker = _Job(lambda: None)  # the queue is served in order: once it has run, so has every job before it
    _jobs.put(marker)
    marker.done.wait()


def workers_left() -> bool:
    """Whether a `wait_for` job a signal left behind is still running. Then the process must end
    with os._exit: at a normal exit Python stops daemon threads, and one inside XLA aborts the
    process (SIGABRT, exit 134) instead of exiting with the signal's code."""
    return bool(_running)


_active: Interrupts | None = None
_calm = False


def finished() -> None:
    """`Interrupts.finished` of the watch active now, if any."""
    if _active is not None:
        _active.finished()


def ignore_signals() -> None:
    """SIGINT and SIGTERM ignored from here (the main thread only sets handlers)."""
    for signum in SIGNAL_EXIT:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signum, signal.SIG_IGN)


def calm_after() -> None:
    """In this process, once the command's watched work has ended (the outermost `watch` block),
    SIGINT and SIGTERM are ignored: the process only reports and exits, and a signal there came
    out as "Interrupted." (130) after a finished run, or killed the process (-15). Called by the
    `netspec` command itself; a test runner calling it in its own process leaves them alone."""
    global _calm
    _calm = True


@contextlib.contextmanager
def watch():
    """The Interrupts already watching (the command's), else a new one for the block."""
    if _active is not None:
        yield _active
        return
    with Interrupts() as interrupts:
        yield interrupts


_pausing: Path | None = None


def pause(phase: str) -> None:
    """Test-only: wait at `phase` while `NETSPEC_TEST_PAUSE` names it (see the module docstring)."""
    global _pausing
    if os.environ.get("NETSPEC_TEST_PAUSE") != phase:
        return
    marker = Path(os.environ["NETSPEC_TEST_PAUSE_FILE"])
    interrupts = _active or Interrupts()
    with interrupts.deferred():
        ready = marker.with_name(marker.name + ".writing")
        ready.write_text(f"{os.getpid()}\n")
        os.replace(ready, marker)  # the test never reads an empty marker
        _pausing = marker
        try:
            while marker.exists():
                time.sleep(0.01)
        finally:
            _pausing = None


def _acknowledge(signum: int) -> None:
    """While paused, tell the test that a signal arrived (so it can send the next one)."""
    if _pausing is not None:
        with contextlib.suppress(OSError):  # gone: the test let the process go on
            fd = os.open(_pausing, os.O_WRONLY | os.O_APPEND)  # never O_CREAT: a deleted marker stays deleted
            try:
                os.write(fd, f"signal {signum}\n".encode())
            finally:
                os.close(fd)
