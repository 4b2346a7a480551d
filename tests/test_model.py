import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
import pytest

import scorax

from .helpers import assert_allclose


def _float32(model):
    """The model with float32 weights, as without x64 (the tests enable x64)."""
    return jax.tree.map(
        lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, model
    )


@functools.cache
def _unet(shape, channels):
    """One float32 UNet per configuration for the module: building one compiles
    a random initialiser per weight shape (seconds on a CPU)."""
    return _float32(scorax.UNet(shape, channels=channels, key=jr.key(0)))


@pytest.mark.parametrize("shape", [(2,), (8, 8)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_score_mlp_maps_x_and_t_to_the_shape_of_x(shape, dtype, key):
    model = scorax.ScoreMLP(shape, width=16, depth=2, key=key)
    x = jr.normal(key, shape, dtype)
    out = model(x, 0.3)
    assert out.shape == shape and out.dtype == dtype
    assert not jnp.allclose(out, model(x, 0.7)), "the output must depend on t"
    batched = jax.jit(jax.vmap(model))(jnp.stack([x, x]), jnp.array([0.3, 0.7]))
    assert_allclose(batched[0], out, rtol=1e-5)


def test_fourier_time_features_are_frozen(key):
    """sin/cos features of t with fixed frequencies: no gradient reaches them."""
    features = scorax.GaussianFourierFeatures(8, scale=2.0, key=key)
    out = features(0.25)
    angles = 2 * jnp.pi * features.frequencies * 0.25
    assert_allclose(out, jnp.concatenate([jnp.sin(angles), jnp.cos(angles)]), rtol=1e-6)
    grads = jax.grad(lambda f: jnp.sum(f(0.25)))(features)
    assert jnp.all(grads.frequencies == 0)


def test_energy_mlp_trains_with_ism_only_when_smooth(key):
    """With SiLU the Hessian trace of the energy, which ISM needs, is non-zero; with
    ReLU it vanishes almost everywhere (the failure the seed notes describe)."""
    x = jr.normal(key, (2,))
    for activation, zero_trace in [(jax.nn.silu, False), (jax.nn.relu, True)]:
        energy = scorax.EnergyMLP(
            (2,), width=16, depth=2, activation=activation, key=key
        )
        assert energy(x).shape == ()
        trace, _ = scorax.exact_trace(scorax.score_from_energy(energy), x)
        assert (trace == 0) == zero_trace
        loss, grads = eqx.filter_value_and_grad(
            lambda e: scorax.implicit_score_matching(scorax.score_from_energy(e), x)
        )(energy)
        assert jnp.isfinite(loss)
        assert all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads))


def test_score_mlp_works_with_every_parameterisation(key):
    """A ScoreMLP trains under diffusion_loss in each parameterisation."""
    model = scorax.ScoreMLP((2,), width=16, depth=2, key=key)
    x0 = jnp.array([0.5, -1.0])
    for parameterisation in (
        scorax.ScorePrediction(),
        scorax.NoisePrediction(),
        scorax.DataPrediction(),
        scorax.VelocityPrediction(),
    ):
        loss, grads = eqx.filter_value_and_grad(
            lambda m, p=parameterisation: scorax.diffusion_loss(
                m, scorax.VPPath(), x0, key=key, parameterisation=p
            )
        )(model)
        assert jnp.isfinite(loss)
        assert all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda k: scorax.GaussianFourierFeatures(7, key=k),
            "`num_features` must be even",
        ),
        (
            lambda k: scorax.GaussianFourierFeatures(8, scale=0.0, key=k),
            "`scale` must be > 0",
        ),
        (
            lambda k: scorax.ScoreMLP((2,), width=0, key=k),
            "`width` must be an integer >= 1",
        ),
        (
            lambda k: scorax.ScoreMLP((0,), key=k),
            "`shape` must be a tuple of positive integers",
        ),
        (
            lambda k: scorax.EnergyMLP((2,), depth=0, key=k),
            "`depth` must be an integer >= 1",
        ),
    ],
)
def test_bad_model_arguments_raise(make, match, key):
    with pytest.raises(ValueError, match=match):
        make(key)


@pytest.mark.parametrize(
    "shape, channels", [((8, 8), (16, 32)), ((1, 28, 28), (8, 16, 16))]
)
def test_unet_maps_images_and_t_to_the_shape_of_x(shape, channels, key):
    unet = _unet(shape, channels)
    x = jr.normal(key, shape, jnp.float32)
    call = eqx.filter_jit(lambda m, y, t: m(y, t))
    out = call(unet, x, jnp.asarray(0.3))
    assert out.shape == shape and out.dtype == jnp.float32
    assert jnp.all(jnp.isfinite(out))
    assert not jnp.allclose(out, call(unet, x, jnp.asarray(0.8))), "t matters"


@pytest.mark.parametrize("channels", [(2,), (3, 5)])
def test_unet_builds_with_its_narrowest_documented_widths(channels):
    """2 and 3 channels (at least 2 is documented) make one group: building and
    calling such a UNet works (abstractly evaluated: nothing to compile)."""
    unet = eqx.filter_eval_shape(scorax.UNet, (8, 8), channels=channels, key=jr.key(0))
    assert unet.head_norm.groups == 1
    out = eqx.filter_eval_shape(lambda m, x: m(x, 0.5), unet, jnp.zeros((8, 8)))
    assert out.shape == (8, 8)


@pytest.mark.slow
def test_unet_learns_on_digits(key):
    """150 fit steps of diffusion_loss on the 8x8 digits halve the loss."""
    images = scorax.datasets.digits()
    unet = _unet((8, 8), (16, 32))
    result = scorax.fit(
        unet,
        lambda m, x, k: scorax.diffusion_loss(m, scorax.VPPath(), x, key=k),
        images,
        optimizer=optax.adam(2e-3),
        num_steps=150,
        batch_size=16,
        key=key,
        progress=False,
    )
    # The noise-prediction loss starts near d / 2 = 32 for an untrained network.
    assert jnp.mean(result.losses[-30:]) < 0.5 * jnp.mean(result.losses[:10])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda k: scorax.UNet((7, 8), channels=(8, 16), key=k), "divisible by 2"),
        (lambda k: scorax.UNet((8,), key=k), "`shape` must be"),
        (
            lambda k: scorax.UNet((8, 8), channels=(), key=k),
            "`channels` must be integers of at least 2",
        ),
        (
            lambda k: scorax.UNet((8, 8), channels=(1,), key=k),
            "`channels` must be integers of at least 2",
        ),
    ],
)
def test_bad_unet_arguments_raise(make, match, key):
    with pytest.raises(ValueError, match=match):
        make(key)
