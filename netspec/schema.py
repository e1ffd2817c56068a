"""The spec's JSON Schema (Draft 2020-12), built from the registries: the one contract for a spec.

`SCHEMA` is what `netspec schema` prints and what `check` validates against. Every object
forbids unknown keys. Choices written either as a name or as `{type: name, ...args}`
(activations, initializers, losses, schedules) use if/then/else on the value's JSON type, so an
error always comes from one branch and reads plainly. Defaults live here (as `default`), so the
docs and `check`'s defaulting read the same numbers.
"""

from __future__ import annotations

import jsonschema

from netspec import registry as R


def _named_choice(kinds: dict[str, dict], what: str, *, extra: dict | None = None, required_of=None) -> dict:
    """`name` or `{type: name, <that kind's args>}`."""
    names = sorted(kinds)
    branches = []
    for name in names:
        props = {"type": {"const": name}, **kinds[name], **(extra or {})}
        then = {"properties": props, "additionalProperties": False}
        req = list(required_of(name)) if required_of else []
        if req:
            then["required"] = req
        branches.append({"if": {"properties": {"type": {"const": name}}, "required": ["type"]}, "then": then})
    return {
        "description": f"{what}: a name, or a mapping with `type` and its arguments",
        "if": {"type": "string"},
        "then": {"enum": names},
        "else": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": names}},
            "allOf": branches,
        },
    }


def _layer_schema() -> dict:
    names = sorted(R.LAYERS)
    branches = []
    for name in names:
        kind = R.LAYERS[name]
        props = {"name": {"type": "string"}, "type": {"const": name}, "inputs": {"$ref": "#/$defs/inputs"}}
        for field, s in kind.fields.items():
            if field == "activation":
                props[field] = {"$ref": "#/$defs/activation"}
            elif field.endswith("_init"):
                props[field] = {"$ref": "#/$defs/initializer"}
            else:
                props[field] = s
        then = {"properties": props, "additionalProperties": False, "required": ["name", "type", *kind.required]}
        branches.append({"if": {"properties": {"type": {"const": name}}, "required": ["type"]}, "then": then})
    return {
        "type": "object",
        "required": ["name", "type"],
        "properties": {
            "name": {"type": "string", "maxLength": 100, "pattern": r"^[A-Za-z_][A-Za-z0-9_.\-]*$", "x-expected": "a name of letters, digits, '_', '-' or '.', starting with a letter or '_'", "description": "unique layer name; also its TensorBoard scope"},
            "type": {"enum": names, "description": "the layer type"},
        },
        "allOf": branches,
    }


def _optimizer_schema() -> dict:
    names = sorted(R.OPTIMIZERS)
    common = {
        "type": {"enum": names},
        "learning_rate": {"$ref": "#/$defs/learning_rate"},
        "clip_global_norm": R.number(None, exclusive_minimum=0, nullable=True, doc="clip gradients to this global norm first"),
    }
    branches = []
    for name in names:
        props = {**common, "type": {"const": name}, **R.OPTIMIZERS[name]}
        branches.append({"if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                         "then": {"properties": props, "additionalProperties": False}})
    return {"type": "object", "required": ["type", "learning_rate"], "properties": common, "allOf": branches}


def _schedule_schema() -> dict:
    names = sorted(R.SCHEDULES)
    branches = []
    for name in names:
        _, args, required = R.SCHEDULES[name]
        branches.append({
            "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
            "then": {"properties": {"type": {"const": name}, **args}, "additionalProperties": False, "required": ["type", *required]},
        })
    return {
        "description": "a number, or a schedule {type, its optax arguments}",
        "if": {"type": "number"},
        "then": {"exclusiveMinimum": 0},
        "else": {"type": "object", "required": ["type"], "properties": {"type": {"enum": names}}, "allOf": branches},
    }


def standard(title: str) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": {
        "dir": {"type": ["string", "null"], "default": None, "description": f"a directory holding the four {title} IDX files; else $NETSPEC_DATA, the cache, system copies, download"},
        "download": R.boolean(True, "download from the public mirrors when not found (verified by SHA-256)"),
    }}


def build() -> dict:
    """The whole schema."""
    inline = {
        "type": "object",
        "additionalProperties": False,
        "required": ["x", "y"],
        "properties": {
            "x": {"type": "array", "minItems": 1, "description": "inputs, one row per example"},
            "y": {"type": "array", "minItems": 1, "description": "targets, one per example"},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://netspec.dev/schema/spec.json",
        "title": "netspec model spec",
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "data", "model", "loss", "optimizer", "train"],
        "properties": {
            "name": {"type": "string", "maxLength": 100, "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", "x-expected": "a name of letters, digits, '_', '-' or '.', starting with a letter, a digit or '_'", "description": "the run's name; runs go to <logdir>/<name>/<run-id>"},
            "description": {"type": "string", "default": "", "description": "free text, shown in TensorBoard with the spec"},
            "seed": R.integer(0, minimum=0, doc="seed for initialisation, shuffling and dropout"),
            "data": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "inline": inline,
                    "mnist": standard("MNIST"),
                    "fashion_mnist": standard("Fashion-MNIST"),
                    "idx": {"type": "object", "additionalProperties": False, "required": ["path"], "properties": {
                        "path": {"type": "string", "description": "directory with train-images-idx3-ubyte, train-labels-idx1-ubyte (and t10k-*), plain or .gz"}}},
                    "npz": {"type": "object", "additionalProperties": False, "required": ["path"], "properties": {
                        "path": {"type": "string", "description": "a .npz with x_train, y_train (x_test, y_test), or x_key/y_key"},
                        "x_key": {"type": "string", "default": "x"}, "y_key": {"type": "string", "default": "y"}}},
                    "csv": {"type": "object", "additionalProperties": False, "required": ["path", "label"], "properties": {
                        "path": {"type": "string"},
                        "label": {"type": ["string", "integer"], "description": "the label column: header name or 0-based index"},
                        "features": {"type": ["array", "null"], "items": {"type": ["string", "integer"]}, "default": None,
                                     "description": "feature columns; default: every column but the label"},
                        "header": R.boolean(True), "delimiter": {"type": "string", "minLength": 1, "maxLength": 1, "default": ","}}},
                    "validation_split": R.number(0.0, minimum=0, maximum=0.9, doc="fraction of the training examples held out for validation, chosen by the seed"),
                    "scale": {"type": ["number", "string", "null"], "default": None, "pattern": r"^(1\s*/\s*\d+(\.\d+)?|standardize)$", "x-expected": "a number, 1/N such as 1/255, or standardize",
                              "description": "inputs become x * scale: a number, `1/255`, or `standardize` (per feature, from the training split)"},
                    "limit": R.integer(None, minimum=1, nullable=True, doc="use only the first N examples of each split (quick runs)"),
                    "max_resident_mb": R.number(2048, exclusive_minimum=0, doc="training data up to this size lives on the device; larger data streams from the host chunk by chunk, with the same results"),
                },
                "description": "where the examples come from: exactly one source (inline, mnist, fashion_mnist, idx, npz, csv)",
            },
            "model": {
                "type": "object",
                "additionalProperties": False,
                "required": ["input", "layers"],
                "properties": {
                    "input": {**R.SHAPE, "description": "shape of one example, without the batch axis"},
                    "defaults": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "activation": {"$ref": "#/$defs/activation"},
                            "kernel_init": {"$ref": "#/$defs/initializer"},
                            "bias_init": {"$ref": "#/$defs/initializer"},
                            "use_bias": {"type": "boolean"},
                        },
                        "description": "values for every layer whose type has that field and does not set it",
                    },
                    "layers": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/layer"}},
                },
            },
            "loss": _named_choice(R.LOSSES, "the loss"),
            "metrics": {"type": "array", "items": {"$ref": "#/$defs/metric"}, "default": ["accuracy"],
                        "description": "measured on training batches and in evaluation; default: accuracy for a classification loss, none otherwise"},
            "eval": {
                "type": "object",
                "additionalProperties": False,
                "default": {},
                "properties": {
                    "every": R.integer(None, minimum=1, nullable=True, doc="steps between evaluations (a multiple of summaries.every); default: only at the end"),
                    "split": {"enum": ["test", "validation", None], "default": None, "description": "the split evaluated (eval/ run); default: test if the data has one, else validation if data.validation_split > 0"},
                    "batch_size": R.integer(1000, minimum=1),
                    "confusion_matrix": R.boolean(True, "write a confusion-matrix image at each evaluation (classification)"),
                },
            },
            "optimizer": {"$ref": "#/$defs/optimizer"},
            "train": {
                "type": "object",
                "additionalProperties": False,
                "required": ["batch_size"],
                "properties": {
                    "steps": R.integer(minimum=1, doc="number of optimizer steps"),
                    "epochs": R.integer(minimum=1, doc="number of passes over the training data (instead of steps)"),
                    "batch_size": R.integer(minimum=1),
                    "shuffle": R.boolean(True, "reshuffle the training data every epoch"),
                    "on_nonfinite": R.choice(["stop", "skip_step", "ignore"], "stop", "a NaN or Inf in the loss or gradients: stop with an error naming the step and layer (the last good checkpoint is kept; checked once per chunk, so free per step), skip that step's update and go on (checked every step), or ignore: check nothing"),
                    "early_stopping": {
                        "type": ["object", "null"], "default": None, "additionalProperties": False, "required": ["metric"],
                        "description": "stop when an eval metric has not improved for `patience` evaluations (needs eval.every)",
                        "properties": {
                            "metric": {"type": "string", "description": "an eval scalar: loss or a metric's tag, e.g. accuracy"},
                            "patience": R.integer(3, minimum=1),
                            "min_delta": R.number(0.0, minimum=0),
                            "mode": R.choice(["auto", "max", "min"], "auto", "auto: min for losses and errors, max otherwise"),
                        },
                    },
                    "loop": R.choice(["auto", "scan", "steps"], "auto", "how a chunk of steps runs: `scan` fuses them in one lax.scan; `steps` calls one jitted step each; `auto` is scan except for convolutions on CPU, where XLA runs conv gradients inside loops much slower"),
                    "unroll": R.integer(None, minimum=1, nullable=True, doc="steps per iteration of the scan loop: XLA compiles that many steps as one loop body, so the loop's own per-iteration cost is paid once per `unroll` steps; default: 2 on GPU and TPU, where small models are bound by kernel launches (fashion_mlp 12 % faster on an H200), 1 on CPU. The same steps, but compiles take longer, and results may differ from unroll 1 in the last bit (XLA fuses the longer body differently); a run and its resumes still repeat bit for bit"),
                },
                "oneOf": [{"required": ["steps"]}, {"required": ["epochs"]}],
            },
            "distribute": {
                "type": "object",
                "additionalProperties": False,
                "default": {},
                "properties": {
                    "devices": R.integer(None, minimum=1, nullable=True, doc="how many local devices to use (default: all); the batch is split evenly over them"),
                    "params": R.choice(["replicated", "fsdp"], "replicated", "replicated: every device holds all parameters; fsdp: large ones are split over the devices too"),
                    "fsdp_devices": R.integer(None, minimum=1, nullable=True, doc="with params: fsdp, split the parameters over groups of this many devices (e.g. the GPUs of one host) and replicate them across groups (hybrid sharding); default: all devices"),
                },
            },
            "precision": {
                "type": "object",
                "additionalProperties": False,
                "default": {},
                "properties": {
                    "compute": R.choice(["float32", "bfloat16", "float16"], "float32", "dtype of the layers' arithmetic; the loss, gradients and optimizer stay float32"),
                    "params": R.choice(["float32"], "float32", "dtype the parameters are kept in"),
                    "loss_scale": {
                        "description": "multiply the loss by this before the backward pass and divide the gradients after: a number, or dynamic (starts at 2^15, halves and skips the step when the gradients overflow, doubles after loss_scale_period good steps); default: dynamic for float16, none otherwise",
                        "default": None,
                        "if": {"type": ["number", "null"]},
                        "then": {"exclusiveMinimum": 0},
                        "else": {"enum": ["dynamic"]},
                    },
                    "loss_scale_period": R.integer(2000, minimum=1, doc="with a dynamic loss_scale: steps in a row without overflow before the scale doubles"),
                },
            },
            "checkpoint": {
                "type": "object",
                "additionalProperties": False,
                "default": {},
                "properties": {
                    "every": R.integer(None, minimum=1, nullable=True, doc="steps between checkpoints (a multiple of summaries.every); always one at the end and on Ctrl-C"),
                    "keep": R.integer(3, minimum=1, doc="how many of the latest checkpoints to keep"),
                    "best": {"type": ["string", "null"], "default": None, "description": "also keep best.safetensors by this eval scalar (default: train.early_stopping's metric)"},
                },
            },
            "summaries": {
                "type": "object",
                "additionalProperties": False,
                "default": {},
                "properties": {
                    "every": R.integer(100, minimum=1, doc="steps between summaries; also the number of steps per compiled chunk"),
                    "scalars": {"type": "array", "items": {"enum": list(R.SCALARS)}, "uniqueItems": True, "default": list(R.SCALARS)},
                    "histograms": {"type": "array", "items": {"enum": list(R.HISTOGRAMS)}, "uniqueItems": True, "default": ["weights", "biases"]},
                    "graph": R.boolean(True, "write the train step's graph, one box per layer"),
                    "text": R.boolean(True, "write the resolved spec as text"),
                    "hparams": R.boolean(True, "write hyperparameters with the final metrics"),
                },
            },
        },
        "$defs": {
            "activation": _named_choice(R.ACTIVATIONS, "an activation"),
            "metric": _named_choice(R.METRICS, "a metric"),
            "initializer": _named_choice(R.INITIALIZERS, "an initializer"),
            "inputs": {
                "description": "the layer(s) this layer reads; default: the previous layer",
                "if": {"type": "string"},
                "then": {},
                "else": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            },
            "layer": _layer_schema(),
            "optimizer": _optimizer_schema(),
            "learning_rate": _schedule_schema(),
        },
    }


SCHEMA = build()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
