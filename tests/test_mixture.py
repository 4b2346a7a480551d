import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy as jsp
import numpy as np
import pytest
from hypothesis import given, strategies as st

import scorax

from .helpers import (
    assert_allclose,
    interior_times,
    paths,
    paths_in_precisions,
    precisions,
    random_mixture,
    relative_tolerance,
    seeds,
)


sizes = st.sampled_from([(1, 1), (1, 3), (3, 2), (4, 5)])  # (K, d)


# Jitted with the mixture as an argument, so each shape compiles once.
@jax.jit
def _scores(mixture, x):
    return jax.vmap(mixture.score)(x)


@jax.jit
def _autodiff_scores(mixture, x):
    return jax.vmap(jax.grad(mixture.log_prob))(x)


@jax.jit
def _log_probs(mixture, x):
    return jax.vmap(mixture.log_prob)(x)


@jax.jit
def _reference_log_probs(mixture, x):
    """log sum_k w_k N(x; mu_k, Sigma_k) with jax.scipy's Gaussian density."""

    def one(point):
        densities = jax.vmap(
            lambda m, c: jsp.stats.multivariate_normal.pdf(point, m, c)
        )(mixture.means, mixture.covs)
        return jnp.log(densities @ mixture.weights)

    return jax.vmap(one)(x)


@precisions
@given(seed=seeds, size=sizes)
def test_score_is_gradient_of_log_prob(dtype, seed, size):
    """mixture.score(x) = grad log p(x), the closed form against autodiff."""
    mixture = random_mixture(seed, *size, dtype)
    x = mixture.sample(key=jr.key(seed + 1), sample_shape=(8,))
    x = x + jr.normal(jr.key(seed + 2), x.shape, dtype)  # also off the bulk
    score = _scores(mixture, x)
    assert score.dtype == dtype
    expected = _autodiff_scores(mixture, x)
    assert_allclose(
        score,
        expected,
        rtol=0,
        atol=100 * relative_tolerance(dtype) * (np.abs(expected).max() + 1),
    )


@given(seed=seeds, size=sizes)
def test_log_prob_is_weighted_sum_of_gaussian_densities(seed, size):
    """log p(x) = log sum_k w_k N(x; mu_k, Sigma_k), against jax.scipy's densities."""
    mixture = random_mixture(seed, *size, jnp.float64)
    x = mixture.sample(key=jr.key(seed + 1), sample_shape=(6,))
    assert_allclose(
        _log_probs(mixture, x), _reference_log_probs(mixture, x), rtol=1e-10
    )


def test_log_prob_and_score_are_finite_far_in_the_tails():
    """logsumexp keeps log p and its score finite where every density underflows."""
    mixture = random_mixture(0, 3, 2, jnp.float32)
    x = jnp.array([300.0, -200.0], jnp.float32)
    assert jnp.isfinite(mixture.log_prob(x))
    assert jnp.all(jnp.isfinite(mixture.score(x)))


def _characteristic_function(mixture, frequencies):
    """E[exp(i w.x)] = sum_k w_k exp(i w.mu_k - w^T Sigma_k w / 2)."""
    phase = frequencies @ mixture.means.T
    decay = jnp.exp(
        -0.5 * jnp.einsum("fi,kij,fj->fk", frequencies, mixture.covs, frequencies)
    )
    return (decay * jnp.cos(phase)) @ mixture.weights, (
        decay * jnp.sin(phase)
    ) @ mixture.weights


@paths
@pytest.mark.parametrize("t", [0.0, 0.3, 0.8])
def test_diffused_mixture_matches_empirical_diffusion(path, t):
    """x_t = path.sample(x0, t) with x0 from the mixture has the law marginal(path, t).

    Statistical: the empirical characteristic function at fixed frequencies agrees
    with the analytic one within 5 standard errors of the sample mean. At t = 0 on
    paths with sigma(0) = 0 this also checks mixture.sample itself.
    """
    n = 20_000
    mixture = random_mixture(7, 3, 2, jnp.float64)
    x0 = mixture.sample(key=jr.key(1), sample_shape=(n,))
    x_t, _ = jax.vmap(lambda x, k: path.sample(x, t, key=k))(x0, jr.split(jr.key(2), n))
    marginal = mixture.marginal(path, t)
    # Frequencies on the scale of the marginal's spread, so the test has power.
    spread = jnp.sqrt(
        jnp.trace(marginal.covs, axis1=-2, axis2=-1).max()
        + jnp.sum(marginal.means**2, -1).max()
    )
    frequencies = jr.normal(jr.key(3), (8, 2), jnp.float64) / spread
    projections = x_t @ frequencies.T
    expected_real, expected_imag = _characteristic_function(marginal, frequencies)
    for values, expected in [
        (jnp.cos(projections), expected_real),
        (jnp.sin(projections), expected_imag),
    ]:
        standard_error = jnp.std(values, axis=0) / jnp.sqrt(n)
        assert jnp.all(
            jnp.abs(jnp.mean(values, axis=0) - expected) <= 5 * standard_error
        )


@paths_in_precisions
@given(t=interior_times, seed=seeds, size=sizes)
def test_tweedie_data_prediction_of_exact_score_is_posterior_mean(
    path, dtype, t, seed, size
):
    """Tweedie: DataPrediction of the diffused mixture's exact score equals
    E[x0 | x_t], computed independently from the Gaussian posterior per component."""
    mixture = random_mixture(seed, *size, dtype)
    t = jnp.asarray(t, dtype)
    marginal = mixture.marginal(path, t)
    x_t = marginal.sample(key=jr.key(seed + 1), sample_shape=(4,))
    score = jax.vmap(marginal.score)(x_t)
    denoised = jax.vmap(
        lambda s, x: scorax.convert(
            path,
            s,
            x,
            t,
            source=scorax.ScorePrediction(),
            target=scorax.DataPrediction(),
        )
    )(score, x_t)
    expected = jax.vmap(lambda x: mixture.posterior_mean(path, x, t))(x_t)
    assert denoised.dtype == expected.dtype == dtype
    # Tweedie divides by alpha(t): rounding grows by sigma^2 |score| / alpha.
    scale = (
        float(jnp.abs(x_t).max())
        + float(path.sigma(t)) ** 2 * float(jnp.abs(score).max())
        + 1
    ) / float(path.alpha(t))
    assert_allclose(
        denoised, expected, rtol=0, atol=1000 * relative_tolerance(dtype) * scale
    )


@paths
def test_marginal_at_time_zero_is_the_mixture_perturbed_by_sigma_zero(path):
    """marginal(path, 0) has the mixture's means and covariances + sigma(0)^2 I."""
    mixture = random_mixture(3, 2, 3, jnp.float64)
    marginal = mixture.marginal(path, 0.0)
    assert_allclose(marginal.means, mixture.means, rtol=1e-12)
    assert_allclose(
        marginal.covs,
        mixture.covs + path.sigma(0.0) ** 2 * jnp.eye(3)[None],
        rtol=1e-12,
    )


@pytest.mark.parametrize("path", [scorax.CosinePath(), scorax.LinearPath()], ids=repr)
def test_marginal_at_noise_end_is_prior_when_alpha_vanishes(path, key):
    """With alpha(1) = 0 every data distribution diffuses to the prior exactly."""
    mixture = random_mixture(5, 3, 2, jnp.float64)
    marginal = mixture.marginal(path, 1.0)
    x = jr.normal(key, (10, 2), jnp.float64)
    assert_allclose(
        jax.vmap(marginal.log_prob)(x), jax.vmap(path.prior_log_prob)(x), rtol=1e-12
    )


def test_mixture_is_fast_path_under_jit_and_vmap(key):
    """The whole oracle (marginal, score, posterior mean) traces under jit + vmap and
    agrees with eager evaluation."""
    mixture = random_mixture(0, 4, 3, jnp.float64)
    path = scorax.VPPath()
    x = jr.normal(key, (16, 3), jnp.float64)
    ts = jnp.linspace(0.05, 0.95, 16)

    @jax.jit
    def scores(mixture, x, ts):
        return jax.vmap(lambda xi, ti: mixture.marginal(path, ti).score(xi))(x, ts)

    eager = jnp.stack([mixture.marginal(path, ts[i]).score(x[i]) for i in range(16)])
    assert_allclose(scores(mixture, x, ts), eager, rtol=1e-10)


def test_sample_shape_and_dtype(key):
    mixture = random_mixture(0, 2, 3, jnp.float32)
    assert mixture.sample(key=key).shape == (3,)
    draws = mixture.sample(key=key, sample_shape=(4, 5))
    assert draws.shape == (4, 5, 3) and draws.dtype == jnp.float32


def test_responsibilities_sum_to_one_and_match_bayes_rule(key):
    mixture = random_mixture(1, 3, 2, jnp.float64)
    x = jr.normal(key, (2,), jnp.float64)
    r = mixture.responsibilities(x)
    densities = jax.vmap(lambda m, c: jsp.stats.multivariate_normal.pdf(x, m, c))(
        mixture.means, mixture.covs
    )
    assert_allclose(
        r, mixture.weights * densities / (mixture.weights @ densities), rtol=1e-10
    )
