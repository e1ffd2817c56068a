"""Tests for netspec.docs: README's spec reference is generated from the schema and cannot drift."""

from __future__ import annotations

from pathlib import Path

from netspec import docs
from netspec.schema import SCHEMA

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_reference_is_the_rendered_schema():
    text = README.read_text()
    assert text.count(docs.BEGIN) == 1 and text.count(docs.END) == 1, "README must hold the reference markers once"
    section = text[text.index(docs.BEGIN):text.index(docs.END) + len(docs.END)]
    assert section == docs.render(), "README is out of date: run `python -m netspec.docs --write README.md`"


def test_write_replaces_only_the_reference():
    rewritten = docs.replace_section("before\n" + docs.BEGIN + "\nold\n" + docs.END + "\nafter\n", docs.render())
    assert rewritten == "before\n" + docs.render() + "\nafter\n"


def test_every_top_level_key_is_documented():
    text = README.read_text()
    missing = [key for key in SCHEMA["properties"] if f"| `{key}` |" not in text]
    assert not missing, f"README documents no row for: {missing}"
