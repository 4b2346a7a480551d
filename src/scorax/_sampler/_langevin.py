r"""Langevin-type samplers: unadjusted Langevin and annealed Langevin (NCSN)."""

from typing import ClassVar, NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check, check_count, check_positive, is_concrete, to_count
from .._custom_types import IntScalarLike, RealScalarLike
from .._predict import Model, ScoreFn
from ._abstract import (
    AbstractDenoisingSampler,
    AbstractMarkovSampler,
    normal,
    Problem,
)
from ._loop import run
from ._result import SampleResult


def langevin_step(
    x: Float[Array, "*shape"],
    score: Float[Array, "*shape"],
    step_size: Array,
    key: PRNGKeyArray | Array,
) -> Float[Array, "*shape"]:
    r"""$x + \epsilon s + \sqrt{2\epsilon}\, z$ with $z \sim \mathcal{N}(0, I)$
    drawn with `key` (or given, as `key`)."""
    z = normal(key, x)
    return x + step_size * score + jnp.sqrt(2 * step_size) * z


class _Point(NamedTuple):
    """A point of a Langevin grid: its time (or noise level)."""

    t: Array


class _TimeFree(eqx.Module):
    """A score `score_fn(x)` of a fixed density, as a model `model(x, t)`."""

    score_fn: ScoreFn

    def __call__(self, x: Array, t: Array) -> Array:
        return self.score_fn(x)


def _check_sigmas(sigmas: Array) -> Array:
    if sigmas.ndim != 1 or sigmas.shape[0] < 1:
        raise ValueError(f"`sigmas` must be a 1-D array of levels, got {sigmas.shape}.")
    shown = sigmas if is_concrete(sigmas) else "traced values"
    return check(
        sigmas,
        jnp.all(sigmas > 0) & jnp.all(jnp.diff(sigmas) < 0),
        "`sigmas` must be positive and strictly decreasing (largest first, as "
        f"scorax.geometric_sigmas returns them), got {shown}.",
    )


class Langevin(AbstractMarkovSampler):
    """Unadjusted Langevin with step size `step_size` for a score of a fixed
    density; the grid holds the times k * step_size of the diffusion it
    approximates."""

    name: ClassVar[str] = "langevin"

    step_size: RealScalarLike

    def __check_init__(self):
        check_positive(self.step_size, "step_size")

    def evaluations(self, num_steps: int) -> int:
        return num_steps

    def needs_key(self) -> bool:
        return True

    def _step_size(self, dtype) -> Array:
        return check_positive(self.step_size, "step_size").astype(dtype)

    def grid(self, problem: Problem, num_steps: int, dtype) -> _Point:
        return _Point(self._step_size(dtype) * jnp.arange(num_steps + 1, dtype=dtype))

    def step(
        self,
        problem: Problem,
        state: Array,
        s: _Point,
        t: _Point,
        key: PRNGKeyArray | Array,
        index: Array,
    ) -> tuple[Array, Array]:
        score = problem.model(state, s.t)
        step_size = self._step_size(state.dtype)
        return langevin_step(state, score, step_size, key), state


class AnnealedLangevin(AbstractMarkovSampler, AbstractDenoisingSampler[Array]):
    """Annealed Langevin over the levels `sigmas`, `steps_per_level` steps each,
    for a noise-conditional score `model(x, sigma)`; the grid holds the level of
    each step."""

    name: ClassVar[str] = "annealed_langevin"

    sigmas: Float[Array, " num_levels"]
    step_size: RealScalarLike = 2e-5
    steps_per_level: int = eqx.field(default=100, converter=to_count)

    def __check_init__(self):
        _check_sigmas(self.sigmas)
        check_count(self.steps_per_level, "steps_per_level")
        check_positive(self.step_size, "step_size")

    @property
    def num_steps(self) -> int:
        return self.sigmas.shape[0] * self.steps_per_level

    def evaluations(self, num_steps: int) -> int:
        return num_steps

    def needs_key(self) -> bool:
        return True

    def grid(self, problem: Problem, num_steps: int, dtype) -> _Point:
        """The first level, then the level of each step (`num_steps` is the
        levels' count times `steps_per_level`)."""
        sigmas = _check_sigmas(self.sigmas).astype(dtype)
        levels = jnp.repeat(sigmas, self.steps_per_level)
        return _Point(jnp.concatenate([sigmas[:1], levels]))

    def step(
        self,
        problem: Problem,
        state: Array,
        s: _Point,
        t: _Point,
        key: PRNGKeyArray | Array,
        index: Array,
    ) -> tuple[Array, Array]:
        """A Langevin step at the level of `t`, the level this step runs at."""
        dtype = state.dtype
        step_size = check_positive(self.step_size, "step_size").astype(dtype)
        alpha = step_size * (t.t / self.sigmas[-1].astype(dtype)) ** 2
        score = problem.model(state, t.t)
        return langevin_step(state, score, alpha / 2, key), state

    def denoise(self, problem: Problem, x: Array, node: _Point) -> Array:
        """Tweedie's posterior mean at the smallest level."""
        return x + node.t**2 * problem.model(x, node.t)


def langevin(
    score_fn: ScoreFn,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray | None = None,
    noise: Float[Array, " num_steps *shape"] | None = None,
    step_size: RealScalarLike,
    num_steps: IntScalarLike,
    trajectory: bool = False,
) -> SampleResult:
    r"""Unadjusted Langevin dynamics (Roberts & Tweedie 1996; the sampler of Song &
    Ermon 2019):

    $$x_{k+1} = x_k + \epsilon\, s(x_k) + \sqrt{2\epsilon}\, z_k, \qquad
    z_k \sim \mathcal{N}(0, I),$$

    the Euler-Maruyama discretisation of $\mathrm{d}x = \nabla \log p(x)\,
    \mathrm{d}t + \sqrt2\, \mathrm{d}w$, whose stationary law is $p$. With a
    positive step the chain's own stationary law is $p$ only up to $O(\epsilon)$:
    for $p = \mathcal{N}(\mu, \Sigma)$ it is exactly
    $\mathcal{N}(\mu, \Sigma (I - \tfrac{\epsilon}{2}\Sigma^{-1})^{-1})$.
    There is no Metropolis correction.

    **Arguments:**

    - `score_fn`: the score $s(x) \approx \nabla \log p(x)$, not time-conditional.
    - `x`: the starting point, of any shape.
    - `key`: a JAX PRNG key for the noise (or `noise`).
    - `noise`: the Gaussian draws, given instead of `key`: standard normal, of
      shape `(K, *x.shape)`, `noise[k]` the draw of step $k$ (to couple
      runs with common random numbers, or to drive the sampler with a given
      path of Brownian increments).
    - `step_size`: $\epsilon > 0$.
    - `num_steps`: the number of steps $K \ge 1$, one score evaluation each.
    - `trajectory`: also return the $K + 1$ states, with `times` $k\epsilon$ (the
      time of the Langevin diffusion each state approximates).

    **Returns:**

    A [`SampleResult`][scorax.SampleResult] with $x_K$ and `num_evaluations` $= K$.
    """
    num_steps = check_count(num_steps, "num_steps")
    return run(
        Langevin(step_size=step_size),
        Problem(_TimeFree(score_fn)),
        x,
        num_steps=num_steps,
        key=key,
        noise=noise,
        denoise=False,
        trajectory=trajectory,
    )


def annealed_langevin(
    model: Model,
    sigmas: Float[Array, " num_levels"],
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray | None = None,
    noise: Float[Array, " num_steps *shape"] | None = None,
    step_size: RealScalarLike = 2e-5,
    steps_per_level: IntScalarLike = 100,
    denoise: bool = True,
    trajectory: bool = False,
) -> SampleResult:
    r"""Annealed Langevin dynamics, Algorithm 1 of Song & Ermon (2019), "Generative
    modeling by estimating gradients of the data distribution".

    For each noise level $\sigma_1 > \dots > \sigma_L$ in turn, run $T$ Langevin
    steps with the step size scaled to the level,

    $$\alpha_i = \epsilon\, \frac{\sigma_i^2}{\sigma_L^2}, \qquad
    x \leftarrow x + \frac{\alpha_i}{2}\, s_\theta(x, \sigma_i) + \sqrt{\alpha_i}\,
    z,$$

    which keeps the signal-to-noise ratio of each update the same at every level.
    (In the notation of [`langevin`][scorax.langevin] each step has step size
    $\alpha_i / 2$.) With `denoise=True` a final step returns Tweedie's posterior
    mean at the smallest level, $x + \sigma_L^2\, s_\theta(x, \sigma_L)$, which
    removes the residual noise of scale $\sigma_L$ (Jolicoeur-Martineau et al.
    2021; Song & Ermon 2020).

    **Arguments:**

    - `model`: a noise-conditional score model called as `model(x, sigma)`, as
      trained by [`ncsn_loss`][scorax.ncsn_loss].
    - `sigmas`: the levels, positive and strictly decreasing, e.g.
      [`geometric_sigmas`][scorax.geometric_sigmas].
    - `x`: the starting point, in the paper uniform noise; any shape.
    - `key`: a JAX PRNG key for the noise (or `noise`).
    - `noise`: the Gaussian draws, given instead of `key`: standard normal, of
      shape `(L T, *x.shape)`, `noise[k]` the draw of step $k$ (to couple
      runs with common random numbers, or to drive the sampler with a given
      path of Brownian increments).
    - `step_size`: $\epsilon > 0$; default $2 \times 10^{-5}$ as in the paper.
    - `steps_per_level`: $T \ge 1$; default 100.
    - `denoise`: finish with the denoising step (one more model evaluation).
    - `trajectory`: also return the $LT + 1$ states, with `times` holding the
      noise level each state was produced at (the first: $\sigma_1$).

    **Returns:**

    A [`SampleResult`][scorax.SampleResult]; `num_evaluations` is $LT$, plus one
    with `denoise`.
    """
    sampler = AnnealedLangevin(
        sigmas=sigmas, step_size=step_size, steps_per_level=steps_per_level
    )
    return run(
        sampler,
        Problem(model),
        x,
        num_steps=sampler.num_steps,
        key=key,
        noise=noise,
        denoise=denoise,
        trajectory=trajectory,
    )
