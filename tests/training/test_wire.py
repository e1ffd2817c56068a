"""The hand-encoded events (`netspec.training.wire`) are byte for byte what protobuf serializes for
the same messages: any difference (a field out of order, a zero written that proto3 leaves out,
a length's varint) would be a file TensorBoard reads differently or not at all."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import HistogramProto, Summary

from netspec.training import wire


def proto_of(stats, limits, counts) -> HistogramProto:
    lowest, highest, num, total, squares = (float(v) for v in stats)
    return HistogramProto(
        min=lowest,
        max=highest,
        num=num,
        sum=total,
        sum_squares=squares,
        bucket_limit=[float(v) for v in limits],
        bucket=[float(v) for v in counts],
    )


@pytest.mark.parametrize("width", [1, 2, 16, 17, 31, 3000])  # 16+ doubles: a two-byte length; 3000: three
def test_histograms_are_protobufs_bytes(width):
    rng = np.random.default_rng(width)
    rows = 40
    stats = rng.standard_normal((rows, 5)) * 10.0 ** rng.integers(-30, 30, (rows, 5))
    stats[rng.random((rows, 5)) < 0.3] = 0.0  # proto3 leaves these out
    stats[0] = 0.0  # every field left out
    stats[1, 0] = -0.0  # not a zero to proto3: its bits are not all zero
    stats[2] = [math.inf, -math.inf, math.nan, 1.0, 2.0]
    limits = np.sort(rng.standard_normal((rows, width)), axis=1)
    counts = rng.integers(0, 1000, (rows, width)).astype(np.float64)
    counts[3] = 0.0
    begins = rng.integers(0, width, rows)
    ends = begins + 1 + rng.integers(0, width - begins)
    begins[4], ends[4] = 0, width
    made = wire.histogram_protos(stats, limits, counts, begins, ends)
    assert len(made) == rows
    for r in range(rows):
        b, e = begins[r], ends[r]
        expected = proto_of(stats[r], limits[r, b:e], counts[r, b:e])
        assert made[r] == expected.SerializeToString(), r
    assert (
        wire.histogram_proto(stats[5], limits[5], counts[5])
        == proto_of(stats[5], limits[5], counts[5]).SerializeToString()
    )
    tags = [f"layer{r % 3}/kernel" if r % 5 else "" for r in range(rows)]  # "" : proto3 leaves the tag out
    fields = wire.histogram_protos(stats, limits, counts, begins, ends, tags)
    for r in range(rows):
        b, e = begins[r], ends[r]
        value = Summary.Value(tag=tags[r], histo=proto_of(stats[r], limits[r, b:e], counts[r, b:e]))
        assert fields[r] == Summary(value=[value]).SerializeToString(), r


@pytest.mark.parametrize("members", [1, 2, 16])
@pytest.mark.parametrize("width", [1, 2, 16, 17, 31, 3000])
def test_a_groups_histograms_made_together_are_each_rows_joined(members, width):
    """`histogram_fields` (every member's histograms in one array, when each tag's rows write the
    same columns and no double is zero) gives each member what `histogram_protos` gives its rows,
    tag after tag, joined: protobuf's bytes."""
    rng = np.random.default_rng(width * members)
    tags = ["dense/kernel", "", "x" * 200, "dense/bias"]  # "": proto3 leaves the tag out; 200: a two-byte length
    rows = len(tags) * members
    stats = rng.standard_normal((rows, 5)) * 10.0 ** rng.integers(-30, 30, (rows, 5))
    stats[0, 0] = -0.0  # not a zero to proto3: written
    limits = np.sort(rng.standard_normal((rows, width)), axis=1)
    counts = rng.integers(0, 1000, (rows, width)).astype(np.float64)
    columns = []
    for _ in tags:
        begin = int(rng.integers(0, width))
        columns.append((begin, begin + 1 + int(rng.integers(0, width - begin))))
    columns[0] = (0, width)
    begins = np.repeat([b for b, _ in columns], members)
    ends = np.repeat([e for _, e in columns], members)
    made = wire.histogram_fields(stats, limits, counts, tags, columns)
    each = wire.histogram_protos(stats, limits, counts, begins, ends, np.repeat(tags, members).tolist())
    assert made == [b"".join(each[m::members]) for m in range(members)]
    summary = Summary.FromString(made[-1])
    assert [value.tag for value in summary.value] == tags
    assert list(summary.value[3].histo.bucket) == counts[-1, columns[3][0] : columns[3][1]].tolist()


@pytest.mark.parametrize("step", [0, 1, 127, 128, 16383, 16384, 2**31 + 5, 2**62])
@pytest.mark.parametrize("wall_time", [0.0, 1764547200.123456, -0.0])
def test_events_are_protobufs_bytes(step, wall_time):
    rng = np.random.default_rng(step % 1000)
    stats, limits, counts = rng.standard_normal(5), np.sort(rng.standard_normal(31)), rng.integers(0, 9, 31) * 1.0
    [histogram] = wire.histogram_protos(stats[None], limits[None], counts[None], [0], [31])
    scalars = {"loss": 0.25, "accuracy": 0.0, "overflow": 1e300, "underflow": -1e300, "nan": math.nan, "x" * 300: 1.5}
    tags = {"layer/kernel": histogram, "a" * 200 + "/bias": histogram}
    values = [wire.scalar_value(tag, value) for tag, value in scalars.items()]
    values += [wire.histogram_value(tag, encoded) for tag, encoded in tags.items()]
    expected = Event(
        wall_time=wall_time,
        step=step,
        summary=Summary(
            value=[Summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()]
            + [Summary.Value(tag=tag, histo=HistogramProto.FromString(encoded)) for tag, encoded in tags.items()]
        ),
    )
    assert wire.event(wall_time, step, values) == expected.SerializeToString()


def test_an_event_larger_than_two_length_bytes():
    """A summary of more than 16383 bytes: a three-byte length."""
    values = [wire.scalar_value(f"tag{i:05d}", float(i)) for i in range(2000)]
    expected = Event(
        wall_time=1.5,
        step=3,
        summary=Summary(value=[Summary.Value(tag=f"tag{i:05d}", simple_value=float(i)) for i in range(2000)]),
    )
    encoded = wire.event(1.5, 3, values)
    assert len(encoded) > 16384 and encoded == expected.SerializeToString()


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 16383, 16384, 2**35, 2**63 - 1, -1])
def test_varints(n):
    expected = Event(step=n).SerializeToString()[1:] if n else b"\x00"  # field 2's key, then the varint
    assert wire.varint(n) == expected


def test_scalar_rows_are_each_rows_scalar_values_joined():
    """A group's scalars made in one numpy pass: each row is `scalar_value` of each tag, joined
    (float32 rounding, overflow to inf and NaN as protobuf has them)."""
    rng = np.random.default_rng(5)
    tags = ["loss", "accuracy", "x" * 200, "learning_rate"]
    values = rng.standard_normal((7, len(tags))) * 10.0 ** rng.integers(-40, 40, (7, len(tags)))
    values[0] = [math.nan, math.inf, -1e300, 0.0]
    rows = wire.scalar_rows(tags, values)
    assert rows == [b"".join(wire.scalar_value(t, float(v)) for t, v in zip(tags, row, strict=True)) for row in values]
    assert wire.scalar_rows([], np.zeros((3, 0))) == [b"", b"", b""]  # summaries.scalars: []
    summary = Summary.FromString(rows[1])
    assert [v.tag for v in summary.value] == tags
    assert [v.simple_value for v in summary.value] == pytest.approx(values[1].astype(np.float32).tolist())
