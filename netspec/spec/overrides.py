"""What a `--set key=value` override means beyond putting the value there, read off the schema.

Contract: `accepts_null` and `exclusive_with` are the `load.OverrideRules` that `load.load` applies `--set` overrides
with, so the command line can say what the file can:

- `--set key=null` removes the key (its default applies again, or a required key is reported
  missing at the `--set`), unless the key itself accepts null, as `optimizer.momentum` does:
  then it is null, as `key: null` in the file would be.
- setting one key of a mutually exclusive group replaces the others: the schema states each
  group as a `oneOf` whose branches each require one key (`train.steps` / `train.epochs`; the data
  sources), so `--set train.steps=50` on a spec with `train.epochs` trains 50 steps.

Pure Python (no jax): `validate` uses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from netspec.spec.fields import Schema
from netspec.spec.schema import SCHEMA, VALIDATOR

Key = tuple[str | int, ...]  # a key path: ("model", "layers", 2, "units") (as netspec.spec.load names it)


def _resolved(schema: Any) -> Schema:
    while isinstance(schema, dict) and "$ref" in schema:
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**SCHEMA["$defs"][schema["$ref"].split("/")[-1]], **rest}
    return schema if isinstance(schema, dict) else {}


def _branches(schema: Schema, instance: Any) -> Iterator[Schema]:
    """`schema` and every sub-schema that applies to the same instance (allOf, anyOf, oneOf, the
    if/then/else branch the instance takes; a branch for another `type` than the instance's is
    left out)."""
    schema = _resolved(schema)
    yield schema
    subs = [*schema.get("allOf", []), *schema.get("anyOf", []), *schema.get("oneOf", [])]
    if "if" in schema:
        taken = instance is not None and VALIDATOR.evolve(schema={**schema["if"], "$defs": SCHEMA["$defs"]}).is_valid(
            instance
        )
        subs += (
            [schema["then"]]
            if taken and "then" in schema
            else [schema["else"]]
            if not taken and "else" in schema
            else []
        )
    for sub in subs:
        sub = _resolved(sub)
        wanted = sub.get("properties", {}).get("type", {}).get("const")
        if wanted is not None and isinstance(instance, dict) and instance.get("type") not in (None, wanted):
            continue
        yield from _branches(sub, instance)


def _schemas_at(path: Key, data: Any) -> list[Schema]:
    """Every schema that may govern the value at `path` of `data` (the spec as it stands)."""
    found, instance = [SCHEMA], data
    for part in path:
        children = []
        for schema in found:
            for branch in _branches(schema, instance):
                if isinstance(part, int) and isinstance(branch.get("items"), dict):
                    children.append(branch["items"])
                elif isinstance(part, str) and part in branch.get("properties", {}):
                    children.append(branch["properties"][part])
                elif isinstance(part, str) and isinstance(branch.get("additionalProperties"), dict):
                    children.append(branch["additionalProperties"])
        found = children
        try:
            instance = instance[part]
        except (KeyError, IndexError, TypeError):
            instance = None
    return found


def accepts_null(data: Any, path: Key) -> bool:
    """Whether null is a value the key at `path` takes (rather than "no value": removal)."""
    schemas = _schemas_at(path, data)
    return bool(schemas) and any(
        VALIDATOR.evolve(schema={**_resolved(s), "$defs": SCHEMA["$defs"]}).is_valid(None) for s in schemas
    )


def exclusive_with(data: Any, path: Key) -> tuple[str, ...]:
    """The keys beside `path[-1]` that it replaces: the other keys of its mutually exclusive group."""
    if not path or not isinstance(path[-1], str):
        return ()
    parent_path, key = path[:-1], path[-1]
    parent = data
    for part in parent_path:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            parent = None
    others: set[str] = set()
    for schema in _schemas_at(parent_path, data):
        for branch in _branches(schema, parent):
            group = [b.get("required", []) for b in map(_resolved, branch.get("oneOf", []))]
            if group and all(len(r) == 1 for r in group) and [key] in group:
                others.update(r[0] for r in group if r[0] != key)
    return tuple(sorted(others))


def takes_whole_numbers_only(data: Any, path: Key) -> bool:
    """Whether the key at `path` takes whole numbers and no fractions (`units`, `batch_size`): a
    random search's uniform draw (floats) cannot give it a value."""
    schemas = [{**_resolved(s), "$defs": SCHEMA["$defs"]} for s in _schemas_at(path, data)]
    validators = [VALIDATOR.evolve(schema=s) for s in schemas]
    return any(v.is_valid(2) for v in validators) and not any(v.is_valid(2.5) for v in validators)
