"""Defaults: the checked spec is fully defaulted, from the schema's `default`s, and typed as it says.

Contract: `fill_defaults(SCHEMA, data)` returns `data` (already valid against the schema) with
every schema default filled in, every "name or {type, args}" choice made a mapping, and every
number in a field the schema types as integer (not number) a Python int: JSON Schema counts 20.0
as an integer, so `units: 1.0e+2` passes the schema, and JAX must then get 100, not 100.0 (a
non-integral 1.5 never gets here: the schema refuses it at its line and column); and every number
in a field typed number a Python float.
A default that editors must not write (see the schema's csv delimiter) is `x-default`.
`push_model_defaults(data)` copies `model.defaults` (and the built-in layer defaults) into every
layer whose type has the field and does not set it. Pure Python, no jax.
"""

from __future__ import annotations

import copy

from netspec import registry as R
from netspec.schema import SCHEMA, VALIDATOR


def resolve_ref(schema: dict) -> dict:
    """`schema` with its `$ref` (into the spec schema's `$defs`) merged in."""
    while "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**SCHEMA["$defs"][ref], **rest}
    return schema


def _valid(schema: dict, value) -> bool:
    return VALIDATOR.evolve(schema={**schema, "$defs": SCHEMA["$defs"]}).is_valid(value)


def _integral(schema: dict, value):
    """An integral float as an int where the schema types the value an integer (not a number), and
    an int as a float where it types it a number (not an integer): JAX takes a Python int as int32,
    so `clip_global_norm: 2147483648` would overflow inside the step, and 2147483648.0 does not."""
    types = schema.get("type", ())
    types = [types] if isinstance(types, str) else types
    if isinstance(value, float) and value.is_integer() and "integer" in types and "number" not in types:
        return int(value)
    if type(value) is int and "number" in types and "integer" not in types:
        return float(value)
    return value


def fill_defaults(schema: dict, value):
    """`value` with every schema default filled in, every name-or-mapping choice made a mapping and
    every integral float where an integer belongs made an int.

    jsonschema validates but never fills defaults (by design); this walks the same schema
    keywords that this project's schema uses: $ref, anyOf/oneOf (the branch the value takes),
    properties, additionalProperties, items, if/then/else, allOf. Called only on data that has
    passed the schema.
    """
    schema = resolve_ref(schema)
    value = _integral(schema, value)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            value = _fill_choice(schema[key], value)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, sub in properties.items():
            sub = resolve_ref(sub)
            if key not in value and ("default" in sub or "x-default" in sub):
                value[key] = copy.deepcopy(sub.get("default", sub.get("x-default")))
            if key in value:
                value[key] = fill_defaults(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                if key not in properties:
                    value[key] = fill_defaults(extra, value[key])
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [fill_defaults(schema["items"], item) for item in value]
    if "if" in schema:
        branch = schema.get("then" if _valid(schema["if"], value) else "else")
        if branch is not None:
            value = fill_defaults(branch, value)
    for sub in schema.get("allOf", []):
        value = fill_defaults(sub, value)
    return value


def _fill_choice(branches: list, value):
    """The value filled by the branch it takes; a bare name takes the mapping branch as {type: name}."""
    if isinstance(value, str):
        for branch in map(resolve_ref, branches):
            if branch.get("type") == "object" and "type" in branch.get("properties", {}) and _valid(branch, {"type": value}):
                return fill_defaults(branch, {"type": value})
    for branch in map(resolve_ref, branches):
        if _valid(branch, value):
            return fill_defaults(branch, value)
    return value


_LAYER_FIELD_DEFAULTS = {"activation": "linear", "kernel_init": "glorot_uniform", "bias_init": "zeros"}


def push_model_defaults(data: dict) -> None:
    """Copy `model.defaults` (over the built-in activation, kernel_init, bias_init) into every layer
    whose type has the field and does not set it."""
    model = data["model"]
    defaults = {**_LAYER_FIELD_DEFAULTS, **model.get("defaults", {})}
    for layer in model["layers"]:
        fields = R.LAYERS[layer["type"]].fields
        for key, value in defaults.items():
            if key in fields and key not in layer:
                layer[key] = copy.deepcopy(value)
