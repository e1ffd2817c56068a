"""Benchmark driver: netspec vs hand-written Fashion-MNIST baselines (JAX, PyTorch, Keras).

    python benchmarks/bench_fashion.py [--runs R] [--models softmax,mlp] [--modes ...]
                                       [--steps 1000] [--batch 100] [--markdown FILE]

For each model (softmax, mlp) runs every mode of fashion_baselines.py R times (default 3),
each as its own process under the interpreter that has its framework:
    jax_jit, jax_scan  --jax-python    (default /work/venv/bin/python, else this interpreter)
    torch              --torch-python  (default /work/venv-torch/bin/python)
    keras              --keras-python  (default /work/venv-keras/bin/python), KERAS_BACKEND=jax
and, when the `netspec` command is found (on PATH, or next to the JAX interpreter or this
one) and specs/fashion_<model>.yaml exists,
    netspec run specs/fashion_<model>.yaml --quiet --logdir TMP --set train.steps=STEPS
R times, reading train_seconds, steps (and first_step_seconds / test accuracy when present)
from the run's result.json. Runs are interleaved (round r runs every mode once) so that load
on the machine spreads over all modes. A mode whose interpreter is missing is skipped with a
note ("torch: not available").

Every child's whole-process peak RSS comes from os.wait4's rusage (ru_maxrss of that child
and the descendants it waited for); its whole-process wall time from perf_counter around it.
JAX children run with JAX_PLATFORMS=cpu unless --jax-platforms says otherwise.
Prints, per model, a Markdown table of medians (steps/s, first-step s, train s, whole
process s, test accuracy, peak RSS) and the ratios of netspec to each baseline (target:
netspec steps/s / jax_scan steps/s >= 0.9). --markdown FILE appends a dated section with
machine info; --raw FILE writes every run's numbers as JSON.
"""

import argparse
import datetime
import functools
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
BASELINES = os.path.join(HERE, "fashion_baselines.py")
MODES = ["jax_jit", "jax_scan", "torch", "keras"]
MODELS = ["softmax", "mlp"]


def first_existing(*paths):
    for p in paths:
        if p and os.path.exists(p):
            return p
    return None


class ChildFailed(Exception):
    pass


def run_child(cmd, env):
    """Runs cmd; returns (stdout, stderr, wall seconds, peak RSS MiB of the whole process)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if p.returncode != 0:
        raise ChildFailed(f"command failed ({p.returncode}): {' '.join(cmd)}\n{stderr[-2000:].strip()}")
    return stdout, stderr, wall, usage.ru_maxrss / 1024.0


def run_baseline(python, mode, model, steps, batch, env):
    cmd = [python, BASELINES, mode, "--model", model, "--steps", str(steps), "--batch", str(batch)]
    stdout, _, wall, rss = run_child(cmd, env)
    r = json.loads(stdout.strip().splitlines()[-1])
    return {
        "steps_per_second": r["steps_per_second"],
        "first_step": r["first_step_seconds"],
        "train": r["train_seconds"],
        "steps": r["steps"],
        "wall": wall,
        "acc": r["test_accuracy"],
        "rss": rss,
        "rss_self": r["peak_rss_mb"],
    }


def find_accuracy(r):
    """Test accuracy from a netspec result.json, wherever this version of netspec put it
    (never the training-batch "accuracy" of `final`)."""
    for d in (r, r.get("final"), r.get("test"), r.get("eval")):
        if isinstance(d, dict):
            for key in ("test_accuracy", "eval_accuracy"):
                if isinstance(d.get(key), (int, float)):
                    return d[key]
    for section in ("test", "eval"):
        d = r.get(section)
        if isinstance(d, dict) and isinstance(d.get("accuracy"), (int, float)):
            return d["accuracy"]
    return None


def netspec_command(netspec, spec, steps, extra_sets):
    """`netspec run SPEC --quiet --set train.steps=N`; a spec that gives train.epochs gets its
    whole train map replaced (same keys, epochs dropped, steps=N), since --set cannot delete."""
    sets = [f"train.steps={steps}"]
    try:
        import yaml

        with open(os.path.join(ROOT, spec)) as f:
            train = (yaml.safe_load(f) or {}).get("train") or {}
        if "epochs" in train:
            train = {k: v for k, v in train.items() if k != "epochs"}
            sets = ["train=" + json.dumps(dict(train, steps=steps))]
    except ImportError:
        pass
    cmd = [netspec, "run", spec, "--quiet", "--logdir", "LOGDIR"]
    for s_ in sets + list(extra_sets):
        cmd += ["--set", s_]
    return cmd


def run_netspec(cmd, env):
    with tempfile.TemporaryDirectory() as logdir:
        cmd = [logdir if c == "LOGDIR" else c for c in cmd]
        _, _, wall, rss = run_child(cmd, env)
        results = glob.glob(os.path.join(logdir, "**", "result.json"), recursive=True)
        if not results:
            raise ChildFailed(f"netspec run wrote no result.json under {logdir}")
        with open(max(results, key=os.path.getmtime)) as f:
            r = json.load(f)
    train, n = r["train_seconds"], r["steps"]
    return {
        "steps_per_second": r.get("steps_per_second") or n / train,
        "first_step": r.get("first_step_seconds"),
        "train": train,
        "steps": n,
        "wall": wall,
        "acc": find_accuracy(r),
        "rss": rss,
        "rss_self": None,
    }


def median(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def div(a, b):
    return None if a is None or not b else a / b


def version(python, dist):
    """A package's version from an interpreter, without importing the package."""
    try:
        return (
            subprocess.run(
                [python, "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.strip()
            or "?"
        )
    except Exception:
        return "?"


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated: softmax,mlp")
    ap.add_argument(
        "--modes",
        default=",".join(MODES + ["netspec"]),
        help="comma-separated subset of " + ",".join(MODES + ["netspec"]),
    )
    ap.add_argument("--jax-python", default=first_existing("/work/venv/bin/python") or sys.executable)
    ap.add_argument("--torch-python", default="/work/venv-torch/bin/python")
    ap.add_argument("--keras-python", default="/work/venv-keras/bin/python")
    ap.add_argument(
        "--netspec", default=None, help="the netspec command (default: found on PATH or beside the JAX python)"
    )
    ap.add_argument(
        "--netspec-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra --set for the netspec runs (repeatable), e.g. summaries.every=1000",
    )
    ap.add_argument("--jax-platforms", default="cpu", help="JAX_PLATFORMS for the JAX, Keras and netspec children")
    ap.add_argument("--markdown", metavar="FILE", help="append a dated section with the results to FILE")
    ap.add_argument("--raw", metavar="FILE", help="write every run's numbers as JSON to FILE")
    a = ap.parse_args()

    models = [m for m in a.models.split(",") if m]
    wanted = [m for m in a.modes.split(",") if m]
    for m in models:
        if m not in MODELS:
            ap.error(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    for m in wanted:
        if m not in MODES + ["netspec"]:
            ap.error(f"unknown mode {m!r}; choose from {', '.join(MODES + ['netspec'])}")

    base_env = dict(os.environ, JAX_PLATFORMS=a.jax_platforms)
    base_env.pop("KERAS_BACKEND", None)
    pythons = {"jax_jit": a.jax_python, "jax_scan": a.jax_python, "torch": a.torch_python, "keras": a.keras_python}
    envs = {m: base_env for m in MODES}
    envs["keras"] = dict(base_env, KERAS_BACKEND="jax")
    notes = []
    modes = []
    for m in MODES:
        if m not in wanted:
            continue
        if os.path.exists(pythons[m]):
            modes.append(m)
        else:
            notes.append(f"{m}: not available ({pythons[m]} missing)")

    netspec = None
    if "netspec" in wanted:
        netspec = (
            a.netspec
            or shutil.which("netspec")
            or shutil.which("netspec", path=os.path.dirname(a.jax_python))
            or shutil.which("netspec", path=os.path.dirname(sys.executable))
        )
        if not netspec:
            notes.append("netspec: not available (no netspec command on PATH)")
    specs = {}
    for model in models:
        spec = f"specs/fashion_{model}.yaml"
        if netspec and os.path.exists(os.path.join(ROOT, spec)):
            specs[model] = spec
        elif netspec:
            notes.append(f"netspec: not available for {model} ({spec} missing)")
    for n in notes:
        print(n, file=sys.stderr)

    commands = {model: netspec_command(netspec, spec, a.steps, a.netspec_set) for model, spec in specs.items()}
    results = {model: {m: [] for m in modes + (["netspec"] if model in specs else [])} for model in models}
    failed = set()  # (model, mode) that failed once: not run again

    def attempt(model, name, fn):
        if (model, name) in failed:
            return
        try:
            row = fn()
        except ChildFailed as e:
            failed.add((model, name))
            notes.append(f"{name} ({model}): failed; {str(e).splitlines()[0]} :: {str(e).splitlines()[-1]}")
            print(f"{model} {name}: {e}", file=sys.stderr)
            return
        results[model][name].append(row)
        print(f"run {len(results[model][name])}/{a.runs} {model} {name}: {row}", file=sys.stderr)

    for _ in range(a.runs):
        for model in models:
            for m in modes:
                attempt(model, m, functools.partial(run_baseline, pythons[m], m, model, a.steps, a.batch, envs[m]))
            if model in specs:
                attempt(model, "netspec", functools.partial(run_netspec, commands[model], base_env))

    lines = []
    for model in models:
        res = results[model]
        lines += [
            f"### {model} ({a.steps} steps of batch {a.batch}, medians of {a.runs})",
            "",
            "| run | steps/s | first step s | train s | whole process s | test acc | peak RSS MB |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, rows in res.items():
            if not rows:
                lines.append(f"| {name} | failed | | | | | |")
                continue
            lines.append(
                f"| {name} | {fmt(median(rows, 'steps_per_second'), '.0f')} "
                f"| {fmt(median(rows, 'first_step'), '.2f')} | {fmt(median(rows, 'train'))} "
                f"| {fmt(median(rows, 'wall'), '.2f')} | {fmt(median(rows, 'acc'), '.4f')} "
                f"| {fmt(median(rows, 'rss'), '.0f')} |"
            )
        lines.append("")
        if res.get("netspec"):
            ns = res["netspec"]
            lines += [
                "| netspec vs | steps/s ratio | first-step ratio | whole-process ratio | peak RSS ratio |",
                "|---|---:|---:|---:|---:|",
            ]
            for name in modes:
                rows = res[name]
                lines.append(
                    f"| {name} | {fmt(div(median(ns, 'steps_per_second'), median(rows, 'steps_per_second')), '.2f')}"
                    f"{' (target ≥ 0.9)' if name == 'jax_scan' else ''} "
                    f"| {fmt(div(median(ns, 'first_step'), median(rows, 'first_step')), '.2f')} "
                    f"| {fmt(div(median(ns, 'wall'), median(rows, 'wall')), '.2f')} "
                    f"| {fmt(div(median(ns, 'rss'), median(rows, 'rss')), '.2f')} |"
                )
            if ns and ns[0]["steps"] != a.steps:
                lines.append(f"\nwarning: netspec ran {ns[0]['steps']} steps, baselines {a.steps}")
            lines.append("")
    lines += [
        "steps/s: timed steps / train s (train s: steady training after compile; keras times "
        "steps-1 steps after a one-step warm-up fit). first step s: process start to the end "
        "of step 1 (Python's own startup excluded; jax_scan: ready + one mean step). "
        "Peak RSS: whole child process (os.wait4 ru_maxrss)."
    ]
    if commands:
        lines += [
            "",
            "netspec commands: "
            + "; ".join(
                "`netspec " + " ".join(c if " " not in c else repr(c) for c in cmd[1:]) + "`"
                for cmd in commands.values()
            ),
        ]
    lines += [""] + notes if notes else []
    table = "\n".join(lines).rstrip() + "\n"
    print(table)

    if a.raw:
        with open(a.raw, "w") as f:
            json.dump({"steps": a.steps, "batch": a.batch, "runs": a.runs, "results": results}, f, indent=2)
    if a.markdown:
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        info = [
            f"processor `{cpu}`, nproc {os.cpu_count()}, {platform.system()} {platform.release()}",
            f"python {platform.python_version()}, jax {version(a.jax_python, 'jax')}, "
            f"optax {version(a.jax_python, 'optax')}"
            + (f", torch {version(a.torch_python, 'torch')} (1 thread)" if "torch" in modes else "")
            + (f", keras {version(a.keras_python, 'keras')} (jax backend)" if "keras" in modes else ""),
            f"JAX_PLATFORMS={a.jax_platforms}, runs {a.runs} (medians), interleaved",
        ]
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        with open(a.markdown, "a") as f:
            f.write(f"\n## Fashion-MNIST benchmark, {stamp}\n\n" + "  \n".join(info) + f"\n\n{table}")


if __name__ == "__main__":
    main()
