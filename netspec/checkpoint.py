"""Checkpoints: a pytree of arrays (a TrainState) as one safetensors file, written atomically.

Contract: `save(path, tree, metadata)` writes every leaf under its pytree path
(`params['layer1']['kernel']`), plus a small JSON manifest in the file's metadata (step, spec
name, anything the caller adds), to a temporary name in the same directory, fsyncs, then renames:
a reader never sees half a file, and a crash never damages the previous checkpoint.
`load(path, template)` fills a tree shaped like `template` and refuses, with a clear message, a
file whose leaves or shapes do not match (a checkpoint from another spec). Never pickle.
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

    payload = to_bytes(_flat(gather(tree)), metadata={"netspec": json.dumps(metadata or {})})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def _reading(path: str | Path):
    """A missing or unreadable checkpoint file as one clear sentence."""
    from safetensors import SafetensorError

    try:
        yield
    except FileNotFoundError:
        raise NetspecError(f"No checkpoint at {path}.") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise NetspecError(f"The checkpoint {path} is damaged or not a netspec checkpoint ({e}).") from None


def metadata(path: str | Path) -> dict:
    from safetensors import safe_open

    with _reading(path), safe_open(str(path), framework="numpy") as f:
        return json.loads((f.metadata() or {}).get("netspec", "{}"))


def load(path: str | Path, template):
    """A tree shaped like `template` with the arrays stored at `path`."""
    from safetensors.numpy import load_file

    path = Path(path)
    with _reading(path):
        stored = load_file(str(path))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    out = []
    for key_path, leaf in leaves:
        key = jax.tree_util.keystr(key_path)
        if key not in stored:
            raise NetspecError(f"The checkpoint {path} does not fit this spec: it has no {key}. It was written for a different model.")
        value = stored[key]
        is_key = jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)
        want = jax.random.key_data(leaf).shape if is_key else np.shape(leaf)
        if value.shape != tuple(want):
            raise NetspecError(f"The checkpoint {path} does not fit this spec: {key} has shape {list(value.shape)}, the model needs {list(want)}.")
        want_dtype = jax.random.key_data(leaf).dtype if is_key else np.dtype(getattr(leaf, "dtype", None) or np.asarray(leaf).dtype)
        if value.dtype != want_dtype:
            raise NetspecError(f"The checkpoint {path} does not fit this spec: {key} is {value.dtype}, the model needs {want_dtype}.")
        out.append(jax.random.wrap_key_data(value) if is_key else value)
    extra = sorted(set(stored) - {jax.tree_util.keystr(key_path) for key_path, _ in leaves})
    if extra:  # e.g. a layer this model does not have: the weights are another model's
        raise NetspecError(f"The checkpoint {path} does not fit this spec: it has {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}, which the model has not. It was written for a different model.")
    return jax.tree_util.tree_unflatten(treedef, out)


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
        steps = self.steps()
        return steps[-1][1] if steps else None

    def best(self) -> Path | None:
        path = self.directory / "best.safetensors"
        return path if path.is_file() else None

    def remove_partial(self) -> None:
        """Delete the temporary files of writes that were cut off (kill -9, power loss). Only
        the process that owns the run may call this: another's write in progress is such a file."""
        for path in self.directory.glob(".*.tmp"):
            path.unlink(missing_ok=True)

    def save(self, tree, step: int, meta: dict) -> Path:
        path = save(self.directory / f"step-{step:08d}.safetensors", tree, {**meta, "step": step})
        for _, old in self.steps()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def save_best(self, tree, step: int, meta: dict) -> Path:
        return save(self.directory / "best.safetensors", tree, {**meta, "step": step})
