"""Score-matching objectives: identities on Gaussian data, where everything is in
closed form, plus the reductions between the objectives."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jaxtyping
import pytest
from hypothesis import example, given, settings, strategies as st

import scorax
import scorax.testing

from .helpers import (
    all_parameterisations,
    all_paths,
    assert_allclose,
    blurred,
    Gaussian,
    ids,
    interior_times,
    MIXTURE,
    PATH_KINDS,
    precisions,
    relative_tolerance,
    RUNTIME_ERRORS,
    seeds,
    VP,
    without_runtime_type_checking,
)


NUM = 20_000  # Monte Carlo samples for the statistical identities
WEIGHTINGS = ("noise", "likelihood", "uniform", "data", "min_snr")


class Linear(eqx.Module):
    """The linear score model s(x) = W x + c."""

    weight: jax.Array
    bias: jax.Array

    def __call__(self, x):
        return self.weight @ x + self.bias


def gaussian(seed, dim):
    """A Gaussian N(mean, cov) with a well-conditioned random covariance."""
    k_mean, k_cov = jr.split(jr.key(seed))
    factor = jr.normal(k_cov, (dim, dim), jnp.float64)
    return Gaussian(
        jr.normal(k_mean, (dim,), jnp.float64),
        factor @ factor.T / dim + 0.5 * jnp.eye(dim),
    )


def random_linear(seed, dim):
    k_w, k_c = jr.split(jr.key(seed))
    return Linear(
        jr.normal(k_w, (dim, dim), jnp.float64) / dim,
        jr.normal(k_c, (dim,), jnp.float64),
    )


def true_score_model(gaussian):
    """The score of N(mean, cov) as a linear model: -cov^{-1} (x - mean)."""
    precision = gaussian.precision
    return Linear(-precision, precision @ gaussian.mean)


def expected_squared_error(model, gaussian, target):
    """E_{x ~ N(mean, cov)} ||model(x) - target(x)||^2 for linear model and target."""
    return gaussian.expected_square(
        model.weight - target.weight, model.bias - target.bias
    )


def mc_mean(values):
    return jnp.mean(values), jnp.std(values) / jnp.sqrt(values.shape[0])


# ---------------------------------------------------------------------- identities


# Jitted with the model and data as arguments: one compilation per dimension,
# shared by the drawn examples.
@eqx.filter_jit
def ism_losses(model, x):
    return jax.vmap(lambda xi: scorax.implicit_score_matching(model, xi))(x)


@eqx.filter_jit
def dsm_losses(model, x, keys, sigma):
    return jax.vmap(
        lambda xi, k: scorax.denoising_score_matching(model, xi, key=k, sigma=sigma)
    )(x, keys)


@given(seed=seeds, dim=st.sampled_from([1, 2, 4]))
def test_hyvarinen_ism_is_half_fisher_divergence_minus_constant(seed, dim):
    """Hyvärinen (2005): E_p[ISM(s)] = 1/2 E_p||s - grad log p||^2 - 1/2 tr(cov^{-1})
    on Gaussian data with a linear model (statistical, 5 standard errors)."""
    data = gaussian(seed, dim)
    model = random_linear(seed + 1, dim)
    x = data.sample(jr.key(seed + 2), NUM)
    estimate, standard_error = mc_mean(ism_losses(model, x))
    expected = 0.5 * expected_squared_error(model, data, true_score_model(data))
    expected -= 0.5 * jnp.trace(data.precision)
    assert abs(estimate - expected) <= 5 * standard_error


@given(seed=seeds, dim=st.sampled_from([1, 2, 4]), sigma=st.floats(0.3, 2.0))
def test_vincent_dsm_is_esm_on_perturbed_density_plus_constant(seed, dim, sigma):
    """Vincent (2011): E[DSM_sigma(s)] = 1/2 E_q||s - grad log q||^2 + 1/2 (d / sigma^2
    - tr(cov_q^{-1})) with q = N(mean, cov + sigma^2 I) (statistical)."""
    data = gaussian(seed, dim)
    model = random_linear(seed + 1, dim)
    x = data.sample(jr.key(seed + 2), NUM)
    keys = jr.split(jr.key(seed + 3), NUM)
    losses = dsm_losses(model, x, keys, jnp.asarray(sigma))
    estimate, standard_error = mc_mean(losses)
    q = data.blurred(sigma)
    expected = 0.5 * expected_squared_error(model, q, true_score_model(q))
    expected += 0.5 * (dim / sigma**2 - jnp.trace(q.precision))
    assert abs(estimate - expected) <= 5 * standard_error


@pytest.mark.parametrize("projection", ["gaussian", "rademacher", "sphere"])
@pytest.mark.parametrize("variance_reduction", [False, True], ids=["SSM", "SSM-VR"])
@pytest.mark.parametrize("seed,num_projections", [(0, 1), (1, 3)])
def test_sliced_score_matching_equals_ism_in_expectation(
    projection, variance_reduction, seed, num_projections
):
    """E_v[SSM(x)] = ISM(x) for a nonlinear network at a fixed x, with one and with
    several projections averaged (statistical)."""
    mlp = eqx.nn.MLP(3, 3, 16, 2, activation=jnp.tanh, key=jr.key(seed))
    mlp = jax.tree.map(
        lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, mlp
    )
    x = jr.normal(jr.key(seed + 1), (3,), jnp.float64)
    losses = jax.vmap(
        lambda k: scorax.sliced_score_matching(
            mlp,
            x,
            key=k,
            num_projections=num_projections,
            projection=projection,
            variance_reduction=variance_reduction,
        )
    )(jr.split(jr.key(seed + 2), NUM))
    estimate, standard_error = mc_mean(losses)
    assert abs(estimate - scorax.implicit_score_matching(mlp, x)) <= 5 * standard_error


# ---------------------------------------------------------------------- minimisers


DATA = MIXTURE.sample(key=jr.key(12), sample_shape=(4096,))
SIGMA = 0.7
SIGMAS = scorax.geometric_sigmas(sigma_min=0.05, sigma_max=5.0, num_levels=6)


def _objectives():
    """name -> (loss(model, x, key), the model at which the expected loss is
    minimal)."""
    entries = {
        "esm": (
            lambda m, x, k: scorax.explicit_score_matching(m, x, MIXTURE.score(x)),
            MIXTURE.score,
        ),
        "ism": (lambda m, x, k: scorax.implicit_score_matching(m, x), MIXTURE.score),
        "dsm": (
            lambda m, x, k: scorax.denoising_score_matching(m, x, key=k, sigma=SIGMA),
            blurred(MIXTURE, SIGMA).score,
        ),
        "dsm-noise": (
            lambda m, x, k: scorax.denoising_score_matching(
                m, x, key=k, sigma=SIGMA, parameterisation=scorax.NoisePrediction()
            ),
            lambda x: -SIGMA * blurred(MIXTURE, SIGMA).score(x),
        ),
    }
    for weighting in ("noise", "uniform"):
        entries[f"ncsn-{weighting}"] = (
            lambda m, x, k, w=weighting: scorax.ncsn_loss(
                m, x, key=k, sigmas=SIGMAS, weighting=w
            ),
            lambda x, sigma: blurred(MIXTURE, sigma).score(x),
        )
    for projection in ("gaussian", "rademacher", "sphere"):
        for vr in (False, True):
            entries[f"ssm-{projection}-{'vr' if vr else 'plain'}"] = (
                lambda m, x, k, p=projection, vr=vr: scorax.sliced_score_matching(
                    m, x, key=k, projection=p, variance_reduction=vr
                ),
                MIXTURE.score,
            )
    return entries


OBJECTIVES = _objectives()


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objectives_are_minimised_by_the_exact_score(name):
    """scorax.testing.check_objective_minimiser on the seeds' mixture: each
    objective's expected gradient vanishes at the exact score (of the perturbed
    density for DSM and NCSN) along 8 random directions, at 5 standard errors,
    and its curvature there is positive."""
    loss, minimiser = OBJECTIVES[name]
    scorax.testing.check_objective_minimiser(loss, minimiser, DATA)


@pytest.mark.parametrize(
    "parameterisation", all_parameterisations, ids=ids(all_parameterisations)
)
def test_diffusion_loss_is_minimised_by_the_exact_model(parameterisation):
    """The same for diffusion_loss on the VP path, in every parameterisation: the
    exact diffused score, read in that parameterisation, is the minimiser."""
    scorax.testing.check_objective_minimiser(
        lambda m, x, k: scorax.diffusion_loss(
            m, VP, x, key=k, parameterisation=parameterisation
        ),
        scorax.testing.ExactModel(MIXTURE, VP, parameterisation),
        DATA,
    )


# Each path kind with a weighting and a parameterisation, so that every kind,
# every weighting and every parameterisation is run at least once (a check is a
# few thousand gradients and Hessians, 2.6 s: the 6 x 5 x 4 = 120 combinations
# would take five minutes). Paths with hyperparameters other than the defaults
# where the test above does not run them.
MINIMISER_COMBINATIONS = [
    (scorax.VPPath(beta_min=0.5, beta_max=5.0), "min_snr", scorax.NoisePrediction()),
    (scorax.SubVPPath(), "data", scorax.VelocityPrediction()),
    (
        scorax.VEPath(sigma_min=0.1, sigma_max=5.0),
        "likelihood",
        scorax.DataPrediction(),
    ),
    (scorax.CosinePath(), "uniform", scorax.ScorePrediction()),
    (scorax.LinearPath(), "noise", scorax.VelocityPrediction()),
    (scorax.EDMPath(), "uniform", scorax.DataPrediction()),
]


@pytest.mark.parametrize(
    "path, weighting, parameterisation",
    MINIMISER_COMBINATIONS,
    ids=[
        f"{type(p).__name__}-{w}-{type(q).__name__}"
        for p, w, q in MINIMISER_COMBINATIONS
    ],
)
def test_diffusion_loss_on_every_path_kind_and_weighting_is_minimised(
    path, weighting, parameterisation
):
    """The same on every kind of path, under every weighting and in every
    parameterisation, each at least once. That covers the 120 combinations
    because the loss at each time is lambda(t) / 2 times the score error, in
    whatever parameterisation the model predicts: the parameterisation does not
    change the loss (test_diffusion_loss_does_not_depend_on_how_the_model_is_parameterised,
    on every path, weighting and parameterisation), and a weighting only scales
    each time's expected loss by lambda(t) > 0 (their closed forms:
    test_diffusion_loss_weightings_have_their_closed_forms), which cannot move
    the minimiser at any time. What this runs is each weighting's and each
    path's code inside the full objective, minimised at the exact model."""
    scorax.testing.check_objective_minimiser(
        lambda m, x, k: scorax.diffusion_loss(
            m, path, x, key=k, parameterisation=parameterisation, weighting=weighting
        ),
        scorax.testing.ExactModel(MIXTURE, path, parameterisation),
        DATA,
    )


def test_the_minimiser_combinations_cover_every_kind_weighting_and_parameterisation():
    paths, weightings, parameterisations = zip(*MINIMISER_COMBINATIONS, strict=True)
    assert {type(p) for p in paths} == set(PATH_KINDS)
    assert set(weightings) == set(WEIGHTINGS)
    assert {type(p) for p in parameterisations} == {
        type(p) for p in all_parameterisations
    }


# ---------------------------------------------------------------------- reductions


@precisions
@given(seed=seeds, sigma=st.floats(0.05, 5.0))
def test_dsm_noise_form_is_sigma_squared_times_score_form(dtype, seed, sigma):
    """With s = -eps_hat / sigma, the noise-prediction form is sigma^2 times the
    score form, sample by sample (same key)."""
    mlp = eqx.nn.MLP(3, 3, 8, 1, key=jr.key(seed))
    mlp = jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, mlp)
    x, key = jr.normal(jr.key(seed + 1), (3,), dtype), jr.key(seed + 2)
    noise_form = scorax.denoising_score_matching(
        mlp, x, key=key, sigma=sigma, parameterisation=scorax.NoisePrediction()
    )
    score_form = scorax.denoising_score_matching(
        lambda y: -mlp(y) / sigma, x, key=key, sigma=sigma
    )
    assert noise_form.dtype == dtype
    assert_allclose(
        noise_form, sigma**2 * score_form, rtol=10 * relative_tolerance(dtype)
    )


@given(seed=seeds, t=interior_times)
def test_diffusion_loss_on_ve_path_at_fixed_t_is_dsm(seed, t):
    """diffusion_loss on a VE path at fixed t, score form with uniform weighting, is
    denoising_score_matching at sigma(t); noise form with "noise" weighting is its
    noise form."""
    path = scorax.VEPath(sigma_min=0.05, sigma_max=5.0)
    mlp = eqx.nn.MLP(4, 3, 8, 1, key=jr.key(seed))

    def model(x, time):
        return mlp(jnp.append(x, time))

    x, key = jr.normal(jr.key(seed + 1), (3,)), jr.key(seed + 2)
    sigma = path.sigma(t)
    for parameterisation, weighting in [
        (scorax.ScorePrediction(), "uniform"),
        (scorax.NoisePrediction(), "noise"),
    ]:
        loss = scorax.diffusion_loss(
            model,
            path,
            x,
            key=key,
            t=t,
            parameterisation=parameterisation,
            weighting=weighting,
        )
        expected = scorax.denoising_score_matching(
            lambda y: model(y, jnp.asarray(t, x.dtype)),
            x,
            key=key,
            sigma=sigma,
            parameterisation=parameterisation,
        )
        assert_allclose(loss, expected, rtol=relative_tolerance(x.dtype))


@pytest.mark.parametrize("path", all_paths, ids=ids(all_paths))
# An algebraic identity: 5 (t, model) pairs per path, 45 in all.
@settings(max_examples=5)
@given(seed=seeds, t=interior_times)
def test_diffusion_loss_does_not_depend_on_how_the_model_is_parameterised(
    path, seed, t
):
    """One score model, expressed in each of the four parameterisations, gets the same
    loss under every weighting: the loss measures the score error, whatever the
    model predicts."""
    mlp = eqx.nn.MLP(4, 3, 8, 1, key=jr.key(seed))
    mlp = jax.tree.map(
        lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, mlp
    )

    def score_model(x, time):
        return mlp(jnp.append(x, time))

    def expressed_as(target):
        def model(x, time):
            return scorax.convert(
                path,
                score_model(x, time),
                x,
                time,
                source=scorax.ScorePrediction(),
                target=target,
            )

        return model

    x, key = jr.normal(jr.key(seed + 1), (3,), jnp.float64), jr.key(seed + 2)
    for weighting in WEIGHTINGS:
        losses = [
            scorax.diffusion_loss(
                expressed_as(p),
                path,
                x,
                key=key,
                t=t,
                parameterisation=p,
                weighting=weighting,
            )
            for p in all_parameterisations
        ]
        # Two affine conversions (score -> p -> score) with coefficients up to
        # e^{|log-SNR|}-sized: a condition factor of (1 + |log-SNR|)^2.
        condition = (1 + float(abs(path.log_snr(jnp.float64(t))))) ** 2
        assert_allclose(
            losses, losses[0], rtol=relative_tolerance(jnp.float64) * condition
        )


@pytest.mark.parametrize("t", [0.05, 0.4])  # SNR above and below Min-SNR's 5
def test_diffusion_loss_weightings_have_their_closed_forms(key, t):
    """At fixed t with a zero noise model the loss is lambda(t) ||eps||^2 / (2 sigma^2)
    with the documented lambda(t) of each named weighting."""
    path = scorax.VPPath()
    x0 = jnp.array([0.5, -1.0, 2.0], jnp.float64)
    _, eps = path.sample(x0, jnp.float64(t), key=key)
    sigma2 = path.sigma(t) ** 2
    snr = path.alpha(t) ** 2 / sigma2
    expected_weights = {
        "noise": sigma2,
        "likelihood": path.diffusion_squared(t),
        "uniform": 1.0,
        "data": sigma2 / snr,
        "min_snr": sigma2 * min(float(snr), 5.0) / snr,
    }
    assert (snr > 5) == (t == 0.05)  # both branches of Min-SNR are exercised
    for weighting, weight in expected_weights.items():
        loss = scorax.diffusion_loss(
            lambda x, s: jnp.zeros_like(x), path, x0, key=key, t=t, weighting=weighting
        )
        assert_allclose(loss, 0.5 * weight * jnp.sum(eps**2) / sigma2, rtol=1e-10)
    custom = scorax.diffusion_loss(
        lambda x, s: jnp.zeros_like(x),
        path,
        x0,
        key=key,
        t=t,
        weighting=lambda p, s: 3.0,
    )
    assert_allclose(custom, 1.5 * jnp.sum(eps**2) / sigma2, rtol=1e-10)


def test_diffusion_loss_samples_t_uniformly_above_t_min(key):
    """Statistical: for a zero model on LinearPath with uniform weighting the loss is
    |eps|^2 / (2 t^2); its mean matches the integral over U[t_min, 1) of d / (2 t^2)."""
    path, t_min, d = scorax.LinearPath(), 0.2, 2
    x0 = jnp.zeros(d, jnp.float64)
    losses = jax.vmap(
        lambda k: scorax.diffusion_loss(
            lambda x, s: jnp.zeros_like(x),
            path,
            x0,
            key=k,
            t_min=t_min,
            weighting="uniform",
        )
    )(jr.split(key, NUM))
    estimate, standard_error = mc_mean(losses)
    expected = d / 2 * (1 / t_min - 1) / (1 - t_min)
    assert abs(estimate - expected) <= 5 * standard_error


def test_ncsn_loss_averages_weighted_dsm_over_levels():
    """E[ncsn_loss] = mean_i lambda(sigma_i) E[DSM_{sigma_i}] on Gaussian data with a
    noise-conditional linear model, in closed form (statistical)."""
    data = gaussian(21, 2)
    base = random_linear(22, 2)
    sigmas = scorax.geometric_sigmas(sigma_min=0.3, sigma_max=2.0, num_levels=4)

    def model(x, sigma):
        return base(x) / sigma

    x = data.sample(jr.key(23), NUM)
    for weighting in ("noise", "uniform"):
        losses = jax.vmap(
            lambda xi, k, w=weighting: scorax.ncsn_loss(
                model, xi, key=k, sigmas=sigmas, weighting=w
            )
        )(x, jr.split(jr.key(24), NUM))
        estimate, standard_error = mc_mean(losses)
        expected = 0.0
        for sigma in sigmas:
            q = data.blurred(sigma)
            level = Linear(base.weight / sigma, base.bias / sigma)
            dsm = 0.5 * expected_squared_error(level, q, true_score_model(q))
            dsm += 0.5 * (2 / sigma**2 - jnp.trace(q.precision))
            expected += (sigma**2 if weighting == "noise" else 1.0) * dsm / len(sigmas)
        assert abs(estimate - expected) <= 5 * standard_error


# ---------------------------------------------------------------------- targets


# The chunkings that matter, pinned: several chunks with a padded last one, two
# chunks with a padded last one, one point per chunk, one chunk for all.
@example(seed=0, n=37, dim=2, chunk_size=16, bandwidth=0.5)
@example(seed=1, n=5, dim=3, chunk_size=4, bandwidth=1.0)
@example(seed=2, n=37, dim=1, chunk_size=1, bandwidth=0.2)
@example(seed=3, n=1, dim=2, chunk_size=4096, bandwidth=2.0)
@given(
    seed=seeds,
    n=st.sampled_from([1, 5, 37]),
    dim=st.sampled_from([1, 2, 3]),
    chunk_size=st.sampled_from([1, 4, 16, 4096]),
    bandwidth=st.floats(0.1, 3.0),
)
def test_kde_score_is_gradient_of_kde_log_density(seed, n, dim, chunk_size, bandwidth):
    """kde_score = grad log (1/n sum_i N(x; y_i, h^2 I)), for any chunking."""
    data = jr.normal(jr.key(seed), (n, dim), jnp.float64)
    x = 2 * jr.normal(jr.key(seed + 1), (dim,), jnp.float64)

    def log_density(y):
        return jax.nn.logsumexp(
            -0.5 * jnp.sum((y[None] - data) ** 2, axis=-1) / bandwidth**2
        )

    score = scorax.kde_score(x, data, bandwidth=bandwidth, chunk_size=chunk_size)
    assert_allclose(score, jax.grad(log_density)(x), rtol=1e-9, atol=1e-12)


def test_kde_score_far_from_data_follows_the_nearest_point(key):
    """Far from the data the softmax picks the nearest point: the score is
    (nearest - x) / h^2, finite (no 0/0) even where every kernel underflows."""
    data = jr.normal(key, (50, 2), jnp.float64)
    far = jnp.array([1e3, -1e3])
    nearest = data[jnp.argmin(jnp.sum((data - far[None]) ** 2, axis=-1))]
    score = scorax.kde_score(far, data, bandwidth=0.1, chunk_size=7)
    assert_allclose(score, (nearest - far) / 0.1**2, rtol=1e-9)


@pytest.mark.parametrize("rule", ["scott", "silverman"])
def test_kde_bandwidth_rules_match_scipy_factors(rule, key):
    """h = spread * factor, with scipy.stats.gaussian_kde's Scott and Silverman
    factors as the reference and spread = sqrt(mean per-coordinate variance)."""
    scipy_stats = pytest.importorskip("scipy.stats")  # shipped with scikit-learn
    data = jr.normal(key, (50, 2), jnp.float64) * jnp.array([1.0, 2.0])[None]
    factor = scipy_stats.gaussian_kde(data.T, bw_method=rule).factor
    h = jnp.sqrt(jnp.mean(jnp.var(data, axis=0))) * factor
    x = jnp.array([0.3, 0.1])
    assert_allclose(
        scorax.kde_score(x, data, bandwidth=rule),
        scorax.kde_score(x, data, bandwidth=float(h)),
        rtol=1e-10,
    )


def test_kde_score_mixed_dtypes_and_float32(key):
    data = jr.normal(key, (20, 2), jnp.float64)
    x32 = jnp.array([0.1, 0.2], jnp.float32)
    assert (
        scorax.kde_score(x32, data.astype(jnp.float32), bandwidth=0.5).dtype
        == jnp.float32
    )
    assert jnp.all(jnp.isfinite(scorax.kde_score(x32, data, bandwidth=0.5)))


@given(seed=seeds)
def test_explicit_score_matching_against_kde_target_is_half_squared_error(seed):
    data = jr.normal(jr.key(seed), (20, 2), jnp.float64)
    x = jr.normal(jr.key(seed + 1), (2,), jnp.float64)
    model = random_linear(seed + 2, 2)
    target = scorax.kde_score(x, data, bandwidth=0.5)
    assert_allclose(
        scorax.explicit_score_matching(model, x, target),
        0.5 * jnp.sum((model(x) - target) ** 2),
        rtol=1e-12,
    )
    assert (
        scorax.explicit_score_matching(
            lambda y: scorax.kde_score(y, data, bandwidth=0.5), x, target
        )
        == 0
    )


@given(seed=seeds)
def test_score_from_energy_is_minus_energy_gradient_and_trains_with_ism(seed):
    """score_from_energy(E) = -grad E; for the quadratic energy of N(m, P^{-1}), ISM of
    that score is -tr P + 1/2 |P (x - m)|^2."""
    data = gaussian(seed, 3)
    mean, precision = data.mean, data.precision

    def energy(x):
        return 0.5 * (x - mean) @ precision @ (x - mean)

    x = jr.normal(jr.key(seed + 1), (3,), jnp.float64)
    score = scorax.score_from_energy(energy)
    assert_allclose(score(x), -jax.grad(energy)(x), rtol=1e-12)
    assert_allclose(score(x), -precision @ (x - mean), rtol=1e-10)
    expected = -jnp.trace(precision) + 0.5 * jnp.sum((precision @ (x - mean)) ** 2)
    assert_allclose(scorax.implicit_score_matching(score, x), expected, rtol=1e-10)
    timed = scorax.score_from_energy(lambda y, t: t * energy(y))
    assert_allclose(timed(x, 2.0), 2 * score(x), rtol=1e-12)


def test_objectives_compose_with_jit_vmap_and_grad(key):
    """A batch loss is vmap + mean, differentiable with respect to the model."""
    mlp = eqx.nn.MLP(2, 2, 8, 1, key=key)
    x = jr.normal(key, (16, 2))
    keys = jr.split(key, 16)

    @eqx.filter_jit
    def batch_loss(model):
        return jnp.mean(
            jax.vmap(
                lambda xi, k: scorax.sliced_score_matching(
                    model, xi, key=k, num_projections=2
                )
            )(x, keys)
        )

    grads = eqx.filter_grad(batch_loss)(mlp)
    assert all(
        jnp.all(jnp.isfinite(g))
        for g in jax.tree.leaves(eqx.filter(grads, eqx.is_array))
    )


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda f, x, k: scorax.sliced_score_matching(
                f, x, key=k, num_projections=0
            ),
            "`num_projections` must be an integer >= 1",
        ),
        (
            lambda f, x, k: scorax.sliced_score_matching(
                f, x, key=k, projection="uniform"
            ),
            "`projection` must be one of 'gaussian', 'rademacher', 'sphere'",
        ),
        (
            lambda f, x, k: scorax.hutchinson_trace(f, x, key=k, num_probes=0),
            "`num_probes` must be an integer >= 1",
        ),
        (
            lambda f, x, k: scorax.hutchinson_trace(f, x, key=k, probe="normal"),
            "`probe` must be one of",
        ),
        (
            lambda f, x, k: scorax.exact_trace(f, x, chunk_size=0),
            "`chunk_size` must be an integer >= 1",
        ),
        (
            lambda f, x, k: scorax.denoising_score_matching(f, x, key=k, sigma=0.0),
            "`sigma` must be > 0",
        ),
        (
            lambda f, x, k: scorax.denoising_score_matching(
                f, x, key=k, sigma=1.0, parameterisation=scorax.DataPrediction()
            ),
            "`parameterisation` must be",
        ),
        (
            lambda f, x, k: scorax.kde_score(x, jnp.ones((3, 2)), bandwidth=0.0),
            "`bandwidth` must be finite and > 0",
        ),
        (
            lambda f, x, k: scorax.diffusion_loss(
                lambda y, s: y, scorax.VPPath(), x, key=k, t=0.0
            ),
            "`t`: diffusion_loss needs sigma",
        ),
        (
            lambda f, x, k: scorax.kde_score(x, jnp.ones((3, 2)), bandwidth=-1.0),
            "`bandwidth` must be finite and > 0",
        ),
        (
            lambda f, x, k: scorax.kde_score(x, jnp.ones((3, 2)), bandwidth="wide"),
            "`bandwidth` must be one of 'scott', 'silverman'",
        ),
        (
            lambda f, x, k: scorax.ncsn_loss(
                lambda y, s: y, x, key=k, sigmas=jnp.ones(3), weighting="likelihood"
            ),
            "`weighting` must be one of 'noise', 'uniform'",
        ),
        (
            lambda f, x, k: scorax.ncsn_loss(
                lambda y, s: y, x, key=k, sigmas=jnp.array([1.0, -1.0])
            ),
            "`sigmas` must all be > 0",
        ),
        (
            lambda f, x, k: scorax.diffusion_loss(
                lambda y, s: y, scorax.VPPath(), x, key=k, weighting="snr"
            ),
            "`weighting` must be one of 'noise', 'likelihood', 'uniform', 'data', 'min_snr'",
        ),
        (
            lambda f, x, k: scorax.diffusion_loss(
                lambda y, s: y, scorax.VPPath(), x, key=k, t_min=0.0
            ),
            r"`t_min` must lie in \(0, 1\)",
        ),
    ],
)
def test_bad_objective_arguments_raise(call, match, key):
    """The library's ValueError names the argument and the allowed values; with
    runtime type checking on, an unknown name may be caught first by its Literal
    annotation."""
    with pytest.raises((ValueError, jaxtyping.TypeCheckError)):
        call(jnp.sin, jnp.ones(2), key)
    with without_runtime_type_checking(), pytest.raises(ValueError, match=match):
        call(jnp.sin, jnp.ones(2), key)


@pytest.mark.parametrize(
    "rule,data", [("scott", jnp.ones((3, 2))), ("silverman", jnp.ones((1, 2)))]
)
def test_bandwidth_rule_on_data_without_spread_raises(rule, data):
    """h = 0 depends on the data's values, so it is a run-time error."""
    match = f"`bandwidth`: the '{rule}' rule gives h = 0"
    with pytest.raises(RUNTIME_ERRORS, match=match):
        scorax.kde_score(jnp.zeros(2), data, bandwidth=rule).block_until_ready()


def test_traced_bandwidth_is_checked_at_run_time(key):
    data = jr.normal(key, (5, 2))
    score = jax.jit(lambda h: scorax.kde_score(jnp.zeros(2), data, bandwidth=h))
    assert jnp.all(jnp.isfinite(score(0.5)))
    with pytest.raises(RUNTIME_ERRORS, match="`bandwidth` must be finite and > 0"):
        score(-0.5).block_until_ready()


def test_ncsn_loss_keeps_the_dtype_of_x(key):
    sigmas = scorax.geometric_sigmas(num_levels=3, dtype=jnp.float64)
    x = jnp.ones(2, jnp.float32)
    seen = []

    def model(y, sigma):
        seen.append((y.dtype, sigma.dtype))
        return -y

    assert scorax.ncsn_loss(model, x, key=key, sigmas=sigmas).dtype == jnp.float32
    assert seen == [(jnp.float32, jnp.float32)]


def test_traced_sigma_is_checked_at_run_time(key):
    loss = jax.jit(
        lambda s: scorax.denoising_score_matching(
            jnp.sin, jnp.ones(2), key=key, sigma=s
        )
    )
    assert jnp.isfinite(loss(1.0))
    with pytest.raises(RUNTIME_ERRORS, match="`sigma` must be > 0"):
        loss(-1.0).block_until_ready()
