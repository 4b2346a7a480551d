r"""The continuous-time variational bound on the negative log-likelihood."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._checks import check, check_count, check_model, check_start, check_time_range
from ._custom_types import FloatScalar, IntScalarLike
from ._parameterisation import (
    AbstractParameterisation,
    NoisePrediction,
    ScorePrediction,
)
from ._path import AbstractGaussianPath
from ._predict import Model, predict
from ._trace import standard_error


CHUNK = 256


class BoundResult(eqx.Module):
    r"""What [`nll_bound`][scorax.nll_bound] returns for one data point.

    **Fields:**

    - `nll`: the estimate of the bound, an upper bound on $-\log p_{t_\text{min}}(x)$
      in nats (in expectation over the key).
    - `standard_error`: its Monte Carlo standard error.
    - `prior_term`: $\mathbb{E}[-\log \pi(x_{t_\text{max}})]$, the prior's part
      (in closed form for the library's Gaussian prior, else the Monte Carlo mean).
    - `num_evaluations`: model evaluations, two per sample.
    """

    nll: FloatScalar
    standard_error: FloatScalar
    prior_term: FloatScalar
    num_evaluations: Int[Array, ""]


def nll_bound(
    model: Model,
    path: AbstractGaussianPath,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray,
    num_samples: IntScalarLike = 64,
    parameterisation: AbstractParameterisation = NoisePrediction(),
    t_min: float = 1e-3,
    t_max: float = 1.0,
    prior_log_prob: Callable[[Array], Array] | None = None,
) -> BoundResult:
    r"""An unbiased estimate of the continuous-time upper bound on the negative
    log-likelihood of one data point (Song et al. 2021, "Maximum likelihood
    training of score-based diffusion models", Theorem 1 in its denoising form;
    the continuous-time ELBO of Kingma et al. 2021, "Variational diffusion
    models", is the same quantity written in log-SNR).

    **What it bounds.** As [`log_likelihood`][scorax.log_likelihood], the density
    of the model's $p_{t_\text{min}}$ at $x$: here of the reverse SDE with score
    $s_\theta$ started from the prior $\pi$ at $t_\text{max}$. The forward process
    is started from $x$ at $t_\text{min}$, $x_t = a_t x + s_t \varepsilon$ with
    $a_t = \alpha(t)/\alpha(t_\text{min})$ and $s_t^2 = \sigma(t)^2 - a_t^2
    \sigma(t_\text{min})^2 = \sigma(t)^2 (1 - e^{\lambda(t) - \lambda(t_\text{min})})$,
    so the $t_\text{min}$ end carries no extra (reconstruction) term: the blur of
    the data by $\sigma(t_\text{min})$ is part of the model, as in
    `log_likelihood`. Then

    $$-\log p^\text{SDE}_{t_\text{min}}(x) \le \mathbb{E}\big[-\log
    \pi(x_{t_\text{max}})\big] - d \log\frac{\alpha(t_\text{max})}{\alpha(t_\text{min})}
    + \int_{t_\text{min}}^{t_\text{max}} \mathbb{E}_\varepsilon\Big[\tfrac12 g^2
    \big\|s_\theta(x_t, t) + \tfrac{\varepsilon}{s_t}\big\|^2 - \tfrac12 g^2
    \tfrac{\|\varepsilon\|^2}{s_t^2}\Big]\, \mathrm{d}t,$$

    with $d$ = `x.size` (the drift term $-\int \nabla\cdot f = -d \int
    \alpha'/\alpha$ in closed form). The integrand is the likelihood-weighted
    denoising loss of this kernel minus terms that do not depend on the model,
    so the bound is a training loss with the likelihood weighting's gradients.
    It is **tight** with the exact score and the exact $p_{t_\text{max}}$ as the
    prior: the reverse SDE then reproduces the forward process, and the bound
    equals $-\log p_{t_\text{min}}(x)$ for every $x$. With the library's prior
    $\mathcal{N}(0, \sigma(t_\text{max})^2 I)$ it exceeds that, on average over $x
    \sim p_{t_\text{min}}$, by exactly $\mathrm{KL}(p_{t_\text{max}} \,\|\, \pi)$.

    **The estimate.** Each of `num_samples` samples draws $t \sim
    \mathcal{U}(t_\text{min}, t_\text{max})$ and $\varepsilon$, and averages the
    integrand at $\pm\varepsilon$ (antithetic noise): written as $\tfrac12 g^2
    \|s_\theta\|^2 + g^2 s_\theta \cdot \varepsilon / s_t$, its $1/s_t$ part,
    whose variance diverges as $t \to t_\text{min}$, then becomes the difference
    $(s_\theta(x_t^+) - s_\theta(x_t^-)) \cdot \varepsilon / (2 s_t)$, bounded
    there. The standard error is that of the samples' mean.

    In bits per dimension: [`bits_per_dim`][scorax.bits_per_dim]`(-result.nll,
    x)` bounds the model's bits per dimension from above, the same units as the
    ODE likelihood; for discrete data evaluate it at uniformly dequantised $x$
    (see `bits_per_dim`). The bound and `log_likelihood` of the same trained
    model are not ordered: they are the densities of two different models (the
    SDE's and the ODE's).

    **Arguments:**

    - `model`: called as `model(x_t, t)`, predicting `parameterisation`.
    - `path`: the Gaussian path the model was trained on.
    - `x`: one data point.
    - `key`: a JAX PRNG key for the times and the noise.
    - `num_samples`: Monte Carlo samples, $\ge 1$ (two model evaluations each);
      default 64.
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `t_min`, `t_max`: the interval, $0 \le t_\text{min} < t_\text{max} \le 1$,
      with $\alpha(t_\text{max}) > 0$ (so $t_\text{max} < 1$ on the linear and
      cosine paths).
    - `prior_log_prob`: the prior's log-density at $t_\text{max}$, for one
      point; default `None`, the library's $\mathcal{N}(0, \sigma(t_\text{max})^2
      I)$ in closed form.
    """
    check_time_range(t_min, t_max, path)
    num_samples = check_count(num_samples, "num_samples")
    x = check_start(x)
    check_model(model, x, jnp.asarray(t_min, x.dtype))
    dtype, d = x.dtype, x.size
    low, high = jnp.asarray(t_min, dtype), jnp.asarray(t_max, dtype)
    alpha_high = path.alpha(high)
    alpha_high = check(
        alpha_high,
        alpha_high > 0,
        f"`t_max`: nll_bound needs alpha(t_max) > 0, which fails on "
        f"{type(path).__name__} at t_max = {t_max}; use a smaller t_max.",
    )

    def kernel(t: Array) -> tuple[Array, Array]:
        """x_t = a x + s eps, given x at t_min."""
        return path.transition(low, t)

    def score(y: Array, t: Array) -> Array:
        return predict(
            model, path, y, t, source=parameterisation, target=ScorePrediction()
        )

    def sample(key: PRNGKeyArray) -> tuple[Array, Array]:
        time_key, noise_key = jr.split(key)
        t = jr.uniform(time_key, (), dtype, minval=t_min, maxval=t_max)
        eps = jr.normal(noise_key, x.shape, dtype)
        a, s = kernel(t)
        plus, minus = score(a * x + s * eps, t), score(a * x - s * eps, t)
        g2 = path.diffusion_squared(t)
        mean_square = (jnp.sum(plus**2) + jnp.sum(minus**2)) / 2
        cross = jnp.sum((plus - minus) * eps) / (2 * s)
        integral = (t_max - t_min) * g2 * (mean_square / 2 + cross)
        if prior_log_prob is None:
            return integral, jnp.zeros((), dtype)
        a, s = kernel(high)
        prior = -(prior_log_prob(a * x + s * eps) + prior_log_prob(a * x - s * eps))
        return integral, prior / 2

    # In chunks of at most CHUNK samples, vmapped within each chunk: the memory of
    # a chunk, not of all samples (an image model sees 2 CHUNK images at once).
    integrals, priors = jax.lax.map(
        sample, jr.split(key, num_samples), batch_size=min(num_samples, CHUNK)
    )
    drift = -d * (jnp.log(alpha_high) - jnp.log(path.alpha(low)))
    if prior_log_prob is None:
        # E[-log N(a x + s eps; 0, v I)], v = sigma(t_max)^2.
        a, s = kernel(high)
        variance = path.sigma(high) ** 2
        prior_term = 0.5 * d * jnp.log(2 * jnp.pi * variance) + (
            a**2 * jnp.sum(x**2) + d * s**2
        ) / (2 * variance)
        values = integrals
    else:
        prior_term = jnp.mean(priors)
        values = integrals + priors
    nll = jnp.mean(integrals) + prior_term + drift
    nll = check(
        nll,
        jnp.isfinite(nll),
        "nll_bound: the bound is not finite (the model's output or the data hold "
        "a NaN or an infinity).",
    )
    return BoundResult(
        nll=nll,
        standard_error=standard_error(values),
        prior_term=prior_term,
        num_evaluations=jnp.asarray(2 * num_samples),
    )
