r"""Ancestral sampling on the discrete DDPM schedule: DDPM and DDIM."""

from typing import Literal

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._custom_types import RealScalarLike
from .._misc import check_choice, check_count, is_concrete
from .._parameterisation import AbstractParameterisation, NoisePrediction
from .._path import DDPMSchedule
from ._common import (
    check_finite,
    check_model,
    Model,
    num_evaluations,
    predict,
    SampleResult,
)
from ._langevin import with_start


def _noise(
    model: Model,
    schedule: DDPMSchedule,
    parameterisation: AbstractParameterisation,
    x: Float[Array, "*shape"],
    t: Array,
) -> Float[Array, "*shape"]:
    """The model's prediction of the noise at step time `t` (one evaluation)."""
    return predict(
        model, schedule.path, x, t, source=parameterisation, target=NoisePrediction()
    )


def ddpm_sample(
    model: Model,
    schedule: DDPMSchedule,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray,
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
    - `key`: a JAX PRNG key for the noise.
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `variance`: `"beta"` or `"posterior"`, as above.
    - `trajectory`: also return $x_N, \dots, x_0$, with `times` $t_N, \dots,
      t_1, 0$.

    **Returns:**

    A [`SampleResult`][scorax.SampleResult] with $x_0$; `num_evaluations` $= N$.
    """
    check_choice(variance, "variance", ("beta", "posterior"))
    dtype = x.dtype
    betas = schedule.betas.astype(dtype)
    alphas_cumprod = schedule.alphas_cumprod.astype(dtype)
    previous_cumprod = jnp.concatenate([jnp.ones((1,), dtype), alphas_cumprod[:-1]])
    times = schedule.times.astype(dtype)
    check_model(model, x, times[-1])
    if variance == "beta":
        stds = jnp.sqrt(betas)
    else:
        stds = jnp.sqrt(betas * (1 - previous_cumprod) / (1 - alphas_cumprod))
    stds = stds.at[0].set(0)  # no noise on the last step, i = 1

    def step(x, inputs):
        beta, alpha_cumprod, std, t, key = inputs
        eps = _noise(model, schedule, parameterisation, x, t)
        mean = (x - beta / jnp.sqrt(1 - alpha_cumprod) * eps) / jnp.sqrt(1 - beta)
        x = mean + std * jr.normal(key, x.shape, dtype)
        return x, x if trajectory else None

    # Schedule arrays run from step N down to 1; keys in the order they are used,
    # as in ddim_sample, so that DDIM with eta = 1 on all steps reproduces this.
    reversed_schedule = jax.tree.map(
        lambda a: a[::-1], (betas, alphas_cumprod, stds, times)
    )
    keys = jr.split(key, schedule.num_steps)
    final, states = jax.lax.scan(step, x, (*reversed_schedule, keys))
    return SampleResult(
        sample=check_finite(final, "ddpm_sample"),
        num_evaluations=num_evaluations(schedule.num_steps),
        trajectory=with_start(x, states),
        times=jnp.concatenate([times[::-1], jnp.zeros((1,), dtype)])
        if trajectory
        else None,
    )


def ddim_steps(num_total: int, num_steps: int) -> Int[np.ndarray, " num_steps"]:
    """`num_steps` distinct schedule steps from N down to 1, evenly spaced."""
    return np.round(np.linspace(num_total, 1, num_steps)).astype(int)


def ddim_sample(
    model: Model,
    schedule: DDPMSchedule,
    x: Float[Array, "*shape"],
    *,
    num_steps: int | None = None,
    eta: RealScalarLike = 0.0,
    key: PRNGKeyArray | None = None,
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
    - `key`: a JAX PRNG key, needed when $\eta > 0$.
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `trajectory`: also return the $S + 1$ states, with `times` $\tau_k / N$
      and a final 0.

    **Returns:**

    A [`SampleResult`][scorax.SampleResult]; `num_evaluations` $= S$.
    """
    num_steps = schedule.num_steps if num_steps is None else num_steps
    check_count(num_steps, "num_steps")
    if num_steps > schedule.num_steps:
        raise ValueError(
            f"`num_steps` must be at most the schedule's num_steps = "
            f"{schedule.num_steps}, got {num_steps}."
        )
    if is_concrete(eta) and not 0 <= float(eta) <= 1:
        raise ValueError(f"`eta` must lie in [0, 1], got {float(eta)}.")
    if key is None:
        if not (is_concrete(eta) and float(eta) == 0):
            raise ValueError("`key` is required when `eta` > 0 (DDIM adds noise).")
        key = jr.key(0)  # unused: every noise term is multiplied by sigma = 0
    eta = jnp.asarray(eta, x.dtype)
    dtype = x.dtype
    steps = ddim_steps(schedule.num_steps, num_steps)
    cumprod = schedule.alphas_cumprod.astype(dtype)[steps - 1]
    previous = jnp.concatenate([cumprod[1:], jnp.ones((1,), dtype)])
    times = jnp.asarray(steps / schedule.num_steps, dtype)
    check_model(model, x, times[0])

    def step(x, inputs):
        alpha_cumprod, alpha_previous, t, key = inputs
        eps = _noise(model, schedule, parameterisation, x, t)
        x0 = (x - jnp.sqrt(1 - alpha_cumprod) * eps) / jnp.sqrt(alpha_cumprod)
        sigma = eta * jnp.sqrt(
            (1 - alpha_previous)
            / (1 - alpha_cumprod)
            * (1 - alpha_cumprod / alpha_previous)
        )
        direction = jnp.sqrt(jnp.maximum(1 - alpha_previous - sigma**2, 0))
        z = jr.normal(key, x.shape, dtype)
        x = jnp.sqrt(alpha_previous) * x0 + direction * eps + sigma * z
        return x, x if trajectory else None

    keys = jr.split(key, num_steps)
    final, states = jax.lax.scan(step, x, (cumprod, previous, times, keys))
    return SampleResult(
        sample=check_finite(final, "ddim_sample"),
        num_evaluations=num_evaluations(num_steps),
        trajectory=with_start(x, states),
        times=jnp.concatenate([times, jnp.zeros((1,), dtype)]) if trajectory else None,
    )
