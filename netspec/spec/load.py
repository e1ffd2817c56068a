"""Load a spec: YAML text -> plain data plus the position of every key and value.

Contract: `load(path, overrides)` returns a `Loaded`: `data` (dicts, lists, str, int, float, bool,
None), and `where(path)` giving the `Problem` position of any key path. Nothing here knows what a
spec means; that is `check`'s job. A spec file is untrusted text, so loading is bounded:

- only the standard YAML tags (no Python objects, no custom tags);
- duplicate keys are an error (PyYAML would silently keep the last one);
- limits on file size, nesting depth and the number of values after alias expansion, so a
  "billion laughs" file is refused quickly and with little memory;
- text must be UTF-8;
- numbers must be finite, and integers fit in 64 bits.

Scalars are read with the YAML 1.2 core schema, as JSON tools, editors (yaml-language-server),
ruamel.yaml and jsonargparse read them, not PyYAML's YAML 1.1: `1e-3` is a number, `no`, `yes`,
`on` and `off` are strings, `0777` is 777 (octal is `0o777`), `1_000` and `12:30` are strings,
and only `true`/`false` (any case as YAML 1.2 lists) are booleans. `dump` writes YAML that both
YAML 1.2 and 1.1 readers read back as the same data (it quotes any string either would misread).

`--set key.path=value` overrides are applied here, each value parsed as a YAML scalar or flow
list/map, with the override itself recorded as the position of what it set. What null means at a
key, and which keys exclude each other, is the schema's to say (`OverrideRules`; `load` uses
`netspec.spec.overrides`): `--set key=null` removes a key that does not take null, and
setting one key of a mutually exclusive group (train.steps / train.epochs) removes the others.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import yaml

from netspec.errors import Problem, SpecError
from netspec.spec.fields import KEY_PATH

MAX_FILE_BYTES = 2 * 1024 * 1024


MAX_DEPTH = 64


MAX_VALUES = 200_000  # after alias expansion


# The YAML 1.2 core schema's plain-scalar rules (https://yaml.org/spec/1.2.2/#1023-core-schema),
# in the order they are tried: the first whose pattern matches gives the tag.
_CORE = "tag:yaml.org,2002:"


_CORE_RESOLVERS = [
    ("null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
    ("merge", r"^<<$", "<"),  # not YAML 1.2; resolved so that the message can say merge keys are not supported
]


def _core_resolvers() -> dict[str, list[tuple[str, re.Pattern[str]]]]:
    """`yaml_implicit_resolvers` for PyYAML's Resolver mechanism: first character -> [(tag, regex)]."""
    table: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
    for name, pattern, first in _CORE_RESOLVERS:
        for char in list(first) + ([""] if name == "null" else []):
            table.setdefault(char, []).append((_CORE + name, re.compile(pattern)))
    return table


_CORE_TABLE = _core_resolvers()


_STANDARD_TAGS = {
    "tag:yaml.org,2002:" + t
    for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "binary", "merge")
}


Key = tuple[str | int, ...]  # a key path: ("model", "layers", 2, "units")


Position = tuple[str, int | None, int | None]  # (source, 1-based line, column): a file, or the --set a value came from


class OverrideRules(NamedTuple):
    """What the spec's schema says about a `--set`: both take the data as it stands and a key path."""

    accepts_null: Callable[[Any, Key], bool]  # null is a value of this key (else `=null` removes it)
    exclusive_with: Callable[[Any, Key], tuple[str, ...]]  # sibling keys that setting this one removes


NO_RULES = OverrideRules(lambda data, path: True, lambda data, path: ())


@dataclass
class Loaded:
    """A parsed spec: the data, and where each key path came from."""

    source: str
    data: Any
    positions: dict[Key, Position] = field(default_factory=dict)
    key_positions: dict[Key, Position] = field(default_factory=dict)

    def where(self, path: Key, *, key: bool = False) -> Position:
        """The position of the value at `path` (or of its key), falling back to the nearest parent."""
        table = self.key_positions if key else self.positions
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if key and p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), (self.source, 1, 1))

    def problem(self, path: Key, message: str, *, key: bool = False) -> Problem:
        source, line, col = self.where(path, key=key)
        return Problem(source, line, col, json_path(path), message)


def json_path(path: Key) -> str:
    """`("model", "layers", 2, "units")` -> `$.model.layers[2].units`."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "." in str(part):  # a sweep's dotted key is one key: $.sweep['optimizer.learning_rate']
            out += f"[{_cut(str(part))!r}]"
        else:
            out += f".{_cut(str(part))}"  # a hostile key stays one short line
    return out


def load(path: str | Path, overrides: Sequence[str] = (), rules: OverrideRules | None = None) -> Loaded:
    """Read and parse a spec file, then apply `--set` overrides with `rules` (default: the
    schema's, `netspec.spec.overrides`). Raises SpecError."""
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecError(
                [
                    Problem(
                        source,
                        None,
                        None,
                        "$",
                        f"the file is {size} bytes; a spec may be at most {MAX_FILE_BYTES} bytes",
                    )
                ]
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError([Problem(source, None, None, "$", "no such file")]) from None
    except IsADirectoryError:
        raise SpecError([Problem(source, None, None, "$", "this is a directory, not a spec file")]) from None
    except OSError as e:
        raise SpecError([Problem(source, None, None, "$", f"cannot read the file ({e.strerror})")]) from None
    loaded = parse(raw, source)
    if not overrides:
        return loaded
    if rules is None:
        from netspec.spec.overrides import accepts_null, exclusive_with

        rules = OverrideRules(accepts_null, exclusive_with)
    for text in overrides:
        apply_override(loaded, text, rules)
    return loaded


def parse(raw: bytes | str, source: str) -> Loaded:
    """Parse YAML text into a `Loaded`. Raises SpecError with the position of the first syntax error."""
    text = _decode(raw, source) if isinstance(raw, bytes) else raw
    node = _compose(text, source)
    if node is None:
        raise SpecError(
            [
                Problem(
                    source,
                    1,
                    1,
                    "$",
                    "the file is empty; a spec is a mapping with name, model, data, loss, optimizer and train",
                )
            ]
        )
    loaded = Loaded(source, None)
    builder = _Builder(loaded)
    builder.check_expansion(node)
    loaded.data = builder.build(node, (), 0)
    return loaded


def _decode(raw: bytes, source: str) -> str:
    """The file's bytes as UTF-8 text. Raises SpecError at the first byte that is not."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _line_col(raw[: e.start].decode("utf-8"))  # the text before the bad byte is valid
        raise SpecError(
            [
                Problem(
                    source,
                    line,
                    col,
                    "$",
                    f"the file is not UTF-8 text (byte 0x{raw[e.start]:02x}); save it as UTF-8",
                )
            ]
        ) from None


def _compose(text: str, source: str) -> yaml.Node | None:
    """The YAML node graph of `text` (None for an empty document), composed within the bounds.
    Raises SpecError with the position of the first syntax error."""
    try:
        loader = _BoundedLoader(text)  # PyYAML's reader checks every character here
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except _Refused as e:
        raise SpecError([Problem(source, *e.at, "$", e.message)]) from None
    except yaml.reader.ReaderError as e:  # a control character: PyYAML gives its index, not a mark
        line, col = _line_col(text[: e.position])
        raise SpecError(
            [
                Problem(
                    source,
                    line,
                    col,
                    "$",
                    f"the character U+{e.character:04X} is not allowed in YAML text; remove it "
                    "(a spec is UTF-8 text: is this file UTF-16 or binary?)",
                )
            ]
        ) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at: tuple[int | None, int | None] = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise SpecError([Problem(source, *at, "$", f"YAML syntax error: {_syntax_message(e)}")]) from None
    except yaml.YAMLError as e:
        raise SpecError([Problem(source, None, None, "$", f"YAML syntax error: {e}")]) from None


def _line_col(before: str) -> tuple[int, int]:
    """The 1-based line and column just after `before`, counting lines as YAML does (a line ends at
    CR LF, LF, CR, NEL, U+2028 or U+2029), as PyYAML's marks count them."""
    lines = re.split("\r\n|[\r\n\x85\u2028\u2029]", before)
    return len(lines), len(lines[-1]) + 1


def _syntax_message(e: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem, where its context began, and a hint at the usual cause."""
    message = e.problem or e.context or "invalid YAML"
    cm, pm = e.context_mark, e.problem_mark
    if e.context and e.problem and cm and (not pm or (cm.line, cm.column) != (pm.line, pm.column)):
        message += f" ({e.context} that starts at line {cm.line + 1}, column {cm.column + 1})"
    context, problem = e.context or "", e.problem or ""
    if "'\\t'" in problem:
        message += "; YAML indents with spaces only: replace the tab with spaces"
    elif "flow sequence" in context or "flow mapping" in context:
        message += "; is a closing " + ("']'" if "flow sequence" in context else "'}'") + " or a ',' missing?"
        if re.search(r"but got '[\[\]{}]'", problem):  # a bracket where a plain key or value went on
            message += (
                " Inside [ ] or { }, a key or value that holds brackets or commas must be quoted, "
                "as in {'model.layers[0].units': [2, 4]}"
            )
    elif "quoted scalar" in context:
        message += "; is a closing quote missing?"
    elif "expected ':'" in problem and "simple key" in context:
        message += "; is the ':' after this key missing? (a key on one line may be at most 1024 characters)"
    elif "<block end>" in problem or "mapping values are not allowed" in problem:
        message += "; check the indentation of this line and the lines above it (keys of one mapping start in the same column), and quote values that contain ': '"
    return message


class _Refused(Exception):
    def __init__(self, at: tuple[int | None, int | None], message: str) -> None:
        self.at, self.message = at, message


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's resolvers that bounds depth and node count while
    composing: PyYAML composes recursively (a thousand nested brackets end in RecursionError) and
    builds every node of a big flat file before anyone could count them (minutes and gigabytes).
    `_Builder` reports the usual cases with their key path; this stops only what it could not
    reach in time."""

    yaml_implicit_resolvers = _CORE_TABLE
    depth = nodes = 0

    def _next_position(self) -> tuple[int | None, int | None]:
        """The 1-based line and column where the next event starts."""
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML's stubs leave Parser.peek_event untyped
        mark = event.start_mark
        return (mark.line + 1, mark.column + 1) if mark else (None, None)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.depth += 1
        self.nodes += 1
        try:
            if self.depth > MAX_DEPTH + 2:
                raise _Refused(self._next_position(), f"the spec nests deeper than {MAX_DEPTH} levels")
            if self.nodes > MAX_VALUES:
                raise _Refused(
                    self._next_position(),
                    f"the spec holds more than {MAX_VALUES} values, so it is refused; "
                    "large data belongs in a data file (data.npz, data.csv)",
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_KINDS: dict[type[yaml.Node], str] = {yaml.MappingNode: "mapping", yaml.SequenceNode: "list"}


class _Builder:
    """Turns a composed YAML node graph into plain data, recording positions and enforcing limits."""

    def __init__(self, loaded: Loaded) -> None:
        self.loaded = loaded
        self.count = 0
        self.open: set[int] = set()  # the collections being built: meeting one again is a recursive alias

    def check_expansion(self, root: yaml.Node) -> None:
        """Refuse a document whose aliases expand past MAX_VALUES, counting each node once (fast)."""
        sizes: dict[int, int] = {}

        def size(node: yaml.Node, depth: int) -> int:
            if id(node) in sizes:
                return sizes[id(node)]
            if depth > MAX_DEPTH:
                return 1  # a deep file: `build` reports it with its path
            sizes[id(node)] = 1  # provisional, so a recursive alias ends here; `build` reports it as too deep
            children = (
                [x for pair in node.value for x in pair]
                if isinstance(node, yaml.MappingNode)
                else (node.value if isinstance(node, yaml.SequenceNode) else [])
            )
            sizes[id(node)] = n = 1 + sum(size(c, depth + 1) for c in children)
            return n

        total = size(root, 0)
        if total <= MAX_VALUES:
            return
        node = root
        path: Key = ()
        if isinstance(root, yaml.MappingNode):
            node, path = next(
                ((v, (str(k.value),)) for k, v in root.value if sizes.get(id(v), 0) > MAX_VALUES), (root, ())
            )
        self.fail(
            node,
            path,
            f"the spec expands to {total} values through YAML aliases (or sheer size); a spec may hold at most {MAX_VALUES}, so it is refused",
        )

    def fail(self, node: yaml.Node, path: Key, message: str) -> NoReturn:
        if path and path[-1] == "<key>":
            path = path[:-1]
        raise SpecError(
            [
                Problem(
                    self.loaded.source, node.start_mark.line + 1, node.start_mark.column + 1, json_path(path), message
                )
            ]
        )

    def build(self, node: yaml.Node, path: Key, depth: int) -> Any:
        """The plain data of `node` at `path`, its position and its keys' recorded."""
        self.admit(node, path, depth)
        self.open.add(id(node))
        self.loaded.positions[path] = (self.loaded.source, node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out = self.build_mapping(node, path, depth)
            self.open.discard(id(node))
            return out
        if isinstance(node, yaml.SequenceNode):
            items = [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
            self.open.discard(id(node))
            return items
        return self.build_scalar(node, path)

    def admit(self, node: yaml.Node, path: Key, depth: int) -> None:
        """Refuse a node past the limits (values, depth), with a tag other than the standard ones
        or its kind's, or a collection that holds an alias to itself."""
        self.count += 1
        if self.count > MAX_VALUES:
            self.fail(
                node,
                path,
                f"the spec expands to more than {MAX_VALUES} values (through YAML aliases or sheer size); refusing to load it",
            )
        if depth > MAX_DEPTH:
            self.fail(node, path, f"the spec nests deeper than {MAX_DEPTH} levels")
        if node.tag not in _STANDARD_TAGS:
            self.fail(
                node,
                path,
                f"the YAML tag {node.tag!r} is not allowed; a spec may use only plain YAML values (no Python objects or custom tags)",
            )
        kind = _KINDS.get(type(node))
        if kind and node.tag != "tag:yaml.org,2002:" + {"mapping": "map", "list": "seq"}[kind]:
            self.fail(node, path, f"the YAML tag {node.tag!r} does not fit a {kind}")
        if kind and id(node) in self.open:
            self.fail(node, path, f"a recursive alias: this {kind} holds an alias to itself, so it would never end")

    def build_mapping(self, node: yaml.MappingNode, path: Key, depth: int) -> dict[str, Any]:
        """A mapping's plain data: string keys, each once, with their positions."""
        out = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.fail(key_node, path, "YAML merge keys ('<<') are not supported in a spec; write the keys out")
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(key_node, path, "a key must be a plain scalar, not a list or mapping")
            key = self.build(key_node, path + ("<key>",), depth + 1)
            if not isinstance(key, str):  # a spec is JSON data: its keys are strings (`5:` is the key "5")
                key = str(key).lower() if isinstance(key, bool) else str(key)
            if key in out:
                self.fail(
                    key_node,
                    path + (key,),
                    f"duplicate key {key!r} (also at line {self.loaded.key_positions[path + (key,)][1]}); a key may appear once",
                )
            self.loaded.key_positions[path + (key,)] = (
                self.loaded.source,
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            out[key] = self.build(value_node, path + (key,), depth + 1)
        self.loaded.positions.pop(path + ("<key>",), None)
        return out

    def build_scalar(self, node: yaml.Node, path: Key) -> Any:
        """A scalar's value under the YAML 1.2 core schema: a finite number, integers within 64 bits."""
        try:
            value = _scalar(node)
        except ValueError:  # `!!int x`, `!!bool yes`, an empty `!!float`, or more digits than Python converts
            if not (node.tag.endswith(":int") and node.value.lstrip("+-").isdigit()):
                self.fail(
                    node,
                    path,
                    f"cannot read {_cut(node.value)!r} as {node.tag.rsplit(':', 1)[-1]} (YAML 1.2 core schema)",
                )
            value = math.inf
        if (isinstance(value, float) and not math.isfinite(value)) or (
            type(value) is int and not -(2**63) <= value < 2**63
        ):
            what = (
                "not a number"
                if value != value
                else "infinite"
                if node.value.lower().lstrip("+-") == ".inf"
                else "too large"
            )
            self.fail(
                node,
                path,
                f"the number {_cut(node.value)} is {what}; a spec's numbers must be finite, and integers at most 2**63 - 1 in size",
            )
        return value


def _scalar(node: yaml.Node) -> str | int | float | bool | None:
    """A scalar node's value under the YAML 1.2 core schema (its tag resolved by `_CORE_RESOLVERS`
    or written explicitly). Raises ValueError for text its tag cannot hold."""
    tag, text = node.tag[len(_CORE) :], str(node.value)
    if tag == "null":
        if text not in ("~", "null", "Null", "NULL", ""):
            raise ValueError(text)
        return None
    if tag == "bool":
        if text not in ("true", "True", "TRUE", "false", "False", "FALSE"):
            raise ValueError(text)
        return text.lower() == "true"
    if tag == "int":
        if re.fullmatch(r"[-+]?[0-9]+", text):
            return int(text, 10)  # 0777 is 777: YAML 1.2 writes octal as 0o777
        if re.fullmatch(r"0o[0-7]+|0x[0-9a-fA-F]+", text):
            return int(text[2:], 8 if text[1] == "o" else 16)
        raise ValueError(text)
    if tag == "float":
        if re.fullmatch(r"[-+]?\.(?:inf|Inf|INF)", text):
            return -math.inf if text.startswith("-") else math.inf
        if re.fullmatch(r"\.(?:nan|NaN|NAN)", text):
            return math.nan
        if re.fullmatch(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?", text):
            return float(text)
        raise ValueError(text)
    return text  # str, and timestamp and binary, which stay as written


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes every string a YAML 1.2 core-schema reader (netspec, editors) or a
    YAML 1.1 reader (PyYAML) would read as something else: `no`, `1e3`, `0o7`, `12:30`."""

    def represent_str(self, data: str) -> yaml.ScalarNode:
        core = next((tag for tag, regex in _CORE_TABLE.get(data[:1], []) if regex.match(data)), None)
        # PyYAML's stubs leave BaseResolver.resolve untyped
        if core is not None or self.resolve(yaml.ScalarNode, data, (True, False)) != _CORE + "str":  # type: ignore[no-untyped-call]
            return self.represent_scalar(_CORE + "str", data, style="'")
        return super().represent_str(data)


_Dumper.add_representer(str, _Dumper.represent_str)


def dump(data: Any) -> str:
    """Plain data (dicts, lists, scalars) as YAML text that `parse` reads back equal. Non-ASCII
    characters are escaped: PyYAML writes U+0085 and U+2028/9 raw into quoted strings, where a
    reader folds them into a space."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=100, allow_unicode=False)


def _cut(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


_OVERRIDE = re.compile(rf"^({KEY_PATH})=(.*)$", re.S)


def split_override(text: str) -> tuple[Key, str]:
    """`model.layers[0].units=5` or `model.layers.0.units=5` -> (("model", "layers", 0, "units"), "5")."""
    m = _OVERRIDE.match(text)
    if not m:
        raise SpecError(
            [
                Problem(
                    f"--set {text}",
                    None,
                    None,
                    "$",
                    "expected --set dotted.key=value, e.g. --set optimizer.learning_rate=0.01",
                )
            ]
        )
    parts: list[str | int] = []
    for piece in re.findall(r"[^.\[\]]+|\[\d+\]", m.group(1)):
        if piece.startswith("["):
            parts.append(int(piece[1:-1]))
        else:
            parts.append(int(piece) if piece.isdigit() else piece)
    return tuple(parts), m.group(2)


def apply_override(loaded: Loaded, text: str, rules: OverrideRules = NO_RULES) -> None:
    """Apply one `--set key.path=value` to `loaded` in place: set the value, or with null remove
    the key where `rules` say it takes no null, and remove the keys `rules` say it excludes."""
    path, value_text = split_override(text)
    origin = f"--set {text}"
    try:
        sub = parse(value_text if value_text.strip() else "null", origin)
    except SpecError as e:
        raise SpecError(
            [Problem(origin, None, None, json_path(path), f"cannot parse the value: {e.problems[0].message}")]
        ) from None
    parent = loaded.data
    for i, part in enumerate(path[:-1]):
        here = path[: i + 1]
        if isinstance(parent, dict):
            if part not in parent:  # created by this override: its problems point here
                loaded.positions[here] = loaded.key_positions[here] = (origin, None, None)
            parent = parent.setdefault(part, {} if isinstance(path[i + 1], str) else [])
        elif isinstance(parent, list) and isinstance(part, int) and part < len(parent):
            parent = parent[part]
        else:
            raise SpecError([Problem(origin, None, None, json_path(here), _no_such_place(parent, part))])
    last = path[-1]
    if not (isinstance(parent, dict) or (isinstance(parent, list) and isinstance(last, int) and last < len(parent))):
        raise SpecError([Problem(origin, None, None, json_path(path), _no_such_place(parent, last))])
    if sub.data is None and not rules.accepts_null(loaded.data, path):
        _remove(loaded, parent, path)
        loaded.key_positions[path[:-1]] = (origin, None, None)  # "missing required key" now points at this --set
        return
    if isinstance(parent, dict):
        for other in rules.exclusive_with(loaded.data, path):
            if other in parent:
                _remove(loaded, parent, path[:-1] + (other,))
        parent[last] = sub.data
    elif isinstance(last, int):  # a list item (its index checked above)
        parent[last] = sub.data
    _forget(loaded, path)
    for sub_path in sub.positions:
        loaded.positions[path + sub_path] = (origin, None, None)
    loaded.key_positions[path] = (origin, None, None)


def _remove(loaded: Loaded, parent: dict[str | int, Any] | list[Any], path: Key) -> None:
    """Delete the key (or list item) at `path` from `parent`, with its positions; the items after a
    deleted list item move up one place, their positions with them."""
    last = path[-1]
    if isinstance(parent, dict):
        parent.pop(last, None)
    elif isinstance(last, int):
        del parent[last]
    _forget(loaded, path)
    if isinstance(parent, list) and isinstance(last, int):
        n = len(path) - 1
        for table in (loaded.positions, loaded.key_positions):
            moved: dict[Key, tuple[Key, Position]] = {}  # old key path -> (new key path, position)
            for k, v in table.items():
                index = k[n] if len(k) > n else None
                if k[:n] == path[:-1] and isinstance(index, int) and index > last:
                    moved[k] = (k[:n] + (index - 1,) + k[n + 1 :], v)
            for k in moved:
                del table[k]
            table.update(dict(moved.values()))


def _forget(loaded: Loaded, path: Key) -> None:
    """Drop the positions of `path` and everything under it."""
    for table in (loaded.positions, loaded.key_positions):
        for p in [k for k in table if k[: len(path)] == path]:
            del table[p]


def _no_such_place(parent: Any, part: str | int) -> str:
    if isinstance(parent, list):
        return f"there is no item {part!r} here: this is a list of {len(parent)} items (indices 0 to {len(parent) - 1})"
    return f"cannot set {part!r} here: the value here is {parent!r}, not a mapping"
