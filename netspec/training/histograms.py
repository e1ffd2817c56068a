"""TensorBoard histograms of a run's tensors, for many tensors and many runs at a time.

Contract.

    tensors(params, wanted, activations=None, gradients=None) -> {tag: array}
        the tensors `summaries.histograms` asks for (`wanted`: "weights", "biases",
        "activations", "gradients"), tagged as TensorBoard shows them: `<layer>/<param>`,
        `<layer>/activations`, `<layer>/<param>/gradients`
    tagged({tag: array [rows, ...]}, bins=BINS) -> [Drawn(fields, dropped)], one per row
        a row is one run's: a plain run has one, a sweep group one per member; `fields` its
        histograms' Summary fields joined (in the tags' order), `dropped` the tags that left out
        a NaN or Inf
    histograms([array [rows, n]], bins, tags) -> [Histogram(value, dropped)], one per row of each
    member_histograms(stacked params, wanted, members) -> tagged(tensors(params, wanted))

A histogram is what `tf.summary.histogram` and tensorboardX's `make_histogram(values, bins)` make:
`bins` equal-width buckets over [min, max] (max - 0.5 .. max + 0.5 when every value is equal, as
`np.histogram`, the values then in the middle bucket, the one whose left edge they are), the
maximum in the last bucket, written from the bucket before the first non-empty one (TensorBoard
reads right limits only) to the last non-empty one; its min, max, num, sum and sum_squares. A NaN
or Inf cannot be drawn: such values are left out and the row says so (`dropped`); a row of no
finite value has no histogram (`value` None). A histogram is made as the serialized Summary field
that holds it (`netspec.training.wire`), what the event is built of: a sweep group's rows in one
numpy array when the rows of each tensor write the same buckets and no zero (the usual case,
`wire.histogram_fields`), else, and a plain run's, one row at a time (`wire.histogram_protos`).

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

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from netspec.training import wire

BINS = 30  # as tf.summary.histogram; tensorboardX's default ("tensorflow", 1,548 buckets) costs 20x more

BIAS_NAMES = frozenset({"bias", "beta", "offset"})  # parameters shown as biases; every other one is a weight


class Drawn(NamedTuple):
    """One run's histograms of one step, as its event holds them: their Summary fields joined
    (`Histogram.value` of each tag that has one, in the tags' order) and the tags whose NaN or Inf
    values were left out. What a sweep group makes for each member at once, joined per member so
    that its event is one join more."""

    fields: bytes = b""
    dropped: tuple[str, ...] = ()

    def then(self, other: Drawn) -> Drawn:
        """These histograms and then `other`'s (a member's activations and gradients after its
        parameters', in a plain run's order)."""
        return Drawn(self.fields + other.fields, self.dropped + other.dropped)

    def histogram(self, tag: str) -> Any:
        """The HistogramProto of `tag` read back from `fields` (tensorboardX.proto.summary_pb2),
        or None when it has none."""
        from tensorboardX.proto.summary_pb2 import Summary

        found = [value.histo for value in Summary.FromString(self.fields).value if value.tag == tag]
        return found[0] if found else None


class Histogram(NamedTuple):
    """One row's histogram, serialized as the Summary field that holds it (a Summary.Value of its
    tag and HistogramProto: what an event is built of, `netspec.training.wire`; None when no value
    was finite), and whether NaN or Inf values were left out of it."""

    value: bytes | None  # Summary field 1: Summary.Value{tag, histo: min, max, num, sum, sum_squares, buckets}
    dropped: bool

    @property
    def proto(self) -> Any:
        """The HistogramProto (tensorboardX.proto.summary_pb2), or None."""
        from tensorboardX.proto.summary_pb2 import Summary

        return None if self.value is None else Summary.FromString(self.value).value[0].histo


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


def member_histograms(params: Mapping, wanted, members: int) -> list[Drawn]:
    """For each of `members` members of stacked host parameters ({layer: {name: [members, ...]}},
    a sweep group's), the `Drawn` histograms of the weights and biases `wanted` asks for."""
    return tagged(tensors(params, wanted)) or [Drawn() for _ in range(members)]


def tagged(found: Mapping[str, Any], bins: int = BINS) -> list[Drawn]:
    """For each row, the `Drawn` histograms of `found` ({tag: host array [rows, ...]}: a plain
    run's tensors with rows 1, a sweep group's stacked over its members), all made in one pass over
    every value (see the module docstring)."""
    blocks = [np.asarray(value) for value in found.values()]
    if not blocks:
        return []
    rows = blocks[0].shape[0]
    tags = list(found)
    flat, layout = _flattened([block.reshape(rows, -1) for block in blocks], bins)
    measured = _measured(flat, layout, bins) if layout.live else None
    if (
        rows > 1
        and measured is not None
        and measured.every
        and len(layout.live) == layout.rows
        and measured.stats.all()
    ):
        # a group's usual case: every row cut and none of its five doubles zero; when the rows of
        # each tensor write the same columns, each row's bytes are its tensor's layout, and every
        # row's are made together (`wire.histogram_fields`); one row (a plain run's) costs less
        # joined, as `_made` does, than the template's numpy calls (5 us against 7.6 for 4 tensors)
        begins, ends = measured.begins.reshape(len(tags), rows), measured.ends.reshape(len(tags), rows)
        if (begins == begins[:, :1]).all() and (ends == ends[:, :1]).all():
            columns = list(zip(begins[:, 0].tolist(), ends[:, 0].tolist(), strict=True))
            made = wire.histogram_fields(measured.stats, measured.edges, measured.shown, tags, columns)
            return [Drawn(fields) for fields in made]
    encoded, dropped = _made(flat, layout, measured, bins, tags)
    return [
        Drawn(
            b"".join(value for value in encoded[r::rows] if value is not None),  # row r's: every rows-th from r
            tuple(tag for tag, left_out in zip(tags, dropped[r::rows], strict=True) if left_out),
        )
        for r in range(rows)
    ]


def histograms(blocks: Sequence[np.ndarray], bins: int = BINS, tags: Sequence[str] | None = None) -> list[Histogram]:
    """The histogram of each row of each block (a list of float arrays [rows, n], rows and n
    their own), block after block, each block's rows tagged `tags[block]` (none: untagged); see
    the module docstring."""
    flat, layout = _flattened(blocks, bins)
    measured = _measured(flat, layout, bins) if layout.live else None
    encoded, dropped = _made(flat, layout, measured, bins, tags)
    return [Histogram(value, left_out) for value, left_out in zip(encoded, dropped, strict=True)]


def _flattened(blocks: Sequence[np.ndarray], bins: int) -> tuple[np.ndarray, _Layout]:
    """Every value of `blocks` ([rows, n] each) one row after another, in float64 when every block
    is, else float32; and their `_Layout`."""
    wide = all(block.dtype == np.float64 for block in blocks)
    dtype = np.float64 if wide else np.float32
    layout = _layout(tuple(block.shape for block in blocks), bins)
    flat = np.concatenate([block.astype(dtype, copy=False).reshape(-1) for block in blocks] or [np.zeros(0, dtype)])
    return flat, layout


def _made(
    flat: np.ndarray, layout: _Layout, measured: _Measured | None, bins: int, tags: Sequence[str] | None
) -> tuple[list[bytes | None], list[bool]]:
    """`histograms`' values (each row's tagged Summary field, None where nothing was drawn) and
    whether each row left out a NaN or Inf, of `flat` as `layout` says (`measured` by `_measured`,
    None when no row has a value)."""
    if measured is None:  # an empty tensor has nothing to draw
        return [None] * layout.rows, [False] * layout.rows
    row_tags = _row_tags(layout.shapes, tuple(tags or [""] * len(layout.shapes)))
    encoded_rows = _encoded(measured, flat.dtype.type, [row_tags[r] for r in layout.live])
    if len(layout.live) == layout.rows and None not in encoded_rows:  # every row drawn
        return encoded_rows, [False] * layout.rows
    made: list[bytes | None] = [None] * layout.rows
    dropped = [False] * layout.rows
    for r, start, encoded in zip(layout.live, layout.starts.tolist(), encoded_rows, strict=True):
        if encoded is None:  # a NaN or Inf, or a range float32 cannot divide: this row alone, in float64
            row = flat[start : start + layout.sizes[r]].astype(np.float64)
            finite = np.isfinite(row)
            kept = row if finite.all() else row[finite]
            alone = _layout(((1, kept.size),), bins)
            made[r] = _encoded(_measured(kept, alone, bins), np.float64, [row_tags[r]])[0] if kept.size else None
            dropped[r] = not finite.all()
        else:
            made[r] = encoded
    return made, dropped


@functools.lru_cache(maxsize=16)
def _row_tags(shapes: tuple[tuple[int, ...], ...], tags: tuple[str, ...]) -> list[str]:
    """Each row's tag: `tags[block]` for every row of that block (`shapes`: each block's [rows,
    n]; every chunk's are the same)."""
    return [tag for tag, (rows, _) in zip(tags, shapes, strict=True) for _ in range(rows)]


class _Layout(NamedTuple):
    """Where each row of a list of blocks lies in their values one after another: what a chunk's
    histograms share with the last chunk's (the same shapes), made once (`_layout`)."""

    shapes: tuple[tuple[int, ...], ...]  # each block's [rows, n]
    rows: int  # every row, empty ones too
    sizes: list[int]  # each row's length
    live: list[int]  # the rows that are not empty
    lengths: np.ndarray  # int64 [live]: their lengths
    starts: np.ndarray  # int64 [live]: where each begins
    buckets: np.ndarray  # int32 [values]: the first bucket's index of each value's row (row * bins)
    num: np.ndarray  # float64 [live]: the lengths as HistogramProto's num


@functools.lru_cache(maxsize=16)
def _layout(shapes: tuple[tuple[int, ...], ...], bins: int) -> _Layout:
    """The `_Layout` of blocks of these shapes ([rows, n] each)."""
    sizes = [int(n) for rows, n in shapes for _ in range(rows)]
    live = [r for r, n in enumerate(sizes) if n]
    lengths = np.array([sizes[r] for r in live], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    buckets = np.repeat(np.arange(len(live), dtype=np.int32) * bins, lengths)
    num = lengths.astype(np.float64)
    for shared in (lengths, starts, buckets, num):  # by every chunk's call
        shared.flags.writeable = False
    return _Layout(shapes, len(sizes), sizes, live, lengths, starts, buckets, num)


class _Measured(NamedTuple):
    """The histogram of each live row of a `_Layout`, as numbers (`_measured`)."""

    stats: np.ndarray  # float64 [rows, 5]: min, max, num, sum, sum_squares
    edges: np.ndarray  # float64 [rows, bins + 1]: the bucket limits, one to the left of the first bucket's
    shown: np.ndarray  # float64 [rows, bins + 1]: the counts, an empty one on the left
    begins: np.ndarray  # int [rows]: the first column to write (the empty one before the first non-empty)
    ends: np.ndarray  # int [rows]: one past the last column to write (the last non-empty)
    cut: np.ndarray  # bool [rows]: the range could be divided into the buckets in this dtype
    every: bool  # every row cut


def _measured(flat: np.ndarray, layout: _Layout, bins: int) -> _Measured:
    """The buckets and statistics of each live row of `flat` (the rows one after another, float32
    or float64, as `layout` says); a row with a NaN or Inf, or whose range this dtype cannot divide
    into `bins`, is not `cut` (`_encoded` says what becomes of it)."""
    lengths, starts = layout.lengths, layout.starts
    rows = lengths.size
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
        # a finite width, wide enough at its magnitude, that this dtype can divide by (a NaN or
        # Inf in the row makes the width NaN or Inf)
        cut = np.isfinite(width * bins) & (width > 0) & (first + width > first) & np.isfinite(scale)
        cut &= np.isfinite((hi - lo) * dtype(bins))
        origin = first.astype(dtype)  # at or below every value of its row, as `first` is
        every = bool(cut.all())
        if not every:  # those rows are bucketed as [0, bins] of zeros here, so none spills into another's
            flat = np.where(np.repeat(cut, lengths), flat, dtype(0))
            origin, scale = np.where(cut, origin, dtype(0)), np.where(cut, scale, dtype(1))
        shifted = flat - np.repeat(origin, lengths)
        shifted *= np.repeat(scale, lengths)
    index = shifted.astype(np.int32)  # >= 0: `origin` is at or below every value
    np.minimum(index, bins - 1, out=index)  # the maximum belongs to the last bucket
    index += layout.buckets
    counts = np.bincount(index, minlength=rows * bins).reshape(rows, bins)
    alike = np.flatnonzero(equal & cut)  # all at the middle edge: its right bucket, whatever the rounding
    if alike.size:
        counts[alike] = 0
        counts[alike, bins // 2] = lengths[alike]
    nonempty = counts > 0
    begins = nonempty.argmax(axis=1)
    ends = bins + 1 - nonempty[:, ::-1].argmax(axis=1)  # one past the last limit shown
    # an empty bucket on the left of the first non-empty one (TensorBoard reads right limits)
    shown = np.zeros((rows, bins + 1))
    shown[:, 1:] = counts
    # np.linspace's edges (as np.histogram's), in fewer calls: start + i * step, the last one exact
    if not every:
        first, width, last = np.where(cut, first, 0.0), np.where(cut, width, 1.0), np.where(cut, last, bins)
    edges = first[:, None] + width[:, None] * np.arange(bins + 1)
    edges[:, -1] = last
    stats = np.stack([low, high, layout.num, total, squares], axis=1)
    return _Measured(stats, edges, shown, begins, ends, cut, every)


def _encoded(measured: _Measured, dtype: type, tags: Sequence[str]) -> list:
    """The Summary field (`wire.histogram_value`, tagged `tags[i]`) of the HistogramProto of each
    live row `measured` (in `dtype`, float32 or float64); None for a row with a NaN or Inf, and in
    float32 for one whose range it cannot divide into `bins`. A finite float64 row that cannot be
    divided (too narrow or too wide a range at its magnitude) is one bucket."""
    stats, cut = measured.stats, measured.cut
    made: list = wire.histogram_protos(stats, measured.edges, measured.shown, measured.begins, measured.ends, tags)
    if not measured.every:
        alone = dtype is np.float64  # a row that float64 cannot divide is one bucket; float32 leaves it to float64
        low, high, num = stats[:, 0], stats[:, 1], stats[:, 2]
        drawable = np.isfinite(low) & np.isfinite(high)
        for r in np.flatnonzero(~cut).tolist():
            made[r] = wire.histogram_proto(stats[r], [high[r]], [num[r]], tags[r]) if alone and drawable[r] else None
    return made
