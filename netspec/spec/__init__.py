"""Everything `netspec validate` runs: YAML with positions, the JSON Schema, the meaning checks,
the checked Spec. Pure Python: nothing here imports jax (a test checks), so validate stays fast
enough for an editor or a pre-commit hook.

    load_spec(path, overrides=(), *, data_info=None) -> Spec    load + check in one call
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netspec.data.sources import DataInfo
    from netspec.spec.types import Spec


def load_spec(path: str | Path, overrides: Sequence[str] = (), *, data_info: DataInfo | None = None) -> Spec:
    """The checked `Spec` of the spec file at `path`, with `--set key=value` `overrides` applied
    (the schema's meaning: `netspec.spec.overrides`). `data_info`: what a run directory recorded of
    its data, used instead of reading the data files. Raises SpecError listing every problem with
    its file:line:col and key path."""
    from netspec.spec.check import check
    from netspec.spec.load import load

    return check(load(path, list(overrides)), data_info=data_info)
