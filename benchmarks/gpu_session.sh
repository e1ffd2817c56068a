#!/usr/bin/env bash
# The one prepared script for a lent GPU (the device tool's `run`), well under 10 minutes:
# netspec vs a hand-written lax.scan loop on fashion_mlp, fashion_cnn and the large bf16 MLP,
# plus the chunk with the per-step non-finite check (what `stop` cost per step before), and both
# sides' optimized HLO.
#
# The device has jax (CUDA), optax, pyyaml, click, safetensors, numpy but not jsonschema: carry
# its wheels (cp312) in .whl/ (git-ignored). Fetch them here first with
#   pip download --dest .whl --only-binary=:all: --no-deps --python-version 3.12 \
#       --platform manylinux2014_x86_64 jsonschema jsonschema-specifications referencing rpds-py
# then call the device tool with carry [".whl"] and the command `bash benchmarks/gpu_session.sh`.
# Results land in $OUT (gpu_bench.json, hlo/, nvidia-smi.txt).
set -euo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
python3 benchmarks/gpu_bench.py --out "$OUT/gpu_bench.json" --hlo-dir "$OUT/hlo" \
    --check-variant "$@"
