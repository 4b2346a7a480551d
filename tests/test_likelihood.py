"""The probability-flow log-likelihood against the mixture's exact densities."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given, strategies as st

import scorax
import scorax.testing

from .helpers import (
    assert_allclose,
    Gaussian,
    MIXTURE,
    random_mixture,
    seeds,
    T_MIN,
    VP,
    without_runtime_type_checking,
)


TIGHT = dfx.PIDController(rtol=1e-10, atol=1e-10)
# Each path with a different parameterisation, so conversions are covered too
# (one compilation each).
CASES = {
    "vp": (scorax.VPPath(), scorax.ScorePrediction()),
    "subvp": (scorax.SubVPPath(), scorax.NoisePrediction()),
    "ve": (scorax.VEPath(sigma_min=0.01, sigma_max=20.0), scorax.DataPrediction()),
    "edm": (scorax.EDMPath(), scorax.VelocityPrediction()),
}


@eqx.filter_jit
def exact_likelihood(model, x):
    return scorax.log_likelihood(
        model,
        model.path,
        x,
        stepsize_controller=TIGHT,
        t_min=T_MIN,
        parameterisation=model.parameterisation,
    )


@pytest.mark.parametrize("name", list(CASES))
@given(seed=seeds)
def test_exact_log_likelihood_is_the_diffused_density(name, seed):
    """With the exact score and the exact divergence the ODE gives
    log p_{t_min}(x) = log p_1(latent) + int div v dt: replacing the library's
    Gaussian prior by the true p_1 recovers the analytic density to solver
    tolerance (1e-7 nats)."""
    path, parameterisation = CASES[name]
    mixture = random_mixture(seed, 2, 3, jnp.float64)
    x = mixture.sample(key=jr.key(seed + 1))
    result = exact_likelihood(
        scorax.testing.ExactModel(mixture, path, parameterisation), x
    )
    analytic = mixture.marginal(path, T_MIN).log_prob(x)
    corrected = (
        result.log_likelihood
        - result.prior_log_prob
        + mixture.marginal(path, 1.0).log_prob(result.latent)
    )
    assert abs(float(corrected - analytic)) <= 1e-7
    assert float(result.standard_error) == 0


@pytest.mark.parametrize("name", ["vp", "subvp"])
def test_log_likelihood_of_the_seed_mixture_is_within_a_millinat(name):
    """As the library reports it, with its N(0, sigma(1)^2 I) prior: within 1e-3
    nats of the analytic density of the seeds' mixture on paths whose prior is
    close to p_1 (VP and sub-VP: alpha(1) = 0.0066). On EDMPath the prior
    N(0, 80^2 I) itself is 1.3e-3 nats from p_1 at these points, which the test
    above accounts for."""
    path, parameterisation = CASES[name]
    mixture = MIXTURE
    x = mixture.sample(key=jr.key(0), sample_shape=(8,))
    model = scorax.testing.ExactModel(mixture, path, parameterisation)
    results = jax.vmap(lambda x: exact_likelihood(model, x))(x)
    analytic = jax.vmap(mixture.marginal(path, T_MIN).log_prob)(x)
    assert float(jnp.max(jnp.abs(results.log_likelihood - analytic))) <= 1e-3


def test_the_latent_is_the_inverse_flow_map():
    """For one Gaussian the forward ODE is linear: the latent is
    alpha_1 mu + C_1 C_min^{-1} (x - alpha_min mu), the inverse of the sampler's map,
    and sampling from the latent returns x."""
    path = scorax.VPPath()
    mixture = random_mixture(0, 1, 3, jnp.float64)
    model = scorax.testing.ExactModel(mixture, path, scorax.ScorePrediction())
    x = mixture.sample(key=jr.key(1))
    result = exact_likelihood(model, x)
    expected = Gaussian.of(mixture).flow_map(path, x, T_MIN, 1.0)
    assert_allclose(result.latent, expected, rtol=1e-7)
    back = scorax.probability_flow_sample(
        model,
        path,
        result.latent,
        stepsize_controller=TIGHT,
        t_min=T_MIN,
        denoise=False,
        parameterisation=scorax.ScorePrediction(),
    )
    assert_allclose(back.sample, x, rtol=1e-7)


@pytest.mark.slow
def test_hutchinson_log_likelihood_is_unbiased_with_an_honest_standard_error():
    """With probes held fixed along the solve, each probe's integral is unbiased:
    over 300 keys the mean estimate is within 5 standard errors of the exact value,
    and the reported standard errors match the spread of the estimates (the mean
    reported variance is within 5 standard errors of the observed one)."""
    path = scorax.VPPath()
    mixture = random_mixture(2, 2, 4, jnp.float64)
    model = scorax.testing.ExactModel(mixture, path, scorax.ScorePrediction())
    x = mixture.sample(key=jr.key(3))
    controller = dfx.PIDController(rtol=1e-6, atol=1e-6)
    exact = scorax.log_likelihood(
        model,
        path,
        x,
        stepsize_controller=controller,
        parameterisation=scorax.ScorePrediction(),
    ).log_likelihood

    def estimate(key):
        result = scorax.log_likelihood(
            model,
            path,
            x,
            key=key,
            num_probes=4,
            probe="gaussian",
            stepsize_controller=controller,
            parameterisation=scorax.ScorePrediction(),
        )
        return result.log_likelihood, result.standard_error

    # The estimator is random, so the check has teeth (one compilation for both).
    once = jax.jit(estimate)
    assert once(jr.key(0))[0] != once(jr.key(1))[0]
    scorax.testing.check_unbiased(estimate, exact, key=jr.key(4), num_trials=300)


def test_gradients_flow_through_the_likelihood():
    """d/dmu of the ODE log-likelihood (with the true prior put back, so that it is
    exactly log p_{t_min}) equals the gradient of the analytic density."""
    path = scorax.VPPath()
    base = random_mixture(5, 2, 2, jnp.float64)
    x = base.sample(key=jr.key(6))

    def via_ode(means):
        mixture = eqx.tree_at(lambda m: m.means, base, means)
        result = exact_likelihood(
            scorax.testing.ExactModel(mixture, path, scorax.ScorePrediction()), x
        )
        return (
            result.log_likelihood
            - result.prior_log_prob
            + mixture.marginal(path, 1.0).log_prob(result.latent)
        )

    def analytic(means):
        mixture = eqx.tree_at(lambda m: m.means, base, means)
        return mixture.marginal(path, T_MIN).log_prob(x)

    gradient = jax.grad(via_ode)(base.means)
    assert float(jnp.max(jnp.abs(gradient))) > 1e-3
    assert_allclose(gradient, jax.grad(analytic)(base.means), rtol=1e-5, atol=1e-7)


@given(dim=st.integers(1, 8), width=st.sampled_from([1.0, 2.0, 255.0]))
def test_bits_per_dim_of_a_uniform_density_is_log2_of_the_bins(dim, width):
    """A uniform density on an interval of width w has log p = -D log w; after
    dequantising 256 levels it is the uniform distribution on 256 values, 8 bits
    per dimension whatever w."""
    x = jnp.zeros(dim)
    value = scorax.bits_per_dim(-dim * jnp.log(width), x, data_width=width)
    assert_allclose(value, 8.0, rtol=1e-12)
    continuous = scorax.bits_per_dim(jnp.asarray(-3.0), x, num_bins=None)
    assert_allclose(continuous, 3.0 / (dim * np.log(2)), rtol=1e-12)


BAD = [
    (dict(t_min=0.0), "t_min"),
    (dict(t_max=2.0), "t_max"),
    (dict(num_steps=0), "num_steps"),
    (dict(num_probes=0, key=jr.key(0)), "num_probes"),
    (dict(solver=dfx.Kvaerno5()), "solver"),
]


@pytest.mark.parametrize("kwargs, name", BAD)
def test_bad_likelihood_arguments_name_the_argument(kwargs, name):
    model = scorax.testing.ExactModel(MIXTURE, VP)
    with without_runtime_type_checking(), pytest.raises(ValueError, match=f"`{name}`"):
        scorax.log_likelihood(model, VP, jnp.zeros(2), **kwargs)
    with pytest.raises(ValueError, match="`model`"):
        scorax.log_likelihood(lambda x, t: x[:1], scorax.VPPath(), jnp.zeros(2))
    with pytest.raises(ValueError, match="`num_bins`"):
        scorax.bits_per_dim(jnp.asarray(0.0), jnp.zeros(2), num_bins=0)
