"""Benchmark driver: netspec vs the hand-written XOR baselines, in one sitting.

    python benchmarks/bench_xor.py [--runs R] [--steps N] [--markdown FILE]

Runs every baseline of xor_baselines.py R times as its own process, and, if
the `netspec` command is on PATH, `netspec run specs/xor_wide.yaml` and
`netspec validate specs/xor_wide.yaml` R times each. Times the whole process
of every subprocess (perf_counter around subprocess.run) and reads the
training phase from the JSON line (baselines) or result.json (netspec).
Prints a Markdown table of medians and the target ratios.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SPEC = "specs/xor_wide.yaml"
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def timed(cmd, env=None):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env={**ENV, **(env or {})}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p.stdout, wall


TORCH_PYTHON = "/work/venv-torch/bin/python"  # torch lives apart: tensorboardX imports it when present


def run_baseline(mode, steps, extra=()):
    python = TORCH_PYTHON if mode == "torch" and os.path.exists(TORCH_PYTHON) else sys.executable
    cmd = [python, os.path.join(HERE, "xor_baselines.py"), mode, "--steps", str(steps), *extra]
    out, wall = timed(cmd)
    r = json.loads(out.strip().splitlines()[-1])
    return {
        "train": r["train_seconds"],
        "steps": r["steps"],
        "wall": wall,
        "loss": r["final_loss"],
        "acc": r["accuracy"],
    }


def run_netspec(netspec, extra=(), env=None):
    with tempfile.TemporaryDirectory() as logdir:
        _, wall = timed([netspec, "run", SPEC, "--quiet", "--logdir", logdir, *extra], env=env)
        results = glob.glob(os.path.join(logdir, "*", "*", "result.json"))
        if not results:
            sys.exit(f"netspec run wrote no result.json under {logdir}")
        with open(max(results, key=os.path.getmtime)) as f:
            r = json.load(f)
    return {
        "train": r["train_seconds"],
        "steps": r["steps"],
        "wall": wall,
        "loss": r["final"].get("loss"),
        "acc": r["final"].get("accuracy"),
    }


def median(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10001)
    ap.add_argument("--chunk", type=int, default=None, help="also run the scan baseline with K steps per jit call")
    ap.add_argument("--markdown", metavar="FILE", help="append a dated section with the results to FILE")
    a = ap.parse_args()

    modes = [("jit_per_step", ()), ("scan", ()), ("torch", ())]
    if a.chunk:
        modes.append((f"scan_chunk{a.chunk}", ("--chunk", str(a.chunk))))
    results = {}
    for name, extra in modes:
        mode = "scan" if name.startswith("scan") else name
        results[name] = [run_baseline(mode, a.steps, extra) for _ in range(a.runs)]
        print(f"{name}: done", file=sys.stderr)

    # on PATH, or next to this interpreter (a venv not activated)
    netspec = shutil.which("netspec") or shutil.which("netspec", path=os.path.dirname(sys.executable))
    validate = []
    if netspec:
        # as shipped: summaries every 100 steps, histograms, graph; the JAX compilation cache warm
        results["netspec"] = [run_netspec(netspec) for _ in range(a.runs)]
        # the training phase alone: one chunk of 10001 steps, no summaries in between
        results["netspec_train_only"] = [
            run_netspec(
                netspec,
                [
                    "--set",
                    "summaries.every=10001",
                    "--set",
                    "summaries.histograms=[]",
                    "--set",
                    "summaries.graph=false",
                ],
            )
            for _ in range(a.runs)
        ]
        # a cold start: no compilation cache
        results["netspec_cold"] = [
            run_netspec(netspec, env={**os.environ, "NETSPEC_JAX_CACHE": ""}) for _ in range(a.runs)
        ]
        validate = [timed([netspec, "validate", SPEC])[1] for _ in range(a.runs)]
    note = "" if netspec else "netspec: not available"
    if note:
        print(note, file=sys.stderr)

    lines = [
        "| run | steps | train s | µs/step | whole process s | final loss | accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in results.items():
        train, steps = median(rows, "train"), rows[0]["steps"]
        lines.append(
            f"| {name} | {steps} | {fmt(train)} | {fmt(train / steps * 1e6, '.1f')} "
            f"| {fmt(median(rows, 'wall'))} | {fmt(median(rows, 'loss'), '.5f')} "
            f"| {fmt(median(rows, 'acc'), '.2f')} |"
        )
    lines.append("")

    def ratio(a_, b_, key):
        if a_ not in results or b_ not in results:
            return None
        return median(results[a_], key) / median(results[b_], key)

    r_train = ratio("netspec_train_only", "scan", "train")
    r_train_shipped = ratio("netspec", "scan", "train")
    r_wall = ratio("netspec", "jit_per_step", "wall")
    r_wall_cold = ratio("netspec_cold", "jit_per_step", "wall")
    v_med = statistics.median(validate) if validate else None
    lines += [
        "| target | value | goal |",
        "|---|---:|---|",
        f"| netspec training phase (one chunk) / scan train | {fmt(r_train, '.2f')} | ≤ 1.2 |",
        f"| netspec training loop as shipped (summaries every 100) / scan train | {fmt(r_train_shipped, '.2f')} | (info) |",
        f"| netspec whole / jit_per_step whole (compilation cache warm) | {fmt(r_wall, '.2f')} | ≤ 1.3 |",
        f"| netspec whole / jit_per_step whole (cold: no cache) | {fmt(r_wall_cold, '.2f')} | (info) |",
        f"| netspec validate median s | {fmt(v_med)} | < 0.3 |",
    ]
    if netspec and results["netspec"][0]["steps"] != a.steps:
        note = (
            f"warning: netspec ran {results['netspec'][0]['steps']} steps, "
            f"baselines {a.steps}; the training ratio compares unequal work"
        )
    if note:
        lines += ["", note]
    table = "\n".join(lines)
    print(table)

    if a.markdown:
        import jax

        info = (
            f"processor `{platform.processor() or platform.machine()}`, "
            f"nproc {os.cpu_count()}, python {platform.python_version()}, "
            f"jax {jax.__version__}, runs {a.runs} (medians), JAX_PLATFORMS=cpu"
        )
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        with open(a.markdown, "a") as f:
            f.write(f"\n## XOR wide benchmark, {stamp}\n\n{info}\n\n{table}\n")


if __name__ == "__main__":
    main()
