"""Conditional generation against the mixture oracle, whose classes are its
components: Bayes' rule for scores, classifier and classifier-free guidance,
sampling one class, label-dropout training, and inpainting."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from hypothesis import example, given, settings, strategies as st

import scorax
import scorax.testing

from .helpers import (
    all_parameterisations,
    assert_allclose,
    assert_beats_the_best_affine_score,
    EXACT_NOISE,
    ids,
    interior_times,
    MIXTURE,
    PATH_KINDS,
    relative_tolerance,
    solve_error_bound,
    VP,
    without_runtime_type_checking,
)


def scale(*arrays):
    return max(float(jnp.max(jnp.abs(a))) for a in arrays) + 1.0


# ------------------------------------------------------------ the oracle's identities


@pytest.mark.parametrize("kind", PATH_KINDS, ids=lambda kind: kind.__name__)
# Every kind of path, each with random hyperparameters: 3 draws per kind, 18 in
# all (an eager identity, a third of a second each).
@settings(max_examples=3)
@given(
    mixture=scorax.testing.gaussian_mixtures(dim=2, num_components=3),
    data=st.data(),
    t=interior_times,
    y=st.integers(0, 2),
    x=st.tuples(st.floats(-4, 4), st.floats(-4, 4)),
)
def test_bayes_conditional_score_is_score_plus_gradient_of_class_posterior(
    kind, mixture, data, t, y, x
):
    """grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x) on the diffused
    mixture, for every kind of path and any time (the class posterior
    differentiated by autodiff), to rounding: relative_tolerance of the values'
    scale, as both sides sum the same component scores weighted by the same
    responsibilities in another order (measured: 1e-3 of it)."""
    path = data.draw(scorax.testing.gaussian_paths(kinds=[kind]))
    diffused = mixture.marginal(path, t)
    x = jnp.asarray(x)
    gradient = jax.grad(lambda z: diffused.log_class_posterior(z)[y])(x)
    expected = diffused.score(x) + gradient
    got = diffused.score(x, y)
    assert_allclose(
        got,
        expected,
        rtol=0,
        atol=relative_tolerance(jnp.float64) * scale(got, gradient),
    )


def test_null_label_and_none_give_the_unconditional_score():
    x = jnp.array([0.3, -0.7])
    assert_allclose(MIXTURE.score(x, -1), MIXTURE.score(x), rtol=1e-15)
    assert_allclose(MIXTURE.score(x, None), MIXTURE.score(x), rtol=1e-15)
    # The class posterior is normalised.
    assert_allclose(jnp.exp(MIXTURE.log_class_posterior(x)).sum(), 1.0, rtol=1e-14)


def test_labelled_samples_are_the_samples_with_their_components():
    x, y = MIXTURE.sample_labelled(key=jr.key(0), sample_shape=(5000,))
    assert_allclose(x, MIXTURE.sample(key=jr.key(0), sample_shape=(5000,)), rtol=0)
    assert y.dtype == jnp.int32 and set(np.unique(np.asarray(y))) == {0, 1}
    for k in (0, 1):  # class means within 5 standard errors (unit variances)
        mean = jnp.mean(x[y == k], 0)
        assert jnp.all(jnp.abs(mean - MIXTURE.means[k]) <= 5 / jnp.sum(y == k) ** 0.5)


@given(
    mixture=scorax.testing.gaussian_mixtures(dim=2, num_components=2),
    t=interior_times,
    x0=st.tuples(st.floats(-3, 3), st.floats(-3, 3)),
)
@settings(max_examples=10)
def test_posterior_log_prob_is_bayes_rule(mixture, t, x0):
    """log p(x0 | x_t) = log p(x0) + log N(x_t; alpha x0, sigma^2) - log p_t(x_t),
    and the masked version is its marginal (integrated numerically)."""
    x0 = jnp.asarray(x0)
    x_t = VP.alpha(t) * x0 + 0.5 * VP.sigma(t)
    alpha, sigma = VP.alpha(t), VP.sigma(t)
    joint = (
        mixture.log_prob(x0)
        + jax.scipy.stats.norm.logpdf(x_t, alpha * x0, sigma).sum()
        - mixture.marginal(VP, t).log_prob(x_t)
    )
    assert_allclose(mixture.posterior_log_prob(VP, x_t, t, x0), joint, rtol=1e-10)
    u = jnp.linspace(-20.0, 20.0, 40001)
    density = jax.vmap(
        lambda v: jnp.exp(mixture.posterior_log_prob(VP, x_t, t, x0.at[0].set(v)))
    )(u)
    masked = mixture.posterior_log_prob(VP, x_t, t, x0, jnp.array([False, True]))
    assert_allclose(jnp.log(jnp.trapezoid(density, u)), masked, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------- guidance

LOG_CLASSIFIER = lambda x, t, y: MIXTURE.marginal(VP, t).log_class_posterior(x)[y]  # noqa: E731
# The guidance tests' rounding factor over relative_tolerance (1000 ulps) times
# the values' scale: conversions between parameterisations multiply rounding by
# their coefficients, up to 1 / alpha(t) and 1 / sigma(t), at most 1 / alpha(0.98)
# = 120 on VP over interior_times; 1e3 rounds that up. (Measured: at most 0.11 of
# relative_tolerance times the scale.)
CONDITION = 1e3


@pytest.mark.parametrize(
    "parameterisation", all_parameterisations, ids=ids(all_parameterisations)
)
@given(
    t=interior_times,
    y=st.integers(0, 1),
    x=st.tuples(st.floats(-4, 4), st.floats(-4, 4)),
)
@settings(max_examples=10)
def test_classifier_guidance_with_the_exact_classifier_is_the_conditional_model(
    parameterisation, t, y, x
):
    """Classifier guidance at scale 1 with the exact class posterior equals the
    exact conditional model, in every parameterisation."""
    x = jnp.asarray(x)
    model = scorax.testing.ExactModel(MIXTURE, VP, parameterisation)
    guided = scorax.classifier_guidance(
        model, LOG_CLASSIFIER, y, path=VP, parameterisation=parameterisation
    )
    expected = model(x, t, y)
    assert_allclose(
        guided(x, t),
        expected,
        rtol=0,
        atol=CONDITION * relative_tolerance(jnp.float64) * scale(expected, x),
    )


@pytest.mark.parametrize(
    "parameterisation", all_parameterisations, ids=ids(all_parameterisations)
)
@given(
    t=interior_times,
    y=st.integers(0, 1),
    x=st.tuples(st.floats(-4, 4), st.floats(-4, 4)),
    s=st.floats(0, 5),
)
@example(t=0.5, y=1, x=(1.0, -2.0), s=0.0)  # the stated s = 0, pinned
@settings(max_examples=10)
def test_classifier_guidance_at_scale_s_adds_s_times_the_classifier_gradient(
    parameterisation, t, y, x, s
):
    """At any scale s the guided model, read as a score, is grad log p_t(x) + s
    grad log p_t(y | x) (the gradient by autodiff), in every parameterisation;
    at s = 0 it is the model itself, to the same rounding as above."""
    x = jnp.asarray(x)
    model = scorax.testing.ExactModel(MIXTURE, VP, parameterisation)
    guided = scorax.classifier_guidance(
        model, LOG_CLASSIFIER, y, path=VP, scale=s, parameterisation=parameterisation
    )
    as_score = scorax.convert(
        VP,
        guided(x, t),
        x,
        t,
        source=parameterisation,
        target=scorax.ScorePrediction(),
    )
    gradient = jax.grad(lambda z: LOG_CLASSIFIER(z, t, y))(x)
    expected = MIXTURE.marginal(VP, t).score(x) + s * gradient
    assert_allclose(
        as_score,
        expected,
        rtol=0,
        atol=CONDITION * relative_tolerance(jnp.float64) * scale(expected, x) * (1 + s),
    )


@pytest.mark.parametrize(
    "parameterisation", all_parameterisations, ids=ids(all_parameterisations)
)
@given(
    t=interior_times,
    y=st.integers(0, 1),
    weight=st.floats(0.0, 8.0),
    x=st.tuples(st.floats(-4, 4), st.floats(-4, 4)),
)
@settings(max_examples=10)
def test_classifier_free_guidance_is_the_documented_combination(
    parameterisation, t, y, weight, x
):
    """At weight 0 the guided model is the conditional model; at weight w it is
    (1 + w) m(x, t, y) - w m(x, t, null), which read as a score is the mixture's
    guided score (1 + w) grad log p_t(x | y) - w grad log p_t(x), and the score
    of p_t(x) p_t(y | x)^(1 + w) at that time (differentiated by autodiff)."""
    x = jnp.asarray(x)
    model = scorax.testing.ExactModel(MIXTURE, VP, parameterisation)
    tolerance = CONDITION * relative_tolerance(jnp.float64) * (1 + weight)
    conditional = scorax.classifier_free_guidance(model, y, weight=0.0)(x, t)
    assert_allclose(
        conditional, model(x, t, y), rtol=0, atol=tolerance * scale(conditional)
    )
    guided = scorax.classifier_free_guidance(model, y, weight=weight)(x, t)
    combination = (1 + weight) * model(x, t, y) - weight * model(x, t, -1)
    assert_allclose(guided, combination, rtol=0, atol=tolerance * scale(combination))
    as_score = scorax.convert(
        VP, guided, x, t, source=parameterisation, target=scorax.ScorePrediction()
    )
    diffused = MIXTURE.marginal(VP, t)
    exact = diffused.guided_score(x, y, weight=weight)
    assert_allclose(
        as_score, exact, rtol=0, atol=tolerance * scale(exact, x) / float(VP.sigma(t))
    )
    tilted = jax.grad(
        lambda z: (
            diffused.log_prob(z) + (1 + weight) * diffused.log_class_posterior(z)[y]
        )
    )(x)
    assert_allclose(
        as_score, tilted, rtol=0, atol=tolerance * scale(tilted, x) / float(VP.sigma(t))
    )


START = jax.vmap(lambda k: VP.prior_sample(key=k, shape=(2,)))(
    jr.split(jr.key(3), 2000)
)
NOISE = scorax.NoisePrediction()


def flow(model, x, key):
    """The probability-flow ODE in 20 evaluations: DPM-Solver++(3M) with UniC,
    interpolated in time on the quadratic grid (its pathwise error on this
    mixture, in benchmarks/results/cpu.md, is far below what the distribution
    checks resolve with 2000 points, at a fixed cost where adaptive Tsit5 spends
    many more evaluations)."""
    return scorax.dpm_solver_pp_sample(
        model,
        VP,
        x,
        num_steps=20,
        order=3,
        corrector=True,
        spacing="time_quadratic",
        interpolation="time",
    )


def reverse_sde(model, x, key):
    return scorax.reverse_sde_sample(model, VP, x, key=key, num_steps=500)


GUIDES = {
    "classifier-free": lambda y: scorax.classifier_free_guidance(
        EXACT_NOISE, y, weight=0.0
    ),
    "classifier": lambda y: scorax.classifier_guidance(
        EXACT_NOISE, LOG_CLASSIFIER, y, path=VP
    ),
}


@pytest.mark.parametrize(
    "guide, sampler, y",
    [
        pytest.param("classifier-free", flow, 0, marks=pytest.mark.slow),
        ("classifier-free", reverse_sde, 1),
        ("classifier", flow, 1),
        ("classifier", reverse_sde, 0),
    ],
    ids=["free-ode-0", "free-sde-1", "classifier-ode-1", "classifier-sde-0"],
)
def test_sampling_with_the_exact_conditional_score_gives_that_class(y, guide, sampler):
    """Fed the exact conditional score of class y (through either guidance),
    samplers reproduce component y alone: scorax.testing.check_sampler against
    mixture.component(y) (noise floor and moments at 5 standard errors, and exact
    evaluation counts through the ODE; the SDE's count does not depend on the
    model it is fed, and test_sampler checks it)."""
    scorax.testing.check_sampler(
        sampler,
        GUIDES[guide](y),
        START,
        MIXTURE.component(y),
        num_counted=2 if sampler is flow else 0,
    )


@eqx.filter_jit
def flow_samples(model, starts):
    """`flow` from each start, one compilation for every model of the same
    structure (the guidance weight and label are arrays, traced)."""
    return jax.vmap(lambda x: flow(model, x, None).sample)(starts)


def test_guidance_sharpens_the_class_but_does_not_sample_the_tilted_law():
    """Classifier-free guidance at w = 4 follows, at each time, the score of
    p_t(x) p_t(y | x)^5 (test_classifier_free_guidance_is_the_documented_combination).
    That sharpens the class: over the same starts, the class log-odds
    log p(y | x) - log p(other | x) of the samples rise, by more than 5 standard
    errors of the paired differences. But the tilted densities p_t(x)
    p_t(y | x)^5 are not the diffusions of one law, so the samples are not from
    p(x) p(y | x)^5: on this mixture they land beyond it (mean 3.35 per
    coordinate, with half its variance, against its 2.01), their mean more than
    5 standard errors from its mean. That mean is computed by weighting fresh
    mixture draws by p(y | x)^5 (self-normalised importance sampling, consistent,
    with a standard error from the weights)."""
    y = 0

    def log_odds(x):
        log_posterior = MIXTURE.log_class_posterior(x)
        return log_posterior[y] - log_posterior[1 - y]

    samples = {}
    for weight in (0.0, 4.0):
        model = scorax.classifier_free_guidance(EXACT_NOISE, y, weight=weight)
        samples[weight] = np.asarray(flow_samples(model, START))
    n = START.shape[0]
    rise = np.asarray(
        jax.vmap(log_odds)(samples[4.0]) - jax.vmap(log_odds)(samples[0.0])
    )
    assert np.mean(rise) > 5 * np.std(rise, ddof=1) / n**0.5, np.mean(rise)

    draws = MIXTURE.sample(key=jr.key(8), sample_shape=(100_000,))
    tilt = 5 * np.asarray(jax.vmap(lambda x: MIXTURE.log_class_posterior(x)[y])(draws))
    weights = np.exp(tilt - tilt.max())
    weights /= weights.sum()
    draws = np.asarray(draws)
    tilted_mean = weights @ draws
    # The delta-method standard error of a self-normalised importance average.
    tilted_error = np.sqrt(weights**2 @ (draws - tilted_mean) ** 2)
    guided = samples[4.0]
    guided_error = np.std(guided, axis=0, ddof=1) / n**0.5
    distance = np.abs(np.mean(guided, axis=0) - tilted_mean)
    assert np.all(distance > 5 * np.hypot(guided_error, tilted_error)), (
        np.mean(guided, axis=0),
        tilted_mean,
    )


def test_guidance_composes_with_the_likelihood():
    """A guided model is a model: log_likelihood of a point under the exact
    classifier-free guided model at w = 0 is the log-density of its class (the
    ODE's density with the class's own diffused prior put back), to the solver's
    error (helpers.solve_error_bound, as in tests/test_likelihood.py)."""
    y, x = 0, MIXTURE.means[0] + jnp.array([0.3, -0.2])
    guided = scorax.classifier_free_guidance(EXACT_NOISE, y, weight=0.0)
    tolerance = 1e-9
    result = scorax.log_likelihood(
        guided,
        VP,
        x,
        stepsize_controller=dfx.PIDController(rtol=tolerance, atol=tolerance),
        parameterisation=NOISE,
    )
    component = MIXTURE.component(y)
    # Replace the library's N(0, sigma(1)^2) prior by the class's exact p_1.
    p_1 = component.marginal(VP, 1.0)
    integral = result.log_likelihood - result.prior_log_prob
    value = integral + p_1.log_prob(result.latent)
    size = max(abs(float(integral)), float(jnp.max(jnp.abs(result.latent))))
    # The integral's error, plus the latent's carried by the gradient of log p_1.
    bound = solve_error_bound(result.num_evaluations, tolerance, size, x.size + 1)
    bound *= 1 + float(jnp.linalg.norm(p_1.score(result.latent)))
    expected = component.marginal(VP, 1e-3).log_prob(x)
    assert abs(float(value - expected)) <= bound, (value - expected, bound)


# --------------------------------------------------------------- label-dropout training


def conditional_fisher(model, t, y, label, num=2000):
    """E ||model score - exact score of class y||^2 under the class's diffused law,
    for the model called with `label` (y, or -1 for the unconditional score with
    the whole mixture as the target when y is None)."""
    target = MIXTURE if y is None else MIXTURE.component(y)
    diffused = target.marginal(VP, t)
    x = diffused.sample(key=jr.key(7), sample_shape=(num,))

    def error(z):
        noise = model(z, t, label)
        score = scorax.convert(
            VP, noise, z, t, source=NOISE, target=scorax.ScorePrediction()
        )
        return jnp.sum((score - diffused.score(z)) ** 2)

    return float(jnp.mean(jax.vmap(error)(x)))


@pytest.mark.slow
def test_label_dropout_training_learns_conditional_and_unconditional_scores():
    """A class-conditional ScoreMLP trained by fit on labelled mixture data with
    diffusion_loss and label dropout 0.2 lowers the Fisher divergence to the exact
    conditional score of each class, and (through the null label) to the exact
    unconditional score, at least fivefold at three noise levels; and at t = 0.2,
    where the mixture is bimodal, the unconditional score beats the best affine
    score (helpers.best_affine_score) beyond 5 standard errors.

    Fivefold is a regression bound, as in tests/test_fit.py: the initial
    network's output is near zero, so `before` is about the zero score's
    divergence, and a network that learned nothing stays near a ratio of 1. On
    this seed the ratios run from 8.3 (the unconditional score at t = 0.2, which
    trains on a fifth of the samples) to 300."""
    x, y = MIXTURE.sample_labelled(key=jr.key(0), sample_shape=(4096,))
    model = scorax.ScoreMLP(
        (2,), width=64, depth=2, time_scale=4.0, num_classes=2, key=jr.key(1)
    )

    def loss(m, sample, key):
        x, y = sample
        return scorax.diffusion_loss(
            m, VP, x, key=key, label=y, label_dropout=0.2, t_min=1e-2
        )

    result = scorax.fit(
        model,
        loss,
        (x, y),
        optimizer=optax.adam(3e-3),
        num_steps=2000,
        batch_size=128,
        key=jr.key(2),
        progress=False,
    )
    for t in (0.2, 0.5, 0.8):
        for y_, label in ((0, 0), (1, 1), (None, -1)):
            before = conditional_fisher(model, t, y_, label)
            after = conditional_fisher(result.model, t, y_, label)
            assert after * 5 <= before, (t, y_, before, after)
    diffused = MIXTURE.marginal(VP, 0.2)
    x = diffused.sample(key=jr.key(7), sample_shape=(2000,))

    def unconditional(z):
        noise = result.model(z, 0.2, -1)
        return scorax.convert(
            VP, noise, z, 0.2, source=NOISE, target=scorax.ScorePrediction()
        )

    assert_beats_the_best_affine_score(unconditional, diffused, x)


# ------------------------------------------------------------------------ models


@eqx.filter_jit
def outputs_by_label(model, x):
    return model(x, 0.3), *(model(x, 0.3, y) for y in (-1, 0, 1, 2))


def test_conditional_models_treat_none_and_minus_one_as_no_class(key):
    mlp = scorax.ScoreMLP((2,), width=16, depth=1, num_classes=3, key=key)
    unet = scorax.UNet((8, 8), channels=(8,), num_classes=3, key=key)
    for model, x in ((mlp, jnp.ones(2)), (unet, jnp.ones((8, 8)))):
        none, null, first, second, third = outputs_by_label(model, x)
        assert_allclose(none, null, rtol=0)
        assert not jnp.allclose(first, second)
        assert not jnp.allclose(first, model(x, 0.7, 0))  # and on the time
        assert third.shape == x.shape


def test_unconditional_models_are_unchanged(key):
    """Without num_classes a ScoreMLP is built and evaluated exactly as before
    class labels existed (the same keys for the same weights)."""
    model = scorax.ScoreMLP((2,), width=16, depth=2, key=key)
    time_key, mlp_key = jr.split(key)
    features = scorax.GaussianFourierFeatures(32, scale=16.0, key=time_key)
    mlp = eqx.nn.MLP(2 + 32, 2, 16, 2, activation=jax.nn.silu, key=mlp_key)
    x, t = jnp.array([0.5, -1.0]), 0.3
    expected = mlp(jnp.concatenate([x, features(t)]))
    assert_allclose(model(x, t), expected, rtol=0)
    assert model.label_embedding is None


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda k: scorax.ScoreMLP((2,), key=k)(jnp.ones(2), 0.5, 1), "y"),
        (
            lambda k: scorax.ScoreMLP((2,), num_classes=2, key=k)(jnp.ones(2), 0.5, 2),
            "y",
        ),
        (lambda k: scorax.ScoreMLP((2,), num_classes=0, key=k), "num_classes"),
        (
            lambda k: scorax.diffusion_loss(
                EXACT_NOISE, VP, jnp.ones(2), key=k, label=0, label_dropout=1.5
            ),
            "label_dropout",
        ),
        (
            lambda k: scorax.diffusion_loss(
                EXACT_NOISE, VP, jnp.ones(2), key=k, label_dropout=0.1
            ),
            "label_dropout",
        ),
        (
            lambda k: scorax.inpaint(
                flow,
                EXACT_NOISE,
                VP,
                jnp.ones(2),
                known=jnp.ones(3),
                mask=jnp.ones(2, bool),
                key=k,
            ),
            "known",
        ),
    ],
)
def test_bad_conditional_arguments_name_the_argument(call, name, key):
    with without_runtime_type_checking(), pytest.raises(ValueError, match=f"`{name}`"):
        call(key)


def test_label_dropout_replaces_the_label_by_the_null_label_at_its_rate():
    """Statistical: the model sees the null label -1 in a fraction p of calls,
    within 5 standard errors, and the class otherwise. The model returns the noise
    (x_t / sigma for x0 = 0) plus its label, so the noise-prediction loss is the
    squared label times the dimension over 2: 4 for class 2 and 1 for -1."""

    def model(x, t, y):
        return x / VP.sigma(t) + y

    def loss(key):
        return scorax.diffusion_loss(
            model, VP, jnp.zeros(2), key=key, t=0.5, label=2, label_dropout=0.3
        )

    losses = jax.jit(jax.vmap(loss))(jr.split(jr.key(0), 4000))
    dropped = np.isclose(np.asarray(losses), 1.0)
    assert np.all(dropped | np.isclose(np.asarray(losses), 4.0))
    assert abs(np.mean(dropped) - 0.3) <= 5 * (0.3 * 0.7 / 4000) ** 0.5


def test_labelled_data_sets():
    points, labels = scorax.datasets.two_moons(4000, key=jr.key(0), labels=True)
    assert_allclose(points, scorax.datasets.two_moons(4000, key=jr.key(0)), rtol=0)
    assert abs(float(jnp.mean(labels)) - 0.5) <= 5 * 0.5 / 4000**0.5
    # Label 0 is the upper moon.
    assert jnp.mean(points[labels == 0, 1]) > jnp.mean(points[labels == 1, 1])
    images, digits = scorax.datasets.digits(labels=True)
    assert images.shape == (1797, 8, 8) and digits.shape == (1797,)
    assert set(np.unique(np.asarray(digits))) == set(range(10))


# --------------------------------------------------------------------- inpainting

RHO = 0.8
CORRELATED = scorax.GaussianMixture(
    means=jnp.array([[0.5, -0.5]]),
    covs=jnp.array([[[1.0, RHO], [RHO, 1.0]]]),
    weights=jnp.ones(1),
)
INDEPENDENT = scorax.GaussianMixture(
    means=jnp.array([[0.5, -0.5]]),
    covs=jnp.array([[[1.0, 0.0], [0.0, 0.5]]]),
    weights=jnp.ones(1),
)
SCHEDULE = scorax.DDPMSchedule(num_steps=500, beta_max=20.0)
MASK = jnp.array([False, True])  # the second coordinate is known
KNOWN = jnp.array([0.0, 1.5])


def ddpm(model, x, key):
    return scorax.ddpm_sample(model, SCHEDULE, x, key=key)


def assert_exact_conditional(samples, data):
    """The unknown coordinate follows the exact Gaussian conditional law given
    the known one: mean and second moment within 5 standard errors (from the
    conditional's own variance), and the known coordinate equals the known value
    exactly."""
    mean, cov = data.means[0], data.covs[0]
    mu = mean[0] + cov[0, 1] / cov[1, 1] * (KNOWN[1] - mean[1])
    variance = cov[0, 0] - cov[0, 1] ** 2 / cov[1, 1]
    assert jnp.all(samples[:, 1] == KNOWN[1])
    u, n = samples[:, 0], samples.shape[0]
    assert abs(jnp.mean(u) - mu) <= 5 * (variance / n) ** 0.5, (jnp.mean(u), mu)
    second = mu**2 + variance
    spread = (2 * variance**2 + 4 * mu**2 * variance) ** 0.5  # sd of u^2
    assert abs(jnp.mean(u**2) - second) <= 5 * spread / n**0.5, (jnp.mean(u**2), second)


def inpainted(model, data, sampler=ddpm, num=2000):
    starts = jr.normal(jr.key(5), (num, 2))
    return _inpainted(model, sampler, starts, jr.split(jr.key(6), num))


@eqx.filter_jit
def _inpainted(model, sampler, starts, keys):
    """Compiled once for the exact models of INDEPENDENT and CORRELATED (the same
    structure, the mixtures traced), once for the guided one."""
    return jax.vmap(
        lambda x, k: (
            scorax.inpaint(
                sampler, model, SCHEDULE.path, x, known=KNOWN, mask=MASK, key=k
            ).sample
        )
    )(starts, keys)


def test_replacement_feeds_the_model_a_fresh_forward_draw_of_the_known_entries():
    """Wherever the model is called at time t, its input holds alpha(t) x0 +
    sigma(t) eps in the known entries, with eps a fresh standard normal draw for
    each time, and the sampler's own state in the unknown ones. A sampler that
    only calls the model (the identity) at 2000 distinct times on VP records the
    inputs: eps = (input - alpha(t) x0) / sigma(t) has mean 0 and variance 1, and
    successive draws are uncorrelated, each within 5 standard errors (1 /
    sqrt(n), sqrt(2 / n) and 1 / sqrt(n - 1) for independent standard normals).
    The known value 3 is large, so that a draw without alpha(t) is off by far
    more (its mean error is (1 - alpha) 3 / sigma, above 1 over most times)."""
    path = scorax.VPPath()
    times = jnp.linspace(0.05, 0.95, 2000)
    x, known = jnp.array([0.3, 0.0]), jnp.array([0.0, 3.0])

    def record(model, x, key):
        inputs = jax.vmap(lambda t: model(x, t))(times)
        return scorax.SampleResult(
            sample=x,
            num_evaluations=jnp.asarray(times.size),
            trajectory=inputs,
            times=times,
        )

    result = eqx.filter_jit(scorax.inpaint)(
        record, lambda x, t: x, path, x, known=known, mask=MASK, key=jr.key(9)
    )
    inputs = result.trajectory
    assert inputs is not None
    assert jnp.all(inputs[:, 0] == x[0])
    alpha, sigma = jax.vmap(path.alpha)(times), jax.vmap(path.sigma)(times)
    eps = np.asarray((inputs[:, 1] - alpha * known[1]) / sigma)
    n = eps.size
    assert abs(np.mean(eps)) <= 5 / n**0.5, np.mean(eps)
    assert abs(np.var(eps, ddof=1) - 1) <= 5 * (2 / (n - 1)) ** 0.5, np.var(eps)
    lag = np.mean(eps[:-1] * eps[1:])
    assert abs(lag) <= 5 / (n - 1) ** 0.5, lag


def test_replacement_inpainting_is_exact_when_the_known_part_is_independent():
    """With the exact score of data whose known coordinate is independent of the
    unknown one, replacement inpainting samples the exact conditional (here the
    marginal) law, and keeps the known coordinate exactly."""
    model = scorax.testing.ExactModel(INDEPENDENT, SCHEDULE.path, NOISE)
    assert_exact_conditional(inpainted(model, INDEPENDENT), INDEPENDENT)


def test_posterior_guidance_with_the_exact_likelihood_inpaints_exactly():
    """For correlated data, guiding the exact score by the exact likelihood of the
    known coordinate (GaussianMixture.posterior_log_prob) gives the exact
    posterior score, and replacement on top keeps the known coordinate exact: the
    unknown coordinate follows the exact Gaussian conditional law."""
    path = SCHEDULE.path
    model = scorax.posterior_guidance(
        scorax.testing.ExactModel(CORRELATED, path, NOISE),
        lambda x, t: CORRELATED.posterior_log_prob(path, x, t, KNOWN, MASK),
        path=path,
    )
    assert_exact_conditional(inpainted(model, CORRELATED), CORRELATED)


def test_replacement_alone_is_biased_for_correlated_data_as_documented():
    """The documented limitation, measured: for correlation 0.8, replacement alone
    conditions on the noisy known value and misses the conditional mean 1.2 by
    about 40% (far outside 5 standard errors)."""
    model = scorax.testing.ExactModel(CORRELATED, SCHEDULE.path, NOISE)
    samples = inpainted(model, CORRELATED)
    mu = 0.5 + RHO * (KNOWN[1] + 0.5)
    assert jnp.all(samples[:, 1] == KNOWN[1])
    assert float(jnp.mean(samples[:, 0])) < mu - 0.3
