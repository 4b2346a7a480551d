"""The order of every stochastic fixed-grid sampler, and the exact law of the
Langevin samplers, on Gaussian data, with no Monte Carlo error.

On Gaussian data N(m, diag v) the exact score is affine in x, so every sampler
here (DDPM, DDIM, the DPM-Solver++ SDE, EDM's churn, the predictor of PC,
Langevin) maps its start x and its Gaussian draws z affinely to its sample,
coordinate by coordinate: x_out = a x + b + sum_k c_k z_k. The law of x_out is
then Gaussian, with mean a E[x] + b (the sampler run from the mean with every draw
zero) and variance a^2 Var[x] + sum_k c_k^2 (its gradients, one reverse pass).
Driven by given draws (the samplers' `noise` argument), the weak error of each
sampler against the exact law it should reach is computed exactly: its order is
measured as the ODE solvers' orders are in test_dpm.py, without sampling error
(the weak error at the finest grid is exact, not a few standard errors of an
estimate). The ODE samplers' orders, on Gaussians and mixtures, are in
test_dpm.py."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest
from hypothesis import example, given, settings, strategies as st

import scorax

from .helpers import assert_allclose, assert_rate, Gaussian, T_MIN


SCORE = scorax.ScorePrediction()
# Three independent coordinates, unequal variances and a nonzero mean, so that
# the mean, the variance and their interplay with the path all enter the error.
MEAN = jnp.array([1.0, -0.5, 2.0])
VARIANCE = jnp.array([0.3, 1.0, 2.5])
DATA = Gaussian(MEAN, jnp.diag(VARIANCE))


def law_of(sampler, start_mean, start_variance, num_draws):
    """The exact mean and variance of `sampler(x, noise)` for x ~ N(start_mean,
    diag start_variance) and standard normal draws of shape (num_draws, 3), for a
    sampler affine in both and acting on each coordinate alone."""
    zeros = jnp.zeros((num_draws, MEAN.shape[0]))
    mean = sampler(start_mean, zeros)
    slope, noise_slope = jax.grad(lambda x, z: jnp.sum(sampler(x, z)), argnums=(0, 1))(
        start_mean, zeros
    )
    return mean, slope**2 * start_variance + jnp.sum(noise_slope**2, axis=0)


def marginal(path, t):
    """The exact law of DATA along `path` at time t: N(alpha m, alpha^2 v +
    sigma^2)."""
    t = jnp.asarray(t)
    return path.alpha(t) * MEAN, path.alpha(t) ** 2 * VARIANCE + path.sigma(t) ** 2


def schedule_marginal(schedule):
    """The exact law of DATA at the DDPM schedule's last step N: N(sqrt(abar_N) m,
    abar_N v + 1 - abar_N)."""
    abar = schedule.alphas_cumprod[-1]
    return jnp.sqrt(abar) * MEAN, abar * VARIANCE + 1 - abar


@eqx.filter_jit
def weak_error(sampler, start, target, num_draws):
    """The signed errors of the sample's exact mean and variance against
    `target`'s, stacked."""
    mean, variance = law_of(sampler, *start, num_draws)
    return jnp.concatenate([mean - target[0], variance - target[1]])


# Each sampler on a grid of n steps, run from x with the draws z: (order, a
# function of n giving the sampler, its start law and its target law).
VP = scorax.VPPath()
EDM = scorax.EDMPath()


def _dpm_pp_sde(order):
    def at(n):
        def sample(x, z):
            return scorax.dpm_solver_pp_sample(
                DATA.score_model(VP),
                VP,
                x,
                num_steps=n,
                order=order,
                stochastic=True,
                noise=z,
                parameterisation=SCORE,
                denoise=False,
            ).sample

        return sample, marginal(VP, 1.0), marginal(VP, T_MIN)

    return at


def _pc_predictor(n):
    def sample(x, z):
        return scorax.predictor_corrector_sample(
            DATA.score_model(VP),
            VP,
            x,
            num_steps=n,
            corrector_steps=0,
            noise=z,
            parameterisation=SCORE,
            denoise=False,
        ).sample

    return sample, marginal(VP, 1.0), marginal(VP, T_MIN)


def _edm(churn):
    def at(n):
        def sample(x, z):
            return scorax.edm_sample(
                DATA.score_model(EDM),
                EDM,
                x,
                num_steps=n,
                churn=churn,
                noise=z if churn else None,
                parameterisation=SCORE,
            ).sample

        return sample, marginal(EDM, 1.0), marginal(EDM, T_MIN)

    return at


# A fine schedule, so that DDIM's error is its own (its steps are a subsequence).
FINE = scorax.DDPMSchedule(num_steps=4096)


def _ddim(eta):
    def at(n):
        def sample(x, z):
            return scorax.ddim_sample(
                DATA.score_model(FINE.path),
                FINE,
                x,
                num_steps=n,
                eta=eta,
                noise=z if eta else None,
                parameterisation=SCORE,
            ).sample

        return sample, schedule_marginal(FINE), (MEAN, VARIANCE)

    return at


def _ddpm(n):
    """DDPM over every step of an n-step schedule: the error falls with n."""
    schedule = scorax.DDPMSchedule(num_steps=n)

    def sample(x, z):
        return scorax.ddpm_sample(
            DATA.score_model(schedule.path),
            schedule,
            x,
            noise=z,
            parameterisation=SCORE,
        ).sample

    return sample, schedule_marginal(schedule), (MEAN, VARIANCE)


STEPS = (32, 64, 128)
# The claimed weak order of each sampler, and the grids it is measured on. The
# first-order SDE step is DDIM with eta = 1; the 2M SDE's second-order
# correction raises it to order 2 (a first-order error in that correction, e.g.
# its weight halved, leaves order 1 and fails). EDM's churn adds noise that keeps
# the marginal exact, then takes a Heun step: order 2 with or without it (churn
# 10 is capped, gamma = min(10 / n, sqrt 2 - 1), below 25 steps only). DDPM
# converges to the reverse VP SDE as its schedule is refined, at order 1.
SAMPLERS = {
    "dpm_solver_pp_1_sde": (1, _dpm_pp_sde(1), STEPS),
    "dpm_solver_pp_2m_sde": (2, _dpm_pp_sde(2), STEPS),
    "predictor_corrector_predictor": (1, _pc_predictor, STEPS),
    "edm_heun": (2, _edm(0.0), STEPS),
    "edm_heun_churn": (2, _edm(10.0), STEPS),
    "ddim_eta_0": (1, _ddim(0.0), STEPS),
    "ddim_eta_1": (1, _ddim(1.0), STEPS),
    "ddpm": (1, _ddpm, (128, 256, 512)),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_weak_order_on_gaussian_data(name):
    """The exact weak error (mean and variance) of each sampler against the law it
    should reach falls at its claimed order k over 32, 64 and 128 steps, once the
    next-order term is eliminated (`assert_rate`), and not at order k + 1: the
    claim is tight, and a sampler one order lower fails."""
    order, at, steps = SAMPLERS[name]
    errors = []
    for n in steps:
        sample, start, target = at(n)
        errors.append(weak_error(sample, start, target, n))
    # Far above rounding (~1e-13): the rate measured is the sampler's.
    assert float(jnp.max(jnp.abs(errors[-1]))) > 1e-8
    assert_rate(errors, order)
    with pytest.raises(AssertionError, match="order"):
        assert_rate(errors, order + 1)


# --- Langevin: the exact law after K steps -----------------------------------------


def data_score(x):
    """The score of DATA, -(x - m) / v."""
    return -(x - MEAN) / VARIANCE


def langevin_law(start, variance, step, count):
    """Unadjusted Langevin, x' = x + eps s(x) + sqrt(2 eps) z, on N(m, v) data: x'
    - m = a (x - m) + sqrt(2 eps) z with a = 1 - eps / v, so from N(m + d, w) the
    law after K steps is N(m + a^K d, a^2K w + 2 eps (1 - a^2K) / (1 - a^2)).
    Its limit v / (1 - eps / (2v)) is the O(eps) bias the `langevin` docstring
    states."""
    offset, spread = start
    a = 1 - step / variance
    decay = a ** (2 * count)
    return a**count * offset, decay * spread + 2 * step * (1 - decay) / (1 - a**2)


@eqx.filter_jit
def langevin_sample_law(step, start, count):
    def sample(x, z):
        return scorax.langevin(
            data_score, x, noise=z, step_size=step, num_steps=count
        ).sample

    return law_of(sample, *start, count)


# Pinned: the largest bias (the largest step, the longest chain), and one step.
@example(step=0.25, count=40, spread=3.0)
@example(step=0.01, count=1, spread=0.1)
@settings(max_examples=10)
@given(
    step=st.floats(0.01, 0.25),
    count=st.sampled_from([1, 7, 40]),
    spread=st.floats(0.1, 3.0),
)
def test_langevin_reaches_its_closed_form_law(step, count, spread):
    """After K steps with step size eps on N(m, diag v) data, from N(m + 1,
    spread^2), the chain's exact law (mean and variance) is the closed form of
    `langevin_law` in each coordinate, to rounding: the sampler's bias in eps is
    exactly the stated one, at every step size and step count."""
    start = (MEAN + 1.0, jnp.full_like(MEAN, spread**2))
    mean, variance = langevin_sample_law(jnp.asarray(step), start, count)
    offset, expected = langevin_law((1.0, spread**2), VARIANCE, step, count)
    # A few roundings per step over at most 40 steps: far below 1e-10.
    assert_allclose(mean, MEAN + offset, rtol=1e-10)
    assert_allclose(variance, expected, rtol=1e-10)


def annealed_law(start, sigmas, step, steps_per_level, denoise):
    """Annealed Langevin on N(m, v) data (the level-sigma score is that of N(m, v
    + sigma^2)): at each level, `langevin_law` with step alpha_i / 2, alpha_i = eps
    sigma_i^2 / sigma_L^2, on variance v + sigma_i^2; then Tweedie's step, x +
    sigma_L^2 s(x, sigma_L) - m = (1 - sigma_L^2 / (v + sigma_L^2)) (x - m)."""
    offset, spread = start
    for sigma in sigmas:
        alpha = step * sigma**2 / sigmas[-1] ** 2
        offset, spread = langevin_law(
            (offset, spread), VARIANCE + sigma**2, alpha / 2, steps_per_level
        )
    if denoise:
        shrink = 1 - sigmas[-1] ** 2 / (VARIANCE + sigmas[-1] ** 2)
        offset, spread = shrink * offset, shrink**2 * spread
    return offset, spread


@pytest.mark.parametrize("denoise", [False, True])
def test_annealed_langevin_reaches_its_closed_form_law(denoise):
    """Annealed Langevin (levels 3, 1, 0.3, 0.1, five steps each, eps = 0.05) on
    N(m, diag v) data with the exact blurred scores: its exact law is the
    level-by-level closed form of `annealed_law`, with and without the final
    denoising step."""
    sigmas = jnp.array([3.0, 1.0, 0.3, 0.1])
    start = (MEAN + 2.0, jnp.full_like(MEAN, 9.0))

    def model(x, sigma):
        return -(x - MEAN) / (VARIANCE + sigma**2)

    def sample(x, z):
        return scorax.annealed_langevin(
            model,
            sigmas,
            x,
            noise=z,
            step_size=0.05,
            steps_per_level=5,
            denoise=denoise,
        ).sample

    mean, variance = law_of(sample, *start, 20)
    offset, expected = annealed_law((2.0, 9.0), sigmas, 0.05, 5, denoise)
    assert_allclose(mean, MEAN + offset, rtol=1e-10)
    assert_allclose(variance, expected, rtol=1e-10)


@settings(max_examples=10)
@given(snr=st.floats(0.05, 0.5), seed=st.integers(0, 2**16))
def test_pc_corrector_step_has_the_stated_signal_to_noise_ratio(snr, seed):
    """The PC corrector is not affine in its draws (its step size divides norms),
    so it is checked by its rule (Song et al. 2021, Algorithm 5): a Langevin step
    x + eps g + sqrt(2 eps) z at the step's end time s, with g the score there and
    eps = 2 a^2 (r ||z|| / ||g||)^2, a = alpha(t) / alpha(s). Equivalently its
    drift is a r times its noise in norm: ||eps g|| / ||sqrt(2 eps) z|| = a r.

    One step of PC, run from the same predictor draw with and without a
    corrector: the difference is the corrector's increment, resolved into its
    score and noise parts (g and z are independent in three dimensions) by least
    squares, to rounding."""
    t_max, t_min = 0.6, 0.3
    draws = jax.random.normal(jax.random.key(seed), (3, 3))
    start, draws = MEAN + draws[0], draws[1:]

    @eqx.filter_jit
    def sample(x, z, snr, corrector_steps):
        return scorax.predictor_corrector_sample(
            DATA.score_model(VP),
            VP,
            x,
            num_steps=1,
            corrector_steps=corrector_steps,
            snr=snr,
            noise=z,
            t_min=t_min,
            t_max=t_max,
            parameterisation=SCORE,
            denoise=False,
        ).sample

    # snr as an array: one compilation for every example.
    predicted = sample(start, draws[:1], jnp.asarray(snr), 0)
    corrected = sample(start, draws[None], jnp.asarray(snr), 1)
    g, z = DATA.score_model(VP)(predicted, t_min), draws[1]
    parts = jnp.stack([g, z], axis=1)
    (drift, spread), *_ = jnp.linalg.lstsq(parts, corrected - predicted)
    assert_allclose(
        parts @ jnp.stack([drift, spread]), corrected - predicted, rtol=1e-9
    )
    a = VP.alpha(t_max) / VP.alpha(t_min)
    eps = 2 * a**2 * (snr * jnp.linalg.norm(z) / jnp.linalg.norm(g)) ** 2
    assert_allclose(drift, eps, rtol=1e-9)
    assert_allclose(spread, jnp.sqrt(2 * eps), rtol=1e-9)
    ratio = jnp.linalg.norm(drift * g) / jnp.linalg.norm(spread * z)
    assert_allclose(ratio, a * snr, rtol=1e-9)


# --- The `noise` argument ----------------------------------------------------------


def test_given_noise_replays_the_keys_draws():
    """The draws a key makes, given as `noise`, give the same sample: `noise[k]`
    is the draw of step k (here of the 2M SDE, 5 steps)."""
    x = jnp.array([0.3, -1.0, 2.0])
    key = jax.random.key(3)
    draws = jax.vmap(lambda k: jax.random.normal(k, x.shape))(jax.random.split(key, 5))

    def sample(**randomness):
        return scorax.dpm_solver_pp_sample(
            DATA.score_model(VP), VP, x, num_steps=5, stochastic=True, **randomness
        ).sample

    assert_allclose(sample(noise=draws), sample(key=key), rtol=1e-12)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda x, z: scorax.dpm_solver_pp_sample(
                DATA.score_model(VP), VP, x, num_steps=5, stochastic=True, noise=z[:4]
            ),
            r"`noise` must hold 1 standard Gaussian draw\(s\) .* shape \(5, 3\), got "
            r"\(4, 3\)",
        ),
        (
            lambda x, z: scorax.predictor_corrector_sample(
                DATA.score_model(VP), VP, x, num_steps=5, corrector_steps=2, noise=z
            ),
            r"`noise` must hold 3 standard Gaussian draw\(s\) .* shape \(5, 3, 3\)",
        ),
        (
            lambda x, z: scorax.dpm_solver_pp_sample(
                DATA.score_model(VP), VP, x, num_steps=5, noise=z
            ),
            "`noise`: dpm_solver_pp_sample draws no noise with these settings",
        ),
        (
            lambda x, z: scorax.dpm_solver_pp_sample(
                DATA.score_model(VP),
                VP,
                x,
                num_steps=5,
                stochastic=True,
                noise=z,
                key=jax.random.key(0),
            ),
            "`key`, `noise`: pass one of them, not both",
        ),
    ],
)
def test_bad_noise_is_refused(call, message):
    """Draws of the wrong shape, draws for a sampler that draws none, and draws
    with a key as well, each get an error naming the argument."""
    with pytest.raises(ValueError, match=message):
        call(jnp.zeros(3), jnp.zeros((5, 3)))
