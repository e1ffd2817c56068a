"""What checkpoints cost: one write of fashion_cnn's TrainState, and checkpointing every N steps.

    python benchmarks/bench_checkpoint.py [--runs 3] [--steps 3000] [--every 1000] [--data-dir DIR]

1. fashion_cnn's whole TrainState (parameters, Adam's moments, step) through
   `netspec.checkpoint.save` (safetensors, fsync, rename): file size, median write time of
   --writes writes, and the median time of `netspec.checkpoint.load` back into init().
2. fashion_mlp, --steps steps (batch 100), with `checkpoint.every=--every` and without (only the
   final checkpoint, which falls outside train_seconds), --runs runs each, interleaved in this
   one process; steps/s and train seconds from each run's result.json, medians printed, and the
   overhead per in-loop checkpoint.

Fashion-MNIST is read from --data-dir (default Debian's /usr/share/datasets/fashion-mnist).
Prints a small Markdown table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from netspec.training import loop as T

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def checkpoint_write(data_dir: str, writes: int) -> dict:
    import jax

    from netspec.compile.program import compile_spec
    from netspec.spec.check import check
    from netspec.spec.load import load
    from netspec.training import checkpoint

    spec = check(load(SPECS / "fashion_cnn.yaml", [f"data.fashion_mnist.dir={data_dir}"]))
    program = compile_spec(spec)
    state = jax.block_until_ready(program.init())
    params = sum(leaf.size for leaf in jax.tree_util.tree_leaves(state.params))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "step-00000001.safetensors"
        save_times, load_times = [], []
        for i in range(writes):
            start = time.perf_counter()
            checkpoint.save(path, state, {"spec": spec.name, "step": i})
            save_times.append(time.perf_counter() - start)
        template = program.init()
        for _ in range(writes):
            start = time.perf_counter()
            jax.block_until_ready(checkpoint.load(path, template))
            load_times.append(time.perf_counter() - start)
        size = path.stat().st_size
    return {
        "params": params,
        "bytes": size,
        "save_s": statistics.median(save_times),
        "load_s": statistics.median(load_times),
        "save_all_s": save_times,
    }


def overhead(data_dir: str, runs: int, steps: int, every: int) -> dict:
    pass  # import moved
    from netspec.spec.check import check
    from netspec.spec.load import load

    sets = [f"train={{steps: {steps}, batch_size: 100}}", f"data.fashion_mnist.dir={data_dir}"]
    results: dict[str, list[dict]] = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as logdir:
        for r in range(runs):
            for label in ("without", "with") if r % 2 == 0 else ("with", "without"):  # interleaved, alternating order
                extra = [f"checkpoint.every={every}"] if label == "with" else []
                result = T.run(check(load(SPECS / "fashion_mlp.yaml", sets + extra)), logdir=logdir, quiet=True)
                report = json.loads((result.run_dir / "result.json").read_text())
                results[label].append(
                    {
                        "steps_per_second": report["steps_per_second"],
                        "train_seconds": report["train_seconds"],
                        "checkpoints": sorted(p.name for p in (result.run_dir / "checkpoints").iterdir()),
                    }
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=5)
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()

    import jax

    print(
        f"# checkpoint cost ({time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, jax {jax.__version__} on {jax.default_backend()}, python {sys.version.split()[0]})\n"
    )
    write = checkpoint_write(args.data_dir, args.writes)
    print("| fashion_cnn TrainState | value |\n|---|---|")
    print(f"| parameters | {write['params']:,} |")
    print(f"| checkpoint file | {write['bytes'] / 2**20:.2f} MiB ({write['bytes']:,} bytes) |")
    print(
        f"| save (median of {args.writes}) | {1e3 * write['save_s']:.1f} ms (each: {', '.join(f'{1e3 * t:.1f}' for t in write['save_all_s'])} ms) |"
    )
    print(f"| load into init() (median of {args.writes}) | {1e3 * write['load_s']:.1f} ms |\n")

    results = overhead(args.data_dir, args.runs, args.steps, args.every)
    in_loop = args.steps // args.every - (
        1 if args.steps % args.every == 0 else 0
    )  # the final one is outside train_seconds
    print(
        f"| fashion_mlp, {args.steps} steps, batch 100 | steps/s (median of {args.runs}) | train s (median) | each run's steps/s |"
    )
    print("|---|---|---|---|")
    medians = {}
    for label, runs in results.items():
        rates = [r["steps_per_second"] for r in runs]
        seconds = [r["train_seconds"] for r in runs]
        medians[label] = (statistics.median(rates), statistics.median(seconds))
        name = f"checkpoint.every={args.every}" if label == "with" else "no checkpoint.every"
        print(
            f"| {name} | {medians[label][0]:.0f} | {medians[label][1]:.3f} | {', '.join(f'{v:.0f}' for v in rates)} |"
        )
    slower = medians["without"][0] / medians["with"][0] - 1
    per_checkpoint = (medians["with"][1] - medians["without"][1]) / max(in_loop, 1)
    print(
        f"\noverhead: {100 * slower:+.1f}% steps/s; {1e3 * per_checkpoint:+.1f} ms per in-loop checkpoint ({in_loop} in the loop; "
        f"files kept: {results['with'][0]['checkpoints']})"
    )


if __name__ == "__main__":
    main()
