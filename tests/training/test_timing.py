"""Timing: a chunk's seconds as the host sees them, without the host work that is not training."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

import netspec
from netspec.training import callbacks
from netspec.training.callbacks import Timing, TrainingSummaries

SPECS = Path(__file__).resolve().parents[2] / "specs"


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


@pytest.mark.slow
@pytest.mark.parametrize("sweep", [None, "{optimizer.learning_rate: [0.1, 1.0]}"], ids=["plain", "sweep"])
def test_a_training_loop_leaves_the_objects_before_it_out_of_the_collectors_passes(tmp_path, monkeypatch, sweep):
    """While a run's or a sweep group's chunks train, every object that existed before the loop
    (jax's, the compiled programs') is frozen (`gc.freeze`): a full collection in the loop took
    50 ms of a 2-member sweep's 210 ms of training. After the loop the collector has them back."""
    seen = []  # (step, objects frozen) at each training event
    for name, at in (("write", 1), ("write_members", 2)):  # where each takes the step
        real = getattr(TrainingSummaries, name)

        def spy(*args, real=real, at=at, **kwargs):
            seen.append((args[at], gc.get_freeze_count()))
            return real(*args, **kwargs)

        monkeypatch.setattr(TrainingSummaries, name, staticmethod(spy) if name == "write_members" else spy)
    sets = ["train.steps=20", "summaries.every=10"]
    if sweep is None:
        netspec.train(netspec.load_spec(SPECS / "xor_nn.yaml", sets), logdir=tmp_path, quiet=True)
    else:
        netspec.train_sweep(
            netspec.load_sweep(SPECS / "xor_nn.yaml", [f"sweep={sweep}", *sets]), logdir=tmp_path, quiet=True
        )
    in_loop = [frozen for step, frozen in seen if step > 0]  # step 0 is written before the loop or beside it
    assert len(in_loop) == 2 and min(in_loop) > 10_000, seen
    assert gc.get_freeze_count() == 0
