"""How much a shipped spec's result depends on its seed.

    python benchmarks/seed_spread.py SPEC [SPEC ...] [--seeds 0-7,777] [--set KEY=VALUE ...]
                                     [--json FILE]

For every spec and every seed runs, one at a time, each as its own process,

    netspec run SPEC --set seed=S --quiet --logdir TMP [--set KEY=VALUE ...]

and reads the run's result.json: the test accuracy (wherever this version of netspec puts
it: `final.test_accuracy`, else `test`/`eval` sections; the XOR specs have no test split, so
for them it is the final training accuracy over the four points, `final.accuracy`), the
final training loss, the steps trained and the whole-process wall time. Prints, per spec, a
Markdown table of the seeds and a summary line: min / median / mean / max of the accuracy,
and how many seeds reach accuracy 1.0 (the XOR question). --json FILE writes every run's
numbers. Run it niced on a shared machine: `nice -n 10 python benchmarks/seed_spread.py ...`.
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse_seeds(text):
    """'0-7,777' -> [0, 1, ..., 7, 777]."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            seeds.extend(range(int(lo), int(hi) + 1))
        else:
            seeds.append(int(part))
    return seeds


def netspec_command(tree=None):
    """How to start netspec: from a source tree (e.g. a `git archive` snapshot, so that edits
    others make to the working tree while this runs cannot change the code measured), else
    the installed command."""
    if tree:
        return [sys.executable, "-c", "import sys; from netspec.cli import main; sys.exit(main())"]
    for cand in (shutil.which("netspec"), os.path.join(os.path.dirname(sys.executable), "netspec")):
        if cand and os.path.exists(cand):
            return [cand]
    return [sys.executable, "-m", "netspec"]


def number(d, *keys):
    """The first of keys in dict d that holds a number, else None."""
    if isinstance(d, dict):
        for k in keys:
            if isinstance(d.get(k), (int, float)) and not isinstance(d.get(k), bool):
                return float(d[k])
    return None


def read_result(r):
    """(accuracy, which, loss) from a result.json. The test accuracy if the run has one
    (wherever this version of netspec put it), else the final training accuracy."""
    final = r.get("final") if isinstance(r.get("final"), dict) else {}
    for d in (final, r, r.get("test"), r.get("eval")):
        acc = number(d, "test_accuracy", "eval_accuracy")
        if acc is not None:
            return acc, "test", number(final, "loss")
    for section in ("test", "eval"):
        acc = number(r.get(section), "accuracy")
        if acc is not None:
            return acc, "test", number(final, "loss")
    return number(final, "accuracy"), "train", number(final, "loss")


def run_one(cmd_base, spec, seed, extra_sets, env=None, cwd=ROOT):
    with tempfile.TemporaryDirectory(prefix="seed_spread_") as logdir:
        cmd = cmd_base + ["run", os.path.abspath(spec), "--set", f"seed={seed}", "--quiet", "--logdir", logdir]
        for s in extra_sets:
            cmd += ["--set", s]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        results = glob.glob(os.path.join(logdir, "**", "result.json"), recursive=True)
        if p.returncode != 0 or not results:
            print(
                f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:].strip()}",
                file=sys.stderr,
                flush=True,
            )
            return {
                "seed": seed,
                "accuracy": None,
                "which": None,
                "loss": None,
                "steps": None,
                "train_seconds": None,
                "wall": wall,
                "failed": p.returncode,
            }
        with open(max(results, key=os.path.getmtime)) as f:
            r = json.load(f)
    acc, which, loss = read_result(r)
    return {
        "seed": seed,
        "accuracy": acc,
        "which": which,
        "loss": loss,
        "steps": r.get("steps"),
        "train_seconds": r.get("train_seconds"),
        "wall": wall,
    }


def fmt(v, spec=".4f"):
    return "-" if v is None else format(v, spec)


def table(spec, rows):
    which = next((r["which"] for r in rows if r["which"]), "test")
    head = "test accuracy" if which == "test" else "final accuracy (train, 4 points)"
    lines = [
        f"### {spec}",
        "",
        f"| seed | {head} | final training loss | steps | train s | whole process s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("failed") is not None:
            lines.append(f"| {r['seed']} | failed (exit {r['failed']}) | | | | {fmt(r['wall'], '.1f')} |")
            continue
        lines.append(
            f"| {r['seed']} | {fmt(r['accuracy'])} | {fmt(r['loss'], '.5g')} | {r['steps']} | "
            f"{fmt(r['train_seconds'], '.2f')} | {fmt(r['wall'], '.1f')} |"
        )
    accs = [r["accuracy"] for r in rows if r["accuracy"] is not None]
    walls = [r["wall"] for r in rows if r.get("failed") is None]
    if accs:
        solved = sum(a >= 1.0 for a in accs)
        lines += [
            "",
            f"{len(accs)} seeds: accuracy min {min(accs):.4f} / median {statistics.median(accs):.4f} / "
            f"mean {statistics.mean(accs):.4f} / max {max(accs):.4f}"
            + (f" (sd {statistics.stdev(accs):.4f})" if len(accs) > 1 else "")
            + f"; {solved} of {len(accs)} reach 1.0; "
            f"whole process median {statistics.median(walls):.1f} s",
        ]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("specs", nargs="+", help="spec files, e.g. specs/fashion_softmax.yaml")
    ap.add_argument("--seeds", default="0-7,777", help="seeds, e.g. 0-7,777 (default) or 0-19")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra --set for every run")
    ap.add_argument("--json", help="write every run's numbers to this file")
    ap.add_argument(
        "--tree",
        help="run netspec from this source tree (PYTHONPATH=TREE), e.g. a snapshot "
        "made with `git archive HEAD | tar -x -C TREE`; default: the installed netspec",
    )
    args = ap.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    base = netspec_command(args.tree)
    env, cwd = None, ROOT
    if args.tree:
        tree = os.path.abspath(args.tree)
        env = dict(os.environ, PYTHONPATH=tree + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cwd = tree  # `python -c` puts the current directory first on sys.path
        where = subprocess.run(
            [sys.executable, "-c", "import netspec; print(netspec.__file__)"],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if not where.startswith(tree):
            raise SystemExit(f"--tree {tree}: Python imports netspec from {where} instead")
        print(f"netspec from {where}", file=sys.stderr)
    everything = {}
    for spec in args.specs:
        rows = []
        for seed in seeds:
            r = run_one(base, spec, seed, args.sets, env, cwd)
            print(
                f"  {spec} seed {seed}: accuracy {fmt(r['accuracy'])} ({r['which']}), {r['wall']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            rows.append(r)
        everything[spec] = rows
        print(table(spec, rows), flush=True)
        print(flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(everything, f, indent=1)


if __name__ == "__main__":
    main()
