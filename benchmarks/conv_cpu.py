"""Convolutions on CPU: training steps per second of a conv net, netspec against PyTorch eager and
hand-written JAX, each lowering of the convolution (issue 15).

    python benchmarks/conv_cpu.py [--runs 5] [--net fashion_cnn|strided5x5] [--modes ...] [--markdown FILE]
    python benchmarks/conv_cpu.py --child MODE --net NET --steps N     (one measurement, one JSON line)

Nets (28x28x1 Fashion-MNIST images, batch 100, Adam 1e-3, softmax cross-entropy):
    fashion_cnn  specs/fashion_cnn.yaml: conv 3x3 'same' 32 relu, max pool 2, conv 3x3 'same' 64 relu,
                 max pool 2, dense 128 relu, dropout 0.3, dense 10
    strided5x5   conv 5x5 'valid' stride 2 32 relu (28 -> 12), conv 5x5 'valid' stride 2 64 relu
                 (12 -> 4), dense 128 relu, dense 10: the rule beyond 3x3 'same'
Modes (each a whole process, interleaved over the runs, medians reported):
    torch               PyTorch eager, torch.set_num_threads(2) (run with --torch-python)
    jax_steps_native    hand-written JAX, one jitted step per call, lax.conv_general_dilated
    jax_scan_native     hand-written JAX, lax.scan over the steps, lax.conv_general_dilated
    jax_scan_im2col     hand-written JAX, lax.scan over the steps, im2col (netspec.model.conv.convolve)
    netspec_auto        netspec run of the net's spec as this machine picks (CPU: im2col in the scan)
    netspec_native      the same with --set train.conv=native (and train.loop: auto's choice for it)
The hand-written modes time `steps` steps after a compiled warm-up; netspec's time is result.json's
train_seconds (its chunks, evaluation and summaries off). Every mode trains on random batches of
the real training images, scaled by 1/255 inside the step.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
BATCH = 100
# steps per timed measurement: XLA's native convolution inside a scan is ~30x slower, so fewer
STEPS = {"jax_scan_native": 20}
NETS = {
    "fashion_cnn": [
        ("conv", 32, 3, 1, "same"),
        ("pool",),
        ("conv", 64, 3, 1, "same"),
        ("pool",),
        ("dense", 128),
        ("dropout", 0.3),
    ],
    "strided5x5": [("conv", 32, 5, 2, "valid"), ("conv", 64, 5, 2, "valid"), ("dense", 128)],
}
SPEC_STRIDED = """\
name: strided5x5
seed: 0
data: {fashion_mnist: {}, scale: 1/255}
model:
  input: [28, 28, 1]
  defaults: {activation: relu, kernel_init: he_normal}
  layers:
    - {name: conv1, type: conv2d, filters: 32, kernel_size: 5, strides: 2, padding: valid}
    - {name: conv2, type: conv2d, filters: 64, kernel_size: 5, strides: 2, padding: valid}
    - {name: flatten, type: flatten}
    - {name: dense, type: dense, units: 128}
    - {name: output, type: dense, units: 10, activation: softmax, kernel_init: glorot_uniform}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
optimizer: {type: adam, learning_rate: 0.001}
train: {steps: 100, batch_size: 100}
"""


def images() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(os.path.join(DATA, "train-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    with gzip.open(os.path.join(DATA, "train-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int32)
    return x, y


def batches(steps: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 60000, size=(steps, BATCH)).astype(np.int32)


def child_torch(net: str, steps: int) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(2)
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    channels, size = 1, 28
    for layer in NETS[net]:
        if layer[0] == "conv":
            _, filters, k, s, pad = layer
            layers += [nn.Conv2d(channels, filters, k, stride=s, padding=pad), nn.ReLU()]
            channels, size = filters, (-(-size // s) if pad == "same" else (size - k) // s + 1)
        elif layer[0] == "pool":
            layers.append(nn.MaxPool2d(2))
            size //= 2
        elif layer[0] == "dense":
            layers += [nn.Flatten(), nn.Linear(channels * size * size, layer[1]), nn.ReLU()]
            channels, size = layer[1], 1
        else:
            layers.append(nn.Dropout(layer[1]))
    model = nn.Sequential(*layers, nn.Linear(channels, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = images()
    xt, yt = torch.from_numpy(x.copy()).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y.copy()).long()
    index = torch.from_numpy(batches(steps + 1)).long()

    def step(i: int) -> None:
        xb = xt[index[i]].float() / 255
        loss = nn.functional.cross_entropy(model(xb), yt[index[i]])
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(steps)  # warm-up
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    return {"seconds": time.perf_counter() - start, "steps": steps, "version": torch.__version__}


def child_jax(net: str, steps: int, *, scan: bool, lowering: str) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    sys.path.insert(0, ROOT)
    from netspec.model.conv import convolve

    key = jax.random.PRNGKey(0)
    params, plan, shape = [], [], (28, 28, 1)
    for layer in NETS[net]:
        key, sub = jax.random.split(key)
        if layer[0] == "conv":
            _, filters, k, s, pad = layer
            std = (2 / (k * k * shape[2])) ** 0.5
            params.append((jax.random.normal(sub, (k, k, shape[2], filters)) * std, jnp.zeros(filters)))
            size = -(-shape[0] // s) if pad == "same" else (shape[0] - k) // s + 1
            shape = (size, size, filters)
        elif layer[0] == "pool":
            shape = (shape[0] // 2, shape[1] // 2, shape[2])
        elif layer[0] == "dense":
            n_in = int(np.prod(shape))
            params.append((jax.random.normal(sub, (n_in, layer[1])) * (2 / n_in) ** 0.5, jnp.zeros(layer[1])))
            shape = (layer[1],)
        plan.append(layer)
    key, sub = jax.random.split(key)
    params.append((jax.random.normal(sub, (shape[0], 10)) * (1 / shape[0]) ** 0.5, jnp.zeros(10)))

    def forward(params, x, key):
        p = iter(params)
        for layer in plan:
            if layer[0] == "conv":
                kernel, bias = next(p)
                x = jax.nn.relu(
                    convolve(
                        x,
                        kernel,
                        strides=(layer[3],) * 2,
                        padding=layer[4],
                        dilation=(1, 1),
                        groups=1,
                        lowering=lowering,
                    )
                    + bias
                )
            elif layer[0] == "pool":
                n, h, w, c = x.shape
                x = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
            elif layer[0] == "dense":
                kernel, bias = next(p)
                x = jax.nn.relu(x.reshape(x.shape[0], -1) @ kernel + bias)
            else:
                keep = jax.random.bernoulli(key, 1 - layer[1], x.shape)
                x = jnp.where(keep, x / (1 - layer[1]), 0)
        kernel, bias = next(p)
        return x @ kernel + bias

    tx = optax.adam(1e-3)
    x_all, y_all = images()
    x_dev, y_dev = jnp.asarray(x_all), jnp.asarray(y_all)
    index = jnp.asarray(batches(steps))

    def step(carry, idx):
        params, opt_state, key = carry
        key, sub = jax.random.split(key)

        def loss(params):
            logits = forward(params, x_dev[idx].astype(jnp.float32) / 255, sub)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y_dev[idx]).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, key), value

    carry = (params, tx.init(params), key)
    if scan:
        run = jax.jit(lambda carry, index: jax.lax.scan(step, carry, index)).lower(carry, index).compile()
        start = time.perf_counter()
        carry, losses = run(carry, index)
        losses.block_until_ready()
    else:
        one = jax.jit(step, donate_argnums=0).lower(carry, index[0]).compile()
        carry, _ = one(carry, index[0])
        jax.block_until_ready(carry)
        start = time.perf_counter()
        for i in range(steps):
            carry, loss = one(carry, index[i])
        loss.block_until_ready()
    return {"seconds": time.perf_counter() - start, "steps": steps, "version": jax.__version__}


def child_netspec(net: str, steps: int, conv: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec = os.path.join(ROOT, "specs", "fashion_cnn.yaml")
        if net == "strided5x5":
            spec = os.path.join(tmp, "strided5x5.yaml")
            with open(spec, "w") as f:
                f.write(SPEC_STRIDED)
        overrides = [
            f"train.steps={steps}",
            "train.epochs=null",
            "eval=null",
            f"summaries.every={steps}",
            "summaries.histograms=[]",
            f"train.conv={conv}",
        ]
        netspec = os.path.join(os.path.dirname(sys.executable), "netspec")
        args = [netspec, "run", spec, "--quiet", "--logdir", tmp, *(a for o in overrides for a in ("--set", o))]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        (result,) = [os.path.join(d, "result.json") for d, _, files in os.walk(tmp) if "result.json" in files]
        with open(result) as f:
            data = json.load(f)
    return {"seconds": data["train_seconds"], "steps": data["steps"], "ran": data["ran"]}


def child(mode: str, net: str, steps: int) -> dict:
    if mode == "torch":
        return child_torch(net, steps)
    if mode.startswith("jax_"):
        return child_jax(net, steps, scan="_scan_" in mode, lowering=mode.rsplit("_", 1)[1])
    return child_netspec(net, steps, conv=mode.split("_", 1)[1])


MODES = ["torch", "jax_steps_native", "jax_scan_native", "jax_scan_im2col", "netspec_auto", "netspec_native"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child")
    parser.add_argument("--net", default="fashion_cnn", choices=sorted(NETS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--torch-python", default="/work/torchenv/bin/python")
    parser.add_argument("--markdown")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.net, args.steps)))
        return
    modes = args.modes.split(",")
    ms: dict[str, list[float]] = {m: [] for m in modes}
    info: dict[str, dict] = {}
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    for r in range(args.runs):
        for mode in modes:
            python = args.torch_python if mode == "torch" else sys.executable
            if mode == "torch" and not os.path.exists(python):
                continue
            steps = STEPS.get(mode, args.steps)
            out = subprocess.run(
                [python, __file__, "--child", mode, "--net", args.net, "--steps", str(steps)],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            ).stdout
            data = json.loads(out.strip().splitlines()[-1])
            ms[mode].append(data["seconds"] / data["steps"] * 1e3)
            info[mode] = data
            print(f"run {r} {mode}: {ms[mode][-1]:.1f} ms/step", file=sys.stderr)
    medians = {m: statistics.median(v) for m, v in ms.items() if v}
    lines = [
        f"### {args.net}: ms per training step (batch {BATCH}), medians of {args.runs}",
        "",
        "| mode | ms/step | steps/s | runs (ms/step) | vs torch (steps/s ratio) |",
        "|---|---:|---:|---|---:|",
    ]
    for m, med in medians.items():
        ratio = f"{medians['torch'] / med:.2f}" if "torch" in medians else "-"
        runs = ", ".join(f"{v:.1f}" for v in ms[m])
        lines.append(f"| {m} | {med:.1f} | {1e3 / med:.1f} | {runs} | {ratio} |")
    for m in ("netspec_auto", "netspec_native"):
        if m in info:
            lines.append(f"\n{m} ran: `{json.dumps(info[m]['ran'])}`")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(
                f"\n<!-- {datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.processor() or platform.machine()}, "
                f"nproc {os.cpu_count()} -->\n{text}\n"
            )


if __name__ == "__main__":
    main()
