r"""Toy data sets for score-based models.

The 2-D sets are drawn afresh from a key (`num` points, shape `(num, 2)`) and
scaled to unit order: each docstring states its population mean and variance per
coordinate, so one choice of noise scales and step sizes suits them all. [`gaussian_mixture`][scorax.datasets.gaussian_mixture]
is the two-Gaussian mixture of the seed notes, returned as a
[`GaussianMixture`][scorax.GaussianMixture] with its exact score; its components
are its classes ([`sample_labelled`][scorax.GaussianMixture.sample_labelled]).
`two_moons` and `digits` return labels too with `labels=True`.
[`digits`][scorax.datasets.digits] loads scikit-learn's bundled 8x8 digits (no
download; install scikit-learn, e.g. `pip install "scorax[data]"`).
"""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._checks import check_count
from ._custom_types import IntScalarLike
from ._mixture import GaussianMixture


__all__ = [
    "checkerboard",
    "digits",
    "gaussian_mixture",
    "rings",
    "swiss_roll",
    "two_moons",
]


def _check_noise(noise: float) -> None:
    if not noise >= 0:
        raise ValueError(f"`noise` must be >= 0, got {noise}.")


def two_moons(
    num: IntScalarLike, *, key: PRNGKeyArray, noise: float = 0.05, labels: bool = False
) -> Float[Array, "num 2"] | tuple[Float[Array, "num 2"], Int[Array, " num"]]:
    r"""Two interleaved half circles (as scikit-learn's `make_moons`), plus
    Gaussian noise of standard deviation `noise`, shifted by $(-\tfrac12, -\tfrac14)$
    and scaled by 2. The population mean is zero; the variances are $3 + 4\,
    \text{noise}^2$ and $2 - 16/\pi^2 + (4/\pi - \tfrac12)^2 + 4\,\text{noise}^2
    \approx 0.98$.

    With `labels=True`, returns `(points, labels)`: label 0 for the upper moon
    and 1 for the lower one, each with probability one half.
    """
    num = check_count(num, "num")
    _check_noise(noise)
    angle_key, side_key, noise_key = jr.split(key, 3)
    angle = jnp.pi * jr.uniform(angle_key, (num,))
    upper = jr.bernoulli(side_key, 0.5, (num,))
    x = jnp.where(upper, jnp.cos(angle), 1 - jnp.cos(angle))
    y = jnp.where(upper, jnp.sin(angle), 0.5 - jnp.sin(angle))
    points = jnp.stack([x - 0.5, y - 0.25], axis=-1)
    points = 2 * (points + noise * jr.normal(noise_key, (num, 2)))
    return (points, jnp.where(upper, 0, 1).astype(jnp.int32)) if labels else points


def swiss_roll(
    num: IntScalarLike, *, key: PRNGKeyArray, noise: float = 0.05
) -> Float[Array, "num 2"]:
    r"""The 2-D Swiss roll: $r(\cos r, \sin r)$ for $r = \tfrac{3\pi}{2}(1 + 2u)$,
    $u \sim \mathcal{U}[0, 1]$, divided by 7, plus Gaussian noise of standard
    deviation `noise`: mean about $(0.29, 0.03)$, variances about $(0.90, 0.99)$."""
    num = check_count(num, "num")
    _check_noise(noise)
    radius_key, noise_key = jr.split(key)
    r = 1.5 * jnp.pi * (1 + 2 * jr.uniform(radius_key, (num,)))
    points = jnp.stack([r * jnp.cos(r), r * jnp.sin(r)], axis=-1) / 7
    return points + noise * jr.normal(noise_key, (num, 2))


def checkerboard(num: IntScalarLike, *, key: PRNGKeyArray) -> Float[Array, "num 2"]:
    r"""Uniform on the 8 black squares of a 4x4 checkerboard on $[-2, 2]^2$, scaled
    by $\sqrt{3}/2$ so each coordinate has unit variance."""
    num = check_count(num, "num")
    cell_key, offset_key = jr.split(key)
    cell = jr.randint(cell_key, (num,), 0, 8)
    row = cell // 2
    column = 2 * (cell % 2) + row % 2  # black squares: row + column even
    offset = jr.uniform(offset_key, (num, 2))
    points = jnp.stack([column + offset[:, 0], row + offset[:, 1]], axis=-1) - 2
    return points * (jnp.sqrt(3.0) / 2)


def rings(
    num: IntScalarLike,
    *,
    key: PRNGKeyArray,
    radii: tuple[float, ...] = (0.5, 1.0, 1.5),
    noise: float = 0.05,
) -> Float[Array, "num 2"]:
    r"""Concentric circles of the given `radii`, each drawn with equal probability,
    plus Gaussian noise of standard deviation `noise`. With the default radii
    each coordinate has variance $\tfrac12 \cdot \tfrac{0.25 + 1 + 2.25}{3} \approx 0.58$."""
    num = check_count(num, "num")
    _check_noise(noise)
    if not radii or not all(r > 0 for r in radii):
        raise ValueError(
            f"`radii` must be a non-empty tuple of positive numbers, got {radii}."
        )
    ring_key, angle_key, noise_key = jr.split(key, 3)
    radius = jnp.asarray(radii)[jr.randint(ring_key, (num,), 0, len(radii))]
    angle = 2 * jnp.pi * jr.uniform(angle_key, (num,))
    points = radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
    return points + noise * jr.normal(noise_key, (num, 2))


def gaussian_mixture() -> GaussianMixture:
    r"""The two-Gaussian mixture of the seed notes: equal weights, means $(2, 2)$
    and $(-2, -2)$, unit variances and correlations $+0.5$ and $-0.5$,

    $$p = \tfrac12 \mathcal{N}\!\left(\begin{bmatrix}2\\2\end{bmatrix},
    \begin{bmatrix}1 & 0.5\\ 0.5 & 1\end{bmatrix}\right) + \tfrac12
    \mathcal{N}\!\left(\begin{bmatrix}-2\\-2\end{bmatrix},
    \begin{bmatrix}1 & -0.5\\ -0.5 & 1\end{bmatrix}\right).$$

    Draw from it with `.sample(key=..., sample_shape=(num,))`; its `score` and
    `marginal(path, t)` are exact.
    """
    return GaussianMixture(
        means=jnp.array([[2.0, 2.0], [-2.0, -2.0]]),
        covs=jnp.array([[[1.0, 0.5], [0.5, 1.0]], [[1.0, -0.5], [-0.5, 1.0]]]),
        weights=jnp.array([0.5, 0.5]),
    )


def digits(
    *, labels: bool = False
) -> Float[Array, "1797 8 8"] | tuple[Float[Array, "1797 8 8"], Int[Array, " 1797"]]:
    r"""scikit-learn's 1,797 handwritten 8x8 digits (bundled with scikit-learn,
    nothing is downloaded), as images with pixel intensities $0, \dots, 16$ mapped
    linearly to $[-1, 1]$. With `labels=True`, returns `(images, labels)`, the
    labels being the digits $0, \dots, 9$.

    Needs scikit-learn (`pip install "scorax[data]"`).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "scorax.datasets.digits needs scikit-learn: pip install 'scorax[data]'"
        ) from error
    flat, classes = load_digits(return_X_y=True)
    images = jnp.asarray(np.asarray(flat, np.float32).reshape(-1, 8, 8) / 8 - 1)
    return (images, jnp.asarray(classes, jnp.int32)) if labels else images
