"""What `check` guarantees: the checked Spec and its layers, the types every later stage reads.

Contract. `Spec` is frozen and fully defaulted: `model.defaults` are pushed into the layers,
every default of the schema is filled in, every "name or {type, args}" choice is a mapping with
all its arguments, every integer field an int and every number field a float. No later stage
re-validates, guesses or mutates it; `resolved` is what ran and is what the run directory saves
(`spec.yaml`). The typed attributes (`layers`, `steps`, `precision`, ...) are what the later
stages decide on; a field they read from `resolved` is one the spec states as written.
`freeze` / `plain` turn plain data into the frozen form and back. Pure Python, no jax.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from netspec.data.sources import DataInfo
from netspec.spec.choices import FUSED_ACTIVATION, LOSS_KINDS


class Precision(NamedTuple):
    """`precision` as it runs: the layers' dtype and the loss scale, resolved (Micikevicius et al.
    2018: float16 needs a loss scale, bfloat16 and float32 do not)."""

    compute: str  # float32, bfloat16 or float16: the layers' arithmetic
    dynamic_scale: bool  # a dynamic loss scale (precision.loss_scale: dynamic, or unset with float16)
    static_scale: float  # a fixed loss scale (1.0: none)
    scale_period: int  # with a dynamic scale: steps in a row without overflow before it doubles

    @property
    def loss_scale(self) -> str | float | None:
        """What ran, as a spec would write it: "dynamic", a number, or None (no scaling)."""
        return "dynamic" if self.dynamic_scale else (self.static_scale if self.static_scale != 1.0 else None)


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
    data_info: DataInfo  # of the whole training split as stored
    eval: Mapping[str, Any]  # eval.split resolved: "test", "validation" or None
    base_dir: str  # the spec file's directory; relative data paths start here
    checkpoint: Mapping[str, Any]  # every, keep, best (an eval scalar or None)
    summaries: Mapping[str, Any]
    resolved: Mapping[str, Any]  # the whole spec as it ran (plain data; see `plain`)
    swept: tuple[str, ...] = ()  # a sweep member's: the keys its sweep set (netspec.spec.sweep), shown in HParams

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layers[-1].out_shape

    @property
    def precision(self) -> Precision:
        """`precision` resolved: the layers' dtype and the loss scale as it runs (loss_scale unset
        is dynamic for float16, none otherwise; Keras and PyTorch do the same)."""
        p = self.resolved["precision"]
        dynamic = p["loss_scale"] == "dynamic" or (p["loss_scale"] is None and p["compute"] == "float16")
        static = 1.0 if dynamic or p["loss_scale"] is None else float(p["loss_scale"])
        return Precision(p["compute"], dynamic, static, p["loss_scale_period"])

    @property
    def from_logits(self) -> bool:
        """`loss.from_logits`: the loss takes the logits of a linear output (a regression loss has
        no such field, and takes the output as it is)."""
        return LOSS_KINDS[self.loss["type"]].classification and bool(self.loss["from_logits"])

    @property
    def fused_loss(self) -> bool:
        """True when the output activation is folded into the loss as logits (the stable form)."""
        return FUSED_ACTIVATION.get(self.loss["type"]) == self.output_activation and not self.from_logits


def metric_mode(tag: str) -> str:
    """'min' for losses and errors, 'max' for accuracies: which way is better."""
    return "min" if tag == "loss" or tag.endswith("_error") else "max"


def metric_name(metric: Mapping[str, Any]) -> str:
    """The scalar tag of a metric: `accuracy`, `top_5_accuracy`, ..."""
    return f"top_{metric['k']}_accuracy" if metric["type"] == "top_k_accuracy" else metric["type"]


def freeze(value: Any) -> Any:
    """Plain data (dicts, lists) as read-only mappings and tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def plain(value: Any) -> Any:
    """A frozen spec value back as plain dicts and lists (for YAML, JSON and hparams)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value
