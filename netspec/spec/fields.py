"""The building blocks of the registries: each call declares one spec field as a JSON Schema property.

Contract. `number`, `integer`, `boolean`, `choice` and `pair` return the JSON Schema of one field:
its type and bounds, its `default` (so a field's default is stated once, where a registry declares
the field), its description, and an example for editors where there is no default. `SIZE` and
`SHAPE` are the schema of a size and of a shape; `INT32` bounds every integer (the compiled
program's integers are 32-bit), `MAX_WIDTH` a layer's units or filters. `as_pair` reads an int or
[height, width] value; `defaults_of` lists the defaults of a table of fields. `choices`, `layers`
and `schema` declare the spec's fields with these; nothing here knows a spec's keys. Pure Python,
no jax.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Schema = dict[str, Any]  # one JSON Schema object, as the registries declare a field and the schema is built


INT32 = (
    2**31
)  # integers are 32-bit in the compiled program (JAX without x64): step counts, sizes and seeds past it would wrap or overflow there


def _scalar(
    kind: str, default: object, nullable: bool, doc: str, example: object = None, **bounds: float | None
) -> Schema:
    s: Schema = {"type": ["null", kind] if nullable else kind}
    if default is not None or nullable:
        s["default"] = default
    s.update({k: v for k, v in bounds.items() if v is not None})
    if doc:
        s["description"] = doc
    if example is not None and "default" not in s:
        s["examples"] = [example]
    return s


def number(
    default: float | None = None,
    *,
    minimum: float | None = None,
    exclusive_minimum: float | None = None,
    maximum: float | None = None,
    nullable: bool = False,
    doc: str = "",
    example: float | None = None,
) -> Schema:
    return _scalar(
        "number", default, nullable, doc, example, minimum=minimum, exclusiveMinimum=exclusive_minimum, maximum=maximum
    )


def integer(
    default: int | None = None,
    *,
    minimum: int = -INT32,
    maximum: int = INT32 - 1,
    nullable: bool = False,
    doc: str = "",
    example: int | None = None,
) -> Schema:
    return _scalar("integer", default, nullable, doc, example, minimum=minimum, maximum=maximum)


def boolean(default: bool, doc: str = "") -> Schema:
    return _scalar("boolean", default, False, doc)


def choice(names: Iterable[str], default: str | None = None, doc: str = "") -> Schema:
    s: Schema = {"type": "string", "enum": list(names)}
    if default is not None:
        s["default"] = default
    if doc:
        s["description"] = doc
    return s


# A dotted key path, as --set (load.split_override) and a sweep's keys write it: model.layers[0].units.
KEY_PATH = r"[A-Za-z_][\w\-]*(?:\.[\w\-]+|\[\d+\])*"


MAX_WIDTH = 1 << 20  # units or filters per layer: a typo of a few zeros is an error, not an hour of allocation


# Sizes are typed ["integer"], which means "integer": for "integer" an editor's completion writes a
# new item as 0, an invalid size, and with an item `default` it reuses a tab stop; for a list of
# types it leaves the item for the writer to fill.
SIZE: Schema = {"type": ["integer"], "minimum": 1, "maximum": INT32 - 1}


SHAPE: Schema = {"type": "array", "items": SIZE, "minItems": 1, "maxItems": 8}


def pair(default: int | None = None, *, minimum: int = 1, doc: str = "", example: int | None = None) -> Schema:
    """An int or a [height, width] pair (anyOf by JSON type, so each branch's error reads plainly)."""
    s: Schema = {
        "anyOf": [
            {"type": "integer", "minimum": minimum, "maximum": INT32 - 1},
            {
                "type": "array",
                "items": {"type": "integer", "minimum": minimum, "maximum": INT32 - 1},
                "minItems": 2,
                "maxItems": 2,
            },
        ]
    }
    if default is not None:
        s["default"] = default
    elif example is not None:
        s["examples"] = [example]
    if doc:
        s["description"] = doc
    return s


def as_pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def defaults_of(fields: Mapping[str, Schema]) -> dict[str, Any]:
    """The default value of every field that has one."""
    return {k: s["default"] for k, s in fields.items() if "default" in s}
