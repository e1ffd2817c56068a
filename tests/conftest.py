"""Fixtures and helpers every test module may use (pytest loads this file first)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import settings

from netspec.cli import main

# Hypothesis explores new inputs on every local run (an unseeded run found a position bug in
# load.parse); in CI it is derandomized, so a submission passes or fails on its own merits, and a
# failure prints the example's blob to reproduce it. HYPOTHESIS_PROFILE picks either anywhere.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "explore"))

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

XOR = """\
name: xor
seed: 0
data:
  inline:
    x: [[0, 0], [0, 1], [1, 0], [1, 1]]
    y: [[0], [1], [1], [0]]
model:
  input: [2]
  defaults: {activation: sigmoid, kernel_init: random_normal, bias_init: random_normal}
  layers:
    - {name: layer1, type: dense, units: 2}
    - {name: hypothesis, type: dense, units: 1}
loss: binary_crossentropy
metrics: [accuracy]
optimizer: {type: sgd, learning_rate: 0.1}
train: {steps: 20, batch_size: 4}
summaries: {every: 10, graph: false}
"""


@dataclass
class Outcome:
    """A finished `netspec` command: its exit code and everything it printed (stdout + stderr)."""

    exit_code: int
    output: str

    def assert_clean_failure(self, *words: str) -> None:
        """Exit 1, no traceback, and every one of `words` in the output."""
        assert self.exit_code == 1, self.output
        assert "Traceback" not in self.output and "unexpectedly" not in self.output, self.output
        for word in words:
            assert word in self.output, (word, self.output)


def cli(*args: str, env: dict | None = None) -> Outcome:
    """Run `netspec ARGS` in this process (click's runner) and return what it did."""
    result = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=True)
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        output += "".join(traceback.format_exception(result.exception))
    return Outcome(result.exit_code, output)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(autouse=True, scope="session")
def _jax_cache_in_a_temporary_directory(tmp_path_factory):
    """Tests never write JAX's compilation cache into the user's home."""
    if "NETSPEC_JAX_CACHE" not in os.environ:
        os.environ["NETSPEC_JAX_CACHE"] = str(tmp_path_factory.mktemp("jax-cache"))
    yield
