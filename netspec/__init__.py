"""netspec: a declarative model-spec compiler. A YAML spec in, a trained JAX model and a
TensorBoard run directory out.

The Python API, the same steps the command line takes (each name is imported on first use, so
`import netspec` stays light: validating a spec never imports jax):

    load_spec(path, overrides=()) -> Spec           read and check a spec (SpecError: every problem, with file:line:col)
    load_sweep(path, overrides=()) -> Sweep         a spec with a sweep: every member's name, values and checked Spec
    compile_spec(spec, mesh=None) -> Program         the pure JAX functions and the jitted train chunk
    train(spec, *, logdir="runs", ...) -> RunResult  train it and write its run directory (netspec run)
    train_sweep(sweep, *, logdir="runs", ...) -> SweepResult   train every member, rank them (netspec run)
    lr_find(path, overrides=(), *, min_lr, max_lr, members, steps, ...) -> LRFindResult   a learning-rate range test (netspec lr-find)
    evaluate_run(run_dir, *, split=None) -> dict     {metric tag: mean} on a split (netspec eval)
    predict_run(run_dir, input_path) -> (outputs, classes, class_names)   (netspec predict)

    Spec, Program, TrainState, RunResult, Sweep, SweepResult, LRFindResult   what flows between them
    NetspecError, SpecError, DataError, Problem       what they raise: a message a person can act on

Example:

    import netspec
    spec = netspec.load_spec("specs/xor_wide.yaml", ["train.steps=500"])
    result = netspec.train(spec, logdir="runs", quiet=True)
    print(result.final["accuracy"], result.run_dir)
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("netspec")  # the one version: pyproject.toml's
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_API = {  # public name -> the module that defines it
    "load_spec": "netspec.spec",
    "load_sweep": "netspec.spec",
    "train_sweep": ("netspec.training.sweep", "run_sweep"),
    "lr_find": "netspec.training.lr_find",
    "compile_spec": "netspec.compile.program",
    "train": ("netspec.training.loop", "run"),
    "evaluate_run": "netspec.inference",
    "predict_run": "netspec.inference",
    "Spec": "netspec.spec.types",
    "Program": "netspec.compile.program",
    "TrainState": "netspec.compile.state",
    "RunResult": "netspec.training.loop",
    "Sweep": "netspec.spec.sweep",
    "SweepResult": "netspec.training.sweep",
    "LRFindResult": "netspec.training.lr_find",
    "NetspecError": "netspec.errors",
    "SpecError": "netspec.errors",
    "DataError": "netspec.errors",
    "Problem": "netspec.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    """The public API, imported on first use (PEP 562)."""
    if name not in _API:
        raise AttributeError(f"module 'netspec' has no attribute {name!r}")
    where = _API[name]
    module, attribute = where if isinstance(where, tuple) else (where, name)
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
