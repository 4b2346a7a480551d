"""scorax.testing itself: its strategies draw what they promise, and every check
fails on a deliberately wrong input, so that none can pass vacuously. (The
built-in paths, objectives and samplers passing the checks is tested where each
lives.)"""

import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis.errors import NoSuchExample

import scorax
import scorax.testing as checks

from .helpers import EXACT_NOISE, MIXTURE, VP, without_runtime_type_checking


# ------------------------------------------------------------------- strategies


# The nearest times the strategy documents, pinned (float32 is the tight end).
@example(t=1e-8)
@example(t=1 - 1e-7)
@given(t=checks.times())
def test_times_lie_strictly_inside_the_unit_interval(t):
    assert 0 < t < 1
    assert 0 < jnp.float32(t) < 1  # also in float32


@given(t=checks.times(min_value=0.2, max_value=0.6))
def test_times_respect_their_bounds(t):
    assert 0.2 < t < 0.6


def test_times_reach_close_to_both_ends():
    """The near-end draws are there: Hypothesis finds times within 1e-6 of each
    end."""
    from hypothesis import find

    assert find(checks.times(), lambda t: t < 1e-6) < 1e-6
    assert find(checks.times(), lambda t: t > 1 - 1e-6) > 1 - 1e-6


@settings(max_examples=30)
@given(path=checks.gaussian_paths())
def test_gaussian_paths_are_valid_built_in_paths(path):
    assert isinstance(path, scorax.AbstractGaussianPath)
    assert path.alpha(0.0) > 0 and path.sigma(1.0) > 0


def test_gaussian_paths_reach_every_kind():
    from hypothesis import find

    def of_kind(kind):
        return lambda path: type(path) is kind

    for kind in (
        scorax.VPPath,
        scorax.SubVPPath,
        scorax.VEPath,
        scorax.CosinePath,
        scorax.LinearPath,
        scorax.EDMPath,
    ):
        path = find(checks.gaussian_paths(), of_kind(kind))
        assert isinstance(path, kind)
        assert path.alpha(0.0) > 0 and path.sigma(1.0) > 0
    only = find(checks.gaussian_paths(kinds=[scorax.VEPath]), lambda p: True)
    assert isinstance(only, scorax.VEPath)


@given(mixture=checks.gaussian_mixtures(dim=3, num_components=4))
def test_gaussian_mixtures_are_well_conditioned(mixture):
    """Eigenvalues of every covariance in [0.3, 0.3 + 2.25 d], weights at least
    e^-2 / K, in JAX's default float (float64 in this suite)."""
    assert mixture.means.shape == (4, 3) and mixture.means.dtype == jnp.float64
    eigenvalues = np.linalg.eigvalsh(np.asarray(mixture.covs))
    assert np.all(eigenvalues >= 0.3 - 1e-12)
    assert np.all(eigenvalues <= 0.3 + 2.25 * 3 + 1e-12)
    assert np.all(np.asarray(mixture.weights) >= np.exp(-2) / 4 - 1e-12)


@given(mixture=checks.gaussian_mixtures(dtype=jnp.float32))
def test_gaussian_mixtures_keep_their_dtype(mixture):
    assert mixture.means.dtype == mixture.covs.dtype == jnp.float32


@given(dtype=checks.dtypes(), parameterisation=checks.parameterisations())
def test_dtypes_and_parameterisations(dtype, parameterisation):
    assert dtype in (np.dtype(np.float32), np.dtype(np.float64))  # x64 is on here
    assert isinstance(parameterisation, scorax.AbstractParameterisation)


def test_dtypes_offer_float64_only_with_x64():
    from hypothesis import find

    assert find(checks.dtypes(), lambda d: d == np.float64) == np.float64
    jax.config.update("jax_enable_x64", False)
    try:
        assert (
            find(checks.dtypes(), lambda d: True, settings=settings(database=None))
            == np.float32
        )
        with pytest.raises(NoSuchExample):
            find(checks.dtypes(), lambda d: d == np.float64)
    finally:
        jax.config.update("jax_enable_x64", True)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: checks.times(min_value=0.5, max_value=0.5), "min_value"),
        (lambda: checks.times(min_value=0.4, max_value=0.42), "near_ends"),
        (lambda: checks.gaussian_paths(kinds=[]), "kinds"),
        (lambda: checks.gaussian_mixtures(dim=0), "dim"),
        (lambda: checks.gaussian_mixtures(num_components=1.5), "num_components"),
    ],
)
def test_bad_strategy_arguments_name_the_argument(call, name):
    with without_runtime_type_checking(), pytest.raises(ValueError, match=f"`{name}`"):
        call()


# ----------------------------------------------------------------- check_path


class Buggy(scorax.AbstractGaussianPath):
    """A VP path with one deliberate mistake, chosen by `bug`."""

    bug: str = eqx.field(static=True)

    def alpha(self, t):
        return VP.alpha(t)

    def sigma(self, t):
        if self.bug == "float32 cancellation":  # sqrt(1 - alpha^2): fine in float64
            return jnp.sqrt(1 - VP.alpha(t) ** 2)
        return VP.sigma(t)

    def alpha_derivative(self, t):
        return VP.alpha_derivative(t)

    def sigma_derivative(self, t):
        scale = 1.001 if self.bug == "sigma derivative" else 1.0
        return scale * VP.sigma_derivative(t)

    def diffusion_squared(self, t):
        scale = 1.01 if self.bug == "diffusion" else 1.0
        return scale * VP.diffusion_squared(t)

    def _inverse_log_snr(self, log_snr):
        shift = 1e-3 if self.bug == "inverse" else 0.0
        return VP._inverse_log_snr(log_snr) + shift

    def conditional_score(self, x_t, x0, t):
        if self.bug == "score sign":
            return -super().conditional_score(x_t, x0, t)
        return super().conditional_score(x_t, x0, t)

    def drift(self, x, t):
        if self.bug == "nan drift at the data end":
            return jnp.where(jnp.asarray(t) == 0, jnp.nan, 1.0) * super().drift(x, t)
        return super().drift(x, t)


@pytest.mark.parametrize(
    "bug, identity",
    [
        ("sigma derivative", "sigma_derivative"),
        ("diffusion", "2 f(t) sigma"),
        ("score sign", "grad log N"),
        ("inverse", "inverse_log_snr"),
        ("nan drift at the data end", "drift at an end"),
        ("float32 cancellation", "sigma(t) in float32"),
    ],
)
def test_check_path_fails_on_a_wrong_path(bug, identity):
    """Each mistake fails the identity it breaks, with a report naming it and the
    tolerance it comes from."""
    with pytest.raises(AssertionError, match="check_path") as failure:
        checks.check_path(Buggy(bug=bug))
    assert identity in str(failure.value)
    if bug not in ("nan drift at the data end",):
        assert "tolerance" in str(failure.value)


def test_check_path_passes_the_correct_version_of_the_wrong_path():
    checks.check_path(Buggy(bug="none"))


def test_check_path_rejects_times_outside_the_open_interval():
    with pytest.raises(ValueError, match="`times`"):
        checks.check_path(VP, times=[0.0, 0.5])


# ------------------------------------------------- check_parameterisation_roundtrip


class VPrediction(scorax.AbstractParameterisation):
    """The v-prediction of Salimans & Ho, v = alpha eps - sigma x0, with an
    optional sign mistake in its noise coefficients."""

    wrong: bool = eqx.field(static=True, default=False)

    def noise_coefficients(self, path, t):
        # x_t = alpha x0 + sigma eps and v = alpha eps - sigma x0 give
        # eps = (sigma x_t + alpha v) / (alpha^2 + sigma^2).
        alpha, sigma = path.alpha(t), path.sigma(t)
        norm = alpha**2 + sigma**2
        sign = -1.0 if self.wrong else 1.0
        return sigma / norm, sign * alpha / norm


def v_definition(path, x0, eps, t):
    return path.alpha(t) * eps - path.sigma(t) * x0


class Singular(scorax.AbstractParameterisation):
    """A parameterisation whose coefficient vanishes at t = 0.5."""

    def noise_coefficients(self, path, t):
        return jnp.zeros_like(t), t - 0.5


@pytest.mark.parametrize("path", [VP, scorax.EDMPath()], ids=repr)
def test_a_user_parameterisation_with_its_definition_passes(path):
    checks.check_parameterisation_roundtrip(
        path,
        parameterisations=[scorax.NoisePrediction(), VPrediction()],
        definitions={VPrediction: v_definition},
    )


def test_a_wrong_user_parameterisation_fails_its_meaning():
    with pytest.raises(AssertionError, match="what NoisePrediction predicts"):
        checks.check_parameterisation_roundtrip(
            VP,
            parameterisations=[scorax.NoisePrediction(), VPrediction(wrong=True)],
            definitions={VPrediction: v_definition},
        )


def test_a_singular_conversion_fails_the_roundtrip_check():
    with pytest.raises(AssertionError, match="convert is defined"):
        checks.check_parameterisation_roundtrip(
            VP,
            parameterisations=[scorax.NoisePrediction(), Singular()],
            times=[0.3, 0.5],
        )


# --------------------------------------------------------- check_objective_minimiser

DATA = MIXTURE.sample(key=jr.key(1), sample_shape=(4096,))


def noise_regression_with_a_sign_error(model, x, key):
    """diffusion_loss's noise regression with target -eps: its minimiser is minus
    the exact noise prediction."""
    t_key, noise_key = jr.split(key)
    t = jr.uniform(t_key, (), minval=1e-3, maxval=1.0)
    x_t, eps = VP.sample(x, t, key=noise_key)
    return jnp.sum((model(x_t, t) + eps) ** 2)


@pytest.mark.parametrize(
    "loss, identity",
    [
        (noise_regression_with_a_sign_error, "E[d loss / d theta] = 0"),
        (
            lambda m, x, k: -scorax.diffusion_loss(m, VP, x, key=k),
            "d^2 loss / d theta^2] >= 0",
        ),
        (lambda m, x, k: jnp.sum(x**2), "the loss depends on the model"),
    ],
    ids=["sign error in the target", "maximised", "ignores the model"],
)
def test_check_objective_minimiser_fails_on_a_wrong_objective(loss, identity):
    with pytest.raises(AssertionError, match="check_objective_minimiser") as failure:
        checks.check_objective_minimiser(loss, EXACT_NOISE, DATA)
    assert identity in str(failure.value)


def test_check_objective_minimiser_fails_at_a_wrong_minimiser():
    """The right objective at half the exact score."""
    with pytest.raises(AssertionError, match="E\\[d loss / d theta\\] = 0"):
        checks.check_objective_minimiser(
            lambda m, x, k: scorax.implicit_score_matching(m, x),
            lambda x: 0.5 * MIXTURE.score(x),
            DATA,
        )


# ------------------------------------------------------------------ check_unbiased


def f(x):
    return jnp.sin(x) * x[::-1]


X = jnp.array([0.3, -1.2, 0.7])
TRACE = scorax.exact_trace(f, X)[0]


def hutchinson(key):
    return scorax.hutchinson_trace(f, X, key=key, num_probes=3)


def test_check_unbiased_passes_an_exact_estimator():
    checks.check_unbiased(lambda key: scorax.exact_trace(f, X), TRACE, num_trials=10)


@pytest.mark.parametrize(
    "estimator, identity",
    [
        (lambda key: hutchinson(key)[0] + 0.2, r"E\[estimate\] = exact"),
        (
            lambda key: (hutchinson(key)[0], 1.3 * hutchinson(key)[1]),
            "calibrated",
        ),
        (
            # The sample standard deviation with ddof = 0: too small by 1/m.
            lambda key: (hutchinson(key)[0], hutchinson(key)[1] * (2 / 3) ** 0.5),
            "calibrated",
        ),
        (lambda key: (hutchinson(key)[0], jnp.nan), "finite"),
    ],
    ids=["biased", "standard error too large", "ddof 0", "nan standard error"],
)
def test_check_unbiased_fails_on_a_wrong_estimator(estimator, identity):
    with pytest.raises(AssertionError, match=identity):
        checks.check_unbiased(estimator, TRACE, num_trials=4000)


# ------------------------------------------------- check_sampler and evaluation counts

START = jax.vmap(lambda k: VP.prior_sample(key=k, shape=(2,)))(
    jr.split(jr.key(3), 1000)
)
SCORE_MODEL = checks.ExactModel(MIXTURE, VP, scorax.ScorePrediction())


def flow(model, x, key, **kwargs):
    return scorax.probability_flow_sample(
        model, VP, x, parameterisation=scorax.ScorePrediction(), **kwargs
    )


@pytest.mark.parametrize(
    "sampler, identity",
    [
        # Stopped at t = 0.2 without denoising: data blurred by noise of scale 0.45.
        (
            lambda m, x, k: flow(m, x, k, t_min=0.2, denoise=False),
            "moments",
        ),
        # A score 20% too small: samples too spread.
        (
            lambda m, x, k: flow(lambda y, t: 0.8 * m(y, t), x, k),
            "moments",
        ),
        # The Gaussian with the mixture's first and second moments: every moment
        # right, the distribution wrong (one mode, not two).
        (
            lambda m, x, k: eqx.tree_at(
                lambda r: r.sample,
                flow(m, x, k),
                replace_fn=lambda _: MOMENT_MATCHED.sample(key=k),
            ),
            "sliced Wasserstein",
        ),
        # Right samples, one evaluation not reported.
        (
            lambda m, x, k: eqx.tree_at(
                lambda r: r.num_evaluations,
                flow(m, x, k),
                replace_fn=lambda n: n - 1,
            ),
            "num_evaluations",
        ),
    ],
    ids=["stops early", "score too small", "one mode", "miscounts"],
)
def test_check_sampler_fails_on_a_wrong_sampler(sampler, identity):
    with pytest.raises(
        AssertionError, match=r"check_sampler|check_evaluation_count"
    ) as failure:
        checks.check_sampler(sampler, SCORE_MODEL, START, MIXTURE)
    assert identity in str(failure.value)


# The seeds' mixture's moments: mean 0, E[x x^T] = [[5, 4], [4, 5]].
MOMENT_MATCHED = scorax.GaussianMixture(
    means=jnp.zeros((1, 2)),
    covs=jnp.array([[[5.0, 4.0], [4.0, 5.0]]]),
    weights=jnp.ones(1),
)


def prior_points(key, n):
    return jax.vmap(lambda k: VP.prior_sample(key=k, shape=(2,)))(jr.split(key, n))


def test_check_sampler_has_the_power_it_states():
    """Asked to detect a relative moment error of 3% (power 0.99 at 5 standard
    errors), the check draws the samples that needs (about 60,000 for this
    mixture; the detectable effect it returns is at most 3%), passes the exact
    probability-flow sampler and fails the same sampler with samples scaled by
    sqrt(1.03), whose second moments are 3% too large."""
    report = checks.check_sampler(
        flow, SCORE_MODEL, prior_points, MIXTURE, detect=0.03, num_counted=0
    )
    assert report.detectable <= 0.03
    assert 50_000 < report.num_samples < 70_000
    assert report.largest_error <= 5

    def inflated(m, x, k):
        return eqx.tree_at(
            lambda r: r.sample, flow(m, x, k), replace_fn=lambda y: 1.03**0.5 * y
        )

    with pytest.raises(AssertionError, match="moments") as failure:
        checks.check_sampler(
            inflated, SCORE_MODEL, prior_points, MIXTURE, detect=0.03, num_counted=0
        )
    assert "fails with probability 0.99" in str(failure.value)


@pytest.mark.parametrize(
    "start, options, message",
    [
        (START, {"detect": 0.03}, r"`start` holds 1000 .* needs n >= 5\d{4}"),
        (prior_points, {}, "`detect` is required when `start` is a function"),
        (START, {"detect": 0.0}, "`detect` must be finite and > 0"),
        (START, {"power": 1.0}, r"`power` must be in \[0.5, 1\)"),
    ],
)
def test_check_sampler_refuses_a_power_it_cannot_have(start, options, message):
    with pytest.raises(ValueError, match=message):
        checks.check_sampler(flow, SCORE_MODEL, start, MIXTURE, **options)


def test_check_evaluation_count_fails_on_a_hidden_call():
    def sampler(model, x, key):
        result = scorax.ddim_sample(
            model, scorax.DDPMSchedule(num_steps=10, beta_max=5.0), x, num_steps=3
        )
        hidden = model(x, 0.5)  # an evaluation the result does not report
        return eqx.tree_at(lambda r: r.sample, result, result.sample + 0 * hidden)

    with pytest.raises(AssertionError, match="3 reported"):
        checks.check_evaluation_count(sampler, SCORE_MODEL, START)


# ----------------------------------------------------------------- optional extra


def test_scorax_imports_without_hypothesis_and_testing_says_what_to_install():
    """Hypothesis is the `testing` extra: `import scorax` never needs it, and
    `import scorax.testing` without it says how to install it."""
    code = (
        "import sys\n"
        "sys.modules['hypothesis'] = None  # as if not installed\n"
        "import scorax\n"
        "assert 'scorax.testing' not in sys.modules\n"
        "try:\n"
        "    import scorax.testing\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert 'pip install "scorax[testing]"' in done.stdout
