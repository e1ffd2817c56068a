"""The spec's `data` section on the host: what the data looks like, and the arrays themselves.

Contract. `describe(data, base_dir) -> DataInfo` says how many training examples there are, the
shape and dtype of one example, the labels' shape and summary (`labels.summarize`) and the
classes when known, reading as little as it can: of IDX files and npz archives the headers and
the labels, never the examples (a CSV is read whole). `check` calls it for data in files (inline
data and the named sets it describes itself); a missing or malformed file is a `DataError`.
`load(data, base_dir, *, seed, data_dir=None) -> Arrays` reads the examples (through `formats`
and `download`), applies `data.limit`, carves the validation split (fixed by the seed) and
computes the scaling (`1/255`, a number, or per-feature standardization from the training split)
as `(x - shift) * scale`, which the compiled step applies on the device, so images stay uint8
there; `netspec.training.feed.load_arrays` calls it. `BatchOrder` says which examples each step
trains on: a permutation per epoch drawn from (seed, epoch), so the batches depend only on the
seed and the step, however the run is cut into chunks or resumed.

numpy, never jax: `validate` calls `describe`. Relative paths start at `base_dir`, the spec file's
directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from netspec.data.download import load_standard
from netspec.data.formats import (
    _find_files,
    check_directory,
    idx_header,
    load_csv,
    load_idx_dir,
    load_npz,
    open_npz,
    read_idx,
    read_npz_array,
)
from netspec.data.labels import Labels, summarize
from netspec.data.sources import FASHION_CLASSES, SOURCES, STANDARD, DataInfo
from netspec.errors import DataError


class Split(NamedTuple):
    """One split's examples and labels, as stored (images uint8)."""

    x: np.ndarray
    y: np.ndarray


class Arrays(NamedTuple):
    """Host arrays as stored (images uint8), and the on-device scaling `(x - shift) * scale`.

    `feature_names`: the names of the features in the order of x's last axis, when the data
    names them (a CSV file with a header), else None. `netspec predict` matches a new CSV's
    columns to them by name.
    """

    train: Split
    validation: Split | None
    test: Split | None
    shift: np.ndarray
    scale: np.ndarray
    class_names: tuple[str, ...] | None
    feature_names: tuple[str, ...] | None = None


def source_of(data: Mapping) -> str:
    """The one source (a key of `SOURCES`) that a checked `data` section names."""
    return next(k for k in SOURCES if k in data)


def _path(value, base_dir: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base_dir / p


def describe(data: Mapping, base_dir: Path) -> DataInfo:
    """What data in files looks like (see the module docstring); the named sets (mnist,
    fashion_mnist) are known without reading them (`registry.STANDARD`, in check)."""
    source = source_of(data)
    cfg = data[source]
    if source == "inline":
        x = np.asarray(_plain(cfg["x"]))
        y = np.asarray(_plain(cfg["y"]))
        return DataInfo(source, len(x), None, x.shape[1:], "float32", y.shape[1:], None, _labels(y))
    if source == "idx":
        directory = _path(cfg["path"], base_dir)
        if os.path.lexists(directory) and not directory.is_dir():
            check_directory(directory)  # says what it is instead
        files, missing = _find_files(directory) if directory.is_dir() else ({}, [])
        if "train_images" not in files or "train_labels" not in files:
            raise DataError(
                f"The idx directory {directory} must hold train-images-idx3-ubyte and train-labels-idx1-ubyte "
                f"(plain or .gz; t10k-* for the test split). Missing: {', '.join(missing) or 'the directory itself'}."
            )
        x_dtype, x_shape = idx_header(files["train_images"])
        y_train = read_idx(files["train_labels"])  # small: one number per example
        n_test = idx_header(files["test_images"])[1][0] if "test_images" in files else None
        test = _labels(read_idx(files["test_labels"])) if "test_labels" in files else None
        return DataInfo(
            source, x_shape[0], n_test, x_shape[1:], x_dtype.name, y_train.shape[1:], None, _labels(y_train), test
        )
    if source == "npz":
        path = _path(cfg["path"], base_dir)
        if not os.path.lexists(path):
            raise DataError(
                f"No such npz file: {path}. Check data.npz.path (relative paths are from the spec's directory)."
            )
        with open_npz(path) as (archive, headers):  # every header checked against the archive's sizes
            x_key = "x_train" if "x_train" in headers else cfg["x_key"]
            y_key = "y_train" if "x_train" in headers else cfg["y_key"]
            for key in (x_key, y_key):
                if key not in headers:
                    raise DataError(
                        f"{path} has no array {key!r}; it holds {', '.join(sorted(headers)) or 'no arrays'}. "
                        f"Name the arrays with data.npz.x_key / y_key, or store x_train, y_train (and x_test, y_test)."
                    )
            x, y = headers[x_key], headers[y_key]
            if not x.shape or not y.shape:
                raise DataError(
                    f"{path}: {x_key!r} has shape {x.shape} and {y_key!r} has shape {y.shape}; each needs a first "
                    "dimension, the examples (one label per example)."
                )
            n_test = headers["x_test"].shape[0] if "x_test" in headers and headers["x_test"].shape else None
            labels = _labels(read_npz_array(archive, y, path))
            test = (
                _labels(read_npz_array(archive, headers["y_test"], path))
                if "x_train" in headers and "y_test" in headers
                else None
            )
        return DataInfo(source, x.shape[0], n_test, x.shape[1:], x.dtype.name, y.shape[1:], None, labels, test)
    if source == "csv":
        table = _load_csv(cfg, base_dir)
        classes = len(table.classes) if table.classes is not None else None
        return DataInfo(
            source, len(table.x), None, table.x.shape[1:], "float32", (), classes, _labels(table.y, table.classes)
        )
    raise AssertionError(source)


def _labels(y: np.ndarray, names=None) -> Labels:
    """The labels' summary for check's rules (netspec.labels), one example's values per row."""
    per_example = int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
    return summarize(y, per_example, names)


def _plain(value):
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _load_csv(cfg, base_dir: Path):
    return load_csv(
        _path(cfg["path"], base_dir),
        features=_plain(cfg.get("features")),
        label=cfg["label"],
        header=cfg["header"],
        delimiter=cfg["delimiter"],
    )


_RATIO = re.compile(r"^\s*1\s*/\s*(\d+(?:\.\d+)?)\s*$")


def scale_factor(value) -> float | None:
    """`1/255` -> 1/255; a number -> itself; None or 'standardize' -> None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and (ratio := _RATIO.match(value)):
        return 1.0 / float(ratio.group(1))
    return None


def load(data: Mapping, base_dir: Path, *, seed: int, data_dir: str | None = None) -> Arrays:
    """Read the examples and prepare the splits and scaling (see the module docstring). Raises
    DataError for a missing or malformed data file."""
    source = source_of(data)
    cfg = data[source]
    class_names = feature_names = None
    if source == "inline":
        train = Split(np.asarray(_plain(cfg["x"]), np.float32), np.asarray(_plain(cfg["y"])))
        test = None
    elif source in STANDARD:
        train, test = _train_test(load_standard(source, data_dir=data_dir or cfg.get("dir"), download=cfg["download"]))
        class_names = FASHION_CLASSES if source == "fashion_mnist" else tuple(str(i) for i in range(10))
    elif source == "idx":
        train, test = _train_test(load_idx_dir(_path(cfg["path"], base_dir)))
    elif source == "npz":
        train, test = _train_test(load_npz(_path(cfg["path"], base_dir), x_key=cfg["x_key"], y_key=cfg["y_key"]))
    else:
        table = _load_csv(cfg, base_dir)
        train, test = Split(table.x, table.y), None
        class_names, feature_names = table.classes, table.feature_names
    limit = data.get("limit")
    if limit:
        train = Split(train.x[:limit], train.y[:limit])
        if test is not None:
            test = Split(test.x[:limit], test.y[:limit])
    validation = None
    fraction = data.get("validation_split", 0.0)
    if fraction:
        order = np.random.default_rng(seed).permutation(len(train.x))
        n_val = max(1, round(fraction * len(train.x)))
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        validation = Split(train.x[val_idx], train.y[val_idx])
        train = Split(train.x[train_idx], train.y[train_idx])
    shift, scale = _scaling(data.get("scale"), train.x)
    return Arrays(train, validation, test, shift, scale, class_names, feature_names)


def _train_test(splits) -> tuple[Split, Split | None]:
    """The train and (if the files have one) test splits that a datasets loader read."""
    test = Split(splits.x_test, splits.y_test) if splits.x_test is not None else None
    return Split(splits.x_train, splits.y_train), test


def _scaling(value, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) with x_scaled = (x - shift) * scale, per feature for standardize."""
    factor = scale_factor(value)
    if factor is not None:
        return np.zeros((), np.float32), np.asarray(factor, np.float32)
    if value == "standardize":
        xf = x.astype(np.float64)
        mean, std = xf.mean(axis=0), xf.std(axis=0)
        return mean.astype(np.float32), (1.0 / np.where(std > 0, std, 1.0)).astype(np.float32)
    return np.zeros((), np.float32), np.ones((), np.float32)


class BatchOrder:
    """Which examples each step trains on: epoch e uses a permutation of the N examples drawn
    from (seed, e) (or 0..N-1 without shuffling), cut into N // batch_size batches (the
    remainder is left out that epoch). Depends only on the seed and the step number, so a run
    cut into chunks of any size, or resumed at any step, sees the same batches."""

    def __init__(self, n: int, batch_size: int, *, seed: int, shuffle: bool):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.per_epoch = n // batch_size
        self._cache: dict[int, np.ndarray] = {}

    def epoch(self, e: int) -> np.ndarray:
        if e not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            order = np.random.default_rng([self.seed, e]).permutation(self.n) if self.shuffle else np.arange(self.n)
            self._cache[e] = order.astype(np.int32)
        return self._cache[e]

    def indices(self, start: int, length: int) -> np.ndarray:
        """int32 [length, batch_size]: the examples of steps start .. start + length - 1.

        One slice per epoch the steps touch, not one per step: a chunk of a million steps was a
        million Python iterations before its first step."""
        out = np.empty((length, self.batch_size), np.int32)
        done, step, size = 0, start, self.batch_size
        while done < length:
            e, i = divmod(step, self.per_epoch)
            take = min(self.per_epoch - i, length - done)
            out[done : done + take] = self.epoch(e)[i * size : (i + take) * size].reshape(take, size)
            done, step = done + take, step + take
        return out
