import math

import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy as jsp
import numpy as np
import pytest
from hypothesis import assume, given

import scorax
import scorax.testing

from .helpers import (
    assert_allclose,
    at_path_edges,
    paths,
    paths_in_precisions,
    relative_tolerance,
)


@paths_in_precisions
def test_built_in_paths_pass_check_path(path, dtype):
    """Every identity of scorax.testing.check_path: closed-form derivatives equal
    autodiff, the forward SDE reproduces the marginals ((sigma^2)' = 2 f sigma^2 +
    g^2), the conditional score is the gradient of the conditional log density and
    -eps / sigma, inverse_log_snr inverts log_snr, log_snr decreases, documented
    endpoints, and float32 accuracy near the ends."""
    scorax.testing.check_path(path, dtype=dtype)


@at_path_edges()
@given(
    path=scorax.testing.gaussian_paths(),
    t=scorax.testing.times(),
    dtype=scorax.testing.dtypes(),
)
def test_random_paths_pass_check_path_at_drawn_times(path, t, dtype):
    """The same identities for paths with random valid hyperparameters, at times
    drawn up to 1e-8 from either end; every kind at the edge of its ranges, close
    to an end, in both precisions, is pinned (helpers.EDGE_CASES)."""
    scorax.testing.check_path(path, times=[t], dtype=dtype)


@paths
@given(t1=scorax.testing.times(near_ends=False), t2=scorax.testing.times())
def test_log_snr_decreases_from_data_to_noise(path, t1, t2):
    """log_snr is strictly decreasing in t, so noise grows monotonically."""
    assume(abs(t1 - t2) > 1e-6)
    t1, t2 = sorted((jnp.float64(t1), jnp.float64(t2)))
    assert path.log_snr(t1) > path.log_snr(t2)


@paths_in_precisions
def test_prior_log_prob_is_isotropic_gaussian(path, dtype, key):
    """prior_log_prob(x) = sum_i log N(x_i; 0, sigma(1)^2) for draws of prior_sample."""
    x = path.prior_sample(key=key, shape=(4, 3), dtype=dtype)
    assert x.shape == (4, 3) and x.dtype == dtype
    expected = jnp.sum(jsp.stats.norm.logpdf(x, 0.0, path.sigma(1.0)))
    assert_allclose(path.prior_log_prob(x), expected, rtol=relative_tolerance(dtype))


@paths_in_precisions
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
def test_which_paths_vanish_at_the_ends(path):
    """sigma(0) = 0 exactly on the VP family, cosine and linear paths (no
    conditional score at t = 0); alpha(1) = 0 exactly on the cosine and linear
    paths (the SDE diverges at t = 1). check_path checks that each case behaves as
    documented."""
    assert (path.sigma(0.0) == 0) == isinstance(path, SIGMA_ZERO_AT_DATA)
    assert (path.alpha(1.0) == 0) == isinstance(path, ALPHA_ZERO_AT_NOISE)


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
        assert_allclose(total, 1.0, rtol=relative_tolerance(jnp.float64))
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
def test_noise_to_signal_is_sigma_over_alpha_and_inverse_noise_to_signal_inverts_it(
    path,
):
    """sigma / alpha = exp(-log_snr / 2), and the inverse maps it back to t, to the
    rounding of log_snr in time units (as check_path bounds inverse_log_snr); 0 at
    the data where sigma(0) = 0 and infinite at the noise where alpha(1) = 0."""
    ts = jnp.linspace(0.02, 0.98, 9, dtype=jnp.float64)
    ratio = jax.vmap(path.noise_to_signal)(ts)
    log_snr = jax.vmap(path.log_snr)(ts)
    rtol = relative_tolerance(jnp.float64)
    assert_allclose(
        ratio, jax.vmap(path.sigma)(ts) / jax.vmap(path.alpha)(ts), rtol=rtol
    )
    condition = 1 + jnp.abs(log_snr)  # exp amplifies the rounding of its argument
    assert jnp.all(jnp.abs(jnp.exp(-log_snr / 2) - ratio) <= rtol * condition * ratio)
    slope = jnp.abs(jax.vmap(jax.grad(path.log_snr))(ts))
    error = jnp.abs(jax.vmap(path.inverse_noise_to_signal)(ratio) - ts)
    assert jnp.all(error <= rtol * ((1 + jnp.abs(log_snr)) / slope + 1))
    assert (path.noise_to_signal(0.0) == 0) == (path.sigma(0.0) == 0)
    assert (path.noise_to_signal(1.0) == jnp.inf) == (path.alpha(1.0) == 0)


@pytest.mark.parametrize(
    "dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"]
)
@pytest.mark.parametrize(
    "path", [scorax.VPPath(), scorax.SubVPPath()], ids=["VPPath", "SubVPPath"]
)
def test_inverse_log_snr_keeps_relative_accuracy_near_the_data(path, dtype):
    """Near t = 0 the time is recovered from the log-SNR to a few ulps of t itself,
    not of 1: |t' - t| / t <= 8 eps (1 + |lambda|) / (t |lambda'|) at t from 1e-7
    to 1e-2. The bound is the rounding of lambda (half an ulp of |lambda|,
    relative) carried to t by the inverse's slope, 1 / |lambda'|, plus the few
    rounded operations of the inverse itself; 8 is a margin over the 0.6 measured
    (float32). The integrated beta B(t) ~ beta_min t is inverted by the stable root
    of the quadratic, 2 B / (beta_min + sqrt(beta_min^2 + 2 (beta_max - beta_min)
    B)): the textbook root (sqrt(...) - beta_min) / (beta_max - beta_min) cancels
    there, up to 350 times the bound in float32."""
    ts = jnp.logspace(-7, -2, 11, dtype=dtype)
    log_snr = jax.vmap(path.log_snr)(ts)
    back = jax.vmap(path.inverse_log_snr)(log_snr)
    slope = jnp.abs(jax.vmap(jax.grad(path.log_snr))(ts))
    eps = float(jnp.finfo(dtype).eps)
    relative = np.abs(np.asarray(back, np.float64) - np.asarray(ts, np.float64)) / ts
    condition = np.asarray((1 + jnp.abs(log_snr)) / (ts * slope), np.float64)
    assert np.all(relative <= 8 * eps * condition), relative / (eps * condition)
