import math

import jax.numpy as jnp
import jax.random as jr
import pytest

import scorax
from scorax import datasets


N = 40_000


def _moments_match(points, mean, variance):
    """Statistical: per-coordinate mean and variance within 5 standard errors."""
    centred = points - jnp.asarray(mean)[None]
    assert jnp.all(
        jnp.abs(jnp.mean(points, 0) - jnp.asarray(mean))
        <= 5 * jnp.std(points, 0) / math.sqrt(N)
    )
    squares = centred**2
    assert jnp.all(
        jnp.abs(jnp.mean(squares, 0) - jnp.asarray(variance))
        <= 5 * jnp.std(squares, 0) / math.sqrt(N)
    )


@pytest.mark.parametrize(
    "make, mean, variance",
    [
        (
            lambda k: datasets.two_moons(N, key=k),
            (0.0, 0.0),
            (
                3 + 4 * 0.05**2,
                2 - 16 / math.pi**2 + (4 / math.pi - 0.5) ** 2 + 4 * 0.05**2,
            ),
        ),
        (lambda k: datasets.checkerboard(N, key=k), (0.0, 0.0), (1.0, 1.0)),
        (
            lambda k: datasets.rings(N, key=k),
            (0.0, 0.0),
            ((0.25 + 1 + 2.25) / 6 + 0.05**2,) * 2,
        ),
    ],
    ids=["two_moons", "checkerboard", "rings"],
)
def test_2d_data_sets_have_their_documented_moments(make, mean, variance, key):
    points = make(key)
    assert points.shape == (N, 2)
    _moments_match(points, mean, variance)


def test_swiss_roll_and_determinism(key):
    points = datasets.swiss_roll(1000, key=key)
    assert points.shape == (1000, 2) and jnp.all(jnp.isfinite(points))
    assert jnp.array_equal(points, datasets.swiss_roll(1000, key=key))
    assert not jnp.array_equal(points, datasets.swiss_roll(1000, key=jr.key(1)))


def test_checkerboard_lies_on_black_squares(key):
    points = datasets.checkerboard(2000, key=key) / (math.sqrt(3) / 2) + 2
    cells = jnp.floor(points).astype(int)
    assert jnp.all((cells >= 0) & (cells <= 3))
    assert jnp.all((cells[:, 0] + cells[:, 1]) % 2 == 0)


def test_seed_gaussian_mixture_has_the_seed_parameters(key):
    mixture = datasets.gaussian_mixture()
    assert isinstance(mixture, scorax.GaussianMixture)
    assert jnp.array_equal(mixture.means, jnp.array([[2.0, 2.0], [-2.0, -2.0]]))
    correlations = mixture.covs[:, 0, 1] / jnp.sqrt(
        mixture.covs[:, 0, 0] * mixture.covs[:, 1, 1]
    )
    assert jnp.array_equal(correlations, jnp.array([0.5, -0.5]))
    assert mixture.sample(key=key, sample_shape=(3,)).shape == (3, 2)


def test_digits_are_bundled_images_in_unit_range():
    images = datasets.digits()
    assert images.shape == (1797, 8, 8)
    assert images.min() == -1 and images.max() == 1
    # Intensities 0..16 map to the 17 levels -1, -7/8, ..., 1.
    assert jnp.allclose(jnp.unique(images), jnp.linspace(-1, 1, 17), atol=1e-6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda k: datasets.two_moons(0, key=k), "`num` must be an integer >= 1"),
        (
            lambda k: datasets.rings(10, key=k, radii=()),
            "`radii` must be a non-empty tuple",
        ),
        (lambda k: datasets.swiss_roll(10, key=k, noise=-1.0), "`noise` must be >= 0"),
    ],
)
def test_bad_data_set_arguments_raise(call, match, key):
    with pytest.raises(ValueError, match=match):
        call(key)
