"""Bad input fails at the boundary with a message naming the argument and range."""

import jax
import jax.numpy as jnp
import jaxtyping
import pytest

import scorax

from .helpers import RUNTIME_ERRORS, without_runtime_type_checking


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: scorax.VPPath(beta_min=1.0, beta_max=0.5),
            "`beta_min` must be smaller than `beta_max`",
        ),
        (
            lambda: scorax.VPPath(beta_min=2.0, beta_max=2.0),
            "`beta_min` must be smaller than `beta_max`",
        ),
        (lambda: scorax.VPPath(beta_min=0.0), "`beta_min` must be finite and > 0"),
        (lambda: scorax.SubVPPath(beta_min=-1.0), "`beta_min` must be finite and > 0"),
        (
            lambda: scorax.SubVPPath(beta_min=30.0, beta_max=20.0),
            "`beta_min` must be smaller",
        ),
        (lambda: scorax.VEPath(sigma_min=0.0), "`sigma_min` must be finite and > 0"),
        (
            lambda: scorax.VEPath(sigma_min=5.0, sigma_max=1.0),
            "`sigma_min` must be smaller than `sigma_max`",
        ),
        (lambda: scorax.VEPath(sigma_min=float("nan")), "`sigma_min` must be finite"),
        (
            lambda: scorax.VPPath(beta_max=float("inf")),
            "`beta_max` must be finite and > 0",
        ),
        (
            lambda: scorax.VEPath(sigma_max=float("nan")),
            "`sigma_max` must be finite and > 0",
        ),
        (
            lambda: scorax.EDMPath(sigma_max=float("inf")),
            "`sigma_max` must be finite and > 0",
        ),
        (lambda: scorax.EDMPath(sigma_min=-0.1), "`sigma_min` must be finite and > 0"),
        (
            lambda: scorax.EDMPath(sigma_min=100.0),
            "`sigma_min` must be smaller than `sigma_max`",
        ),
        (lambda: scorax.EDMPath(rho=0.0), "`rho` must be finite and > 0"),
        (lambda: scorax.CosinePath(s=-0.1), "`s` must be finite and >= 0"),
        (
            lambda: scorax.DDPMSchedule(num_steps=1),
            "`num_steps` must be an integer >= 2",
        ),
        (
            lambda: scorax.DDPMSchedule(num_steps=10, beta_max=20.0),
            "`beta_max` must be < num_steps",
        ),
        (
            lambda: scorax.DDPMSchedule(beta_min=0.5, beta_max=0.1),
            "`beta_min` must be smaller",
        ),
        (
            lambda: scorax.geometric_sigmas(num_levels=1),
            "`num_levels` must be an integer >= 2",
        ),
        (
            lambda: scorax.geometric_sigmas(sigma_min=2.0, sigma_max=1.0),
            "`sigma_min` must be smaller",
        ),
    ],
)
def test_invalid_hyperparameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def _mixture(**overrides):
    arguments = dict(
        means=jnp.zeros((2, 3)),
        covs=jnp.stack([jnp.eye(3)] * 2),
        weights=jnp.array([0.4, 0.6]),
    )
    arguments.update(overrides)
    return scorax.GaussianMixture(**arguments)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(weights=jnp.array([-0.2, 1.2])), "`weights` must be non-negative"),
        (dict(weights=jnp.array([0.5, 0.6])), "`weights` must sum to one"),
        (
            dict(covs=jnp.stack([jnp.eye(3), -jnp.eye(3)])),
            "`covs` must be positive definite",
        ),
        (
            dict(covs=jnp.stack([jnp.eye(3), jnp.eye(3).at[0, 1].set(0.5)])),
            "`covs` must be symmetric",
        ),
    ],
)
def test_invalid_mixture_raises(overrides, match):
    with pytest.raises(ValueError, match=match):
        _mixture(**overrides)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(means=jnp.zeros(3)), r"`means` must have shape \(K, d\)"),
        (
            dict(covs=jnp.stack([jnp.eye(2)] * 2)),
            r"`covs` must have shape \(K, d, d\) = \(2, 3, 3\)",
        ),
        (
            dict(weights=jnp.array([0.2, 0.3, 0.5])),
            r"`weights` must have shape \(K,\) = \(2,\)",
        ),
    ],
)
def test_mismatched_mixture_shapes_raise_with_or_without_type_checking(
    overrides, match
):
    """jaxtyping names the mismatched axis when checking is on; without it, the
    constructor's own ValueError names the argument and the expected shape."""
    with pytest.raises(jaxtyping.TypeCheckError, match="k d"):
        _mixture(**overrides)
    with without_runtime_type_checking(), pytest.raises(ValueError, match=match):
        _mixture(**overrides)


def test_invalid_mixture_built_under_jit_raises_at_run_time():
    """Values only known at run time are checked with eqx.error_if."""

    @jax.jit
    def build(weights):
        return _mixture(weights=weights).weights

    assert jnp.allclose(build(jnp.array([0.5, 0.5])), 0.5)
    with pytest.raises(RUNTIME_ERRORS, match="`weights` must sum to one"):
        build(jnp.array([0.9, 0.9])).block_until_ready()


@pytest.mark.parametrize("t", [-0.1, 1.5, float("nan")])
def test_time_outside_unit_interval_raises(t):
    path, x = scorax.VPPath(), jnp.ones(2)
    with pytest.raises(ValueError, match=r"`t` must lie in \[0, 1\]"):
        path.sample(x, t, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"`t` must lie in \[0, 1\]"):
        path.conditional_score(x, x, t)
    with pytest.raises(ValueError, match=r"`t` must lie in \[0, 1\]"):
        path.drift(x, t)
    with pytest.raises(RUNTIME_ERRORS, match=r"`t` must lie in \[0, 1\]"):
        jax.jit(path.diffusion)(t).block_until_ready()


def test_singular_times_raise_under_jit():
    x = jnp.ones(2)
    with pytest.raises(RUNTIME_ERRORS, match="sigma"):
        jax.jit(scorax.LinearPath().conditional_score)(x, x, 0.0).block_until_ready()
    with pytest.raises(RUNTIME_ERRORS, match="drift"):
        jax.jit(scorax.CosinePath().drift)(x, 1.0).block_until_ready()


def test_shape_mismatch_is_a_jaxtyping_error():
    """Runtime type checking is on in the test run: wrong shapes name the axis."""
    mixture = _mixture()
    with pytest.raises(ValueError, match=r"`x` must have shape \(d,\) = \(3,\)"):
        mixture.score(jnp.zeros(4))  # d belongs to the mixture: checked statically
    with pytest.raises(jaxtyping.TypeCheckError):
        scorax.convert(
            scorax.VPPath(),
            jnp.zeros(3),
            jnp.zeros(4),
            0.5,
            source=scorax.ScorePrediction(),
            target=scorax.NoisePrediction(),
        )
    with pytest.raises(jaxtyping.TypeCheckError):
        scorax.VPPath().alpha(jnp.zeros(3))  # a time is a scalar
