r"""Gaussian mixtures: exact densities, scores and diffused marginals."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy as jsp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from ._checks import check, check_time
from ._custom_types import FloatScalar, RealScalarLike
from ._path import AbstractGaussianPath


class GaussianMixture(eqx.Module):
    r"""A mixture of Gaussians, the analytic oracle of scorax.

    $$p(x) = \sum_{k=1}^K w_k\, \mathcal{N}(x; \mu_k, \Sigma_k).$$

    Its score is exact,

    $$\nabla_x \log p(x) = -\sum_k r_k(x)\, \Sigma_k^{-1}(x - \mu_k), \qquad
    r_k(x) = \frac{w_k \mathcal{N}(x; \mu_k, \Sigma_k)}{p(x)},$$

    and so is its image under any Gaussian path: if $x_0 \sim p$ then
    $x_t = \alpha x_0 + \sigma \varepsilon$ is again a mixture, with means
    $\alpha \mu_k$ and covariances $\alpha^2 \Sigma_k + \sigma^2 I$
    ([`marginal`][scorax.GaussianMixture.marginal]). Every sampler, loss and
    likelihood in scorax can therefore be checked against an exact score at any
    time on any path.

    Densities use Cholesky factors and `logsumexp`, so they stay finite far in the
    tails; all methods act on one point (use `jax.vmap` for batches).

    **Arguments:**

    - `means`: shape `(K, d)`.
    - `covs`: shape `(K, d, d)`, symmetric positive definite.
    - `weights`: shape `(K,)`, non-negative and summing to one.

    !!! example

        ```python
        mixture = scorax.GaussianMixture(
            means=jnp.array([[-2.0, 0.0], [2.0, 0.0]]),
            covs=jnp.stack([0.25 * jnp.eye(2)] * 2),
            weights=jnp.array([0.3, 0.7]),
        )
        diffused = mixture.marginal(scorax.VPPath(), 0.5)
        score = jax.vmap(diffused.score)(x_t)
        ```
    """

    means: Float[Array, "k d"]
    covs: Float[Array, "k d d"]
    weights: Float[Array, " k"]
    scale_tril: Float[Array, "k d d"]

    def __init__(
        self,
        means: Float[ArrayLike, "k d"],
        covs: Float[ArrayLike, "k d d"],
        weights: Float[ArrayLike, " k"],
    ):
        means, covs, weights = (
            jnp.asarray(means),
            jnp.asarray(covs),
            jnp.asarray(weights),
        )
        if means.ndim != 2:
            raise ValueError(f"`means` must have shape (K, d), got {means.shape}.")
        num, dim = means.shape
        if covs.shape != (num, dim, dim):
            raise ValueError(
                f"`covs` must have shape (K, d, d) = {(num, dim, dim)} to match "
                f"`means`, got {covs.shape}."
            )
        if weights.shape != (num,):
            raise ValueError(
                f"`weights` must have shape (K,) = {(num,)} to match `means`, "
                f"got {weights.shape}."
            )
        tolerance = math.sqrt(jnp.finfo(weights.dtype).eps)
        weights = check(weights, weights >= 0, "`weights` must be non-negative.")
        weights = check(
            weights,
            jnp.abs(jnp.sum(weights) - 1) <= tolerance * num,
            f"`weights` must sum to one (within {tolerance * num:.1e}).",
        )
        scale = jnp.max(jnp.abs(covs), axis=(-2, -1), keepdims=True)
        symmetric = jnp.abs(covs - jnp.swapaxes(covs, -1, -2)) <= tolerance * scale
        covs = check(covs, symmetric, "`covs` must be symmetric.")
        scale_tril = jnp.linalg.cholesky(covs)
        scale_tril = check(
            scale_tril,
            jnp.all(jnp.isfinite(scale_tril)),
            "`covs` must be positive definite (its Cholesky factorisation failed).",
        )
        self.means, self.covs, self.weights = means, covs, weights
        self.scale_tril = scale_tril

    @property
    def num_components(self) -> int:
        """The number of components $K$."""
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        """The dimension $d$ of the space."""
        return self.means.shape[1]

    def _whiten(
        self, x: Float[Array, " d"]
    ) -> tuple[Float[Array, "k d"], Float[Array, " k"]]:
        """Per component: $z_k = L_k^{-1}(x - \\mu_k)$ and $\\log w_k \\mathcal{N}(x)$."""
        if x.shape != (self.dim,):
            raise ValueError(
                f"`x` must have shape (d,) = ({self.dim},), got {x.shape}."
            )
        z = jnp.einsum("kij,kj->ki", self._inverse_tril(), x[None] - self.means)
        log_det = jnp.sum(
            jnp.log(jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1)), -1
        )
        log_normal = (
            -0.5 * jnp.sum(z**2, -1) - log_det - 0.5 * self.dim * jnp.log(2 * jnp.pi)
        )
        return z, jnp.log(self.weights) + log_normal

    def log_prob(self, x: Float[Array, " d"]) -> FloatScalar:
        r"""The log density $\log p(x)$, by `logsumexp` over components."""
        _, log_joint = self._whiten(x)
        return jax.nn.logsumexp(log_joint)

    def responsibilities(self, x: Float[Array, " d"]) -> Float[Array, " k"]:
        r"""The posterior component probabilities $r_k(x)$."""
        _, log_joint = self._whiten(x)
        return jax.nn.softmax(log_joint)

    def log_class_posterior(self, x: Float[Array, " d"]) -> Float[Array, " k"]:
        r"""The log posterior of the class (the component) given the point,

        $$\log p(y = k \mid x) = \log w_k + \log \mathcal{N}(x; \mu_k, \Sigma_k)
        - \log p(x),$$

        the exact noise-conditional classifier when taken on
        [`marginal(path, t)`][scorax.GaussianMixture.marginal]:
        $\log p_t(y \mid x_t)$, as classifier guidance needs (Dhariwal & Nichol
        2021). Computed with `log_softmax`, so it stays finite far in the tails.
        """
        _, log_joint = self._whiten(x)
        return jax.nn.log_softmax(log_joint)

    def score(
        self, x: Float[Array, " d"], y: Int[ArrayLike, ""] | None = None
    ) -> Float[Array, " d"]:
        r"""The exact score, of the mixture or of one class.

        $$\nabla_x \log p(x) = -\sum_k r_k(x)\,\Sigma_k^{-1}(x - \mu_k), \qquad
        \nabla_x \log p(x \mid y) = -\Sigma_y^{-1}(x - \mu_y).$$

        The components are the classes: with a label $y \in \{0, \dots, K-1\}$ this
        is the conditional score of class $y$; with `y=None` or the null label
        $y = -1$ (scorax's label for "no class", as in classifier-free training),
        the unconditional one. By Bayes, $\nabla \log p(x \mid y) = \nabla \log
        p(x) + \nabla \log p(y \mid x)$.
        """
        z, log_joint = self._whiten(x)
        per_component = -self._solve_transposed(z)
        unconditional = jax.nn.softmax(log_joint) @ per_component
        if y is None:
            return unconditional
        y = jnp.asarray(y)
        conditional = per_component[jnp.clip(y, 0, self.num_components - 1)]
        return jnp.where(y < 0, unconditional, conditional)

    def guided_score(
        self,
        x: Float[Array, " d"],
        y: Int[ArrayLike, ""],
        *,
        weight: RealScalarLike,
    ) -> Float[Array, " d"]:
        r"""The classifier-free guided score of class $y$ at guidance weight $w$
        (Ho & Salimans 2022),

        $$(1 + w)\, \nabla \log p(x \mid y) - w\, \nabla \log p(x)
        = \nabla \log p(x) + (1 + w)\, \nabla \log p(y \mid x),$$

        the score of $p(x)\, p(y \mid x)^{1 + w}$ up to normalisation: $w = 0$ is
        the conditional score, $w > 0$ sharpens the class.
        """
        weight = jnp.asarray(weight, x.dtype)
        return (1 + weight) * self.score(x, y) - weight * self.score(x)

    def _inverse_tril(self) -> Float[Array, "k d d"]:
        """Per component: $L_k^{-1}$. It depends on the mixture alone, so under
        `vmap` over points it is computed once, and each point costs products,
        not triangular solves (which XLA runs one small matrix at a time)."""
        eye = jnp.eye(self.dim, dtype=self.scale_tril.dtype)
        return jax.vmap(
            lambda tril: jsp.linalg.solve_triangular(tril, eye, lower=True)
        )(self.scale_tril)

    def _solve_transposed(self, z: Float[Array, "k d"]) -> Float[Array, "k d"]:
        """Per component: $L_k^{-T} z_k$, so that $L_k^{-T} L_k^{-1} = \\Sigma_k^{-1}$."""
        return jnp.einsum("kji,kj->ki", self._inverse_tril(), z)

    def sample(
        self, *, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()
    ) -> Float[Array, "*sample_shape d"]:
        r"""Draw points: a component $k \sim w$, then $\mu_k + L_k \varepsilon$.

        **Arguments:**

        - `key`: a JAX PRNG key.
        - `sample_shape`: the leading shape of the draws; `()` gives one point.
        """
        return self.sample_labelled(key=key, sample_shape=sample_shape)[0]

    def sample_labelled(
        self, *, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()
    ) -> tuple[Float[Array, "*sample_shape d"], Int[Array, "*sample_shape"]]:
        r"""Draw labelled points $(x, y)$: the class $y \sim w$, then
        $x = \mu_y + L_y \varepsilon$. The points are those of
        [`sample`][scorax.GaussianMixture.sample] with the same key.

        **Arguments:**

        - `key`: a JAX PRNG key.
        - `sample_shape`: the leading shape of the draws; `()` gives one pair.

        **Returns:**

        The pair `(x, y)` of points and `int32` labels in $\{0, \dots, K-1\}$.
        """
        component_key, noise_key = jr.split(key)
        component = jr.categorical(
            component_key, jnp.log(self.weights), shape=sample_shape
        )
        eps = jr.normal(noise_key, (*sample_shape, self.dim), self.means.dtype)
        x = self.means[component] + jnp.einsum(
            "...ij,...j->...i", self.scale_tril[component], eps
        )
        return x, component.astype(jnp.int32)

    def component(self, y: Int[ArrayLike, ""]) -> "GaussianMixture":
        r"""Class $y$ alone, $\mathcal{N}(\mu_y, \Sigma_y)$, as a one-component
        mixture: the data a sampler fed the conditional score of class $y$ should
        reproduce."""
        y = jnp.asarray(y)
        return GaussianMixture(
            means=self.means[y][None],
            covs=self.covs[y][None],
            weights=jnp.ones((1,), self.weights.dtype),
        )

    def marginal(
        self, path: AbstractGaussianPath, t: RealScalarLike
    ) -> "GaussianMixture":
        r"""The exactly diffused mixture: the law of $x_t = \alpha(t) x_0 +
        \sigma(t)\varepsilon$ for $x_0$ drawn from this mixture,

        $$p_t(x) = \sum_k w_k\, \mathcal{N}\!\left(x;\ \alpha(t)\mu_k,\
        \alpha(t)^2 \Sigma_k + \sigma(t)^2 I\right).$$
        """
        t = check_time(t)
        alpha, sigma = path.alpha(t), path.sigma(t)
        eye = jnp.eye(self.dim, dtype=self.covs.dtype)[None]
        return GaussianMixture(
            means=alpha * self.means,
            covs=alpha**2 * self.covs + sigma**2 * eye,
            weights=self.weights,
        )

    def posterior_mean(
        self, path: AbstractGaussianPath, x_t: Float[Array, " d"], t: RealScalarLike
    ) -> Float[Array, " d"]:
        r"""The Bayes-optimal denoiser $\mathbb{E}[x_0 \mid x_t]$ for data from this
        mixture, in closed form:

        $$\mathbb{E}[x_0 \mid x_t] = \sum_k r^{(t)}_k(x_t) \left(\mu_k + \alpha
        \Sigma_k \left(\alpha^2\Sigma_k + \sigma^2 I\right)^{-1}(x_t - \alpha\mu_k)
        \right),$$

        where $r^{(t)}$ are the responsibilities of the diffused mixture. By
        Tweedie's formula it equals $(x_t + \sigma^2 \nabla \log p_t(x_t)) / \alpha$,
        the [`DataPrediction`][scorax.DataPrediction] of the exact score.
        """
        diffused = self.marginal(path, t)
        z, log_joint = diffused._whiten(x_t)
        precision_times_residual = diffused._solve_transposed(z)
        component_means = self.means + path.alpha(t) * jnp.einsum(
            "kij,kj->ki", self.covs, precision_times_residual
        )
        return jax.nn.softmax(log_joint) @ component_means

    def posterior_log_prob(
        self,
        path: AbstractGaussianPath,
        x_t: Float[Array, " d"],
        t: RealScalarLike,
        x0: Float[Array, " d"],
        mask: Bool[ArrayLike, " d"] | None = None,
    ) -> FloatScalar:
        r"""The exact log posterior density of (some coordinates of) the data given
        the noisy point, $\log p(x_0[\text{mask}] \mid x_t)$, for data from this
        mixture diffused along `path`.

        Given class $k$, $x_0$ and $x_t = \alpha x_0 + \sigma\varepsilon$ are
        jointly Gaussian, so $x_0 \mid x_t, k \sim \mathcal{N}(m_k, V_k)$ with

        $$m_k = \mu_k + \alpha \Sigma_k A_k^{-1}(x_t - \alpha \mu_k), \qquad
        V_k = \Sigma_k - \alpha^2 \Sigma_k A_k^{-1} \Sigma_k, \qquad
        A_k = \alpha^2 \Sigma_k + \sigma^2 I,$$

        and the masked coordinates of $x_0$ have the marginal of that Gaussian;
        the classes are weighted by the responsibilities $r^{(t)}_k(x_t)$. This is
        the exact likelihood of an observation $y = x_0[\text{mask}]$ given $x_t$:
        its gradient in $x_t$, added to the score, is the exact score of
        $p_t(x_t \mid y)$, which posterior sampling for inpainting needs (Song et
        al. 2021; Chung et al. 2023 approximate it for learned models). The mask
        may be traced.

        **Arguments:**

        - `path`, `t`: the Gaussian path and the time, $\sigma(t) > 0$.
        - `x_t`: the noisy point.
        - `x0`: the data point whose masked coordinates are observed (the others
          are ignored).
        - `mask`: `True` where a coordinate is observed (default: all).
        """
        mask = jnp.ones(self.dim, bool) if mask is None else jnp.asarray(mask, bool)
        t = check_time(t)
        # At sigma(t) = 0 the posterior is a point mass: no density.
        alpha = check(
            path.alpha(t),
            path.sigma(t) > 0,
            "`t`: posterior_log_prob needs sigma(t) > 0 (at sigma = 0 the data is "
            "known exactly and has no density); use t >= t_min > 0.",
        )
        diffused = self.marginal(path, t)
        _, log_joint = diffused._whiten(x_t)
        eye = jnp.eye(self.dim, dtype=self.covs.dtype)
        keep = mask.astype(self.covs.dtype)
        observed = jnp.outer(keep, keep)

        def log_likelihood(mean, cov, diffused_cov):
            gain = alpha * jnp.linalg.solve(diffused_cov, cov).T  # alpha Sigma A^-1
            posterior_mean = mean + gain @ (x_t - alpha * mean)
            posterior_cov = cov - alpha * gain @ cov
            # The masked marginal, embedded in d dimensions: identity elsewhere.
            embedded = observed * posterior_cov + (eye - jnp.diag(keep))
            residual = keep * (x0 - posterior_mean)
            tril = jnp.linalg.cholesky(0.5 * (embedded + embedded.T))
            z = jsp.linalg.solve_triangular(tril, residual, lower=True)
            log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(tril)))
            count = jnp.sum(keep)
            return -0.5 * (z @ z + log_det + count * jnp.log(2 * jnp.pi))

        per_class = jax.vmap(log_likelihood)(self.means, self.covs, diffused.covs)
        return jax.nn.logsumexp(jax.nn.log_softmax(log_joint) + per_class)
