import jax
import jax.numpy as jnp
import jax.random as jr
import jaxtyping
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings, strategies as st

import scorax

from .helpers import assert_allclose, MIXTURE, without_runtime_type_checking


def test_sliced_wasserstein_of_a_shift_is_its_mean_projection(key):
    """SW_2(x, x + mu)^2 = E_theta (theta . mu)^2 = |mu|^2 / d exactly per direction
    set; statistical over directions (5 standard errors, estimated from fresh
    directions)."""
    d, num = 3, 4000
    x = jr.normal(key, (500, d), jnp.float64)
    mu = jnp.array([1.0, -2.0, 0.5], jnp.float64)
    value = scorax.sliced_wasserstein(
        x, x + mu[None], key=jr.key(1), num_projections=num
    )
    theta = jr.normal(jr.key(2), (num, d), jnp.float64)
    theta = theta / jnp.linalg.norm(theta, axis=-1, keepdims=True)
    per_direction = (theta @ mu) ** 2
    standard_error = jnp.std(per_direction) / jnp.sqrt(num)
    assert abs(value**2 - jnp.sum(mu**2) / d) <= 5 * standard_error


def test_sliced_wasserstein_is_zero_for_a_permuted_sample_and_shrinks_with_n(key):
    x = jr.normal(key, (300, 2))
    assert scorax.sliced_wasserstein(x, jr.permutation(jr.key(1), x), key=key) == 0
    floors = []
    for n in (100, 6400):
        a, b = jr.normal(jr.key(n), (2, n, 2))
        floors.append(scorax.sliced_wasserstein(a, b, key=key))
    # The two-sample noise floor falls like n^{-1/2}: 64x the data, about 1/8.
    assert 1 / 32 < floors[1] / floors[0] < 1 / 2


def test_sliced_wasserstein_compares_samples_of_different_sizes(key):
    x = jr.normal(key, (200, 2))
    y = jnp.concatenate([x, x])  # the same empirical law, twice as many points
    assert scorax.sliced_wasserstein(x, y, key=key) < 0.05
    assert scorax.sliced_wasserstein(x, y + 1.0, key=key) > 0.5


def _naive_mmd(x, y, h):
    def k(a, b):
        return jnp.exp(-jnp.sum((a - b) ** 2) / (2 * h**2))

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (
        n * (n - 1)
    )
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (
        m * (m - 1)
    )
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_mmd_matches_its_formula(key):
    x, y = jr.normal(key, (2, 6, 2), jnp.float64)
    assert_allclose(
        scorax.mmd(x, y[:5], bandwidth=0.7), _naive_mmd(x, y[:5], 0.7), rtol=1e-10
    )


def test_mmd_is_unbiased_and_detects_a_difference(key):
    """Statistical: over many replicates the estimate averages to zero for one law
    (within 5 standard errors) and is clearly positive for two."""
    reps = 400
    same = jax.vmap(lambda k: scorax.mmd(*jr.normal(k, (2, 40, 2)), bandwidth=1.0))(
        jr.split(key, reps)
    )
    assert abs(jnp.mean(same)) <= 5 * jnp.std(same) / jnp.sqrt(reps)
    shifted = jax.vmap(
        lambda k: (lambda a, b: scorax.mmd(a, b + 0.7))(*jr.normal(k, (2, 40, 2)))
    )(jr.split(key, reps))
    assert jnp.mean(shifted) > 5 * jnp.std(shifted) / jnp.sqrt(reps)
    assert jnp.isfinite(
        scorax.mmd(jr.normal(key, (30, 2)), jr.normal(key, (20, 2)))
    )  # median rule


def test_fisher_divergence_of_gaussians_matches_closed_form(key):
    """E_p ||s_p - s_q||^2 for p = N(0, I), q = N(m, I): |m|^2 exactly pointwise."""
    m = jnp.array([1.0, 2.0])
    x = jr.normal(key, (100, 2))
    value = scorax.fisher_divergence(lambda y: -(y - m), lambda y: -y, x)
    assert_allclose(value, jnp.sum(m**2), rtol=1e-6)
    samples = MIXTURE.sample(key=key, sample_shape=(50,))
    assert scorax.fisher_divergence(MIXTURE.score, MIXTURE.score, samples) == 0


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda x: scorax.sliced_wasserstein(x, x, key=jr.key(0), num_projections=0),
            "`num_projections` must be an integer >= 1",
        ),
        (
            lambda x: scorax.sliced_wasserstein(x, x[:, :1], key=jr.key(0)),
            "same dimension",
        ),
        (
            lambda x: scorax.mmd(x, x, bandwidth=-1.0),
            "`bandwidth` must be finite and > 0",
        ),
        (lambda x: scorax.mmd(x[:1], x), "at least 2 points"),
    ],
)
def test_bad_metric_arguments_raise(call, match):
    """ValueError naming the argument; with runtime type checking on, a dimension
    mismatch may be caught first by the shared "d" of the annotations."""
    with pytest.raises((ValueError, jaxtyping.TypeCheckError)):
        call(jnp.ones((4, 2)))
    with without_runtime_type_checking(), pytest.raises(ValueError, match=match):
        call(jnp.ones((4, 2)))


TIMES = jnp.array([0.05, 0.3, 0.9], jnp.float64)


def _mixture64():
    return scorax.GaussianMixture(
        MIXTURE.means.astype(jnp.float64),
        MIXTURE.covs.astype(jnp.float64),
        MIXTURE.weights.astype(jnp.float64),
    )


@pytest.mark.parametrize(
    "parameterisation", [scorax.ScorePrediction(), scorax.NoisePrediction()]
)
def test_fisher_divergence_by_time_of_a_shifted_score_is_the_shift(
    key, parameterisation
):
    """A model whose score is the exact diffused score plus a constant c, given in
    any parameterisation: D(t) = |c|^2 at every time, and R(t) = |c|^2 / the mean
    squared exact score on the same draws of x_t (one key per time, split from
    `key`), computed here by hand."""
    mixture, path = _mixture64(), scorax.VPPath()
    shift = jnp.array([0.3, -0.4], jnp.float64)
    exact = scorax.testing.ExactModel(mixture, path)

    def model(x, t):
        score = exact(x, t) + shift
        return scorax.convert(
            path, score, x, t, source=scorax.ScorePrediction(), target=parameterisation
        )

    divergence, relative = scorax.fisher_divergence_by_time(
        model,
        path,
        mixture,
        TIMES,
        key=key,
        num_samples=500,
        parameterisation=parameterisation,
    )
    assert divergence.shape == relative.shape == TIMES.shape
    assert_allclose(divergence, jnp.sum(shift**2), rtol=1e-10)
    for t, k, value in zip(TIMES, jr.split(key, TIMES.shape[0]), relative, strict=True):
        marginal = mixture.marginal(path, t)
        points = marginal.sample(key=k, sample_shape=(500,))
        scale = jnp.mean(jnp.sum(jax.vmap(marginal.score)(points) ** 2, axis=-1))
        assert_allclose(value, jnp.sum(shift**2) / scale, rtol=1e-10)


def test_fisher_divergence_by_time_is_zero_for_the_exact_score_and_one_for_zero(key):
    """R(t) = 0 for the exact model and R(t) = 1 for the zero score, whose
    divergence is the denominator itself; on every kind of path."""
    mixture = _mixture64()
    for path in (scorax.VPPath(), scorax.VEPath(), scorax.LinearPath()):
        exact = scorax.testing.ExactModel(mixture, path, scorax.NoisePrediction())
        divergence, relative = scorax.fisher_divergence_by_time(
            exact, path, mixture, TIMES, key=key, num_samples=200
        )
        assert jnp.all(divergence <= 1e-20) and jnp.all(relative <= 1e-20)
        _, relative = scorax.fisher_divergence_by_time(
            lambda x, t: jnp.zeros_like(x),
            path,
            mixture,
            TIMES,
            key=key,
            num_samples=200,
            parameterisation=scorax.ScorePrediction(),
        )
        assert_allclose(relative, 1.0, rtol=1e-14)


def test_fisher_divergence_by_time_names_a_bad_sample_count(key):
    with pytest.raises(ValueError, match="`num_samples` must be an integer >= 1"):
        scorax.fisher_divergence_by_time(
            lambda x, t: x, scorax.VPPath(), MIXTURE, TIMES, key=key, num_samples=0
        )


@settings(max_examples=10)
@given(
    seed=st.integers(0, 2**16),
    k=st.integers(1, 5),
    n=st.integers(8, 40),
    m=st.integers(8, 40),
)
def test_frechet_distance_is_the_gaussian_w2_of_the_sample_moments(seed, k, n, m):
    """frechet_distance = ||mu_x - mu_y||^2 + tr(S_x + S_y - 2 (S_x S_y)^(1/2)), the
    squared W2 distance between the Gaussians with the samples' means and
    unbiased covariances, the matrix root by SciPy's sqrtm (a Schur method,
    independent of the eigendecompositions the library uses); to the rounding of
    the roots, 1e-8 of the traces."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k)) @ rng.normal(size=(k, k)) + rng.normal(size=k)
    y = rng.normal(size=(m, k)) * rng.uniform(0.2, 3, size=k)
    got = float(scorax.frechet_distance(jnp.asarray(x), jnp.asarray(y)))
    cov_x = np.atleast_2d(np.cov(x, rowvar=False))
    cov_y = np.atleast_2d(np.cov(y, rowvar=False))
    root = np.real(scipy.linalg.sqrtm(cov_x @ cov_y))
    expected = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(cov_x + cov_y - 2 * root)
    scale = np.trace(cov_x) + np.trace(cov_y) + 1
    assert abs(got - expected) <= 1e-8 * scale, (got, expected)


def test_frechet_distance_of_a_sample_to_itself_and_to_its_shift():
    """0 for the same sample (to rounding); ||c||^2 for the sample shifted by c,
    whose covariance is the same."""
    x = jr.normal(jr.key(0), (200, 6))
    shift = jnp.arange(6.0) / 3
    assert abs(float(scorax.frechet_distance(x, x))) <= 1e-10
    assert_allclose(
        scorax.frechet_distance(x + shift[None], x), jnp.sum(shift**2), rtol=1e-9
    )


@pytest.mark.parametrize(
    "x, y, message",
    [
        (jnp.zeros((1, 3)), jnp.zeros((5, 3)), "`x` must be"),
        (jnp.zeros((5, 3)), jnp.zeros(5), "`y` must be"),
        (jnp.zeros((5, 3)), jnp.zeros((5, 2)), "same number of features"),
    ],
)
def test_frechet_distance_names_bad_samples(x, y, message):
    """Refused with the argument's name (beyond the type check, which refuses the
    wrong rank first)."""
    with without_runtime_type_checking(), pytest.raises(ValueError, match=message):
        scorax.frechet_distance(x, y)
