r"""The second-order (Heun) sampler of Karras et al. (2022), on any Gaussian path."""

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import (
    check_count,
    check_log_snr_ends,
    check_positive,
    check_range,
    is_concrete,
)
from .._custom_types import IntScalarLike, RealScalarLike
from .._parameterisation import (
    AbstractParameterisation,
    DataPrediction,
    NoisePrediction,
)
from .._path import AbstractGaussianPath
from .._predict import Model
from ._abstract import AbstractLastStepSampler, normal, Problem
from ._grid import rho_levels
from ._loop import run
from ._result import SampleResult


class _Level(NamedTuple):
    """A noise level of the grid, its time and alpha there, the churn gamma
    applied there, and the highest level (the cap of churned levels)."""

    t: Array
    level: Array
    alpha: Array
    gamma: Array
    top: Array


def _path(problem: Problem) -> AbstractGaussianPath:
    path = problem.path
    assert isinstance(path, AbstractGaussianPath)
    return path


def _time(path: AbstractGaussianPath, level: Array) -> Array:
    """The time at noise level `level`, and 0 at level 0."""
    return jnp.where(level > 0, path.inverse_noise_to_signal(level), 0.0)


class EDMHeun(AbstractLastStepSampler[Array]):
    """Heun's method in the noise level on the rescaled variable x / alpha, with
    stochastic churn; the state is the rescaled sample."""

    name: ClassVar[str] = "edm_sample"

    rho: RealScalarLike = 7.0
    churn: RealScalarLike = 0.0
    churn_min: RealScalarLike = 0.0
    churn_max: RealScalarLike = float("inf")
    churn_noise: RealScalarLike = 1.0

    def __check_init__(self):
        check_positive(self.rho, "rho")
        check_range(self.churn, "churn", low=0)

    def needs_key(self) -> bool:
        return not (is_concrete(self.churn) and float(self.churn) == 0)

    def evaluations(self, num_steps: int) -> int:
        return 2 * num_steps - 1

    def grid(self, problem: Problem, num_steps: int, dtype) -> _Level:
        path = _path(problem)
        rho = check_positive(self.rho, "rho").astype(dtype)
        level_max = path.noise_to_signal(jnp.asarray(problem.t_max, dtype))
        level_min = path.noise_to_signal(jnp.asarray(problem.t_min, dtype))
        ends = -2 * jnp.log(jnp.stack([level_max, level_min]))
        levels = check_log_snr_ends(
            rho_levels(level_max, level_min, num_steps, rho),
            ends,
            path,
            problem.t_max,
            problem.t_min,
        )
        in_range = (levels >= self.churn_min) & (levels <= self.churn_max)
        churn = check_range(self.churn, "churn", low=0).astype(dtype) / num_steps
        gamma = jnp.where(in_range, jnp.minimum(churn, 2**0.5 - 1), 0)
        times = jax.vmap(lambda level: _time(path, level))(levels).astype(dtype)
        alphas = jax.vmap(path.alpha)(times)
        return _Level(times, levels, alphas, gamma, jnp.full_like(levels, levels[0]))

    def init(self, problem: Problem, x: Array, grid: _Level) -> Array:
        return x / _path(problem).alpha(jnp.asarray(problem.t_max, x.dtype))

    def sample(self, state: Array, node: _Level) -> Array:
        return node.alpha * state

    def _denoised(self, problem: Problem, x_scaled: Array, level: Array) -> Array:
        path = _path(problem)
        t = _time(path, level)
        return problem.read(path.alpha(t) * x_scaled, t, DataPrediction())

    def _euler(
        self, problem: Problem, x_scaled: Array, s: _Level, t: _Level, key
    ) -> tuple[Array, Array, Array, Array]:
        """The churned start, its level, the slope there and the Euler step."""
        x_hat, level_hat = x_scaled, s.level
        if self.needs_key():
            # Never above the grid's top level: the model is not called past
            # t_max, and the top level churned adds no noise from rounding.
            level_hat = jnp.minimum(s.level * (1 + s.gamma), s.top)
            z = normal(key, x_scaled)
            spread = jnp.sqrt(jnp.maximum(level_hat**2 - s.level**2, 0))
            x_hat = x_scaled + spread * self.churn_noise * z
        slope = (x_hat - self._denoised(problem, x_hat, level_hat)) / level_hat
        return x_hat, level_hat, slope, x_hat + (t.level - level_hat) * slope

    def step(
        self,
        problem: Problem,
        state: Array,
        s: _Level,
        t: _Level,
        key: PRNGKeyArray | Array,
        index: Array,
    ) -> tuple[Array, Array]:
        x_hat, level_hat, slope, x_next = self._euler(problem, state, s, t, key)
        next_slope = (x_next - self._denoised(problem, x_next, t.level)) / t.level
        x_next = x_hat + (t.level - level_hat) * (slope + next_slope) / 2
        return x_next, self.sample(state, s)

    def last_step(
        self,
        problem: Problem,
        state: Array,
        s: _Level,
        t: _Level,
        key: PRNGKeyArray | Array,
        index: Array,
    ) -> tuple[Array, Array]:
        """Euler to noise level 0: the denoiser's output."""
        *_, final = self._euler(problem, state, s, t, key)
        return final, self.sample(state, s)


def edm_sample(
    model: Model,
    path: AbstractGaussianPath,
    x: Float[Array, "*shape"],
    *,
    num_steps: IntScalarLike = 18,
    rho: RealScalarLike = 7.0,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    churn: RealScalarLike = 0.0,
    churn_min: RealScalarLike = 0.0,
    churn_max: RealScalarLike = float("inf"),
    churn_noise: RealScalarLike = 1.0,
    key: PRNGKeyArray | None = None,
    noise: Float[Array, " num_steps *shape"] | None = None,
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
      $0 \le t_\text{min} < t_\text{max} \le 1$ ($t_\text{min} = 0$ only on paths with $\sigma(0) > 0$), with $\alpha(t_\text{max}) > 0$.
    - `churn`, `churn_min`, `churn_max`, `churn_noise`: $S_\text{churn} \ge 0$
      (default 0, deterministic), $S_\text{tmin}$, $S_\text{tmax}$ (in units of
      $\tilde\sigma$) and $S_\text{noise}$.
    - `key`: a JAX PRNG key, needed when `churn` $> 0$ (or `noise`).
    - `noise`: the Gaussian draws, given instead of `key`: standard normal, of
      shape `(num_steps, *x.shape)`, `noise[k]` the draw of step $k$ (to couple
      runs with common random numbers, or to drive the sampler with a given
      path of Brownian increments).
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `trajectory`: also return the $N + 1$ states $x = \alpha(t)\tilde x$, with
      `times` the $t$ of each level (the last is 0).

    **Returns:**

    A [`SampleResult`][scorax.SampleResult]; `num_evaluations` $= 2N - 1$.
    """
    num_steps = check_count(num_steps, "num_steps")
    sampler = EDMHeun(
        rho=rho,
        churn=churn,
        churn_min=churn_min,
        churn_max=churn_max,
        churn_noise=churn_noise,
    )
    return run(
        sampler,
        Problem(model, path, parameterisation, t_min, t_max),
        x,
        num_steps=num_steps,
        key=key,
        noise=noise,
        denoise=False,
        trajectory=trajectory,
    )
