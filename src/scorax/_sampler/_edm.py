r"""The second-order (Heun) sampler of Karras et al. (2022), on any Gaussian path."""

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import RealScalarLike
from .._misc import check_count, is_concrete
from .._parameterisation import (
    AbstractParameterisation,
    DataPrediction,
    NoisePrediction,
)
from .._path import AbstractGaussianPath
from ._common import (
    check_finite,
    check_model,
    check_positive,
    check_time_range,
    Model,
    num_evaluations,
    predict,
    SampleResult,
)


def edm_sigmas(
    sigma_max: Array, sigma_min: Array, num_steps: int, rho: Array
) -> Float[Array, " levels"]:
    r"""Karras et al.'s levels $(\sigma_\text{max}^{1/\rho} + \frac{i}{N-1}
    (\sigma_\text{min}^{1/\rho} - \sigma_\text{max}^{1/\rho}))^\rho$, then 0."""
    fraction = jnp.linspace(0, 1, num_steps, dtype=sigma_max.dtype)
    low, high = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    levels = (high + fraction * (low - high)) ** rho
    if num_steps == 1:
        levels = sigma_max[None]
    return jnp.concatenate([levels, jnp.zeros((1,), sigma_max.dtype)])


def edm_sample(
    model: Model,
    path: AbstractGaussianPath,
    x: Float[Array, "*shape"],
    *,
    num_steps: int = 18,
    rho: RealScalarLike = 7.0,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    churn: RealScalarLike = 0.0,
    churn_min: RealScalarLike = 0.0,
    churn_max: RealScalarLike = float("inf"),
    churn_noise: RealScalarLike = 1.0,
    key: PRNGKeyArray | None = None,
    parameterisation: AbstractParameterisation = NoisePrediction(),
    trajectory: bool = False,
) -> SampleResult:
    r"""The deterministic or stochastic Heun sampler of Karras et al. (2022),
    "Elucidating the design space of diffusion-based generative models"
    (Algorithms 1 and 2), on any Gaussian path.

    On the scaled variable $\tilde x = x / \alpha(t)$, with noise level
    $\tilde\sigma = \sigma(t)/\alpha(t) = e^{-\lambda(t)/2}$, every Gaussian path
    has the same probability-flow ODE,

    $$\frac{\mathrm{d}\tilde x}{\mathrm{d}\tilde\sigma} = \frac{\tilde x -
    D(\tilde x; \tilde\sigma)}{\tilde\sigma},$$

    where $D$ is the denoiser $\mathbb{E}[x_0 \mid x_t]$ (the model read as
    [`DataPrediction`][scorax.DataPrediction], called at the time $t$ with that
    noise level, via [`inverse_log_snr`][scorax.AbstractGaussianPath.inverse_log_snr]).
    The levels are $\rho$-spaced from $\tilde\sigma_0 = \tilde\sigma(t_\text{max})$
    to $\tilde\sigma_{N-1} = \tilde\sigma(t_\text{min})$,

    $$\tilde\sigma_i = \left(\tilde\sigma_0^{1/\rho} + \tfrac{i}{N-1}
    (\tilde\sigma_{N-1}^{1/\rho} - \tilde\sigma_0^{1/\rho})\right)^\rho,
    \qquad \tilde\sigma_N = 0,$$

    and each step takes Heun's method from $\tilde\sigma_i$ to
    $\tilde\sigma_{i+1}$, except the last, an Euler step to $\tilde\sigma_N = 0$,
    which returns the denoiser's output $D(\tilde x; \tilde\sigma_{N-1})$: this
    sampler ends on the data by construction. It spends $2N - 1$ model evaluations.

    With `churn` $= S_\text{churn} > 0$ (Algorithm 2), each step whose level lies
    in $[S_\text{tmin}, S_\text{tmax}]$ first raises it to $\hat\sigma =
    \tilde\sigma_i (1 + \gamma)$, $\gamma = \min(S_\text{churn}/N, \sqrt2 - 1)$, by
    adding fresh noise $\sqrt{\hat\sigma^2 - \tilde\sigma_i^2}\, S_\text{noise} z$;
    $\hat\sigma$ is capped at $\tilde\sigma_0$ so the model is never called past
    $t_\text{max}$.

    **Arguments:**

    - `model`: called as `model(x_t, t)`, predicting `parameterisation`.
    - `path`: the Gaussian path the model was trained on.
    - `x`: the starting point, a draw from
      [`prior_sample`][scorax.AbstractGaussianPath.prior_sample] (for
      [`EDMPath`][scorax.EDMPath], $\mathcal{N}(0, 80^2 I)$).
    - `num_steps`: $N \ge 1$; default 18, the paper's CIFAR-10 setting.
    - `rho`: $\rho > 0$; default 7.
    - `t_min`, `t_max`: the times of the first and last noise levels,
      $0 < t_\text{min} < t_\text{max} \le 1$, with $\alpha(t_\text{max}) > 0$.
    - `churn`, `churn_min`, `churn_max`, `churn_noise`: $S_\text{churn} \ge 0$
      (default 0, deterministic), $S_\text{tmin}$, $S_\text{tmax}$ (in units of
      $\tilde\sigma$) and $S_\text{noise}$.
    - `key`: a JAX PRNG key, needed when `churn` $> 0$.
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `trajectory`: also return the $N + 1$ states $x = \alpha(t)\tilde x$, with
      `times` the $t$ of each level (the last is 0).

    **Returns:**

    A [`SampleResult`][scorax.SampleResult]; `num_evaluations` $= 2N - 1$.
    """
    check_count(num_steps, "num_steps")
    check_time_range(t_min, t_max)
    rho = check_positive(rho, "rho").astype(x.dtype)
    if is_concrete(churn) and not float(churn) >= 0:
        raise ValueError(f"`churn` must be >= 0, got {float(churn)}.")
    stochastic = not (is_concrete(churn) and float(churn) == 0)
    if stochastic and key is None:
        raise ValueError("`key` is required when `churn` > 0 (the sampler adds noise).")
    key = jr.key(0) if key is None else key  # unused without churn
    dtype = x.dtype
    start, end = jnp.asarray(t_max, dtype), jnp.asarray(t_min, dtype)
    level_max = jnp.exp(-path.log_snr(start) / 2)
    level_min = jnp.exp(-path.log_snr(end) / 2)
    if is_concrete(level_max) and not (
        bool(jnp.isfinite(level_max)) and float(level_min) > 0
    ):
        raise ValueError(
            f"`t_max`, `t_min`: {type(path).__name__} needs alpha(t_max) > 0 and "
            f"sigma(t_min) > 0 for finite noise levels, got t_max={t_max}, "
            f"t_min={t_min}."
        )
    levels = edm_sigmas(level_max, level_min, num_steps, rho)
    check_model(model, x, start)

    def time(level):
        return jnp.where(level > 0, path.inverse_log_snr(-2 * jnp.log(level)), 0.0)

    def denoised(x_scaled, level):
        t = time(level)
        x_t = path.alpha(t) * x_scaled
        return predict(
            model, path, x_t, t, source=parameterisation, target=DataPrediction()
        )

    def raise_level(x_scaled, level, key):
        in_range = (level >= churn_min) & (level <= churn_max)
        gamma = jnp.where(
            in_range, jnp.minimum(jnp.asarray(churn, dtype) / num_steps, 2**0.5 - 1), 0
        )
        raised = jnp.minimum(level * (1 + gamma), level_max)
        z = jr.normal(key, x_scaled.shape, dtype)
        spread = jnp.sqrt(jnp.maximum(raised**2 - level**2, 0))
        return x_scaled + spread * churn_noise * z, raised

    def euler(x_scaled, level, next_level, key):
        x_hat, level_hat = (
            raise_level(x_scaled, level, key) if stochastic else (x_scaled, level)
        )
        slope = (x_hat - denoised(x_hat, level_hat)) / level_hat
        return x_hat, level_hat, slope, x_hat + (next_level - level_hat) * slope

    def heun(x_scaled, inputs):
        level, next_level, key = inputs
        x_hat, level_hat, slope, x_next = euler(x_scaled, level, next_level, key)
        next_slope = (x_next - denoised(x_next, next_level)) / next_level
        x_next = x_hat + (next_level - level_hat) * (slope + next_slope) / 2
        return x_next, x_next if trajectory else None

    keys = jr.split(key, num_steps)
    x_scaled = x / path.alpha(start)
    x_scaled, states = jax.lax.scan(
        heun, x_scaled, (levels[: num_steps - 1], levels[1:num_steps], keys[:-1])
    )
    *_, final = euler(x_scaled, levels[num_steps - 1], levels[num_steps], keys[-1])
    result_trajectory = result_times = None
    if trajectory:
        assert states is not None
        times = jax.vmap(time)(levels)
        scaled = jnp.concatenate([(x / path.alpha(start))[None], states, final[None]])
        scale = jax.vmap(path.alpha)(times).reshape((-1,) + (1,) * x.ndim)
        result_trajectory, result_times = scale * scaled, times.astype(dtype)
    return SampleResult(
        sample=check_finite(final, "edm_sample"),
        num_evaluations=num_evaluations(2 * num_steps - 1),
        trajectory=result_trajectory,
        times=result_times,
    )
