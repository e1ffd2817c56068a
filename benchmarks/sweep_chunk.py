"""A sweep group's compiled chunk against one member's, host work left out: microseconds per step
of the 16-member xor_nn grid's vmapped chunk (4 learning rates x 4 seeds) and of one member's
plain chunk, both 100 steps, compiled ahead, warmed up, best of 5 timings of 100 calls each,
in one process. What the device does for 16 members against one; `sweep_bench.py` measures the
whole training phase, which adds each member's summaries on the host.

    python benchmarks/sweep_chunk.py [--spec specs/xor_nn.yaml] [--sweep '{...}'] [--steps 100]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import yaml

from netspec.compile.members import compile_group, member_batches
from netspec.compile.program import compile_spec
from netspec.spec.sweep import load_sweep
from netspec.training.feed import Feed, batch_order, load_arrays, training_inputs

ROOT = Path(__file__).resolve().parent.parent


def per_step(fn, state, steps: int, calls: int = 100) -> float:
    """Best of 5: microseconds per step of `calls` calls of the chunk `fn(state) -> (state, outputs)`."""
    state, outputs = fn(state)
    jax.block_until_ready(outputs)
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(calls):
            state, outputs = fn(state)
        jax.block_until_ready((state, outputs))
        best = min(best, (time.perf_counter() - began) / calls / steps * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "xor_nn.yaml"))
    parser.add_argument("--sweep", default="{optimizer.learning_rate: [0.03, 0.1, 0.3, 1.0], seed: [0, 1, 2, 3]}")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    sweep = load_sweep(args.spec, [f"sweep={args.sweep}"])
    specs = [m.spec for m in sweep.members]
    arrays = load_arrays(specs[0])
    group = compile_group(specs)
    inputs = training_inputs(specs[0], arrays, group.members[0], None)
    full = specs[0].train["batch_size"] == specs[0].num_examples
    each = [
        Feed(arrays.train, batch_order(s, arrays), streamed=False, full_batch=full).batches(0, args.steps)
        for s in specs
    ]
    batches = each[0] if group.shared_batches else member_batches(each)
    states = group.states([m.init() for m in group.members])
    chunk = group.train_chunk(args.steps).lower(states, inputs.data, batches, group.keys).compile()
    grouped = per_step(lambda s: chunk(s, inputs.data, batches, group.keys), states, args.steps)
    plain = compile_spec(specs[0])
    one = plain.train_chunk(args.steps).lower(plain.init(), inputs.data, each[0], plain.keys).compile()
    single = per_step(lambda s: one(s, inputs.data, each[0], plain.keys), plain.init(), args.steps)
    print(
        yaml.safe_dump(
            {
                "spec": args.spec,
                "members": len(specs),
                "us_per_step_group": round(grouped, 3),
                "us_per_step_one_member": round(single, 3),
                "ratio": round(grouped / single, 2),
                "member_steps_per_second_group": round(len(specs) * 1e6 / grouped),
                "steps_per_second_one_member": round(1e6 / single),
            },
            sort_keys=False,
        )
    )


if __name__ == "__main__":
    main()
