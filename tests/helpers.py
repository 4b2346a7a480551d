"""Shared instances, constants, strategies, tolerances and the one Gaussian
oracle: a new path or parameterisation added here is tested everywhere at once."""

import contextlib
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jaxtyping
import numpy as np
import pytest
from hypothesis import example, strategies as st
from jaxtyping import Array

import scorax
import scorax.testing

# Relative tolerance for identities that hold exactly in real arithmetic:
# scorax.testing's own `relative_tolerance(dtype)`, 1000 ulps of the dtype (1.2e-4
# in float32, 2.2e-13 in float64), room for the transcendental functions and the
# few roundings of one formula, far below any mathematical error. A test that
# composes several maps multiplies it by a stated condition number. (Not exported
# by scorax.testing; imported from its one definition rather than copied.)
from scorax.testing._report import relative_tolerance as relative_tolerance


all_paths = (
    scorax.VPPath(),
    scorax.VPPath(beta_min=0.5, beta_max=5.0),
    scorax.SubVPPath(),
    scorax.VEPath(),
    scorax.VEPath(sigma_min=0.1, sigma_max=5.0),
    scorax.CosinePath(),
    scorax.CosinePath(s=0.0),
    scorax.LinearPath(),
    scorax.EDMPath(),
)

# The kinds of path, in the order of `all_paths`.
PATH_KINDS = tuple(dict.fromkeys(type(path) for path in all_paths))

all_parameterisations = (
    scorax.ScorePrediction(),
    scorax.NoisePrediction(),
    scorax.DataPrediction(),
    scorax.VelocityPrediction(),
)

dtypes = (jnp.float32, jnp.float64)

# What a failed `eqx.error_if` raises: EquinoxRuntimeError eagerly and under
# eqx.filter_jit; under plain jax.jit, XLA's callback failure, which JAX reports
# as JaxRuntimeError or ValueError depending on where it is observed. Tests match
# the message as well, so the broad type does not make them weaker.
RUNTIME_ERRORS = (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError, ValueError)

# Constants several test modules share.
MIXTURE = scorax.datasets.gaussian_mixture()  # the seeds' two-Gaussian mixture
VP = scorax.VPPath()
# The exact model of MIXTURE on VP, predicting the noise as get_sampler reads it.
EXACT_NOISE = scorax.testing.ExactModel(MIXTURE, VP, scorax.NoisePrediction())
T_MIN = 1e-3  # the samplers' and log_likelihood's default t_min
# Paths with the largest t_max each allows (alpha(1) = 0 for cosine and linear).
PATHS_TO_T_MAX = {
    "vp": (scorax.VPPath(), 1.0),
    "subvp": (scorax.SubVPPath(), 1.0),
    "ve": (scorax.VEPath(sigma_min=0.01, sigma_max=10.0), 1.0),
    "edm": (scorax.EDMPath(), 1.0),
    "cosine": (scorax.CosinePath(), 0.99),
    "linear": (scorax.LinearPath(), 0.99),
}


def ids(values) -> list[str]:
    return [repr(v) for v in values]


# Parametrisations shared by the test modules.
paths = pytest.mark.parametrize("path", all_paths, ids=ids(all_paths))
precisions = pytest.mark.parametrize("dtype", dtypes, ids=lambda d: jnp.dtype(d).name)

# Every path in one precision, alternating along `all_paths`, so that each path
# class with two instances (VP, VE, cosine) runs in both and the suite compiles
# half as many programs as paths x precisions; the dtype handling is shared by
# every path (the abstract base casts), the formulas are per path.
_alternating = [(path, dtypes[i % 2]) for i, path in enumerate(all_paths)]
paths_in_precisions = pytest.mark.parametrize(
    "path, dtype",
    _alternating,
    ids=[f"{path!r}-{jnp.dtype(dtype).name}" for path, dtype in _alternating],
)


# One path of each kind at an edge of scorax.testing.gaussian_paths' ranges (the
# steepest VP and the gentlest sub-VP schedule, the widest VE and EDM noise
# ranges with EDM's largest rho, the largest cosine offset; keep in step with its
# table), each with a time close to one end, alternating ends and precisions,
# pinned as Hypothesis @examples, so
# that a property "for random paths" sees every kind and both ends on every run,
# whatever the derandomised draws.
EDGE_CASES = [
    (scorax.VPPath(beta_min=1.0, beta_max=25.0), 1e-8, jnp.float64),
    (scorax.SubVPPath(beta_min=0.05, beta_max=2.0), 1 - 1e-7, jnp.float32),
    (scorax.VEPath(sigma_min=0.005, sigma_max=80.0), 1e-8, jnp.float32),
    (scorax.CosinePath(s=0.02), 1 - 1e-7, jnp.float64),
    (scorax.LinearPath(), 1e-8, jnp.float64),
    (scorax.EDMPath(sigma_min=0.001, sigma_max=100.0, rho=10.0), 1 - 1e-7, jnp.float32),
]


def at_path_edges(*, t=None, dtype=True):
    """Pin each of EDGE_CASES as an @example of a test with arguments `path`, `t`
    (the case's time, or the fixed `t` given) and, if `dtype`, `dtype`."""

    def decorate(test):
        for path, time, precision in EDGE_CASES:
            arguments = {"path": path, "t": time if t is None else t}
            if dtype:
                arguments["dtype"] = precision
            test = example(**arguments)(test)
        return test

    return decorate


def dtype_name(dtype) -> str:
    return jnp.dtype(dtype).name


# Times strictly inside (0, 1), where every path is smooth and non-singular
# (scorax.testing.times() also draws close to the ends).
interior_times = scorax.testing.times(min_value=0.02, max_value=0.98, near_ends=False)
shapes = st.sampled_from([(), (3,), (2, 4)])  # a small set: JAX recompiles per shape
seeds = st.integers(0, 2**31 - 1)


def random_array(seed: int, shape: tuple[int, ...], dtype, scale: float = 1.0):
    return scale * jr.normal(jr.key(seed), shape, dtype)


def random_mixture(seed: int, num: int, dim: int, dtype) -> scorax.GaussianMixture:
    """A mixture with well-conditioned random covariances and uneven weights."""
    return _random_mixture(jnp.asarray(seed, jnp.uint32), num, dim, dtype)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _random_mixture(seed, num: int, dim: int, dtype) -> scorax.GaussianMixture:
    """One program per size and dtype, the seed traced: built eagerly, every new
    size would compile each operation apart."""
    k_mean, k_cov, k_weight = jr.split(jr.key(seed), 3)
    means = 2 * jr.normal(k_mean, (num, dim), dtype)
    factors = jr.normal(k_cov, (num, dim, dim), dtype)
    covs = (
        factors @ jnp.swapaxes(factors, -1, -2) / dim
        + 0.3 * jnp.eye(dim, dtype=dtype)[None]
    )
    weights = jax.nn.softmax(jr.normal(k_weight, (num,), dtype))
    return scorax.GaussianMixture(means=means, covs=covs, weights=weights)


def assert_allclose(actual, desired, *, rtol, atol=0.0):
    np.testing.assert_allclose(
        np.asarray(actual), np.asarray(desired), rtol=rtol, atol=atol
    )


def assert_rate(differences, order):
    """The order of the signed errors at n, 2n and 4n steps (arrays of any shape),
    e_n = C n^-k + D n^-(k+1) + ..., is at least `order` - 1/2, measured with the
    next term eliminated first (Richardson): g_n = 2^(k+1) e_2n - e_n =
    C n^-k + O(n^-(k+2)), so |g_n| / |g_2n| = 2^k. Its log2 is at least
    `order` - 1/2. A method of order k - 1 gives 2^(k-1), one of order k + 1
    more than 2^k. Without the elimination, C and D of opposite signs make the
    plain ratio dip far below 2^k over a pre-asymptotic range (3M on some
    Gaussians: 2.1 from 32 to 64 steps, with 3.2 before and 2.7 after)."""
    e1, e2, e4 = differences
    factor = 2.0 ** (order + 1)
    rate = float(
        jnp.log2(jnp.linalg.norm(factor * e2 - e1) / jnp.linalg.norm(factor * e4 - e2))
    )
    assert rate >= order - 0.5, ("order", rate, "claimed", order)


def solve_error_bound(num_evaluations, tolerance: float, size, num_entries: int):
    """A bound on the global error of an adaptive Tsit5 solve with a PID controller
    at atol = rtol = `tolerance`, in an entry of the state of magnitude up to
    `size`, where the state has `num_entries` entries.

    Diffrax accepts a step when the RMS over the state's entries of its local
    error estimate, in units of atol + rtol |y|, is at most 1, so each entry's
    local error is at most sqrt(num_entries) tolerance (1 + size). Tsit5 makes six
    new evaluations per step, so there are at most num_evaluations / 6 steps
    (rejected ones included). On the smooth, non-stiff flows of the exact models
    the local errors reach the end with a gain of order one and at most add up
    (the usual global-error estimate; Hairer, Norsett and Wanner, Solving ODEs I,
    section II.3). It is a bound on the solver, not a fit to it: the errors
    measured are 1e-5 to 1e-3 of it."""
    steps = float(num_evaluations) / 6
    return steps * num_entries**0.5 * tolerance * (1 + float(size))


def best_affine_score(mixture: scorax.GaussianMixture) -> scorax.GaussianMixture:
    """N(mean, cov) with the mixture's own mean and covariance, whose score is the
    best affine score for the mixture: integrating by parts, E_p||A x + b -
    grad log p||^2 = E_p||A x + b||^2 + 2 tr A + const, minimal at A = -cov^{-1},
    b = cov^{-1} mean. A learned score that beats it has learned more than two
    moments (for a mixture of separated components, its modes)."""
    mean = mixture.weights @ mixture.means
    outer = jnp.einsum("ki,kj->kij", mixture.means, mixture.means)
    second = jnp.einsum("k,kij->ij", mixture.weights, mixture.covs + outer)
    return scorax.GaussianMixture(
        means=mean[None],
        covs=(second - jnp.outer(mean, mean))[None],
        weights=jnp.ones(1, mean.dtype),
    )


def squared_errors(score_fn, target_score, x) -> np.ndarray:
    """||score_fn(x_i) - target_score(x_i)||^2 per point: the terms whose mean is
    scorax.fisher_divergence, for paired comparisons."""
    difference = jax.vmap(lambda z: score_fn(z) - target_score(z))(x)
    return np.asarray(jnp.sum(difference**2, axis=-1), np.float64)


def assert_beats_the_best_affine_score(score_fn, marginal, x):
    """The learned score's Fisher divergence to `marginal` (a GaussianMixture) on
    its samples `x` is below the best affine score's, by more than 5 standard
    errors of the paired per-point differences."""
    affine = best_affine_score(marginal).score
    difference = squared_errors(score_fn, marginal.score, x) - squared_errors(
        affine, marginal.score, x
    )
    error = np.std(difference, ddof=1) / difference.shape[0] ** 0.5
    assert np.mean(difference) < -5 * error, (np.mean(difference), error)


@contextlib.contextmanager
def without_runtime_type_checking():
    """Reach the library's own argument checks, as a user without jaxtyping's
    runtime checking does."""
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", False)


# ------------------------------------------------------------ the Gaussian oracle


class Gaussian(eqx.Module):
    """Data N(mean, cov) and its closed forms, the tests' one Gaussian oracle
    (for mixtures, and for one Gaussian's diffused score in any parameterisation,
    the library's `scorax.GaussianMixture` and `scorax.testing.ExactModel`). Along
    a Gaussian path x_t = alpha_t x_0 + sigma_t eps the law is N(alpha_t mean,
    C_t^2), C_t = (alpha_t^2 cov + sigma_t^2 I)^{1/2}, and every C_t shares the
    eigenvectors of cov, so the score and the probability-flow map are linear and
    computed through them (cheaper to compile than the mixture oracle)."""

    mean: Array
    cov: Array
    eigenvalues: Array
    vectors: Array

    def __init__(self, mean, cov):
        self.mean, self.cov = jnp.asarray(mean), jnp.asarray(cov)
        self.eigenvalues, self.vectors = jnp.linalg.eigh(self.cov)

    @staticmethod
    def of(mixture: scorax.GaussianMixture) -> "Gaussian":
        """The single component of a one-component mixture."""
        assert mixture.num_components == 1
        return Gaussian(mixture.means[0], mixture.covs[0])

    @property
    def precision(self) -> Array:
        return jnp.linalg.inv(self.cov)

    def sample(self, key, n: int) -> Array:
        return jr.multivariate_normal(key, self.mean, self.cov, (n,))

    def blurred(self, sigma) -> "Gaussian":
        """The law of x + sigma eps: N(mean, cov + sigma^2 I)."""
        return Gaussian(self.mean, self.cov + sigma**2 * jnp.eye(self.mean.shape[0]))

    def expected_square(self, weight, offset):
        """E ||weight x + offset||^2 for x ~ N(mean, cov):
        ||weight mean + offset||^2 + tr(weight cov weight^T)."""
        residual = weight @ self.mean + offset
        return residual @ residual + jnp.trace(weight @ self.cov @ weight.T)

    def variances(self, path, t) -> Array:
        """The eigenvalues of C_t^2: alpha_t^2 lambda + sigma_t^2."""
        return path.alpha(t) ** 2 * self.eigenvalues + path.sigma(t) ** 2

    def score(self, path, x, t) -> Array:
        """The diffused score -C_t^{-2} (x - alpha_t mean)."""
        z = self.vectors.T @ (x - path.alpha(t) * self.mean)
        return -self.vectors @ (z / self.variances(path, t))

    def score_model(self, path) -> "GaussianScore":
        """The diffused score as a model `model(x, t)`."""
        return GaussianScore(self, path)

    def flow_map(self, path, x, t_from, t_to) -> Array:
        """The exact probability-flow map between two times:
        x_s = alpha_s mean + C_s C_t^{-1} (x_t - alpha_t mean)."""
        scale_from = jnp.sqrt(self.variances(path, t_from))
        scale_to = jnp.sqrt(self.variances(path, t_to))
        ratio = self.vectors @ jnp.diag(scale_to / scale_from) @ self.vectors.T
        return path.alpha(t_to) * self.mean + ratio @ (
            x - path.alpha(t_from) * self.mean
        )


class GaussianScore(eqx.Module):
    """`Gaussian.score` along `path`, as a model (an Equinox module: jitted
    samplers see the Gaussian as data)."""

    gaussian: Gaussian
    path: scorax.AbstractGaussianPath

    def __call__(self, x, t):
        return self.gaussian.score(self.path, x, t)


def blurred(mixture: scorax.GaussianMixture, sigma) -> scorax.GaussianMixture:
    """The law of x + sigma eps for x from `mixture` (the perturbed density of
    denoising score matching and NCSN): sigma^2 I added to every covariance."""
    eye = jnp.eye(mixture.dim, dtype=mixture.covs.dtype)[None]
    return scorax.GaussianMixture(
        mixture.means, mixture.covs + sigma**2 * eye, mixture.weights
    )


def random_gaussian(seed: int, dim: int) -> Gaussian:
    """A float64 Gaussian with a well-conditioned random covariance
    (`random_mixture` with one component)."""
    return Gaussian.of(random_mixture(seed, 1, dim, jnp.float64))
