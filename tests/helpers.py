"""Helpers the test modules share: reading a run directory back as TensorBoard and result.json show it."""

from __future__ import annotations

import json
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

EVERYTHING = {"scalars": 0, "histograms": 0, "tensors": 0, "images": 0}  # keep every event, not a sample


def accumulator(path: Path) -> EventAccumulator:
    """TensorBoard's own reader over the event files under `path`, every event loaded."""
    ea = EventAccumulator(str(path), size_guidance=EVERYTHING)
    ea.Reload()
    return ea


def result_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())
