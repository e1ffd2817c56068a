"""XLA:CPU: a convolution's gradient inside lax.scan is ~30x slower than at the top level (to report upstream).
python benchmarks/conv_scan_repro.py -> ms per gradient, top level vs inside a scan (timings: RESULTS.md)."""

import time

import jax
import jax.numpy as jnp
from jax import lax


def loss(k, x):
    return jnp.sum(lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) ** 2)


x, k = jnp.ones((100, 14, 14, 32)), jnp.full((3, 3, 32, 64), 0.01)  # fashion_cnn's second conv layer, batch 100
top = jax.jit(jax.grad(loss))
scan = jax.jit(lambda k, x: lax.scan(lambda k, _: (k - 1e-9 * jax.grad(loss)(k, x), None), k, None, length=10)[0])
for name, f, n in (("top level", top, 1), ("inside lax.scan", scan, 10)):
    f(k, x).block_until_ready()
    start = time.perf_counter()
    f(k, x).block_until_ready()
    print(f"{name}: {(time.perf_counter() - start) / n * 1e3:.1f} ms per gradient (jax {jax.__version__}, XLA:CPU)")
