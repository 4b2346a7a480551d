"""Diffrax solves for the samplers and the likelihood, with an exact count of the
vector-field evaluations they spend."""

from collections.abc import Callable

import diffrax as dfx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Int, PRNGKeyArray, PyTree

from ._checks import check_count
from ._custom_types import IntScalarLike


def evaluations_per_step(solver: dfx.AbstractSolver) -> tuple[int, int]:
    """`(per_step, once)`: drift evaluations per attempted step, and once per solve.

    Explicit Runge-Kutta methods evaluate every stage; first-same-as-last (FSAL)
    tableaus reuse the last stage as the next step's first, at the price of one
    evaluation before the first step. Stochastic Runge-Kutta methods evaluate the
    drift at each stage their tableau does not skip.
    """
    if isinstance(solver, (dfx.Euler, dfx.EulerHeun)):
        return 1, 0
    if isinstance(solver, dfx.AbstractERK) and isinstance(
        solver.tableau, dfx.ButcherTableau
    ):
        fsal = int(solver.tableau.fsal)
        return solver.tableau.num_stages - fsal, fsal
    if isinstance(solver, dfx.AbstractSRK):
        tableau = solver.tableau
        skipped = 0 if tableau.ignore_stage_f is None else tableau.ignore_stage_f
        return len(tableau.b_sol) - int(np.sum(skipped)), 0
    raise ValueError(
        "`solver` must be diffrax.Euler, diffrax.EulerHeun, an explicit Runge-Kutta "
        "solver (diffrax.AbstractERK: Heun, Midpoint, Ralston, Bosh3, Tsit5, Dopri5, "
        "Dopri8, ...) or a stochastic Runge-Kutta solver (diffrax.AbstractSRK: SEA, "
        f"ShARK, SRA1, ...), whose model evaluations scorax can count; got {solver!r}."
    )


def check_solver_options(
    solver: dfx.AbstractSolver, num_steps: IntScalarLike, max_steps: IntScalarLike
) -> tuple[int, int]:
    """`(num_steps, max_steps)` as Python integers, once `solver` is one whose
    evaluations scorax can count."""
    evaluations_per_step(solver)
    return check_count(num_steps, "num_steps"), check_count(max_steps, "max_steps")


def brownian_motion(
    solver: dfx.AbstractSolver,
    controller: dfx.AbstractStepSizeController,
    span: float,
    num_steps: int,
    like: Array,
    key: PRNGKeyArray,
) -> dfx.AbstractBrownianPath:
    """The Brownian motion a solver and controller need: exact increments on a
    fixed grid, a virtual Brownian tree (resolving 1/16 of the initial step)
    for adaptive steps, with the Lévy area the solver asks for."""
    minimal = getattr(solver, "minimal_levy_area", dfx.AbstractBrownianIncrement)
    levy_area = next(
        kind
        for kind in (
            dfx.BrownianIncrement,
            dfx.SpaceTimeLevyArea,
            dfx.SpaceTimeTimeLevyArea,
        )
        if issubclass(kind, minimal)
    )
    shape = jax.ShapeDtypeStruct(like.shape, like.dtype)
    if isinstance(controller, (dfx.ConstantStepSize, dfx.StepTo)):
        return dfx.UnsafeBrownianPath(shape, key, levy_area=levy_area)
    return dfx.VirtualBrownianTree(
        0.0,
        span,
        tol=span / (16 * num_steps),
        shape=shape,
        key=key,
        levy_area=levy_area,
    )


def additive_noise(
    diffusion: Callable[..., Array], brownian: dfx.AbstractBrownianPath
) -> dfx.ControlTerm:
    """The term $g(t)\\,\\mathrm{d}w$ with scalar $g$, acting entrywise."""
    return dfx.ControlTerm(
        lambda t, y, args: lx.DiagonalLinearOperator(diffusion(t) * jnp.ones_like(y)),
        brownian,
    )


def solve(
    drift: Callable[..., PyTree],
    y0: PyTree,
    span: Array,
    *,
    solver: dfx.AbstractSolver,
    controller: dfx.AbstractStepSizeController,
    num_steps: int,
    max_steps: int,
    diffusion: Callable[..., Array] | None = None,
    brownian: dfx.AbstractBrownianPath | None = None,
    save: bool = False,
) -> tuple[PyTree, PyTree | None, Int[Array, ""]]:
    """Integrate `dy = drift(s, y) ds (+ diffusion(s) dw)` over `s` in `[0, span]`.

    A `ConstantStepSize` takes exactly `num_steps` steps (as `StepTo` on an even
    grid, so rounding cannot add a step); an adaptive controller starts from the
    step `span / num_steps` and may take up to `max_steps`. With `save`, the state
    is also returned at `num_steps + 1` evenly spaced times.

    Returns `(y1, states or None, evaluations)`.
    """
    grid = jnp.linspace(0, span, num_steps + 1)
    if isinstance(controller, dfx.ConstantStepSize):
        controller, dt0, max_steps = dfx.StepTo(ts=grid), None, num_steps
    else:
        dt0 = span / num_steps
    terms = dfx.ODETerm(lambda s, y, args: drift(s, y))
    if diffusion is not None and brownian is not None:
        terms = dfx.MultiTerm(terms, additive_noise(diffusion, brownian))
    per_step, once = evaluations_per_step(solver)
    solver_state = None
    if once:
        # First-same-as-last: evaluate the first stage here, once. Left to Diffrax,
        # it is evaluated again each time the first step is rejected, which the
        # solver's statistics do not record.
        solver_state = (jnp.array(False), terms.vf(jnp.zeros_like(span), y0, None))
    saveat = dfx.SaveAt(ts=grid) if save else dfx.SaveAt(t1=True)
    # Exact Brownian increments cannot be replayed backwards: forward mode only.
    unsafe = isinstance(brownian, dfx.UnsafeBrownianPath)
    solution = dfx.diffeqsolve(
        terms,
        solver,
        0.0,
        span,
        dt0,
        y0,
        stepsize_controller=controller,
        saveat=saveat,
        max_steps=max_steps,
        solver_state=solver_state,
        adjoint=dfx.ForwardMode() if unsafe else dfx.RecursiveCheckpointAdjoint(),
    )
    assert solution.ys is not None and solution.stats is not None
    final = jax.tree.map(lambda a: a[-1], solution.ys)
    evaluations = per_step * solution.stats["num_steps"] + once
    return final, solution.ys if save else None, jnp.asarray(evaluations, jnp.int32)
