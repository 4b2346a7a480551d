import math

import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy as jsp
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import scorax

from .helpers import (
    assert_allclose,
    interior_times,
    near_end_times,
    paths,
    precisions,
    random_array,
    RTOL,
    seeds,
    shapes,
)


def _condition(path, t):
    """1 + |log-SNR|: exponentials such as exp(-B(t)) amplify the rounding of
    their argument by its size, which is at most about the log-SNR's."""
    return 1 + float(abs(path.log_snr(jnp.asarray(t, jnp.float64))))


def _time_derivative(fn, t):
    """d fn / dt by forward-mode autodiff, in float64: the reference value."""
    t = jnp.asarray(t, jnp.float64)
    return jax.jvp(fn, (t,), (jnp.ones_like(t),))[1]


@paths
@precisions
@given(t=interior_times)
def test_closed_form_derivatives_equal_autodiff(path, dtype, t):
    """alpha'(t) and sigma'(t) in closed form equal jax.jvp of alpha and sigma."""
    t = jnp.asarray(t, dtype)
    for value, fn in [
        (path.alpha_derivative(t), path.alpha),
        (path.sigma_derivative(t), path.sigma),
    ]:
        assert value.dtype == dtype
        rtol = RTOL[dtype] * _condition(path, t)
        assert_allclose(value, _time_derivative(fn, t), rtol=rtol, atol=1e-30)


@paths
@precisions
@given(t=interior_times)
def test_forward_sde_reproduces_marginals(path, dtype, t):
    """The SDE dx = f x dt + g dw has the path's marginals:
    alpha' = f alpha and (sigma^2)' = 2 f sigma^2 + g^2 (derivatives by autodiff)."""
    t = jnp.asarray(t, dtype)
    f = path.drift(jnp.ones((), dtype), t)
    g2 = path.diffusion(t) ** 2
    alpha, sigma = path.alpha(t), path.sigma(t)
    alpha_dot = _time_derivative(path.alpha, t)
    variance_dot = _time_derivative(lambda s: path.sigma(s) ** 2, t)
    # g^2 goes through a square root and back (a factor 2 in rounding).
    rtol = 2 * RTOL[dtype] * _condition(path, t)
    assert_allclose(f * alpha, alpha_dot, rtol=rtol, atol=1e-30)
    scale = abs(2 * f * sigma**2) + g2
    assert abs(variance_dot - (2 * f * sigma**2 + g2)) <= rtol * scale


@paths
@precisions
@given(t=interior_times, seed=seeds, shape=shapes)
def test_conditional_score_is_minus_noise_over_sigma(path, dtype, t, seed, shape):
    """grad log p(x_t | x0) = -eps / sigma(t) for x_t = alpha x0 + sigma eps."""
    x0 = random_array(seed, shape, dtype)
    x_t, eps = path.sample(x0, t, key=jr.key(seed + 1))
    assert x_t.dtype == eps.dtype == dtype and x_t.shape == shape
    score = path.conditional_score(x_t, x0, t)
    expected = -eps / path.sigma(t)
    # x_t - alpha x0 = sigma eps cancels when sigma |eps| << |x0|: its rounding,
    # about ulps * (|x_t| + |alpha x0|), is divided by sigma^2. That, not |score|,
    # sets the scale of the error.
    sigma2 = float(path.sigma(t)) ** 2
    cancellation = (np.abs(x_t) + np.abs(float(path.alpha(t)) * x0)).max(initial=1)
    assert_allclose(
        score,
        expected,
        rtol=RTOL[dtype],
        atol=RTOL[dtype] * (np.abs(expected).max(initial=1) + cancellation / sigma2),
    )


@paths
@precisions
@given(t=interior_times, seed=seeds)
def test_conditional_score_equals_gradient_of_log_density(path, dtype, t, seed):
    """conditional_score is the gradient of log N(x_t; alpha x0, sigma^2 I)."""
    x0, x_t = random_array(seed, (2, 3), dtype)

    def log_density(x):
        return jnp.sum(jsp.stats.norm.logpdf(x, path.alpha(t) * x0, path.sigma(t)))

    expected = jax.grad(log_density)(x_t)
    assert_allclose(
        path.conditional_score(x_t, x0, t), expected, rtol=RTOL[dtype], atol=1e-30
    )


@paths
@precisions
@given(t=interior_times)
def test_inverse_log_snr_inverts_log_snr(path, dtype, t):
    """inverse_log_snr(log_snr(t)) = t."""
    t = jnp.asarray(t, dtype)
    recovered = path.inverse_log_snr(path.log_snr(t))
    assert recovered.dtype == dtype
    # Conditioning: |dt/dlambda| times the rounding of lambda, in time units.
    lam_slope = abs(_time_derivative(path.log_snr, t))
    error_scale = jnp.finfo(dtype).eps * (1 + abs(path.log_snr(t))) / lam_slope
    assert abs(recovered - t) <= 100 * error_scale + 10 * jnp.finfo(dtype).eps


@paths
@given(t=near_end_times)
def test_float32_sigma_and_log_snr_are_accurate_near_the_ends(path, t):
    """Near t = 0 and t = 1, float32 sigma, log_snr and the conditional score keep
    float32 accuracy against float64 (no cancellation), and stay finite."""
    t32 = jnp.asarray(t, jnp.float32)
    t64 = t32.astype(jnp.float64)  # the same time, evaluated in float64
    for fn in (path.sigma, path.alpha):
        value32, value64 = fn(t32), fn(t64)
        assert_allclose(value32, value64, rtol=RTOL[jnp.float32], atol=1e-30)
    lam32, lam64 = path.log_snr(t32), path.log_snr(t64)
    assert jnp.isfinite(lam32)
    assert abs(lam32 - lam64) <= RTOL[jnp.float32] * (1 + abs(lam64))
    x = jnp.ones(2, jnp.float32)
    assert jnp.all(jnp.isfinite(path.conditional_score(x, 0.5 * x, t32)))


@paths
@given(t1=interior_times, t2=interior_times)
def test_log_snr_decreases_from_data_to_noise(path, t1, t2):
    """log_snr is strictly decreasing in t, so noise grows monotonically."""
    assume(abs(t1 - t2) > 1e-6)
    t1, t2 = sorted((jnp.float64(t1), jnp.float64(t2)))
    assert path.log_snr(t1) > path.log_snr(t2)


@paths
@precisions
def test_prior_log_prob_is_isotropic_gaussian(path, dtype, key):
    """prior_log_prob(x) = sum_i log N(x_i; 0, sigma(1)^2) for draws of prior_sample."""
    x = path.prior_sample(key=key, shape=(4, 3), dtype=dtype)
    assert x.shape == (4, 3) and x.dtype == dtype
    expected = jnp.sum(jsp.stats.norm.logpdf(x, 0.0, path.sigma(1.0)))
    assert_allclose(path.prior_log_prob(x), expected, rtol=RTOL[dtype])


@paths
@precisions
def test_prior_sample_has_prior_variance(path, dtype, key):
    """The empirical variance of prior draws is sigma(1)^2 within 5 standard errors."""
    n = 20_000
    x = path.prior_sample(key=key, shape=(n,), dtype=dtype)
    assert x.dtype == dtype
    sigma2 = path.sigma(1.0) ** 2
    # Var of x^2 for x ~ N(0, s^2) is 2 s^4.
    standard_error = math.sqrt(2 / n) * sigma2
    assert abs(jnp.mean(x.astype(jnp.float64) ** 2) - sigma2) <= 5 * standard_error


# Documented endpoint behaviour. Paths whose sigma(0) = 0 have no conditional score
# at t = 0; paths with alpha(1) = 0 have a divergent SDE at t = 1.
SIGMA_ZERO_AT_DATA = (
    scorax.VPPath,
    scorax.SubVPPath,
    scorax.CosinePath,
    scorax.LinearPath,
)
ALPHA_ZERO_AT_NOISE = (scorax.CosinePath, scorax.LinearPath)


@paths
@precisions
def test_endpoint_values_are_finite_or_documented(path, dtype):
    """At t = 0 and t = 1 exactly, alpha, sigma, the SDE and the conditional score
    are finite wherever the mathematics is, and raise where it is not."""
    x = jnp.ones(3, dtype)
    for t in (jnp.asarray(0.0, dtype), jnp.asarray(1.0, dtype)):
        for value in (path.alpha(t), path.sigma(t), path.alpha_derivative(t)):
            assert jnp.isfinite(value) and value.dtype == dtype
    zero, one = jnp.asarray(0.0, dtype), jnp.asarray(1.0, dtype)
    assert jnp.all(jnp.isfinite(path.drift(x, zero)))
    assert jnp.isfinite(path.diffusion(zero))
    if isinstance(path, SIGMA_ZERO_AT_DATA):
        assert path.sigma(zero) == 0
        assert path.log_snr(zero) == jnp.inf
        with pytest.raises(ValueError, match=r"`t`.*sigma"):
            path.conditional_score(x, x, zero)
    else:
        assert jnp.all(jnp.isfinite(path.conditional_score(x, x, zero)))
    if isinstance(path, ALPHA_ZERO_AT_NOISE):
        assert path.alpha(one) == 0
        assert path.log_snr(one) == -jnp.inf
        with pytest.raises(ValueError, match=r"`t`.*drift"):
            path.drift(x, one)
        with pytest.raises(ValueError, match=r"`t`.*diffusion"):
            path.diffusion(one)
    else:
        assert jnp.all(jnp.isfinite(path.drift(x, one)))
        assert jnp.isfinite(path.diffusion(one))


def test_diffusion_at_data_end_takes_its_limit():
    """g(0) is the limit of g(t), even where sigma'(0) is infinite (VP family)."""
    assert_allclose(scorax.VPPath().diffusion(0.0), math.sqrt(0.1), rtol=1e-6)
    assert scorax.VPPath().sigma_derivative(0.0) == jnp.inf
    assert scorax.SubVPPath().diffusion(0.0) == 0
    assert scorax.LinearPath().diffusion(0.0) == 0
    s = 0.008
    dphi = 0.5 * math.pi / (1 + s)
    expected = math.sqrt(2 * dphi * math.tan(dphi * s))
    assert_allclose(scorax.CosinePath(s=s).diffusion(0.0), expected, rtol=1e-6)
    assert_allclose(
        scorax.CosinePath(s=0.0).sigma_derivative(0.0), math.pi / 2, rtol=1e-6
    )


@paths
def test_variance_preserving_paths_preserve_variance(path):
    """alpha^2 + sigma^2 = 1 on VP and cosine paths, and not on the others."""
    ts = jnp.linspace(0.0, 1.0, 101)
    total = jax.vmap(path.alpha)(ts) ** 2 + jax.vmap(path.sigma)(ts) ** 2
    if isinstance(path, (scorax.VPPath, scorax.CosinePath)):
        assert_allclose(total, 1.0, rtol=RTOL[jnp.float64])
    else:
        assert jnp.max(jnp.abs(total - 1)) > 1e-3


def test_paths_work_under_jit_and_vmap(key):
    """Paths are pytrees: they pass through jit, and methods vmap over time."""
    path = scorax.VPPath()
    ts = jnp.linspace(0.1, 0.9, 5)
    x0 = jnp.ones((5, 2))
    keys = jr.split(key, 5)
    batched = jax.jit(
        jax.vmap(lambda p, x, t, k: p.sample(x, t, key=k), in_axes=(None, 0, 0, 0))
    )
    x_t, eps = batched(path, x0, ts, keys)
    for i in range(5):
        x_i, eps_i = path.sample(x0[i], ts[i], key=keys[i])
        assert_allclose(x_t[i], x_i, rtol=1e-12)
        assert_allclose(eps[i], eps_i, rtol=1e-12)


def test_ddpm_schedule_matches_ho_et_al():
    """N = 1000 with the defaults gives Ho et al.'s betas: linear from 1e-4 to 0.02."""
    schedule = scorax.DDPMSchedule()
    betas = schedule.betas
    assert betas.shape == (1000,)
    assert_allclose(betas[0], 1e-4, rtol=1e-12)
    assert_allclose(betas[-1], 0.02, rtol=1e-12)
    assert_allclose(jnp.diff(betas), (0.02 - 1e-4) / 999, rtol=1e-8)
    assert_allclose(schedule.alphas_cumprod, jnp.cumprod(1 - betas), rtol=1e-10)
    assert_allclose(schedule.times[jnp.array([0, -1])], [1e-3, 1.0], rtol=1e-12)
    assert schedule.path == scorax.VPPath(beta_min=0.1, beta_max=20.0)


def test_ddpm_alphas_cumprod_converge_to_vp_path():
    """alphas_cumprod_i -> alpha(t_i)^2 of the VP path, at first order in 1/N."""
    errors = []
    for num_steps in (100, 1_000, 10_000):
        schedule = scorax.DDPMSchedule(num_steps=num_steps)
        continuous = jax.vmap(schedule.path.alpha)(schedule.times) ** 2
        errors.append(float(jnp.max(jnp.abs(schedule.alphas_cumprod - continuous))))
    orders = -np.log10(np.array(errors[1:]) / np.array(errors[:-1]))
    # First-order convergence: each tenfold refinement gains one digit.
    assert np.all(orders > 0.9), (errors, orders)
    assert errors[-1] < 1e-4


def test_geometric_sigmas_are_ve_levels_largest_first():
    """geometric_sigmas gives sigma_max (sigma_min / sigma_max)^((i-1)/(L-1))."""
    sigmas = scorax.geometric_sigmas(sigma_min=0.01, sigma_max=1.0, num_levels=10)
    expected = 1.0 * (0.01 / 1.0) ** (jnp.arange(10) / 9)
    assert_allclose(sigmas, expected, rtol=1e-10)
    ratios = sigmas[1:] / sigmas[:-1]
    assert_allclose(ratios, ratios[0], rtol=1e-10)
    path = scorax.VEPath(sigma_min=0.01, sigma_max=1.0)
    assert_allclose(
        sigmas, jax.vmap(path.sigma)(jnp.linspace(1.0, 0.0, 10)), rtol=1e-12
    )


@paths
@precisions
@given(log_snr=st.floats(-40.0, 40.0))
def test_inverse_log_snr_lies_in_unit_interval_with_finite_gradient(
    path, dtype, log_snr
):
    """inverse_log_snr maps every log-SNR into [0, 1] (saturating outside the
    path's range) and has a finite derivative (no NaN from an unused branch)."""
    lam = jnp.asarray(log_snr, dtype)
    t = path.inverse_log_snr(lam)
    assert t.dtype == dtype and 0 <= t <= 1
    assert jnp.isfinite(jax.grad(path.inverse_log_snr)(lam))
    for end in (0.0, 1.0):
        end = jnp.asarray(end, dtype)
        assert 0 <= path.inverse_log_snr(path.log_snr(end)) <= 1
