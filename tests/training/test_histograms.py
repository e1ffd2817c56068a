"""What the event files hold is what tensorboardX would write, faster: `histograms` builds
tensorboardX's `make_histogram` HistogramProto (30 buckets, as netspec asks) up to which bucket a
value within float32 rounding of an edge falls in, for every row of a stack at once; and
`masked_crc32c` (google-crc32c's C code) gives TFRecord's masked CRC-32C as tensorboardX's
pure-Python one does."""

from __future__ import annotations

import numpy as np
import pytest
from tensorboardX.record_writer import masked_crc32c as tensorboardx_crc
from tensorboardX.summary import make_histogram

from netspec.training.histograms import BINS, Drawn, histograms, member_histograms, tagged, tensors
from netspec.training.summaries import masked_crc32c


def near_an_edge(values: np.ndarray, limits: list[float]) -> np.ndarray:
    """Which values lie within float32 rounding (relative to the range) of a bucket limit."""
    edges = np.asarray(limits)
    span = max(edges[-1] - edges[0], np.abs(edges).max() * 1e-30)
    return (np.abs(values[:, None] - edges[None, :]) <= 1e-5 * span).any(axis=1)


def assert_like_tensorboardx(values: np.ndarray, proto) -> None:
    """`proto` is make_histogram's of `values` (float64 of float32 numbers), but for the buckets of
    values within float32 rounding of a limit, which may be counted one bucket off."""
    expected = make_histogram(values, BINS)
    assert (proto.min, proto.max, proto.num) == (expected.min, expected.max, expected.num)
    assert proto.sum == pytest.approx(expected.sum, rel=1e-12, abs=1e-300)
    assert proto.sum_squares == pytest.approx(expected.sum_squares, rel=1e-12)
    if values.min() == values.max():  # all equal: the middle bucket, the one whose left limit is the value
        assert list(proto.bucket) == [0, values.size] and proto.bucket_limit[0] == values[0]
        return
    ambiguous = int(near_an_edge(values, list(expected.bucket_limit)).sum())
    if ambiguous == 0:
        assert proto == make_histogram(values, BINS)
    else:
        assert proto.bucket_limit[0] == pytest.approx(expected.bucket_limit[0])
        assert sum(proto.bucket) == values.size
        difference = np.abs(np.subtract(*_aligned(proto, expected))).sum()
        assert difference <= 2 * ambiguous


def _aligned(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Both protos' counts on the union of their limits (each is trimmed to its own non-empty span)."""
    limits = sorted(set(a.bucket_limit) | set(b.bucket_limit))

    def spread(proto):
        counts = dict(zip(proto.bucket_limit, proto.bucket, strict=True))
        return np.array([counts.get(limit, 0) for limit in limits])

    return spread(a), spread(b)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 100, 4096])
@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1.0, 1e3, 1e6])
def test_the_histogram_is_tensorboardxs(size, scale):
    rng = np.random.default_rng([size, int(np.log10(scale)) + 10])
    for trial in range(20):
        values = rng.standard_normal(size) * scale
        if trial % 4 == 1:
            values = np.round(values / scale, 1) * scale  # ties and repeated values
        if trial % 4 == 2:
            values = np.full(size, values[0])  # all equal: np.histogram's range of +-0.5
        if trial % 4 == 3:
            values = np.abs(values) + scale * 10  # away from 0
        values = values.astype(np.float32)  # parameters are float32
        [made] = histograms([values[None]])
        assert not made.dropped
        assert_like_tensorboardx(values.astype(np.float64), made.proto)


def test_values_in_the_middle_of_their_buckets_are_counted_exactly():
    """Values far from every edge: the very proto tensorboardX makes."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        buckets = rng.integers(0, BINS, 200)
        values = np.concatenate([[0.0, 30.0], buckets + 0.5]).astype(np.float32)  # width 1: edges at the integers
        assert histograms([values[None]])[0].proto == make_histogram(values.astype(np.float64), BINS)


def test_every_row_is_its_own_histogram():
    """A stack of members: each row's histogram is the one it has alone."""
    rng = np.random.default_rng(0)
    for size in [1, 2, 4, 7, 100]:
        for trial in range(30):
            values = (rng.standard_normal((16, size)) * rng.choice([1e-3, 1.0, 1e3])).astype(np.float32)
            if trial % 3 == 1:
                values = np.round(values, 1)
            values[3] = values[3, 0]  # all equal
            assert histograms([values]) == [histograms([row[None]])[0] for row in values]


def test_nan_and_inf_are_left_out_and_said():
    values = np.array(
        [[1.0, 2.0, 3.0], [1.0, np.nan, 3.0], [np.inf, 2.0, -np.inf], [np.nan, np.inf, np.nan]], np.float32
    )
    made = histograms([values])
    assert [m.dropped for m in made] == [False, True, True, True]
    assert made[1].proto == histograms([np.array([[1.0, 3.0]], np.float32)])[0].proto
    assert made[2].proto == histograms([np.array([[2.0]], np.float32)])[0].proto
    assert made[3].proto is None  # nothing finite to draw


def test_ranges_float32_cannot_divide():
    """A range too narrow to cut at its magnitude is one bucket; one float32 cannot subtract (it
    overflows) is cut in float64."""
    narrow = np.array([[1e300, np.nextafter(1e300, 2e300)]])
    [made] = histograms([narrow])
    assert list(made.proto.bucket) == [2] and made.proto.min == 1e300 and made.proto.num == 2
    wide = np.array([[-3e38, 0.0, 3e38]], np.float32)
    [made] = histograms([wide])
    assert made.proto.bucket_limit[0] == pytest.approx(-3e38, rel=1e-6) and sum(made.proto.bucket) == 3
    assert not made.dropped
    tiny = np.array([[0.0, 1e-44]], np.float32)  # subnormal: 1 / width overflows float32
    [made] = histograms([tiny])
    assert sum(made.proto.bucket) == 2 and made.proto.max == pytest.approx(1e-44, rel=0.2)


def test_tags_and_member_histograms():
    params = {"d": {"kernel": np.ones((3, 2, 2), np.float32), "bias": np.zeros((3, 2), np.float32)}}
    assert list(tensors(params, {"weights"})) == ["d/kernel"]
    assert list(tensors(params, {"weights", "biases"})) == ["d/kernel", "d/bias"]
    grads = {"d": {"kernel": np.ones((2, 2))}}
    assert list(tensors(params, {"gradients"}, {"d": np.ones(2)}, grads)) == ["d/kernel/gradients"]
    params["d"]["kernel"][1] = np.arange(4).reshape(2, 2)
    made = member_histograms(params, {"weights", "biases"}, 3)
    assert member_histograms(params, {"activations"}, 3) == [Drawn(), Drawn(), Drawn()]
    assert len(made) == 3
    for i, member in enumerate(made):
        [kernel] = histograms([params["d"]["kernel"][i].reshape(1, -1)], tags=["d/kernel"])
        [bias] = histograms([params["d"]["bias"][i][None]], tags=["d/bias"])
        assert member == Drawn(kernel.value + bias.value)  # in the tags' order, as one event holds them
        assert member.histogram("d/bias") == bias.proto and member.histogram("d/other") is None


def test_tensors_of_every_size_in_one_pass_are_each_their_own():
    """`tagged` makes every tensor of every row in one pass: each is the histogram it has alone,
    whatever its neighbours (sizes, scales, a NaN, an empty one, all equal)."""
    rng = np.random.default_rng(2)
    for trial in range(30):
        rows = int(rng.integers(1, 5))
        found = {}
        for t in range(int(rng.integers(1, 7))):
            shape = (rows, *rng.integers(0 if t == 3 else 1, 9, int(rng.integers(1, 3))))
            value = (rng.standard_normal(shape) * 10.0 ** rng.integers(-4, 5)).astype(np.float32)
            if trial % 5 == 1 and value.size:
                value.reshape(-1)[0] = np.nan
            if trial % 5 == 2:
                value[...] = 1.5
            found[f"t{t}"] = value
        made = tagged(found)
        for r in range(rows):
            alone = [histograms([value[r].reshape(1, -1)], tags=[tag])[0] for tag, value in found.items()]
            fields = b"".join(histogram.value for histogram in alone if histogram.value is not None)
            dropped = tuple(tag for tag, histogram in zip(found, alone, strict=True) if histogram.dropped)
            assert made[r] == Drawn(fields, dropped), (trial, r)
    assert tagged({}) == []
    [empty] = tagged({"e": np.zeros((1, 0), np.float32)})
    assert empty == Drawn()


def test_the_masked_crc_is_tfrecords():
    rng = np.random.default_rng(0)
    for n in [0, 1, 7, 8, 12, 100, 4099]:
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert masked_crc32c(data) == tensorboardx_crc(data)


def test_a_histogram_is_the_summary_field_of_its_tag():
    """What `tagged` makes of a row is the Summary fields its event holds: each tag and its
    HistogramProto in the tags' order, byte for byte as protobuf writes
    Summary(value=[Summary.Value(tag, histo), ...]); a row that left out a NaN says so."""
    from tensorboardX.proto.summary_pb2 import Summary

    rng = np.random.default_rng(3)
    found = {"dense/kernel": rng.standard_normal((4, 3, 5)).astype(np.float32), "b": rng.standard_normal((4, 1))}
    found["b"][2, 0] = np.nan  # a row made alone, its finite values none: no histogram
    for r, row in enumerate(tagged(found)):
        drawn = [tag for tag in found if tag != "b" or r != 2]
        assert [value.tag for value in Summary.FromString(row.fields).value] == drawn
        expected = Summary(value=[Summary.Value(tag=tag, histo=row.histogram(tag)) for tag in drawn])
        assert row.fields == expected.SerializeToString()
        assert row.dropped == (("b",) if r == 2 else ())
