"""Check a loaded spec and produce the `Spec` every later stage reads.

Contract: `check(loaded) -> Spec` or raises `SpecError` listing every problem found, each with
file:line:col, key path, what was expected and what was found. Two passes:

1. the JSON Schema (`netspec.schema.SCHEMA`): types, ranges, names, unknown keys;
2. meaning, only once the schema passes: layer names unique, `inputs` name earlier layers,
   shapes agree through the whole model (the registry's pure-Python shape rules), the data's
   shape fits the model's input, the loss fits the output and the labels, metrics fit the loss;
   and what the spec asks of the machine (`netspec.cost`): at most MAX_LAYERS layers, a plan
   within the summary points, evaluations and checkpoints a run may write, and the memory
   training needs at least within the budget (skipped for a run directory's own record,
   `data_info`, which was admitted where the run started).

After `check` the Spec is frozen and fully defaulted: `model.defaults` are pushed into the
layers, every default from the schema is filled in, every "name or {type, args}" choice is a
mapping with all its arguments. No later stage re-validates, guesses or mutates it; `resolved`
is what ran and is what the run directory saves. No jax here: `validate` must stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping


from netspec.spec.choices import FUSED_ACTIVATION


@dataclass(frozen=True)
class Layer:
    """One layer as it will be compiled."""

    name: str
    type: str
    inputs: tuple[str, ...]  # "input" is the model input
    args: Mapping[str, Any]  # the layer type's fields, defaulted
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]


@dataclass(frozen=True)
class Spec:
    """A checked spec: frozen, fully defaulted, the only thing compile and train read."""

    name: str
    seed: int
    source: str
    data: Mapping[str, Any]
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    loss: Mapping[str, Any]
    output_activation: str  # the activation of the model's output ("linear" if none)
    metrics: tuple[Mapping[str, Any], ...]  # each {type, args}
    optimizer: Mapping[str, Any]
    train: Mapping[str, Any]
    steps: int  # total optimizer steps (from train.steps or train.epochs)
    num_examples: int  # training examples (after the validation split)
    data_info: Any  # netspec.data.DataInfo of the whole training split as stored
    eval: Mapping[str, Any]  # eval.split resolved: "test", "validation" or None
    base_dir: str  # the spec file's directory; relative data paths start here
    checkpoint: Mapping[str, Any]  # every, keep, best (an eval scalar or None)
    summaries: Mapping[str, Any]
    resolved: Mapping[str, Any]  # the whole spec as it ran (plain data; see `plain`)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layers[-1].out_shape

    @property
    def fused_loss(self) -> bool:
        """True when the output activation is folded into the loss as logits (the stable form)."""
        return FUSED_ACTIVATION.get(self.loss["type"]) == self.output_activation and not self.loss.get("from_logits")


def metric_mode(tag: str) -> str:
    """'min' for losses and errors, 'max' for accuracies: which way is better."""
    return "min" if tag == "loss" or tag.endswith("_error") else "max"


def metric_name(metric: Mapping) -> str:
    """The scalar tag of a metric: `accuracy`, `top_5_accuracy`, ..."""
    return f"top_{metric['k']}_accuracy" if metric["type"] == "top_k_accuracy" else metric["type"]


def _freeze(value):
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def plain(value):
    """A frozen spec value back as plain dicts and lists (for YAML, JSON and hparams)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value
