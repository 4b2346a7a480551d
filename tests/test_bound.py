"""The continuous-time bound on the negative log-likelihood (nll_bound), checked
against the exact oracle: tight with the exact score and the exact prior, above
the exact value by KL(p_1 || prior) on average with the library's prior."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scorax
import scorax.testing

from .helpers import MIXTURE, random_mixture, RUNTIME_ERRORS, T_MIN


# Samples per bound: 5 standard errors of the tight bound are then below 1 nat,
# so that a wrong drift, prior or integrand term (several nats on these paths)
# fails; the per-sample spread is about 10 nats.
NUM_SAMPLES = 8192
# Paths with alpha(1) > 0, and each with a parameterisation, so that conversions
# are covered too.
# (path, parameterisation, t_min, t_max). One case starts late (t_min = 0.3),
# where the forward kernel from x at t_min differs much from the one from t = 0.
CASES = {
    "vp": (scorax.VPPath(), scorax.NoisePrediction(), T_MIN, 1.0),
    "vp_from_0.3": (scorax.VPPath(), scorax.NoisePrediction(), 0.3, 1.0),
    "subvp": (scorax.SubVPPath(), scorax.ScorePrediction(), T_MIN, 1.0),
    "ve": (
        scorax.VEPath(sigma_min=0.01, sigma_max=10.0),
        scorax.DataPrediction(),
        T_MIN,
        1.0,
    ),
    "edm": (scorax.EDMPath(), scorax.EDMPrediction(1.0), T_MIN, 1.0),
    # Cosine and linear end at t_max = 0.9: their g^2 grows without bound near
    # t = 1, and with it the variance of the bound's integrand.
    "cosine": (scorax.CosinePath(), scorax.ScorePrediction(), T_MIN, 0.9),
    "linear": (scorax.LinearPath(), scorax.VelocityPrediction(), T_MIN, 0.9),
}


@eqx.filter_jit
def _bound(mixture, path, parameterisation, t_min, t_max, x, key, exact_prior):
    model = scorax.testing.ExactModel(mixture, path, parameterisation)
    prior = mixture.marginal(path, t_max).log_prob if exact_prior else None
    return scorax.nll_bound(
        model,
        path,
        x,
        key=key,
        num_samples=NUM_SAMPLES,
        parameterisation=parameterisation,
        t_min=t_min,
        t_max=t_max,
        prior_log_prob=prior,
    )


@pytest.mark.parametrize("name", list(CASES))
@settings(max_examples=3)
@given(seed=st.integers(0, 2**16))
def test_bound_is_tight_with_the_exact_score_and_prior(name, seed):
    """With the exact score and the exact p_{t_max} as the prior, the reverse SDE
    reproduces the forward process, so the bound equals -log p_{t_min}(x) for
    every x: the estimate is within 5 of its standard errors of the analytic
    value (GaussianMixture.marginal), on random mixtures, on each path, and from
    a late t_min too."""
    path, parameterisation, t_min, t_max = CASES[name]
    mixture = random_mixture(seed, 2, 2, jnp.float64)
    x = mixture.marginal(path, t_min).sample(key=jr.key(seed + 1))
    key = jr.key(seed + 2)
    result = _bound(mixture, path, parameterisation, t_min, t_max, x, key, True)
    exact = -float(mixture.marginal(path, t_min).log_prob(x))
    error = float(result.standard_error)
    assert 0 < 5 * error < 1, error  # resolves the value to a nat
    assert abs(float(result.nll) - exact) <= 5 * error, (result.nll, exact, error)
    assert int(result.num_evaluations) == 2 * NUM_SAMPLES


def test_bound_with_the_gaussian_prior_exceeds_the_nll_by_the_prior_kl():
    """With the library's prior N(0, sigma(1)^2 I), on average over x ~ p_{t_min}
    the bound exceeds -log p_{t_min}(x) by exactly KL(p_1 || prior) (the x_1 of
    x ~ p_{t_min} is distributed as p_1): over 256 draws of x from the seeds'
    mixture on VE (sigma_max = 2, so that p_1 differs from the prior), the mean
    excess equals the KL (Monte Carlo over 200,000 draws of p_1) within 5
    standard errors of both; the KL is at least 10 of them, so a bound that
    missed the prior's mismatch would fail."""
    path = scorax.VEPath(sigma_min=0.01, sigma_max=2.0)
    parameterisation = scorax.ScorePrediction()
    num = 256
    xs = MIXTURE.marginal(path, T_MIN).sample(key=jr.key(0), sample_shape=(num,))
    keys = jr.split(jr.key(1), num)
    bounds = jax.lax.map(
        lambda xk: _bound(MIXTURE, path, parameterisation, T_MIN, 1.0, *xk, False),
        (xs, keys),
        batch_size=8,
    )
    exact = jax.vmap(MIXTURE.marginal(path, T_MIN).log_prob)(xs)
    excess = np.asarray(bounds.nll + exact)
    p_1 = MIXTURE.marginal(path, 1.0)
    z = p_1.sample(key=jr.key(2), sample_shape=(200_000,))
    sigma = path.sigma(1.0)
    prior = -0.5 * jnp.sum(z**2, axis=-1) / sigma**2 - jnp.log(2 * jnp.pi * sigma**2)
    # In chunks (lax.map): a single vmap over 200,000 points risks XLA CPU's hang
    # (tests/test_likelihood.py).
    gaps = np.asarray(jax.lax.map(p_1.log_prob, z, batch_size=2000) - prior)
    kl = gaps.mean()
    # The excess's spread over x (which includes each bound's own Monte Carlo
    # error) and the KL estimate's.
    error = (excess.var(ddof=1) / num + gaps.var(ddof=1) / gaps.size) ** 0.5
    assert kl > 10 * error, (kl, error)
    assert abs(excess.mean() - kl) <= 5 * error, (excess.mean(), kl, error)


def test_bound_is_differentiable_and_its_gradient_is_finite():
    """The bound is a training loss: its gradient with respect to a network's
    parameters is finite (jax.grad through the estimate)."""
    path = scorax.VPPath()
    model = scorax.ScoreMLP((2,), width=16, depth=1, key=jr.key(0))
    x = jnp.array([0.5, -1.0])

    def loss(model):
        return scorax.nll_bound(model, path, x, key=jr.key(1), num_samples=8).nll

    grads = eqx.filter_grad(loss)(model)
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(bool(jnp.any(g != 0)) for g in leaves)


BAD = {
    "num_samples": (dict(num_samples=0), "`num_samples`"),
    "t_min": (dict(t_min=-0.1), "`t_min`"),
    "t_max": (dict(t_max=1.5), "`t_max`"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_bound_arguments_name_the_argument(name):
    kwargs, message = BAD[name]
    with pytest.raises(RUNTIME_ERRORS, match=message):
        scorax.nll_bound(
            lambda x, t: x, scorax.VPPath(), jnp.zeros(2), key=jr.key(0), **kwargs
        )


def test_bound_refuses_a_t_max_where_alpha_vanishes():
    """On the linear path alpha(1) = 0: the drift term -d log alpha(t_max)
    diverges, and t_max = 1 is refused, naming it."""
    with pytest.raises(RUNTIME_ERRORS, match="`t_max`: nll_bound needs alpha"):
        scorax.nll_bound(
            lambda x, t: x, scorax.LinearPath(), jnp.zeros(2), key=jr.key(0)
        )
