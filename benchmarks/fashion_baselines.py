"""Hand-written Fashion-MNIST baselines: the same training written in plain JAX, PyTorch and Keras.

    python benchmarks/fashion_baselines.py {jax_jit,jax_scan} --model {softmax,mlp} [--steps 1000] [--batch 100]
    /work/venv-torch/bin/python benchmarks/fashion_baselines.py torch --model ...
    KERAS_BACKEND=jax /work/venv-keras/bin/python benchmarks/fashion_baselines.py keras --model ...

The work: `steps` SGD steps of `batch` Fashion-MNIST training images (uint8 scaled by 1/255,
flattened to 784). Batches: a fixed random permutation of the 60000 training examples per
epoch (numpy default_rng(seed), one permutation per epoch drawn in order), cut into
mini-batches in order; every mode trains on exactly the same batches in the same order.
    softmax: 784->10, zero init, SGD lr 0.5, softmax cross-entropy (the TF1 lecture's MNIST program)
    mlp:     784-256-256-10 relu, glorot-uniform kernels, zero biases, Adam lr 0.001 (eps 1e-8)

Modes (each is a whole process; run it with the interpreter that has its framework):
    jax_jit   one jitted step per Python iteration; images (uint8), labels and the batch
              index table live on the device, the step gathers its batch by index and
              converts to float32 inside the jit; params and optimizer state donated.
    jax_scan  all steps in one lax.scan inside one jit; images, labels and the index table
              are jit ARGUMENTS (not closed-over constants), params/opt state donated.
    torch     PyTorch eager, torch.set_num_threads(1), the same batches by indexing a uint8 tensor.
    keras     Keras 3 (KERAS_BACKEND=jax). The batch order is materialised on the host as one
              array of steps*batch examples (uint8, x_train[index table]) and fitted with
              shuffle=False, batch_size=batch, epochs=1, so exactly `steps` steps run on the
              same batches. The model takes uint8 input and rescales in a Rescaling layer.
              Two fit() calls: a warm-up fit on the first batch (step 1: trace + compile),
              then a fit on the other steps-1 batches (weights and optimizer state carry on,
              so this is the same training as one fit).

Each mode prints one JSON line:
    {"baseline", "model", "steps", "train_seconds", "steps_per_second", "first_step_seconds",
     "test_accuracy", "peak_rss_mb", "setup_seconds", "timed_steps"}
  first_step_seconds  T0 (top of this file, after Python's own startup) to the end of the
                      first training step: imports, data load, compile, step 1.
                      jax_jit: step 1 run after an AOT compile and waited for.
                      jax_scan: the scan returns only at the end, so step 1 is taken as
                      setup_seconds + train_seconds/steps (ready to run, plus one mean step).
                      torch: step 1 waited for (no compile). keras: the warm-up fit's end.
  setup_seconds       T0 to "ready to run step 1" (imports, data, init, compile).
  train_seconds       the steady training after compile, waited for (block_until_ready):
                      jax_jit / jax_scan / torch: all `steps` steps; keras: the second fit,
                      i.e. steps-1 steps (timed_steps says how many).
  steps_per_second    timed_steps / train_seconds.
  test_accuracy       on the 10000 test images after training.
  peak_rss_mb         resource.getrusage(RUSAGE_SELF).ru_maxrss (KiB on Linux) / 1024.
The data is read by a tiny IDX reader in this file (gzip + np.frombuffer), so the file needs
only numpy and the framework of its mode: netspec is not imported.
"""

import time

T0 = time.perf_counter()  # "process start": Python's own interpreter startup is before this and excluded

# The imports below come after T0 on purpose: first_step_seconds and setup_seconds count them.
import argparse  # noqa: E402
import gzip  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402

import numpy as np  # noqa: E402

DATA_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
SEED = 0
N_CLASSES = 10


# ---------------------------------------------------------------------- data
def read_idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def load_fashion(data_dir=DATA_DIR):
    """(x_train uint8 [60000, 784], y_train int32, x_test uint8 [10000, 784], y_test int32)."""

    def p(name):
        return os.path.join(data_dir, name)

    x_train = read_idx(p("train-images-idx3-ubyte.gz"), 16).reshape(-1, 784)
    y_train = read_idx(p("train-labels-idx1-ubyte.gz"), 8).astype(np.int32)
    x_test = read_idx(p("t10k-images-idx3-ubyte.gz"), 16).reshape(-1, 784)
    y_test = read_idx(p("t10k-labels-idx1-ubyte.gz"), 8).astype(np.int32)
    assert x_train.shape == (60000, 784) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 784) and y_test.shape == (10000,)
    return x_train, y_train, x_test, y_test


def batch_indices(steps, batch, n, seed=SEED):
    """int32 [steps, batch]: one fixed random permutation per epoch, mini-batches in order."""
    rng = np.random.default_rng(seed)
    epochs = -(-steps * batch // n)
    order = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    return order[: steps * batch].astype(np.int32).reshape(steps, batch)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------- JAX
def _jax_setup(model):
    import jax
    import jax.numpy as jnp
    import optax

    if model == "softmax":
        sizes = [784, N_CLASSES]
        opt = optax.sgd(0.5)
    else:
        sizes = [784, 256, 256, N_CLASSES]
        opt = optax.adam(1e-3)  # b1 0.9, b2 0.999, eps 1e-8
    glorot = jax.nn.initializers.glorot_uniform()

    def init(key):
        params = []
        for n_in, n_out in itertools.pairwise(sizes):
            key, k = jax.random.split(key)
            w = jnp.zeros((n_in, n_out), jnp.float32) if model == "softmax" else glorot(k, (n_in, n_out), jnp.float32)
            params.append((w, jnp.zeros((n_out,), jnp.float32)))
        return params

    def logits(params, x_u8):
        h = x_u8.astype(jnp.float32) * (1.0 / 255.0)
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        w, b = params[-1]
        return h @ w + b

    def loss_fn(params, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(logits(params, xb), yb).mean()

    def update(params, opt_state, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def accuracy(params, x, y):
        return jnp.mean(jnp.argmax(logits(params, x), -1) == y)

    params = init(jax.random.PRNGKey(SEED))
    return jax, jnp, params, opt.init(params), update, accuracy


def run_jax_jit(model, steps, batch):
    jax, jnp, params, opt_state, update, accuracy = _jax_setup(model)
    x_train, y_train, x_test, y_test = load_fashion()
    idx = batch_indices(steps, batch, len(x_train))
    x, y, idx = jax.device_put(x_train), jax.device_put(y_train), jax.device_put(idx)

    def step(params, opt_state, x, y, idx, i):
        rows = jax.lax.dynamic_index_in_dim(idx, i, keepdims=False)  # [batch]
        return update(params, opt_state, x[rows], y[rows])

    step_c = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state, x, y, idx, jnp.int32(0)).compile()
    ready = time.perf_counter()
    params, opt_state, loss = step_c(params, opt_state, x, y, idx, jnp.int32(0))
    jax.block_until_ready((params, loss))
    first = time.perf_counter()
    for i in range(1, steps):
        params, opt_state, loss = step_c(params, opt_state, x, y, idx, jnp.int32(i))
    jax.block_until_ready((params, opt_state, loss))
    end = time.perf_counter()
    acc = float(accuracy(params, jax.device_put(x_test), jax.device_put(y_test)))
    return dict(
        train_seconds=end - ready,
        first_step_seconds=first - T0,
        setup_seconds=ready - T0,
        timed_steps=steps,
        test_accuracy=acc,
        final_loss=float(loss),
    )


def run_jax_scan(model, steps, batch):
    jax, _, params, opt_state, update, accuracy = _jax_setup(model)
    x_train, y_train, x_test, y_test = load_fashion()
    idx = batch_indices(steps, batch, len(x_train))
    x, y, idx = jax.device_put(x_train), jax.device_put(y_train), jax.device_put(idx)

    def train(params, opt_state, x, y, idx):
        def body(carry, rows):
            p, s = carry
            p, s, loss = update(p, s, x[rows], y[rows])
            return (p, s), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), idx)
        return params, opt_state, losses[-1]

    train_c = jax.jit(train, donate_argnums=(0, 1)).lower(params, opt_state, x, y, idx).compile()
    ready = time.perf_counter()
    params, opt_state, loss = train_c(params, opt_state, x, y, idx)
    jax.block_until_ready((params, opt_state, loss))
    end = time.perf_counter()
    acc = float(accuracy(params, jax.device_put(x_test), jax.device_put(y_test)))
    train_s = end - ready
    return dict(
        train_seconds=train_s,
        first_step_seconds=ready - T0 + train_s / steps,
        setup_seconds=ready - T0,
        timed_steps=steps,
        test_accuracy=acc,
        final_loss=float(loss),
    )


# ------------------------------------------------------------------- PyTorch
def run_torch(model, steps, batch):
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    x_train, y_train, x_test, y_test = load_fashion()
    idx = torch.from_numpy(batch_indices(steps, batch, len(x_train)).astype(np.int64))
    x, y = torch.from_numpy(x_train.copy()), torch.from_numpy(y_train.astype(np.int64))

    if model == "softmax":
        net = nn.Linear(784, N_CLASSES)
        nn.init.zeros_(net.weight)
        nn.init.zeros_(net.bias)
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
    else:
        net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, N_CLASSES))
        for m in net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)  # eps 1e-8
    loss_fn = nn.CrossEntropyLoss()

    def step(i):
        rows = idx[i]
        xb = x[rows].float().mul_(1.0 / 255.0)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xb), y[rows])
        loss.backward()
        opt.step()
        return loss

    ready = time.perf_counter()
    loss = step(0)
    loss.item()
    first = time.perf_counter()
    for i in range(1, steps):
        loss = step(i)
    final_loss = loss.item()
    end = time.perf_counter()
    with torch.no_grad():
        xt = torch.from_numpy(x_test.copy()).float().mul_(1.0 / 255.0)
        acc = (net(xt).argmax(-1) == torch.from_numpy(y_test.astype(np.int64))).float().mean().item()
    return dict(
        train_seconds=end - ready,
        first_step_seconds=first - T0,
        setup_seconds=ready - T0,
        timed_steps=steps,
        test_accuracy=acc,
        final_loss=final_loss,
    )


# --------------------------------------------------------------------- Keras
def run_keras(model, steps, batch):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit(f"keras mode wants KERAS_BACKEND=jax, got {keras.backend.backend()}")
    keras.utils.set_random_seed(SEED)
    x_train, y_train, x_test, y_test = load_fashion()
    order = batch_indices(steps, batch, len(x_train)).reshape(-1)
    xs, ys = x_train[order], y_train[order]  # [steps*batch]: the batches, in order

    inp = keras.Input((784,), dtype="uint8")
    h = keras.layers.Rescaling(1.0 / 255.0)(inp)
    if model == "softmax":
        out = keras.layers.Dense(N_CLASSES, kernel_initializer="zeros", bias_initializer="zeros")(h)
        opt = keras.optimizers.SGD(learning_rate=0.5)
    else:
        for _ in range(2):
            h = keras.layers.Dense(256, activation="relu", kernel_initializer="glorot_uniform")(h)
        out = keras.layers.Dense(N_CLASSES, kernel_initializer="glorot_uniform")(h)
        opt = keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-8)  # torch/optax epsilon
    net = keras.Model(inp, out)
    net.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    ready = time.perf_counter()

    def fit(a, b):
        return net.fit(xs[a:b], ys[a:b], batch_size=batch, epochs=1, shuffle=False, verbose=0)

    fit(0, batch)  # step 1: trace + compile + run
    first = time.perf_counter()
    hist = fit(batch, steps * batch)  # steps 2..steps
    end = time.perf_counter()
    assert int(net.optimizer.iterations.numpy()) == steps, net.optimizer.iterations.numpy()
    logits = net.predict(x_test, batch_size=len(x_test), verbose=0)
    acc = float(np.mean(np.argmax(logits, -1) == y_test))
    return dict(
        train_seconds=end - first,
        first_step_seconds=first - T0,
        setup_seconds=ready - T0,
        timed_steps=steps - 1,
        test_accuracy=acc,
        final_loss=float(hist.history["loss"][-1]),
    )  # keras: mean loss of the fit


MODES = {"jax_jit": run_jax_jit, "jax_scan": run_jax_scan, "torch": run_torch, "keras": run_keras}


def main():
    ap = argparse.ArgumentParser(description="Hand-written Fashion-MNIST baselines (see the module docstring).")
    ap.add_argument("mode", choices=sorted(MODES))
    ap.add_argument("--model", choices=["softmax", "mlp"], required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    a = ap.parse_args()
    if a.mode == "keras" and a.steps < 2:
        ap.error("keras mode needs --steps >= 2 (a warm-up fit of one step, then the rest)")
    r = MODES[a.mode](a.model, a.steps, a.batch)
    out = {
        "baseline": a.mode,
        "model": a.model,
        "steps": a.steps,
        "train_seconds": r["train_seconds"],
        "steps_per_second": r["timed_steps"] / r["train_seconds"],
        "first_step_seconds": r["first_step_seconds"],
        "test_accuracy": r["test_accuracy"],
        "peak_rss_mb": peak_rss_mb(),
        "setup_seconds": r["setup_seconds"],
        "timed_steps": r["timed_steps"],
        "batch": a.batch,
        "final_loss": r["final_loss"],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
