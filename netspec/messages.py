"""Schema errors worded for a person: jsonschema's `ValidationError`s -> `Problem`s.

Contract: `schema_problems(loaded)` validates the loaded data against the spec's JSON Schema
(`netspec.schema.SCHEMA`) and returns every violation as a `Problem` with file:line:col and key
path, saying what was expected, what was found and, where a name is close, "did you mean".
`closest` / `did_you_mean` are the one spelling-suggestion rule that every message uses.
Pure Python, no jax.
"""

from __future__ import annotations

import difflib

import jsonschema

from netspec.errors import Problem
from netspec.load import Loaded
from netspec.schema import SCHEMA, VALIDATOR
from netspec.defaults import resolve_ref

def schema_problems(loaded: Loaded) -> list[Problem]:
    """Every schema violation, worded for a person, in file order."""
    problems: list[Problem] = []
    for error in VALIDATOR.iter_errors(loaded.data):
        problems.extend(_describe(error, loaded))
    unique = {(p.path, p.message): p for p in problems}
    return sorted(unique.values(), key=lambda p: (p.line or 0, p.col or 0, p.path))


def found(value) -> str:
    if value is None or isinstance(value, bool):
        return {None: "nothing (null)", True: "true (boolean)", False: "false (boolean)"}[value]
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
    close = closest(word, options)
    return f"; did you mean {close!r}?" if close else ""


def closest(word, options) -> str | None:
    """The option nearest to `word` (a typo of it), or None; a swap of two letters counts as one edit."""
    if not isinstance(word, str):
        return None
    close = difflib.get_close_matches(word, [str(o) for o in options], n=3, cutoff=0.6)
    return min(close, key=lambda o: _edits(word, o)) if close else None  # ties keep difflib's order


def _edits(a: str, b: str) -> int:
    """Optimal-string-alignment distance: 'adma' is one edit from 'adam', two from 'adamax'."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def _describe(error: jsonschema.ValidationError, loaded: Loaded) -> list[Problem]:
    path = tuple(error.absolute_path)
    v, value, schema = error.validator, error.instance, error.schema
    if v == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extras = [k for k in value if k not in schema.get("properties", {})]
        return [
            loaded.problem(path + (k,), f"unknown key {found(k).rsplit(' (', 1)[0]}{did_you_mean(k, allowed)} (valid keys here: {', '.join(allowed)})", key=True)
            for k in extras
        ]
    if v == "required":
        missing = error.validator_value
        keys = [k for k in missing if k not in value]
        if schema.get("additionalProperties") is False:
            # a misspelt required key is reported once, as an unknown key with its "did you mean"
            props = schema.get("properties", {})
            typos = {closest(x, props) for x in value if x not in props}
            keys = [k for k in keys if k not in typos]
        return [loaded.problem(path, f"missing required key {k!r}", key=True) for k in keys]
    if v in ("enum", "const"):
        options = error.validator_value if v == "enum" else [error.validator_value]
        listed = ", ".join(str(o) for o in options)
        if len(options) > 30:
            listed = f"{len(options)} names, see `netspec schema`"
        return [loaded.problem(path, f"expected one of {listed}; found {found(value)}{did_you_mean(value, options)}")]
    if v == "type":
        either = _if_branch(error)  # a "name or mapping" style choice: say both forms
        if either is not None:
            alt, doc = either
            more = f"; this is {doc}" if doc else ""
            return [loaded.problem(path, f"expected {_expected_type(alt)} or {_expected_type(error.validator_value)}, found {found(value)}{more}")]
        return [loaded.problem(path, f"expected {_expected_type(error.validator_value)}, found {found(value)}")]
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[v]
        return [loaded.problem(path, f"expected a value {op} {error.validator_value}, found {found(value)}")]
    if v in ("minItems", "maxItems"):
        word = "at least" if v == "minItems" else "at most"
        return [loaded.problem(path, f"expected a list of {word} {error.validator_value} items, found {len(value)}")]
    if v in ("minLength", "maxLength"):
        word = "at least" if v == "minLength" else "at most"
        return [loaded.problem(path, f"expected {word} {error.validator_value} characters, found {len(value)}")]
    if v == "minProperties":
        return [loaded.problem(path, f"expected a mapping with at least {error.validator_value} key(s), found an empty one")]
    if v == "uniqueItems":
        return [loaded.problem(path, "expected each item once; this list repeats an item")]
    if v == "pattern":
        return [loaded.problem(path, f"expected {schema.get('x-expected', 'text matching ' + error.validator_value)}; found {found(value)}")]
    if v == "not":
        return [loaded.problem(path, f"{found(value)} is not allowed here")]
    if v == "oneOf" and path[-1:] == ("train",):
        if not isinstance(value, dict):
            return []  # not a mapping: the type error says so
        both = "steps" in value and "epochs" in value
        return [loaded.problem(path, "give either steps or epochs, not both" if both else "missing required key 'steps' (or 'epochs')", key=True)]
    if v in ("oneOf", "anyOf"):
        best = jsonschema.exceptions.best_match(error.context)
        return _describe(best, loaded) if best is not None else [loaded.problem(path, error.message)]
    return [loaded.problem(path, error.message)]


def _if_branch(error: jsonschema.ValidationError):
    """For a type error in the `else` of an `if: {type: T}`: (T, the choice's description); else None."""
    if list(error.schema_path)[-2:] != ["else", "type"]:
        return None
    s = SCHEMA
    for part in list(error.schema_path)[:-2]:
        while isinstance(s, dict) and part not in s and "$ref" in s:
            s = resolve_ref(s)
        try:
            s = s[part]
        except (KeyError, IndexError, TypeError):
            return None
    s = resolve_ref(s) if isinstance(s, dict) else {}
    alt = s.get("if", {}).get("type")
    return (alt, s.get("description", "")) if alt else None


