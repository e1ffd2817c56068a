"""What a spec may name: layers, activations, initializers, losses, metrics, optimizers, schedules.

Contract: each registry is a plain dict from the name a spec uses to that entry's arguments, as
JSON Schema properties with their defaults and descriptions; `ACTIVATION_DOCS`, `INITIALIZER_DOCS`,
`LOSS_DOCS`, `METRIC_DOCS` (and each `LayerKind.doc`) say what a name computes, wherever Keras or
PyTorch would lead a reader to assume otherwise: the README's tables and editors show them. This module is pure Python (no jax): the schema and
`validate` are built from it. The JAX side (`netspec.layers`, `netspec.compile`) keeps a dict with
the same keys; `tests/test_registry.py` proves the two agree, and that every optimizer's and
schedule's arguments here are exactly those of optax's own signature, with optax's defaults.

A layer entry also carries its shape rule: `shape(layer, in_shapes) -> out_shape` on shapes without
the batch axis, raising `ShapeMismatch` when the inputs cannot work. The rule must equal what
`jax.eval_shape` gives for the layer's apply; the registry test walks every layer to prove it.
"""

from __future__ import annotations

from typing import Mapping


INT32 = 2**31  # integers are 32-bit in the compiled program (JAX without x64): step counts, sizes and seeds past it would wrap or overflow there


def _scalar(kind: str, default, nullable: bool, doc: str, example=None, **bounds) -> dict:
    s: dict = {"type": ["null", kind] if nullable else kind}
    if default is not None or nullable:
        s["default"] = default
    s.update({k: v for k, v in bounds.items() if v is not None})
    if doc:
        s["description"] = doc
    if example is not None and "default" not in s:
        s["examples"] = [example]
    return s


def number(default=None, *, minimum=None, exclusive_minimum=None, maximum=None, nullable=False, doc="", example=None):
    return _scalar("number", default, nullable, doc, example, minimum=minimum, exclusiveMinimum=exclusive_minimum, maximum=maximum)


def integer(default=None, *, minimum=-INT32, maximum=INT32 - 1, nullable=False, doc="", example=None):
    return _scalar("integer", default, nullable, doc, example, minimum=minimum, maximum=maximum)


def boolean(default: bool, doc=""):
    return _scalar("boolean", default, False, doc)


def choice(names, default=None, doc=""):
    s: dict = {"type": "string", "enum": list(names)}
    if default is not None:
        s["default"] = default
    if doc:
        s["description"] = doc
    return s


MAX_WIDTH = 1 << 20  # units or filters per layer: a typo of a few zeros is an error, not an hour of allocation


# Sizes are typed ["integer"], which means "integer": for "integer" an editor's completion writes a
# new item as 0, an invalid size, and with an item `default` it reuses a tab stop; for a list of
# types it leaves the item for the writer to fill.
SIZE = {"type": ["integer"], "minimum": 1, "maximum": INT32 - 1}


SHAPE = {"type": "array", "items": SIZE, "minItems": 1, "maxItems": 8}


def pair(default=None, *, minimum=1, doc="", example=None):
    """An int or a [height, width] pair (anyOf by JSON type, so each branch's error reads plainly)."""
    s: dict = {"anyOf": [
        {"type": "integer", "minimum": minimum, "maximum": INT32 - 1},
        {"type": "array", "items": {"type": "integer", "minimum": minimum, "maximum": INT32 - 1}, "minItems": 2, "maxItems": 2},
    ]}
    if default is not None:
        s["default"] = default
    elif example is not None:
        s["examples"] = [example]
    if doc:
        s["description"] = doc
    return s


def as_pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def defaults_of(fields: Mapping[str, dict]) -> dict:
    """The default value of every field that has one."""
    return {k: s["default"] for k, s in fields.items() if "default" in s}
