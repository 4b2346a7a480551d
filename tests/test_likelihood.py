"""The probability-flow log-likelihood against the mixture's exact densities."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import example, given, strategies as st

import scorax
import scorax.testing

from .helpers import (
    assert_allclose,
    Gaussian,
    MIXTURE,
    random_mixture,
    seeds,
    solve_error_bound,
    T_MIN,
    VP,
    without_runtime_type_checking,
)


TOLERANCE = 1e-10
TIGHT = dfx.PIDController(rtol=TOLERANCE, atol=TOLERANCE)
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


def ode_error_bound(result, prior_gradient=0.0):
    """helpers.solve_error_bound for an exact log_likelihood solve at TIGHT: its
    state is the latent and the integrated divergence. An error in the latent
    reaches a density of it through that density's gradient `prior_gradient`
    (its norm at the latent)."""
    integral = abs(float(result.log_likelihood - result.prior_log_prob))
    size = max(integral, float(jnp.max(jnp.abs(result.latent))))
    bound = solve_error_bound(
        result.num_evaluations, TOLERANCE, size, result.latent.size + 1
    )
    return bound * (1 + float(prior_gradient))


@pytest.mark.parametrize("name", list(CASES))
@given(seed=seeds)
def test_exact_log_likelihood_is_the_diffused_density(name, seed):
    """With the exact score and the exact divergence the ODE gives
    log p_{t_min}(x) = log p_1(latent) + int div v dt: replacing the library's
    Gaussian prior by the true p_1 recovers the analytic density to the solver's
    error (helpers.solve_error_bound: 1e-7 nats on VP, up to 6e-6 on EDM, whose
    latents are large; the errors are below 3e-10)."""
    path, parameterisation = CASES[name]
    mixture = random_mixture(seed, 2, 3, jnp.float64)
    x = mixture.sample(key=jr.key(seed + 1))
    result = exact_likelihood(
        scorax.testing.ExactModel(mixture, path, parameterisation), x
    )
    analytic = mixture.marginal(path, T_MIN).log_prob(x)
    p_1 = mixture.marginal(path, 1.0)
    corrected = (
        result.log_likelihood - result.prior_log_prob + p_1.log_prob(result.latent)
    )
    bound = ode_error_bound(result, jnp.linalg.norm(p_1.score(result.latent)))
    assert abs(float(corrected - analytic)) <= bound, (corrected - analytic, bound)
    assert float(result.standard_error) == 0


@pytest.mark.parametrize("name", ["vp", "subvp"])
def test_log_likelihood_of_the_seed_mixture_is_within_a_millinat(name):
    """As the library reports it, with its N(0, sigma(1)^2 I) prior: within 1e-3
    nats of the analytic density of the seeds' mixture on paths whose prior is
    close to p_1 (VP and sub-VP: alpha(1) = 0.0066). On EDMPath the prior
    N(0, 80^2 I) itself is 1.3e-3 nats from p_1 at these points, which the test
    above accounts for.

    The millinat is the accuracy claimed, not a fit: what fills it is the prior's
    mismatch log N(z; 0, sigma(1)^2 I) - log p_1(z) at the latents z, 3.6e-4 nats
    at these points (p_1's means are alpha(1) mu, 0.019 from 0, and its
    covariance differs from sigma(1)^2 I by alpha(1)^2 (Sigma - I)), plus the
    solver's error, below 1e-6 (solve_error_bound)."""
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
    and sampling from the latent returns x, each to the solver's error
    (helpers.solve_error_bound; the errors are about 3e-11, the bounds 1e-8)."""
    path = scorax.VPPath()
    mixture = random_mixture(0, 1, 3, jnp.float64)
    model = scorax.testing.ExactModel(mixture, path, scorax.ScorePrediction())
    x = mixture.sample(key=jr.key(1))
    result = exact_likelihood(model, x)
    gaussian = Gaussian.of(mixture)
    expected = gaussian.flow_map(path, x, T_MIN, 1.0)
    forward = ode_error_bound(result)
    assert_allclose(result.latent, expected, rtol=0, atol=forward)
    back = scorax.probability_flow_sample(
        model,
        path,
        result.latent,
        stepsize_controller=TIGHT,
        t_min=T_MIN,
        denoise=False,
        parameterisation=scorax.ScorePrediction(),
    )
    # The latent's error, carried back by the linear map C_min C_1^{-1} (its gain
    # is the largest ratio of the scales), plus the backward solve's own.
    gain = float(
        jnp.max(jnp.sqrt(gaussian.variances(path, T_MIN) / gaussian.variances(path, 1)))
    )
    backward = solve_error_bound(
        back.num_evaluations, TOLERANCE, jnp.max(jnp.abs(x)), x.size
    )
    assert_allclose(back.sample, x, rtol=0, atol=gain * forward + backward)


# Hutchinson's log-likelihood: m probes per estimate, N estimates with independent
# keys, all in one compiled program (vmapped).
NUM_PROBES = 4
# N: large enough that a 25% bias in the reported variance (ddof = 0 with m = 4
# probes reports (m - 1) / m = 3/4 of it) lies 10 standard errors from zero, so
# 5 beyond the 5-standard-error threshold. The paired difference d below has a
# standard deviation of about 1.6 Var[e] (measured; sqrt(2 + 2 / (m - 1)) = 1.63
# if the estimates were Gaussian and independent of their spread), so 10 standard
# errors of its mean are 16 Var[e] / sqrt(N) <= 0.25 Var[e] for N >= 4096; 6000
# leaves room for sd(d) up to 1.9 Var[e]. The test checks this on the draws
# themselves. (With 300 trials the band was +-0.45 Var[e]: a ddof = 0 standard
# error passed.)
NUM_TRIALS = 6000
# The trials run vmapped in chunks of this many, in one compiled program
# (lax.map): a single vmap over 8000 keys has hung on two CPU cores (XLA's CPU
# runtime, jaxlib 0.10.2: the process waits at 0% CPU), while 2000 at a time
# never has.
CHUNK = 2000
HUTCHINSON_TOLERANCE = 1e-6  # the solver's atol = rtol


def test_hutchinson_log_likelihood_is_unbiased_with_a_calibrated_standard_error():
    """With probes held fixed along the solve, each probe's integral is unbiased
    and the reported standard error is calibrated. Over N independent keys, with
    estimates e_i of log p_{t_min}(x) (the true p_1 put back for the prior, as
    above, so that the exact value is the analytic density) and reported standard
    errors s_i:

    1. unbiased: |mean(e) - exact| <= 5 sd(e) / sqrt(N), plus the solver's error;
    2. calibrated: E[s^2] = Var[e] = E[(e - exact)^2], so d_i = s_i^2 -
       (e_i - exact)^2 has mean zero: |mean(d)| <= 5 sd(d) / sqrt(N). Pairing
       the terms trial by trial cancels their common fluctuation. (The solver's
       error adds its square, below 1e-6 of the tolerance, to E[(e - exact)^2].)

    and the test checks its own power: 10 standard errors of mean(d) are at most
    a quarter of the variance, so a standard error with ddof = 0, or any other
    25% bias in the reported variance, fails by at least 5 standard errors."""
    path = scorax.VPPath()
    mixture = random_mixture(2, 2, 4, jnp.float64)
    model = scorax.testing.ExactModel(mixture, path, scorax.ScorePrediction())
    x = mixture.sample(key=jr.key(3))
    exact = float(mixture.marginal(path, T_MIN).log_prob(x))
    controller = dfx.PIDController(rtol=HUTCHINSON_TOLERANCE, atol=HUTCHINSON_TOLERANCE)

    def estimate(key):
        result = scorax.log_likelihood(
            model,
            path,
            x,
            key=key,
            num_probes=NUM_PROBES,
            probe="gaussian",
            stepsize_controller=controller,
            t_min=T_MIN,
            parameterisation=scorax.ScorePrediction(),
        )
        integral = result.log_likelihood - result.prior_log_prob
        value = integral + mixture.marginal(path, 1.0).log_prob(result.latent)
        return value, result.standard_error, integral, result.num_evaluations

    keys = jr.split(jr.key(4), NUM_TRIALS)
    estimates, reported, integrals, evaluations = (
        np.asarray(a)
        for a in jax.jit(lambda k: jax.lax.map(estimate, k, batch_size=CHUNK))(keys)
    )
    # The state holds x and the m probes' integrals.
    solver = solve_error_bound(
        evaluations.max(),
        HUTCHINSON_TOLERANCE,
        np.abs(integrals).max() + np.abs(x).max(),
        x.size + NUM_PROBES,
    )
    error = estimates - exact
    # The estimator is random, far beyond the solver's error: the checks have teeth.
    assert np.std(error) > 100 * solver
    n = NUM_TRIALS
    assert abs(np.mean(error)) <= 5 * np.std(error, ddof=1) / n**0.5 + solver, (
        np.mean(error),
        np.std(error, ddof=1) / n**0.5,
    )
    variance = np.mean(error**2)
    difference = reported**2 - error**2
    band = np.std(difference, ddof=1) / n**0.5
    ratio = np.mean(reported**2) / variance  # reported / observed variance
    assert abs(np.mean(difference)) <= 5 * band, (ratio, band / variance)
    assert 10 * band <= 0.25 * variance, ("underpowered", band / variance)


def test_gradients_flow_through_the_likelihood():
    """d/dmu of the ODE log-likelihood (with the true prior put back, so that it is
    exactly log p_{t_min}) equals the gradient of the analytic density, to the
    solver's error. Reverse-mode through the solve is the exact derivative of
    the discrete solution, which is the same Runge-Kutta steps applied to the
    tangent equation: its local errors are controlled as the solution's are,
    relative to the tangent's size, so solve_error_bound applies with the
    gradient's size (the error is 2e-11, the bound 1e-8)."""
    path = scorax.VPPath()
    base = random_mixture(5, 2, 2, jnp.float64)
    x = base.sample(key=jr.key(6))

    def via_ode(means):
        mixture = eqx.tree_at(lambda m: m.means, base, means)
        result = exact_likelihood(
            scorax.testing.ExactModel(mixture, path, scorax.ScorePrediction()), x
        )
        p_1 = mixture.marginal(path, 1.0)
        value = result.log_likelihood - result.prior_log_prob
        return value + p_1.log_prob(result.latent), (result, p_1.score(result.latent))

    def analytic(means):
        mixture = eqx.tree_at(lambda m: m.means, base, means)
        return mixture.marginal(path, T_MIN).log_prob(x)

    gradient, (result, prior_score) = jax.grad(via_ode, has_aux=True)(base.means)
    size = float(jnp.max(jnp.abs(gradient)))
    bound = ode_error_bound(result, jnp.linalg.norm(prior_score)) * (1 + size)
    # Far above the bound, so that the comparison resolves the gradient.
    assert size > 1e4 * bound, (size, bound)
    assert_allclose(gradient, jax.grad(analytic)(base.means), rtol=0, atol=bound)


def test_a_solve_ending_before_one_uses_the_prior_at_t_max():
    """Integrated to t_max = 1/2, the prior is N(0, sigma(t_max)^2 I) at the
    latent (written out here from its definition, not through the library), and
    with the true p_{t_max} put back in its place the result is the analytic
    density, to the solver's error. On VEPath sigma(1/2) is 2.2, far from
    sigma(1) = 50, so a prior taken at another time is off by nats."""
    path = scorax.VEPath()
    t_max = 0.5
    mixture = random_mixture(7, 2, 2, jnp.float64)
    model = scorax.testing.ExactModel(mixture, path, scorax.ScorePrediction())
    x = mixture.sample(key=jr.key(8))
    result = eqx.filter_jit(scorax.log_likelihood)(
        model,
        path,
        x,
        stepsize_controller=TIGHT,
        t_min=T_MIN,
        t_max=t_max,
        parameterisation=model.parameterisation,
    )
    scale = float(path.sigma(jnp.asarray(t_max)))
    latent = np.asarray(result.latent)
    gaussian = -0.5 * np.sum((latent / scale) ** 2) - latent.size * np.log(
        scale * np.sqrt(2 * np.pi)
    )
    assert_allclose(result.prior_log_prob, gaussian, rtol=1e-12)
    p_max = mixture.marginal(path, t_max)
    corrected = (
        result.log_likelihood - result.prior_log_prob + p_max.log_prob(result.latent)
    )
    bound = ode_error_bound(result, jnp.linalg.norm(p_max.score(result.latent)))
    analytic = mixture.marginal(path, T_MIN).log_prob(x)
    assert abs(float(corrected - analytic)) <= bound, (corrected - analytic, bound)


@example(dim=1, width=255.0)  # pixel values, pinned
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
