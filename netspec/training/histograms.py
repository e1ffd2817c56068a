"""TensorBoard histograms of a run's tensors, for many tensors and many runs at a time.

Contract.

    tensors(params, wanted, activations=None, gradients=None) -> {tag: array}
        the tensors `summaries.histograms` asks for (`wanted`: "weights", "biases",
        "activations", "gradients"), tagged as TensorBoard shows them: `<layer>/<param>`,
        `<layer>/activations`, `<layer>/<param>/gradients`
    tagged({tag: array [rows, ...]}, bins=BINS) -> [{tag: Histogram(fields, dropped)}], one per row
        a row is one run's: a plain run has one, a sweep group one per member
    member_histograms(stacked params, wanted, members) -> tagged(tensors(params, wanted))

A histogram is what `tf.summary.histogram` and tensorboardX's `make_histogram(values, bins)` make:
`bins` equal-width buckets over [min, max] (max - 0.5 .. max + 0.5 when every value is equal, as
`np.histogram`), the maximum in the last bucket, written from the bucket before the first
non-empty one (TensorBoard reads right limits only) to the last non-empty one; its min, max, num,
sum and sum_squares. A NaN or Inf cannot be drawn: such values are left out and the row says so
(`dropped`); a row of no finite value has no proto.

Why not tensorboardX's function. It cost 37 us a tensor, and a sweep of 16 members writes 64
histograms a chunk; over fashion_mlp's 8 members' parameters (2.2 M values) the float64 numpy
that reproduced it to the bit took 33 ms a chunk, on the cores the next chunk trains on. Here all
the rows of all the tensors are one pass of float32 numpy, a fixed number of numpy calls however
many tensors and members there are: the bucket of a value is `floor((value - min) / width)` in
float32 arithmetic, so a value within float32 rounding of a bucket's edge may be counted in the
bucket beside it, which no chart shows; sum and sum_squares are accumulated in float64. A row
that holds a NaN or Inf, or whose range float32 cannot divide, is made alone, of its finite
values, in float64.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

BINS = 30  # as tf.summary.histogram; tensorboardX's default ("tensorflow", 1,548 buckets) costs 20x more

BIAS_NAMES = frozenset({"bias", "beta", "offset"})  # parameters shown as biases; every other one is a weight


class Histogram(NamedTuple):
    """One row's histogram: the fields of its HistogramProto (None when no value was finite) and
    whether NaN or Inf values were left out of it. The fields, not the message: an event builds
    its own HistogramProto from them in place, in less time than it copies one in."""

    fields: dict[str, Any] | None  # min, max, num, sum, sum_squares, bucket_limit, bucket
    dropped: bool

    @property
    def proto(self) -> Any:
        """The HistogramProto (tensorboardX.proto.summary_pb2), or None."""
        from tensorboardX.proto.summary_pb2 import HistogramProto

        return None if self.fields is None else HistogramProto(**self.fields)


def tensors(
    params: Mapping | None, wanted, activations: Mapping | None = None, gradients: Mapping | None = None
) -> dict:
    """{tag: array} of the tensors `wanted` (a collection of "weights", "biases", "activations",
    "gradients") asks for: `params` and `gradients` are {layer: {name: array}}, `activations`
    {layer: array}, each None when not at hand; the arrays as given (host or device, stacked or not)."""
    found: dict[str, Any] = {}
    for layer, arrays in (params or {}).items():
        for name, value in arrays.items():
            if ("biases" if name in BIAS_NAMES else "weights") in wanted:
                found[f"{layer}/{name}"] = value
    if activations and "activations" in wanted:
        found.update({f"{layer}/activations": value for layer, value in activations.items()})
    if gradients and "gradients" in wanted:
        found.update(
            {
                f"{layer}/{name}/gradients": value
                for layer, arrays in gradients.items()
                for name, value in arrays.items()
            }
        )
    return found


def member_histograms(params: Mapping, wanted, members: int) -> list[dict[str, Histogram]]:
    """For each of `members` members of stacked host parameters ({layer: {name: [members, ...]}},
    a sweep group's), {tag: Histogram} of the weights and biases `wanted` asks for."""
    return tagged(tensors(params, wanted)) or [{} for _ in range(members)]


def tagged(found: Mapping[str, Any], bins: int = BINS) -> list[dict[str, Histogram]]:
    """For each row, {tag: Histogram} of `found` ({tag: host array [rows, ...]}: a plain run's
    tensors with rows 1, a sweep group's stacked over its members), all made in one pass over
    every value (see the module docstring)."""
    blocks = [np.asarray(value) for value in found.values()]
    if not blocks:
        return []
    rows = blocks[0].shape[0]
    made = histograms([block.reshape(rows, -1) for block in blocks], bins)
    tags = list(found)
    return [{tag: made[t * rows + r] for t, tag in enumerate(tags)} for r in range(rows)]


def histograms(blocks: Sequence[np.ndarray], bins: int = BINS) -> list[Histogram]:
    """The histogram of each row of each block (a list of float arrays [rows, n], rows and n
    their own), block after block; see the module docstring."""
    wide = all(block.dtype == np.float64 for block in blocks)
    dtype = np.float64 if wide else np.float32
    lengths = np.repeat([block.shape[1] for block in blocks], [block.shape[0] for block in blocks])
    if not lengths.size:
        return []
    flat = np.concatenate([block.astype(dtype, copy=False).reshape(-1) for block in blocks])
    made = [Histogram(None, False)] * lengths.size  # an empty tensor has nothing to draw
    live = np.flatnonzero(lengths)
    found = _fields(flat, lengths[live], bins) if live.size else []
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for r, fields in zip(live.tolist(), found, strict=True):
        if fields is None:  # a NaN or Inf, or a range float32 cannot divide: this row alone, in float64
            row = flat[starts[r] : starts[r + 1]].astype(np.float64)
            finite = np.isfinite(row)
            kept = row if finite.all() else row[finite]
            made[r] = Histogram(_fields(kept, np.array([kept.size]), bins)[0] if kept.size else None, not finite.all())
        else:
            made[r] = Histogram(fields, False)
    return made


def _fields(flat: np.ndarray, lengths: np.ndarray, bins: int) -> list:
    """The HistogramProto fields of each row of `flat` (the rows one after another, float32 or float64;
    `lengths` [rows] > 0); None for a row with a NaN or Inf, and in float32 for one whose range it
    cannot divide into `bins`. A finite float64 row that cannot be divided (too narrow or too wide
    a range at its magnitude) is one bucket."""
    rows = lengths.size
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    dtype = flat.dtype.type
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # what cannot be cut is left out below
        lo, hi = np.minimum.reduceat(flat, starts), np.maximum.reduceat(flat, starts)
        total = np.add.reduceat(flat, starts, dtype=np.float64)
        squares = np.add.reduceat(np.square(flat, dtype=np.float64), starts)  # overflows to inf as it would
        low, high = lo.astype(np.float64), hi.astype(np.float64)
        equal = low == high
        first, last = np.where(equal, low - 0.5, low), np.where(equal, high + 0.5, high)
        width = (last - first) / bins
        scale = (1 / width).astype(dtype)
        finite = np.isfinite(low) & np.isfinite(high)
        cut = finite & (width > 0) & (first + width > first) & np.isfinite(width * bins)
        cut &= np.isfinite(scale) & np.isfinite((hi - lo) * dtype(bins))  # and in this dtype's arithmetic
        origin = first.astype(dtype)  # at or below every value of its row, as `first` is
        if not cut.all():  # those rows are bucketed as [0, bins] of zeros here, so none spills into another's
            flat = np.where(np.repeat(cut, lengths), flat, dtype(0))
            origin, scale = np.where(cut, origin, dtype(0)), np.where(cut, scale, dtype(1))
        shifted = flat - np.repeat(origin, lengths)
        shifted *= np.repeat(scale, lengths)
    index = shifted.astype(np.int32)  # >= 0: `origin` is at or below every value
    np.minimum(index, bins - 1, out=index)  # the maximum belongs to the last bucket
    index += np.repeat(np.arange(rows, dtype=np.int32) * bins, lengths)
    counts = np.bincount(index, minlength=rows * bins).reshape(rows, bins)
    for alike in np.flatnonzero(
        equal & cut
    ):  # every value is at the middle edge: its right bucket, whatever the rounding
        counts[alike] = 0
        counts[alike, bins // 2] = lengths[alike]
    nonempty = counts > 0
    begins = nonempty.argmax(axis=1).tolist()
    ends = (bins - nonempty[:, ::-1].argmax(axis=1)).tolist()
    # an empty bucket on the left of the first non-empty one (TensorBoard reads right limits); as
    # floats, the proto's type: protobuf takes a list of Python ints 2.5x slower
    shown = np.concatenate([np.zeros((rows, 1)), counts], axis=1).tolist()
    # np.linspace's edges (as np.histogram's), in fewer calls: start + i * step, the last one exact
    edges = np.where(cut, first, 0.0)[:, None] + np.where(cut, width, 1.0)[:, None] * np.arange(bins + 1)
    edges[:, -1] = np.where(cut, last, bins)
    limits = edges.tolist()
    alone = dtype is np.float64  # a row that float64 cannot divide is one bucket; float32 leaves it to float64
    made: list = []
    columns = (lengths.astype(np.float64), lo, hi, total, squares, cut, finite)
    for r, (n, lowest, highest, summed, squared, divided, drawable) in enumerate(
        zip(*(column.tolist() for column in columns), strict=True)
    ):
        if not (divided or (alone and drawable)):
            made.append(None)
            continue
        start, end = (begins[r], ends[r]) if divided else (0, 0)
        made.append(
            {
                "min": lowest,
                "max": highest,
                "num": n,
                "sum": summed,
                "sum_squares": squared,
                "bucket_limit": limits[r][start : end + 1] if divided else [highest],
                "bucket": shown[r][start : end + 1] if divided else [n],
            }
        )
    return made
