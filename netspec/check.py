"""Check a loaded spec and produce the `Spec` every later stage reads.

Contract: `check(loaded) -> Spec` or raises `SpecError` listing every problem found, each with
file:line:col, key path, what was expected and what was found. Two passes:

1. the JSON Schema (`netspec.schema.SCHEMA`): types, ranges, names, unknown keys;
2. meaning, only once the schema passes: layer names unique, `inputs` name earlier layers,
   shapes agree through the whole model (the registry's pure-Python shape rules), the data's
   shape fits the model's input, the loss fits the output and the labels, metrics fit the loss.

After `check` the Spec is frozen and fully defaulted: `model.defaults` are pushed into the
layers, every default from the schema is filled in, every "name or {type, args}" choice is a
mapping with all its arguments. No later stage re-validates, guesses or mutates it; `resolved`
is what ran and is what the run directory saves. No jax here: `validate` must stay fast.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

import jsonschema

from netspec import registry as R
from netspec.errors import Problem, SpecError
from netspec.load import Loaded, json_path
from netspec.schema import SCHEMA

_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


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
    metrics: tuple[str, ...]
    optimizer: Mapping[str, Any]
    train: Mapping[str, Any]
    steps: int  # total optimizer steps (from train.steps or train.epochs)
    num_examples: int  # training examples
    summaries: Mapping[str, Any]
    resolved: Mapping[str, Any]  # the whole spec as it ran (plain data; see `plain`)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layers[-1].out_shape

    @property
    def fused_loss(self) -> bool:
        """True when the output activation is folded into the loss as logits (the stable form)."""
        return R.FUSED_ACTIVATION.get(self.loss["type"]) == self.output_activation and not self.loss.get("from_logits")


def check(loaded: Loaded) -> Spec:
    """Validate `loaded` against the schema and for meaning; return the Spec or raise SpecError."""
    problems = schema_problems(loaded)
    if problems:
        raise SpecError(problems)
    data = copy.deepcopy(loaded.data)
    _push_model_defaults(data)
    data = fill_defaults(SCHEMA, data)
    spec, problems = _meaning(loaded, data)
    if problems:
        raise SpecError(problems)
    return spec


# -- pass 1: the schema -----------------------------------------------------------------------

def schema_problems(loaded: Loaded) -> list[Problem]:
    """Every schema violation, worded for a person, in file order."""
    problems: list[Problem] = []
    for error in _VALIDATOR.iter_errors(loaded.data):
        problems.extend(_describe(error, loaded))
    unique = {(p.path, p.message): p for p in problems}
    return sorted(unique.values(), key=lambda p: (p.line or 0, p.col or 0, p.path))


def _found(value) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping", type(None): "null"}.get(type(value), type(value).__name__)
    text = repr(value) if not isinstance(value, (list, dict)) else kind
    if len(text) > 60:
        text = text[:57] + "..."
    return text if isinstance(value, (list, dict)) else f"{text} ({kind})"


def _expected_type(t) -> str:
    names = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
             "array": "a list", "object": "a mapping", "null": "nothing (null)"}
    if isinstance(t, list):
        return " or ".join(names.get(x, x) for x in t)
    return names.get(t, t)


def did_you_mean(word, options) -> str:
    """'; did you mean 'x'?' when a close match exists, else ''."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _describe(error: jsonschema.ValidationError, loaded: Loaded) -> list[Problem]:
    path = tuple(error.absolute_path)
    v, value, schema = error.validator, error.instance, error.schema
    if v == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extras = [k for k in value if k not in schema.get("properties", {})]
        return [
            loaded.problem(path + (k,), f"unknown key {k!r}{did_you_mean(k, allowed)} (valid keys here: {', '.join(allowed)})", key=True)
            for k in extras
        ]
    if v == "required":
        missing = error.validator_value
        keys = [k for k in missing if k not in value]
        return [loaded.problem(path, f"missing required key {k!r}", key=True) for k in keys]
    if v in ("enum", "const"):
        options = error.validator_value if v == "enum" else [error.validator_value]
        listed = ", ".join(str(o) for o in options)
        if len(options) > 30:
            listed = f"{len(options)} names, see `netspec schema`"
        return [loaded.problem(path, f"expected one of {listed}; found {_found(value)}{did_you_mean(value, options)}")]
    if v == "type":
        return [loaded.problem(path, f"expected {_expected_type(error.validator_value)}, found {_found(value)}")]
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[v]
        return [loaded.problem(path, f"expected a value {op} {error.validator_value}, found {_found(value)}")]
    if v in ("minItems", "maxItems"):
        word = "at least" if v == "minItems" else "at most"
        return [loaded.problem(path, f"expected a list of {word} {error.validator_value} items, found {len(value)}")]
    if v == "minProperties":
        return [loaded.problem(path, f"expected a mapping with at least {error.validator_value} key(s), found an empty one")]
    if v == "uniqueItems":
        return [loaded.problem(path, "expected each item once; this list repeats an item")]
    if v == "pattern":
        return [loaded.problem(path, f"expected a name of letters, digits, '_', '-' or '.', starting with a letter or '_'; found {_found(value)}")]
    if v == "not":
        return [loaded.problem(path, f"{_found(value)} is not allowed here")]
    if v == "oneOf" and path[-1:] == ("train",):
        both = "steps" in value and "epochs" in value
        return [loaded.problem(path, "give either steps or epochs, not both" if both else "missing required key 'steps' (or 'epochs')", key=True)]
    if v in ("oneOf", "anyOf"):
        best = jsonschema.exceptions.best_match(error.context)
        return _describe(best, loaded) if best is not None else [loaded.problem(path, error.message)]
    return [loaded.problem(path, error.message)]


# -- defaults ---------------------------------------------------------------------------------

def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**SCHEMA["$defs"][ref], **rest}
    return schema


def fill_defaults(schema: dict, value):
    """`value` with every schema default filled in and every name-or-mapping choice made a mapping.

    jsonschema validates but never fills defaults (by design); this walks the same schema
    keywords that this project's schema uses: $ref, if/then/else, allOf, properties, items.
    Called only on data that has passed the schema.
    """
    schema = _resolve(schema)
    if "if" in schema:
        if jsonschema.Draft202012Validator(schema["if"]).is_valid(value):
            if "then" in schema and schema["if"].get("type") == "string" and "enum" in schema.get("then", {}):
                value = {"type": value}  # a bare name: use its mapping form
                return fill_defaults(schema["else"], value)
            value = fill_defaults(schema.get("then", {}), value)
        else:
            value = fill_defaults(schema.get("else", {}), value)
    for sub in schema.get("allOf", []):
        value = fill_defaults(sub, value)
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in schema["properties"].items():
            sub = _resolve(sub)
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = fill_defaults(sub, value[key])
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [fill_defaults(schema["items"], item) for item in value]
    return value


_LAYER_FIELD_DEFAULTS = {"activation": "linear", "kernel_init": "glorot_uniform", "bias_init": "zeros"}


def _push_model_defaults(data: dict) -> None:
    model = data["model"]
    defaults = {**_LAYER_FIELD_DEFAULTS, **model.get("defaults", {})}
    for layer in model["layers"]:
        fields = R.LAYERS[layer["type"]].fields
        for key, value in defaults.items():
            if key in fields and key not in layer:
                layer[key] = copy.deepcopy(value)


# -- pass 2: meaning --------------------------------------------------------------------------

def _shape_of(value, path, loaded, problems, what) -> tuple | None:
    """The shape of a nested list of numbers, or None (with a problem) if ragged or not numeric."""
    if isinstance(value, bool) or value is None or isinstance(value, str) or isinstance(value, dict):
        problems.append(loaded.problem(path, f"expected a number in {what}, found {_found(value)}"))
        return None
    if not isinstance(value, list):
        return ()
    shapes = [_shape_of(v, path + (i,), loaded, problems, what) for i, v in enumerate(value)]
    if any(s is None for s in shapes):
        return None
    for i, s in enumerate(shapes[1:], 1):
        if s != shapes[0]:
            problems.append(loaded.problem(path + (i,), f"rows of {what} must all have the same shape: item 0 has shape {list(shapes[0])}, item {i} has {list(s)}"))
            return None
    return (len(value),) + (shapes[0] if shapes else ())


def _meaning(loaded: Loaded, data: dict) -> tuple[Spec | None, list[Problem]]:
    problems: list[Problem] = []
    model = data["model"]
    input_shape = tuple(model["input"])
    shapes: dict[str, tuple] = {"input": input_shape}
    first_seen: dict[str, int] = {}
    layers: list[Layer] = []
    previous = "input"
    for i, layer in enumerate(model["layers"]):
        at = ("model", "layers", i)
        name, kind = layer["name"], R.LAYERS[layer["type"]]
        if name == "input":
            problems.append(loaded.problem(at + ("name",), "'input' names the model's input; choose another layer name"))
        elif name in first_seen:
            line = loaded.where(("model", "layers", first_seen[name], "name"))[1]
            problems.append(loaded.problem(at + ("name",), f"duplicate layer name {name!r} (first used by layers[{first_seen[name]}], line {line}); layer names must be unique"))
        else:
            first_seen[name] = i
        inputs = layer.get("inputs", previous)
        inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        ok = True
        for j, ref in enumerate(inputs):
            ref_at = at + ("inputs",) if isinstance(layer.get("inputs"), str) else at + ("inputs", j)
            if ref not in shapes:
                later = [l["name"] for l in model["layers"][i:]]
                if ref in later:
                    problems.append(loaded.problem(ref_at, f"{ref!r} is this layer or a later one; inputs must name earlier layers (or 'input')"))
                else:
                    earlier = ["input", *[l["name"] for l in model["layers"][:i]]]
                    problems.append(loaded.problem(ref_at, f"no earlier layer is named {ref!r}{did_you_mean(ref, earlier)} (earlier: {', '.join(earlier)})"))
                ok = False
        if kind.inputs == "one" and len(inputs) != 1:
            problems.append(loaded.problem(at + ("inputs",), f"a {layer['type']} layer takes one input, found {len(inputs)}"))
            ok = False
        args = {k: v for k, v in layer.items() if k not in ("name", "type", "inputs")}
        out_shape = None
        if ok:
            in_shapes = tuple(shapes[r] for r in inputs)
            try:
                out_shape = tuple(kind.shape(args, list(in_shapes)))
            except R.ShapeMismatch as e:
                field_at = at + (e.field,) if e.field and e.field in layer else at
                problems.append(loaded.problem(field_at, f"layer {name!r} ({layer['type']}): {e}"))
        if out_shape is None:
            # keep going so later, independent problems are still found
            shapes.setdefault(name, ())
            previous = name
            continue
        shapes[name] = out_shape
        layers.append(Layer(name, layer["type"], inputs, _freeze(args), in_shapes, out_shape))
        previous = name
    if problems:
        return None, problems

    out_shape = layers[-1].out_shape
    last = model["layers"][-1]
    output_activation = last.get("activation", {"type": "linear"})["type"]
    loss = data["loss"]
    _check_loss_output(loaded, loss, output_activation, out_shape, len(model["layers"]) - 1, problems)
    num_examples = _check_inline_data(loaded, data, input_shape, out_shape, loss, problems)
    metrics = tuple(data["metrics"])
    for i, m in enumerate(metrics):
        if m == "accuracy" and loss["type"] not in R.FUSED_ACTIVATION:
            problems.append(loaded.problem(("metrics", i), f"accuracy needs a classification loss (binary_crossentropy, categorical_crossentropy or sparse_categorical_crossentropy); the loss is {loss['type']}"))
    train = data["train"]
    steps = train.get("steps")
    if num_examples is not None:
        if train["batch_size"] > num_examples:
            problems.append(loaded.problem(("train", "batch_size"), f"batch_size {train['batch_size']} is larger than the {num_examples} training examples"))
        elif steps is None:
            steps = train["epochs"] * (num_examples // train["batch_size"])
    if problems:
        return None, problems
    spec = Spec(
        name=data["name"], seed=data["seed"], source=loaded.source, data=_freeze(data["data"]),
        input_shape=input_shape, layers=tuple(layers), loss=_freeze(loss), output_activation=output_activation,
        metrics=metrics, optimizer=_freeze(data["optimizer"]), train=_freeze(train), steps=steps,
        num_examples=num_examples, summaries=_freeze(data["summaries"]), resolved=_freeze(data),
    )
    return spec, []


def _check_loss_output(loaded, loss, activation, out_shape, last_index, problems):
    kind = loss["type"]
    at = ("model", "layers", last_index, "activation")
    fused = R.FUSED_ACTIVATION.get(kind)
    if fused:
        if loss["from_logits"] and activation in ("sigmoid", "softmax"):
            problems.append(loaded.problem(at, f"the loss has from_logits: true, but the output goes through {activation}; use activation: linear for the last layer, or drop from_logits"))
        elif not loss["from_logits"] and activation != fused:
            problems.append(loaded.problem(at, f"{kind} expects {'probabilities from a sigmoid' if fused == 'sigmoid' else 'a probability distribution from a softmax'} output, but the last layer's activation is {activation}; use activation: {fused}, or set loss.from_logits: true with activation: linear"))
    if kind in ("categorical_crossentropy", "sparse_categorical_crossentropy") and (len(out_shape) != 1 or out_shape[0] < 2):
        problems.append(loaded.problem(("model", "layers", last_index), f"{kind} needs an output of shape [classes] with at least 2 classes; the model's output has shape {list(out_shape)}"))


def _check_inline_data(loaded, data, input_shape, out_shape, loss, problems) -> int | None:
    inline = data["data"].get("inline")
    if inline is None:
        return None
    at = ("data", "inline")
    x_shape = _shape_of(inline["x"], at + ("x",), loaded, problems, "x")
    y_shape = _shape_of(inline["y"], at + ("y",), loaded, problems, "y")
    if x_shape is None or y_shape is None:
        return None
    n = x_shape[0]
    if x_shape[1:] != input_shape:
        problems.append(loaded.problem(at + ("x",), f"each example of x has shape {list(x_shape[1:])}, but model.input is {list(input_shape)}"))
    if y_shape[0] != n:
        problems.append(loaded.problem(at + ("y",), f"y has {y_shape[0]} rows but x has {n}; they must match"))
    kind = loss["type"]
    if kind == "sparse_categorical_crossentropy":
        if y_shape[1:] not in ((), (1,)):
            problems.append(loaded.problem(at + ("y",), f"sparse_categorical_crossentropy needs one integer class per example (y of shape [{n}]), found shape {list(y_shape)}"))
        else:
            flat = [v[0] if isinstance(v, list) else v for v in inline["y"]]
            for i, v in enumerate(flat):
                if v != int(v) or not 0 <= v < out_shape[0]:
                    problems.append(loaded.problem(at + ("y", i), f"expected a class index from 0 to {out_shape[0] - 1}, found {v!r}"))
                    break
    elif y_shape[1:] != out_shape and not (y_shape[1:] == () and out_shape == (1,)):
        problems.append(loaded.problem(at + ("y",), f"each target of y has shape {list(y_shape[1:])}, but the model's output has shape {list(out_shape)} and {kind} needs them equal"))
    elif kind in ("binary_crossentropy", "categorical_crossentropy"):
        for i, v in enumerate(_flatten(inline["y"])):
            if not 0 <= v <= 1:
                problems.append(loaded.problem(at + ("y",), f"{kind} needs targets between 0 and 1; found {v!r} (item {i} in reading order)"))
                break
    return n


def _flatten(value):
    if isinstance(value, list):
        for v in value:
            yield from _flatten(v)
    else:
        yield value


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
