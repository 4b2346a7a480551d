r"""Channel-last 2-D convolution that stays fast inside loops on XLA's CPU backend.

XLA's CPU backend runs a convolution at full speed only in its canonical layout
(input NHWC, kernel HWIO); it rewrites other layouts into that one, but only in
the program's entry computation (`ConvCanonicalization` visits nothing else). A
convolution inside a loop body, which is where every `lax.scan`, `fori_loop`
and Diffrax solve puts the model, keeps its layout and runs through a generic
fallback about ten times slower. Channel-first convolutions (Equinox's
`Conv2d`, made NCHW by `vmap`) hit it, and so do the convolutions that JAX's
autodiff writes for any forward convolution: the input gradient flips the
kernel to HWOI, the kernel gradient puts the batch in the feature position.

`conv_nhwc` is one primitive whose every form is canonical: its forward pass,
its forward-mode tangents, its transposes (written as the same primitive on
explicitly transposed, flipped or dilated operands) and its batching rule
(the `vmap` axis joins the batch axis N). Gradients of any order, `jvp`,
`linear_transpose` and nested `vmap` all reduce to it.
"""

import functools as ft
from collections.abc import Sequence

import jax
import jax.core
import jax.extend.core
import jax.interpreters.ad as ad
import jax.interpreters.batching as batching
import jax.interpreters.mlir as mlir
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float


_LAYOUT = ("NHWC", "HWIO", "NHWC")

Padding = tuple[tuple[int, int], tuple[int, int]]


def _lax_conv(
    x: Array, kernel: Array, *, stride: tuple[int, int], padding: Padding
) -> Array:
    return lax.conv_general_dilated(
        x, kernel, stride, padding, dimension_numbers=_LAYOUT
    )


def _abstract_eval(x, kernel, *, stride, padding):
    out = jax.eval_shape(
        ft.partial(_lax_conv, stride=stride, padding=padding),
        jax.ShapeDtypeStruct(x.shape, x.dtype),
        jax.ShapeDtypeStruct(kernel.shape, kernel.dtype),
    )
    return jax.core.ShapedArray(out.shape, out.dtype)


_conv_p = jax.extend.core.Primitive("scorax_conv_nhwc")
_conv_p.def_impl(_lax_conv)
_conv_p.def_abstract_eval(_abstract_eval)
mlir.register_lowering(_conv_p, mlir.lower_fun(_lax_conv, multiple_results=False))


def conv_nhwc(
    x: Float[Array, "n h w i"],
    kernel: Float[Array, "kh kw i o"],
    *,
    stride: Sequence[int] = (1, 1),
    padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0)),
) -> Float[Array, "n h2 w2 o"]:
    """The cross-correlation of a batch of channel-last images with an HWIO
    kernel, as `lax.conv_general_dilated` computes it, in a form that XLA's CPU
    backend runs at full speed inside loops, differentiated in either mode."""
    return _conv_p.bind(
        x,
        kernel,
        stride=tuple(int(s) for s in stride),
        padding=tuple((int(lo), int(hi)) for lo, hi in padding),
    )


def _zero(like: Array) -> Array:
    return jnp.zeros((), like.dtype)


def _transpose_input(g, x, kernel, *, stride, padding):
    """The input cotangent: the cotangent dilated by the stride and padded, then
    correlated with the kernel flipped in space and with I and O swapped."""
    size, window, out = x.aval.shape[1:3], kernel.shape[:2], g.shape[1:3]
    spatial = []
    for n, k, m, s, (lo, _) in zip(size, window, out, stride, padding, strict=True):
        # Zero rows past the last window (and negative padding where the forward
        # padding was larger than the window reach) give back the input's size.
        spatial.append((k - 1 - lo, n + lo - (m - 1) * s - 1, s - 1))
    g = lax.pad(g, _zero(g), [(0, 0, 0), *spatial, (0, 0, 0)])
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    return conv_nhwc(g, flipped)


def _transpose_kernel(g, x, kernel, *, stride, padding):
    """The kernel cotangent, sum over n, p, q of x[n, p s + a, q s + b, i] times
    g[n, p, q, o]: the images with channels as the batch, correlated with the
    stride-dilated cotangents as a kernel whose input features are the batch."""
    window = kernel.aval.shape[:2]
    (s0, s1) = stride
    g = lax.pad(g, _zero(g), [(0, 0, 0), (0, 0, s0 - 1), (0, 0, s1 - 1), (0, 0, 0)])
    out = conv_nhwc(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), padding=padding)
    # Rows past the kernel's reach only occur when the stride does not divide the
    # padded size; they belong to no window.
    return out[:, : window[0], : window[1], :].transpose(1, 2, 0, 3)


ad.defbilinear(_conv_p, _transpose_input, _transpose_kernel)


def _batch(args, dims, *, stride, padding):
    x, kernel = args
    x_dim, kernel_dim = dims
    if kernel_dim is None:
        # One kernel for every image: the mapped axis joins the batch axis.
        x = jnp.moveaxis(x, x_dim, 0)
        outer, inner = x.shape[:2]
        out = conv_nhwc(
            x.reshape(outer * inner, *x.shape[2:]),
            kernel,
            stride=stride,
            padding=padding,
        )
        return out.reshape(outer, inner, *out.shape[1:]), 0
    # A kernel per image (an ensemble, or per-example kernel gradients): XLA's
    # grouped convolution; correct everywhere, fast outside loops.
    conv = ft.partial(_lax_conv, stride=stride, padding=padding)
    return jax.vmap(conv, in_axes=(x_dim, kernel_dim))(x, kernel), 0


batching.primitive_batchers[_conv_p] = _batch
