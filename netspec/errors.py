"""Errors a user can cause. Each one is shown as a clear paragraph and a non-zero exit, never a traceback.

`NetspecError` is the base: its message is the whole story (what went wrong, where, how to fix
it); the CLI prints it as is and exits with its `exit_code` (1; a stop by a signal: 130 or 143).
`DataError` is a data file that is missing, unreadable, malformed or fails its checksum.
`SpecError` collects every `Problem` found in a spec, each with its position (file:line:col, or
the `--set` it came from, and the key path), so `validate` can report them all at once; a problem
of one member of a sweep names that member too (`Problem.member`).

`quoted(path)` is a path as a message's command line shows it: pasted into a shell it is that path.

The bottom of the package: it imports nothing of netspec's, and every room may raise these.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from os import PathLike


def quoted(path: str | PathLike[str]) -> str:
    """`path` for a command a message suggests (`netspec resume PATH`, `tensorboard --logdir PATH`):
    as it is when a POSIX shell takes it so (letters, digits and @%+=:,./-), else in single quotes
    (`shlex.quote`): a run under "my runs/" is one argument when pasted, not two."""
    return shlex.quote(str(path))


class NetspecError(Exception):
    """A problem the user can fix; the message is shown as is and the process exits with `exit_code`."""

    exit_code = 1


class DataError(NetspecError):
    """A data file is missing, unreadable, malformed or fails its checksum."""


@dataclass(frozen=True)
class Problem:
    """One mistake in a spec: where it is and what is wrong."""

    source: str  # file name, or "--set key=value"
    line: int | None  # 1-based; None when the source has no lines
    col: int | None  # 1-based
    path: str  # JSONPath-like key path, e.g. $.model.layers[2].units
    message: str
    member: str | None = None  # the sweep member it is in (netspec.spec.sweep), when not in every member

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}:{self.col}"
        member = f"sweep member {self.member}: " if self.member is not None else ""
        return f"{where}: {member}{self.path}: {self.message}"


class SpecError(NetspecError):
    """A spec has one or more problems; all are listed, each with its position."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
