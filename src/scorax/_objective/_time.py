r"""Where the training times of `diffusion_loss` come from.

Two different things, kept apart:

- a **time distribution** (`UniformTime`, `LogNormalNoise`, `LogitNormalTime`, or
  a user's `AbstractTimeDistribution`) *defines* the objective: the loss is
  averaged over its times, so another distribution is another objective;
- **importance sampling** (`ImportanceTime`) keeps the objective of a target
  distribution (uniform by default) and only changes where the times are drawn,
  weighting each draw by the density ratio, to lower the variance.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.special as jss
from jax.typing import DTypeLike
from jaxtyping import Array, PRNGKeyArray

from .._checks import check, check_positive
from .._custom_types import FloatScalar, RealScalarLike
from .._path import AbstractGaussianPath


class AbstractTimeSampling(eqx.Module):
    r"""How [`diffusion_loss`][scorax.diffusion_loss] draws its time: a time $t
    \in [t_\text{min}, 1]$ and a weight $w$ that multiplies the loss."""

    @abc.abstractmethod
    def draw(
        self,
        path: AbstractGaussianPath,
        t_min: float,
        *,
        key: PRNGKeyArray,
        dtype: DTypeLike,
    ) -> tuple[FloatScalar, FloatScalar]:
        """A time and its weight on the loss."""


class AbstractTimeDistribution(AbstractTimeSampling):
    r"""A distribution of the training time on $[t_\text{min}, 1]$, which defines
    the objective $\mathbb{E}_{t \sim p}[\ell(t)]$ (the weight is 1).

    A subclass supplies `sample` and `log_density`, the log of a density on
    $[t_\text{min}, 1]$ that integrates to one there. The density is what
    [`ImportanceTime`][scorax.ImportanceTime] needs, as a proposal or a target.
    """

    @abc.abstractmethod
    def sample(
        self,
        path: AbstractGaussianPath,
        t_min: float,
        *,
        key: PRNGKeyArray,
        dtype: DTypeLike,
    ) -> FloatScalar:
        """One time in $[t_\\text{min}, 1]$."""

    @abc.abstractmethod
    def log_density(
        self, path: AbstractGaussianPath, t: FloatScalar, t_min: float
    ) -> FloatScalar:
        """The log-density of the time at `t`."""

    def draw(
        self,
        path: AbstractGaussianPath,
        t_min: float,
        *,
        key: PRNGKeyArray,
        dtype: DTypeLike,
    ) -> tuple[FloatScalar, FloatScalar]:
        t = self.sample(path, t_min, key=key, dtype=dtype)
        return t, jnp.ones_like(t)


class UniformTime(AbstractTimeDistribution):
    r"""$t \sim \mathcal{U}[t_\text{min}, 1)$, the default of
    [`diffusion_loss`][scorax.diffusion_loss] (Song et al. 2021)."""

    def sample(
        self,
        path: AbstractGaussianPath,
        t_min: float,
        *,
        key: PRNGKeyArray,
        dtype: DTypeLike,
    ) -> FloatScalar:
        return jr.uniform(key, (), dtype, minval=t_min, maxval=1.0)

    def log_density(
        self, path: AbstractGaussianPath, t: FloatScalar, t_min: float
    ) -> FloatScalar:
        return jnp.full_like(t, -jnp.log1p(-t_min))


def _log_normal_mass(low: Array, high: Array) -> Array:
    r"""$\log(\Phi(b) - \Phi(a))$, computed in the tail where it is small."""
    flip = low > 0  # both in the upper tail: use Phi(-a) - Phi(-b)
    a, b = jnp.where(flip, -high, low), jnp.where(flip, -low, high)
    upper = jss.log_ndtr(b)
    return upper + jnp.log1p(-jnp.exp(jss.log_ndtr(a) - upper))


def _normal_log_density(z: Array, mean: Array, std: Array) -> Array:
    return -0.5 * ((z - mean) / std) ** 2 - jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi)


class _TruncatedNormalOf(AbstractTimeDistribution):
    """A normal distribution of a monotone function z(t) of time, restricted to
    the values z takes on [t_min, 1]."""

    mean: RealScalarLike
    std: RealScalarLike

    def __check_init__(self):
        check(self.mean, jnp.isfinite(self.mean), "`mean` must be finite.")
        check_positive(self.std, "std")

    @abc.abstractmethod
    def _variable(self, path: AbstractGaussianPath, t: FloatScalar) -> FloatScalar:
        """z(t)."""

    @abc.abstractmethod
    def _time(self, path: AbstractGaussianPath, z: FloatScalar) -> FloatScalar:
        """The inverse, t(z)."""

    @abc.abstractmethod
    def _log_slope(self, path: AbstractGaussianPath, t: FloatScalar) -> FloatScalar:
        """log |dz/dt|."""

    def _bounds(self, path: AbstractGaussianPath, t_min: float, dtype: DTypeLike):
        mean, std = jnp.asarray(self.mean, dtype), jnp.asarray(self.std, dtype)
        ends = jnp.array([t_min, 1.0], dtype)
        z = jax.vmap(lambda t: self._variable(path, t))(ends)
        low, high = jnp.minimum(z[0], z[1]), jnp.maximum(z[0], z[1])
        return mean, std, (low - mean) / std, (high - mean) / std

    def sample(
        self,
        path: AbstractGaussianPath,
        t_min: float,
        *,
        key: PRNGKeyArray,
        dtype: DTypeLike,
    ) -> FloatScalar:
        mean, std, low, high = self._bounds(path, t_min, dtype)
        z = mean + std * jr.truncated_normal(key, low, high, (), dtype)
        return jnp.clip(self._time(path, z), t_min, 1)

    def log_density(
        self, path: AbstractGaussianPath, t: FloatScalar, t_min: float
    ) -> FloatScalar:
        mean, std, low, high = self._bounds(path, t_min, t.dtype)
        z = self._variable(path, t)
        log_density = (
            _normal_log_density(z, mean, std)
            - _log_normal_mass(low, high)
            + self._log_slope(path, t)
        )
        # An end where z is infinite (t = 1 of a logit, or where alpha = 0) has
        # density 0, the limit of the normal's tail over the slope.
        return jnp.where(jnp.isfinite(z), log_density, -jnp.inf)


class LogNormalNoise(_TruncatedNormalOf):
    r"""Log-normal noise levels (Karras et al. 2022, EDM's training
    distribution): $\ln \tilde\sigma \sim \mathcal{N}(P_\text{mean},
    P_\text{std}^2)$ with $\tilde\sigma = \sigma(t)/\alpha(t)$ the noise-to-signal
    ratio, mapped to time on any path by $t = \lambda^{-1}(-2 \ln \tilde\sigma)$
    ([`inverse_log_snr`][scorax.AbstractGaussianPath.inverse_log_snr]).

    The normal is restricted to the noise levels the path reaches on
    $[t_\text{min}, 1]$ (drawn by its inverse CDF there), so every draw is a
    time of the path; its density in $t$ carries the Jacobian $|\mathrm{d}\ln
    \tilde\sigma / \mathrm{d}t| = g(t)^2 / (2\sigma(t)^2)$.

    **Arguments:**

    - `mean`: $P_\text{mean}$; default $-1.2$ (EDM's).
    - `std`: $P_\text{std} > 0$; default $1.2$ (EDM's).
    """

    mean: RealScalarLike = -1.2
    std: RealScalarLike = 1.2

    def _variable(self, path: AbstractGaussianPath, t: FloatScalar) -> FloatScalar:
        return -path.log_snr(t) / 2

    def _time(self, path: AbstractGaussianPath, z: FloatScalar) -> FloatScalar:
        return path.inverse_log_snr(-2 * z)

    def _log_slope(self, path: AbstractGaussianPath, t: FloatScalar) -> FloatScalar:
        return jnp.log(path.diffusion_squared(t) / (2 * path.sigma(t) ** 2))


class LogitNormalTime(_TruncatedNormalOf):
    r"""Logit-normal times (Esser et al. 2024, "Scaling rectified flow
    transformers", SD3's training distribution for rectified flow): $t =
    \operatorname{sigmoid}(z)$ with $z \sim \mathcal{N}(m, s^2)$, restricted to
    $t \ge t_\text{min}$. Its density is $\mathcal{N}(\operatorname{logit} t; m,
    s^2) / (t (1 - t))$, renormalised on $[t_\text{min}, 1)$.

    **Arguments:**

    - `mean`: $m$; default 0.
    - `std`: $s > 0$; default 1.
    """

    mean: RealScalarLike = 0.0
    std: RealScalarLike = 1.0

    def _variable(self, path: AbstractGaussianPath, t: FloatScalar) -> FloatScalar:
        return jnp.log(t) - jnp.log1p(-t)

    def _time(self, path: AbstractGaussianPath, z: FloatScalar) -> FloatScalar:
        return jax.nn.sigmoid(z)

    def _log_slope(self, path: AbstractGaussianPath, t: FloatScalar) -> FloatScalar:
        return -jnp.log(t) - jnp.log1p(-t)


class LikelihoodProposal(AbstractTimeDistribution):
    r"""The importance proposal of Song et al. 2021 ("Maximum likelihood training
    of score-based diffusion models", section 5) for the likelihood weighting:
    times with density proportional to $g(t)^2 / \sigma(t)^2$ on $[t_\text{min},
    1]$.

    On every Gaussian path $g^2 / \sigma^2 = 2\sigma'/\sigma - 2\alpha'/\alpha =
    -\lambda'(t)$, minus the derivative of the log-SNR, so this is the uniform
    distribution of $\lambda$ between $\lambda(1)$ and $\lambda(t_\text{min})$,
    drawn in closed form through
    [`inverse_log_snr`][scorax.AbstractGaussianPath.inverse_log_snr]:

    $$q(t) = \frac{-\lambda'(t)}{\lambda(t_\text{min}) - \lambda(1)}.$$

    With it the likelihood-weighted loss $\tfrac12 g^2 \|s_\theta - s\|^2$
    becomes $\tfrac12 Z\, \sigma^2 \|s_\theta - s\|^2 / (1 - t_\text{min})$, a
    constant $Z = \lambda(t_\text{min}) - \lambda(1)$ times the bounded
    noise-weighted loss (Kingma et al. 2021 make the same observation in
    log-SNR). It needs $\lambda(1)$ finite, i.e. $\alpha(1) > 0$ (VP, sub-VP,
    VE, EDM paths; not the linear or cosine paths, where $g^2 \to \infty$ at $t =
    1$).
    """

    def _ends(self, path: AbstractGaussianPath, t_min: float, dtype: DTypeLike):
        ends = jax.vmap(path.log_snr)(jnp.array([t_min, 1.0], dtype))
        return check(
            ends,
            jnp.all(jnp.isfinite(ends)),
            f"`time_sampling`: LikelihoodProposal needs a finite log-SNR at t_min "
            f"and at t = 1, which {type(path).__name__} does not have "
            "(alpha(1) = 0, or sigma(t_min) = 0).",
        )

    def sample(
        self,
        path: AbstractGaussianPath,
        t_min: float,
        *,
        key: PRNGKeyArray,
        dtype: DTypeLike,
    ) -> FloatScalar:
        ends = self._ends(path, t_min, dtype)
        log_snr = jr.uniform(key, (), dtype, minval=ends[1], maxval=ends[0])
        return jnp.clip(path.inverse_log_snr(log_snr), t_min, 1)

    def log_density(
        self, path: AbstractGaussianPath, t: FloatScalar, t_min: float
    ) -> FloatScalar:
        ends = self._ends(path, t_min, t.dtype)
        rate = path.diffusion_squared(t) / path.sigma(t) ** 2
        return jnp.log(rate) - jnp.log(ends[0] - ends[1])


class ImportanceTime(AbstractTimeSampling):
    r"""Importance sampling of the time: draw $t$ from `proposal` $q$ and weight
    the loss by $p(t) / q(t)$, so that the expected loss is exactly that of
    times from `target` $p$ (uniform by default):

    $$\mathbb{E}_{t \sim q}\!\left[\frac{p(t)}{q(t)}\, \ell(t)\right] =
    \mathbb{E}_{t \sim p}[\ell(t)].$$

    The objective is unchanged; only the variance of its estimate is, lowest
    where $q(t) \propto p(t) \sqrt{\mathbb{E}[\ell(t)^2]}$. For the likelihood
    weighting use [`LikelihoodProposal`][scorax.LikelihoodProposal] (Song et al.
    2021). A proposal whose density is not positive and finite at a time it drew
    is an error.

    **Arguments:**

    - `proposal`: an [`AbstractTimeDistribution`][scorax.AbstractTimeDistribution]
      to draw from.
    - `target`: the distribution whose objective is kept; default
      [`UniformTime`][scorax.UniformTime]`()`.
    """

    proposal: AbstractTimeDistribution
    target: AbstractTimeDistribution = UniformTime()

    def draw(
        self,
        path: AbstractGaussianPath,
        t_min: float,
        *,
        key: PRNGKeyArray,
        dtype: DTypeLike,
    ) -> tuple[FloatScalar, FloatScalar]:
        t = self.proposal.sample(path, t_min, key=key, dtype=dtype)
        log_q = self.proposal.log_density(path, t, t_min)
        log_q = check(
            log_q,
            jnp.isfinite(log_q),
            "`time_sampling`: the proposal's density is not positive and finite at "
            "a time it drew.",
        )
        return t, jnp.exp(self.target.log_density(path, t, t_min) - log_q)
