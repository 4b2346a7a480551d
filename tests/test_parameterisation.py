import itertools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given

import scorax

from .helpers import (
    all_parameterisations,
    assert_allclose,
    interior_times,
    paths,
    precisions,
    random_array,
    RTOL,
    RUNTIME_ERRORS,
    seeds,
    shapes,
)


pairs = list(itertools.product(all_parameterisations, repeat=2))


def _noisy(path, seed, shape, dtype, t):
    x0 = random_array(seed, shape, dtype)
    x_t, eps = path.sample(x0, jnp.asarray(t, dtype), key=jr.key(seed + 1))
    return x0, x_t, eps


def _scale(*arrays):
    return max(float(np.abs(a).max(initial=0.0)) for a in arrays) + 1.0


@paths
@precisions
@pytest.mark.parametrize(
    "source,target",
    pairs,
    ids=[f"{type(a).__name__}-{type(b).__name__}" for a, b in pairs],
)
@given(t=interior_times, seed=seeds, shape=shapes)
def test_conversions_round_trip(path, dtype, source, target, t, seed, shape):
    """convert(convert(m, source -> target), target -> source) = m."""
    _, x_t, value = _noisy(path, seed, shape, dtype, t)
    t = jnp.asarray(t, dtype)
    there = scorax.convert(path, value, x_t, t, source=source, target=target)
    back = scorax.convert(path, there, x_t, t, source=target, target=source)
    assert there.dtype == back.dtype == dtype and back.shape == shape
    # Each conversion is one affine map; its rounding is relative to the largest
    # term involved (x_t scaled by the coefficient, or the value).
    scale = _scale(x_t, value, there)
    assert_allclose(back, value, rtol=0, atol=100 * RTOL[dtype] * scale)


@paths
@precisions
@given(t=interior_times, seed=seeds, shape=shapes)
def test_each_parameterisation_of_the_truth_is_its_regression_target(
    path, dtype, t, seed, shape
):
    """Converting the true noise gives the conditional score -eps / sigma, the true
    x0, and the path velocity alpha' x0 + sigma' eps = d x_t / dt."""
    x0, x_t, eps = _noisy(path, seed, shape, dtype, t)
    t = jnp.asarray(t, dtype)
    noise = scorax.NoisePrediction()

    def from_noise(target):
        return scorax.convert(path, eps, x_t, t, source=noise, target=target)

    score = from_noise(scorax.ScorePrediction())
    atol = 100 * RTOL[dtype] * _scale(score)
    assert_allclose(score, path.conditional_score(x_t, x0, t), rtol=0, atol=atol)
    atol = 100 * RTOL[dtype] * _scale(x0, x_t) / float(path.alpha(t))
    assert_allclose(from_noise(scorax.DataPrediction()), x0, rtol=0, atol=atol)

    # The velocity is the time derivative of t -> alpha(t) x0 + sigma(t) eps,
    # taken by autodiff in float64.
    def along_path(s):
        return path.alpha(s) * x0.astype(jnp.float64) + path.sigma(s) * eps.astype(
            jnp.float64
        )

    t64 = jnp.asarray(t, jnp.float64)
    _, velocity = jax.jvp(along_path, (t64,), (jnp.ones_like(t64),))
    converted = from_noise(scorax.VelocityPrediction())
    atol = 100 * RTOL[dtype] * _scale(velocity, x_t * path.drift(jnp.ones(()), t))
    assert_allclose(converted, velocity, rtol=0, atol=atol)


@paths
@precisions
@given(t=interior_times, seed=seeds)
def test_velocity_of_score_is_probability_flow_drift(path, dtype, t, seed):
    """The velocity of a score s is the probability-flow ODE drift f x - g^2 s / 2
    (Song et al. 2021), with f and g from the path's own forward SDE."""
    x_t, score = random_array(seed, (2, 4), dtype)
    t = jnp.asarray(t, dtype)
    velocity = scorax.convert(
        path,
        score,
        x_t,
        t,
        source=scorax.ScorePrediction(),
        target=scorax.VelocityPrediction(),
    )
    expected = path.drift(x_t, t) - 0.5 * path.diffusion(t) ** 2 * score
    atol = (
        1000 * RTOL[dtype] * _scale(path.drift(x_t, t), path.diffusion(t) ** 2 * score)
    )
    assert_allclose(velocity, expected, rtol=0, atol=atol)


def test_trigonometric_velocity_is_scaled_v_prediction(key):
    """On CosinePath(s=0), u = (pi / 2) (alpha eps - sigma x0), Salimans & Ho's v."""
    path = scorax.CosinePath(s=0.0)
    x0 = jr.normal(key, (5,))
    t = 0.3
    x_t, eps = path.sample(x0, t, key=jr.key(1))
    u = scorax.convert(
        path,
        eps,
        x_t,
        t,
        source=scorax.NoisePrediction(),
        target=scorax.VelocityPrediction(),
    )
    v = path.alpha(t) * eps - path.sigma(t) * x0
    assert_allclose(u, 0.5 * jnp.pi * v, rtol=1e-10)


def test_convert_is_jittable_and_vmappable(key):
    path = scorax.VPPath()
    x_t, value = jr.normal(key, (2, 8, 3))
    ts = jnp.linspace(0.1, 0.9, 8)

    @jax.jit
    def batched(values, xs, ts):
        return jax.vmap(
            lambda v, x, t: scorax.convert(
                path,
                v,
                x,
                t,
                source=scorax.ScorePrediction(),
                target=scorax.DataPrediction(),
            )
        )(values, xs, ts)

    expected = (x_t + jax.vmap(path.sigma)(ts)[:, None] ** 2 * value) / jax.vmap(
        path.alpha
    )(ts)[:, None]
    assert_allclose(batched(value, x_t, ts), expected, rtol=1e-10)


def test_singular_conversion_raises():
    """Where a parameterisation divides by sigma(t) = 0 or alpha(t) = 0, convert
    raises instead of returning inf or NaN, eagerly and under jit."""
    x = jnp.ones(3)
    data, score = scorax.DataPrediction(), scorax.ScorePrediction()
    with pytest.raises(ValueError, match=r"`t`.*singular"):
        scorax.convert(scorax.VPPath(), x, x, 0.0, source=data, target=score)
    with pytest.raises(ValueError, match=r"`t`.*singular"):
        scorax.convert(scorax.LinearPath(), x, x, 1.0, source=score, target=data)
    jitted = jax.jit(
        lambda t: scorax.convert(scorax.VPPath(), x, x, t, source=data, target=score)
    )
    assert jnp.all(jnp.isfinite(jitted(0.5)))
    with pytest.raises(RUNTIME_ERRORS, match="singular"):
        jitted(0.0).block_until_ready()
