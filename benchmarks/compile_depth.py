"""Cold start-up against depth: N dense layers of 4 units, netspec against a hand-written JAX loop.

    python benchmarks/compile_depth.py [--depths 25 50 100 200 400] [--cap 12GiB] [--timeout 900] [--markdown FILE]
    python benchmarks/compile_depth.py --hand N      # the hand-written loop itself (one child process)

For each depth N the model is N dense layers of 4 units (tanh) and a sigmoid output unit, trained
on XOR with plain SGD, batch 4, 10 steps. Each command runs cold, as its own process, with JAX's
persistent compilation cache off (NETSPEC_JAX_CACHE=""), JAX_PLATFORMS=cpu, under an address-space
cap (prlimit --as) and a timeout:

- `netspec validate` (wall seconds);
- `netspec run --quiet`: wall seconds of the whole process, its peak RSS (wait4's ru_maxrss),
  and from result.json `first_step_seconds` (process start to the first step done: imports,
  data, compile, one step) and `compile_seconds` (XLA compile of the train chunks);
- the hand-written loop (`--hand N`): the same model as a list of (kernel, bias) pairs, one
  `jax.jit` of value_and_grad + SGD update, called per step: the same figures.

The netspec spec uses the defaults a user gets (summaries with the graph and weight histograms).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from capped import run_capped

START = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, JAX_PLATFORMS="cpu", NETSPEC_JAX_CACHE="")


def spec_text(depth: int) -> str:
    lines = [
        "name: deep",
        "data:",
        "  inline:",
        "    x: [[0, 0], [0, 1], [1, 0], [1, 1]]",
        "    y: [[0], [1], [1], [0]]",
        "model:",
        "  input: [2]",
        "  layers:",
    ]
    lines += [f"    - {{name: d{i}, type: dense, units: 4, activation: tanh}}" for i in range(depth)]
    lines += [
        "    - {name: out, type: dense, units: 1, activation: sigmoid}",
        "loss: binary_crossentropy",
        "optimizer: {type: sgd, learning_rate: 0.1}",
        "train: {steps: 10, batch_size: 4}",
        "summaries: {every: 10}",
    ]
    return "\n".join(lines) + "\n"


def hand(depth: int) -> None:
    """The hand-written loop: prints {"first_step_seconds", "compile_seconds"} as JSON."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    x = jnp.asarray(np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32))
    y = jnp.asarray(np.array([[0], [1], [1], [0]], np.float32))
    key = jax.random.key(0)
    sizes = [2] + [4] * depth + [1]
    params = []
    init = jax.nn.initializers.glorot_uniform()
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        params.append((init(jax.random.fold_in(key, i), (a, b), jnp.float32), jnp.zeros((b,), jnp.float32)))

    def loss(params, x, y):
        h = x
        for w, b in params[:-1]:
            h = jnp.tanh(h @ w + b)
        w, b = params[-1]
        z = h @ w + b
        return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))

    @jax.jit
    def step(params, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads), value

    t0 = time.perf_counter()
    compiled = step.lower(params, x, y).compile()
    compile_seconds = time.perf_counter() - t0
    params, value = compiled(params, x, y)
    value.block_until_ready()
    first = time.perf_counter() - START
    for _ in range(9):
        params, value = compiled(params, x, y)
    value.block_until_ready()
    print(json.dumps({"first_step_seconds": first, "compile_seconds": compile_seconds, "loss": float(value)}))


def run_child(cmd: list[str], cap: str, timeout: float) -> dict:
    """Runs `cmd` under `prlimit --as=cap` (`capped.run_capped`): exit status, wall seconds, peak RSS MiB, output."""
    return run_capped(cmd, cap, timeout, ENV)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="*", default=[25, 50, 100, 200, 400])
    parser.add_argument("--cap", default=f"{12 * 2**30}")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--hand", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--skip-hand", action="store_true")
    args = parser.parse_args()
    if args.hand is not None:
        return hand(args.hand)
    netspec = str(Path(sys.executable).with_name("netspec"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="netspec-depth-") as tmp:
        for depth in args.depths:
            spec = Path(tmp) / f"deep{depth}.yaml"
            spec.write_text(spec_text(depth))
            v = run_child([netspec, "validate", str(spec)], args.cap, args.timeout)
            r = run_child(
                [netspec, "run", str(spec), "--quiet", "--logdir", f"{tmp}/runs", "--run-name", f"d{depth}"],
                args.cap,
                args.timeout,
            )
            result_file = Path(tmp) / "runs" / "deep" / f"d{depth}" / "result.json"
            result = json.loads(result_file.read_text()) if result_file.exists() else {}
            row = {
                "depth": depth,
                "validate_s": v["seconds"],
                "validate_exit": v["exit"],
                "netspec_exit": r["exit"],
                "netspec_s": r["seconds"],
                "netspec_mib": r["peak_mib"],
                "netspec_first": result.get("first_step_seconds"),
                "netspec_compile": result.get("compile_seconds"),
            }
            if r["exit"] != 0:
                row["netspec_error"] = r["output"].strip().splitlines()[-1:] if r["output"].strip() else []
            if not args.skip_hand:
                h = run_child([sys.executable, __file__, "--hand", str(depth)], args.cap, args.timeout)
                out = json.loads(h["output"].strip().splitlines()[-1]) if h["exit"] == 0 else {}
                row.update(
                    {
                        "hand_exit": h["exit"],
                        "hand_s": h["seconds"],
                        "hand_mib": h["peak_mib"],
                        "hand_first": out.get("first_step_seconds"),
                        "hand_compile": out.get("compile_seconds"),
                    }
                )
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.markdown:

        def fmt(v):
            return "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))

        with open(args.markdown, "w") as f:
            f.write(
                f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
                f"python {platform.python_version()}, cap {args.cap} bytes (prlimit --as), cold (no compilation cache), JAX_PLATFORMS=cpu\n\n"
            )
            f.write(
                "| layers | validate s | netspec whole s | netspec first step s | netspec compile s | netspec peak MiB "
                "| hand whole s | hand first step s | hand compile s | hand peak MiB |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
            )
            for r in rows:
                f.write(
                    f"| {r['depth']} | {fmt(r['validate_s'])} | {fmt(r['netspec_s'])}{'' if r['netspec_exit'] == 0 else ' (' + str(r['netspec_exit']) + ')'} "
                    f"| {fmt(r['netspec_first'])} | {fmt(r['netspec_compile'])} | {fmt(r['netspec_mib'])} "
                    f"| {fmt(r.get('hand_s'))}{'' if r.get('hand_exit', 0) == 0 else ' (' + str(r.get('hand_exit')) + ')'} "
                    f"| {fmt(r.get('hand_first'))} | {fmt(r.get('hand_compile'))} | {fmt(r.get('hand_mib'))} |\n"
                )


if __name__ == "__main__":
    main()
