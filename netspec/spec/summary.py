"""A model's cost before it trains: the table `netspec summary` prints and every run keeps.

Contract. Pure Python (no jax, no numpy), from a checked spec's shape rules (`netspec.spec.cost`):

    summarize(spec, conv=None) -> Summary        one spec: a Row per layer and the Totals
    summarize_sweep(sweep) -> [Summary]          one per group of members whose summaries agree, naming them
    render(summaries, fmt) -> str                "table" (aligned text), "markdown" or "json"
    as_json(summary) -> dict                     plain data (result.json's `summary`)

A Row is one layer, per example (no batch axis): its output shape, its trainable parameters,
its multiply-accumulates (MACs), its forward FLOPs and transcendentals, and its output's bytes in
the compute dtype (`precision.compute`). The counts are `cost.layer_cost`'s, whose module
docstring states each rule: the forward pass at evaluation, counted as XLA's cost analysis
counts it (2 FLOPs per MAC, 1 per elementwise operation, exp, log, tanh and rsqrt apart as
transcendentals), within 0.5 % of `jax.jit(apply).lower(...).compile().cost_analysis()` on every
shipped spec (tests/spec/test_summary.py). A conv2d is counted as it is computed: im2col (slices
and one matrix multiply, the padding's zeros multiplied too) or XLA's native convolution (only
the taps inside the input). `conv` names each conv2d's lowering, as a Program records it
(`Program.conv`, what a run uses); without it the spec's `train.conv` decides, `auto` counted as
im2col, its choice on a CPU (on a GPU it is native: fashion_cnn's count is then 8 % lower).

The Totals: the parameters and their bytes (`precision.params`, float32), the layers'
non-trainable state (batch_norm's running statistics), the optimizer's state
(`cost.optimizer_state_elements`, float32), the per-example sums, and the training arithmetic:
FLOPs per step = 3 x forward FLOPs per example x batch size. The 3 is the usual rule that the
backward pass costs about twice the forward (the gradients with respect to both the inputs and
the weights of each matrix product, one product each), as in Kaplan et al. 2020 ("Scaling Laws
for Neural Language Models", C = 6N FLOPs per token: 2N forward, 4N backward) and OpenAI's "AI
and Compute" (2018); the optimizer's update, dropout's masks and the loss are not counted. It is
a convention, not XLA's count: against XLA's count of one gradient of the loss at the spec's
batch it is 1.08x for xor_wide, 0.97x for fashion_cnn and 1.33x for fashion_mlp, whose first
layer (three quarters of its arithmetic) reads the input, which needs no gradient, so that
layer's backward pass is 1x, not 2x. Steps per epoch are the training examples // the batch size
(the batches a run takes: the last partial one is dropped, `netspec.data.arrays.BatchOrder`).

A sweep's members are summarised each, and members whose summaries are equal share one table,
which names them. That is members with the same layers and shapes, batch size, optimizer state,
precision and steps: a group that trains together (`netspec.compile.members.groups`) always
shares a table; a table may hold several such groups (e.g. members that differ only in a seed
that chooses their validation split).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from netspec.machine import format_bytes
from netspec.spec.cost import PARAM_BYTES, dtype_bytes, model_costs, optimizer_state_elements
from netspec.spec.types import Spec

if TYPE_CHECKING:
    from netspec.spec.sweep import Sweep

FORMATS = ("table", "markdown", "json")

BACKWARD_FACTOR = 3  # training FLOPs per example = 3 x forward (see the module docstring)

CONVENTION = (
    "per example; the forward pass at evaluation, counted as XLA's cost analysis counts: 2 FLOPs per "
    "multiply-accumulate, 1 per elementwise operation, transcendentals (exp, log, tanh, rsqrt) apart"
)

TRAINING_CONVENTION = (
    "3 x forward FLOPs per example x batch size: the backward pass about 2 x the forward (Kaplan et al. "
    "2020: 6N per token); the optimizer's update not counted"
)


class Row(NamedTuple):
    """One layer, per example."""

    name: str
    type: str
    output: tuple[int, ...]
    params: int  # trainable elements
    macs: int
    flops: int  # forward, at evaluation
    transcendentals: int
    activation_bytes: int  # its output in the compute dtype


class Totals(NamedTuple):
    """The whole model's figures (see the module docstring)."""

    params: int
    param_bytes: int
    state: int  # non-trainable elements (float32): batch_norm's running statistics
    optimizer: str
    optimizer_state: int  # float32 elements
    optimizer_state_bytes: int
    macs: int  # per example
    flops: int  # forward, per example
    transcendentals: int  # per example
    activation_bytes: int  # every layer's output, per example
    batch_size: int
    training_flops_per_step: int
    steps_per_epoch: int
    steps: int
    training_flops: int  # per step x steps


@dataclass(frozen=True)
class Summary:
    """One model's table and totals; a sweep group's names its `members`."""

    name: str
    input: tuple[int, ...]
    output: tuple[int, ...]
    compute: str  # precision.compute: the activations' dtype
    param_dtype: str  # precision.params
    conv: tuple[tuple[str, str], ...]  # (conv2d layer, "im2col" or "native"): how it was counted
    conv_source: str  # where that choice came from
    rows: tuple[Row, ...]
    totals: Totals
    members: tuple[str, ...] = ()


def summarize(spec: Spec, conv: Mapping[str, str] | None = None) -> Summary:
    """The summary of a checked spec; `conv`: {conv2d layer: "im2col" or "native"}, as a Program
    computes them (None: from the spec's `train.conv`, `auto` as im2col)."""
    convs = [layer.name for layer in spec.layers if layer.type == "conv2d"]
    setting = spec.train["conv"]
    if conv is None:
        lowering = {name: "native" if setting == "native" else "im2col" for name in convs}
        source = {
            "auto": "train.conv auto: im2col on a CPU; on a GPU native, which counts only the taps inside the input",
            "native": "train.conv native: only the taps inside the input count",
        }.get(setting, f"train.conv: {setting}")
    else:
        lowering = {name: conv.get(name, "native") for name in convs}
        source = "as this run computes them"
    precision = spec.resolved["precision"]
    costs = model_costs(spec.layers, dtype_bytes(precision["compute"]), lowering)
    rows = tuple(
        Row(c.name, c.type, c.out_shape, c.param_count, c.macs, c.flops, c.transcendentals, c.activation_bytes)
        for c in costs
    )
    params = sum(r.params for r in rows)
    optimizer = optimizer_state_elements(spec.optimizer, [s for c in costs for s in c.params.values()])
    flops = sum(r.flops for r in rows)
    batch = spec.train["batch_size"]
    per_step = BACKWARD_FACTOR * flops * batch
    totals = Totals(
        params=params,
        param_bytes=params * dtype_bytes(precision["params"]),
        state=sum(c.state_count for c in costs),
        optimizer=spec.optimizer["type"],
        optimizer_state=optimizer,
        optimizer_state_bytes=optimizer * PARAM_BYTES,
        macs=sum(r.macs for r in rows),
        flops=flops,
        transcendentals=sum(r.transcendentals for r in rows),
        activation_bytes=sum(r.activation_bytes for r in rows),
        batch_size=batch,
        training_flops_per_step=per_step,
        steps_per_epoch=spec.num_examples // batch,
        steps=spec.steps,
        training_flops=per_step * spec.steps,
    )
    return Summary(
        spec.name,
        tuple(spec.input_shape),
        tuple(spec.output_shape),
        precision["compute"],
        precision["params"],
        tuple(lowering.items()),
        source,
        rows,
        totals,
    )


def summarize_sweep(sweep: Sweep) -> list[Summary]:
    """One summary per group of members whose summaries are equal, in order of their first
    member, each naming its members."""
    groups: dict[Summary, list[str]] = {}
    for member in sweep.members:
        groups.setdefault(summarize(member.spec), []).append(member.name)
    return [replace(summary, members=tuple(names)) for summary, names in groups.items()]


def as_json(summary: Summary) -> dict[str, Any]:
    """The summary as plain data: `layers` (each row by field), `totals`, how convolutions were
    counted, the conventions in words; a sweep group's `members`."""
    out: dict[str, Any] = {"name": summary.name}
    if summary.members:
        out["members"] = list(summary.members)
    out.update(
        input=list(summary.input),
        output=list(summary.output),
        compute_dtype=summary.compute,
        param_dtype=summary.param_dtype,
        layers=[{**row._asdict(), "output": list(row.output)} for row in summary.rows],
        totals=summary.totals._asdict(),
        conv={"lowering": dict(summary.conv), "source": summary.conv_source} if summary.conv else None,
        conventions={"per_layer": CONVENTION, "training_flops_per_step": TRAINING_CONVENTION},
    )
    return out


def render(summaries: Sequence[Summary], fmt: str = "table") -> str:
    """The summaries as `fmt` ("table", "markdown" or "json"): one table each; JSON is one
    summary's object, or for a sweep's groups {"name", "groups": [...]}."""
    if fmt == "json":
        if len(summaries) == 1 and not summaries[0].members:
            return json.dumps(as_json(summaries[0]), indent=2)
        return json.dumps({"name": summaries[0].name, "groups": [as_json(s) for s in summaries]}, indent=2)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    one = _markdown if fmt == "markdown" else _table
    return "\n\n".join(one(s, i, len(summaries)) for i, s in enumerate(summaries))


HEADER = ("layer", "type", "output", "params", "MACs", "FLOPs", "activations")


def _cells(summary: Summary) -> list[tuple[str, ...]]:
    """The table's rows as text, the total last."""
    rows: list[tuple[str, ...]] = [
        (
            r.name,
            r.type,
            _dims(r.output),
            f"{r.params:,}",
            f"{r.macs:,}",
            f"{r.flops:,}",
            format_bytes(r.activation_bytes),
        )
        for r in summary.rows
    ]
    t = summary.totals
    rows.append(("total", "", "", f"{t.params:,}", f"{t.macs:,}", f"{t.flops:,}", format_bytes(t.activation_bytes)))
    return rows


def _title(summary: Summary, index: int, count: int) -> list[str]:
    """The lines above a table: a sweep group's members, then the model's input, output and dtype."""
    title = [f"{summary.name}: {_dims(summary.input)} -> {_dims(summary.output)}, {summary.compute}"]
    if summary.members:
        n = len(summary.members)
        title.insert(0, f"group {index + 1} of {count}, {_plural(n, 'member')}: {', '.join(summary.members)}")
    return title


def _notes(summary: Summary) -> list[tuple[str, str]]:
    """The totals below the table, as (label, text)."""
    t = summary.totals
    notes = [
        (
            "per example",
            f"the forward pass's FLOPs as XLA counts them (2 per MAC, 1 per elementwise op), "
            f"{t.transcendentals:,} transcendentals (exp, log, tanh) apart",
        ),
        ("parameters", f"{t.params:,} ({format_bytes(t.param_bytes)} {summary.param_dtype})"),
    ]
    if t.state:
        notes.append(("non-trainable", f"{t.state:,} float32 ({format_bytes(t.state * PARAM_BYTES)})"))
    state = f"{t.optimizer_state:,} float32 ({format_bytes(t.optimizer_state_bytes)})" if t.optimizer_state else "none"
    notes.append(("optimizer state", f"{t.optimizer}: {state}"))
    if summary.conv:
        how = " and ".join(sorted(set(dict(summary.conv).values())))
        notes.append(("conv2d", f"counted as {how} ({summary.conv_source})"))
    notes.append(
        (
            "training",
            f"{_si(t.training_flops_per_step)}FLOPs per step of {t.batch_size} (3 x forward: backward about 2 x, "
            f"Kaplan et al. 2020); {_plural(t.steps_per_epoch, 'step')} per epoch; {_plural(t.steps, 'step')}: "
            f"{_si(t.training_flops)}FLOPs",
        )
    )
    return notes


def _table(summary: Summary, index: int, count: int) -> str:
    cells = [HEADER, *_cells(summary)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]

    def line(row: Iterable[str]) -> str:
        return "  ".join(
            c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line(HEADER))
    lines = [*_title(summary, index, count), rule, line(HEADER), rule]
    lines += [line(row) for row in cells[1:-1]]
    lines += [rule, line(cells[-1]), ""]
    notes = _notes(summary)
    label = max(len(k) for k, _ in notes)
    lines += [f"{k.ljust(label)}  {v}" for k, v in notes]
    return "\n".join(lines)


def _markdown(summary: Summary, index: int, count: int) -> str:
    cells = _cells(summary)
    lines = ["  \n".join(f"**{line}**" for line in _title(summary, index, count)), ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|---|---|---|" + "---:|" * 4]
    lines += ["| " + " | ".join(f"`{c}`" if i == 0 else c for i, c in enumerate(row)) + " |" for row in cells[:-1]]
    lines += ["| **total** | | | " + " | ".join(f"**{c}**" for c in cells[-1][3:]) + " |", ""]
    lines += [f"- {k}: {v}" for k, v in _notes(summary)]
    return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' if n != 1 else ''}"


def _dims(shape: Sequence[int]) -> str:
    """(28, 28, 1) -> 28x28x1"""
    return "x".join(map(str, shape))


def _si(n: float) -> str:
    """8573554 -> '8.57 M' (3 significant digits; small numbers whole, with a space)."""
    for size, prefix in ((10**15, "P"), (10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= size:
            return f"{n / size:.3g} {prefix}"
    return f"{int(n)} "
