"""Sweeps: one spec file, many members, each a spec of its own, checked as any spec is.

Contract. A spec with a top-level `sweep` key is a sweep, in one of two forms (the schema's
`sweep` section, `netspec.spec.schema`):

    sweep:                                  # a grid: every combination is a member (here 16)
      optimizer.learning_rate: [0.03, 0.1, 0.3, 1.0]
      seed: [0, 1, 2, 3]

    sweep:                                  # a random search: `samples` members
      samples: 16
      axes:
        optimizer.learning_rate: {log_uniform: [0.001, 1.0]}
        model.layers[1].rate: {uniform: [0.0, 0.5]}
        optimizer.type: {choice: [sgd, adam]}

A key is a dotted key path exactly as `--set` takes it (`load.split_override`). The members:

- a grid's are every combination of its lists, the keys in the order written, the last varying
  fastest (`itertools.product`): learning rate 0.03 with seeds 0 to 3, then 0.1 with seeds 0 to 3...
- a random search's k-th member draws each axis in the order written from one
  `random.Random(seed)`, `seed` the spec's own (0 when unset), through `random()` alone, whose
  sequence for a seed Python promises never to change: `uniform` is lo + (hi - lo) * u,
  `log_uniform` exp(ln lo + (ln hi - ln lo) * u), both rounded to 6 significant digits (what the
  member's name shows) and kept within [lo, hi]; `choice` is the item at floor(u * n). Numbers
  drawn are floats: an integer key (units, batch_size) takes a `choice`.

Each member's spec is the spec with `sweep` removed and the member's values applied in the order
of the keys as `--set KEY=VALUE` applies them (`load.apply_override` with the schema's rules: null
removes a key that takes none), then checked whole by `check`: a sweep `validate` accepts runs,
member by member. A member's problems point at its sweep key (file:line:col) and name the member
(`Problem.member`); a problem that every member has is listed once, naming none. The sweep
section's own problems (the schema's, then lo < hi, 0 < lo for log_uniform, a key given twice or
inside another, `name` or `sweep` swept, more than `MAX_MEMBERS` members) come first, and then no
member is checked.

A member's name is its values, as TensorBoard run names read: `learning_rate=0.1,seed=2`. Each key
is named by its last component (`model.layers[0].units`: `units`), or by its whole path where two
would read alike (`model.layers.0.units`); integers are written whole, other numbers with `:g`;
characters other than letters, digits and `._,=+-` become `_`; at most 200 characters; a name two
members share gets `,member=K` (K counts from 1).

`load_sweep(path, overrides) -> Sweep` is the API; `load_checked` gives a Spec or a Sweep, as
`validate` and `run` take a file. `load_spec` (`check`) refuses a sweep spec, saying to use these
or `--set sweep=null` for the plain spec: a Spec is one run. Pure Python, no jax.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from netspec.data.sources import DataInfo
from netspec.errors import Problem, SpecError
from netspec.spec.check import check
from netspec.spec.load import (
    Key,
    Loaded,
    OverrideRules,
    Position,
    apply_override,
    dump,
    json_path,
    load,
    split_override,
)
from netspec.spec.messages import schema_problems
from netspec.spec.overrides import accepts_null, exclusive_with
from netspec.spec.schema import MAX_MEMBERS, RANDOM_KEYS_UNDER_AXES
from netspec.spec.types import Spec

NAME_LIMIT = 200  # characters of a member's name: one directory name, well within 255 bytes


_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+\-]")


_RULES = OverrideRules(accepts_null, exclusive_with)


@dataclass(frozen=True)
class Member:
    """One member of a sweep: its name, the values its sweep gave it, its checked spec."""

    name: str  # its values, e.g. learning_rate=0.1,seed=2: its run directory's name
    values: Mapping[str, Any]  # sweep key as written -> its value, in the sweep's order
    spec: Spec  # checked; `spec.swept` holds the sweep's keys

    @property
    def overrides(self) -> tuple[str, ...]:
        """The `--set` arguments that make the sweep's spec this member as a plain run."""
        return ("sweep=null", *(f"{key}={json.dumps(value)}" for key, value in self.values.items()))


@dataclass(frozen=True)
class Sweep:
    """A checked sweep: every member's spec, in the sweep's order."""

    source: str  # the spec file
    name: str  # the spec's name, every member's: the sweep directory is <logdir>/<name>/<run-id>
    kind: str  # "grid" or "random"
    keys: tuple[str, ...]  # the swept keys, as written
    members: tuple[Member, ...]
    text: str  # the sweep's spec as loaded (--set applied), as YAML: what a sweep directory keeps


def is_sweep(loaded: Loaded) -> bool:
    """Whether the loaded spec has a `sweep` key."""
    return isinstance(loaded.data, dict) and "sweep" in loaded.data


def load_sweep(path: str | Path, overrides: Sequence[str] = ()) -> Sweep:
    """The checked `Sweep` of the spec file at `path` with `--set` `overrides` applied (before the
    sweep expands). Raises SpecError listing every problem (see the module docstring), and for a
    spec without a `sweep` key, which `netspec.spec.load_spec` takes."""
    loaded = load(path, list(overrides))
    if not is_sweep(loaded):
        raise SpecError(
            [Problem(str(path), None, None, "$.sweep", "this spec has no sweep key; load it with netspec.load_spec")]
        )
    return sweep_of(loaded)


def load_checked(path: str | Path, overrides: Sequence[str] = ()) -> Spec | Sweep:
    """The checked Spec of a plain spec file, the checked Sweep of a sweep spec; raises SpecError."""
    loaded = load(path, list(overrides))
    return sweep_of(loaded) if is_sweep(loaded) else check(loaded)


def sweep_of(loaded: Loaded) -> Sweep:
    """Expand and check the sweep of `loaded` (a spec with a `sweep` key); raises SpecError."""
    problems = sweep_problems(loaded)
    if problems:
        raise SpecError(problems)
    section = loaded.data["sweep"]
    random_search = "samples" in section
    axes: dict[str, Any] = section["axes"] if random_search else section
    keys = tuple(axes)
    rows = _draw(section, _base_seed(loaded.data)) if random_search else list(itertools.product(*axes.values()))
    where = ("sweep", "axes") if random_search else ("sweep",)
    at = {key: loaded.where(where + (key,), key=True) for key in keys}
    shares_data = all(split_override(f"{key}=")[0][0] != "data" for key in keys)
    data_info: DataInfo | None = None  # described once when no member changes the data
    members: list[Member] = []
    failed: list[tuple[str, list[Problem]]] = []
    for name, row in zip(member_names(keys, rows), rows, strict=True):
        values = dict(zip(keys, row, strict=True))
        try:
            spec = check(_member_spec(loaded, values, at), data_info=data_info if shares_data else None)
        except SpecError as e:
            origins = {f"--set {key}={json.dumps(value)}": at[key] for key, value in values.items()}
            failed.append((name, [_placed(p, origins) for p in e.problems]))
            continue
        data_info = data_info or spec.data_info
        members.append(Member(name, MappingProxyType(values), replace(spec, swept=keys)))
    if failed:
        raise SpecError(_merged(failed, len(rows)))
    return Sweep(
        loaded.source,
        str(loaded.data["name"]),
        "random" if random_search else "grid",
        keys,
        tuple(members),
        dump(loaded.data),
    )


def sweep_problems(loaded: Loaded) -> list[Problem]:
    """The problems of the `sweep` section itself: the schema's, then what the schema cannot state
    (a key given twice or inside another, `name` or `sweep` swept, a `--set` of a swept key, lo <
    hi, 0 < lo for log_uniform, at most MAX_MEMBERS members)."""
    problems = [
        p for p in schema_problems(loaded) if p.path == "$.sweep" or p.path.startswith(("$.sweep.", "$.sweep["))
    ]
    section = loaded.data.get("sweep")
    if problems and isinstance(section, Mapping) and ("samples" in section or "axes" in section):
        # a random search: a key beside samples and axes is told where it goes (not, as a grid axis, that it wants a list)
        stray = {json_path(("sweep", k)) for k in section if k not in ("samples", "axes")}
        problems = [
            replace(
                p,
                message=RANDOM_KEYS_UNDER_AXES,
            )
            if p.path in stray
            else p
            for p in problems
        ]
    if problems:
        return problems
    section = loaded.data["sweep"]
    random_search = "samples" in section
    where: Key = ("sweep", "axes") if random_search else ("sweep",)
    axes: dict[str, Any] = section["axes"] if random_search else section
    seen: dict[Key, str] = {}
    for key in axes:
        path = split_override(f"{key}=")[0]
        problem = _key_problem(key, path, seen)
        if problem is not None:
            problems.append(loaded.problem(where + (key,), problem, key=True))
        seen[path] = key
        overridden = _set_at(loaded, path)
        if overridden is not None:
            problems.append(
                loaded.problem(
                    where + (key,),
                    f"{overridden} sets a key this sweep varies ({key}): every member takes the sweep's value "
                    "instead, so it would change nothing; drop it, or take the key out of the sweep "
                    "(--set sweep=null trains the plain spec)",
                    key=True,
                )
            )
        if random_search:
            problems += _bounds_problems(loaded, where + (key,), axes[key]) or _whole_problems(
                loaded, where + (key,), key, path, axes[key]
            )
        else:
            problems += _repeated_values(loaded, where + (key,), key, axes[key])
    if not random_search:
        sizes = [len(values) for values in axes.values()]
        if math.prod(sizes) > MAX_MEMBERS:
            problems.append(
                loaded.problem(
                    ("sweep",),
                    f"this grid has {math.prod(sizes)} members ({' x '.join(map(str, sizes))}); a sweep may have at "
                    f"most {MAX_MEMBERS}: give fewer values, or draw a random search (sweep: {{samples: N, axes: ...}})",
                    key=True,
                )
            )
    return problems


def _whole_problems(loaded: Loaded, at: Key, key: str, path: Key, axis: Mapping[str, Any]) -> list[Problem]:
    """A uniform or log_uniform axis of a key that takes whole numbers: every member would draw a
    fraction and be refused alone; said once, with a `choice` to write instead."""
    from netspec.spec.overrides import takes_whole_numbers_only

    ((kind, bounds),) = axis.items()
    if kind == "choice" or not takes_whole_numbers_only(loaded.data, path):
        return []
    lo, hi = math.ceil(bounds[0]), math.floor(bounds[1])
    if lo > hi:  # no whole number inside: the two around the range
        lo, hi = math.floor(bounds[0]), math.ceil(bounds[1])
    if kind == "log_uniform" and lo >= 1:  # powers of two between the bounds, and the bounds
        wanted = sorted({lo, hi, *(2**i for i in range(64) if lo <= 2**i <= hi)})
        if len(wanted) > 8:  # 8 of them, evenly spaced on the log scale
            wanted = sorted({_round2(lo * (hi / lo) ** (i / 7)) for i in range(8)})
    else:
        wanted = list(range(lo, hi + 1))
        if len(wanted) > 16:  # up to 16 listed whole (a seed's 0-10 is all of them); else 8, evenly spaced
            wanted = sorted({_round2(lo + (hi - lo) * i / 7) for i in range(8)})
    return [
        loaded.problem(
            at + (kind,),
            f"{key} takes a whole number and {kind} draws fractions, so every member would be refused; "
            f"draw from whole numbers instead, e.g. {{choice: {wanted}}}",
        )
    ]


def _round2(value: float) -> int:
    """`value` as a whole number of at most two significant digits (a choice a person would write)."""
    whole = round(value)
    digits = len(str(abs(whole)))
    return whole if digits <= 2 else round(whole, 2 - digits)


def _repeated_values(loaded: Loaded, at: Key, key: str, values: Sequence[Any]) -> list[Problem]:
    """A grid axis that lists a value twice (numbers compared as numbers: 1 and 1.0 are one value)
    would train the same members twice, under names told apart only by a counter."""

    def canonical(value: Any) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return repr(float(value))
        return json.dumps(value, sort_keys=True, default=str)

    first: dict[str, int] = {}
    problems = []
    for i, value in enumerate(values):
        seen = first.setdefault(canonical(value), i)
        if seen != i:
            problems.append(
                loaded.problem(
                    at + (i,),
                    f"{key} lists {_shown(value)} again (as value {seen + 1} and {i + 1}): each value is its own "
                    "members, so this would train them twice; give each value once",
                )
            )
    return problems


def _set_at(loaded: Loaded, path: Key) -> str | None:
    """The `--set KEY=VALUE` that set the value at `path` or at a key inside it (its origin, as the
    loader records it), or None. One that sets a key holding it (`--set optimizer={...}`) sets
    more than the sweep replaces, and is left alone."""
    for at, (origin, _, _) in loaded.key_positions.items():
        if at[: len(path)] == path and str(origin).startswith("--set "):
            return str(origin)
    return None


def _key_problem(key: str, path: Key, seen: Mapping[Key, str]) -> str | None:
    """What is wrong with sweeping `key` (its key path `path`) beside the keys `seen` before it."""
    if path[0] == "name":
        return "every member has the spec's name (its run directory is named by its values); sweep another key"
    if path[0] == "sweep":
        return "a sweep cannot set its own keys; sweep a key of the spec"
    for other_path, other in seen.items():
        if other_path == path:
            return f"{key} is the key {other} again, written another way; give it once"
        shorter, longer = sorted((path, other_path), key=len)
        if longer[: len(shorter)] == shorter:
            inner, outer = (key, other) if path == longer else (other, key)
            return f"{inner} is inside {outer}, which this sweep also sets; sweep one of them"
    return None


def _bounds_problems(loaded: Loaded, at: Key, axis: Mapping[str, Any]) -> list[Problem]:
    """A uniform or log_uniform axis's [lo, hi]: lo < hi, and 0 < lo on a log scale."""
    ((kind, bounds),) = axis.items()
    if kind == "choice":
        return []
    lo, hi = bounds
    if kind == "log_uniform" and lo <= 0:
        return [
            loaded.problem(
                at + (kind,),
                f"log_uniform draws on a log scale, so lo must be above 0; found [{lo:g}, {hi:g}] "
                "(a range from 0 is uniform)",
            )
        ]
    if lo >= hi:
        return [loaded.problem(at + (kind,), f"expected [lo, hi] with lo < hi; found [{lo:g}, {hi:g}]")]
    return []


def _base_seed(data: Mapping[str, Any]) -> int:
    """The seed a random search draws from: the spec's `seed` as written (0 when unset)."""
    seed = data.get("seed", 0)
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


def _draw(section: Mapping[str, Any], seed: int) -> list[tuple[Any, ...]]:
    """The random search's members' values, in order (see the module docstring)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(int(section["samples"])):  # 16.0 is an integer to JSON Schema
        row = []
        for axis in section["axes"].values():
            ((kind, arg),) = axis.items()
            u = rng.random()
            if kind == "choice":
                row.append(copy.deepcopy(arg[min(int(u * len(arg)), len(arg) - 1)]))
                continue
            lo, hi = float(arg[0]), float(arg[1])
            x = lo + (hi - lo) * u if kind == "uniform" else math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
            row.append(min(max(float(f"{x:.6g}"), lo), hi))
        rows.append(tuple(row))
    return rows


def _member_spec(loaded: Loaded, values: Mapping[str, Any], at: Mapping[str, Position]) -> Loaded:
    """The spec without its sweep, the member's values applied as `--set` applies them; every
    position the values make points at their sweep keys."""
    member = Loaded(loaded.source, copy.deepcopy(loaded.data), dict(loaded.positions), dict(loaded.key_positions))
    del member.data["sweep"]
    origins = {}
    for key, value in values.items():
        text = f"{key}={json.dumps(value)}"
        origins[f"--set {text}"] = at[key]
        apply_override(member, text, _RULES)
    for table in (member.positions, member.key_positions):
        for path, (source, _, _) in table.items():
            if source in origins:
                table[path] = origins[source]
    return member


def _placed(problem: Problem, origins: Mapping[str, Position]) -> Problem:
    """`problem` at the sweep key whose value it came from (an override's own problems name it)."""
    if problem.source not in origins:
        return problem
    source, line, col = origins[problem.source]
    return replace(problem, source=source, line=line, col=col)


def _merged(failed: list[tuple[str, list[Problem]]], members: int) -> list[Problem]:
    """Every member's problems, each naming its member; a problem every member has, once."""
    found: dict[Problem, list[str]] = {}
    for name, problems in failed:
        for problem in problems:
            found.setdefault(problem, []).append(name)
    out: list[Problem] = []
    for problem, names in found.items():
        out += [problem] if len(names) == members else [replace(problem, member=name) for name in names]
    return sorted(out, key=lambda p: (p.line or 0, p.col or 0, p.path))


def member_names(keys: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Each member's name from its values (see the module docstring)."""
    labels = _labels(keys)
    names = []
    for row in rows:
        name = _UNSAFE.sub("_", ",".join(f"{label}={_shown(value)}" for label, value in zip(labels, row, strict=True)))
        names.append(name[:NAME_LIMIT])
    counts = Counter(names)
    return [name if counts[name] == 1 else f"{name},member={i + 1}" for i, name in enumerate(names)]


def _labels(keys: Sequence[str]) -> list[str]:
    """Each key's name in a member's name: its last component, or its whole path where two would read alike."""
    paths = [split_override(f"{key}=")[0] for key in keys]
    short = [_last(path) for path in paths]
    return [s if short.count(s) == 1 else ".".join(map(str, path)) for s, path in zip(short, paths, strict=True)]


def _last(path: Key) -> str:
    """The last named component of a key path, with the list indices after it: `features.1`."""
    names = [i for i, part in enumerate(path) if isinstance(part, str)]
    start = names[-1] if names else 0
    return ".".join(map(str, path[start:]))


def _shown(value: Any) -> str:
    """A value as a member's name writes it."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        named = [str(value["type"])] if "type" in value else []
        return "+".join(named + [f"{k}={_shown(v)}" for k, v in value.items() if k != "type"])
    if isinstance(value, list):
        return "+".join(_shown(v) for v in value)
    return str(value)
