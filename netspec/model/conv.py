"""Two lowerings of one 2-D convolution, equal to float32 rounding: XLA's native convolution and
im2col (slices of the padded input, concatenated on the channel axis, and one matrix multiply).

    convolve(x, kernel, *, strides, padding, dilation, groups, lowering) -> y
    patches_bytes(in_shape, kernel_size, strides, padding, dilation, batch, itemsize) -> int

x is [N, height, width, channels] (NHWC), the kernel [kh, kw, channels / groups, filters] (HWIO),
y [N, out height, out width, filters]; 'same' pads as XLA and TensorFlow pad (the extra row or
column at the end), 'valid' not at all.

Why im2col: XLA:CPU's convolution is slow where netspec trains, and slowest inside a while loop:
the gradients of fashion_cnn's two convolutions inside `lax.scan` ran 13x slower than at the top
level of a program, so on CPU conv nets had to leave the fused scan (benchmarks/conv_scan_repro.py
is the minimal reproduction). Written as slices and a matrix multiply, the forward pass is a
`dot_general` and the gradient is a `dot_general` plus the slices' transposes (pads and adds),
which XLA:CPU runs at matrix-multiply speed inside a scan too (benchmarks/RESULTS.md, "Convolutions
on CPU"). The price is memory: the patches hold kh * kw copies of the input, kept for the backward
pass; `patches_bytes` says how much, and `compile.chunk.conv_policy` keeps a layer native where
that would be too much. On GPU and TPU the native convolution (cuDNN, the TPU's MXU) stays.

The column order is (kernel row, kernel column, input channel), the order of the HWIO kernel's
first three axes, so the kernel is the matrix `kernel.reshape(kh * kw * c, filters)`, unchanged
in memory: checkpoints are the same whichever lowering trained them. Groups (Krizhevsky et al.
2012; `feature_group_count` in XLA) are a batched matrix multiply over the group axis. Pure JAX;
never imports anything of netspec's.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

Lowering = Literal["native", "im2col"]
LOWERINGS: tuple[Lowering, ...] = ("native", "im2col")


def _out_and_pads(size: int, k: int, stride: int, dilation: int, padding: str) -> tuple[int, tuple[int, int]]:
    """(output length, (pad before, pad after)) of one spatial axis, as XLA's SAME/VALID rule."""
    span = dilation * (k - 1) + 1
    if padding == "valid":
        return (size - span) // stride + 1, (0, 0)
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return out, (total // 2, total - total // 2)


def convolve(
    x: jax.Array,
    kernel: jax.Array,
    *,
    strides: tuple[int, int],
    padding: str,
    dilation: tuple[int, int],
    groups: int,
    lowering: Lowering,
) -> jax.Array:
    """The convolution of x [N, H, W, C] with kernel [kh, kw, C / groups, F] -> [N, OH, OW, F] in
    x's dtype. padding: "same" or "valid"; lowering: "native" (`lax.conv_general_dilated`) or
    "im2col" (see the module docstring). Both accumulate in at least float32."""
    if lowering == "native":
        return lax.conv_general_dilated(
            x,
            kernel,
            window_strides=strides,
            padding=padding.upper(),
            rhs_dilation=dilation,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=groups,
        )
    return _im2col(x, kernel, strides=strides, padding=padding, dilation=dilation, groups=groups)


def _im2col(
    x: jax.Array, kernel: jax.Array, *, strides: tuple[int, int], padding: str, dilation: tuple[int, int], groups: int
) -> jax.Array:
    n, h, w, c = x.shape
    kh, kw, cg, f = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    oh, pads_h = _out_and_pads(h, kh, sh, dh, padding)
    ow, pads_w = _out_and_pads(w, kw, sw, dw, padding)
    if padding == "same":
        x = jnp.pad(x, ((0, 0), pads_h, pads_w, (0, 0)))
    # one strided slice per kernel tap: the input rows and columns that tap multiplies
    taps = [
        lax.slice(
            x, (0, i * dh, j * dw, 0), (n, i * dh + (oh - 1) * sh + 1, j * dw + (ow - 1) * sw + 1, c), (1, sh, sw, 1)
        )
        for i in range(kh)
        for j in range(kw)
    ]
    accumulate = jnp.promote_types(x.dtype, jnp.float32)
    if groups == 1 and c == 1:
        # One input channel (a grey image): each tap times its row of the kernel, summed. With
        # one column per tap the concatenated matrix multiply has an inner dimension of only
        # kh * kw, which XLA:CPU runs 2x slower than these kh * kw rank-1 products (fashion_cnn's
        # first layer, forward and backward in a scan: 2.6 ms against 5.0 ms a step).
        rows = kernel.reshape(kh * kw, 1, f)
        y = sum(
            (
                lax.dot_general(tap, rows[t], (((3,), (0,)), ((), ())), preferred_element_type=accumulate)
                for t, tap in enumerate(taps[1:], 1)
            ),
            lax.dot_general(taps[0], rows[0], (((3,), (0,)), ((), ())), preferred_element_type=accumulate),
        )
        return y.astype(x.dtype)
    if groups == 1:
        patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)  # [N, OH, OW, kh*kw*C]
        y = lax.dot_general(
            patches, kernel.reshape(kh * kw * c, f), (((3,), (0,)), ((), ())), preferred_element_type=accumulate
        )
        return y.astype(x.dtype)
    fg = f // groups
    # [N, OH, OW, taps, groups, C/groups] -> [N, OH, OW, groups, taps*C/groups]: each group's patches
    patches = jnp.stack(taps, axis=3).reshape(n, oh, ow, kh * kw, groups, cg)
    patches = patches.transpose(0, 1, 2, 4, 3, 5).reshape(n, oh, ow, groups, kh * kw * cg)
    # HWIO with O = (group, F/groups) -> [groups, kh*kw*C/groups, F/groups]
    weights = kernel.reshape(kh * kw, cg, groups, fg).transpose(2, 0, 1, 3).reshape(groups, kh * kw * cg, fg)
    y = lax.dot_general(patches, weights, (((4,), (1,)), ((3,), (0,))), preferred_element_type=accumulate)
    # dot_general puts the batch (group) axis first: [groups, N, OH, OW, F/groups]
    return jnp.moveaxis(y, 0, 3).reshape(n, oh, ow, f).astype(x.dtype)


def patches_bytes(
    in_shape: tuple[int, int, int],
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    padding: str,
    dilation: tuple[int, int],
    batch: int,
    itemsize: int,
) -> int:
    """Bytes of one im2col layer's patches for `batch` examples of `in_shape` (H, W, C) at
    `itemsize` bytes per element: N * OH * OW * kh * kw * C, which a training step keeps from the
    forward pass to the backward (the kernel's gradient is patches^T @ dy)."""
    h, w, c = in_shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation
    oh, _ = _out_and_pads(h, kh, sh, dh, padding)
    ow, _ = _out_and_pads(w, kw, sw, dw, padding)
    return batch * max(oh, 0) * max(ow, 0) * kh * kw * c * itemsize
