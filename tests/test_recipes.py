"""Training recipes: EDM's preconditioning (EDMPrediction, Preconditioned, the
"edm" weighting) and where the training times come from (time distributions and
importance sampling), each checked against closed forms and the exact oracle."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings, strategies as st

import scorax
import scorax.testing

from .helpers import (
    all_paths,
    assert_allclose,
    ids,
    interior_times,
    MIXTURE,
    PATH_KINDS,
    relative_tolerance,
    RUNTIME_ERRORS,
    T_MIN,
    without_runtime_type_checking,
)


sigma_datas = st.floats(0.05, 5.0)
RTOL = relative_tolerance(jnp.float64)


def edm_table(sigma, sigma_data):
    """EDM's Table 1 (and k-diffusion's Denoiser.get_scalings), in NumPy from the
    noise level sigma: c_skip, c_out, c_in, c_noise."""
    sigma, sd = np.float64(sigma), np.float64(sigma_data)
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / np.sqrt(sigma**2 + sd**2)
    c_in = 1 / np.sqrt(sigma**2 + sd**2)
    return c_skip, c_out, c_in, np.log(sigma) / 4


# ------------------------------------------------------------ EDM preconditioning


@given(t=interior_times, sigma_data=sigma_datas, seed=st.integers(0, 2**16))
def test_preconditioning_on_edm_path_is_edms_table_1(t, sigma_data, seed):
    """On EDMPath (alpha = 1) the wrapper feeds the network c_in x and c_noise =
    ln(sigma) / 4, and EDMPrediction's denoiser is c_skip x + c_out F, with EDM's
    scalings (Table 1; k-diffusion's Denoiser) computed independently from
    sigma."""
    path = scorax.EDMPath()
    sigma = float(path.sigma(t))
    c_skip, c_out, c_in, c_noise = edm_table(sigma, sigma_data)
    x, f = jr.normal(jr.key(seed), (2, 3))
    scaled, noise = scorax.Preconditioned(lambda x, s: x, path, sigma_data).inputs(x, t)
    assert_allclose(scaled, c_in * np.asarray(x), rtol=RTOL)
    assert_allclose(noise, c_noise, rtol=RTOL, atol=RTOL)
    edm = scorax.EDMPrediction(sigma_data)
    denoised = scorax.convert(path, f, x, t, source=edm, target=scorax.DataPrediction())
    assert_allclose(denoised, c_skip * np.asarray(x) + c_out * np.asarray(f), rtol=RTOL)
    assert_allclose(jnp.stack(edm.scalings(path, t)), [c_skip, c_out], rtol=RTOL)


def _edm_definition(sigma_data):
    """What F predicts for (x0, eps): (x0 - c_skip x~) / c_out, x~ = x_t / alpha,
    written from the scalings at sigma~ = sigma / alpha."""

    def definition(path, x0, eps, t):
        alpha, sigma = path.alpha(t), path.sigma(t)
        x_t = alpha * x0 + sigma * eps
        ratio = sigma / alpha
        c_skip = sigma_data**2 / (ratio**2 + sigma_data**2)
        c_out = ratio * sigma_data / jnp.sqrt(ratio**2 + sigma_data**2)
        return (x0 - c_skip * x_t / alpha) / c_out

    return definition


@pytest.mark.parametrize(
    "path, sigma_data",
    [(path, (0.5, 2.0)[i % 2]) for i, path in enumerate(all_paths)],
    ids=ids(all_paths),
)
def test_edm_prediction_round_trips_with_every_parameterisation(path, sigma_data):
    """On every path, EDMPrediction converts exactly to and from the score, and
    means what EDM's definition of F says (scorax.testing.
    check_parameterisation_roundtrip with that definition), at times from near
    the data to near the noise; sigma_d alternates between 0.5 and 2 along the
    paths. convert composes exactly, so with the score's own round trips with
    every other parameterisation (tests/test_parameterisation.py) this covers
    every pair."""
    scorax.testing.check_parameterisation_roundtrip(
        path,
        parameterisations=[scorax.ScorePrediction(), scorax.EDMPrediction(sigma_data)],
        definitions={scorax.EDMPrediction: _edm_definition(sigma_data)},
        times=[0.02, 0.3, 0.7, 0.98],
        dtype=jnp.float64,
    )


@pytest.mark.parametrize("kind", PATH_KINDS, ids=lambda kind: kind.__name__)
@settings(max_examples=5)
@given(data=st.data(), t=interior_times, sigma_data=sigma_datas)
def test_edm_target_has_unit_variance_for_data_of_std_sigma_data(
    kind, data, t, sigma_data
):
    """For data N(0, sigma_d^2 I) the training target of F is affine in (x0, eps),
    target = A x0 + B eps, with variance A^2 sigma_d^2 + B^2 = 1 at every time of
    every path (EDM's design rule for c_out), to rounding."""
    path = data.draw(scorax.testing.gaussian_paths(kinds=[kind]))
    edm = scorax.EDMPrediction(sigma_data)

    def target(x0, eps):
        x_t = path.alpha(t) * x0 + path.sigma(t) * eps
        return scorax.convert(
            path, eps, x_t, t, source=scorax.NoisePrediction(), target=edm
        )

    a, b = jax.grad(lambda x0, eps: jnp.sum(target(x0, eps)), argnums=(0, 1))(
        jnp.ones(1), jnp.ones(1)
    )
    assert_allclose(a**2 * sigma_data**2 + b**2, 1.0, rtol=1e3 * RTOL)


@pytest.mark.parametrize("name", ["mlp", "conditional_mlp", "unet"])
def test_preconditioned_wraps_the_models_and_passes_labels(name):
    """Preconditioned(network) is called model(x, t) (or model(x, t, y)), returns
    the network's output at the scaled inputs, shaped like x, and reports the
    network's classes; with ScoreMLP, a conditional ScoreMLP and UNet."""
    path = scorax.VPPath()
    key = jr.key(0)
    if name == "unet":
        network = scorax.UNet((8, 8), channels=(8,), key=key)
        x = jr.normal(jr.key(1), (8, 8))
    else:
        classes = 3 if name == "conditional_mlp" else None
        network = scorax.ScoreMLP((2,), width=16, depth=1, num_classes=classes, key=key)
        x = jr.normal(jr.key(1), (2,))
    model = scorax.Preconditioned(network, path, sigma_data=1.0)
    assert model.num_classes == getattr(network, "num_classes", None)
    t = jnp.asarray(0.4)
    args = (2,) if name == "conditional_mlp" else ()
    assert isinstance(model.parameterisation, scorax.EDMPrediction)
    if name == "unet":
        # Traced, not run (the values are the MLPs' check): shapes and dtypes.
        out = jax.eval_shape(model, x, t)
        assert out.shape == x.shape and out.dtype == x.dtype
        return
    scaled, noise = model.inputs(x, t)
    out = model(x, t, *args)
    assert out.shape == x.shape
    assert_allclose(out, network(scaled, noise, *args), rtol=RTOL)
    assert_allclose(noise, -path.log_snr(t) / 8, rtol=RTOL)
    if name == "conditional_mlp":
        labelled = scorax.Preconditioned(lambda x, s, y: x + y, path, 1.0)(x, t, 2)
        assert_allclose(labelled - 2, model.inputs(x, t)[0], rtol=RTOL)


@pytest.mark.parametrize("path", all_paths, ids=ids(all_paths))
@settings(max_examples=3)
@given(t=interior_times, sigma_data=sigma_datas, seed=st.integers(0, 2**16))
def test_edm_weighting_is_edms_loss_weight(path, t, sigma_data, seed):
    """With EDMPrediction, diffusion_loss(weighting="edm") at time t is EDM's
    (1/2) lambda(sigma~) ||D - x0||^2, lambda = (sigma~^2 + sigma_d^2) / (sigma~
    sigma_d)^2, D = c_skip x~ + c_out F the denoiser (Karras et al. 2022, eq. 2
    and Table 1), and equals (1/2) ||F - F_target||^2: unit weight on the
    network's error at every noise level."""
    edm = scorax.EDMPrediction(sigma_data)
    x0, f = jr.normal(jr.key(seed), (2, 3))
    key = jr.key(seed + 1)
    loss = scorax.diffusion_loss(
        lambda x, s: f, path, x0, key=key, parameterisation=edm, weighting="edm", t=t
    )
    x_t, eps = path.sample(x0, jnp.asarray(t), key=key)
    ratio = float(path.sigma(t) / path.alpha(t))
    c_skip, c_out, _, _ = edm_table(ratio, sigma_data)
    denoised = c_skip * np.asarray(x_t) / float(path.alpha(t)) + c_out * np.asarray(f)
    weight = (ratio**2 + sigma_data**2) / (ratio * sigma_data) ** 2
    expected = 0.5 * weight * np.sum((denoised - np.asarray(x0)) ** 2)
    assert_allclose(loss, expected, rtol=1e3 * RTOL)
    f_target = scorax.convert(
        path, eps, x_t, t, source=scorax.NoisePrediction(), target=edm
    )
    assert_allclose(loss, 0.5 * jnp.sum((f - f_target) ** 2), rtol=1e3 * RTOL)


def test_exact_edm_model_minimises_the_edm_objective():
    """The EDM objective (EDMPrediction, "edm" weighting, log-normal noise levels)
    is minimised by the exact model: its expected gradient vanishes there and it
    is a minimum (scorax.testing.check_objective_minimiser)."""
    path = scorax.EDMPath()
    edm = scorax.EDMPrediction(2.0)
    scorax.testing.check_objective_minimiser(
        lambda m, x, k: scorax.diffusion_loss(
            m,
            path,
            x,
            key=k,
            parameterisation=edm,
            weighting="edm",
            time_sampling=scorax.LogNormalNoise(),
        ),
        scorax.testing.ExactModel(MIXTURE, path, edm),
        MIXTURE.sample(key=jr.key(0), sample_shape=(2000,)),
    )


# ------------------------------------------------------- where the times come from

NUM_DRAWS = 20_000
# Paths with a finite log-SNR at t = 1, where LikelihoodProposal is defined.
FINITE_ENDS = (scorax.VPPath, scorax.SubVPPath, scorax.VEPath, scorax.EDMPath)
DISTRIBUTIONS = {
    "uniform": scorax.UniformTime(),
    "lognormal": scorax.LogNormalNoise(),
    "lognormal_wide": scorax.LogNormalNoise(mean=0.5, std=2.0),
    "logitnormal": scorax.LogitNormalTime(),
    "logitnormal_shifted": scorax.LogitNormalTime(mean=-1.0, std=0.5),
    "likelihood": scorax.LikelihoodProposal(),
}


# Large batches run vmapped in chunks of this many (lax.map): a single vmap over
# tens of thousands of draws has hung on two CPU cores (XLA's CPU runtime, jaxlib
# 0.10.2), as tests/test_likelihood.py records.
CHUNK = 2000


@eqx.filter_jit
def _draws(distribution, path, key):
    keys = jr.split(key, NUM_DRAWS)
    return jax.lax.map(
        lambda k: distribution.sample(path, T_MIN, key=k, dtype=jnp.float64),
        keys,
        batch_size=CHUNK,
    )


@eqx.filter_jit
def _densities(distribution, path, t):
    log_densities = jax.lax.map(
        lambda s: distribution.log_density(path, s, T_MIN), t, batch_size=CHUNK
    )
    return jnp.exp(log_densities)


# Quadrature nodes on [t_min, 1], geometric so that densities concentrated near
# t_min (log-normal noise levels on VP) are resolved.
GRID = np.unique(np.concatenate([np.geomspace(T_MIN, 1, 200_001), [1.0]]))


# Every distribution on every kind of path where it is defined (the likelihood
# proposal needs a finite log-SNR at t = 1: test_likelihood_proposal_needs_...).
DENSITY_CASES = [
    (name, kind)
    for name in DISTRIBUTIONS
    for kind in PATH_KINDS
    if name != "likelihood" or kind in FINITE_ENDS
]


@pytest.mark.parametrize(
    "name, kind",
    DENSITY_CASES,
    ids=[f"{name}-{kind.__name__}" for name, kind in DENSITY_CASES],
)
def test_time_densities_integrate_to_one_and_match_their_samples(name, kind):
    """Each time distribution's density integrates to 1 on [t_min, 1]
    (trapezoid rule on 200,000 geometric nodes: its error is below 1e-6 here,
    1e-4 is the bound), and its draws agree with it: the mean time and the
    fraction below the density's median, by quadrature, within 5 standard errors
    of the 20,000 draws' (sd / sqrt(n) and sqrt(1/4 / n))."""
    distribution = DISTRIBUTIONS[name]
    path = kind()
    density = np.asarray(_densities(distribution, path, jnp.asarray(GRID)))
    assert np.all(np.isfinite(density)) and np.all(density >= 0)
    assert abs(np.trapezoid(density, GRID) - 1) <= 1e-4
    draws = np.asarray(_draws(distribution, path, jr.key(0)))
    assert np.all((draws >= T_MIN) & (draws <= 1))
    n = draws.size
    mean = np.trapezoid(GRID * density, GRID)
    assert abs(draws.mean() - mean) <= 5 * draws.std(ddof=1) / n**0.5
    cdf = np.concatenate(
        [[0], np.cumsum(np.diff(GRID) * (density[1:] + density[:-1]) / 2)]
    )
    median = np.interp(0.5, cdf, GRID)
    assert abs(np.mean(draws <= median) - 0.5) <= 5 * (0.25 / n) ** 0.5


def _truncated_normal_moments(mean, std, low, high):
    a, b = (low - mean) / std, (high - mean) / std
    law = scipy.stats.truncnorm(a, b, loc=mean, scale=std)
    return law.mean(), law.var()


def _assert_moments(values, mean, variance):
    """Sample mean and variance within 5 standard errors: sd / sqrt(n), and the
    sample variance's sd / sqrt(n) estimated from the fourth central moment."""
    n = values.size
    assert abs(values.mean() - mean) <= 5 * (variance / n) ** 0.5, (values.mean(), mean)
    fourth = np.mean((values - values.mean()) ** 4)
    spread = ((fourth - variance**2) / n) ** 0.5
    assert abs(values.var(ddof=1) - variance) <= 5 * spread, (values.var(), variance)


@pytest.mark.parametrize(
    "path", [scorax.EDMPath(), scorax.VPPath()], ids=["EDMPath", "VPPath"]
)
def test_log_normal_noise_draws_ln_sigma_from_edms_normal(path):
    """ln(sigma / alpha) of LogNormalNoise's times is N(-1.2, 1.2^2) restricted to
    the path's levels on [t_min, 1]: mean and variance of the truncated normal
    (SciPy's truncnorm) within 5 standard errors."""
    levels = np.log(
        np.asarray(
            jax.vmap(path.noise_to_signal)(
                _draws(scorax.LogNormalNoise(), path, jr.key(1))
            )
        )
    )
    ends = np.log(np.asarray([path.noise_to_signal(T_MIN), path.noise_to_signal(1.0)]))
    _assert_moments(levels, *_truncated_normal_moments(-1.2, 1.2, *ends))


def test_logit_normal_time_draws_logit_t_from_the_normal():
    """logit(t) of LogitNormalTime(0.5, 0.8)'s times is N(0.5, 0.8^2) restricted to
    t >= t_min, within 5 standard errors (SciPy's truncnorm)."""
    t = np.asarray(
        _draws(scorax.LogitNormalTime(0.5, 0.8), scorax.LinearPath(), jr.key(2))
    )
    logits = np.log(t) - np.log1p(-t)
    low = np.log(T_MIN) - np.log1p(-T_MIN)
    _assert_moments(logits, *_truncated_normal_moments(0.5, 0.8, low, np.inf))


@pytest.mark.parametrize("kind", FINITE_ENDS, ids=lambda kind: kind.__name__)
def test_likelihood_proposal_is_uniform_in_log_snr(kind):
    """Song et al.'s proposal, density g^2 / sigma^2 = -lambda'(t), is the uniform
    law of lambda(t) on [lambda(1), lambda(t_min)]: its draws' log-SNR has that
    uniform's mean and variance within 5 standard errors, and g^2 / sigma^2 is
    -lambda' (autodiff) at the draws."""
    path = kind()
    t = _draws(scorax.LikelihoodProposal(), path, jr.key(3))
    log_snr = np.asarray(jax.vmap(path.log_snr)(t))
    high, low = float(path.log_snr(T_MIN)), float(path.log_snr(1.0))
    _assert_moments(log_snr, (low + high) / 2, (high - low) ** 2 / 12)
    rate = jax.vmap(lambda s: path.diffusion_squared(s) / path.sigma(s) ** 2)(t[:50])
    slope = jax.vmap(jax.grad(path.log_snr))(t[:50])
    assert_allclose(rate, -slope, rtol=1e3 * RTOL)


def test_uniform_time_is_the_default():
    """time_sampling=UniformTime() draws what diffusion_loss always drew: the
    same loss, bit for bit, for the same key."""
    model = scorax.testing.ExactModel(
        MIXTURE, scorax.VPPath(), scorax.NoisePrediction()
    )
    x0, key = jnp.array([0.3, -1.0]), jr.key(4)
    default = scorax.diffusion_loss(model, scorax.VPPath(), x0, key=key)
    uniform = scorax.diffusion_loss(
        model, scorax.VPPath(), x0, key=key, time_sampling=scorax.UniformTime()
    )
    assert float(default) == float(uniform)


@eqx.filter_jit
def _both_losses(model, path, weighting, proposal, x0, key):
    """20,000 losses with uniform times and 20,000 importance-weighted ones, with
    independent keys, in one compiled program."""

    def losses(time_sampling, key):
        return jax.lax.map(
            lambda k: scorax.diffusion_loss(
                model,
                path,
                x0,
                key=k,
                parameterisation=model.parameterisation,
                weighting=weighting,
                time_sampling=time_sampling,
            ),
            jr.split(key, NUM_DRAWS),
            batch_size=CHUNK,
        )

    plain_key, weighted_key = jr.split(key)
    return (
        losses(scorax.UniformTime(), plain_key),
        losses(scorax.ImportanceTime(proposal), weighted_key),
    )


# Every kind of path, every weighting and every proposal at least once (the
# likelihood proposal where it is defined), each path with random
# hyperparameters.
UNBIASED_CASES = [
    (scorax.VPPath, "likelihood", scorax.LikelihoodProposal()),
    (scorax.SubVPPath, "noise", scorax.LogNormalNoise(0.0, 2.0)),
    (scorax.VEPath, "data", scorax.LikelihoodProposal()),
    (scorax.CosinePath, "min_snr", scorax.LogitNormalTime()),
    (scorax.LinearPath, "uniform", scorax.LogNormalNoise(0.0, 2.0)),
    (scorax.EDMPath, "likelihood", scorax.LogitNormalTime()),
]


@pytest.mark.parametrize(
    "kind, weighting, proposal",
    UNBIASED_CASES,
    ids=[f"{k.__name__}-{w}-{type(q).__name__}" for k, w, q in UNBIASED_CASES],
)
@settings(max_examples=2)
@given(data=st.data(), seed=st.integers(0, 99))
def test_importance_sampled_loss_is_unbiased(kind, weighting, proposal, data, seed):
    """ImportanceTime(q) keeps the uniform-time objective: on every kind of path
    (random hyperparameters), under every weighting and with each proposal (the
    likelihood proposal, and the log-normal and logit-normal laws as proposals),
    the mean of 20,000 importance-weighted losses of the exact model equals the
    mean of 20,000 uniform-time ones within 5 standard errors of their
    difference."""
    path = data.draw(scorax.testing.gaussian_paths(kinds=[kind]))
    model = scorax.testing.ExactModel(MIXTURE, path, scorax.NoisePrediction())
    x0 = MIXTURE.sample(key=jr.key(seed))
    plain, weighted = (
        np.asarray(a)
        for a in _both_losses(model, path, weighting, proposal, x0, jr.key(seed + 1))
    )
    assert np.all(np.isfinite(weighted))
    error = (
        plain.var(ddof=1) / plain.size + weighted.var(ddof=1) / weighted.size
    ) ** 0.5
    assert abs(weighted.mean() - plain.mean()) <= 5 * error, (
        weighted.mean(),
        plain.mean(),
        error,
    )


def test_the_unbiased_cases_cover_every_kind_weighting_and_proposal():
    kinds, weightings, proposals = zip(*UNBIASED_CASES, strict=True)
    assert set(kinds) == set(PATH_KINDS)
    assert set(weightings) == {"noise", "likelihood", "uniform", "data", "min_snr"}
    assert {type(q) for q in proposals} == {
        scorax.LikelihoodProposal,
        scorax.LogNormalNoise,
        scorax.LogitNormalTime,
    }


# ------------------------------------------------------------------ bad input


class _Nowhere(scorax.AbstractTimeDistribution):
    """A proposal whose density is zero where it samples."""

    def sample(self, path, t_min, *, key, dtype):
        return jnp.asarray(0.5, dtype)

    def log_density(self, path, t, t_min):
        return jnp.full_like(t, -jnp.inf)


BAD = {
    "edm_sigma_data_zero": (lambda: scorax.EDMPrediction(0.0), "`sigma_data`"),
    "edm_sigma_data_nan": (lambda: scorax.EDMPrediction(float("nan")), "`sigma_data`"),
    "preconditioned_sigma_data": (
        lambda: scorax.Preconditioned(lambda x, t: x, scorax.VPPath(), -1.0),
        "`sigma_data`",
    ),
    "lognormal_std": (lambda: scorax.LogNormalNoise(std=0.0), "`std`"),
    "lognormal_mean": (lambda: scorax.LogNormalNoise(mean=float("nan")), "`mean`"),
    "logitnormal_std": (lambda: scorax.LogitNormalTime(std=-1.0), "`std`"),
    "time_sampling_type": (
        lambda: scorax.diffusion_loss(
            lambda x, t: x,
            scorax.VPPath(),
            jnp.zeros(2),
            key=jr.key(0),
            time_sampling="lognormal",
        ),
        "`time_sampling`",
    ),
    "edm_weighting_without_edm_prediction": (
        lambda: scorax.diffusion_loss(
            lambda x, t: x,
            scorax.VPPath(),
            jnp.zeros(2),
            key=jr.key(0),
            weighting="edm",
        ),
        "`weighting`",
    ),
    "proposal_density_zero": (
        lambda: scorax.diffusion_loss(
            lambda x, t: x,
            scorax.VPPath(),
            jnp.zeros(2),
            key=jr.key(0),
            time_sampling=scorax.ImportanceTime(_Nowhere()),
        ),
        "`time_sampling`: the proposal's density",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_recipe_arguments_name_the_argument(name):
    """Each bad argument is refused before any work, by a message naming it."""
    call, message = BAD[name]
    # The library's own checks, as a user without jaxtyping's runtime checks
    # meets them (the type check refuses a non-sampling `time_sampling` first).
    with without_runtime_type_checking(), pytest.raises(RUNTIME_ERRORS, match=message):
        call()


@pytest.mark.parametrize(
    "path", [scorax.LinearPath(), scorax.CosinePath()], ids=["LinearPath", "CosinePath"]
)
def test_likelihood_proposal_needs_a_finite_log_snr(path):
    """Where alpha(1) = 0 the log-SNR is -inf at t = 1 and g^2 / sigma^2 has no
    normalisable density on [t_min, 1]: the proposal says so, naming
    `time_sampling`, eagerly and under jit."""

    def loss(key):
        return scorax.diffusion_loss(
            lambda x, t: x,
            path,
            jnp.zeros(2),
            key=key,
            weighting="likelihood",
            time_sampling=scorax.ImportanceTime(scorax.LikelihoodProposal()),
        )

    for call in (loss, eqx.filter_jit(loss)):
        with pytest.raises(RUNTIME_ERRORS, match="`time_sampling`: LikelihoodProposal"):
            call(jr.key(0))
