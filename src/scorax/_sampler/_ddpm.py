r"""Ancestral sampling on the discrete DDPM schedule: DDPM and DDIM."""

from typing import ClassVar, Literal, NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_choice, check_count, check_range, is_concrete
from .._custom_types import IntScalarLike, RealScalarLike
from .._parameterisation import AbstractParameterisation, NoisePrediction
from .._path import DDPMSchedule
from .._predict import Model
from ._abstract import AbstractMarkovSampler, normal, Problem
from ._grid import ddim_steps
from ._loop import run
from ._result import SampleResult


class _Step(NamedTuple):
    """A step of the schedule: the model's time, beta, alpha_bar and the standard
    deviation of the noise the step adds (stacked along the grid)."""

    t: Array
    beta: Array
    alpha_cumprod: Array
    std: Array


def _schedule(problem: Problem) -> DDPMSchedule:
    assert isinstance(problem.path, DDPMSchedule)
    return problem.path


def _noise(problem: Problem, x: Array, t: Array) -> Array:
    """The model's prediction of the noise at step time `t` (one evaluation)."""
    return problem.read(x, t, NoisePrediction())


class DDPM(AbstractMarkovSampler):
    """Ancestral DDPM over every step of the schedule; the state is the sample."""

    name: ClassVar[str] = "ddpm_sample"

    variance: Literal["beta", "posterior"] = "beta"

    def __check_init__(self):
        check_choice(self.variance, "variance", ("beta", "posterior"))

    def evaluations(self, num_steps: int) -> int:
        return num_steps

    def needs_key(self) -> bool:
        return True

    def grid(self, problem: Problem, num_steps: int, dtype) -> _Step:
        """Steps N, ..., 1 of the schedule, then the data at time 0."""
        schedule = _schedule(problem)
        betas = schedule.betas.astype(dtype)
        alphas_cumprod = schedule.alphas_cumprod.astype(dtype)
        previous = jnp.concatenate([jnp.ones((1,), dtype), alphas_cumprod[:-1]])
        if self.variance == "beta":
            stds = jnp.sqrt(betas)
        else:
            stds = jnp.sqrt(betas * (1 - previous) / (1 - alphas_cumprod))
        stds = stds.at[0].set(0)  # no noise on the last step, i = 1
        steps = _Step(schedule.times.astype(dtype), betas, alphas_cumprod, stds)
        zero = jnp.zeros((1,), dtype)
        return _Step(*(jnp.concatenate([a[::-1], zero]) for a in steps))

    def step(
        self,
        problem: Problem,
        state: Array,
        s: _Step,
        t: _Step,
        key: PRNGKeyArray | Array,
        index: Array,
    ) -> tuple[Array, Array]:
        x = state
        eps = _noise(problem, x, s.t)
        mean = (x - s.beta / jnp.sqrt(1 - s.alpha_cumprod) * eps) / jnp.sqrt(1 - s.beta)
        return mean + s.std * normal(key, x), x


class DDIM(AbstractMarkovSampler):
    """DDIM with noise `eta` on evenly spaced steps of the schedule; the state is
    the sample."""

    name: ClassVar[str] = "ddim_sample"

    eta: RealScalarLike = 0.0

    def __check_init__(self):
        check_range(self.eta, "eta", low=0, high=1)

    def evaluations(self, num_steps: int) -> int:
        return num_steps

    def needs_key(self) -> bool:
        return not (is_concrete(self.eta) and float(self.eta) == 0)

    def grid(self, problem: Problem, num_steps: int, dtype) -> _Step:
        """The steps tau_1 > ... > tau_S, then the data (alpha_bar = 1) at 0."""
        schedule = _schedule(problem)
        if num_steps > schedule.num_steps:
            raise ValueError(
                f"`num_steps` must be at most the schedule's num_steps = "
                f"{schedule.num_steps}, got {num_steps}."
            )
        steps = ddim_steps(schedule.num_steps, num_steps)
        cumprod = schedule.alphas_cumprod.astype(dtype)[steps - 1]
        times = jnp.asarray(steps / schedule.num_steps, dtype)
        cumprod = jnp.concatenate([cumprod, jnp.ones((1,), dtype)])
        times = jnp.concatenate([times, jnp.zeros((1,), dtype)])
        unused = jnp.zeros_like(times)
        return _Step(times, unused, cumprod, unused)

    def step(
        self,
        problem: Problem,
        state: Array,
        s: _Step,
        t: _Step,
        key: PRNGKeyArray | Array,
        index: Array,
    ) -> tuple[Array, Array]:
        x = state
        alpha_cumprod, alpha_previous = s.alpha_cumprod, t.alpha_cumprod
        eps = _noise(problem, x, s.t)
        x0 = (x - jnp.sqrt(1 - alpha_cumprod) * eps) / jnp.sqrt(alpha_cumprod)
        eta = check_range(self.eta, "eta", low=0, high=1).astype(x.dtype)
        sigma = eta * jnp.sqrt(
            (1 - alpha_previous)
            / (1 - alpha_cumprod)
            * (1 - alpha_cumprod / alpha_previous)
        )
        direction = jnp.sqrt(jnp.maximum(1 - alpha_previous - sigma**2, 0))
        z = normal(key, x)
        return jnp.sqrt(alpha_previous) * x0 + direction * eps + sigma * z, x


def ddpm_sample(
    model: Model,
    schedule: DDPMSchedule,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray | None = None,
    noise: Float[Array, " num_steps *shape"] | None = None,
    parameterisation: AbstractParameterisation = NoisePrediction(),
    variance: Literal["beta", "posterior"] = "beta",
    trajectory: bool = False,
) -> SampleResult:
    r"""Ancestral sampling of DDPM, Algorithm 2 of Ho et al. (2020), "Denoising
    diffusion probabilistic models".

    From $x_N$ (a draw from $\mathcal{N}(0, I)$), for $i = N, \dots, 1$:

    $$x_{i-1} = \frac{1}{\sqrt{1 - \beta_i}}\left(x_i - \frac{\beta_i}{\sqrt{1 -
    \bar\alpha_i}}\, \hat\varepsilon_\theta(x_i, t_i)\right) + \sigma_i z, \qquad
    z \sim \mathcal{N}(0, I),$$

    with $\sigma_i^2 = \beta_i$ (`variance="beta"`) or the posterior variance
    $\tilde\beta_i = \beta_i (1 - \bar\alpha_{i-1}) / (1 - \bar\alpha_i)$
    (`variance="posterior"`); the paper finds both work. The last step adds no
    noise ($z = 0$ at $i = 1$), so the result is the mean of
    $p_\theta(x_0 \mid x_1)$: that is how this sampler ends at the data.

    The model is called at the continuous times $t_i = i / N$
    ([`DDPMSchedule.times`][scorax.DDPMSchedule.times]), so a model trained with
    [`diffusion_loss`][scorax.diffusion_loss] on
    [`schedule.path`][scorax.DDPMSchedule.path] can be used directly; outputs in
    other parameterisations are converted to noise on that path.

    **Arguments:**

    - `model`: called as `model(x_i, t_i)`.
    - `schedule`: the [`DDPMSchedule`][scorax.DDPMSchedule] with $N$ steps.
    - `x`: the starting point $x_N$, any shape.
    - `key`: a JAX PRNG key for the noise (or `noise`).
    - `noise`: the Gaussian draws, given instead of `key`: standard normal, of
      shape `(N, *x.shape)`, `noise[k]` the draw of step $k$ (to couple
      runs with common random numbers, or to drive the sampler with a given
      path of Brownian increments).
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `variance`: `"beta"` or `"posterior"`, as above.
    - `trajectory`: also return $x_N, \dots, x_0$, with `times` $t_N, \dots,
      t_1, 0$.

    **Returns:**

    A [`SampleResult`][scorax.SampleResult] with $x_0$; `num_evaluations` $= N$.
    """
    sampler = DDPM(variance=variance)
    return run(
        sampler,
        Problem(model, schedule, parameterisation),
        x,
        num_steps=schedule.num_steps,
        key=key,
        noise=noise,
        denoise=False,
        trajectory=trajectory,
    )


def ddim_sample(
    model: Model,
    schedule: DDPMSchedule,
    x: Float[Array, "*shape"],
    *,
    num_steps: IntScalarLike | None = None,
    eta: RealScalarLike = 0.0,
    key: PRNGKeyArray | None = None,
    noise: Float[Array, " num_steps *shape"] | None = None,
    parameterisation: AbstractParameterisation = NoisePrediction(),
    trajectory: bool = False,
) -> SampleResult:
    r"""DDIM sampling (Song, Meng & Ermon 2021, "Denoising diffusion implicit
    models"), on a subsequence of the DDPM schedule.

    With $\tau_1 > \dots > \tau_S$ evenly spaced steps of the schedule and
    $\bar\alpha = \bar\alpha_{\tau_k}$, $\bar\alpha' = \bar\alpha_{\tau_{k+1}}$
    (and $\bar\alpha' = 1$ after the last), each step is

    $$\hat x_0 = \frac{x - \sqrt{1 - \bar\alpha}\,\hat\varepsilon}{\sqrt{\bar\alpha}},
    \qquad
    x' = \sqrt{\bar\alpha'}\,\hat x_0 + \sqrt{1 - \bar\alpha' - \sigma^2}\,
    \hat\varepsilon + \sigma z,$$

    $$\sigma = \eta \sqrt{\frac{1 - \bar\alpha'}{1 - \bar\alpha}}
    \sqrt{1 - \frac{\bar\alpha}{\bar\alpha'}}.$$

    $\eta = 0$ is the deterministic DDIM sampler (a discretisation of the
    probability-flow ODE); $\eta = 1$ with all $N$ steps is DDPM with the
    posterior variance. The last step ($\bar\alpha' = 1$) returns $\hat x_0$
    itself, the model's denoised estimate.

    Model times and parameterisations are read as in
    [`ddpm_sample`][scorax.ddpm_sample].

    **Arguments:**

    - `model`: called as `model(x, t)` at the times $t = \tau_k / N$.
    - `schedule`: the [`DDPMSchedule`][scorax.DDPMSchedule] with $N$ steps.
    - `x`: the starting point, any shape.
    - `num_steps`: $1 \le S \le N$ (default $N$).
    - `eta`: $0 \le \eta \le 1$; default 0.
    - `key`: a JAX PRNG key, needed when $\eta > 0$ (or `noise`).
    - `noise`: the Gaussian draws, given instead of `key`: standard normal, of
      shape `(S, *x.shape)`, `noise[k]` the draw of step $k$ (to couple
      runs with common random numbers, or to drive the sampler with a given
      path of Brownian increments).
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `trajectory`: also return the $S + 1$ states, with `times` $\tau_k / N$
      and a final 0.

    **Returns:**

    A [`SampleResult`][scorax.SampleResult]; `num_evaluations` $= S$.
    """
    num_steps = schedule.num_steps if num_steps is None else num_steps
    num_steps = check_count(num_steps, "num_steps")
    sampler = DDIM(eta=eta)
    return run(
        sampler,
        Problem(model, schedule, parameterisation),
        x,
        num_steps=num_steps,
        key=key,
        noise=noise,
        denoise=False,
        trajectory=trajectory,
    )
