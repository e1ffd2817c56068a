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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

import netspec
from netspec.check import Spec, plain
from netspec.data import BatchOrder
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


def run(spec: Spec, *, logdir: str | Path = "runs", run_name: str | None = None, quiet: bool = False,
        data_dir: str | None = None, echo=print) -> RunResult:
    """Train `spec` and write its run directory. See the module docstring."""
    import jax

    from netspec import checkpoint
    from netspec.compile import compile_spec, current_learning_rate
    from netspec.summaries import Summaries

    arrays = load_arrays(spec, data_dir)  # data errors surface before anything is written
    run_dir = make_run_dir(logdir, spec, run_name)
    text = spec_yaml(spec)
    (run_dir / "spec.yaml").write_text(text)
    (run_dir / "run.json").write_text(json.dumps({"spec_source": spec.source, "base_dir": spec.base_dir}, indent=2) + "\n")

    program = compile_spec(spec)
    full_batch = spec.train["batch_size"] == spec.num_examples
    order = BatchOrder(len(arrays.train.x), spec.train["batch_size"], seed=spec.seed, shuffle=spec.train["shuffle"] and not full_batch)
    feed = Feed(arrays.train, order, streamed=arrays.train.x.nbytes + arrays.train.y.nbytes > spec.data["max_resident_mb"] * 2**20,
                full_batch=full_batch)
    data = device_data(feed.resident, arrays)
    eval_split = {"test": arrays.test, "validation": arrays.validation}.get(spec.eval["split"] or "")
    eval_data = padded(eval_split, arrays, spec.eval["batch_size"]) if eval_split is not None else None
    state = program.init()
    summaries = Summaries(run_dir, spec)
    config = spec.summaries
    wanted_scalars = set(config["scalars"])
    wanted_hist = set(config["histograms"])
    summaries.spec_text(text)
    summaries.sample_images(arrays.train.x[:16], spec.data_info)

    sample = program.prepare(data, arrays.train.x[:256], arrays.train.y[:256])
    eval_fn = jax.jit(lambda params, mstate: program.loss_and_metrics(params, mstate, sample, train=False, key=program.keys.step))
    extras_fn = _extras_fn(program, sample) if wanted_hist & {"activations", "gradients"} else None

    if config["graph"]:
        from netspec.graph import step_graph

        graph = step_graph(program.train_step, state, sample, program.keys.step, arg_names=_graph_names(state))
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

    def evaluate(step, split_data):
        sums, count, confusion = jax.device_get(program.evaluate(state.params, state.model_state, *split_data))
        values = {k: float(v) / float(count) for k, v in sums.items()}
        return values, confusion

    # step 0: the untrained model
    loss0, (metrics0, _) = jax.device_get(eval_fn(state.params, state.model_state))
    write(0, {"loss": loss0, **metrics0}, float(current_learning_rate(state.opt_state)), None)  # the rate step 1 uses

    lengths = chunk_lengths(spec.steps, config["every"])
    compile_start = time.perf_counter()
    compiled = {n: program.chunk(n, streamed=feed.streamed).lower(state, data, feed.batches(0, n), program.keys).compile()
                for n in sorted(set(lengths))}
    compile_seconds = time.perf_counter() - compile_start

    losses: list[float] = []
    progress = Progress(spec.steps, quiet)
    train_seconds = 0.0
    loop_start = time.perf_counter()
    last: dict = {}
    first_step_seconds = None
    eval_every = spec.eval["every"]
    try:
        step = int(state.step)
        for i, n in enumerate(lengths):
            batches = feed.batches(step, n)
            if i + 1 < len(lengths):
                feed.prefetch(step + n, lengths[i + 1])
            start = time.perf_counter()
            state, outputs = compiled[n](state, data, batches, program.keys)
            outputs = jax.device_get(outputs)
            elapsed = time.perf_counter() - start
            train_seconds += elapsed
            step = int(state.step)
            if first_step_seconds is None:
                first_step_seconds = start - netspec.STARTED + elapsed / n
            losses.extend(float(v) for v in outputs["loss"])
            last = {k: float(v[-1]) for k, v in outputs.items()}
            lr = float(current_learning_rate(state.opt_state))
            write(step, last, lr, n / elapsed if elapsed > 0 else None)
            if eval_data is not None and eval_every and step % eval_every == 0 and step != spec.steps:
                values, confusion = evaluate(step, eval_data)
                summaries.evaluation(step, values, confusion, arrays.class_names)
            progress.update(n, "  ".join(f"{k} {v:.4g}" for k, v in last.items()))
    finally:
        progress.close()
        feed.close()
        summaries.flush()
    loop_seconds = time.perf_counter() - loop_start

    final = dict(last)
    if eval_data is not None:
        evaluated, confusion = evaluate(spec.steps, eval_data)
        summaries.evaluation(spec.steps, evaluated, confusion, arrays.class_names, final=True)
        final.update({f"{spec.eval['split']}_{k}": v for k, v in evaluated.items()})
    checkpoint.save(run_dir / "checkpoints" / "final.safetensors", state,
                    {"step": spec.steps, "spec": spec.name})
    summaries.hparams(final)
    summaries.close()
    result = RunResult(run_dir, final, train_seconds, compile_seconds, losses)
    (run_dir / "result.json").write_text(json.dumps({
        "name": spec.name, "steps": spec.steps, "final": final,
        "train_seconds": train_seconds, "loop_seconds": loop_seconds, "compile_seconds": compile_seconds,
        "us_per_step": 1e6 * train_seconds / max(spec.steps, 1), "first_step_seconds": first_step_seconds,
        "steps_per_second": spec.steps / train_seconds if train_seconds else None,
    }, indent=2) + "\n")
    if not quiet:
        report(spec, program, state, data, arrays, result, echo)
    return result


class Feed:
    """The `batches` argument of each chunk: example indices into resident data, or, for data
    larger than the device budget, the examples themselves gathered on the host by the same
    indices (the next chunk's on a background thread while the current one runs)."""

    def __init__(self, split, order: BatchOrder, *, streamed: bool, full_batch: bool):
        self.split, self.order, self.streamed, self.full_batch = split, order, streamed, full_batch
        self.resident = type(split)(split.x[:0], split.y[:0]) if streamed else split
        self._pending: dict = {}
        self._pool = None

    def _gather(self, start: int, n: int):
        import jax

        idx = self.order.indices(start, n)
        return jax.device_put(self.split.x[idx]), jax.device_put(self.split.y[idx])

    def batches(self, start: int, n: int):
        if not self.streamed:
            return None if self.full_batch else self.order.indices(start, n)
        pending = self._pending.pop((start, n), None)
        return pending.result() if pending is not None else self._gather(start, n)

    def prefetch(self, start: int, n: int) -> None:
        if self.streamed:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(1, thread_name_prefix="netspec-feed")
            self._pending[start, n] = self._pool.submit(self._gather, start, n)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def load_arrays(spec: Spec, data_dir: str | None = None):
    from netspec.data import load

    return load(spec.data, Path(spec.base_dir), seed=spec.seed, data_dir=data_dir)


def device_data(split, arrays):
    """A split on the device as stored (uint8 images stay uint8), with its scaling."""
    import jax.numpy as jnp

    from netspec.compile import Data

    return Data(jnp.asarray(split.x), jnp.asarray(split.y), jnp.asarray(arrays.shift), jnp.asarray(arrays.scale))


def padded(split, arrays, batch_size: int):
    """(Data shaped [batches, batch, ...], mask) for evaluation: padded to whole batches, padding masked out."""
    import jax.numpy as jnp

    from netspec.compile import Data

    n = len(split.x)
    batch_size = min(batch_size, n)
    batches = -(-n // batch_size)
    pad = batches * batch_size - n

    def shape(a):
        a = np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
        return jnp.asarray(a.reshape(batches, batch_size, *a.shape[1:]))

    mask = np.ones(batches * batch_size, np.float32)
    mask[n:] = 0
    return Data(shape(split.x), shape(split.y), jnp.asarray(arrays.shift), jnp.asarray(arrays.scale)), jnp.asarray(mask.reshape(batches, batch_size))


def evaluate_run(run_dir: str | Path, *, split: str | None = None, data_dir: str | None = None) -> dict:
    """`netspec eval`: the metrics of a finished run's final parameters on a split."""
    import jax

    from netspec import checkpoint
    from netspec.check import check
    from netspec.compile import compile_spec
    from netspec.load import load

    run_dir = Path(run_dir)
    spec_file, info_file = run_dir / "spec.yaml", run_dir / "run.json"
    if not spec_file.is_file() or not info_file.is_file():
        raise NetspecError(f"{run_dir} is not a netspec run directory (it has no spec.yaml and run.json).")
    info = json.loads(info_file.read_text())
    loaded = load(spec_file)
    loaded.source = str(Path(info["base_dir"]) / spec_file.name)  # relative data paths start where the spec was
    spec = check(loaded)
    split = split or spec.eval["split"] or "test"
    arrays = load_arrays(spec, data_dir)
    chosen = {"test": arrays.test, "validation": arrays.validation, "train": arrays.train}[split]
    if chosen is None:
        raise NetspecError(f"The run's data has no {split} split. Choose --split train" + (", test" if arrays.test is not None else "") + ".")
    program = compile_spec(spec)
    state = checkpoint.load(run_dir / "checkpoints" / "final.safetensors", program.init())
    sums, count, confusion = jax.device_get(program.evaluate(state.params, state.model_state, *padded(chosen, arrays, spec.eval["batch_size"])))
    return {k: float(v) / float(count) for k, v in sums.items()}


def _extras_fn(program, sample):
    """Jitted (params, state) -> (activations per layer, gradients per param) on a sample batch."""
    import jax

    def extras(params, mstate):
        collect: dict = {}
        program.apply(params, mstate, sample[0], collect=collect)
        grads = jax.grad(lambda p: program.loss_and_metrics(p, mstate, sample, train=False, key=program.keys.step)[0])(params)
        return collect, grads

    return jax.jit(extras)


def _graph_names(state):
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


def report(spec: Spec, program, state, data, arrays, result: RunResult, echo) -> None:
    """The lecture's closing report: a table for small data sets, the final metrics, the TensorBoard line."""
    import jax

    if len(data.x) <= 32:
        x, y = arrays.train
        h = np.asarray(jax.device_get(program.apply(state.params, state.model_state, program.prepare(data, data.x, data.y)[0])))
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
