#!/usr/bin/env bash
# The one prepared script for a lent GPU (the device tool's `run`), well under 10 minutes:
# netspec vs a hand-written lax.scan loop on fashion_mlp, fashion_cnn and the large bf16 MLP,
# with each side's loop unrolled and not, and the card's clock and power as it ran.
#
# The device has jax (CUDA), optax, pyyaml, click, safetensors, numpy but not jsonschema: carry
# its wheels (cp312) in .whl/ (git-ignored). Fetch them here first with
#   pip download --dest .whl --only-binary=:all: --no-deps --python-version 3.12 \
#       --platform manylinux2014_x86_64 jsonschema jsonschema-specifications referencing rpds-py
# then call the device tool with carry [".whl"] and the command `bash benchmarks/gpu_session.sh`.
# Results land in $OUT (gpu_bench.json, clocks.csv, nvidia-smi.txt). gpu_bench.py's --hlo-dir and
# --check-variant add both sides' optimized HLO and the per-step non-finite check.
set -euo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
# SM clock and power every 100 ms: a power-limited card clocks down on some numbers, not others.
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active \
    --format=csv -lms 100 > "$OUT/clocks.csv" 2>&1 &
SMI=$!
trap 'kill $SMI 2>/dev/null || true' EXIT
# netspec as it runs (train.unroll: auto, 2 steps per loop iteration on a GPU) against the plain
# hand-written scan; also netspec with 1 step per iteration and the hand-written loop unrolled alike.
python3 benchmarks/gpu_bench.py --out "$OUT/gpu_bench.json" --repeats 7 \
    --variant 'unroll 1=train.unroll=1' --hand-unroll 2 "$@"
# LR_EXPERIMENT=1: the large MLP again with netspec at 10x the spec's learning rate (the
# hand-written side keeps the spec's): the kernels are the same, so any change is the numbers'
# effect on a power-capped clock.
if [ -n "${LR_EXPERIMENT:-}" ]; then
    python3 benchmarks/gpu_bench.py --out "$OUT/gpu_bench_lr.json" --models large_mlp --repeats 7 \
        --variant 'lr 1e-3=optimizer.learning_rate=0.001;train.unroll=1' "$@"
fi
