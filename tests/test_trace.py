import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import example, given, strategies as st

import scorax
import scorax.testing
from scorax._trace import quadratic_forms, sample_probes

from .helpers import assert_allclose, precisions, relative_tolerance, seeds


probes = pytest.mark.parametrize("probe", ["gaussian", "rademacher", "sphere"])
shapes = st.sampled_from([(1,), (4,), (2, 3)])


def linear_map(seed, shape, dtype):
    size = int(np.prod(shape))
    matrix = jr.normal(jr.key(seed), (size, size), dtype)
    return matrix, lambda x: (matrix @ x.reshape(-1)).reshape(shape)


def network(seed, size, dtype):
    mlp = eqx.nn.MLP(size, size, 16, 2, activation=jnp.tanh, key=jr.key(seed))
    return jax.tree.map(
        lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, mlp
    )


@precisions
# Pinned: full chunks and a partial last one (6 = 4 + 2), a chunk larger than
# the size (1 < 2), and one column per chunk.
@example(seed=0, shape=(2, 3), chunk_size=4)
@example(seed=1, shape=(1,), chunk_size=2)
@example(seed=2, shape=(4,), chunk_size=1)
@given(seed=seeds, shape=shapes, chunk_size=st.sampled_from([None, 1, 2, 4]))
def test_exact_trace_is_trace_of_jacobian(dtype, seed, shape, chunk_size):
    """exact_trace(f, x) = tr(jacfwd(f)(x)), for any chunking of the columns."""
    mlp = network(seed, int(np.prod(shape)), dtype)

    def f(x):
        return mlp(x.reshape(-1)).reshape(shape)

    x = jr.normal(jr.key(seed + 1), shape, dtype)
    trace, standard_error = scorax.exact_trace(f, x, chunk_size=chunk_size)
    jacobian = jax.jacfwd(f)(x).reshape(x.size, x.size)
    assert trace.dtype == dtype and standard_error == 0
    assert_allclose(
        trace,
        jnp.trace(jacobian),
        rtol=relative_tolerance(dtype),
        atol=relative_tolerance(dtype),
    )


@probes
@given(seed=seeds, shape=shapes)
def test_hutchinson_is_unbiased_for_random_matrices(probe, seed, shape):
    """Statistical: with many probes, Hutchinson's estimate lies within 5 of its own
    standard errors of the exact trace."""
    matrix, f = linear_map(seed, shape, jnp.float64)
    x = jnp.zeros(shape, jnp.float64)
    estimate, standard_error = scorax.hutchinson_trace(
        f, x, key=jr.key(seed + 1), num_probes=4000, probe=probe
    )
    if x.size == 1 and probe != "gaussian":  # v^2 = 1: the estimate is exact
        assert_allclose(estimate, jnp.trace(matrix), rtol=1e-12)
    else:
        assert abs(estimate - jnp.trace(matrix)) <= 5 * standard_error


@probes
def test_hutchinson_is_unbiased_with_a_calibrated_standard_error(probe):
    """scorax.testing.check_unbiased on the Jacobian of a nonlinear MLP: over 4000
    independent estimates with 3 probes each, the mean is within 5 standard errors
    of the exact trace, and the reported squared standard error is unbiased for
    the variance of the estimates. Few probes per estimate, so that a wrong ddof
    or sqrt(m - 1) (a bias of 1 / m in the squared error) would fail."""
    mlp = network(3, 5, jnp.float64)
    x = jr.normal(jr.key(4), (5,), jnp.float64)
    exact, _ = scorax.exact_trace(mlp, x)
    scorax.testing.check_unbiased(
        lambda k: scorax.hutchinson_trace(mlp, x, key=k, num_probes=3, probe=probe),
        exact,
        num_trials=4000,
    )


def test_single_probe_reports_infinite_standard_error(key):
    """One probe says nothing about its own spread: the error is +inf, not NaN."""
    _, standard_error = scorax.hutchinson_trace(jnp.sin, jnp.ones(3), key=key)
    assert standard_error == jnp.inf


@given(seed=seeds, size=st.sampled_from([3, 6]))
def test_rademacher_variance_not_above_gaussian_when_diagonally_dominant(seed, size):
    """Per-probe variances match 2||A_s||_F^2 (Gaussian) and 2||A_s||_F^2 -
    2 sum A_ii^2 (Rademacher), within 5 standard errors; so Rademacher is the lower
    of the two, markedly so for diagonally dominant A."""
    k_diag, k_off, k_probe = jr.split(jr.key(seed), 3)
    matrix = jnp.diag(2 + jr.uniform(k_diag, (size,), jnp.float64)) + 0.2 * jr.normal(
        k_off, (size, size), jnp.float64
    )
    symmetric = 0.5 * (matrix + matrix.T)
    frobenius = jnp.sum(symmetric**2)
    expected = {
        "gaussian": 2 * frobenius,
        "rademacher": 2 * frobenius - 2 * jnp.sum(jnp.diag(matrix) ** 2),
    }
    n = 20_000
    for probe, variance in expected.items():
        v = sample_probes(k_probe, (size,), n, probe, jnp.float64)  # pyright: ignore[reportArgumentType]
        samples = quadratic_forms(lambda u: matrix @ u, v)
        centred = samples - jnp.trace(matrix)  # the mean is known exactly
        empirical = jnp.mean(centred**2)
        assert abs(empirical - variance) <= 5 * jnp.std(centred**2) / jnp.sqrt(n)
    assert expected["rademacher"] < 0.5 * expected["gaussian"]


@probes
def test_probes_have_identity_second_moment(probe, key):
    """E[v v^T] = I for every probe kind (statistical, 5 standard errors)."""
    n, d = 20_000, 3
    v = sample_probes(key, (d,), n, probe, jnp.float64)  # pyright: ignore[reportArgumentType]
    outer = jnp.einsum("ni,nj->nij", v, v)
    standard_error = jnp.std(outer, axis=0) / jnp.sqrt(n)
    deviation = jnp.abs(jnp.mean(outer, axis=0) - jnp.eye(d))
    assert jnp.all(deviation <= 5 * standard_error + 1e-12)


def test_divergence_is_exact_without_key_and_hutchinson_with_one(key):
    mlp = network(0, 4, jnp.float64)
    x = jnp.linspace(-1.0, 1.0, 4)
    assert scorax.divergence(mlp, x) == scorax.exact_trace(mlp, x)[0]
    estimate = scorax.hutchinson_trace(mlp, x, key=key, num_probes=3)[0]
    assert scorax.divergence(mlp, x, key=key, num_probes=3) == estimate


def test_trace_estimators_compose_with_jit_vmap_and_grad(key):
    """d tr(A x) / dA = I through exact_trace, and both estimators vmap and jit."""
    x = jnp.ones(3)

    def trace_of(matrix):
        return scorax.exact_trace(lambda y: matrix @ y, x)[0]

    assert_allclose(
        jax.grad(trace_of)(jnp.zeros((3, 3))), jnp.eye(3), rtol=0, atol=1e-12
    )
    xs = jr.normal(key, (5, 3))
    batched = jax.jit(
        jax.vmap(lambda y, k: scorax.hutchinson_trace(jnp.sin, y, key=k, num_probes=2))
    )
    estimates, errors = batched(xs, jr.split(key, 5))
    assert estimates.shape == errors.shape == (5,)


def test_standard_error_has_finite_gradient_at_zero_spread(key):
    """Rademacher probes on a diagonal Jacobian give zero spread: the standard error
    is 0 and its gradient finite (not the NaN of sqrt at 0)."""

    def error(a):
        return scorax.hutchinson_trace(
            lambda y: a * y, jnp.ones(3), key=key, num_probes=4
        )[1]

    assert error(2.0) == 0
    assert jnp.isfinite(jax.grad(error)(2.0))
