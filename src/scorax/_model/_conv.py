r"""Channel-last 2-D convolution that stays fast inside loops on XLA's CPU backend.

See `conv_nhwc`. For maintainers, the cause: XLA's CPU pass
`ConvCanonicalization`, which rewrites a convolution into the NHWC/HWIO layout
its fast kernels take, visits only the entry computation, so a convolution in any
other layout inside a loop body (or a branch) keeps the generic fallback. Hence
one primitive whose forward pass, tangents, transposes and batching rule all
produce that layout.
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
    r"""A 2-D convolution of channel-last images that XLA's CPU backend runs at
    full speed inside loops, in every derivative: the layer to build a
    convolutional score model from (it is [`UNet`][scorax.UNet]'s).

    It computes the cross-correlation of deep learning's convolution layers,

    $$y_{n,p,q,o} = \sum_{a,b,i} \tilde x_{n,\, s_1 p + a,\, s_2 q + b,\, i}\,
    k_{a,b,i,o},$$

    with $\tilde x$ the images zero-padded by `padding`, exactly as
    `jax.lax.conv_general_dilated(x, kernel, stride, padding,
    dimension_numbers=("NHWC", "HWIO", "NHWC"))` does. What differs is how it
    compiles. XLA's CPU backend runs a convolution fast only with the input
    NHWC and the kernel HWIO, and rewrites other layouts into those only in a
    program's entry computation; inside a loop body (each `lax.scan`,
    `fori_loop` and Diffrax solve, so in `fit` and in every sampler) a
    convolution in another layout runs through a generic fallback, several
    times slower (the `unet` benchmark measures it). Channel-first layers such as Equinox's `Conv2d` fall into it,
    and so do the convolutions that JAX's autodiff derives from a channel-last
    one: the input gradient correlates with the kernel flipped and with I and O
    swapped, the kernel gradient contracts over the batch (Dumoulin & Visin 2016,
    "A guide to convolution arithmetic for deep learning", section 4). Here the
    forward pass, its tangents, both transposes and `vmap` (whose axis joins the
    batch axis N) are all written as this same canonical convolution on
    explicitly transposed, flipped or dilated operands, so gradients of any
    order, `jax.jvp` (the divergence of a likelihood solve) and nested `vmap`
    all stay in the fast layout. A kernel batched under `vmap` (an ensemble)
    falls back to XLA's grouped convolution: correct, not loop-proof.

    **Arguments:**

    - `x`: a batch of images, `(batch, height, width, in_channels)`. A
      per-sample model calls it on `x[None]` and `jax.vmap` batches it.
    - `kernel`: `(kernel_height, kernel_width, in_channels, out_channels)`.
      (Equinox's and PyTorch's `(out, in, kh, kw)` kernels convert with
      `weight.transpose(2, 3, 1, 0)`.)
    - `stride`: the step of the window along height and width.
    - `padding`: `((low, high), (low, high))` zeros added along height and
      width; `((1, 1), (1, 1))` keeps the size of a 3x3 convolution.

    **Returns:** `(batch, out_height, out_width, out_channels)`, with
    out_height $= \lfloor (h + \text{low} + \text{high} - k_h)/s_1 \rfloor + 1$
    and likewise for the width.
    """
    if isinstance(padding, str) or len(padding) != 2:
        raise ValueError(
            "`padding` must be ((low, high), (low, high)) for height and width, "
            f"got {padding!r}."
        )
    if len(stride) != 2:
        raise ValueError(f"`stride` must be (height, width), got {stride!r}.")
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
