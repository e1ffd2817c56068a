"""The spec's JSON Schema (Draft 2020-12), built from the registries: the one contract for a spec.

`SCHEMA` is what `netspec schema` prints for editors (yaml-language-server) and what `check`
validates against. Every object forbids unknown keys and every key has a description. The schema
states every rule JSON Schema can state, so an editor flags it as the spec is typed: besides types,
ranges and names, the rules between keys (exactly one data source; steps or epochs; `train.unroll`
not with `loop: steps`; `fsdp_devices` needs `params: fsdp`; early stopping needs `eval.every`;
`eval.split: validation` needs a validation split; accuracy needs a classification loss, top-k
accuracy a categorical one; a bias initializer without fan-in/fan-out; a one-input layer names one
input; 'input' is no layer's name; a reshape infers at most one size; a schedule's steps are
integers; inline x and y hold numbers; an eval scalar is named as a tag). What needs the data, the
shapes or the names a spec defines is `check`'s meaning pass.

Written for editors as well as for validation:

- a choice written either as a name or as `{type: name, ...args}` (activations, initializers,
  losses, metrics, schedules) is an `anyOf` of a name `enum` and a mapping, so an editor completes
  the names (it offers no values from if/then/else); inside the mapping, if/then on `type` gives
  each name's own arguments;
- a rule between keys fails on one key (the one to change) with an `errorMessage`, which
  yaml-language-server shows in place of its generic wording and `netspec.spec.messages` uses too;
  the schemas that state a rule are `doNotSuggest`, so completion offers only the real keys;
- a group of keys of which exactly one is given (`train.steps`/`train.epochs`, the data sources)
  is a `oneOf` whose branches each require one key and forbid the others; `netspec.spec.overrides`
  reads these groups for `--set`.

Every `default` here is its field's declaration (`fields`, `layers`, `choices`, or the sections
below), stated once: editors show it, the docs print it and the resolver (`netspec.spec.defaults`)
fills it in, so no later stage decides a default of its own. Pure Python, no jax.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence

import jsonschema

from netspec.data.sources import SOURCES
from netspec.spec.choices import (
    ACTIVATION_DOCS,
    ACTIVATIONS,
    FUSED_ACTIVATION,
    HISTOGRAMS,
    INITIALIZER_DOCS,
    INITIALIZERS,
    LOSS_DOCS,
    LOSSES,
    MATRIX_INITIALIZERS,
    METRIC_DOCS,
    METRICS,
    OPTIMIZERS,
    SCALARS,
    SCHEDULES,
)
from netspec.spec.fields import KEY_PATH, SHAPE, Schema, boolean, choice, integer, number
from netspec.spec.layers import DEFAULTABLE, LAYERS, LayerKind

CLASSIFICATION_LOSSES = tuple(FUSED_ACTIVATION)


REGRESSION_LOSSES = tuple(sorted(set(LOSSES) - set(CLASSIFICATION_LOSSES)))


BIAS_INITIALIZERS = tuple(sorted(set(INITIALIZERS) - MATRIX_INITIALIZERS))


TAGS = ("loss", "accuracy", "mean_squared_error", "mean_absolute_error")  # eval scalars; also top_<k>_accuracy


# The most members a sweep may have. Each member is a run directory of its own and a row of
# TensorBoard's runs list and HParams table, which stop being readable (and load slowly) in the
# thousands; validate checks every member (a few milliseconds each for inline data: a second or
# two at this bound); and the vmapped form holds every member's parameters and optimizer state at
# once. A larger search is several sweeps, or a random one.
MAX_MEMBERS = 1024


def forbidden(message: str) -> Schema:
    """A key that must not be given here: no value passes, and editors do not offer it."""
    return {"enum": [], "errorMessage": message, "doNotSuggest": True}


def must_be_null(message: str) -> Schema:
    """A nullable key that a rule requires unset (null, its default)."""
    return {"type": "null", "errorMessage": message, "doNotSuggest": True}


def exactly_one(keys: Sequence[str], missing: str, several: str) -> list[Schema]:
    """`oneOf` branches: each requires one of `keys` and forbids the others."""
    return [
        {
            "required": [key],
            "errorMessage": missing,
            "properties": {other: forbidden(several) for other in keys if other != key},
        }
        for key in keys
    ]


def when_type(name: str) -> Schema:
    """The `if` that picks a mapping's branch by its `type`. A pattern, not `const`: while completing,
    yaml-language-server takes a `const` that merely starts with the value as matched, so `type: adam`
    would be offered the keys of adamw and adamax too."""
    return {"properties": {"type": {"type": "string", "pattern": f"^{name}$"}}, "required": ["type"]}


def _choice_of_names(
    kinds: Mapping[str, Mapping[str, Schema]],
    what: str,
    docs: Mapping[str, str],
    *,
    names: Iterable[str] | None = None,
    error: str | None = None,
) -> Schema:
    """`name` or `{type: name, <that kind's arguments>}`."""
    names = sorted(names or kinds)
    described: Schema = {"enum": names, "enumDescriptions": [docs.get(n, "") for n in names]}
    named: Schema
    type_field: Schema
    if error:  # nested, so that a value of another type gets the plain type message, not this one
        named = {"type": "string", "allOf": [{**described, "errorMessage": error}]}
        type_field = {"allOf": [{**described, "errorMessage": error}]}
    else:
        named = {"type": "string", **described}
        type_field = dict(described)
    branches = []
    for name in names:
        props = {"type": {"const": name, "description": docs.get(name, "")}, **kinds[name]}
        branches.append({"if": when_type(name), "then": {"properties": props, "additionalProperties": False}})
    return {
        "description": f"{what}: a name, or a mapping with `type` and its arguments",
        "anyOf": [
            {**named, "description": f"{what}'s name"},
            {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"type": "string", **type_field, "description": f"{what}'s name"}},
                "allOf": branches,
                "description": f"{what} with arguments: `type` and that {what.split()[-1]}'s arguments",
            },
        ],
    }


_LAYER_NAME_LONGEST = 100
_LAYER_NAME_RULE = r"^(?!input$)[A-Za-z_][A-Za-z0-9_.\-]*$"
LAYER_NAME = {
    "type": "string",
    "maxLength": _LAYER_NAME_LONGEST,
    "pattern": _LAYER_NAME_RULE,
    "errorMessage": "expected a layer name of letters, digits, '_', '-' or '.', starting with a letter or '_', other than 'input' (the model's input)",
    "description": "unique layer name; also its TensorBoard scope",
}


_LAYER_NAME_PATTERN = re.compile(_LAYER_NAME_RULE)


def layer_likeness(layer: object) -> str | None:
    """What a layer is but for its name, as a key: layers with the same key are alike to the
    schema and to its defaults whatever their names (the layer schema reads `name` only as a
    LAYER_NAME), so a deep model's thousand alike layers are checked and filled once. The key keeps
    the order of every mapping's keys below the layer's own (a filled layer keeps them: the
    resolved spec writes them so); the layer's own keys are put back in each layer's order by
    the filling. None where a layer must be judged on its own: not a mapping, without a valid
    name, or holding what JSON cannot keep apart (a key that is not a string)."""
    if not isinstance(layer, dict):
        return None
    name = layer.get("name")
    if not (isinstance(name, str) and len(name) <= _LAYER_NAME_LONGEST and _LAYER_NAME_PATTERN.search(name)):
        return None  # jsonschema's `pattern` is re.search, as here
    rest = {k: v for k, v in layer.items() if k != "name"}
    if not _string_keys(rest):
        return None
    try:
        return json.dumps(dict(sorted(rest.items())), allow_nan=True)
    except (TypeError, ValueError):
        return None


def _string_keys(value: object) -> bool:
    """Whether every mapping in `value` (nested in mappings and lists) has only string keys."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _string_keys(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_string_keys(v) for v in value)
    return True


def _inputs(layer_type: str, kind: LayerKind) -> Schema:
    doc = "the layer(s) this layer reads: a layer name or a list of names ('input' is the model input); default: the previous layer"
    if kind.inputs == "many":
        return {
            "description": doc,
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
        }
    return {
        "description": "the layer this layer reads: a layer name ('input' is the model input); default: the previous layer",
        "anyOf": [
            {"type": "string"},
            {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": 1,
                "errorMessage": f"a {layer_type} layer takes one input; to combine layers use add or concat",
            },
        ],
    }


# The fields whose value is a name or {type, args}: the schema's choice of names stands in their place.
_CHOICE_FIELDS = {
    "activation": "#/$defs/activation",
    "kernel_init": "#/$defs/initializer",
    "bias_init": "#/$defs/bias_initializer",
}


def _layer_field(field: str, schema: Schema) -> Schema:
    if field in _CHOICE_FIELDS:
        return {"$ref": _CHOICE_FIELDS[field], **{k: schema[k] for k in ("default", "description") if k in schema}}
    return schema


def _model_default(field: str, schema: Schema) -> Schema:
    """`model.defaults.<field>`: the layer field's values, without a default of its own (an unset
    one leaves each layer its field's default, which the description names)."""
    shown = schema["default"] if isinstance(schema["default"], str) else json.dumps(schema["default"])
    if field in _CHOICE_FIELDS:
        value = {"$ref": _CHOICE_FIELDS[field]}
    else:
        value = {k: v for k, v in schema.items() if k not in ("default", "description")}
    return {**value, "description": f"{field} of every layer that has it and does not set it; built-in: {shown}"}


def _layer_schema() -> Schema:
    names = sorted(LAYERS)
    branches = []
    for name in names:
        kind = LAYERS[name]
        props = {"name": LAYER_NAME, "type": {"const": name, "description": kind.doc}, "inputs": _inputs(name, kind)}
        props.update({field: _layer_field(field, s) for field, s in kind.fields.items()})
        then = {"properties": props, "additionalProperties": False, "required": ["name", "type", *kind.required]}
        branches.append({"if": when_type(name), "then": then})
    return {
        "type": "object",
        "description": "one layer: `name`, `type`, optional `inputs`, and that type's fields",
        "required": ["name", "type"],
        "properties": {
            "name": LAYER_NAME,
            "type": {
                "type": "string",
                "enum": names,
                "enumDescriptions": [LAYERS[n].doc for n in names],
                "description": "the layer type",
            },
        },
        "allOf": branches,
    }


def _optimizer_schema() -> Schema:
    names = sorted(OPTIMIZERS)
    common = {
        "type": {
            "type": "string",
            "enum": names,
            "enumDescriptions": [f"optax.{n}" for n in names],
            "description": "the optimizer: optax's function of this name",
        },
        "learning_rate": {
            "$ref": "#/$defs/learning_rate",
            "description": "the learning rate: a number, or a schedule {type, its optax arguments}",
        },
        "clip_global_norm": number(
            None,
            exclusive_minimum=0,
            nullable=True,
            doc="clip the gradients to this global norm first; null: no clipping",
        ),
    }
    branches = []
    for name in names:
        props = {**common, "type": {"const": name, "description": f"optax.{name}"}, **OPTIMIZERS[name]}
        branches.append({"if": when_type(name), "then": {"properties": props, "additionalProperties": False}})
    return {
        "type": "object",
        "description": "the optimizer: {type, learning_rate, clip_global_norm, and that optax optimizer's arguments}",
        "required": ["type", "learning_rate"],
        "properties": common,
        "allOf": branches,
    }


def _schedule_schema() -> Schema:
    names = sorted(SCHEDULES)
    branches = []
    for name in names:
        fn, args, required = SCHEDULES[name]
        branches.append(
            {
                "if": when_type(name),
                "then": {
                    "properties": {"type": {"const": name, "description": f"optax.{fn}"}, **args},
                    "additionalProperties": False,
                    "required": ["type", *required],
                },
            }
        )
    return {
        "description": "the learning rate: a number, or a schedule {type, its optax arguments}",
        "examples": [0.01],
        "anyOf": [
            {"type": "number", "exclusiveMinimum": 0, "description": "a constant learning rate"},
            {
                "type": "object",
                "required": ["type"],
                "description": "a schedule: `type` and that optax schedule's arguments",
                "properties": {
                    "type": {
                        "type": "string",
                        "enum": names,
                        "enumDescriptions": [f"optax.{SCHEDULES[n][0]}" for n in names],
                        "description": "the schedule",
                    }
                },
                "allOf": branches,
            },
        ],
    }


def _values(name: str) -> Schema:
    """Inline x or y: a list of numbers or of such lists, any depth (the shapes are `check`'s)."""
    return {
        "type": ["number", "array"],
        "items": {"$ref": f"#/$defs/{name}"},
        "errorMessage": f"expected a number in {name}",
    }


def _standard(title: str) -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "description": f"the {title} IDX files, found or downloaded",
        "properties": {
            "dir": {
                "type": ["null", "string"],
                "default": None,
                "description": f"a directory holding the four {title} IDX files; default: $NETSPEC_DATA, the cache, system copies, download",
            },
            "download": boolean(True, "download from the public mirrors when not found (verified by SHA-256)"),
        },
    }


def _tag(doc: str, *, nullable: bool) -> Schema:
    """An eval scalar's tag: which ones the spec has is the meaning pass's to check."""
    names = [
        {"enum": list(TAGS)},
        {"type": "string", "pattern": "^top_[1-9][0-9]*_accuracy$", "title": "top_<k>_accuracy"},
    ]
    if nullable:
        return {"type": ["null", "string"], "default": None, "description": doc, "anyOf": [{"type": "null"}, *names]}
    return {"type": "string", "description": doc, "anyOf": names, "examples": ["accuracy"]}


def _metrics_in(names: Iterable[str], message: str) -> Schema:
    """Metric items whose name is one of `names`, in either form."""
    rule = {"enum": list(names), "errorMessage": message, "doNotSuggest": True}
    return {
        "anyOf": [rule, {"type": "object", "properties": {"type": rule}, "doNotSuggest": True}],
        "doNotSuggest": True,
    }


def _loss_is(names: Iterable[str]) -> Schema:
    return {
        "anyOf": [
            {"enum": list(names)},
            {"type": "object", "properties": {"type": {"enum": list(names)}}, "required": ["type"]},
        ]
    }


def _at(path: str, schema: Schema) -> Schema:
    """`schema` for the key at dotted `path`, as nested `properties` that editors do not offer.
    Each level is typed as the spec's own schema types it, so that a rule never takes a value
    (such as null) that the key itself does not: `netspec.spec.overrides` asks every schema of a key."""
    for key in reversed(path.split(".")):
        schema = {"type": "object", "properties": {key: schema}, "doNotSuggest": True}
    return schema


def _early_stopping_needs_eval() -> Schema:
    """Early stopping only with `eval.every`."""
    return {
        "if": {
            "properties": {"eval": {"properties": {"every": {"type": "integer"}}, "required": ["every"]}},
            "required": ["eval"],
        },
        "else": _at(
            "train.early_stopping",
            must_be_null("early stopping needs evaluations during training: set eval.every (e.g. 600)"),
        ),
    }


def _validation_needs_split() -> Schema:
    """`eval.split: validation` only with a `data.validation_split` above 0."""
    return {
        "if": {
            "properties": {
                "data": {
                    "properties": {"validation_split": {"exclusiveMinimum": 0}},
                    "required": ["validation_split"],
                }
            },
            "required": ["data"],
        },
        "else": _at(
            "eval.split",
            {
                "enum": ["test", None],
                "doNotSuggest": True,
                "errorMessage": "eval.split is validation but data.validation_split is 0; set it, e.g. data.validation_split: 0.1",
            },
        ),
    }


def _accuracy_needs_classification() -> Schema:
    """The accuracy metric only with a classification loss."""
    classification = ", ".join(CLASSIFICATION_LOSSES)
    return {
        "if": {"properties": {"loss": _loss_is(REGRESSION_LOSSES)}, "required": ["loss"]},
        "then": _at(
            "metrics",
            {
                "items": _metrics_in(
                    sorted(set(METRICS) - {"accuracy"}),
                    f"accuracy needs a classification loss ({classification}); with a regression loss measure mean_squared_error or mean_absolute_error",
                ),
                "type": "array",
                "doNotSuggest": True,
            },
        ),
    }


def _top_k_needs_categorical() -> Schema:
    """The top_k_accuracy metric only with a loss over several classes."""
    return {
        "if": {"properties": {"loss": _loss_is([*REGRESSION_LOSSES, "binary_crossentropy"])}, "required": ["loss"]},
        "then": _at(
            "metrics",
            {
                "items": _metrics_in(
                    sorted(set(METRICS) - {"top_k_accuracy"}),
                    "top_k_accuracy needs a loss over several classes (categorical_crossentropy or sparse_categorical_crossentropy)",
                ),
                "type": "array",
                "doNotSuggest": True,
            },
        ),
    }


def _rules() -> list[Schema]:
    """Rules between top-level sections, each failing on the key to change."""
    return [
        _early_stopping_needs_eval(),
        _validation_needs_split(),
        _accuracy_needs_classification(),
        _top_k_needs_categorical(),
    ]


def _inline_source() -> Schema:
    """`data.inline`: examples written in the spec."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["x", "y"],
        "description": "examples written in the spec",
        "properties": {
            "x": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/$defs/x"},
                "description": "inputs, one row per example",
                "examples": [[[0, 0], [0, 1]]],
            },
            "y": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/$defs/y"},
                "description": "targets, one per example",
                "examples": [[[0], [1]]],
            },
        },
    }


def _idx_source() -> Schema:
    """`data.idx`: a directory of IDX files named like MNIST's."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["path"],
        "description": "a directory of IDX files named like MNIST's",
        "properties": {
            "path": {
                "type": "string",
                "description": "directory with train-images-idx3-ubyte, train-labels-idx1-ubyte (and t10k-*), plain or .gz; relative to the spec",
            }
        },
    }


def _npz_source() -> Schema:
    """`data.npz`: a NumPy .npz file."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["path"],
        "description": "a NumPy .npz file",
        "properties": {
            "path": {
                "type": "string",
                "description": "a .npz with x_train, y_train (x_test, y_test), or x_key/y_key; relative to the spec",
            },
            "x_key": {
                "type": "string",
                "default": "x",
                "description": "the inputs' array when the file has no x_train",
            },
            "y_key": {
                "type": "string",
                "default": "y",
                "description": "the labels' array when the file has no y_train",
            },
        },
    }


def _csv_source() -> Schema:
    """`data.csv`: a table with one example per row."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["path", "label"],
        "description": "a table with one example per row",
        "properties": {
            "path": {"type": "string", "description": "the CSV file; relative to the spec"},
            "label": {
                "type": ["string", "integer"],
                "description": "the label column: header name or 0-based index",
                "examples": ["label"],
            },
            "features": {
                "type": ["null", "array"],
                "items": {"type": ["string", "integer"]},
                "default": None,
                "description": "feature columns (names or 0-based indices); default: every column but the label",
            },
            "header": boolean(True, "the first row names the columns"),
            # not `default`: yaml-language-server writes a default into its completions unquoted,
            # and a bare , is not YAML; fill_defaults and the docs read x-default as a default
            "delimiter": {
                "type": "string",
                "minLength": 1,
                "maxLength": 1,
                "x-default": ",",
                "description": "the character between columns (default ,)",
            },
        },
    }


def _data_schema() -> Schema:
    """`data`: where the examples come from."""
    sources = ", ".join(SOURCES)
    return {
        "type": "object",
        "additionalProperties": False,
        "description": f"where the examples come from: exactly one source ({sources}), and how they are split and scaled",
        "properties": {
            "inline": _inline_source(),
            "mnist": _standard("MNIST"),
            "fashion_mnist": _standard("Fashion-MNIST"),
            "idx": _idx_source(),
            "npz": _npz_source(),
            "csv": _csv_source(),
            "validation_split": number(
                0.0,
                minimum=0,
                maximum=0.9,
                doc="fraction of the training examples held out for validation, chosen by the seed",
            ),
            "scale": {
                "type": ["null", "number", "string"],
                "default": None,
                "pattern": r"^(1\s*/\s*(?=[\d.]*[1-9])\d+(\.\d+)?|standardize)$",
                "errorMessage": "expected a number, 1/N with N > 0 such as 1/255, or standardize",
                "description": "inputs become x * scale: a number, `1/255`, or `standardize` (per feature, from the training split); default: unscaled",
            },
            "limit": integer(
                None, minimum=1, nullable=True, doc="use only the first N examples of each split (quick runs)"
            ),
            "max_resident_mb": number(
                2048,
                exclusive_minimum=0,
                doc="training data up to this size lives on the device; larger data streams from the host chunk by chunk, with the same results",
            ),
        },
        "oneOf": exactly_one(
            SOURCES, f"data needs exactly one source: {sources}", f"data needs exactly one source ({sources}): keep one"
        ),
    }


def _model_schema() -> Schema:
    """`model`: the network."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["input", "layers"],
        "description": "the network: the shape of one example and the layers",
        "properties": {
            "input": {**SHAPE, "description": "shape of one example, without the batch axis", "examples": [[784]]},
            "defaults": {
                "type": "object",
                "additionalProperties": False,
                "properties": {field: _model_default(field, schema) for field, schema in DEFAULTABLE.items()},
                "description": "values for every layer whose type has that field and does not set it",
            },
            "layers": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/$defs/layer"},
                "description": "the layers in order; each reads the previous one unless it names its inputs; the last one is the output",
            },
        },
    }


def _eval_schema() -> Schema:
    """`eval`: evaluation."""
    return {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "description": "evaluation on a held-out split during and after training",
        "properties": {
            "every": integer(
                None,
                minimum=1,
                nullable=True,
                doc="steps between evaluations (a multiple of summaries.every); default: only at the end",
            ),
            "split": {
                "enum": ["test", "validation", None],
                "default": None,
                "description": "the split evaluated during training, into the test/ or validation/ run; default: validation if data.validation_split > 0 (early stopping and checkpoint.best choose on it; the test split is then measured once, at the end), else test if the data has one",
            },
            "batch_size": integer(1000, minimum=1, doc="examples per evaluation batch (memory, not results)"),
            "confusion_matrix": boolean(True, "write a confusion-matrix image at each evaluation (classification)"),
        },
    }


def _train_schema() -> Schema:
    """`train`: how long and in what batches."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["batch_size"],
        "description": "how long and in what batches to train: steps or epochs, batch_size",
        "properties": {
            "steps": integer(minimum=1, doc="number of optimizer steps (or give epochs)", example=1000),
            "epochs": integer(minimum=1, doc="number of passes over the training data (or give steps)", example=10),
            "batch_size": integer(minimum=1, doc="examples per step (split evenly over the devices)", example=32),
            "shuffle": boolean(True, "reshuffle the training data every epoch"),
            "on_nonfinite": choice(
                ["stop", "skip_step", "ignore"],
                "stop",
                "a NaN or Inf in the loss or gradients: stop with an error naming the step and layer (the last good checkpoint is kept; checked once per chunk, so free per step), skip that step's update and go on (checked every step), or ignore: check nothing",
            ),
            "early_stopping": {
                "type": ["null", "object"],
                "default": None,
                "additionalProperties": False,
                "required": ["metric"],
                "description": "stop when an eval metric has not improved for `patience` evaluations (needs eval.every)",
                "properties": {
                    "metric": _tag("an eval scalar: loss or a metric's tag, e.g. accuracy", nullable=False),
                    "patience": integer(3, minimum=1, doc="evaluations without improvement before stopping"),
                    "min_delta": number(0.0, minimum=0, doc="the least change that counts as an improvement"),
                    "mode": choice(["auto", "max", "min"], "auto", "auto: min for losses and errors, max otherwise"),
                },
            },
            "loop": choice(
                ["auto", "scan", "steps"],
                "auto",
                "how a chunk of steps runs: `scan` fuses them in one lax.scan; `steps` calls one jitted step each; `auto` is scan, except on CPU for a model with a conv2d computed natively (`train.conv`), whose gradients XLA:CPU runs 13x slower inside a loop",
            ),
            "conv": choice(
                ["auto", "native", "im2col"],
                "auto",
                "how conv2d layers are computed: `native` is XLA's convolution (cuDNN on GPU); `im2col` is slices of the input and one matrix multiply, the same numbers to float32 rounding, which XLA:CPU runs inside the fused scan at matrix-multiply speed but which holds kernel-area copies of each conv layer's input; `auto` is im2col on CPU (native for the largest layers while their copies would exceed a quarter of the memory budget) and native on GPU and TPU. result.json's `ran.conv` records the choice per layer",
            ),
            "unroll": integer(
                None,
                minimum=1,
                nullable=True,
                doc="steps per iteration of the scan loop: XLA compiles that many steps as one loop body, so the loop's own per-iteration cost is paid once per `unroll` steps; default: 2 on GPU and TPU, where small models are bound by kernel launches (fashion_mlp 12 % faster on an H200), 1 on CPU. The same steps, but compiles take longer, and results may differ from unroll 1 in the last bit (XLA fuses the longer body differently); a run and its resumes still repeat bit for bit",
            ),
        },
        "oneOf": exactly_one(
            ("steps", "epochs"), "missing required key 'steps' (or 'epochs')", "give either steps or epochs, not both"
        ),
        "if": {"properties": {"loop": {"const": "steps"}}, "required": ["loop"]},
        "then": {
            "doNotSuggest": True,
            "properties": {
                "unroll": must_be_null(
                    "unroll sets how many steps one iteration of the scan loop runs; train.loop: steps has no scan loop "
                    "(one jitted call per step): remove unroll or use loop: scan"
                )
            },
        },
    }


def _distribute_schema() -> Schema:
    """`distribute`: how the devices share the work."""
    return {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "description": "how the devices share the work",
        "properties": {
            "devices": integer(
                None,
                minimum=1,
                nullable=True,
                doc="how many local devices to use (default: all); the batch is split evenly over them",
            ),
            "params": choice(
                ["replicated", "fsdp"],
                "replicated",
                "replicated: every device holds all parameters; fsdp: large ones are split over the devices too",
            ),
            "fsdp_devices": integer(
                None,
                minimum=1,
                nullable=True,
                doc="with params: fsdp, split the parameters over groups of this many devices (e.g. the GPUs of one host) and replicate them across groups (hybrid sharding); default: all devices",
            ),
        },
        "if": {"properties": {"params": {"const": "fsdp"}}, "required": ["params"]},
        "else": {
            "doNotSuggest": True,
            "properties": {
                "fsdp_devices": must_be_null(
                    "fsdp_devices groups the devices that share the parameters: it needs distribute.params: fsdp"
                )
            },
        },
    }


def _precision_schema() -> Schema:
    """`precision`: dtypes and the loss scale."""
    return {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "description": "the dtypes of the arithmetic and the loss scale",
        "properties": {
            "compute": choice(
                ["float32", "bfloat16", "float16"],
                "float32",
                "dtype of the layers' arithmetic; the loss, gradients and optimizer stay float32",
            ),
            "params": choice(["float32"], "float32", "dtype the parameters are kept in"),
            "loss_scale": {
                "description": "multiply the loss by this before the backward pass and divide the gradients after: a number, or dynamic (starts at 2^15, halves and skips the step when the gradients overflow, doubles after loss_scale_period good steps); default: dynamic for float16, none otherwise",
                "default": None,
                "anyOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 0}, {"enum": ["dynamic"]}],
            },
            "loss_scale_period": integer(
                2000,
                minimum=1,
                doc="with a dynamic loss_scale: steps in a row without overflow before the scale doubles",
            ),
        },
    }


def _checkpoint_schema() -> Schema:
    """`checkpoint`: checkpoints."""
    return {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "description": "checkpoints: when to write them and which to keep",
        "properties": {
            "every": integer(
                None,
                minimum=1,
                nullable=True,
                doc="steps between checkpoints (a multiple of summaries.every); always one at the end and on Ctrl-C",
            ),
            "keep": integer(3, minimum=1, doc="how many of the latest checkpoints to keep"),
            "best": _tag(
                "also keep best.safetensors by this eval scalar (default: train.early_stopping's metric)", nullable=True
            ),
        },
    }


def _summaries_schema() -> Schema:
    """`summaries`: what goes to TensorBoard."""
    return {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "description": "what goes to TensorBoard, and how often",
        "properties": {
            "every": integer(
                100, minimum=1, doc="steps between summaries; also the number of steps per compiled chunk"
            ),
            "scalars": {
                "type": "array",
                "items": {"enum": list(SCALARS)},
                "uniqueItems": True,
                "default": list(SCALARS),
                "description": "scalar charts to write",
            },
            "histograms": {
                "type": "array",
                "items": {"enum": list(HISTOGRAMS)},
                "uniqueItems": True,
                "default": ["weights", "biases"],
                "description": "histograms to write, per layer",
            },
            "graph": boolean(True, "write the train step's graph, one box per layer"),
            "text": boolean(True, "write the resolved spec and the model summary as text"),
            "hparams": boolean(True, "write hyperparameters with the final metrics"),
        },
    }


RANDOM_KEYS_UNDER_AXES = (
    "a random search (samples, axes) names its keys under axes; a grid lists KEY: [values] without samples and axes"
)


def _sweep_schema() -> Schema:
    """`sweep`: many members of this spec, a grid or a random search (`netspec.spec.sweep`)."""
    key = {
        "type": "string",
        "pattern": f"^{KEY_PATH}$",
        "errorMessage": "a sweep key is a dotted key path as --set takes it, e.g. optimizer.learning_rate or model.layers[0].units",
    }
    bounds = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
    axis = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
        "errorMessage": "an axis is one of {log_uniform: [lo, hi]}, {uniform: [lo, hi]} or {choice: [values]}",
        "description": "how this key's value is drawn: one of log_uniform, uniform, choice",
        "properties": {
            "log_uniform": {
                **bounds,
                "description": "[lo, hi] with 0 < lo < hi: exp of a uniform draw between ln lo and ln hi (learning rates, weight decay)",
            },
            "uniform": {**bounds, "description": "[lo, hi] with lo < hi: a uniform draw between them (dropout rates)"},
            "choice": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_MEMBERS,
                "description": "values, one drawn with equal chances (integers, names, mappings)",
            },
        },
    }
    return {
        "type": "object",
        "minProperties": 1,
        "description": "train many members of this spec, each an ordinary run named by its values: a grid "
        "`{KEY: [values], ...}` (every combination is a member) or a random search `{samples: N, axes: {KEY: "
        "{log_uniform: [lo, hi]} | {uniform: [lo, hi]} | {choice: [values]}}}` drawn from the spec's seed; KEY is "
        f"a dotted key as --set takes it (optimizer.learning_rate, model.layers[0].units); at most {MAX_MEMBERS} "
        "members; `--set sweep=null` is the plain spec (see Sweeps in the README)",
        "propertyNames": key,
        "properties": {
            "samples": integer(
                minimum=1,
                maximum=MAX_MEMBERS,
                doc=f"random search: how many members to draw (at most {MAX_MEMBERS})",
                example=16,
            ),
            "axes": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": key,
                "additionalProperties": axis,
                "description": "random search: KEY -> how its value is drawn: {log_uniform: [lo, hi]}, "
                "{uniform: [lo, hi]} or {choice: [values]}",
            },
        },
        "additionalProperties": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_MEMBERS,
            "description": "a grid axis: the values this key takes, one member per combination",
        },
        "if": {"anyOf": [{"required": ["samples"]}, {"required": ["axes"]}]},
        "then": {
            "doNotSuggest": True,
            "required": ["samples", "axes"],
            "properties": {"samples": {}, "axes": {}},
            "additionalProperties": forbidden(RANDOM_KEYS_UNDER_AXES),
        },
    }


def _defs() -> Schema:
    """`$defs`: the schemas that several keys refer to."""
    return {
        "activation": _choice_of_names(ACTIVATIONS, "an activation", ACTIVATION_DOCS),
        "metric": _choice_of_names(METRICS, "a metric", METRIC_DOCS),
        "initializer": _choice_of_names(INITIALIZERS, "an initializer", INITIALIZER_DOCS),
        "bias_initializer": _choice_of_names(
            INITIALIZERS,
            "a bias initializer",
            INITIALIZER_DOCS,
            names=BIAS_INITIALIZERS,
            error=f"a bias is a vector: initializers that scale by fan-in/fan-out ({', '.join(sorted(MATRIX_INITIALIZERS))}) "
            f"need a weight matrix; for a bias use one of {', '.join(BIAS_INITIALIZERS)}",
        ),
        "x": _values("x"),
        "y": _values("y"),
        "layer": _layer_schema(),
        "optimizer": _optimizer_schema(),
        "learning_rate": _schedule_schema(),
    }


def build() -> Schema:
    """The whole schema."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://netspec.dev/schema/spec.json",
        "title": "netspec model spec",
        "description": "a netspec model spec: data, model, loss, optimizer, training and what to watch",
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "data", "model", "loss", "optimizer", "train"],
        "properties": {
            "name": {
                "type": "string",
                "maxLength": 100,
                "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$",
                "errorMessage": "expected a run name of letters, digits, '_', '-' or '.', starting with a letter, a digit or '_'",
                "description": "the run's name; runs go to <logdir>/<name>/<run-id>",
            },
            "description": {
                "type": "string",
                "default": "",
                "description": "free text, shown in TensorBoard with the spec",
            },
            "seed": integer(0, minimum=0, doc="seed for initialisation, shuffling and dropout"),
            "data": _data_schema(),
            "model": _model_schema(),
            "loss": _choice_of_names(LOSSES, "the loss", LOSS_DOCS),
            "metrics": {
                "type": "array",
                "items": {"$ref": "#/$defs/metric"},
                "default": ["accuracy"],
                "description": "measured on training batches and in evaluation; default: accuracy for a classification loss, none otherwise",
            },
            "eval": _eval_schema(),
            "optimizer": {
                "$ref": "#/$defs/optimizer",
                "description": "the optimizer: {type, learning_rate, clip_global_norm, and that optax optimizer's arguments}",
            },
            "train": _train_schema(),
            "distribute": _distribute_schema(),
            "precision": _precision_schema(),
            "checkpoint": _checkpoint_schema(),
            "summaries": _summaries_schema(),
            "sweep": _sweep_schema(),
        },
        "allOf": _rules(),
        "$defs": _defs(),
    }


SCHEMA: Schema = build()


VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
