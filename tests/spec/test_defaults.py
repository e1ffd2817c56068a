"""Defaults are decided in one place: the field declarations the schema is built from
(`netspec.spec.fields`, `layers`, `choices`, `schema`). For every field with a default, the
schema's `default`, the resolved spec (what `check` fills in, so no later stage reads a field
with a fallback of its own) and the README's reference agree; so does the README's prose where it
names a default."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from support import README, XOR

from netspec.spec import docs
from netspec.spec.check import check
from netspec.spec.choices import ACTIVATIONS, INITIALIZERS, LOSSES, METRICS, OPTIMIZERS, SCHEDULES
from netspec.spec.defaults import fill_defaults, resolve, resolve_ref
from netspec.spec.layers import DEFAULTABLE, LAYERS
from netspec.spec.load import parse
from netspec.spec.messages import schema_problems
from netspec.spec.schema import SCHEMA
from netspec.spec.types import plain

TEXT = README.read_text()
REFERENCE = TEXT[TEXT.index(docs.BEGIN) : TEXT.index(docs.END)]
PROSE = TEXT.replace(REFERENCE, "")

ABSENT = object()


def _default(schema: Mapping[str, Any]) -> Any:
    return schema["default"] if "default" in schema else schema.get("x-default", ABSENT)


def defaulted(schema: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(key path, default) of every key of the spec's sections that has a default, as the README's
    table of top-level keys lists them (the choices' own arguments are in their own tables)."""
    for key, sub in schema.get("properties", {}).items():
        sub = resolve_ref(sub) if "properties" not in sub else sub
        if _default(sub) is not ABSENT:
            yield (*prefix, key), _default(sub)
        if "properties" in sub and "$ref" not in schema["properties"][key]:
            yield from defaulted(sub, (*prefix, key))


def at(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return ABSENT
        data = data[key]
    return data


def filled(schema: Mapping[str, Any], default: Any) -> Any:
    """A default as the resolved spec holds it: a name of a name-or-mapping choice becomes {type: name, its defaults}."""
    return fill_defaults(dict(schema), json.loads(json.dumps(default)))


# -- the specs whose resolved form covers every section's defaults ------------------------------------

MNIST = """\
name: m
data: {SOURCE: {}}
model:
  input: [784]
  layers: [{name: out, type: dense, units: 10, activation: softmax}]
loss: sparse_categorical_crossentropy
optimizer: {type: sgd, learning_rate: 0.1}
train: {steps: 10, batch_size: 10}
"""

EARLY = """\
name: early
data:
  inline:
    x: [[0, 0], [0, 1], [1, 0], [1, 1]]
    y: [[0], [1], [1], [0]]
  validation_split: 0.25
model:
  input: [2]
  layers: [{name: out, type: dense, units: 1, activation: sigmoid}]
loss: binary_crossentropy
optimizer: {type: sgd, learning_rate: 0.1}
train: {steps: 20, batch_size: 3, early_stopping: {metric: loss}}
eval: {every: 10}
summaries: {every: 10}
"""

BARE_XOR = "\n".join(line for line in XOR.splitlines() if not line.startswith(("metrics:", "summaries:", "seed:")))


def _files_spec(tmp_path: Path, source: str) -> str:
    if source == "csv":
        (tmp_path / "d.csv").write_text("a,b,label\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
        data = "csv: {path: d.csv, label: label}"
    else:
        np.savez(
            tmp_path / "d.npz",
            x=np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32),
            y=np.array([0, 1, 1, 0], np.float32),
        )
        data = "npz: {path: d.npz}"
    return BARE_XOR.replace(BARE_XOR[BARE_XOR.index("  inline:") : BARE_XOR.index("model:")], f"  {data}\n")


def resolved_specs(tmp_path: Path) -> dict[str, tuple[Any, Mapping[str, Any]]]:
    """name -> (the spec as written, as resolved)."""
    texts = {
        "xor": BARE_XOR,
        "early_stopping": EARLY,
        "mnist": MNIST.replace("SOURCE", "mnist"),
        "fashion_mnist": MNIST.replace("SOURCE", "fashion_mnist"),
        "csv": _files_spec(tmp_path, "csv"),
        "npz": _files_spec(tmp_path, "npz"),
    }
    out = {}
    for name, text in texts.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        out[name] = (parse(text, str(path)).data, plain(check(parse(text, str(path))).resolved))
    return out


# Keys whose default is a rule the resolver applies to the rest of the spec, not a value: what each
# resolves to in the specs above (`check`), instead of the schema's default.
RESOLVED = {
    ("early_stopping", "train", "early_stopping", "mode"): "min",  # auto: min for a loss
    ("early_stopping", "checkpoint", "best"): "loss",  # the early-stopping metric
    ("early_stopping", "eval", "split"): "validation",  # the validation split, held out
    ("mnist", "eval", "split"): "test",  # the data's test split
    ("fashion_mnist", "eval", "split"): "test",
}


def test_every_section_default_is_what_the_resolved_spec_holds(tmp_path):
    specs = resolved_specs(tmp_path)
    unseen = []
    for path, default in defaulted(SCHEMA):
        if isinstance(default, dict):
            continue  # a section's {}: each of its keys is checked on its own
        schema = SCHEMA
        for key in path:
            schema = resolve_ref(resolve_ref(schema)["properties"][key])
        seen = False
        for name, (written, resolved) in specs.items():
            value = at(resolved, path)
            if value is ABSENT or at(written, path) is not ABSENT:
                continue
            seen = True
            expected = RESOLVED.get((name, *path), filled(schema, default))
            assert json.dumps(value) == json.dumps(expected), (name, ".".join(path), value, expected)
        if not seen:
            unseen.append(".".join(path))
    assert not unseen, f"no resolved spec here holds these defaulted keys: {unseen}"


def test_the_metrics_default_depends_on_the_loss(tmp_path):
    """accuracy (the schema's default) for a classification loss; none for a regression loss, as
    the schema's description of `metrics` says."""
    assert "accuracy" in json.dumps(SCHEMA["properties"]["metrics"]["default"])
    assert "none otherwise" in SCHEMA["properties"]["metrics"]["description"]
    assert [m["type"] for m in resolved_specs(tmp_path)["xor"][1]["metrics"]] == ["accuracy"]
    regression = BARE_XOR.replace("loss: binary_crossentropy", "loss: mean_squared_error")
    assert check(parse(regression, "spec.yaml")).resolved["metrics"] == ()  # frozen: a tuple


# -- layers: every type's defaulted fields ------------------------------------------------------------


def _image(n: int) -> list:
    return [[[[float((i + r + c + k) % 3) for k in range(2)] for c in range(4)] for r in range(4)] for i in range(n)]


EVERY_LAYER = f"""\
name: layers
data:
  inline:
    x: {json.dumps(_image(4))}
    y: [[0.5], [1.0], [0.0], [0.5]]
model:
  input: [4, 4, 2]
  layers:
    - {{name: c, type: conv2d, filters: 2, kernel_size: 1}}
    - {{name: bn, type: batch_norm}}
    - {{name: ln, type: layer_norm, inputs: c}}
    - {{name: s, type: add, inputs: [bn, ln]}}
    - {{name: j, type: concat, inputs: [s, c]}}
    - {{name: mp, type: max_pool}}
    - {{name: ap, type: avg_pool}}
    - {{name: f, type: flatten}}
    - {{name: g, type: global_avg_pool, inputs: mp}}
    - {{name: both, type: concat, inputs: [f, g]}}
    - {{name: r, type: reshape, shape: [2, 4]}}
    - {{name: fl, type: flatten}}
    - {{name: dr, type: dropout, rate: 0.5}}
    - {{name: act, type: activation, activation: relu}}
    - {{name: out, type: dense, units: 1}}
loss: mean_squared_error
optimizer: {{type: sgd, learning_rate: 0.1}}
train: {{steps: 2, batch_size: 4}}
"""


def _layer_schema(layer_type: str, field: str) -> Mapping[str, Any]:
    branch = next(
        b["then"]
        for b in SCHEMA["$defs"]["layer"]["allOf"]
        if b["if"]["properties"]["type"]["pattern"] == f"^{layer_type}$"
    )
    return branch["properties"][field]


def test_every_layer_field_default_is_what_the_resolved_layer_holds():
    layers = plain(check(parse(EVERY_LAYER, "spec.yaml")).resolved)["model"]["layers"]
    assert {layer["type"] for layer in layers} == set(LAYERS)
    for layer in layers:
        for field, declared in LAYERS[layer["type"]].fields.items():
            if "default" not in declared:
                continue
            schema = _layer_schema(layer["type"], field)
            assert schema["default"] == declared["default"], (layer["type"], field)
            expected = filled(schema, declared["default"])
            assert json.dumps(layer[field]) == json.dumps(expected), (layer["type"], field, layer[field], expected)


def test_model_defaults_replace_the_declared_defaults():
    text = BARE_XOR.replace(
        "defaults: {activation: sigmoid, kernel_init: random_normal, bias_init: random_normal}",
        "defaults: {use_bias: false}",
    )
    text = text.replace("loss: binary_crossentropy", "loss: mean_squared_error")
    for layer in plain(check(parse(text, "spec.yaml")).resolved)["model"]["layers"]:
        assert layer["use_bias"] is False
        for field in ("activation", "kernel_init", "bias_init"):
            assert layer[field]["type"] == DEFAULTABLE[field]["default"]
    for field, declared in DEFAULTABLE.items():  # model.defaults' own descriptions name the same built-in
        shown = declared["default"] if isinstance(declared["default"], str) else json.dumps(declared["default"])
        assert SCHEMA["properties"]["model"]["properties"]["defaults"]["properties"][field]["description"].endswith(
            f"built-in: {shown}"
        )
        assert "default" not in SCHEMA["properties"]["model"]["properties"]["defaults"]["properties"][field]


# -- the choices' arguments: activations, initializers, losses, metrics, optimizers, schedules ---------


def _with(text: str, key: str, value: str) -> str:
    lines = [line for line in text.splitlines() if not line.startswith(f"{key}:")]
    return "\n".join(lines) + f"\n{key}: {value}\n"


def _choices() -> Iterator[tuple[str, str, Mapping[str, Any], str]]:
    """(registry, name, its arguments' schemas, the spec text that names it with no arguments)."""
    for name, args in ACTIVATIONS.items():
        yield (
            "activations",
            name,
            args,
            BARE_XOR.replace("defaults: {activation: sigmoid,", f"defaults: {{activation: {name},"),
        )
    for name, args in INITIALIZERS.items():
        yield "initializers", name, args, BARE_XOR.replace("kernel_init: random_normal", f"kernel_init: {name}")
    for name, args in LOSSES.items():
        yield "losses", name, args, _with(BARE_XOR, "loss", name)
    for name, args in METRICS.items():
        yield (
            "metrics",
            name,
            args,
            _with(
                BARE_XOR.replace("loss: binary_crossentropy", "loss: sparse_categorical_crossentropy"),
                "metrics",
                f"[{name}]",
            ),
        )
    for name, args in OPTIMIZERS.items():
        yield "optimizers", name, args, _with(BARE_XOR, "optimizer", f"{{type: {name}, learning_rate: 0.1}}")
    for name, (_, args, required) in SCHEDULES.items():
        written = ", ".join(
            f"{k}: {json.dumps(v)}"
            for k, v in {
                "value": 0.1,
                "init_value": 0.1,
                "peak_value": 0.2,
                "end_value": 0.01,
                "transition_steps": 10,
                "decay_steps": 10,
                "warmup_steps": 2,
                "decay_rate": 0.5,
            }.items()
            if k in required
        )
        yield (
            "schedules",
            name,
            args,
            _with(BARE_XOR, "optimizer", f"{{type: sgd, learning_rate: {{type: {name}, {written}}}}}"),
        )


def _chosen(registry: str, resolved: Mapping[str, Any]) -> Mapping[str, Any]:
    return {
        "activations": lambda: resolved["model"]["layers"][0]["activation"],
        "initializers": lambda: resolved["model"]["layers"][0]["kernel_init"],
        "losses": lambda: resolved["loss"],
        "metrics": lambda: resolved["metrics"][0],
        "optimizers": lambda: resolved["optimizer"],
        "schedules": lambda: resolved["optimizer"]["learning_rate"],
    }[registry]()


CHOICES = list(_choices())


@pytest.mark.parametrize("registry, name, args, text", CHOICES, ids=[f"{c[0]}-{c[1]}" for c in CHOICES])
def test_every_argument_default_is_what_the_resolved_choice_holds(registry, name, args, text):
    loaded = parse(text, "spec.yaml")
    assert not schema_problems(loaded), [p.message for p in schema_problems(loaded)]
    chosen = _chosen(registry, resolve(loaded.data))
    assert chosen["type"] == name
    for arg, schema in args.items():
        if "default" in schema:
            assert json.dumps(chosen[arg]) == json.dumps(schema["default"]), (registry, name, arg)


# -- the README: its reference tables and its prose ---------------------------------------------------


def _table(title: str) -> list[str]:
    """The rows of the README reference's table under the heading that starts with `title`."""
    section = REFERENCE[REFERENCE.index(f"### {title}") :]
    section = section[: section.find("\n### ", 1)] if "\n### " in section[1:] else section
    return [line for line in section.splitlines() if line.startswith("| `")]


def _written_defaults(cell: str) -> dict[str, Any]:
    """`name=value` items of a README cell: {name: value}."""
    return {k: json.loads(v) for k, v in re.findall(r"`(\w+)=([^`]+)`", cell)}


def test_the_readme_key_table_states_each_schema_default():
    rows = {re.match(r"\| `([^`]+)`", row).group(1): row.split(" | ")[3] for row in _table("Top-level keys")}
    for path, default in defaulted(SCHEMA):
        cell = rows[".".join(path)]
        assert cell.startswith("`") and json.loads(cell.strip("`")) == default, (".".join(path), cell, default)
    stated = {key for key, cell in rows.items() if cell}
    assert stated == {".".join(path) for path, _ in defaulted(SCHEMA)}


@pytest.mark.parametrize(
    "title, table",
    [
        ("Layers", {name: kind.fields for name, kind in LAYERS.items()}),
        ("Activations", ACTIVATIONS),
        ("Initializers", INITIALIZERS),
        ("Losses", LOSSES),
        ("Metrics", METRICS),
        ("Optimizers", OPTIMIZERS),
        ("Learning-rate schedules", {name: args for name, (_, args, _) in SCHEDULES.items()}),
    ],
)
def test_the_readme_tables_state_each_argument_default(title, table):
    rows = {re.match(r"\| `([^`]+)`", row).group(1): row for row in _table(title)}
    assert set(rows) == set(table)
    for name, fields in table.items():
        declared = {k: s["default"] for k, s in fields.items() if "default" in s}
        assert _written_defaults(rows[name]) == declared, (title, name)


def test_the_readme_prose_names_the_schema_defaults():
    """`key` (default V) and `key: V` (default) in the README's text name the schema's default."""
    named = re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)` \(default ([^)]+)\)", PROSE)
    named += [(key, value) for key, value in re.findall(r"`([a-z_]+(?:\.[a-z_]+)+): ([^`]+)` \(default\)", PROSE)]
    assert named, "the README's prose names no default: the patterns here are out of date"
    for key, value in named:
        schema: Mapping[str, Any] = SCHEMA
        for part in key.split("."):
            schema = resolve_ref(resolve_ref(schema)["properties"][part])
        assert yaml.safe_load(value) == schema["default"], (key, value, schema["default"])
