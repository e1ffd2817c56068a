"""Defaults: the checked spec is fully defaulted, from the schema's `default`s.

Contract: `fill_defaults(SCHEMA, data)` returns `data` (already valid against the schema) with
every schema default filled in and every "name or {type, args}" choice made a mapping;
`push_model_defaults(data)` copies `model.defaults` (and the built-in layer defaults) into every
layer whose type has the field and does not set it. Pure Python, no jax.
"""

from __future__ import annotations

import copy

from netspec import registry as R
from netspec.schema import SCHEMA, VALIDATOR

def resolve_ref(schema: dict) -> dict:
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
    schema = resolve_ref(schema)
    if "if" in schema:
        if VALIDATOR.evolve(schema=schema["if"]).is_valid(value):
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
            sub = resolve_ref(sub)
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = fill_defaults(sub, value[key])
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [fill_defaults(schema["items"], item) for item in value]
    return value


_LAYER_FIELD_DEFAULTS = {"activation": "linear", "kernel_init": "glorot_uniform", "bias_init": "zeros"}


def push_model_defaults(data: dict) -> None:
    model = data["model"]
    defaults = {**_LAYER_FIELD_DEFAULTS, **model.get("defaults", {})}
    for layer in model["layers"]:
        fields = R.LAYERS[layer["type"]].fields
        for key, value in defaults.items():
            if key in fields and key not in layer:
                layer[key] = copy.deepcopy(value)


