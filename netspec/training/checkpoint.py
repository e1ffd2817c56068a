"""Checkpoints: a pytree of arrays (a TrainState) as one safetensors file, written atomically.

Contract: `save(path, tree, metadata)` writes every leaf under its pytree path
(`params['layer1']['kernel']`), plus a small JSON manifest in the file's metadata (step, spec
name, anything the caller adds), to a temporary name in the same directory, fsyncs, then renames
and fsyncs the directory: a reader never sees half a file, and a crash never damages the previous
checkpoint. A write cut off by a signal or a full disk removes its temporary file; one cut off
by kill -9 leaves it, for the next command that opens the run (`rundir.remove_leftovers`).
`load(path, template)` fills a tree shaped like `template` and refuses, with a clear message, a
file whose leaves or shapes do not match (a checkpoint from another spec). Never pickle.
`Checkpoints.restore(template)` loads the newest checkpoint of a run that loads, passing over
damaged ones (and ones of another model) with a one-line notice; only when none loads is it an
error.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import jax
import numpy as np

from netspec.errors import NetspecError


def _flat(tree) -> dict[str, np.ndarray]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        array = np.asarray(leaf)
        out[jax.tree_util.keystr(path)] = np.ascontiguousarray(array).reshape(array.shape)  # keep 0-d arrays 0-d
    return out


def save(path: str | Path, tree, metadata: dict | None = None) -> Path:
    """Write `tree` to `path` atomically (see the module docstring)."""
    from safetensors.numpy import save as to_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from netspec.distribute import gather
    from netspec.training.interrupts import pause
    from netspec.training.rundir import sync_directory, write_all

    payload = to_bytes(_flat(gather(tree)), metadata={"netspec": json.dumps(metadata or {})})
    # in the folder on disk: mkstemp makes `dir` absolute by os.path.abspath, which reads LINK/.. as text
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent.resolve())
    try:
        try:
            half = len(payload) // 2
            write_all(fd, payload[:half], tmp)
            pause(f"checkpoint-write:{path.name}")  # tests stop the process here, half written
            write_all(fd, payload[half:], tmp)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:  # a signal, a full disk: no half file is left behind
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename == tmp:  # say which file could not be written, not its temporary name
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    sync_directory(path.parent)  # the rename survives a power loss too
    return path


class CheckpointError(NetspecError):
    """A checkpoint file that cannot be used: `reason` says why in a few words; `misfit` is True
    when it is a sound file of another model (or of this spec before it was changed)."""

    def __init__(self, message: str, reason: str, *, misfit: bool = False):
        super().__init__(message)
        self.reason, self.misfit = reason, misfit


@contextlib.contextmanager
def _reading(path: str | Path):
    """A missing or unreadable checkpoint file as one clear sentence."""
    from safetensors import SafetensorError

    try:
        yield
    except FileNotFoundError:
        raise CheckpointError(f"No checkpoint at {path}.", "missing") from None
    except (SafetensorError, OSError, ValueError) as e:
        detail = getattr(e, "strerror", None) or e
        raise CheckpointError(
            f"The checkpoint {path} is damaged or not a netspec checkpoint ({detail}).", f"damaged: {detail}"
        ) from None


def _misfit(path: Path, what: str) -> CheckpointError:
    return CheckpointError(
        f"The checkpoint {path} does not fit this spec: {what}",
        f"of another model: {what.split('. ')[0].rstrip('.')}",
        misfit=True,
    )


def metadata(path: str | Path) -> dict:
    """The JSON manifest `save` wrote into the file. Raises CheckpointError for a missing or damaged file."""
    from safetensors import safe_open

    with _reading(path), safe_open(str(path), framework="numpy") as f:
        meta = json.loads((f.metadata() or {}).get("netspec", "{}"))
        if not isinstance(meta, dict):
            raise ValueError("its netspec manifest is not a mapping")
        return meta


def load(path: str | Path, template):
    """A tree shaped like `template` with the arrays stored at `path`. Raises CheckpointError
    for a missing or damaged file, and (`misfit`) for a file whose leaves, shapes or dtypes are
    not the template's: another model's."""
    from safetensors.numpy import load_file

    path = Path(path)
    with _reading(path):
        stored = load_file(str(path))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    out = []
    for key_path, leaf in leaves:
        key = jax.tree_util.keystr(key_path)
        if key not in stored:
            raise _misfit(path, f"it has no {key}. It was written for a different model.")
        value = stored[key]
        is_key = jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)
        want = jax.random.key_data(leaf).shape if is_key else np.shape(leaf)
        if value.shape != tuple(want):
            raise _misfit(path, f"{key} has shape {list(value.shape)}, the model needs {list(want)}.")
        want_dtype = (
            jax.random.key_data(leaf).dtype
            if is_key
            else np.dtype(getattr(leaf, "dtype", None) or np.asarray(leaf).dtype)
        )
        if value.dtype != want_dtype:
            raise _misfit(path, f"{key} is {value.dtype}, the model needs {want_dtype}.")
        # jax annotates the key data as a jax.Array; it takes any array (numpy here: it stays on the host)
        out.append(jax.random.wrap_key_data(value) if is_key else value)  # type: ignore[arg-type]
    extra = sorted(set(stored) - {jax.tree_util.keystr(key_path) for key_path, _ in leaves})
    if extra:  # e.g. a layer this model does not have: the weights are another model's
        raise _misfit(
            path,
            f"it has {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}, which the model has not. It was written for a different model.",
        )
    return jax.tree_util.tree_unflatten(treedef, out)


_MISFIT_CAUSE = (
    "The run's spec.yaml and its checkpoints disagree: spec.yaml was edited after training, a setting that "
    "shapes the optimizer's state was changed (momentum or clipping added or removed, a learning-rate schedule "
    "in place of a number), or the checkpoint came from another run."
)


class Checkpoints:
    """A run's checkpoints directory: `step-00001200.safetensors` for the last `keep` checkpoints,
    and `best.safetensors` for the best by an eval scalar. Older ones are deleted only after a
    newer one is safely in place, so there is always a complete checkpoint to resume from."""

    def __init__(self, directory: str | Path, *, keep: int):
        self.directory = Path(directory)
        self.keep = keep

    def steps(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.directory.glob("step-*.safetensors"):
            try:
                found.append((int(path.stem.split("-", 1)[1]), path))
            except ValueError:
                continue
        return sorted(found)

    def latest(self) -> Path | None:
        """The newest step checkpoint's path (whether or not it loads), or None."""
        steps = self.steps()
        return steps[-1][1] if steps else None

    def best(self) -> Path | None:
        """best.safetensors, or None when the run keeps none."""
        path = self.directory / "best.safetensors"
        return path if path.exists() else None

    def restore(self, template, *, prefer_best: bool = False, notice=None, set_aside: bool = False):
        """(path, tree) of the newest checkpoint that loads into `template` (`best.safetensors`
        first when `prefer_best`), or None when there is no checkpoint at all. Newer ones that do
        not load (damaged, or another model's) are passed over, said in one line to `notice`;
        with `set_aside` (a resume, which owns the run) they are renamed `<name>.damaged`, so
        that no later save keeps them in place of sound ones and no later resume tries them
        again. Raises CheckpointError, naming each file and why, when none loads."""
        found = ([self.best()] if prefer_best else []) + [path for _, path in reversed(self.steps())]
        candidates = [path for path in found if path is not None]
        if not candidates:
            return None
        failed: list[CheckpointError] = []
        for path in candidates:
            try:
                tree = load(path, template)
                metadata(path)  # its manifest too: the run reads its step and tracking from it
            except CheckpointError as e:
                failed.append(e)
                continue
            if failed:
                skipped = candidates[: len(failed)]
                if set_aside:
                    for old in skipped:
                        os.replace(old, old.with_name(old.name + ".damaged"))
                if notice is not None:
                    names = " and ".join(p.name for p in skipped)
                    kept = (
                        f"; {'it is' if len(skipped) == 1 else 'they are'} kept as {' and '.join(p.name + '.damaged' for p in skipped)}"
                        if set_aside
                        else ""
                    )
                    notice(
                        f"{self.directory / skipped[0].name if len(skipped) == 1 else names} "
                        f"{'does' if len(skipped) == 1 else 'do'} not load ({failed[0].reason}{'; ...' if len(failed) > 1 else ''}): "
                        f"using {path.name} instead{kept}."
                    )
            return path, tree
        misfit = all(e.misfit for e in failed)
        then = (
            f"{_MISFIT_CAUSE} Undo such a change, or train the run again with netspec run"
            if misfit
            else "Train the run again with netspec run"
        ) + "; its TensorBoard events are untouched."
        if len(failed) == 1:
            raise CheckpointError(
                f"{failed[0]} It is the run's only checkpoint. {then}", failed[0].reason, misfit=misfit
            )
        every = "; ".join(f"{p.name}: {e.reason}" for p, e in zip(candidates, failed, strict=True))
        raise CheckpointError(
            f"None of the {len(failed)} checkpoints in {self.directory} loads ({every}). {then}",
            failed[0].reason,
            misfit=misfit,
        )

    def save(self, tree, step: int, meta: dict) -> Path:
        path = save(self.directory / f"step-{step:08d}.safetensors", tree, {**meta, "step": step})
        for _, old in self.steps()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def save_best(self, tree, step: int, meta: dict) -> Path:
        return save(self.directory / "best.safetensors", tree, {**meta, "step": step})
