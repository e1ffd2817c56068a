"""Sweeps in one sitting: a sweep against its members' plain runs, a hand-written vmapped loop and Optuna.

    python benchmarks/sweep_bench.py [--repeats 3] [--steps 2000] [--json FILE]
    python benchmarks/sweep_bench.py --repeats 1 --steps 300 --xor-lrs 0.1 1.0 --xor-seeds 0 1 --fashion-members 2
        (a quick check that it runs: a few minutes)

The Optuna section needs Optuna in the interpreter that runs this (`pip install optuna`); without
it the section is skipped and the output says so. Nothing else beyond netspec's own dependencies.

What runs (every command a fresh child process, `capped.run_capped`: prlimit --as=--cap, its own
session, wall seconds, wait4's peak RSS; JAX_PLATFORMS=cpu; each `netspec run` with a temporary
--logdir; NETSPEC_JAX_CACHE an empty temporary directory of its own per process (`--cache empty`,
the default: netspec as shipped, started cold; a sweep's or Optuna's later members may load what
its earlier ones compiled in the same process), or `--cache off` (NETSPEC_JAX_CACHE='': nothing
cached at all). Within each repeat every variant runs once, one after another (interleaved);
the tables give medians over the repeats.

1. XOR (specs/xor_nn.yaml, 10001 steps; `--xor-steps` shortens it), the grid
   `sweep: {optimizer.learning_rate: [0.03, 0.1, 0.3, 1.0], seed: [0, 1, 2, 3]}` (16 members;
   `--xor-lrs` / `--xor-seeds` change it), applied as `--set 'sweep={...}'`:
   - the sweep: one `netspec run specs/xor_nn.yaml --set 'sweep={...}'`, whole-process wall seconds;
   - every member as a plain run, one after another: `netspec run specs/xor_nn.yaml --set
     optimizer.learning_rate=LR --set seed=S` (the member's values), each a process of its own;
     "16 plain runs" is the sum of their wall seconds;
   - Optuna: one process (`--optuna-child`) that imports optuna and netspec, runs a study with
     `optuna.samplers.GridSampler` over the same values (direction minimize), each trial training
     xor_nn in-process through the public API (`netspec.load_spec` with the member's overrides,
     `netspec.train(..., quiet=True)`) and returning its final training loss; its whole wall seconds.
   Targets: (a) the sweep's training phase over one member's (≤ 2x): one member's training phase
   is a plain run's result.json train_seconds (the median over every member's plain run: the same
   work, so more samples); (b) the 16 plain runs' wall seconds over the sweep's (≥ 8x).

2. Fashion-MNIST MLP (specs/fashion_mlp.yaml, `--set train.steps=N`, N = --steps, default 2000:
   chunks of 200 steps, its summaries.every) with `--fashion-members` learning rates log-spaced
   over 1e-4..3e-2 (8 by default; `--fashion-lrs` gives them): the sweep's whole process against
   its members' plain runs one after another (≥ 1.5x), and its training throughput in
   member-steps per second (members x N / the sweep's training wall seconds) against the
   hand-written loop below (≥ 0.9x).
   The hand-written loop (`--hand-child`, a process of its own): the same 784-256-256-10 relu MLP
   (glorot-uniform kernels, zero biases, every member from the same initial parameters, as the
   sweep's members share the spec's seed), softmax cross-entropy on the logits, Adam through
   `optax.inject_hyperparams(optax.adam)` with each member's learning rate in its optimizer
   state, the members' parameters and optimizer states stacked and the update `jax.vmap`ped over
   them; the training images resident on the device as uint8 and scaled by 1/255 in the step;
   each step's batch of 100 gathered by an int32 index array (one permutation per epoch, the same
   batches for every member); 200 steps per chunk as one jitted `lax.scan` with the state
   donated. It is compiled ahead (compile_seconds), one chunk is run and discarded as warm-up,
   then N steps are timed (waited for): member-steps/s = members x N / those seconds.

3. Memory: peak RSS of the fashion sweep's process against one plain fashion_mlp run (the median
   over the members' plain runs).

On a GPU (`--platform default`, JAX chooses the device): `--fashion-members 32 --skip xor
--plain-runs 2` gives the sweep's member-steps/s against one member's (a plain run's steps/s) and
against the hand-written vmapped loop of the same 32 rates, without 32 plain runs one after another.

The sweep's training seconds. Each member's run directory has its own result.json with
`train_seconds`. While members train one after another (today) the sweep's training wall time is
their sum. When members train together in one vmapped program, each member's train_seconds is
its group's shared wall time, so the sweep's is the sum over groups, i.e. over the distinct
values (one group: their max). The script takes the sum of the distinct values, which is both;
should that exceed the sweep process's own wall time (members that overlapped but wrote values
that differ), it takes the max and says so. `--sweep-train sum|max` forces one rule. The JSON has
the sum, the max, the number of distinct values and the rule used.

Output: a Markdown section to paste into benchmarks/RESULTS.md (date, machine, versions, cache
mode, the tables) on stdout, and the raw numbers (every process of every repeat) as JSON at --json.
The final losses of the sweep's members and of their plain runs are compared (the largest
difference is printed): today they are equal bit for bit.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from capped import run_capped

ROOT = Path(__file__).resolve().parent.parent
XOR_SPEC = "specs/xor_nn.yaml"
FASHION_SPEC = "specs/fashion_mlp.yaml"
XOR_LRS = [0.03, 0.1, 0.3, 1.0]
XOR_SEEDS = [0, 1, 2, 3]
CHUNK = 200  # fashion_mlp's summaries.every: netspec's chunk, and the hand-written loop's


# ------------------------------------------------------------------------------------------ helpers


def log_spaced(n: int, lo: float = 1e-4, hi: float = 3e-2) -> list[float]:
    """n learning rates from lo to hi, evenly spaced in log, to 3 significant digits."""
    if n == 1:
        return [lo]
    return [float(f"{math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (n - 1)):.3g}") for i in range(n)]


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or platform.machine(),
    )

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "cpu": model,
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "jax": version("jax"),
        "jaxlib": version("jaxlib"),
        "optax": version("optax"),
        "optuna": version("optuna"),
        "netspec": version("netspec"),
    }


class Runner:
    """Runs the children: a fresh process each, the cache mode's environment, a temporary logdir."""

    def __init__(self, args: argparse.Namespace, tmp: Path):
        self.args, self.tmp = args, tmp
        script = Path(sys.executable).with_name("netspec")  # the installed command, else the module (a device
        # machine with netspec on PYTHONPATH only)
        self.netspec = (
            [str(script)] if script.exists() else [sys.executable, "-c", "from netspec.cli import main; main()"]
        )
        self.count = 0

    def env(self, cache_dir: Path | None) -> dict:
        env = dict(os.environ)
        if self.args.platform != "default":
            env["JAX_PLATFORMS"] = self.args.platform
        env["NETSPEC_JAX_CACHE"] = "" if cache_dir is None else str(cache_dir)
        return env

    def child(self, cmd: list[str], what: str) -> tuple[dict, Path]:
        """Runs `cmd` (`{logdir}` in it replaced); returns run_capped's record and the logdir."""
        self.count += 1
        work = self.tmp / f"{self.count:04d}"
        logdir, cache = work / "runs", work / "cache"
        logdir.mkdir(parents=True)
        cache_dir = None
        if self.args.cache == "empty":
            cache.mkdir()
            cache_dir = cache
        cmd = [part.replace("{logdir}", str(logdir)) for part in cmd]
        record = run_capped(cmd, self.args.cap, self.args.timeout, self.env(cache_dir))
        record["what"] = what
        if record["exit"] not in (0, 1):
            tail = "\n".join(record["output"].strip().splitlines()[-15:])
            raise SystemExit(f"{what}: exit {record['exit']} after {record['seconds']:.1f} s: {' '.join(cmd)}\n{tail}")
        print(f"  {what}: {record['seconds']:.2f} s, peak {record['peak_mib']:.0f} MiB", file=sys.stderr)
        return record, logdir

    def done(self, logdir: Path) -> None:
        shutil.rmtree(logdir.parent, ignore_errors=True)


def sweep_override(values: dict[str, list]) -> str:
    return "sweep=" + json.dumps(values)  # JSON is YAML: a flow mapping


def grid(values: dict[str, list]) -> list[dict]:
    """The grid's members in netspec's order (the keys as written, the last varying fastest)."""
    keys = list(values)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values.values())]


def member_sets(values: dict) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def with_sets(cmd: list[str], sets: list[str]) -> list[str]:
    return cmd + [arg for s in sets for arg in ("--set", s)]


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def sweep_training(train_seconds: list[float], process_seconds: float, rule: str) -> dict:
    """The sweep's training wall time from its members' train_seconds (see the module docstring)."""
    distinct = sorted(set(train_seconds))
    summed, largest, distinct_sum = sum(train_seconds), max(train_seconds), sum(distinct)
    if rule == "sum":
        chosen, used = summed, "sum"
    elif rule == "max":
        chosen, used = largest, "max"
    elif distinct_sum <= process_seconds:
        chosen = distinct_sum
        if len(distinct) == len(train_seconds):
            used = "sum (members one after another)"
        elif len(distinct) == 1:
            used = "the one shared value (members trained together)"
        else:
            used = f"sum over {len(distinct)} groups' shared values (members trained together)"
    else:
        chosen, used = largest, "max (overlapping members with differing values)"
    return {
        "seconds": chosen,
        "rule": used,
        "sum": summed,
        "max": largest,
        "distinct_values": len(distinct),
        "members": len(train_seconds),
    }


def run_sweep(runner: Runner, spec: str, base: list[str], values: dict[str, list], what: str) -> dict:
    cmd = with_sets([*runner.netspec, "run", spec, "--quiet", "--logdir", "{logdir}"], [*base, sweep_override(values)])
    record, logdir = runner.child(cmd, what)
    tables = list(logdir.glob("*/*/result.json"))
    table = read_json(tables[0]) if len(tables) == 1 else None
    if table is None:
        tail = "\n".join(record["output"].strip().splitlines()[-15:])
        raise SystemExit(f"{what}: wrote no sweep result.json (exit {record['exit']})\n{tail}")
    order = [m["name"] for m in (read_json(tables[0].with_name("sweep.json")) or {}).get("members", [])]
    rows = sorted(
        table["members"], key=lambda row: order.index(row["member"]) if row["member"] in order else len(order)
    )
    members = []  # in the sweep's order (result.json ranks them)
    for row in rows:
        result = read_json(Path(row["run_dir"]) / "result.json") or {}
        members.append(
            {
                "member": row["member"],
                "values": row["values"],
                "status": row["status"],
                "train_seconds": result.get("train_seconds"),
                "compile_seconds": result.get("compile_seconds"),
                "first_step_seconds": result.get("first_step_seconds"),
                "steps": result.get("steps"),
                "final_loss": (result.get("final") or {}).get("loss"),
                "ran": result.get("ran"),
            }
        )
    runner.done(logdir)
    times = [m["train_seconds"] for m in members if m["train_seconds"] is not None]
    training = sweep_training(times, record["seconds"], runner.args.sweep_train) if times else None
    return {
        "exit": record["exit"],
        "seconds": record["seconds"],
        "peak_mib": record["peak_mib"],
        "training": training,
        "failed": [m["member"] for m in members if m["status"] != "finished"],
        "members": members,
    }


def run_plain(runner: Runner, spec: str, base: list[str], values: dict, what: str) -> dict:
    cmd = with_sets([*runner.netspec, "run", spec, "--quiet", "--logdir", "{logdir}"], [*base, *member_sets(values)])
    record, logdir = runner.child(cmd, what)
    results = list(logdir.glob("*/*/result.json"))
    result = (read_json(results[0]) if len(results) == 1 else None) or {}
    runner.done(logdir)
    return {
        "values": values,
        "exit": record["exit"],
        "seconds": record["seconds"],
        "peak_mib": record["peak_mib"],
        "train_seconds": result.get("train_seconds"),
        "compile_seconds": result.get("compile_seconds"),
        "first_step_seconds": result.get("first_step_seconds"),
        "steps": result.get("steps"),
        "final_loss": (result.get("final") or {}).get("loss"),
    }


def largest_difference(sweep: dict, plains: list[dict]) -> float | None:
    """The largest |final loss| difference between a sweep's members and their plain runs."""
    by_values = {json.dumps(p["values"], sort_keys=True): p["final_loss"] for p in plains}
    diffs = []
    for m in sweep["members"]:
        other = by_values.get(json.dumps(m["values"], sort_keys=True))
        if m["final_loss"] is not None and other is not None:
            diffs.append(abs(m["final_loss"] - other))
    return max(diffs) if diffs else None


# ------------------------------------------------------------------------------- the XOR section


def xor_repeat(runner: Runner, args: argparse.Namespace, r: int, optuna: bool) -> dict:
    base = [] if args.xor_steps is None else [f"train.steps={args.xor_steps}"]
    values = {"optimizer.learning_rate": args.xor_lrs, "seed": args.xor_seeds}
    sweep = run_sweep(runner, XOR_SPEC, base, values, f"[{r}] xor sweep")
    plains = [
        run_plain(runner, XOR_SPEC, base, member, f"[{r}] xor plain {json.dumps(member)}") for member in grid(values)
    ]
    out = {"sweep": sweep, "plain": plains, "loss_difference": largest_difference(sweep, plains)}
    if optuna:
        cmd = [
            sys.executable,
            __file__,
            "--optuna-child",
            json.dumps({"spec": XOR_SPEC, "base": base, "values": values, "logdir": "{logdir}"}),
        ]
        record, logdir = runner.child(cmd, f"[{r}] xor optuna")
        runner.done(logdir)
        lines = record["output"].strip().splitlines()
        if record["exit"] != 0 or not lines:
            raise SystemExit(f"optuna child failed (exit {record['exit']}):\n" + "\n".join(lines[-15:]))
        out["optuna"] = {**json.loads(lines[-1]), "seconds": record["seconds"], "peak_mib": record["peak_mib"]}
    return out


def optuna_child(config: dict) -> None:
    """One Optuna study over the grid, each trial an in-process netspec.train (prints one JSON line)."""
    started = time.perf_counter()
    import optuna

    import netspec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    values = config["values"]
    names = {key: f"x{i}" for i, key in enumerate(values)}  # Optuna's parameter names: any string, kept short
    trials = []

    def objective(trial) -> float:
        chosen = {key: trial.suggest_categorical(names[key], values[key]) for key in values}
        t0 = time.perf_counter()
        spec = netspec.load_spec(config["spec"], [*config["base"], *member_sets(chosen)])
        result = netspec.train(spec, logdir=config["logdir"], quiet=True)
        loss = float(result.final["loss"])
        trials.append(
            {
                "values": chosen,
                "seconds": time.perf_counter() - t0,
                "train_seconds": result.train_seconds,
                "final_loss": loss,
            }
        )
        return loss

    imported = time.perf_counter()
    sampler = optuna.samplers.GridSampler({names[key]: values[key] for key in values}, seed=0)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(objective, n_trials=math.prod(len(v) for v in values.values()))
    end = time.perf_counter()
    print(
        json.dumps(
            {
                "optuna": optuna.__version__,
                "import_seconds": imported - started,
                "study_seconds": end - imported,
                "trials": trials,
                "best_loss": study.best_value,
            }
        )
    )


# --------------------------------------------------------------------------- the Fashion section


def fashion_repeat(runner: Runner, args: argparse.Namespace, r: int) -> dict:
    base = [f"train.steps={args.steps}"]
    values = {"optimizer.learning_rate": args.fashion_lrs}
    sweep = run_sweep(runner, FASHION_SPEC, base, values, f"[{r}] fashion sweep")
    plains = [
        run_plain(runner, FASHION_SPEC, base, member, f"[{r}] fashion plain {json.dumps(member)}")
        for member in grid(values)[: args.plain_runs]
    ]
    cmd = [sys.executable, __file__, "--hand-child", json.dumps({"lrs": args.fashion_lrs, "steps": args.steps})]
    record, logdir = runner.child(cmd, f"[{r}] fashion hand-written vmapped scan")
    runner.done(logdir)
    lines = record["output"].strip().splitlines()
    if record["exit"] != 0 or not lines:
        raise SystemExit(f"hand-written child failed (exit {record['exit']}):\n" + "\n".join(lines[-15:]))
    hand = {**json.loads(lines[-1]), "seconds": record["seconds"], "peak_mib": record["peak_mib"]}
    return {"sweep": sweep, "plain": plains, "hand": hand, "loss_difference": largest_difference(sweep, plains)}


def hand_child(config: dict) -> None:
    """The hand-written vmapped lax.scan loop (see the module docstring); prints one JSON line."""
    started = time.perf_counter()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fashion_baselines import batch_indices, load_fashion

    lrs, steps, batch = config["lrs"], config["steps"], 100
    members = len(lrs)
    x_train, y_train, _, _ = load_fashion()
    sizes = [784, 256, 256, 10]
    glorot = jax.nn.initializers.glorot_uniform()
    key = jax.random.key(777)
    params = []
    for n_in, n_out in itertools.pairwise(sizes):
        key, k = jax.random.split(key)
        params.append((glorot(k, (n_in, n_out), jnp.float32), jnp.zeros((n_out,), jnp.float32)))
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)  # b1 0.9, b2 0.999, eps 1e-8
    stacked = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (members, *a.shape)).copy(), params)
    opt_state = jax.vmap(opt.init)(stacked)
    opt_state.hyperparams["learning_rate"] = jnp.asarray(lrs, jnp.float32)  # one per member

    def loss_fn(params, xb_u8, yb):
        h = xb_u8.astype(jnp.float32) * (1.0 / 255.0)
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        w, b = params[-1]
        return optax.softmax_cross_entropy_with_integer_labels(h @ w + b, yb).mean()

    def update(params, opt_state, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    vupdate = jax.vmap(update, in_axes=(0, 0, None, None))  # every member on the same batch

    def chunk(params, opt_state, x, y, idx):
        def body(carry, rows):
            p, s = carry
            p, s, loss = vupdate(p, s, x[rows], y[rows])
            return (p, s), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), idx)
        return params, opt_state, losses

    # warm-up chunk + the timed steps: one permutation per epoch, cut into chunks of CHUNK steps
    total = CHUNK + steps
    idx = batch_indices(total, batch, len(x_train))
    x, y = jax.device_put(x_train), jax.device_put(y_train)
    pieces = [jax.device_put(idx[i : i + CHUNK]) for i in range(0, total, CHUNK)]
    t0 = time.perf_counter()
    compiled = {}
    for piece in pieces:
        n = piece.shape[0]
        if n not in compiled:
            compiled[n] = (
                jax.jit(chunk, donate_argnums=(0, 1)).lower(stacked, opt_state, x, y, piece).compile()
            )  # one for CHUNK steps, one for a shorter last chunk
    compile_seconds = time.perf_counter() - t0
    stacked, opt_state, losses = compiled[CHUNK](stacked, opt_state, x, y, pieces[0])  # warm-up
    jax.block_until_ready((stacked, opt_state, losses))
    ready = time.perf_counter()
    for piece in pieces[1:]:
        stacked, opt_state, losses = compiled[piece.shape[0]](stacked, opt_state, x, y, piece)
    jax.block_until_ready((stacked, opt_state, losses))
    end = time.perf_counter()
    final = np.asarray(losses[-1])
    print(
        json.dumps(
            {
                "members": members,
                "timed_steps": steps,
                "setup_seconds": ready - started,
                "compile_seconds": compile_seconds,
                "train_seconds": end - ready,
                "member_steps_per_second": members * steps / (end - ready),
                "final_losses": [float(v) for v in final],
            }
        )
    )


# ------------------------------------------------------------------------------------ the report


def xor_summary(reps: list[dict]) -> dict:
    n = len(reps[0]["plain"])
    s = {
        "members": n,
        "sweep_seconds": median([r["sweep"]["seconds"] for r in reps]),
        "sweep_train": median([r["sweep"]["training"]["seconds"] for r in reps if r["sweep"]["training"]]),
        "sweep_train_sum": median([r["sweep"]["training"]["sum"] for r in reps if r["sweep"]["training"]]),
        "sweep_train_max": median([r["sweep"]["training"]["max"] for r in reps if r["sweep"]["training"]]),
        "sweep_rule": reps[-1]["sweep"]["training"]["rule"] if reps[-1]["sweep"]["training"] else None,
        "sweep_peak_mib": median([r["sweep"]["peak_mib"] for r in reps]),
        "plains_seconds": median([sum(p["seconds"] for p in r["plain"]) for r in reps]),
        "plains_train": median([sum(p["train_seconds"] or 0.0 for p in r["plain"]) for r in reps]),
        "plain_seconds": median([p["seconds"] for r in reps for p in r["plain"]]),
        "plain_train": median([p["train_seconds"] for r in reps for p in r["plain"]]),
        "plain_peak_mib": median([p["peak_mib"] for r in reps for p in r["plain"]]),
        "loss_difference": max((r["loss_difference"] or 0.0) for r in reps),
        "sweep_best_loss": median(
            [
                min((m["final_loss"] for m in r["sweep"]["members"] if m["final_loss"] is not None), default=None)
                for r in reps
            ]
        ),
    }
    if "optuna" in reps[0]:
        s["optuna_seconds"] = median([r["optuna"]["seconds"] for r in reps])
        s["optuna_study_seconds"] = median([r["optuna"]["study_seconds"] for r in reps])
        s["optuna_train"] = median([sum(t["train_seconds"] for t in r["optuna"]["trials"]) for r in reps])
        s["optuna_best_loss"] = median([r["optuna"]["best_loss"] for r in reps])
    s["train_ratio"] = ratio(s["sweep_train"], s["plain_train"])
    s["whole_speedup"] = ratio(s["plains_seconds"], s["sweep_seconds"])
    s["optuna_ratio"] = ratio(s.get("optuna_seconds"), s["sweep_seconds"])
    return s


def fashion_summary(reps: list[dict], steps: int, members: int) -> dict:
    n = members
    trains = [r["sweep"]["training"]["seconds"] for r in reps if r["sweep"]["training"]]
    s = {
        "members": n,
        "steps": steps,
        "sweep_seconds": median([r["sweep"]["seconds"] for r in reps]),
        "sweep_train": median(trains),
        "sweep_rule": reps[-1]["sweep"]["training"]["rule"] if reps[-1]["sweep"]["training"] else None,
        "sweep_peak_mib": median([r["sweep"]["peak_mib"] for r in reps]),
        "sweep_member_steps": median([n * steps / t for t in trains]),
        # with --plain-runs K < members: the K runs' figures scaled to all the members
        "plains_seconds": median([sum(p["seconds"] for p in r["plain"]) * n / len(r["plain"]) for r in reps]),
        "plains_train": median(
            [sum(p["train_seconds"] or 0.0 for p in r["plain"]) * n / len(r["plain"]) for r in reps]
        ),
        "plains_member_steps": median(
            [len(r["plain"]) * steps / sum(p["train_seconds"] or 0.0 for p in r["plain"]) for r in reps]
        ),
        "plains_measured": len(reps[0]["plain"]),
        "plain_seconds": median([p["seconds"] for r in reps for p in r["plain"]]),
        "plain_train": median([p["train_seconds"] for r in reps for p in r["plain"]]),
        "plain_peak_mib": median([p["peak_mib"] for r in reps for p in r["plain"]]),
        "hand_seconds": median([r["hand"]["seconds"] for r in reps]),
        "hand_train": median([r["hand"]["train_seconds"] for r in reps]),
        "hand_compile": median([r["hand"]["compile_seconds"] for r in reps]),
        "hand_member_steps": median([r["hand"]["member_steps_per_second"] for r in reps]),
        "hand_peak_mib": median([r["hand"]["peak_mib"] for r in reps]),
        "loss_difference": max((r["loss_difference"] or 0.0) for r in reps),
    }
    s["whole_speedup"] = ratio(s["plains_seconds"], s["sweep_seconds"])
    s["throughput_ratio"] = ratio(s["sweep_member_steps"], s["hand_member_steps"])
    s["one_member_ratio"] = ratio(s["sweep_member_steps"], s["plains_member_steps"])
    s["rss_ratio"] = ratio(s["sweep_peak_mib"], s["plain_peak_mib"])
    return s


def _scaled(fashion: dict) -> str:
    """The row's note when only some members' plain runs were measured (--plain-runs)."""
    k, n = fashion["plains_measured"], fashion["members"]
    return "" if k >= n else f" (the first {k} measured, scaled to {n})"


def markdown(args: argparse.Namespace, facts: dict, xor: dict | None, fashion: dict | None, notes: list[str]) -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    cache = (
        "NETSPEC_JAX_CACHE an empty temporary directory per process (cold, as shipped)"
        if args.cache == "empty"
        else "NETSPEC_JAX_CACHE='' (no compilation cache)"
    )
    versions = f"python {facts['python']}, jax {facts['jax']}, optax {facts['optax']}"
    if facts["optuna"]:
        versions += f", optuna {facts['optuna']}"
    lines = [
        f"## Sweeps: one process against its members' plain runs, {stamp}",
        "",
        f"processor `{facts['cpu']}`, nproc {facts['nproc']}, {facts['kernel']}  ",
        f"{versions}  ",
        f"JAX_PLATFORMS={'(unset)' if args.platform == 'default' else args.platform}, repeats {args.repeats} "
        f"(medians), interleaved; every process fresh, {cache}",
    ]
    if xor:
        n = xor["members"]
        steps = args.xor_steps or 10001
        lines += [
            "",
            f"### XOR: {n} members ({len(args.xor_lrs)} learning rates x {len(args.xor_seeds)} seeds), "
            f"xor_nn, {steps} steps each",
            "",
            "| run | processes | whole s | training s | best final loss |",
            "|---|---:|---:|---:|---:|",
            f"| sweep, one `netspec run` | 1 | {fmt(xor['sweep_seconds'])} | {fmt(xor['sweep_train'], '.3f')} "
            f"| {fmt(xor['sweep_best_loss'], '.4g')} |",
            f"| {n} plain runs, one after another | {n} | {fmt(xor['plains_seconds'])} "
            f"| {fmt(xor['plains_train'], '.3f')} | |",
            f"| one plain run (median of all) | 1 | {fmt(xor['plain_seconds'])} | {fmt(xor['plain_train'], '.3f')} | |",
        ]
        if "optuna_seconds" in xor:
            lines.append(
                f"| Optuna GridSampler, {n} in-process `netspec.train` trials | 1 | {fmt(xor['optuna_seconds'])} "
                f"| {fmt(xor['optuna_train'], '.3f')} | {fmt(xor['optuna_best_loss'], '.4g')} |"
            )
        lines += [
            "",
            "| target | value | goal |",
            "|---|---:|---|",
            f"| sweep training s / one member's training s | {fmt(xor['train_ratio'])} | ≤ 2 |",
            f"| {n} plain runs whole s / sweep whole s | {fmt(xor['whole_speedup'])} | ≥ 8 |",
        ]
        if "optuna_seconds" in xor:
            lines.append(f"| Optuna whole s / sweep whole s | {fmt(xor['optuna_ratio'])} | (info) |")
        lines += [
            "",
            f"Sweep training s: {xor['sweep_rule']} of the members' train_seconds (sum {fmt(xor['sweep_train_sum'], '.3f')},"
            f" max {fmt(xor['sweep_train_max'], '.3f')}). Largest |final loss| difference between a sweep member and"
            f" its plain run: {fmt(xor['loss_difference'], '.3g')}.",
        ]
    if fashion:
        n, steps = fashion["members"], fashion["steps"]
        lines += [
            "",
            f"### Fashion-MNIST MLP: {n} learning rates ({', '.join(f'{v:g}' for v in args.fashion_lrs)}), "
            f"{steps} steps of batch 100 each",
            "",
            "| run | processes | whole s | training s | member-steps/s | peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|",
            f"| sweep, one `netspec run` | 1 | {fmt(fashion['sweep_seconds'])} | {fmt(fashion['sweep_train'])} "
            f"| {fmt(fashion['sweep_member_steps'], '.0f')} | {fmt(fashion['sweep_peak_mib'], '.0f')} |",
            f"| {n} plain runs, one after another{_scaled(fashion)} | {n} | {fmt(fashion['plains_seconds'])} "
            f"| {fmt(fashion['plains_train'])} | {fmt(fashion['plains_member_steps'], '.0f')} "
            f"| {fmt(fashion['plain_peak_mib'], '.0f')} (one) |",
            f"| hand-written vmapped lax.scan | 1 | {fmt(fashion['hand_seconds'])} | {fmt(fashion['hand_train'])} "
            f"| {fmt(fashion['hand_member_steps'], '.0f')} | {fmt(fashion['hand_peak_mib'], '.0f')} |",
            "",
            "| target | value | goal |",
            "|---|---:|---|",
            f"| {n} plain runs whole s / sweep whole s | {fmt(fashion['whole_speedup'])} | ≥ 1.5 |",
            f"| sweep member-steps/s / hand-written's | {fmt(fashion['throughput_ratio'])} | ≥ 0.9 |",
            f"| sweep member-steps/s / one plain run's steps/s | {fmt(fashion['one_member_ratio'])} | (info; on a GPU ≫ 10) |",
            f"| sweep peak RSS / one plain run's | {fmt(fashion['rss_ratio'])} | (info) |",
            "",
            f"Sweep training s: {fashion['sweep_rule']} of the members' train_seconds. Hand-written: compiled ahead "
            f"({fmt(fashion['hand_compile'])} s), one {CHUNK}-step chunk of warm-up, then {steps} steps timed. "
            f"Largest |final loss| difference between a sweep member and its plain run: "
            f"{fmt(fashion['loss_difference'], '.3g')}.",
        ]
    commands = []
    if xor:
        commands.append(
            f"`netspec run {XOR_SPEC} --quiet --logdir LOGDIR"
            + ("" if args.xor_steps is None else f" --set train.steps={args.xor_steps}")
            + f" --set '{sweep_override({'optimizer.learning_rate': args.xor_lrs, 'seed': args.xor_seeds})}'`"
        )
    if fashion:
        commands.append(
            f"`netspec run {FASHION_SPEC} --quiet --logdir LOGDIR --set train.steps={args.steps}"
            f" --set '{sweep_override({'optimizer.learning_rate': args.fashion_lrs})}'`"
        )
    lines += [
        "",
        "Commands: "
        + "; ".join(commands)
        + "; plain runs: the same without the sweep, with each member's `--set` values.",
    ]
    lines += ["", f"Run: `{' '.join(['python benchmarks/sweep_bench.py', *sys.argv[1:]])}`"]
    lines += ["", *notes] if notes else []
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000, help="fashion_mlp's steps (train.steps), default 2000")
    parser.add_argument("--xor-steps", type=int, default=None, help="xor_nn's steps (default: the spec's 10001)")
    parser.add_argument("--xor-lrs", type=float, nargs="+", default=XOR_LRS)
    parser.add_argument("--xor-seeds", type=int, nargs="+", default=XOR_SEEDS)
    parser.add_argument("--fashion-members", type=int, default=8, help="learning rates log-spaced over 1e-4..3e-2")
    parser.add_argument("--fashion-lrs", type=float, nargs="+", default=None, help="the learning rates themselves")
    parser.add_argument("--skip", nargs="*", default=[], choices=["xor", "optuna", "fashion"])
    parser.add_argument(
        "--platform",
        default="cpu",
        help="JAX_PLATFORMS for every child (default cpu; 'default': jax chooses, e.g. a GPU)",
    )
    parser.add_argument(
        "--plain-runs",
        type=int,
        default=None,
        help="fashion: run only the first K members' plain runs (the K-run figures scaled to all the members)",
    )
    parser.add_argument("--cache", choices=["empty", "off"], default="empty")
    parser.add_argument("--sweep-train", choices=["auto", "sum", "max"], default="auto")
    parser.add_argument("--cap", default=f"{16 * 2**30}", help="prlimit --as for every child (bytes)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for any one child")
    parser.add_argument("--json", default=None, help="write the raw numbers here")
    parser.add_argument("--optuna-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--hand-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.optuna_child is not None:
        return optuna_child(json.loads(args.optuna_child))
    if args.hand_child is not None:
        return hand_child(json.loads(args.hand_child))
    if args.fashion_lrs is None:
        args.fashion_lrs = log_spaced(args.fashion_members)
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    facts = machine()
    notes = []
    optuna = "optuna" not in args.skip and "xor" not in args.skip
    if optuna and importlib.util.find_spec("optuna") is None:
        optuna = False
        notes.append("Optuna: not installed in this interpreter (`pip install optuna`), so that row is missing.")
        print("optuna is not installed (pip install optuna): its section is skipped", file=sys.stderr)
    started = time.perf_counter()
    xor_reps, fashion_reps = [], []
    with tempfile.TemporaryDirectory(prefix="netspec-sweep-bench-") as tmp:
        runner = Runner(args, Path(tmp))
        for r in range(args.repeats):
            if "xor" not in args.skip:
                xor_reps.append(xor_repeat(runner, args, r, optuna))
            if "fashion" not in args.skip:
                fashion_reps.append(fashion_repeat(runner, args, r))
    xor = xor_summary(xor_reps) if xor_reps else None
    fashion = fashion_summary(fashion_reps, args.steps, len(args.fashion_lrs)) if fashion_reps else None
    for name, reps in (("xor", xor_reps), ("fashion", fashion_reps)):
        failed = sorted({m for rep in reps for m in rep["sweep"]["failed"]})
        failed_plain = sorted({json.dumps(p["values"]) for rep in reps for p in rep["plain"] if p["exit"] != 0})
        if failed or failed_plain:
            notes.append(f"{name}: failed sweep members {failed or '-'}, failed plain runs {failed_plain or '-'}.")
    notes.append(f"The whole benchmark took {time.perf_counter() - started:.0f} s.")
    text = markdown(args, facts, xor, fashion, notes)
    print(text)
    if args.json:
        raw = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": facts,
            "args": {k: v for k, v in vars(args).items() if not k.endswith("_child")},
            "summary": {"xor": xor, "fashion": fashion},
            "repeats": {"xor": xor_reps, "fashion": fashion_reps},
            "notes": notes,
        }
        Path(args.json).write_text(json.dumps(raw, indent=1) + "\n")


if __name__ == "__main__":
    main()
