"""Property-based: whatever text arrives, `load.parse` + `check.check` either return a `Spec` or
raise `SpecError` whose every problem says where it is. Nothing else escapes: no KeyError,
RecursionError or TypeError from a spec nobody anticipated, and no position outside the text.

Inputs: random YAML-ish text and bytes, random nested data as netspec's YAML writer (`load.dump`) writes it, and
mutations of every shipped spec (a key deleted, renamed or retyped, a value replaced by a random
scalar, list or mapping, a line duplicated, deleted or swapped, the text cut short).
About 3,450 cases in all (see EXAMPLES); the file runs in about 30 s on two cores.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import SHIPPED

from netspec.errors import NetspecError, SpecError
from netspec.spec.check import check
from netspec.spec.load import _Dumper, parse
from netspec.spec.types import Spec

TEXTS = {path.name: path.read_text() for path in SHIPPED}
SOURCE = "fuzz/spec.yaml"  # relative data paths resolve under a directory that does not exist

EXAMPLES = {"text": 800, "tokens": 800, "bytes": 300, "dumped": 300, "data_mutation": 800, "text_mutation": 450}


def fuzz_settings(name: str):
    return settings(
        max_examples=EXAMPLES[name],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


def lines_of(raw: str | bytes) -> list:
    """The lines as YAML counts them (and so the positions netspec reports): NEL, U+2028/9 and a
    lone CR break lines too."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return re.split("\r\n|[\r\n\x85\u2028\u2029]", text)


def parse_and_check(raw: str | bytes) -> Spec | None:
    """The property: a Spec, or a SpecError whose problems all have a place in `raw`."""
    try:
        spec = check(parse(raw, SOURCE))
    except SpecError as error:
        assert isinstance(error, NetspecError)
        assert error.problems, "a SpecError lists at least one problem"
        lines = lines_of(raw)
        for problem in error.problems:
            assert problem.source, problem
            assert problem.message and problem.path.startswith("$"), problem
            if problem.source == SOURCE:
                assert problem.line is not None and problem.col is not None, problem
                assert 1 <= problem.line <= len(lines) + 1, (problem, len(lines))
                assert 1 <= problem.col <= max(map(len, lines), default=0) + 2, problem
        return None
    assert isinstance(spec, Spec)
    return spec


# -- (a) random text ----------------------------------------------------------------------------

YAML_CHARS = (
    list(" \n\t:-[]{},&*!|>'\"#%@`?.\\+=~_/")
    + list("abkxyzAE0123456789")
    + ["\r", "\x00", "\ufeff", "é", "\x85", "\u2028", "\x07"]
)
TOKENS = [
    ": ",
    "- ",
    "\n",
    "\n  ",
    "\n    ",
    "  ",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "<<: ",
    "? ",
    "---\n",
    "...\n",
    "!!str ",
    "!!int ",
    "!!float ",
    "!!bool ",
    "!!map ",
    "!!seq ",
    "!!set ",
    "!!binary ",
    "!!timestamp ",
    "!!python/name:os.system ",
    "!include ",
    "!<tag:yaml.org,2002:str> ",
    "%TAG !e! tag:e.com,2000:\n",
    "'",
    '"',
    "|\n",
    ">\n",
    "# c\n",
    "null",
    "~",
    "true",
    "no",
    "0",
    "-1",
    "1.5",
    "1e5",
    "1.0e+400",
    ".nan",
    ".inf",
    "0x1F",
    "0o7",
    "1_000",
    "12:30",
    "2024-13-45",
    "9" * 30,
    "name",
    "model",
    "layers",
    "data",
    "inline",
    "x",
    "y",
    "input",
    "type",
    "dense",
    "units",
    "loss",
    "optimizer",
    "train",
    "steps",
    "batch_size",
    "sgd",
    "learning_rate",
    "binary_crossentropy",
    "activation",
    "sigmoid",
    "metrics",
    "accuracy",
]


@fuzz_settings("text")
@given(st.text(alphabet=st.sampled_from(YAML_CHARS), max_size=200))
def test_random_yaml_text(text):
    parse_and_check(text)


@fuzz_settings("tokens")
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map("".join))
def test_random_yaml_tokens(text):
    parse_and_check(text)


@fuzz_settings("bytes")
@given(st.binary(max_size=200) | st.text(max_size=100).map(lambda t: t.encode("utf-8")))
def test_random_bytes(raw):
    parse_and_check(raw)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(
        ["dense", "sigmoid", "sgd", "accuracy", "input", "1/255", "same", "1e-3", "2024-01-01", "x" * 100]
    )
)


def nested(scalars=SCALARS):
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    )


def equal(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(equal, a, b))
    return type(a) is type(b) and a == b


@fuzz_settings("dumped")
@given(nested(), st.booleans())
def test_dumped_random_data(data, flow):
    # netspec's writer (spec.yaml), in both of PyYAML's styles: it quotes what YAML 1.1 or 1.2 would misread
    text = yaml.dump(data, Dumper=_Dumper, default_flow_style=flow, allow_unicode=False)
    try:
        loaded = parse(text, SOURCE)
    except SpecError:
        parse_and_check(text)  # refused (a number out of range): it must be well placed
        return
    # what netspec itself writes comes back exactly (no silent change on the way in)
    assert equal(loaded.data, data), (text, loaded.data)
    parse_and_check(text)


# -- (b) mutations of the shipped specs ----------------------------------------------------------

KEY_WORDS = sorted(
    {
        "name",
        "seed",
        "data",
        "inline",
        "x",
        "y",
        "mnist",
        "fashion_mnist",
        "idx",
        "npz",
        "csv",
        "path",
        "dir",
        "scale",
        "validation_split",
        "limit",
        "model",
        "input",
        "defaults",
        "layers",
        "type",
        "units",
        "activation",
        "inputs",
        "filters",
        "kernel_size",
        "padding",
        "pool_size",
        "rate",
        "loss",
        "metrics",
        "optimizer",
        "learning_rate",
        "train",
        "steps",
        "epochs",
        "batch_size",
        "eval",
        "every",
        "summaries",
        "checkpoint",
        "histograms",
        "label",
        "from_logits",
    }
)


def paths_in(value, here=()):
    """Every key path in a nested value (to each mapping entry and list item)."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(here + (k,))
            out.extend(paths_in(v, here + (k,)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append(here + (i,))
            out.extend(paths_in(v, here + (i,)))
    return out


def retyped(value):
    """The same value, written as another type."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return [value] if value % 2 else str(value)
    if isinstance(value, str):
        return {"type": value} if len(value) % 2 else [value]
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return 0


@fuzz_settings("data_mutation")
@given(st.sampled_from(sorted(TEXTS)), st.data())
def test_mutated_spec_data(name, draw):
    data = yaml.safe_load(TEXTS[name])
    for _ in range(draw.draw(st.integers(1, 3), label="mutations")):
        paths = paths_in(data)
        path = draw.draw(st.sampled_from(paths), label="path")
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        how = draw.draw(st.sampled_from(["delete", "replace", "rename", "retype", "reuse", "number"]), label="how")
        if how == "delete":
            del parent[last]
        elif how == "replace":
            parent[last] = draw.draw(nested(), label="value")
        elif how == "retype":
            parent[last] = retyped(parent[last])
        elif how == "reuse":  # a value from elsewhere in the spec: duplicate names, shapes that disagree
            source = data
            for part in draw.draw(st.sampled_from(paths), label="from"):
                source = source[part]
            parent[last] = copy.deepcopy(source)
        elif how == "number":  # in range for the schema, wrong for the meaning (units, input, steps ...)
            parent[last] = draw.draw(st.integers(-1, 40) | st.lists(st.integers(0, 40), max_size=4), label="number")
        elif isinstance(parent, dict):
            new = draw.draw(st.sampled_from(KEY_WORDS) | st.text(max_size=10), label="new key")
            parent[new] = parent.pop(last)
        else:
            parent.insert(draw.draw(st.integers(0, len(parent)), label="at"), copy.deepcopy(parent[last]))
    flow = draw.draw(st.sampled_from([None, False]), label="flow")
    text = yaml.safe_dump(data, default_flow_style=flow, sort_keys=False, allow_unicode=True)
    parse_and_check(text)


@fuzz_settings("text_mutation")
@given(st.sampled_from(sorted(TEXTS)), st.data())
def test_mutated_spec_text(name, draw):
    text = TEXTS[name]
    for _ in range(draw.draw(st.integers(1, 3), label="mutations")):
        lines = text.splitlines(keepends=True) or [""]
        i = draw.draw(st.integers(0, len(lines) - 1), label="line")
        how = draw.draw(st.sampled_from(["duplicate", "delete", "swap", "truncate", "insert", "indent"]), label="how")
        if how == "duplicate":
            lines.insert(i, lines[i])
        elif how == "delete":
            del lines[i]
        elif how == "swap":
            j = draw.draw(st.integers(0, len(lines) - 1), label="other line")
            lines[i], lines[j] = lines[j], lines[i]
        elif how == "indent":
            lines[i] = draw.draw(st.sampled_from([" ", "  ", "\t", "- "]), label="prefix") + lines[i]
        text = "".join(lines)
        if how == "truncate":
            text = text[: draw.draw(st.integers(0, len(text)), label="cut")]
        elif how == "insert":
            at = draw.draw(st.integers(0, len(text)), label="at")
            text = text[:at] + draw.draw(st.sampled_from(TOKENS), label="token") + text[at:]
    parse_and_check(text)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_spec_checks(path):
    """The starting points of the mutations are themselves valid."""
    assert isinstance(parse_and_check(path.read_text()), Spec)


def test_the_case_count_is_at_least_2000():
    assert sum(EXAMPLES.values()) >= 2000


def test_a_number_out_of_range_is_refused_not_changed():
    for value in (math.inf, -math.inf, math.nan, 2**64):
        text = yaml.safe_dump({"a": value})
        with pytest.raises(SpecError):
            parse(text, SOURCE)
