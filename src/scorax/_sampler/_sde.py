r"""Sampling by integrating the reverse-time SDE or the probability-flow ODE of a
Gaussian path with Diffrax."""

from collections.abc import Callable

import diffrax as dfx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_finite, check_model, check_start, check_time_range
from .._custom_types import IntScalarLike
from .._parameterisation import (
    AbstractParameterisation,
    DataPrediction,
    NoisePrediction,
    ScorePrediction,
    VelocityPrediction,
)
from .._path import AbstractGaussianPath
from .._predict import Model, predict
from .._solve import brownian_motion, check_solver_options, solve
from ._result import SampleResult


def _integrate_backwards(
    model: Model,
    path: AbstractGaussianPath,
    x: Float[Array, "*shape"],
    drift: Callable[[Array, Array], Array],
    *,
    diffusion: Callable[[Array], Array] | None = None,
    key: PRNGKeyArray | None = None,
    solver: dfx.AbstractSolver,
    stepsize_controller: dfx.AbstractStepSizeController,
    num_steps: IntScalarLike,
    max_steps: IntScalarLike,
    t_min: float,
    t_max: float,
    parameterisation: AbstractParameterisation,
    denoise: bool,
    trajectory: bool,
    name: str,
) -> SampleResult:
    """What the reverse SDE and the probability-flow ODE share: the checks, the
    Diffrax solve in reversed time tau = t_max - t (with Brownian motion when a
    `diffusion` is given), the optional Tweedie step and the finiteness check."""
    check_time_range(t_min, t_max, path)
    num_steps, max_steps = check_solver_options(solver, num_steps, max_steps)
    x = check_start(x)
    check_model(model, x, jnp.asarray(t_max, x.dtype))
    brownian = None
    if diffusion is not None:
        if key is None:
            raise ValueError(f"`key` is required: {name} draws noise.")
        brownian = brownian_motion(
            solver, stepsize_controller, t_max - t_min, num_steps, x, key
        )
    final, states, evaluations = solve(
        drift,
        x,
        jnp.asarray(t_max - t_min, x.dtype),
        solver=solver,
        controller=stepsize_controller,
        num_steps=num_steps,
        max_steps=max_steps,
        diffusion=diffusion,
        brownian=brownian,
        save=trajectory,
    )
    if denoise:
        t = jnp.asarray(t_min, final.dtype)
        final = predict(
            model, path, final, t, source=parameterisation, target=DataPrediction()
        )
    times = None
    if states is not None:
        times = jnp.linspace(t_max, t_min, states.shape[0], dtype=x.dtype)
    return SampleResult(
        sample=check_finite(final, name),
        num_evaluations=evaluations + int(denoise),
        trajectory=states,
        times=times,
    )


def reverse_sde_sample(
    model: Model,
    path: AbstractGaussianPath,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray,
    solver: dfx.AbstractSolver = dfx.Euler(),
    stepsize_controller: dfx.AbstractStepSizeController = dfx.ConstantStepSize(),
    num_steps: IntScalarLike = 1000,
    max_steps: IntScalarLike = 16384,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    parameterisation: AbstractParameterisation = NoisePrediction(),
    denoise: bool = True,
    trajectory: bool = False,
) -> SampleResult:
    r"""Sample by integrating the reverse-time SDE (Anderson 1982; Song et al. 2021)
    with a Diffrax solver.

    The forward SDE $\mathrm{d}x = f(t)\,x\,\mathrm{d}t + g(t)\,\mathrm{d}w$ of the
    path is reversed by

    $$\mathrm{d}x = \left[f(t)\,x - g(t)^2\,\nabla_x \log p_t(x)\right]
    \mathrm{d}t + g(t)\,\mathrm{d}\bar w,$$

    run from $t_\text{max}$ down to $t_\text{min}$ with the model's score. It is
    integrated in the reversed time $\tau = t_\text{max} - t$, forward, so any
    Diffrax SDE solver and Brownian motion apply. The noise is additive (it does
    not depend on $x$), so Itô and Stratonovich solvers agree and the additive-noise
    methods `diffrax.ShARK` and `diffrax.SRA1` reach strong order 1.5
    (`diffrax.SEA`: order 1 with one drift evaluation per step). Brownian motion is chosen to suit: exact increments
    (`diffrax.UnsafeBrownianPath`) with `ConstantStepSize`, a
    `diffrax.VirtualBrownianTree` with an adaptive controller, with the Lévy area
    the solver needs.

    **Arguments:**

    - `model`: called as `model(x_t, t)`, predicting `parameterisation`.
    - `path`: the Gaussian path the model was trained on.
    - `x`: the starting point, a draw from
      [`prior_sample`][scorax.AbstractGaussianPath.prior_sample].
    - `key`: a JAX PRNG key for the Brownian motion.
    - `solver`: a Diffrax solver; default `diffrax.Euler()` (Euler-Maruyama).
    - `stepsize_controller`: default `diffrax.ConstantStepSize()`, which takes
      exactly `num_steps` steps; with an adaptive one (`diffrax.PIDController`,
      needing a solver with an error estimate such as `diffrax.Heun()` or
      `diffrax.ShARK()`), `num_steps` sets the first step.
    - `num_steps`: $\ge 1$; default 1000.
    - `max_steps`: the most steps an adaptive solve may take; exceeding it is an
      error.
    - `t_min`, `t_max`: the time interval, $0 \le t_\text{min} < t_\text{max} \le 1$ ($t_\text{min} = 0$ only on paths with $\sigma(0) > 0$).
      Stop at $t_\text{min} > 0$, where the score is finite; paths with
      $\alpha(1) = 0$ (`CosinePath`, `LinearPath`) need $t_\text{max} < 1$.
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `denoise`: finish with Tweedie's posterior mean $\mathbb{E}[x_0 \mid
      x_{t_\text{min}}]$ read from the model (one more evaluation).
    - `trajectory`: also return the state at `num_steps + 1` evenly spaced times
      from $t_\text{max}$ to $t_\text{min}$ (for adaptive solves, interpolated).

    **Returns:**

    A [`SampleResult`][scorax.SampleResult]. `num_evaluations` counts the drift
    evaluations the solver made, rejected steps included.
    """

    def drift(tau, y):
        t = t_max - tau
        score = predict(
            model, path, y, t, source=parameterisation, target=ScorePrediction()
        )
        return path.diffusion_squared(t) * score - path.drift(y, t)

    def diffusion(tau):
        return jnp.sqrt(path.diffusion_squared(t_max - tau))

    return _integrate_backwards(
        model,
        path,
        x,
        drift,
        diffusion=diffusion,
        key=key,
        solver=solver,
        stepsize_controller=stepsize_controller,
        num_steps=num_steps,
        max_steps=max_steps,
        t_min=t_min,
        t_max=t_max,
        parameterisation=parameterisation,
        denoise=denoise,
        trajectory=trajectory,
        name="reverse_sde_sample",
    )


def probability_flow_sample(
    model: Model,
    path: AbstractGaussianPath,
    x: Float[Array, "*shape"],
    *,
    solver: dfx.AbstractSolver = dfx.Tsit5(),
    stepsize_controller: dfx.AbstractStepSizeController = dfx.PIDController(
        rtol=1e-5, atol=1e-5
    ),
    num_steps: IntScalarLike = 100,
    max_steps: IntScalarLike = 4096,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    parameterisation: AbstractParameterisation = NoisePrediction(),
    denoise: bool = True,
    trajectory: bool = False,
) -> SampleResult:
    r"""Sample by integrating the probability-flow ODE (Song et al. 2021) with a
    Diffrax solver: deterministic, and the same map as used by
    [`log_likelihood`][scorax.log_likelihood].

    $$\frac{\mathrm{d}x}{\mathrm{d}t} = f(t)\,x - \tfrac12 g(t)^2\, \nabla_x \log
    p_t(x),$$

    whose solutions carry $p_{t_\text{max}}$ to $p_{t_\text{min}}$ exactly when the
    score is exact. The right-hand side is the model's output converted to
    [`VelocityPrediction`][scorax.VelocityPrediction], so a flow-matching model
    is integrated as it is. The ODE is solved from $t_\text{max}$ down to
    $t_\text{min}$ (in reversed time, as in
    [`reverse_sde_sample`][scorax.reverse_sde_sample]).

    **Arguments:**

    - `model`, `path`, `x`, `parameterisation`, `denoise`, `trajectory`,
      `t_min`, `t_max`, `max_steps`: as for
      [`reverse_sde_sample`][scorax.reverse_sde_sample].
    - `solver`: a Diffrax ODE solver; default `diffrax.Tsit5()`.
    - `stepsize_controller`: default `diffrax.PIDController(rtol=1e-5,
      atol=1e-5)`; `diffrax.ConstantStepSize()` takes exactly `num_steps` steps.
    - `num_steps`: $\ge 1$; the number of steps for a constant step size, and
      sets the first step $(t_\text{max} - t_\text{min}) / \text{num\_steps}$ of
      an adaptive one; default 100.

    **Returns:**

    A [`SampleResult`][scorax.SampleResult]; `num_evaluations` counts the
    vector-field evaluations, rejected steps included.
    """

    def drift(tau, y):
        t = t_max - tau
        return -predict(
            model, path, y, t, source=parameterisation, target=VelocityPrediction()
        )

    return _integrate_backwards(
        model,
        path,
        x,
        drift,
        solver=solver,
        stepsize_controller=stepsize_controller,
        num_steps=num_steps,
        max_steps=max_steps,
        t_min=t_min,
        t_max=t_max,
        parameterisation=parameterisation,
        denoise=denoise,
        trajectory=trajectory,
        name="probability_flow_sample",
    )
