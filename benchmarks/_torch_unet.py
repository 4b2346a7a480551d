"""The PyTorch twin of `scorax.UNet`, for the `unet` benchmark.

The same layers in the same order (`GaussianFourierFeatures`, the time MLP,
residual blocks of group norm, SiLU and 3x3 convolutions with the time embedding
added per channel, strided downsampling, nearest-neighbour upsampling with skip
concatenation, the head), built from a `scorax.UNet`'s weights, so the two
compute the same function: `twin(x, t)` matches `jax.vmap(unet)(x, t)` to float32
rounding, which the benchmark checks before it times anything. PyTorch's own
layout (NCHW) and its default CPU kernels (oneDNN) are used, as a user writing
the model in PyTorch would.

Unconditional models only; `torch` is imported by the caller (it is not a
dependency of scorax).
"""

from typing import Any

import numpy as np

import scorax


def build(unet: scorax.UNet) -> Any:
    """A `torch.nn.Module` computing `unet` on a batch `(x, t)`, x of shape
    `(batch, *unet.shape)` and t of shape `(batch,)`."""
    import torch  # pyright: ignore[reportMissingImports]
    from torch import nn  # pyright: ignore[reportMissingImports]

    if unet.label_embedding is not None:
        raise ValueError("the PyTorch twin is unconditional only")

    def tensor(a: Any) -> "torch.Tensor":
        return torch.from_numpy(np.array(a, dtype=np.float32))

    def linear(layer: Any) -> "nn.Linear":
        out = nn.Linear(layer.in_features, layer.out_features)
        out.weight.data = tensor(layer.weight)
        out.bias.data = tensor(layer.bias)
        return out

    def conv(layer: Any) -> "nn.Conv2d":
        weight = np.asarray(layer.weight)
        out = nn.Conv2d(
            weight.shape[1],
            weight.shape[0],
            weight.shape[2],
            stride=layer.stride,
            padding=layer.padding[0][0],
        )
        out.weight.data = tensor(weight)
        out.bias.data = tensor(layer.bias).reshape(-1)
        return out

    def norm(layer: Any) -> "nn.GroupNorm":
        out = nn.GroupNorm(layer.groups, layer.channels, eps=layer.eps)
        out.weight.data = tensor(layer.weight)
        out.bias.data = tensor(layer.bias)
        return out

    class Block(nn.Module):
        def __init__(self, block: Any):
            super().__init__()
            self.norm1, self.norm2 = norm(block.norm1), norm(block.norm2)
            self.conv1, self.conv2 = conv(block.conv1), conv(block.conv2)
            self.time = linear(block.time)
            self.skip = None if block.skip is None else conv(block.skip)

        def forward(self, x: "torch.Tensor", embedding: "torch.Tensor"):
            h = self.conv1(nn.functional.silu(self.norm1(x)))
            h = h + self.time(embedding)[:, :, None, None]
            h = self.conv2(nn.functional.silu(self.norm2(h)))
            return h + (x if self.skip is None else self.skip(x))

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("frequencies", tensor(unet.time_features.frequencies))
            first, second = unet.time_mlp.layers
            self.time_in, self.time_out = linear(first), linear(second)
            self.stem = conv(unet.stem)
            self.down = nn.ModuleList(Block(b) for b in unet.down_blocks)
            self.downsamples = nn.ModuleList(conv(c) for c in unet.downsamples)
            self.middle = Block(unet.middle)
            self.up = nn.ModuleList(Block(b) for b in unet.up_blocks)
            self.head_norm, self.head = norm(unet.head_norm), conv(unet.head)
            self.shape = unet.shape

        def forward(self, x: "torch.Tensor", t: "torch.Tensor") -> "torch.Tensor":
            angles = 2 * torch.pi * self.frequencies * t[:, None]
            features = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
            silu = nn.functional.silu
            embedding = self.time_out(silu(self.time_in(features)))
            h = self.stem(x.reshape(x.shape[0], -1, *x.shape[-2:]))
            skips = []
            for i, block in enumerate(self.down):
                h = block(h, embedding)
                skips.append(h)
                if i < len(self.downsamples):
                    h = self.downsamples[i](h)
            h = self.middle(h, embedding)
            for block in self.up:
                skip = skips.pop()
                if h.shape[-1] != skip.shape[-1]:
                    h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")
                h = block(torch.cat([h, skip], dim=1), embedding)
            out = self.head(silu(self.head_norm(h)))
            return out.reshape(x.shape)

    return Twin()
