"""Issue 11, kind 2 (the integer half): after `check`, every integer field is a Python int.

JSON Schema counts 20.0 as an integer, so `units: 1.0e+2` or `seed: 1.0` pass the schema; JAX then
needs 100, not 100.0. The fields are found by walking the schema and the registries (every field
the schema types as integer and not number: plain, nullable, the integer branch of an int-or-pair
field, the items of an integer list), not listed by hand: a new integer field is tested as soon as
it exists, and needs a placement here only if the generic one cannot make a valid spec around it.
Each is written as `X.0e+N` and must come out of `check` as the int X * 10**N; written as X.5 it is
refused at its own line and column.
"""

from __future__ import annotations

import pytest
import yaml

from netspec.errors import SpecError
from netspec.spec.check import check
from netspec.spec.choices import ACTIVATIONS, INITIALIZERS, LOSSES, METRICS, OPTIMIZERS, SCHEDULES
from netspec.spec.fields import INT32
from netspec.spec.layers import LAYERS
from netspec.spec.load import json_path, parse
from netspec.spec.schema import SCHEMA


def _integer(schema) -> bool:
    types = schema.get("type", ()) if isinstance(schema, dict) else ()
    types = [types] if isinstance(types, str) else types
    return "integer" in types and "number" not in types


def _forms(schema: dict) -> list[str]:
    """How a field holds integers: "int" (the value, or an int branch of an anyOf), "items" (a list's items)."""
    forms = []
    branches = [schema, *schema.get("anyOf", [])]
    if any(_integer(b) for b in branches):
        forms.append("int")
    if any(b.get("type") in ("array", ["null", "array"]) and _integer(b.get("items")) for b in branches):
        forms.append("items")
    return forms


def _top_level(schema: dict, path=()):
    for key, sub in schema.get("properties", {}).items():
        if not path and key == "sweep":  # expanded before check, never in a Spec: spec/test_sweep.py
            continue
        for form in _forms(sub):
            yield ("spec", ".".join(path + (key,)), key, form)
        if "properties" in sub:
            yield from _top_level(sub, path + (key,))


def integer_sites():
    """(where, owner, field, form) for every integer field of the schema."""
    yield from _top_level(SCHEMA)
    registries = {
        "layer": {name: kind.fields for name, kind in LAYERS.items()},
        "optimizer": OPTIMIZERS,
        "schedule": {name: args for name, (_, args, _) in SCHEDULES.items()},
        "metric": METRICS,
        "activation": ACTIVATIONS,
        "initializer": INITIALIZERS,
        "loss": LOSSES,
    }
    for where, table in registries.items():
        for owner, fields in table.items():
            for field, schema in fields.items():
                for form in _forms(schema):
                    yield (where, owner, field, form)


SITES = sorted(set(integer_sites()))
IDS = [f"{w}:{o if w == 'spec' else o + '.' + f}{'[]' * (m == 'items')}" for w, o, f, m in SITES]


def test_the_walk_finds_the_integer_fields():
    found = {(w, o, f) for w, o, f, _ in SITES}
    for known in [
        ("spec", "seed", "seed"),
        ("spec", "train.steps", "steps"),
        ("spec", "summaries.every", "every"),
        ("spec", "model.input", "input"),
        ("layer", "dense", "units"),
        ("layer", "conv2d", "kernel_size"),
        ("layer", "reshape", "shape"),
        ("optimizer", "adafactor", "min_dim_size_to_factor"),
        ("schedule", "exponential_decay", "transition_steps"),
        ("metric", "top_k_accuracy", "k"),
    ]:
        assert known in found, known
    assert len(SITES) >= 40


def _value(schema: dict, field: str) -> int:
    """A valid value for the field: its default or example, else its least value (at least 1)."""
    for branch in [schema, *schema.get("anyOf", [])]:
        for candidate in ([branch["default"]] if "default" in branch else []) + branch.get("examples", []):
            if isinstance(candidate, int) and not isinstance(candidate, bool):
                return candidate
    minimum = schema.get("minimum", -INT32)
    return minimum if minimum > -INT32 else 1


# A valid list for each integer list, where its example would not fit this spec's model.
_LISTS = {
    ("spec", "model.input"): [4, 4, 1],
    ("spec", "data.csv.features"): list(range(1, 17)),
    ("layer", "reshape"): [-1],
}
# Values and settings a field needs around it in this spec (8 examples of [4, 4, 1], 10 classes).
_VALUES = {
    "data.limit": 8,
    "train.batch_size": 4,
    "eval.every": 10,
    "checkpoint.every": 10,
    "train.early_stopping.patience": 3,
    "distribute.fsdp_devices": 1,
    "data.csv.label": 0,
}


def _base() -> dict:
    return {
        "name": "ints",
        "seed": 0,
        "data": {
            "inline": {
                "x": [[[[float((i + r + c) % 2)] for c in range(4)] for r in range(4)] for i in range(8)],
                "y": list(range(8)),
            }
        },
        "model": {
            "input": [4, 4, 1],
            "layers": [
                {"name": "conv", "type": "conv2d", "filters": 2, "kernel_size": 1},
                {"name": "flat", "type": "flatten"},
                {"name": "out", "type": "dense", "units": 10, "activation": "softmax"},
            ],
        },
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
        "optimizer": {"type": "sgd", "learning_rate": 0.1},
        "train": {"steps": 2000, "batch_size": 4},
        "summaries": {"every": 10, "graph": False},
    }


def _required(fields: dict, required) -> dict:
    """Valid values for the required fields of a registry entry."""
    out = {}
    for name in required:
        schema = fields[name]
        if "examples" in schema:
            out[name] = schema["examples"][0]
        elif "anyOf" in schema and any("examples" in b for b in schema["anyOf"]):
            out[name] = next(b["examples"][0] for b in schema["anyOf"] if "examples" in b)
        else:
            out[name] = {"activation": "relu", "rate": 0.5, "shape": [-1]}.get(name, 1)
    return out


def _place(where: str, owner: str, field: str, form: str, tmp_path) -> tuple[dict, tuple, list[int]]:
    """A spec with marker strings where the field's integers go; the field's key path; the integers."""
    spec = _base()
    if where == "spec":
        schema = SCHEMA
        for part in owner.split("."):
            schema = schema["properties"][part]
        value = _LISTS.get((where, owner)) if form == "items" else _VALUES.get(owner, _value(schema, field))
        path = tuple(owner.split("."))
        if path[0] == "train" and field == "epochs":
            del spec["train"]["steps"]
        if path[:2] == ("train", "early_stopping"):
            spec["train"]["early_stopping"] = {"metric": "accuracy"}
        if path[0] in ("eval",) or path[:2] == ("train", "early_stopping"):
            spec["data"]["validation_split"] = 0.5
            spec["eval"] = {"every": 10}
        if path[0] == "distribute" and field == "fsdp_devices":
            spec["distribute"] = {"params": "fsdp"}
        if path[:2] == ("data", "csv"):  # a table of 8 rows: label, then 16 features (one [4, 4, 1] example)
            rows = ["label," + ",".join(f"f{i}" for i in range(16))]
            rows += [f"{i}," + ",".join(str((i + j) % 2) for j in range(16)) for i in range(8)]
            (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
            spec["data"] = {"csv": {"path": "table.csv", "label": "label"}}
    elif where == "layer":
        kind = LAYERS[owner]
        schema = kind.fields[field]
        layer = {"name": "probe", "type": owner, **_required(kind.fields, kind.required)}
        if kind.inputs == "many":
            layer["inputs"] = ["conv", "conv"]
        spec["model"]["layers"].insert(1, layer)
        value = _LISTS.get((where, owner)) if form == "items" else _value(schema, field)
        if form == "items" and value is None:
            value = [_value(schema, field)] * 2  # an [height, width] pair
        path = ("model", "layers", 1, field)
    elif where == "optimizer":
        schema = OPTIMIZERS[owner][field]
        spec["optimizer"] = {"type": owner, "learning_rate": 0.1}
        value, path = _value(schema, field), ("optimizer", field)
    elif where == "schedule":
        _, fields, required = SCHEDULES[owner]
        schema = fields[field]
        spec["optimizer"]["learning_rate"] = {"type": owner, **_required(fields, required)}
        value, path = _value(schema, field), ("optimizer", "learning_rate", field)
    elif where == "metric":
        schema = METRICS[owner][field]
        spec["metrics"] = ["accuracy", {"type": owner}]
        value, path = _value(schema, field), ("metrics", 1, field)
    elif where in ("activation", "initializer"):
        table = ACTIVATIONS if where == "activation" else INITIALIZERS
        schema = table[owner][field]
        key = "activation" if where == "activation" else "kernel_init"
        spec["model"]["layers"][0][key] = {"type": owner}
        value, path = _value(schema, field), ("model", "layers", 0, key, field)
    else:
        schema = LOSSES[owner][field]
        spec["loss"] = {"type": owner}
        value, path = _value(schema, field), ("loss", field)
    values = value if form == "items" else [value]
    markers = [f"INTEGER_{i}" for i in range(len(values))]
    target = spec
    for part in path[:-1]:
        target = target.setdefault(part, {}) if isinstance(target, dict) else target[part]
    target[path[-1]] = markers if form == "items" else markers[0]
    return spec, path, values


def _write(spec: dict, written: list[str]) -> str:
    text = yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=1000)
    for i, value in enumerate(written):
        text = text.replace(f"INTEGER_{i}", value, 1)
    return text


def exponent(value: int) -> str:
    """20 -> '2.0e+1', 128 -> '1.28e+2', 0 -> '0.0e+0', -1 -> '-1.0e+0': a float in YAML 1.2 and JSON."""
    digits = str(abs(value))
    mantissa = digits[0] + "." + (digits[1:].rstrip("0") or "0")
    return f"{'-' * (value < 0)}{mantissa}e+{len(digits) - 1}"


def _checked_value(spec, where: str, path: tuple):
    if where == "spec" or where in ("optimizer", "schedule", "metric", "loss"):
        value = spec.resolved
        for part in path:
            value = value[part]
        return value
    layer = spec.layers[path[2]]
    value = layer.args[path[3]]
    return value[path[4]] if len(path) > 4 else value


@pytest.mark.parametrize("where, owner, field, form", SITES, ids=IDS)
def test_an_integral_float_becomes_an_int(tmp_path, where, owner, field, form):
    spec_data, path, values = _place(where, owner, field, form, tmp_path)
    text = _write(spec_data, [exponent(v) for v in values])
    spec = check(parse(text, str(tmp_path / "spec.yaml")))
    got = _checked_value(spec, where, path)
    got = list(got) if form == "items" else [got]
    assert got == values and all(type(v) is int for v in got), (text, got)


@pytest.mark.parametrize("where, owner, field, form", SITES, ids=IDS)
def test_a_fraction_is_refused_at_its_line_and_column(tmp_path, where, owner, field, form):
    spec_data, path, values = _place(where, owner, field, form, tmp_path)
    text = _write(spec_data, [f"{v}.5" for v in values])
    with pytest.raises(SpecError) as refused:
        check(parse(text, str(tmp_path / "spec.yaml")))
    at = json_path(path + ((0,) if form == "items" else ()))
    problems = [p for p in refused.value.problems if p.path == at]
    assert problems, refused.value
    line, col = problems[0].line, problems[0].col
    assert text.splitlines()[line - 1][col - 1 :].startswith(f"{values[0]}.5"), (text, problems[0])


def test_an_int_in_a_number_field_becomes_a_float():
    """JAX takes a Python int as int32: `clip_global_norm: 2147483648` overflowed inside the step
    (found by tests/properties/test_edges_validated_runs.py). A field typed number comes out of check a float."""
    text = """\
name: numbers
data:
  inline: {x: [[0, 0], [0, 1], [1, 0], [1, 1]], y: [[0], [1], [1], [0]]}
  scale: 2
model:
  input: [2]
  layers:
    - {name: drop, type: dropout, rate: 0}
    - {name: out, type: dense, units: 1, activation: sigmoid, kernel_init: {type: random_normal, stddev: 1}}
loss: binary_crossentropy
optimizer: {type: adam, learning_rate: 1, clip_global_norm: 2147483648, b1: 0}
train: {steps: 2, batch_size: 4}
"""
    spec = check(parse(text, "numbers.yaml"))
    values = [
        spec.resolved["data"]["scale"],
        spec.optimizer["learning_rate"],
        spec.optimizer["clip_global_norm"],
        spec.optimizer["b1"],
        spec.layers[0].args["rate"],
        spec.layers[1].args["kernel_init"]["stddev"],
    ]
    assert [type(v) for v in values] == [float] * len(values), values
    assert spec.optimizer["clip_global_norm"] == 2147483648.0 and spec.seed == 0 and type(spec.seed) is int
