"""The rooms and the one way imports run between them (ARCHITECTURE.md): errors and machine at the
bottom, then data and distribute, spec, model, compile, train, inference, export, cli. No import cycle;
spec/ and data/ never import jax (validate runs them and must stay fast), which a fresh process
checks too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

PACKAGE = ROOT / "netspec"

# a room's rank: a module may import modules of its own room or of a lower rank (same rank, other room: no)
RANKS = {
    "errors": 0,
    "machine": 0,
    "data": 1,
    "distribute": 1,
    "spec": 2,
    "model": 3,
    "compile": 4,
    "training": 5,
    "inference": 6,
    "export": 7,
    "cli": 8,
}
HEAVY = ("jax", "jaxlib", "optax", "tensorboardX", "tensorboard")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at its top or inside a function, not under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "netspec":  # `from netspec import distribute`: the module itself
                found |= {f"netspec.{alias.name}" for alias in node.names}
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_there_is_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state and module != "netspec":
            visit(module, [module])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "netspec"))
def test_imports_run_one_way_between_the_rooms(module):
    """`netspec` itself (the public API) names its modules by string, on first use; every other
    module imports only its own room or lower ones."""
    mine = room(module)
    for imported in GRAPH[module] - {"netspec"}:
        theirs = room(imported)
        if theirs == mine or theirs is None:
            continue
        assert RANKS[theirs] < RANKS[mine], (
            f"{module} ({mine}) imports {imported} ({theirs}): imports run downward only"
        )


@pytest.mark.parametrize("module", sorted(m for m in MODULES if room(m) in ("spec", "data")))
def test_spec_and_data_never_import_jax(module):
    heavy = {m for m in imports(MODULES[module]) if m.split(".")[0] in HEAVY}
    assert not heavy, f"{module} imports {sorted(heavy)}"


def test_validate_loads_no_jax_in_a_fresh_process():
    code = (
        "import sys, netspec, netspec.spec, netspec.spec.check, netspec.spec.docs, netspec.data.arrays, netspec.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'jax', 'jaxlib', 'optax', 'tensorboardX'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_public_api_names_stay_functions_once_every_module_is_imported():
    """`netspec.train` is the function even after `netspec.training.loop` and friends are
    imported (a subpackage named `train` would replace it on the package); a fresh process."""
    code = (
        "import importlib, pkgutil, netspec\n"
        "for m in pkgutil.walk_packages(netspec.__path__, 'netspec.'): importlib.import_module(m.name)\n"
        "import types\n"
        "bad = [n for n in netspec.__all__ if n != '__version__' and isinstance(getattr(netspec, n), types.ModuleType)]\n"
        "assert not bad, bad\n"
        "assert callable(netspec.train) and netspec.train.__name__ == 'run'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
