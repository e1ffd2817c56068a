"""What the event files hold is what tensorboardX would write, faster: `histogram_proto` builds the
same HistogramProto as tensorboardX's `make_histogram` (30 buckets, as netspec asks), and
`masked_crc32c` (google-crc32c's C code) gives TFRecord's masked CRC-32C as tensorboardX's
pure-Python one does."""

from __future__ import annotations

import numpy as np
import pytest
from tensorboardX.record_writer import masked_crc32c as tensorboardx_crc
from tensorboardX.summary import make_histogram

from netspec.training.summaries import HISTOGRAM_BINS, histogram_proto, histogram_protos, masked_crc32c


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
        assert histogram_proto(values, HISTOGRAM_BINS) == make_histogram(values, HISTOGRAM_BINS), values


def test_a_range_too_narrow_to_cut_is_one_bucket():
    values = np.array([1e300, np.nextafter(1e300, 2e300)])
    histo = histogram_proto(values, HISTOGRAM_BINS)
    assert list(histo.bucket) == [2] and histo.min == 1e300 and histo.num == 2


def test_the_masked_crc_is_tfrecords():
    rng = np.random.default_rng(0)
    for n in [0, 1, 7, 8, 12, 100, 4099]:
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert masked_crc32c(data) == tensorboardx_crc(data)


def test_a_groups_histograms_are_each_members_own():
    """`histogram_protos` makes every row's at once: the same protos as `histogram_proto` of each
    row; None for a row with a NaN or Inf (its member makes that one, noting what it left out)."""
    rng = np.random.default_rng(0)
    for size in [1, 2, 4, 7, 100]:
        for trial in range(30):
            values = rng.standard_normal((16, size)) * rng.choice([1e-3, 1.0, 1e3])
            if trial % 3 == 1:
                values = np.round(values, 1)
            values[3] = values[3, 0]  # all equal
            made = histogram_protos(values, HISTOGRAM_BINS)
            assert made == [histogram_proto(row, HISTOGRAM_BINS) for row in values]
    values = rng.standard_normal((3, 4))
    values[1, 2] = np.nan
    values[2, 0] = np.inf
    made = histogram_protos(values, HISTOGRAM_BINS)
    assert made[0] == histogram_proto(values[0], HISTOGRAM_BINS) and made[1] is None and made[2] is None
