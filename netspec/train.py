"""Train a checked Spec: the host loop over compiled chunks, the run directory, the report.

Contract: `run(spec, logdir=..., run_name=None, quiet=False) -> RunResult`. It creates
`<logdir>/<spec.name>/<run-id>/` (never an existing directory: the run id is claimed with an
exclusive mkdir), saves the resolved spec as `spec.yaml`, trains `spec.steps` steps in chunks of
`summaries.every` steps, writes summaries at every chunk boundary (and the initial values at
step 0), and finally `result.json` (final metrics, timings). The host touches the program only
between chunks.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from netspec.check import Spec, plain
from netspec.errors import NetspecError


@dataclass
class RunResult:
    run_dir: Path
    final: dict
    train_seconds: float
    compile_seconds: float
    losses: list = field(default_factory=list)  # (step, loss) at every step, for reproducibility checks


def make_run_dir(logdir: str | Path, spec: Spec, run_name: str | None) -> Path:
    """Claim a new, empty run directory; never reuse an existing one."""
    parent = Path(logdir) / spec.name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NetspecError(f"Cannot create the run directory {parent}: {e.strerror}. Choose another --logdir.") from None
    base = run_name or time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        candidate = parent / (base if i == 0 else f"{base}-{i}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as e:
            raise NetspecError(f"Cannot create the run directory {candidate}: {e.strerror}. Choose another --logdir.") from None
    raise NetspecError(f"Too many runs named {base!r} in {parent}; choose another --run-name.")


def spec_yaml(spec: Spec) -> str:
    return yaml.safe_dump(plain(spec.resolved), sort_keys=False, default_flow_style=None, width=100)


def load_data(spec: Spec):
    """The training data as host arrays (x float32, y by the loss)."""
    inline = spec.data["inline"]
    x = np.asarray(plain(inline["x"]), np.float32)
    y = np.asarray(plain(inline["y"]))
    if spec.loss["type"] == "sparse_categorical_crossentropy":
        y = y.reshape(len(y)).astype(np.int32)
    else:
        y = y.astype(np.float32).reshape((len(y), *spec.output_shape))
    return x, y


def chunk_lengths(total: int, every: int) -> list[int]:
    """Chunks of `every` steps, then the remainder: summaries land on multiples of `every` and the end."""
    lengths = [every] * (total // every)
    if total % every:
        lengths.append(total % every)
    return lengths


class Progress:
    """A progress bar on a terminal (click's), silent otherwise."""

    def __init__(self, total: int, quiet: bool):
        self.bar = None
        if not quiet and sys.stdout.isatty():
            import click

            self.bar = click.progressbar(length=total, label="training", show_pos=True, item_show_func=lambda s: s, width=24)
            self.bar.__enter__()

    def update(self, n: int, text: str) -> None:
        if self.bar is not None:
            self.bar.update(n, text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def run(spec: Spec, *, logdir: str | Path = "runs", run_name: str | None = None, quiet: bool = False, echo=print) -> RunResult:
    """Train `spec` and write its run directory. See the module docstring."""
    import jax
    import jax.numpy as jnp

    from netspec.compile import compile_spec, current_learning_rate
    from netspec.summaries import Summaries

    run_dir = make_run_dir(logdir, spec, run_name)
    text = spec_yaml(spec)
    (run_dir / "spec.yaml").write_text(text)

    program = compile_spec(spec)
    x_host, y_host = load_data(spec)
    data = (jnp.asarray(x_host), jnp.asarray(y_host))
    state = program.init()
    summaries = Summaries(run_dir, spec)
    config = spec.summaries
    wanted_scalars = set(config["scalars"])
    wanted_hist = set(config["histograms"])
    summaries.spec_text(text)

    sample = (data[0][:256], data[1][:256])
    eval_fn = jax.jit(lambda params, mstate: program.loss_and_metrics(params, mstate, sample, train=False, key=program.keys.step))
    extras_fn = None
    if wanted_hist & {"activations", "gradients"}:
        extras_fn = _extras_fn(program, sample)

    if config["graph"]:
        from netspec.graph import step_graph

        names = _graph_names(state, sample)
        graph = step_graph(program.train_step, state, sample, program.keys.step, arg_names=names)
        summaries.graph(graph)

    def write(step, values, lr, steps_per_second):
        scalars = {}
        if "loss" in wanted_scalars:
            scalars["loss"] = values["loss"]
        if "metrics" in wanted_scalars:
            scalars.update({k: v for k, v in values.items() if k != "loss"})
        if "learning_rate" in wanted_scalars and lr is not None:
            scalars["learning_rate"] = lr
        if "steps_per_second" in wanted_scalars and steps_per_second is not None:
            scalars["steps_per_second"] = steps_per_second
        summaries.scalars(step, scalars)
        if wanted_hist:
            activations = gradients = None
            if extras_fn is not None:
                activations, gradients = jax.device_get(extras_fn(state.params, state.model_state))
            summaries.histograms(step, jax.device_get(state.params), activations=activations, gradients=gradients)

    # step 0: the untrained model
    loss0, (metrics0, _) = jax.device_get(eval_fn(state.params, state.model_state))
    write(0, {"loss": loss0, **metrics0}, None, None)

    lengths = chunk_lengths(spec.steps, config["every"])
    compile_start = time.perf_counter()
    compiled = {n: program.chunk(n).lower(state, data, program.keys).compile() for n in sorted(set(lengths))}
    compile_seconds = time.perf_counter() - compile_start

    losses: list[float] = []
    progress = Progress(spec.steps, quiet)
    train_seconds = 0.0
    last = {}
    try:
        for n in lengths:
            start = time.perf_counter()
            state, outputs = compiled[n](state, data, program.keys)
            outputs = jax.device_get(outputs)
            elapsed = time.perf_counter() - start
            train_seconds += elapsed
            step = int(state.step)
            losses.extend(float(v) for v in outputs["loss"])
            last = {k: float(v[-1]) for k, v in outputs.items()}
            lr = float(current_learning_rate(state.opt_state))
            write(step, last, lr, n / elapsed if elapsed > 0 else None)
            progress.update(n, "  ".join(f"{k} {v:.4g}" for k, v in last.items()))
    finally:
        progress.close()
        summaries.flush()

    final = dict(last)
    summaries.hparams(final)
    summaries.close()
    result = RunResult(run_dir, final, train_seconds, compile_seconds, losses)
    (run_dir / "result.json").write_text(json.dumps({
        "name": spec.name, "steps": spec.steps, "final": final,
        "train_seconds": train_seconds, "compile_seconds": compile_seconds,
        "us_per_step": 1e6 * train_seconds / max(spec.steps, 1),
    }, indent=2) + "\n")
    if not quiet:
        report(spec, program, state, x_host, y_host, result, echo)
    return result


def _extras_fn(program, sample):
    """Jitted (params, state) -> (activations per layer, gradients per param) on a sample batch."""
    import jax

    def extras(params, mstate):
        collect: dict = {}
        program.apply(params, mstate, sample[0], collect=collect)
        grads = jax.grad(lambda p: program.loss_and_metrics(p, mstate, sample, train=False, key=program.keys.step)[0])(params)
        return collect, grads

    return jax.jit(extras)


def _graph_names(state, sample):
    """Names for the graph's input nodes: `<layer>/<param>` for parameters, `input/x`, `input/y`."""
    import jax

    def name_of(path):
        parts = []
        for p in path:
            key = getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))
            parts.append(str(key))
        return "/".join(parts)

    names_state = jax.tree_util.tree_map_with_path(lambda path, _: name_of(path), state)
    names_state = names_state._replace(
        step="train/step",
        params=jax.tree_util.tree_map_with_path(lambda path, _: name_of(path), state.params),
        opt_state=jax.tree_util.tree_map_with_path(lambda path, _: "train/" + name_of(path), state.opt_state),
    )
    return (names_state, ("input/x", "input/y"), "train/key")


def report(spec: Spec, program, state, x, y, result: RunResult, echo) -> None:
    """The lecture's closing report: a table for small data sets, the final metrics, the TensorBoard line."""
    import jax
    import numpy as np

    if len(x) <= 32:
        h = np.asarray(jax.device_get(program.apply(state.params, state.model_state, x)))
        if spec.loss["type"] == "binary_crossentropy":
            pred = (h > 0.5).astype(int)
        elif spec.loss["type"] in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
            pred = h.argmax(-1)
        else:
            pred = h
        echo(f"{'input':<20} {'hypothesis':<24} {'prediction':<12} target")
        for xi, hi, pi, yi in zip(x, h, pred, y):
            echo(f"{_fmt(xi):<20} {_fmt(hi, 4):<24} {_fmt(pi):<12} {_fmt(yi)}")
    metrics = "  ".join(f"{k} {v:.6g}" for k, v in result.final.items())
    echo(f"{spec.name}: {spec.steps} steps in {result.train_seconds:.2f} s ({1e6 * result.train_seconds / max(spec.steps, 1):.1f} µs/step, compile {result.compile_seconds:.2f} s): {metrics}")
    echo(f"run directory: {result.run_dir}")
    echo(f"view it with:  tensorboard --logdir {result.run_dir.parent.parent}")


def _fmt(v, digits=None) -> str:
    arr = np.asarray(v).reshape(-1)
    if digits is None:
        items = [f"{a:g}" for a in arr]
    else:
        items = [f"{a:.{digits}f}" for a in arr]
    return "[" + " ".join(items) + "]" if len(items) > 1 else (items[0] if items else "")
