"""The channel-last convolution primitive behind `scorax.UNet`: it computes what
`lax.conv_general_dilated` computes under every transformation, and every
convolution it puts in a program, including those inside loops and those its
derivatives add, is in the layout XLA's CPU backend runs at full speed."""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from hypothesis import example, given, strategies as st
from jax import lax

import scorax
from scorax import conv_nhwc

from .helpers import assert_allclose


LAYOUT = ("NHWC", "HWIO", "NHWC")


def reference(x, kernel, stride, padding):
    return lax.conv_general_dilated(
        x, kernel, stride, padding, dimension_numbers=LAYOUT
    )


def ours(x, kernel, stride, padding):
    return conv_nhwc(x, kernel, stride=stride, padding=padding)


def per_sample(conv, stride, padding):
    """A per-sample layer, as the UNet uses it: (h, w, i) -> (h2, w2, o)."""
    return lambda x, kernel: conv(x[None], kernel, stride, padding)[0]


def transformations(conv, x, kernel, stride, padding):
    """Every way scorax differentiates or batches a model, applied to one layer."""
    layer = per_sample(conv, stride, padding)
    batched = jax.vmap(layer, (0, None))

    def loss(x, kernel):
        return jnp.sum(jnp.sin(batched(x, kernel)))

    def sample_loss(x, kernel):
        return jnp.sum(jnp.sin(layer(x, kernel)))

    tangents = (jnp.cos(x), jnp.sin(kernel))
    return {
        "forward": batched(x, kernel),
        "grad (vmap inside)": jax.grad(loss, (0, 1))(x, kernel),
        "per-sample grads (vmap outside)": jax.vmap(
            jax.grad(sample_loss, (0, 1)), (0, None)
        )(x, kernel),
        "jvp": jax.jvp(batched, (x, kernel), tangents)[1],
        "jvp under vmap": jax.vmap(
            lambda x: jax.jvp(lambda x: layer(x, kernel), (x,), (jnp.cos(x),))[1]
        )(x),
        "grad of a jvp (divergence-like)": jax.grad(
            lambda k: jnp.sum(jax.jvp(lambda x: batched(x, k), (x,), (x,))[1] ** 2)
        )(kernel),
        "hessian-vector product": jax.jvp(
            lambda k: jax.grad(loss, 1)(x, k), (kernel,), (tangents[1],)
        )[1],
        "kernel per sample": jax.vmap(layer)(x, jnp.stack([kernel] * x.shape[0])),
        "nested vmap": jax.vmap(jax.vmap(layer, (0, None)), (0, None))(
            x[:, None], kernel
        ),
        "linear transpose": jax.linear_transpose(lambda x: batched(x, kernel), x)(
            batched(x, kernel)
        )[0],
        "grad in lax.scan": lax.scan(
            lambda k, _: (k - 0.1 * jax.grad(loss, 1)(x, k), None),
            kernel,
            None,
            length=2,
        )[0],
    }


@jax.jit(static_argnums=(2, 3))
def both_transformations(x, kernel, stride, padding):
    return (
        transformations(reference, x, kernel, stride, padding),
        transformations(ours, x, kernel, stride, padding),
    )


@given(
    size=st.integers(4, 9),
    window=st.integers(1, 3),
    stride=st.integers(1, 2),
    low=st.integers(0, 2),
    high=st.integers(0, 2),
)
@example(size=8, window=3, stride=1, low=1, high=1)  # the UNet's blocks
@example(size=8, window=3, stride=2, low=1, high=1)  # its downsampling
@example(size=7, window=3, stride=2, low=1, high=1)  # a stride that leaves a row
@example(size=6, window=1, stride=1, low=0, high=0)  # its skip projections
def test_conv_nhwc_equals_lax_under_every_transformation(
    size, window, stride, low, high
):
    padding = ((low, high), (high, low))
    x = jr.normal(jr.key(0), (2, size, size + 1, 3), jnp.float64)
    kernel = jr.normal(jr.key(1), (window, window, 3, 4), jnp.float64)
    strides = (stride, stride)
    # One program per drawn shape computes both (lax's convolution is the same
    # operation jitted or not; compiling each eager operation apart would cost
    # more than the whole test).
    want, got = both_transformations(x, kernel, strides, padding)
    for name in want:
        # float64: the two sum the same products in different orders.
        jax.tree.map(
            lambda g, w, name=name: np.testing.assert_allclose(
                g, w, rtol=1e-12, atol=1e-12, err_msg=name
            ),
            got[name],
            want[name],
        )


def convolutions(text: str) -> list[str]:
    return re.findall(r"convolution\([^)]*\).*?dim_labels=(\S+?),", text)


def test_a_unet_training_step_in_a_loop_runs_only_canonical_convolutions():
    """XLA's CPU backend only rewrites convolutions into its fast NHWC/HWIO layout
    in a program's entry computation. A UNet training step under `lax.scan`
    (fit's loop) must therefore contain no other layout, forward or backward."""
    unet = scorax.UNet((8, 8), channels=(8, 16), key=jr.key(0))
    params, static = eqx.partition(unet, eqx.is_inexact_array)
    optimizer = optax.adam(1e-3)
    data = jr.normal(jr.key(1), (4, 8, 8), jnp.float32)

    def loss(params, key):
        model = eqx.combine(params, static)
        keys = jr.split(key, data.shape[0])
        losses = jax.vmap(
            lambda x, k: scorax.diffusion_loss(model, scorax.VPPath(), x, key=k)
        )(data, keys)
        return jnp.mean(losses)

    def step(carry, key):
        params, state = carry
        grads = jax.grad(loss)(params, key)
        updates, state = optimizer.update(grads, state, params)
        return (eqx.apply_updates(params, updates), state), None

    def train(params):
        carry = (params, optimizer.init(params))
        return lax.scan(step, carry, jr.split(jr.key(2), 2))[0][0]

    text = jax.jit(train).lower(params).compile().as_text()
    assert "while" in text, "the steps should run in a loop"
    found = convolutions(text)
    # The forward pass, the input gradient and the kernel gradient of each layer.
    assert len(found) >= 3 * 5, found
    assert set(found) == {"b01f_01io->b01f"}, found


def test_channel_first_convolutions_in_a_loop_are_not_canonical():
    """The check above can fail: the same loop with Equinox's channel-first
    `Conv2d` leaves other layouts inside the loop body."""
    conv = eqx.nn.Conv2d(3, 3, 3, padding=1, key=jr.key(0))
    x = jr.normal(jr.key(1), (2, 3, 8, 8))

    def train(conv):
        def step(conv, _):
            grads = jax.grad(lambda c: jnp.sum(jax.vmap(c)(x) ** 2))(conv)
            return jax.tree.map(lambda a, g: a - 0.1 * g, conv, grads), None

        return lax.scan(step, conv, None, length=2)[0]

    params, static = eqx.partition(conv, eqx.is_array)
    text = (
        jax.jit(lambda p: eqx.partition(train(eqx.combine(p, static)), eqx.is_array)[0])
        .lower(params)
        .compile()
        .as_text()
    )
    assert set(convolutions(text)) - {"b01f_01io->b01f"}


def test_unet_equals_its_channel_first_layers():
    """The UNet's channel-last computation is its layers' own (Equinox's `Conv2d`
    and `GroupNorm` on channel-first arrays), for every layer, with every
    parameter (norm scales and shifts included) drawn at random."""
    from scorax._model._unet import _conv, _norm

    # Only the UNet's structure is built (initialising it eagerly would compile
    # each layer's initialiser), and every parameter is drawn on the host.
    shapes = eqx.filter_eval_shape(
        scorax.UNet, (2, 8, 8), channels=(8, 12), key=jr.key(0)
    )
    rng = np.random.default_rng(1)
    unet = jax.tree.map(
        lambda leaf: (
            jnp.asarray(rng.standard_normal(leaf.shape), jnp.float64)
            if isinstance(leaf, jax.ShapeDtypeStruct)
            and jnp.issubdtype(leaf.dtype, jnp.inexact)
            else leaf
        ),
        shapes,
    )
    assert not any(
        isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(unet)
    ), "every array of the UNet is a parameter, drawn above"
    is_layer = lambda x: isinstance(x, (eqx.nn.Conv2d, eqx.nn.GroupNorm))  # noqa: E731
    layers = [x for x in jax.tree.leaves(unet, is_leaf=is_layer) if is_layer(x)]
    assert sum(isinstance(x, eqx.nn.Conv2d) for x in layers) >= 10

    @jax.jit
    def compare(layers):
        """Each layer's channel-last output and its channel-first original's, in
        one program (dispatched one eager operation at a time, the comparison
        would spend its time compiling them)."""
        pairs = []
        for layer in layers:
            channels = layer.in_channels if is_conv(layer) else layer.channels
            h = jr.normal(jr.key(2), (8, 8, channels), jnp.float64)
            apply = _conv if is_conv(layer) else _norm
            pairs.append(
                (apply(layer, h), layer(h.transpose(2, 0, 1)).transpose(1, 2, 0))
            )
        return pairs

    for got, want in compare(layers):
        assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def is_conv(layer) -> bool:
    return isinstance(layer, eqx.nn.Conv2d)
