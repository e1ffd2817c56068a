"""End to end: the summary's parameter counts against what training really keeps, and the summary a
run writes (result.json's `summary`, TensorBoard text `model_summary`).

Every shipped spec trains two steps through the real CLI; its last checkpoint's `params` leaves,
as safetensors stores them, hold exactly the elements `netspec summary` counts, layer by layer.
The MNIST specs are not reachable here, so they train on Fashion-MNIST (the same shapes: their
data section replaced); the Fashion-MNIST specs take the first 500 examples (data.limit)."""

from __future__ import annotations

import json
import math
import re

import pytest
from support import FASHION, SHIPPED, accumulator, result_of, run_spec
from tensorboard.util import tensor_util

from netspec.spec.summary import as_json, render, summarize
from netspec.spec.sweep import load_checked

pytestmark = pytest.mark.slow

FASHION_DATA = '{"fashion_mnist": {}, "scale": "1/255", "limit": 500}'


def two_steps(path) -> list[str]:
    """The --set arguments that make a shipped spec a two-step run on data that is here."""
    sets = ["train.steps=2"] + (["train.epochs=null"] if "epochs:" in path.read_text() else [])
    if "mnist" in path.stem:
        sets.append(f"data={FASHION_DATA}")
    return sets


def params_in(checkpoint) -> dict[str, int]:
    """{layer: elements} of the `params` leaves of a safetensors checkpoint (keys `.params['layer']['kernel']`)."""
    from safetensors.numpy import load_file

    counts: dict[str, int] = {}
    for key, array in load_file(str(checkpoint)).items():
        found = re.fullmatch(r"\.params\['([^']+)'\]\['[^']+'\]", key)
        if found:
            counts[found[1]] = counts.get(found[1], 0) + math.prod(array.shape)
    return counts


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_parameter_counts_equal_the_trained_checkpoint(path, tmp_path):
    if "mnist" in path.stem and not FASHION.is_dir():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION}")
    sets = two_steps(path)
    run_dir = run_spec(path.stem, tmp_path, *(arg for s in sets for arg in ("--set", s)))
    (checkpoint,) = sorted((run_dir / "checkpoints").glob("step-*.safetensors"))[-1:]
    spec = load_checked(path, sets)
    summary = summarize(spec)
    assert params_in(checkpoint) == {row.name: row.params for row in summary.rows if row.params}
    assert sum(params_in(checkpoint).values()) == summary.totals.params
    # the run's own summary: its convolutions counted as they ran (result.json's `ran`)
    result = result_of(run_dir)
    ran = summarize(spec, result["ran"]["conv"] or {})
    assert result["summary"] == json.loads(json.dumps(as_json(ran)))
    if spec.summaries["text"]:  # the same table as Markdown, in the Text tab, at step 0
        (event,) = accumulator(run_dir).Tensors("model_summary")
        assert event.step == 0
        assert tensor_util.make_ndarray(event.tensor_proto).item().decode() == render([ran], "markdown")
