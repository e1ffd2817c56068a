"""One spec on 1 and on 4 forced CPU devices: replicated, fsdp and hybrid (fsdp_devices 2).

    python benchmarks/bench_devices.py [--steps 1000] [--runs 3] [--spec specs/fashion_mlp.yaml]

Each configuration is a whole `netspec run` in its own process with
XLA_FLAGS=--xla_force_host_platform_device_count=4 (the device count is fixed when jax starts),
interleaved over the runs; reported are medians of the compile time, µs per step and the test
accuracy from result.json. On a 2-core machine four virtual devices share two cores: the point
is the mechanism and its overhead, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "1 device": ["--devices", "1"],
    "4 devices, replicated": ["--devices", "4"],
    "4 devices, fsdp": ["--devices", "4", "--set", "distribute.params=fsdp"],
    "4 devices, fsdp_devices 2": [
        "--devices",
        "4",
        "--set",
        "distribute.params=fsdp",
        "--set",
        "distribute.fsdp_devices=2",
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "specs" / "fashion_mlp.yaml"))
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    netspec = Path(sys.executable).parent / "netspec"
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
        "NETSPEC_JAX_CACHE": "",
    }
    results: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.runs):
            for name, args in CONFIGS.items():
                logdir = Path(tmp) / f"{r}-{len(results[name])}-{abs(hash(name))}"
                cmd = [
                    str(netspec),
                    "run",
                    a.spec,
                    "--logdir",
                    str(logdir),
                    "--quiet",
                    "--set",
                    f"train={{steps: {a.steps}, batch_size: 100}}",
                    "--set",
                    "eval.every=null",
                    "--set",
                    "summaries.every=1000",
                    "--set",
                    "summaries.histograms=[]",
                    *args,
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if out.returncode:
                    sys.exit(f"{name}: {out.stderr[-2000:]}")
                (result,) = logdir.glob("*/*/result.json")
                results[name].append(json.loads(result.read_text()))
    print("| configuration | compile s (cold) | µs/step | test accuracy |")
    print("|---|---:|---:|---:|")
    for name, rows in results.items():
        compile_s = statistics.median(r["compile_seconds"] for r in rows)
        us = statistics.median(r["us_per_step"] for r in rows)
        acc = statistics.median(r["final"].get("test_accuracy", float("nan")) for r in rows)
        print(f"| {name} | {compile_s:.2f} | {us:.0f} | {acc:.4f} |")


if __name__ == "__main__":
    main()
