"""What the non-finite check costs a training step: one spec's compiled chunk as shipped
(`on_nonfinite: stop`, checked once per chunk), the same chunk with the check in every step
(what `stop` did per step before, and what `skip_step` still does) and `on_nonfinite: ignore`.

    python benchmarks/bench_step.py [--steps 10000] [--rounds 15] specs/xor_wide.yaml [specs/fashion_mlp.yaml ...]

In one process: each variant is compiled once, then timed a chunk of `--steps` steps at a time,
interleaved round by round (machine load falls on all alike); reported are the median µs per
step and the instructions of the compiled step body (`loop_body_ops`: on a GPU each is about one
kernel launch). Summaries, evaluation and checkpoints are not part of it: this is the step.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_bench import Side, bench_netspec, loop_body_ops, time_interleaved  # noqa: E402

from netspec.spec.check import check  # noqa: E402
from netspec.spec.load import load  # noqa: E402


def side(spec_path: str, steps: int, on_nonfinite: str, diagnose: bool = False) -> Side:
    return bench_netspec(
        check(load(spec_path, [f"train.on_nonfinite={on_nonfinite}", "train.loop=scan"])), steps, diagnose=diagnose
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="+")
    ap.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps per timed chunk (default: 10000 for full-batch specs, 500 otherwise)",
    )
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args()
    rows = []
    for path in a.specs:
        spec = check(load(path, []))
        steps = a.steps or (10000 if spec.train["batch_size"] == spec.num_examples else 500)
        sides = {
            "stop (as shipped)": side(path, steps, "stop"),
            "check every step": side(path, steps, "stop", diagnose=True),
            "ignore": side(path, steps, "ignore"),
        }
        time_interleaved(list(sides.values()), a.rounds)
        for name, s in sides.items():
            row = {
                "spec": spec.name,
                "variant": name,
                "steps_per_chunk": steps,
                "us_per_step": 1e6 / s.steps_per_s(),
                "body_ops": sum(loop_body_ops(s.hlo).values()),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| spec | variant | µs/step (median) | step body instructions |\n|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['spec']} | {r['variant']} | {r['us_per_step']:.2f} | {r['body_ops']} |")


if __name__ == "__main__":
    main()
