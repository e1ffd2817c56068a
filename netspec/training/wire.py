"""The protobuf wire format of the event a training chunk writes, encoded without protobuf.

Contract.

    histogram_protos(stats [rows, 5], limits [rows, width], counts [rows, width], begins, ends, tags=None)
        -> [bytes] one serialized HistogramProto a row: min, max, num, sum, sum_squares (`stats`),
           bucket_limit = limits[r, begins[r]:ends[r]], bucket = counts[r, begins[r]:ends[r]];
           with tags, each as the Summary field holding it (`histogram_value(tags[r], proto)`)
    scalar_value(tag, value) -> bytes        a Summary.Value {tag, simple_value} field of a Summary
    scalar_rows(tags, values [rows, tags]) -> [bytes]  each row's scalar_value fields, joined
    histogram_fields(stats, limits, counts, tags, columns) -> [bytes] each member's histograms' Summary
           fields joined, when each tag's rows write the same columns and no zero double (the usual case)
    histogram_value(tag, histogram) -> bytes a Summary.Value {tag, histo} field of a Summary
    event(wall_time, step, values) -> bytes  a serialized Event {wall_time, step, summary {values}}

The bytes are those protobuf's `SerializeToString` gives for the same messages (tensorboardX's
event_pb2 and summary_pb2; tests/training/test_wire.py compares them): fields in number order,
proto3's implicit-presence scalars (HistogramProto's doubles, Event's wall_time and step) left
out when zero, oneof members (simple_value, histo, summary) always written. Wire format:
https://protobuf.dev/programming-guides/encoding/.

Why not protobuf. A sweep group writes one event per member per chunk: 16 members of xor_nn, each
with 4 scalars and 4 histograms, every 100 steps. Built through protobuf's messages (one `add` per
value, the histogram's fields copied in) an event took 11 us, and with the histograms' fields made
as Python lists for it, a 16-member chunk's summaries took ~430 us of host time against ~340 us for
the compiled chunk itself. Here a histogram, and an event, is a join of slices of bytes.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Sequence

import numpy as np

# field keys: (number << 3) | wire type (1: 64-bit, 0: varint, 2: length-delimited, 5: 32-bit)
_DOUBLE_KEYS = (b"\x09", b"\x11", b"\x19", b"\x21", b"\x29")  # HistogramProto fields 1-5
_BUCKET_LIMIT, _BUCKET = 0x32, 0x3A  # HistogramProto fields 6, 7: packed doubles
_VALUE_TAG, _SIMPLE_VALUE, _HISTO = b"\x0a", b"\x15", b"\x2a"  # Summary.Value fields 1, 2, 5
_SUMMARY_VALUE = b"\x0a"  # Summary field 1 (repeated Value)
_WALL_TIME, _STEP, _SUMMARY = b"\x09", b"\x10", b"\x2a"  # Event fields 1, 2, 5
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
_ZERO64 = bytes(8)
_HEAD = struct.Struct("<BdBdBdBdBd")  # HistogramProto's five doubles, each after its key


_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint of `n` (>= 0; a negative int64 as its 64-bit two's complement)."""
    if 0 <= n < 0x80:
        return _ONE_BYTE[n]
    if 0 < n < 0x4000:
        return _two_bytes(n)
    return _varint(n)


@functools.lru_cache(maxsize=4096)
def _two_bytes(n: int) -> bytes:
    """The varint of a length of 128 to 16383 (a message's, remembered: a chunk's are much alike)."""
    return _varint(n)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _delimited(key: bytes, payload: bytes) -> bytes:
    return b"".join((key, varint(len(payload)), payload))


@functools.lru_cache(maxsize=4096)
def _tag_field(tag: str) -> bytes:
    return _delimited(_VALUE_TAG, tag.encode()) if tag else b""  # proto3 leaves an empty string out


@functools.lru_cache(maxsize=4096)
def _scalar_head(tag: str) -> bytes:
    """A scalar Value's bytes up to its float (a float32 is always 4 bytes: the length is known)."""
    body = _tag_field(tag) + _SIMPLE_VALUE
    return _SUMMARY_VALUE + varint(len(body) + 4) + body


def scalar_value(tag: str, value: float) -> bytes:
    """Summary's `value` field holding Summary.Value(tag=tag, simple_value=value): `value` rounded
    to float32 as protobuf does (out of range: +-inf)."""
    try:
        single = _F32.pack(value)
    except OverflowError:  # struct refuses what float32 cannot hold; protobuf's C cast gives inf
        single = _F32.pack(float("inf") if value > 0 else float("-inf"))
    return _scalar_head(tag) + single


@functools.lru_cache(maxsize=4096)
def _histogram_head(tag: str) -> bytes:
    return _tag_field(tag) + _HISTO


def scalar_rows(tags: Sequence[str], values: np.ndarray) -> list[bytes]:
    """For each row of `values` (float64 [rows, len(tags)]), the Summary fields of its scalars, as
    `scalar_value(tag, value)` of each tag in turn gives them joined, made in one numpy pass: a
    scalar's field is its tag's bytes and 4 bytes of float32 (rounded as protobuf does, out of
    range: +-inf), so every row is the same template (`_scalar_template`) with its floats written
    in."""
    rows = values.shape[0]
    if not tags:
        return [b""] * rows
    template, floats = _scalar_template(tuple(tags))
    out = np.tile(template, (rows, 1))
    with np.errstate(over="ignore"):
        singles = np.ascontiguousarray(values, np.float64).astype(np.float32)
    out[:, floats] = singles.view(np.uint8)
    encoded, width = out.tobytes(), template.size
    return [encoded[r * width : (r + 1) * width] for r in range(rows)]


@functools.lru_cache(maxsize=64)
def _scalar_template(tags: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The bytes of `tags`' scalar fields with zeros for their floats (uint8 [width]), and where
    each float's 4 bytes go, tag after tag (int [4 * len(tags)])."""
    heads = [_scalar_head(tag) for tag in tags]
    template = np.frombuffer(b"".join(head + bytes(4) for head in heads), np.uint8)
    ends = np.cumsum([len(head) + 4 for head in heads], dtype=np.int64)
    floats = (ends[:, None] - 4 + np.arange(4)).reshape(-1)
    template.flags.writeable = False
    floats.flags.writeable = False
    return template, floats


def histogram_value(tag: str, histogram: bytes) -> bytes:
    """Summary's `value` field holding Summary.Value(tag=tag, histo=...), `histogram` a serialized
    HistogramProto (`histogram_protos`)."""
    head, size = _histogram_head(tag), varint(len(histogram))
    return b"".join((_SUMMARY_VALUE, varint(len(head) + len(size) + len(histogram)), head, size, histogram))


def event(wall_time: float, step: int, values: Iterable[bytes]) -> bytes:
    """A serialized Event(wall_time, step, summary=Summary(value=...)) of `values`, each one
    Summary field as `scalar_value` and `histogram_value` make them."""
    summary = b"".join(values)
    stamp = _F64.pack(wall_time)
    return b"".join(
        (
            _WALL_TIME + stamp if stamp != _ZERO64 else b"",
            _STEP + varint(step) if step else b"",
            _SUMMARY,
            varint(len(summary)),
            summary,
        )
    )


@functools.lru_cache(maxsize=256)
def _packed_keys(count: int) -> tuple[bytes, bytes]:
    """The key and length of bucket_limit and of bucket when each holds `count` doubles."""
    length = varint(8 * count)
    return bytes((_BUCKET_LIMIT,)) + length, bytes((_BUCKET,)) + length


def histogram_protos(
    stats: np.ndarray,
    limits: np.ndarray,
    counts: np.ndarray,
    begins: Sequence[int] | np.ndarray,
    ends: Sequence[int] | np.ndarray,
    tags: Sequence[str] | None = None,
) -> list[bytes]:
    """Serialized HistogramProtos, one per row: `stats` float64 [rows, 5] (min, max, num, sum,
    sum_squares), `limits` and `counts` float64 [rows, width] of which row r writes the columns
    begins[r]:ends[r] (at least one) as bucket_limit and bucket. With `tags` (one a row), each row
    is made as the Summary field that holds it, `histogram_value(tags[r], proto)`.

    A row is a join of six pieces: the bytes before its doubles (its tag, the lengths, remembered
    by `_histogram_prefix`: a row's lengths follow from its tag, how many of its five doubles are
    not zero and how many buckets it writes), the doubles packed, and the keyed slices of the
    limits' and counts' bytes. 64 rows (a 16-member group's 4 tensors) in ~35 us, where one numpy
    gather of every byte took 90 us."""
    limits, counts = (np.ascontiguousarray(a, np.float64) for a in (limits, counts))
    width = limits.shape[1]
    limit_bytes, count_bytes = limits.tobytes(), counts.tobytes()
    rows_stats = np.asarray(stats, np.float64).tolist()
    heads = [b""] * len(rows_stats) if tags is None else [_histogram_head(tag) for tag in tags]
    tagged = tags is not None
    out = []
    for r, (row, begin, end, head) in enumerate(
        zip(rows_stats, np.asarray(begins).tolist(), np.asarray(ends).tolist(), heads, strict=True)
    ):
        if 0.0 in row:  # proto3 leaves a field out when its bits are all zero (-0.0 is written)
            fields = b"".join(
                key + packed for key, packed in zip(_DOUBLE_KEYS, map(_F64.pack, row), strict=True) if packed != _ZERO64
            )
        else:
            fields = _HEAD.pack(0x09, row[0], 0x11, row[1], 0x19, row[2], 0x21, row[3], 0x29, row[4])
        prefix, limit_key, count_key = _histogram_prefix(head, tagged, len(fields), end - begin)
        first, last = 8 * (r * width + begin), 8 * (r * width + end)
        out.append(b"".join((prefix, fields, limit_key, limit_bytes[first:last], count_key, count_bytes[first:last])))
    return out


@functools.lru_cache(maxsize=4096)
def _histogram_prefix(head: bytes, tagged: bool, fields: int, count: int) -> tuple[bytes, bytes, bytes]:
    """What comes before a histogram's doubles (`fields` bytes of them) and the keys of its
    bucket_limit and bucket (`count` doubles each): with `tagged`, the Summary field's key and
    length, `head` (its tag and histo key) and the HistogramProto's length; else nothing."""
    limit_key, count_key = _packed_keys(count)
    if not tagged:
        return b"", limit_key, count_key
    size = fields + len(limit_key) + len(count_key) + 16 * count
    proto_size = varint(size)
    prefix = b"".join((_SUMMARY_VALUE, varint(len(head) + len(proto_size) + size), head, proto_size))
    return prefix, limit_key, count_key


def histogram_fields(
    stats: np.ndarray, limits: np.ndarray, counts: np.ndarray, tags: Sequence[str], columns: Sequence[tuple[int, int]]
) -> list[bytes]:
    """Each member's histograms as the Summary fields its event holds, one tag after another:
    what `histogram_protos` makes of rows none of whose five doubles (`stats` float64 [rows, 5])
    is zero and that write columns begin:end of `limits` and `counts` (float64 [rows, width]),
    `columns[t]` for every row of tag t. The rows are `len(tags)` blocks of one row a member
    (block t is tag t's, its row m member m's). Such rows are one layout's bytes a tag, so every
    member's are made in one numpy array (`_fields_layout`'s, the numbers written in): a 16-member
    group's 64 histograms in ~14 us, where a join a row took 48 us; a plain run's 4 in ~7 us
    against 5."""
    blocks = len(tags)
    members = stats.shape[0] // blocks
    template, doubles, limit_at, count_at = _fields_layout(tuple(tags), tuple(columns))
    out = np.tile(template, (members, 1))
    # [blocks * members, 5] -> [members, blocks * 5]: a member's doubles, tag after tag
    by_member = np.ascontiguousarray(np.asarray(stats, np.float64).reshape(blocks, members, 5).transpose(1, 0, 2))
    out[:, doubles] = by_member.view(np.uint8).reshape(members, -1)
    width = limits.shape[1]
    limit_bytes = np.ascontiguousarray(limits, np.float64).view(np.uint8).reshape(blocks, members, 8 * width)
    count_bytes = np.ascontiguousarray(counts, np.float64).view(np.uint8).reshape(blocks, members, 8 * width)
    for t, (begin, end) in enumerate(columns):
        size = 8 * (end - begin)
        out[:, limit_at[t] : limit_at[t] + size] = limit_bytes[t, :, 8 * begin : 8 * end]
        out[:, count_at[t] : count_at[t] + size] = count_bytes[t, :, 8 * begin : 8 * end]
    encoded, size = out.tobytes(), template.size
    return [encoded[m * size : (m + 1) * size] for m in range(members)]


@functools.lru_cache(maxsize=64)
def _fields_layout(
    tags: tuple[str, ...], columns: tuple[tuple[int, int], ...]
) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """`histogram_fields`' bytes of one member with zeros for its numbers (uint8 [size]), where its
    doubles go (the 8 bytes of each of the five of each tag in turn: int [40 * len(tags)]), and
    where each tag's bucket limits and counts begin."""
    pieces: list[bytes] = []
    doubles: list[int] = []
    limit_at: list[int] = []
    count_at: list[int] = []
    at = 0
    fields = _HEAD.pack(0x09, 0, 0x11, 0, 0x19, 0, 0x21, 0, 0x29, 0)  # each double after its one-byte key
    for tag, (begin, end) in zip(tags, columns, strict=True):
        prefix, limit_key, count_key = _histogram_prefix(_histogram_head(tag), True, len(fields), end - begin)
        size = len(fields) + len(limit_key) + len(count_key) + 16 * (end - begin)
        at += len(prefix)
        doubles += [at + 9 * k + 1 + i for k in range(5) for i in range(8)]
        limit_at.append(at + len(fields) + len(limit_key))
        count_at.append(limit_at[-1] + 8 * (end - begin) + len(count_key))
        pieces += [prefix, fields, limit_key, bytes(8 * (end - begin)), count_key, bytes(8 * (end - begin))]
        at += size
    template = np.frombuffer(b"".join(pieces), np.uint8)
    index = np.array(doubles, np.int64)
    index.flags.writeable = False
    return template, index, limit_at, count_at


def histogram_proto(
    stats: Sequence[float], limits: Sequence[float], counts: Sequence[float], tag: str | None = None
) -> bytes:
    """One serialized HistogramProto (`histogram_protos` of one row, every column written; with
    `tag`, its Summary field)."""
    tags = None if tag is None else [tag]
    return histogram_protos(np.asarray([stats]), np.asarray([limits]), np.asarray([counts]), [0], [len(limits)], tags)[
        0
    ]
