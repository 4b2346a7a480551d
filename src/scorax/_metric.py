r"""Distances between samples and between score functions."""

from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import check_count, check_positive
from ._custom_types import FloatScalar, IntScalarLike, RealScalarLike
from ._mixture import GaussianMixture
from ._parameterisation import (
    AbstractParameterisation,
    convert,
    NoisePrediction,
    ScorePrediction,
)
from ._path import AbstractGaussianPath


def fisher_divergence(
    score_fn: Callable[[Float[Array, " d"]], Float[Array, " d"]],
    target_score: Callable[[Float[Array, " d"]], Float[Array, " d"]],
    samples: Float[Array, "n d"],
) -> FloatScalar:
    r"""The Fisher divergence between a model score and a known score, estimated on
    samples $x_i \sim p$:

    $$D_F(p \,\|\, q_\theta) = \mathbb{E}_{p}\left\|\nabla \log p(x) -
    s_\theta(x)\right\|^2 \approx \frac1n \sum_i \|\nabla\log p(x_i) - s_\theta(x_i)\|^2.$$

    It is zero exactly when the scores agree $p$-almost everywhere (Johnson 2004;
    the quantity score matching minimises, up to the factor $\frac12$). Use it
    where the target score is known, e.g. a [`GaussianMixture`][scorax.GaussianMixture]
    or its `marginal(path, t)`.
    """
    difference = jax.vmap(lambda x: score_fn(x) - target_score(x))(samples)
    return jnp.mean(jnp.sum(difference**2, axis=-1))


def fisher_divergence_by_time(
    model: Callable[[Float[Array, " d"], FloatScalar], Float[Array, " d"]],
    path: AbstractGaussianPath,
    mixture: GaussianMixture,
    times: Float[Array, " num_times"],
    *,
    key: PRNGKeyArray,
    num_samples: IntScalarLike,
    parameterisation: AbstractParameterisation = NoisePrediction(),
) -> tuple[Float[Array, " num_times"], Float[Array, " num_times"]]:
    r"""How well a time-conditional model has learned the score of diffused data,
    at several times: its Fisher divergence to the exact score of a Gaussian
    mixture diffused along the path, absolute and relative.

    At each time $t$, with $p_t$ the exactly diffused mixture
    ([`mixture.marginal(path, t)`][scorax.GaussianMixture.marginal]) and
    $s_\theta(x, t)$ the model read as a score ([`convert`][scorax.convert]),

    $$D(t) = \mathbb{E}_{x \sim p_t}\left\|s_\theta(x, t) - \nabla \log p_t(x)
    \right\|^2, \qquad
    R(t) = \frac{D(t)}{\mathbb{E}_{x \sim p_t}\|\nabla \log p_t(x)\|^2},$$

    both estimated on the same `num_samples` fresh draws of $x_t$ (a key of its
    own per time), with [`fisher_divergence`][scorax.fisher_divergence]. $D(t)$ is
    the excess of the denoising score matching loss at $t$ over its minimum
    (Vincent 2011). $R(t)$ divides it by the divergence of the zero score, so it
    is free of the score's scale, which changes along the path and between data
    sets: $R = 0$ for the exact score and $R = 1$ for the zero score.
    To compare paths at the same noise, pick the times by noise-to-signal ratio
    with [`inverse_noise_to_signal`][scorax.AbstractGaussianPath.inverse_noise_to_signal].

    **Arguments:**

    - `model`: called as `model(x_t, t)`, predicting `parameterisation`.
    - `path`: the Gaussian path the model was trained on.
    - `mixture`: the data distribution at $t = 0$, a
      [`GaussianMixture`][scorax.GaussianMixture].
    - `times`: the times $t_j$, a 1-D array in $(0, 1]$ (with $\sigma(t_j) > 0$
      unless the model predicts the score).
    - `key`: a JAX PRNG key.
    - `num_samples`: draws of $x_t$ per time, $\ge 1$.
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.

    **Returns:**

    The pair `(divergence, relative)` of arrays of $D(t_j)$ and $R(t_j)$, one
    entry per time, in the mixture's dtype.

    !!! example

        ```python
        ratios = jnp.array([0.1, 0.3, 1.0])  # sigma / alpha
        times = jax.vmap(path.inverse_noise_to_signal)(ratios)
        divergence, relative = scorax.fisher_divergence_by_time(
            model, path, mixture, times, key=jr.key(0), num_samples=2000
        )
        ```
    """
    num_samples = check_count(num_samples, "num_samples")
    times = times.astype(mixture.means.dtype)

    def at(t: Array, key: PRNGKeyArray) -> tuple[Array, Array]:
        marginal = mixture.marginal(path, t)
        points = marginal.sample(key=key, sample_shape=(num_samples,))

        def score(x: Array) -> Array:
            return convert(
                path,
                model(x, t),
                x,
                t,
                source=parameterisation,
                target=ScorePrediction(),
            )

        divergence = fisher_divergence(score, marginal.score, points)
        scale = fisher_divergence(jnp.zeros_like, marginal.score, points)
        return divergence, divergence / scale

    return jax.vmap(at)(times, jr.split(key, times.shape[0]))


def sliced_wasserstein(
    x: Float[Array, "n d"],
    y: Float[Array, "m d"],
    *,
    key: PRNGKeyArray,
    num_projections: IntScalarLike = 128,
) -> FloatScalar:
    r"""The sliced 2-Wasserstein distance between two samples (Rabin et al. 2011;
    Bonneel et al. 2015),

    $$SW_2(\mu, \nu) = \left(\mathbb{E}_{\theta \sim \mathcal{U}(S^{d-1})}
    W_2^2(\theta_\# \mu, \theta_\# \nu)\right)^{1/2},$$

    with the expectation over `num_projections` random directions and each 1-D
    $W_2^2$ computed exactly between the empirical quantile functions (sorting;
    samples of different sizes are compared at the quantiles of the larger one by
    linear interpolation). Between two samples of the same law it is not zero but
    of order $n^{-1/2}$: compare against that noise floor.
    """
    num_projections = check_count(num_projections, "num_projections")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"`x` and `y` must have the same dimension, got {x.shape} and {y.shape}."
        )
    directions = jr.normal(key, (num_projections, x.shape[1]), x.dtype)
    directions = directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)
    size = max(x.shape[0], y.shape[0])
    levels = (jnp.arange(size, dtype=x.dtype) + 0.5) / size

    def quantiles(points):
        projected = jnp.sort(points @ directions.T, axis=0)
        if points.shape[0] == size:  # already at the levels
            return projected.T
        grid = (jnp.arange(points.shape[0], dtype=x.dtype) + 0.5) / points.shape[0]
        return jax.vmap(lambda column: jnp.interp(levels, grid, column), in_axes=1)(
            projected
        )

    return jnp.sqrt(jnp.mean((quantiles(x) - quantiles(y)) ** 2))


def mmd(
    x: Float[Array, "n d"],
    y: Float[Array, "m d"],
    *,
    bandwidth: RealScalarLike | Literal["median"] = "median",
) -> FloatScalar:
    r"""The unbiased estimate of the squared maximum mean discrepancy with a Gaussian
    kernel $k(a, b) = \exp(-\|a - b\|^2 / (2h^2))$ (Gretton et al. 2012):

    $$\widehat{\mathrm{MMD}}^2 = \frac{1}{n(n-1)}\sum_{i \ne j} k(x_i, x_j)
    + \frac{1}{m(m-1)}\sum_{i \ne j} k(y_i, y_j) - \frac{2}{nm}\sum_{i, j} k(x_i, y_j).$$

    Its expectation is zero when both samples come from the same law (so the
    estimate can be slightly negative) and positive otherwise.

    **Arguments:**

    - `x`, `y`: samples of shape `(n, d)` and `(m, d)`, with $n, m \ge 2$.
    - `bandwidth`: $h > 0$, or `"median"` for the median heuristic: $h$ is the
      median of the pairwise distances in the pooled sample.
    """
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(
            f"`x` and `y` need at least 2 points each, got {x.shape[0]} and {y.shape[0]}."
        )
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"`x` and `y` must have the same dimension, got {x.shape} and {y.shape}."
        )

    def squared_distances(a, b):
        return jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)

    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(
                f"`bandwidth` must be a positive number or 'median', got {bandwidth!r}."
            )
        pooled = jnp.concatenate([x, y])
        distances = squared_distances(pooled, pooled)
        off_diagonal = distances[~jnp.eye(pooled.shape[0], dtype=bool)]
        h2 = jnp.median(off_diagonal)
    else:
        check_positive(bandwidth, "bandwidth")
        h2 = jnp.asarray(bandwidth, x.dtype) ** 2

    def mean_kernel(a, b, exclude_diagonal):
        kernel = jnp.exp(-0.5 * squared_distances(a, b) / h2)
        if exclude_diagonal:
            n = a.shape[0]
            return (jnp.sum(kernel) - jnp.trace(kernel)) / (n * (n - 1))
        return jnp.mean(kernel)

    return (
        mean_kernel(x, x, True) + mean_kernel(y, y, True) - 2 * mean_kernel(x, y, False)
    )


def frechet_distance(
    x: Float[Array, "n k"],
    y: Float[Array, "m k"],
) -> FloatScalar:
    r"""The Fréchet distance between two samples of features: the squared
    2-Wasserstein distance between the Gaussians with their means and covariances
    (Dowson & Landau 1982), the FID of Heusel et al. 2017 when the features are
    those of an Inception network:

    $$d^2 = \|\mu_x - \mu_y\|^2 + \operatorname{tr}\big(\Sigma_x + \Sigma_y -
    2 (\Sigma_x^{1/2} \Sigma_y \Sigma_x^{1/2})^{1/2}\big).$$

    Pass the features of a classifier for the data (for images, the activations
    of a hidden layer), computed by any means: the metric takes the feature
    vectors, one row per sample. The covariances are the unbiased sample
    covariances; the matrix square roots come from symmetric eigendecompositions
    (eigenvalues clipped at 0 against rounding), so the result is 0 for two
    identical samples and exact for their empirical moments. Like FID it is a
    biased estimate of the population distance, decreasing with the sample size:
    compare distances at equal sample sizes.

    **Arguments:**

    - `x`, `y`: features, `(n, k)` and `(m, k)`, with $n, m \ge 2$.
    """
    for name, sample in (("x", x), ("y", y)):
        if sample.ndim != 2 or sample.shape[0] < 2:
            raise ValueError(
                f"`{name}` must be (num_samples >= 2, num_features), got {sample.shape}."
            )
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"`x` and `y` must have the same number of features, got {x.shape[1]} "
            f"and {y.shape[1]}."
        )
    mean_x, mean_y = jnp.mean(x, axis=0), jnp.mean(y, axis=0)
    cov_x, cov_y = jnp.cov(x, rowvar=False), jnp.cov(y, rowvar=False)
    cov_x, cov_y = jnp.atleast_2d(cov_x), jnp.atleast_2d(cov_y)
    values, vectors = jnp.linalg.eigh(cov_x)
    root_x = (vectors * jnp.sqrt(jnp.maximum(values, 0))[None]) @ vectors.T
    inner = jnp.linalg.eigvalsh(root_x @ cov_y @ root_x)
    cross = jnp.sum(jnp.sqrt(jnp.maximum(inner, 0)))
    return (
        jnp.sum((mean_x - mean_y) ** 2)
        + jnp.trace(cov_x)
        + jnp.trace(cov_y)
        - 2 * cross
    )
