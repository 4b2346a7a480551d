"""Shared instances, strategies and tolerances: a new path or parameterisation
added here is tested everywhere at once."""

import contextlib

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jaxtyping
import numpy as np
import pytest
from hypothesis import strategies as st

import scorax
import scorax.testing


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

# Relative tolerance for identities that hold exactly in real arithmetic: 1000
# ulps of the dtype (1.2e-4 in float32, 2.2e-13 in float64), room for the
# transcendental functions and the few roundings of one formula, far below any
# mathematical error. A test that composes several maps multiplies it by a
# stated condition number.
ULPS = 1000
RTOL = {
    dtype: ULPS * float(jnp.finfo(dtype).eps) for dtype in (jnp.float32, jnp.float64)
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


@contextlib.contextmanager
def without_runtime_type_checking():
    """Reach the library's own argument checks, as a user without jaxtyping's
    runtime checking does."""
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", False)


def gaussian_flow_map(mean, cov, path, x, t_from, t_to):
    """The exact probability-flow map between times of a Gaussian path for data
    N(mean, cov): x_s = alpha_s mu + C_s C_t^{-1} (x_t - alpha_t mu), with
    C_t = (alpha_t^2 cov + sigma_t^2 I)^{1/2} (all C_t commute)."""
    eigenvalues, vectors = jnp.linalg.eigh(cov)

    def scale(t):
        return jnp.sqrt(path.alpha(t) ** 2 * eigenvalues + path.sigma(t) ** 2)

    ratio = vectors @ jnp.diag(scale(t_to) / scale(t_from)) @ vectors.T
    return path.alpha(t_to) * mean + ratio @ (x - path.alpha(t_from) * mean)
