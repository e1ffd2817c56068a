"""The run directory on disk: claiming it, writing its files whole, one writer at a time, reopening it.

Contract. `make_run_dir(logdir, name, run_name)` claims a new, empty `<logdir>/<name>/<run-id>`
(an exclusive mkdir, never an existing directory). Every file netspec writes in a run is written
whole or not at all: `write_atomically` (and `checkpoint.save`, the HParams session) writes a
temporary `.<name>.<...>.tmp` beside it, fsyncs it, renames it over the real name and fsyncs the
directory; event files are appended a whole record at a time (`write_all`, from
`summaries.EventFile`). So a kill -9 or a full disk can leave only temporary files, which
`remove_leftovers` deletes.

`lock(run_dir) -> RunLock` holds the run for this process with `flock` on `<run_dir>/.lock`
(`LOCK_FILE`), which the kernel releases when the process ends however it ends (kill -9 included,
so a lock is never stale), and records who holds it (pid, host, command, since) for the refusal
another process gets. `run` and `resume` hold it while they write (`sitting.Sitting.hold`, which
also removes leftovers); `eval` and `predict` call `tidy`, which removes leftovers only when no
one holds the run, and read a run another process holds without touching it.

The files a run starts with and reads back: `spec_yaml(spec)` (spec.yaml, the resolved spec),
`write_preprocess` / `read_preprocess` (preprocess.npz: the input scaling, class names and CSV
feature names, for `netspec predict`), `record_resume` (ran.json and changes.json through
`resumption.record`; preprocess.npz again when it is damaged). `load_run_spec(run_dir, overrides,
*, recorded_data)` checks a run's spec.yaml again, relative data paths starting where run.json
says the spec was, and with `recorded_data` (eval, predict) against the data as ran.json recorded
it, so a run whose data has moved can still be used. A missing or damaged file is a NetspecError
naming it and saying what can still be done. A run directory may be a member of a sweep: its
parent, the sweep directory, then holds `SWEEP_FILE` (`netspec.training.sweep`), and
`load_run_spec` gives the member's spec the keys its sweep set (`swept_keys`), for its HParams.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from netspec.errors import NetspecError
from netspec.spec.types import Spec, plain

LOCK_FILE = ".lock"


SWEEP_FILE = "sweep.json"  # in a sweep directory: its members, each a run directory beside it (training/sweep.py)


_SUBDIRS = ("checkpoints", "test", "validation")  # where a run writes besides its root


def member_place(run_dir: Path) -> tuple[Path, str]:
    """(logdir, run_name) for which `make_run_dir(logdir, spec name, run_name)` is a sweep member's
    `run_dir` (<logdir>/<name>/<run-id>/<member>), read from the directory it is on disk: a sweep
    resumed as `netspec resume DIR` or `.` gives its members relative paths without those parents,
    and one reached through a symbolic link (`LINK`, `LINK/..`) has the link's parents, not its."""
    full = Path(run_dir).resolve()
    return full.parent.parent.parent, f"{full.parent.name}/{full.name}"


def renamed(run_dir: Path, run_name: str | None) -> str | None:
    """The line that says a --run-name was taken, so the run went to `run_dir` (`make_run_dir`'s
    NAME-i) instead; None when it got the name asked for (or none was)."""
    if run_name is None or Path(run_name).name == run_dir.name:
        return None
    return f"{run_dir.with_name(Path(run_name).name)} exists, so this run is {run_dir}."


def make_run_dir(logdir: str | Path, name: str, run_name: str | None) -> Path:
    """Claim a new, empty run directory `<logdir>/<name>/<run_name or the time>[-i]`; never
    reuse an existing one. Raises NetspecError when it cannot be created."""
    parent = Path(logdir) / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        dangling = next((p for p in (parent, *parent.parents) if p.is_symlink() and not p.exists()), None)
        why = (
            f"{dangling} is a symbolic link to {os.readlink(dangling)}, which does not exist"
            if dangling is not None
            else e.strerror
        )
        raise NetspecError(f"Cannot create the run directory {parent}: {why}. Choose another --logdir.") from None
    base = run_name or time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        candidate = parent / (base if i == 0 else f"{base}-{i}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as e:
            raise NetspecError(
                f"Cannot create the run directory {candidate}: {e.strerror}. Choose another --logdir."
            ) from None
    raise NetspecError(f"Too many runs named {base!r} in {parent}; choose another --run-name.")


def write_all(fd: int, data: bytes, path: Path | str) -> None:
    """All of `data` to `fd`; a short write (a disk that filled up) is the OSError it is."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
            if written == len(data):  # the usual case, in one call
                return
        except OSError as e:  # os.write's error names no file
            raise OSError(e.errno, e.strerror, str(path)) from None
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        view = view[written:]


def sync_directory(directory: Path) -> None:
    """fsync a directory, so a rename or a new file in it survives a power loss too."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes | str, *, tmp_prefix: str | None = None) -> None:
    """Replace `path` with `data` (str: UTF-8) whole: a temporary file beside it (named
    `.<tmp_prefix, else the file's name>.<pid>.tmp`), fsynced, renamed. Raises OSError (the
    temporary file removed) when it cannot be written."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp = path.with_name(f".{tmp_prefix or path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            write_all(fd, payload, tmp)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename == str(
            tmp
        ):  # say which file could not be written, not its temporary name
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    sync_directory(path.parent)


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Delete the temporary files of writes that were cut off (kill -9, a full disk, a power
    loss) in the run directory; returns them. Only a process that holds the run (`lock`) may
    call this: another's write in progress is such a file."""
    removed = []
    for directory in (run_dir, *(run_dir / sub for sub in _SUBDIRS)):
        for path in directory.glob(".*.tmp"):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class RunLock:
    """This process's hold on a run directory; `release()` (or the process's end) lets it go."""

    def __init__(self, fd: int, run_dir: Path):
        self._fd: int | None = fd  # None once released
        self.run_dir = run_dir

    def release(self) -> None:
        """Let the run go (the lock file stays: deleting it would race with a process opening it)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the flock
            self._fd = None


def _holder_text() -> str:
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    return (
        json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": command,
                "since": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            }
        )
        + "\n"
    )


def _try(run_dir: Path) -> tuple[RunLock | None, dict]:
    """(the lock, {}) or (None, what the holder recorded). Raises OSError when the lock file
    cannot be opened (a read-only run directory)."""
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            holder = {}
        os.close(fd)
        return None, holder if isinstance(holder, dict) else {}
    except BaseException:
        os.close(fd)
        raise
    return RunLock(fd, run_dir), {}


def lock(run_dir: Path) -> RunLock:
    """Hold `run_dir` for this process (see the module docstring) and record who holds it.
    Raises NetspecError naming the holder when another process holds it, or when the lock
    file cannot be written."""
    run_dir = Path(run_dir)
    try:
        held, holder = _try(run_dir)
        if held is not None:
            fd = held._fd
            assert fd is not None  # taken just now: not released
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, _holder_text().encode(), 0)
            except OSError:  # a full disk: the lock holds all the same; a refusal then names no holder
                pass
            return held
    except OSError as e:
        raise NetspecError(
            f"Cannot write the run directory {run_dir} ({e.filename or run_dir / LOCK_FILE}): "
            f"{e.strerror or e}. A run directory must be writable to train in it."
        ) from None
    who = (
        f"process {holder['pid']} on {holder.get('host', 'this host')} (`{holder.get('command', 'netspec')}`), since "
        f"{holder.get('since', 'some time')}"
        if "pid" in holder
        else "another process"
    )
    stop = (
        f" (or stop it: kill {holder['pid']})" if "pid" in holder and holder.get("host") == socket.gethostname() else ""
    )
    kind = "sweep" if (run_dir / SWEEP_FILE).is_file() else "run"
    raise NetspecError(
        f"The {kind} {run_dir} is in use: {who} is writing it. A {kind} directory is written by one process at a "
        f"time, so this one left it untouched; wait for that process to end{stop}, then run this again."
    )


def tidy(run_dir: Path) -> None:
    """Remove leftovers of cut-off writes if no process holds the run (for commands that only
    read it: eval, predict); a run another process holds, or a read-only one, is left as it is."""
    try:
        held, _ = _try(Path(run_dir))
    except OSError:
        return
    if held is not None:
        try:
            remove_leftovers(Path(run_dir))
        except OSError:
            pass
        finally:
            held.release()


def spec_yaml(spec: Spec) -> str:
    """The resolved spec as the YAML text a run directory's spec.yaml holds (`load.dump`)."""
    from netspec.spec.load import dump

    return dump(plain(spec.resolved))


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
    write_atomically(path, text)


def swept_keys(run_dir: Path) -> tuple[str, ...]:
    """The keys set by the sweep whose member `run_dir` is (its parent's `SWEEP_FILE` lists it),
    so that a member resumed on its own keeps them in HParams; () for a run of its own."""
    try:
        record = json.loads((run_dir.parent / SWEEP_FILE).read_text())
        if run_dir.name in {m["name"] for m in record["members"]}:
            return tuple(str(key) for key in record["keys"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no sweep here (or a damaged record, which `netspec resume` of the sweep reports)
    return ()


def load_run_spec(run_dir: str | Path, overrides=(), *, recorded_data: bool = False, notice=None) -> Spec:
    """The checked spec of an existing run directory: its resolved spec.yaml, relative data paths
    starting where the original spec was (run.json's base_dir). With `recorded_data` (eval,
    predict) the data is taken as the run recorded it (ran.json's data_info) instead of read
    from its files, so a run whose data has moved can still be used; a run without that record
    (an older netspec), or with a damaged one (said in one line to `notice`), reads its data.
    Raises NetspecError naming spec.yaml or run.json when one is missing or damaged, with what
    can still be done, and SpecError for a bad `overrides` (`--set`) entry."""
    from netspec.errors import SpecError
    from netspec.spec.check import check
    from netspec.spec.load import load
    from netspec.training import resumption

    run_dir = Path(run_dir)
    spec_file, info_file = run_dir / "spec.yaml", run_dir / "run.json"
    if not spec_file.is_file() and not info_file.is_file():
        if (run_dir / SWEEP_FILE).is_file():
            raise NetspecError(
                f"{run_dir} is a sweep, whose members are run directories of their own: give one of them "
                f"({run_dir}/<member>; {run_dir}/result.json ranks them)."
            )
        raise NetspecError(f"{run_dir} is not a netspec run directory (it has no spec.yaml and run.json).")
    if not spec_file.is_file():
        raise NetspecError(
            f"The run directory {run_dir} has no spec.yaml, the resolved spec the run trained with, so its "
            f"model cannot be rebuilt. {_SPEC_RECOVERY}"
        )
    base_dir = _run_base_dir(run_dir, info_file)
    data_info = None
    if recorded_data:
        try:
            record = resumption.read_record(run_dir)
            data_info = record.data_info if record is not None else None
        except resumption.DamagedRecord as e:
            if notice is not None:
                notice(
                    f"{run_dir / resumption.RECORD} is damaged ({e.detail}); the run's spec is checked against its data files instead."
                )
    loaded = None
    try:
        loaded = load(spec_file, list(overrides))
        loaded.source = str(Path(base_dir) / spec_file.name)  # relative data paths start where the spec was
        return replace(check(loaded, data_info=data_info), swept=swept_keys(run_dir))
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
        data_only = (
            isinstance(data, dict) and "inline" not in data and all(p.path.startswith("$.data") for p in in_file)
        )
        if data_only and data_info is None:
            raise _data_gone(run_dir, problem, base_dir, "rebuilt") from None
        raise NetspecError(f"The run's spec.yaml is damaged: {problem}. {_SPEC_RECOVERY}") from None


_SPEC_RECOVERY = (
    "The spec as it ran is also in the run's TensorBoard events (tensorboard --logdir on the run, Text tab, "
    "tag spec; unless summaries.text was off): save that text as spec.yaml; and, resolved, in the run's ran.json "
    '(its "spec" mapping is JSON, which is YAML: saved alone as spec.yaml, it is the spec). The checkpoints and '
    "events are untouched."
)


def _overrides_misfit(run_dir: Path, spec_file: Path, loaded, problem: str, base_dir: str, data_info) -> None:
    """When spec.yaml checks alone and only the `--set` values make its keys wrong (another
    optimizer.type leaves the old one's arguments behind), raise that, as a resume refuses a
    change of meaning or as the --set's problem; return when spec.yaml itself is damaged."""
    from netspec.errors import SpecError
    from netspec.spec.check import check
    from netspec.spec.load import load
    from netspec.training import resumption

    try:
        bare = load(spec_file)
        bare.source = str(Path(base_dir) / spec_file.name)
        check(bare, data_info=data_info)
    except (SpecError, NetspecError):
        return
    refused = [d for d in resumption.differences(bare.data, loaded.data) if d.kind == resumption.MEANING]
    if refused:
        raise resumption.refusal(run_dir, refused, compared="--set, against spec.yaml")
    raise NetspecError(
        f"The --set values do not fit the run's spec.yaml: {problem}. Set that key too (or to null to remove "
        f"it); spec.yaml, the checkpoints and the events are untouched."
    )


def _data_gone(run_dir: Path, problem: str, base_dir: str, what: str) -> NetspecError:
    """The run's training data is not where its spec says: not damage, and what still works."""
    return NetspecError(
        f"The run in {run_dir} cannot be {what} without its training data as it was: {problem}. Relative data "
        f"paths start at {base_dir} (from run.json). Put the data back, or point data in spec.yaml to where it is "
        f"now; netspec predict needs only the run directory."
    )


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
    raise NetspecError(
        f"The run directory {run_dir} {what}. It records the directory the run's spec was in, where relative "
        f'data paths start. Write it again as {{"spec_source": "<the spec file>", "base_dir": "<its directory>"}} '
        f"and run the command again; spec.yaml, the checkpoints and the events are untouched."
    ) from None


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
    np.savez(
        buffer,
        shift=arrays.shift,
        scale=arrays.scale,
        class_names=np.asarray(arrays.class_names or [], dtype=str),
        feature_names=np.asarray(arrays.feature_names or [], dtype=str),
    )
    write_atomically(run_dir / "preprocess.npz", buffer.getvalue())


def record_resume(run_dir: Path, spec: Spec, arrays, changes, step: int, echo) -> None:
    """What a resume that goes ahead records: ran.json and the accepted changes
    (`resumption.record`), and preprocess.npz again when it is missing or damaged (the resume
    has the training data it came from), said in one line."""
    from netspec.training import resumption

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
            raise ValueError(
                f"it names {len(feature_names)} features, the training examples have {int(np.prod(example))}"
            )
    except FileNotFoundError:
        problem = "has no preprocess.npz"
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as e:
        problem = f"has a damaged preprocess.npz ({getattr(e, 'strerror', None) or e})"
    else:
        return Preprocess(shift, scale, class_names, feature_names or None)
    raise NetspecError(
        f"The run directory {run_dir} {problem}: the input scaling, class names and feature names that training "
        f"took from its data, which predict applies to new inputs. netspec eval still works (it reads the "
        f"training data itself). To predict, restore the file from a copy of the run, or train the spec "
        f"again (with the same data and seed it writes the same file)."
    ) from None
