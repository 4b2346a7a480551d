import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given

import scorax
import scorax.testing

from .helpers import (
    assert_allclose,
    at_path_edges,
    interior_times,
    paths_in_precisions,
    random_array,
    relative_tolerance,
    RUNTIME_ERRORS,
    seeds,
)


@paths_in_precisions
def test_built_in_conversions_pass_the_roundtrip_check(path, dtype):
    """scorax.testing.check_parameterisation_roundtrip: every pair of the four
    parameterisations converts both ways exactly, and converting what one predicts
    for (x0, eps) gives what the other predicts: the conditional score
    -eps / sigma, the noise, x0 and the path velocity alpha' x0 + sigma' eps."""
    scorax.testing.check_parameterisation_roundtrip(path, dtype=dtype)


@at_path_edges(t=0.5, dtype=False)
@given(path=scorax.testing.gaussian_paths(), t=scorax.testing.times(near_ends=False))
def test_random_paths_pass_the_roundtrip_check(path, t):
    """The round trips for paths with random valid hyperparameters; every kind at
    the edge of its ranges is pinned (helpers.EDGE_CASES)."""
    scorax.testing.check_parameterisation_roundtrip(path, times=[t])


def _scale(*arrays):
    return max(float(np.abs(a).max(initial=0.0)) for a in arrays) + 1.0


@paths_in_precisions
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
        1000
        * relative_tolerance(dtype)
        * _scale(path.drift(x_t, t), path.diffusion(t) ** 2 * score)
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
