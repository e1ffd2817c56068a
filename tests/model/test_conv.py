"""conv2d's two lowerings (netspec.model.conv): im2col equals XLA's native convolution for every
configuration the layer supports, outputs and gradients, float32 and bfloat16; and the policy
that picks one per backend and memory budget (netspec.compile.chunk.conv_policy)."""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support import LAYER_EXAMPLES, checked, probe_spec

from netspec.compile.chunk import IM2COL_SHARE, conv_policy, loop_policy
from netspec.model import layers as L
from netspec.model.conv import convolve, patches_bytes

# (height, width, channels, filters, kernel, strides, dilation, groups): each axis of the layer
# varied, square and not, odd and even, with strides and dilation together and apart
SHAPES = [
    (8, 8, 3, 4, (3, 3), (1, 1), (1, 1), 1),
    (28, 28, 1, 8, (5, 5), (2, 2), (1, 1), 1),
    (13, 11, 4, 6, (3, 2), (2, 3), (2, 1), 2),
    (9, 9, 6, 6, (3, 3), (1, 1), (2, 2), 3),
    (7, 8, 4, 8, (1, 1), (1, 1), (1, 1), 4),
    (10, 10, 2, 4, (4, 4), (3, 3), (1, 1), 1),
    (6, 6, 2, 2, (6, 6), (1, 1), (1, 1), 1),
    (12, 9, 3, 3, (2, 3), (1, 2), (3, 2), 3),
    (5, 5, 8, 16, (3, 3), (2, 2), (1, 1), 8),
]
CONFIGS = [(*shape, padding) for shape, padding in itertools.product(SHAPES, ["same", "valid"])]


def _inputs(h, w, c, f, k, g, dtype=jnp.float32):
    rng = np.random.default_rng(h * 100 + w * 10 + c)
    x = jnp.asarray(rng.normal(size=(3, h, w, c)), dtype)
    kernel = jnp.asarray(rng.normal(size=(*k, c // g, f)), dtype)
    return x, kernel


def _relative(a, b) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_im2col_equals_the_native_convolution_and_its_gradients(config):
    h, w, c, f, k, s, d, g, padding = config
    if padding == "valid" and (h < d[0] * (k[0] - 1) + 1 or w < d[1] * (k[1] - 1) + 1):
        pytest.skip("the kernel's span is larger than the input")
    x, kernel = _inputs(h, w, c, f, k, g)
    args = {"strides": s, "padding": padding, "dilation": d, "groups": g}
    native = convolve(x, kernel, lowering="native", **args)
    im2col = convolve(x, kernel, lowering="im2col", **args)
    assert im2col.shape == native.shape and im2col.dtype == native.dtype
    assert _relative(im2col, native) < 1e-5

    def loss(lowering):  # a non-linear function of the output, so dy differs per position
        return lambda x, k: jnp.sum(jnp.sin(convolve(x, k, lowering=lowering, **args)))

    for got, want in zip(
        jax.grad(loss("im2col"), (0, 1))(x, kernel), jax.grad(loss("native"), (0, 1))(x, kernel), strict=True
    ):
        assert _relative(got, want) < 1e-5


@pytest.mark.parametrize("config", CONFIGS[::3], ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_bfloat16_im2col_stays_within_bfloat16_rounding(config):
    """In bfloat16 both lowerings round; each stays within a few bfloat16 ulps (2**-8 relative)
    of the float32 convolution of the same bfloat16 inputs."""
    h, w, c, f, k, s, d, g, padding = config
    if padding == "valid" and (h < d[0] * (k[0] - 1) + 1 or w < d[1] * (k[1] - 1) + 1):
        pytest.skip("the kernel's span is larger than the input")
    x, kernel = _inputs(h, w, c, f, k, g, jnp.bfloat16)
    args = {"strides": s, "padding": padding, "dilation": d, "groups": g}
    exact = convolve(x.astype(jnp.float32), kernel.astype(jnp.float32), lowering="native", **args)
    im2col = convolve(x, kernel, lowering="im2col", **args)
    assert im2col.dtype == jnp.bfloat16
    native_error = _relative(convolve(x, kernel, lowering="native", **args), exact)
    assert _relative(im2col, exact) <= max(2 * 2**-8, 2 * native_error)


@pytest.mark.parametrize("index", range(len(LAYER_EXAMPLES["conv2d"])))
def test_the_conv2d_layer_gives_the_same_output_either_way(index):
    """Through the layer's builder, as the network calls it: the same parameters (init does not
    depend on the lowering) and the same output."""
    input_shape, before, layer = LAYER_EXAMPLES["conv2d"][index]
    spec = checked(probe_spec(input_shape, before, layer))
    (probe,) = [layer for layer in spec.layers if layer.name == "probe"]
    (init_n, apply_n), (init_i, apply_i) = L.build(probe, lowering="native"), L.build(probe, lowering="im2col")
    key = jax.random.key(0)
    params, state = init_n(key)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(init_i(key)[0]), strict=True):
        np.testing.assert_array_equal(a, b)
    x = jax.random.normal(key, (2, *probe.in_shapes[0]))
    run = {"train": False, "key": key}
    want, _ = apply_n(params, state, [x], **run)
    got, _ = apply_i(params, state, [x], **run)
    assert _relative(got, want) < 1e-5


def _conv_layers(*shapes):
    """A checked spec's conv2d layers: one per (height, width, channels, kernel) given."""
    layers = []
    for i, (h, w, c, k) in enumerate(shapes):
        spec = checked(probe_spec([h, w, c], [], {"type": "conv2d", "filters": 4, "kernel_size": k}))
        (probe,) = [layer for layer in spec.layers if layer.name == "probe"]
        layers.append(dataclasses.replace(probe, name=f"conv{i}"))
    return layers


def test_auto_is_im2col_on_cpu_and_native_on_gpu_and_tpu():
    layers = _conv_layers((28, 28, 1, 3), (14, 14, 32, 3))
    budget = 24 * 2**30
    cpu, reasons = conv_policy("auto", layers, batch=100, itemsize=4, backend="cpu", budget=budget)
    assert set(cpu.values()) == {"im2col"} and reasons == {}
    for backend in ("gpu", "tpu"):
        assert set(conv_policy("auto", layers, batch=100, itemsize=4, backend=backend, budget=budget)[0].values()) == {
            "native"
        }
    for forced in ("native", "im2col"):
        for backend in ("cpu", "gpu"):
            chosen, _ = conv_policy(forced, layers, batch=100, itemsize=4, backend=backend, budget=budget)
            assert set(chosen.values()) == {forced}


def test_auto_keeps_the_largest_layers_native_when_the_patches_exceed_the_budget():
    """Patches of batch 100: 28x28x1 (3x3): 100*784*9*4 = 2.8 MB; 14x14x32 (3x3): 22.6 MB. A budget
    whose quarter holds the small one only keeps the large one native, says why, and the loop
    policy then leaves the scan on CPU (a native conv's gradient is slow inside it)."""
    layers = _conv_layers((28, 28, 1, 3), (14, 14, 32, 3))
    sizes = [
        patches_bytes((28, 28, 1), (3, 3), (1, 1), "same", (1, 1), 100, 4),
        patches_bytes((14, 14, 32), (3, 3), (1, 1), "same", (1, 1), 100, 4),
    ]
    assert sizes == [100 * 784 * 9 * 4, 100 * 196 * 9 * 32 * 4]
    budget = int((sizes[0] + 1000) / IM2COL_SHARE)
    chosen, reasons = conv_policy("auto", layers, batch=100, itemsize=4, backend="cpu", budget=budget)
    assert chosen == {layers[0].name: "im2col", layers[1].name: "native"}
    assert list(reasons) == [layers[1].name] and "memory budget" in reasons[layers[1].name]
    train = {"loop": "auto", "unroll": None}
    assert loop_policy(train, chosen, "cpu")[0] == "steps"
    assert loop_policy(train, {name: "im2col" for name in chosen}, "cpu")[0] == "scan"
    assert loop_policy(train, {name: "native" for name in chosen}, "gpu")[0] == "scan"
    tiny = conv_policy("auto", layers, batch=100, itemsize=4, backend="cpu", budget=1000)[0]
    assert set(tiny.values()) == {"native"}
