"""Hand-written baselines of the lecture's "XOR with a wide and deep net".

Model: 2-10-10-10-1, sigmoid on every layer, weights and biases ~ N(0, 1)
(like tf.random_normal), seed 777; mean binary cross-entropy in the stable
logits form; plain SGD lr 0.1, full batch (4 examples), 10001 steps.

    python benchmarks/xor_baselines.py {jit_per_step,scan,torch} [--steps N] [--chunk K]

Each mode prints one JSON line:
    {"baseline", "steps", "train_seconds", "us_per_step", "final_loss", "accuracy"}
train_seconds is the steady training phase only: JAX compilation happens
before the clock starts, and the clock stops after block_until_ready.
final_loss is the loss computed in the last step (before its update).
"""

import argparse
import itertools
import json
import time

import numpy as np

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
Y = np.array([[0], [1], [1], [0]], dtype=np.float32)
SIZES = [2, 10, 10, 10, 1]
LR = 0.1
SEED = 777


# ----------------------------------------------------------------- JAX model
def _jax_setup():
    import jax
    import jax.numpy as jnp
    import optax

    def init(key):
        params = []
        for n_in, n_out in itertools.pairwise(SIZES):
            key, kw, kb = jax.random.split(key, 3)
            params.append(
                (jax.random.normal(kw, (n_in, n_out), jnp.float32), jax.random.normal(kb, (n_out,), jnp.float32))
            )
        return params

    def logits(params, x):
        h = x
        for w, b in params[:-1]:
            h = jax.nn.sigmoid(h @ w + b)
        w, b = params[-1]
        return h @ w + b  # the last sigmoid lives in the loss / prediction

    def loss_fn(params, x, y):
        return optax.sigmoid_binary_cross_entropy(logits(params, x), y).mean()

    def sgd_step(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        params = jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)
        return params, loss

    def accuracy(params, x, y):
        pred = jax.nn.sigmoid(logits(params, x)) > 0.5
        return float(jnp.mean(pred == (y > 0.5)))

    params = init(jax.random.PRNGKey(SEED))
    return jax, jnp, params, sgd_step, accuracy


def run_jit_per_step(steps):
    """A typical hand-written script: jitted step, Python loop, host loss log."""
    jax, jnp, params, sgd_step, accuracy = _jax_setup()
    x, y = jnp.asarray(X), jnp.asarray(Y)
    step = jax.jit(sgd_step)
    jax.block_until_ready(step(params, x, y))  # compile (result discarded)

    history = []
    t0 = time.perf_counter()
    for i in range(steps):
        params, loss = step(params, x, y)
        if i % 100 == 0:
            history.append(float(loss))
    jax.block_until_ready((params, loss))
    elapsed = time.perf_counter() - t0
    return elapsed, float(loss), accuracy(params, x, y)


def run_scan(steps, chunk=None):
    """K steps per jit call in lax.scan (K = steps by default: one call)."""
    jax, jnp, params, sgd_step, accuracy = _jax_setup()
    x, y = jnp.asarray(X), jnp.asarray(Y)
    chunk = min(chunk or steps, steps)

    def train(params, x, y, n):
        def body(p, _):
            return sgd_step(p, x, y)

        params, losses = jax.lax.scan(body, params, None, length=n)
        return params, losses[-1]

    train_jit = jax.jit(train, static_argnums=3, donate_argnums=0)
    n_full, rest = divmod(steps, chunk)
    compiled = {n: train_jit.lower(params, x, y, n).compile() for n in {chunk, rest} if n}  # compile before timing

    t0 = time.perf_counter()
    for _ in range(n_full):
        params, loss = compiled[chunk](params, x, y)
    if rest:
        params, loss = compiled[rest](params, x, y)
    jax.block_until_ready((params, loss))
    elapsed = time.perf_counter() - t0
    return elapsed, float(loss), accuracy(params, x, y)


# ------------------------------------------------------------- PyTorch model
def run_torch(steps):
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    layers = []
    for n_in, n_out in itertools.pairwise(SIZES):
        layers += [nn.Linear(n_in, n_out), nn.Sigmoid()]
    model = nn.Sequential(*layers[:-1])  # last sigmoid is inside the loss
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=1.0)
            nn.init.normal_(m.bias, std=1.0)
    loss_fn = nn.BCEWithLogitsLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = torch.from_numpy(X), torch.from_numpy(Y)

    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - t0
    with torch.no_grad():
        acc = ((torch.sigmoid(model(x)) > 0.5).float() == y).float().mean()
    return elapsed, loss.item(), acc.item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["jit_per_step", "scan", "torch"])
    ap.add_argument("--steps", type=int, default=10001)
    ap.add_argument("--chunk", type=int, default=None, help="scan only: steps per jit call (default: all)")
    a = ap.parse_args()
    if a.mode == "jit_per_step":
        t, loss, acc = run_jit_per_step(a.steps)
    elif a.mode == "scan":
        t, loss, acc = run_scan(a.steps, a.chunk)
    else:
        t, loss, acc = run_torch(a.steps)
    name = a.mode if not a.chunk or a.mode != "scan" else f"scan_chunk{a.chunk}"
    print(
        json.dumps(
            {
                "baseline": name,
                "steps": a.steps,
                "train_seconds": t,
                "us_per_step": t / a.steps * 1e6,
                "final_loss": loss,
                "accuracy": acc,
            }
        )
    )


if __name__ == "__main__":
    main()
