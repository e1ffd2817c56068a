"""Timing: a chunk's seconds as the host sees them, without the host work that is not training."""

from __future__ import annotations

import pytest

from netspec.training import callbacks
from netspec.training.callbacks import Timing


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(callbacks.time, "perf_counter", clock)
    return clock


def test_a_chunk_is_timed_from_its_dispatch_or_the_last_chunk_end(clock):
    timing = Timing(started=90.0)
    assert timing.steps_per_second(dispatched=100.0, length=10) is None  # no time has passed
    clock.now = 102.0
    assert timing.steps_per_second(dispatched=101.0, length=10) == pytest.approx(10 / 1.0)  # from its dispatch
    clock.now = 106.0
    assert timing.steps_per_second(dispatched=103.0, length=10) == pytest.approx(10 / 3.0)
    clock.now = 110.0
    assert timing.steps_per_second(dispatched=105.0, length=20) == pytest.approx(20 / 4.0)  # from the last end


def test_host_work_that_is_not_training_is_left_out_of_its_chunk_and_the_first_step(clock):
    timing = Timing(started=90.0)
    # dispatched at 100; step 0 written beside it from 100 to 103; the chunk read back at 104
    timing.exclude(3.0)
    clock.now = 104.0
    assert timing.steps_per_second(dispatched=100.0, length=10) == pytest.approx(10 / 1.0)
    assert timing.first == pytest.approx(10.0 + 1.0 / 10)
    assert timing.excluded == 3.0
    clock.now = 106.0  # only the chunk it was done beside
    assert timing.steps_per_second(dispatched=104.5, length=10) == pytest.approx(10 / 1.5)
    assert timing.excluded == 3.0
