r"""A small time-conditional U-Net for images.

Its layers hold their parameters as Equinox's `Conv2d` and `GroupNorm` do
(kernels out x in x height x width, as in PyTorch), and apply them to channel-last
activations through `conv_nhwc`: the layout in which XLA's CPU backend runs
convolutions at full speed, in and out of loops.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .._checks import check_count
from .._custom_types import IntScalarLike, RealScalarLike
from ._conv import conv_nhwc
from ._label import LabelEmbedding, unconditional
from ._mlp import GaussianFourierFeatures


def _groups(channels: int) -> int:
    """The most groups, of 8, 4 or 2, that divide `channels` into groups of at
    least 4 channels; one group otherwise (below 8 channels, or an odd count).

    The time and label embeddings enter a block as a per-channel bias just before
    a group norm, which subtracts each group's mean: in a group of one channel it
    would subtract the whole bias, and the block would ignore `t` and `y`.
    """
    fits = (g for g in (8, 4, 2) if channels % g == 0 and channels >= 4 * g)
    return next(fits, 1)


def _conv(layer: eqx.nn.Conv2d, h: Float[Array, "h w i"]) -> Float[Array, "h2 w2 o"]:
    """`layer` applied to a channel-last image: the same numbers as
    `layer(h.transpose(2, 0, 1)).transpose(1, 2, 0)`."""
    kernel = layer.weight.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    # The UNet's layers: explicit zero padding, no dilation, no groups.
    assert not isinstance(layer.padding, str) and layer.padding_mode == "ZEROS"
    assert layer.dilation == (1, 1) and layer.groups == 1
    out = conv_nhwc(h[None], kernel, stride=layer.stride, padding=layer.padding)[0]
    return out if layer.bias is None else out + layer.bias.reshape(1, 1, -1)


def _norm(layer: eqx.nn.GroupNorm, h: Float[Array, "h w c"]) -> Float[Array, "h w c"]:
    """`layer` applied to a channel-last image, in at least float32 as Equinox's
    `GroupNorm` computes: each group of channels normalised over space and its
    channels, then scaled and shifted per channel."""
    dtype = jnp.result_type(h.dtype, jnp.float32)
    groups = h.astype(dtype).reshape(*h.shape[:-1], layer.groups, -1)
    mean = jnp.mean(groups, axis=(0, 1, 3), keepdims=True)
    variance = jnp.maximum(jnp.var(groups, axis=(0, 1, 3), keepdims=True), 0.0)
    out = ((groups - mean) * jax.lax.rsqrt(variance + layer.eps)).reshape(h.shape)
    if layer.channelwise_affine:
        assert layer.weight is not None and layer.bias is not None
        scale, shift = (p.astype(dtype)[None, None] for p in (layer.weight, layer.bias))
        out = scale * out + shift
    return out.astype(h.dtype)


class _Block(eqx.Module):
    """Two 3x3 convolutions with group norm and SiLU; the time embedding is added
    as a per-channel bias in between; a 1x1 convolution on the skip path when the
    channel count changes."""

    norm1: eqx.nn.GroupNorm
    conv1: eqx.nn.Conv2d
    time: eqx.nn.Linear
    norm2: eqx.nn.GroupNorm
    conv2: eqx.nn.Conv2d
    skip: eqx.nn.Conv2d | None

    def __init__(
        self, in_channels: int, out_channels: int, time_dim: int, *, key: PRNGKeyArray
    ):
        k1, k2, k3, k4 = jr.split(key, 4)
        self.norm1 = eqx.nn.GroupNorm(_groups(in_channels), in_channels)
        self.conv1 = eqx.nn.Conv2d(in_channels, out_channels, 3, padding=1, key=k1)
        self.time = eqx.nn.Linear(time_dim, out_channels, key=k2)
        self.norm2 = eqx.nn.GroupNorm(_groups(out_channels), out_channels)
        self.conv2 = eqx.nn.Conv2d(out_channels, out_channels, 3, padding=1, key=k3)
        same = in_channels == out_channels
        self.skip = (
            None if same else eqx.nn.Conv2d(in_channels, out_channels, 1, key=k4)
        )

    def __call__(
        self, x: Float[Array, "h w c"], embedding: Float[Array, " e"]
    ) -> Float[Array, "h w o"]:
        h = _conv(self.conv1, jax.nn.silu(_norm(self.norm1, x)))
        h = h + self.time(embedding)[None, None]
        h = _conv(self.conv2, jax.nn.silu(_norm(self.norm2, h)))
        return h + (x if self.skip is None else _conv(self.skip, x))


class UNet(eqx.Module):
    r"""A small time-conditional U-Net $m_\theta(x, t)$ for images (Ronneberger et al.
    2015, in the form used for diffusion models by Ho et al. 2020).

    Residual blocks of two 3x3 convolutions with group normalisation and SiLU, the
    time entering every block through
    [`GaussianFourierFeatures`][scorax.GaussianFourierFeatures] and a small MLP;
    each level halves the resolution with a strided convolution on the way down
    and restores it by nearest-neighbour upsampling, concatenating the skip
    connection, on the way up. The output has the shape of the input; what it
    means is the parameterisation you train it with. Sized for 8x8 digits and
    28x28 images on a CPU.

    The parameters are stored as Equinox's `Conv2d` and `GroupNorm` store them
    (kernels `(out, in, height, width)`, as in PyTorch), so checkpoints of earlier
    versions load unchanged. The computation runs channel-last through
    [`conv_nhwc`][scorax.conv_nhwc], the layout in which XLA's CPU backend is
    fastest and which, unlike channel-first, stays fast inside `lax.scan`, the
    samplers' loops and Diffrax's solves (the `unet` benchmark measures both).

    **Arguments:**

    - `shape`: the shape of one image, `(height, width)` or
      `(channels, height, width)`; height and width divisible by
      $2^{L-1}$ for $L$ levels.
    - `channels`: the channel count of each level, e.g. `(32, 64)`; at least 2.
      Group norms use up to 8 groups of at least 4 channels each, so that the
      embedding of `t` (and `y`), added per channel, survives them.
    - `num_time_features`, `time_scale`: the time embedding.
    - `num_classes`: with $K$ classes, the model is class-conditional,
      $m_\theta(x, t, y)$: a learned embedding of the label (or of the null label
      $y = -1$, "no class") is added to the time embedding, as in Dhariwal & Nichol
      (2021). Default `None`: unconditional, exactly as before.
    - `key`: a JAX PRNG key.
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    time_features: GaussianFourierFeatures
    time_mlp: eqx.nn.MLP
    stem: eqx.nn.Conv2d
    down_blocks: list[_Block]
    downsamples: list[eqx.nn.Conv2d]
    middle: _Block
    up_blocks: list[_Block]
    head_norm: eqx.nn.GroupNorm
    head: eqx.nn.Conv2d
    label_embedding: LabelEmbedding | None

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        channels: Sequence[int] = (32, 64),
        num_time_features: IntScalarLike = 32,
        time_scale: float = 16.0,
        num_classes: IntScalarLike | None = None,
        key: PRNGKeyArray,
    ):
        if len(shape) not in (2, 3) or not all(
            isinstance(n, int) and n >= 1 for n in shape
        ):
            raise ValueError(
                f"`shape` must be (height, width) or (channels, height, width), got {shape}."
            )
        channels = tuple(channels)
        if not channels or not all(isinstance(c, int) and c >= 2 for c in channels):
            raise ValueError(
                f"`channels` must be integers of at least 2, got {channels}: a "
                "block's group norm would erase the time embedding of one channel."
            )
        factor = 2 ** (len(channels) - 1)
        if shape[-1] % factor or shape[-2] % factor:
            raise ValueError(
                f"`shape`: height and width must be divisible by {factor} for "
                f"{len(channels)} levels, got {shape}."
            )
        image_channels = shape[0] if len(shape) == 3 else 1
        num_time_features = check_count(num_time_features, "num_time_features")
        keys = iter(jr.split(key, 4 + 3 * len(channels)))
        time_dim = 4 * channels[0]
        self.shape = tuple(shape)
        self.time_features = GaussianFourierFeatures(
            num_time_features, scale=time_scale, key=next(keys)
        )
        self.time_mlp = eqx.nn.MLP(
            num_time_features,
            time_dim,
            time_dim,
            1,
            activation=jax.nn.silu,
            key=next(keys),
        )
        self.stem = eqx.nn.Conv2d(
            image_channels, channels[0], 3, padding=1, key=next(keys)
        )
        self.down_blocks, self.downsamples, self.up_blocks = [], [], []
        for i, width in enumerate(channels):
            previous = channels[max(i - 1, 0)]
            self.down_blocks.append(_Block(previous, width, time_dim, key=next(keys)))
            if i < len(channels) - 1:
                self.downsamples.append(
                    eqx.nn.Conv2d(width, width, 3, stride=2, padding=1, key=next(keys))
                )
        self.middle = _Block(channels[-1], channels[-1], time_dim, key=next(keys))
        for i in reversed(range(len(channels))):
            below = channels[min(i + 1, len(channels) - 1)]
            self.up_blocks.append(
                _Block(below + channels[i], channels[i], time_dim, key=next(keys))
            )
        self.head_norm = eqx.nn.GroupNorm(_groups(channels[0]), channels[0])
        self.head = eqx.nn.Conv2d(
            channels[0], image_channels, 3, padding=1, key=next(keys)
        )
        # A key of its own, so unconditional models keep their weights.
        self.label_embedding = (
            None
            if num_classes is None
            else LabelEmbedding(num_classes, time_dim, key=jr.fold_in(key, 1))
        )

    @property
    def num_classes(self) -> int | None:
        """The number of classes $K$ of a class-conditional model, else `None`."""
        return (
            None if self.label_embedding is None else self.label_embedding.num_classes
        )

    def __call__(
        self,
        x: Float[Array, "*shape"],
        t: RealScalarLike,
        y: Int[ArrayLike, ""] | None = None,
    ) -> Float[Array, "*shape"]:
        """The output at `(x, t)`, given the label `y` if the model is
        class-conditional (`None` or -1: no class)."""
        if x.shape != self.shape:
            raise ValueError(f"`x` must have shape {self.shape}, got {x.shape}.")
        dtype = self.stem.weight.dtype  # compute in the weights' dtype, return x's
        # Channel-last inside: (height, width, channels).
        h = x.reshape(-1, *x.shape[-2:]).transpose(1, 2, 0).astype(dtype)
        embedding = self.time_mlp(self.time_features(t).astype(dtype))
        if self.label_embedding is None:
            unconditional(y, "UNet")
        else:
            embedding = embedding + self.label_embedding(y).astype(dtype)
        h = _conv(self.stem, h)
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = block(h, embedding)
            skips.append(h)
            if i < len(self.downsamples):
                h = _conv(self.downsamples[i], h)
        h = self.middle(h, embedding)
        for block in self.up_blocks:
            skip = skips.pop()
            if h.shape[0] != skip.shape[0]:
                h = jnp.repeat(jnp.repeat(h, 2, axis=0), 2, axis=1)
            h = block(jnp.concatenate([h, skip], axis=-1), embedding)
        out = _conv(self.head, jax.nn.silu(_norm(self.head_norm, h)))
        return out.transpose(2, 0, 1).reshape(x.shape).astype(x.dtype)
