"""A summary of a set of labels, from any source: what the label rules need, without the labels.

Contract. `summarize(values, per_example=1, names=None) -> Labels` reduces targets (a flat list
of numbers, such as an inline `y`, or a numpy array of any shape, read through the array's own
methods) to a frozen `Labels`: the count, the minimum and maximum and where they are, the first
non-finite and the first non-whole value, up to three distinct values, and the class names of
text labels. `known(classes, count)` is a named data set's summary from its known facts, with
no file read. `check` makes them for inline data and the named sets, `arrays.describe` for data
in files; the rules that judge a summary against a loss and an output are
`netspec.spec.label_rules`, stated once for every source.

Pure Python: no numpy import here (an array brings its own methods), no jax.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeGuard

if TYPE_CHECKING:  # for the annotations only: no numpy import at run time
    import numpy as np


@dataclass(frozen=True)
class Labels:
    """What the rules need to know of a set of targets, from any source. Indices count values in
    reading order (example i's j-th value is i * per_example + j)."""

    count: int  # values (examples x values per example)
    per_example: int  # values per example: 1 for a class number
    minimum: float
    argmin: int
    maximum: float
    argmax: int
    fraction_at: int | None  # the first value that is not a whole number, or None
    nonfinite_at: int | None  # the first NaN or infinity, or None
    distinct: tuple[float, ...]  # the distinct values, sorted, at most 3 kept (3: "3 or more")
    names: tuple[str, ...] | None = None  # class names, when the labels were text (CSV)
    classes: int | None = None  # the number of classes, when the source says (named data sets, CSV class names)

    def example(self, index: int) -> int:
        return index // self.per_example


def _is_array(values: object) -> TypeGuard[np.ndarray]:
    """A numpy array (or anything with its methods), told by its dtype."""
    return hasattr(values, "dtype")


def summarize(values: Sequence[float] | np.ndarray, per_example: int = 1, names: Sequence[str] | None = None) -> Labels:
    """The `Labels` of `values`: a flat list of numbers, or a numpy array of any shape (flattened;
    its methods are used, so no numpy import here). `per_example` values make one example's target."""
    names = tuple(names) if names is not None else None
    classes = len(names) if names is not None else None
    if _is_array(values):  # a numpy array: vectorised, files may hold millions of labels
        flat = values.reshape(-1)
        if flat.size == 0:
            return Labels(0, per_example, math.nan, 0, math.nan, 0, None, None, (), names, classes)
        as_float = flat.astype("float64")
        finite = as_float == as_float
        finite &= (as_float != math.inf) & (as_float != -math.inf)
        nonfinite_at = None if finite.all() else int((~finite).argmax())
        safe = as_float.copy()
        safe[~finite] = 0.0
        whole = safe == safe.round()
        fraction_at = None if whole.all() else int((~whole).argmax())
        distinct = tuple(_few_distinct(safe))
        return Labels(
            int(flat.size),
            per_example,
            float(safe.min()),
            int(safe.argmin()),
            float(safe.max()),
            int(safe.argmax()),
            fraction_at,
            nonfinite_at,
            distinct,
            names,
            classes,
        )
    floats = [float(v) for v in values]
    if not floats:
        return Labels(0, per_example, math.nan, 0, math.nan, 0, None, None, (), names, classes)
    nonfinite_at = next((i for i, v in enumerate(floats) if not math.isfinite(v)), None)
    safe = [v if math.isfinite(v) else 0.0 for v in floats]
    fraction_at = next((i for i, v in enumerate(safe) if v != round(v)), None)
    low = min(range(len(safe)), key=safe.__getitem__)
    high = max(range(len(safe)), key=safe.__getitem__)
    return Labels(
        len(floats),
        per_example,
        safe[low],
        low,
        safe[high],
        high,
        fraction_at,
        nonfinite_at,
        tuple(sorted(set(safe)))[:3],
        names,
        classes,
    )  # the first 3 suffice: the rules ask "one class?"


def _few_distinct(safe) -> list[float]:
    """Up to 3 distinct values of a large array, without sorting it all: its minimum, its maximum
    and one value strictly between them if there is one."""
    low, high = safe.min(), safe.max()
    middle = safe[(safe > low) & (safe < high)]
    return sorted({float(low), float(high), *([float(middle[0])] if middle.size else [])})


def known(classes: int, count: int) -> Labels:
    """The labels of a named data set, from its known facts: class numbers 0 .. classes - 1."""
    return Labels(
        count,
        1,
        0.0,
        0,
        float(classes - 1),
        0,
        None,
        None,
        tuple(float(c) for c in range(min(classes, 3))),
        None,
        classes,
    )
