"""Everything `netspec validate` runs: YAML with positions, the JSON Schema, the meaning checks,
the checked Spec. Pure Python: nothing here imports jax (a test checks), so validate stays fast
enough for an editor or a pre-commit hook.

    load_spec(path, overrides=(), *, data_info=None) -> Spec    load + check in one call (a sweep spec is refused)
    load_sweep(path, overrides=()) -> Sweep                      a sweep spec: every member's checked Spec
                                                                 (netspec.spec.sweep)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netspec.data.sources import DataInfo
    from netspec.spec.sweep import Sweep
    from netspec.spec.types import Spec


def load_spec(path: str | Path, overrides: Sequence[str] = (), *, data_info: DataInfo | None = None) -> Spec:
    """The checked `Spec` of the spec file at `path`, with `--set key=value` `overrides` applied
    (the schema's meaning: `netspec.spec.overrides`). `data_info`: what a run directory recorded of
    its data, used instead of reading the data files. Raises SpecError listing every problem with
    its file:line:col and key path; a spec with a `sweep` key is refused (it is many runs:
    `load_sweep`), unless `overrides` hold `sweep=null`."""
    from netspec.spec.check import check
    from netspec.spec.load import load

    return check(load(path, list(overrides)), data_info=data_info)


def load_sweep(path: str | Path, overrides: Sequence[str] = ()) -> Sweep:
    """The checked `Sweep` of the sweep spec at `path` (`netspec.spec.sweep`): its members in
    order, each with its name, its values and its checked Spec. Raises SpecError listing every
    problem, each member's naming the member."""
    from netspec.spec.sweep import load_sweep as load_members

    return load_members(path, overrides)
