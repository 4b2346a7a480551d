"""The one loop that drives every fixed-grid sampler."""

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_finite, check_start
from ._abstract import AbstractSampler, Problem
from ._result import SampleResult


def run(
    sampler: AbstractSampler,
    problem: Problem,
    x: Float[Array, "*shape"],
    *,
    num_steps: int,
    key: PRNGKeyArray | None,
    denoise: bool,
    trajectory: bool,
) -> SampleResult:
    """Sample `problem` from `x` with `num_steps` steps of `sampler`: build its
    grid, check the starting point and the model, scan the steps (one key each, split from `key`),
    optionally denoise at the last grid point, and check the result is finite.
    """
    if denoise and not sampler.can_denoise:
        raise ValueError(f"{sampler.name} has no final denoising step.")
    x = check_start(x)
    grid = sampler.grid(problem, num_steps, x.dtype)
    sampler.check(problem, x, grid)
    keys = jr.split(jr.key(0) if key is None else key, num_steps)
    inputs = (
        jax.tree.map(lambda a: a[:-1], grid),
        jax.tree.map(lambda a: a[1:], grid),
        keys,
        jnp.arange(num_steps),
    )
    scanned = num_steps - 1 if sampler.final_step_differs else num_steps

    def body(state, inputs):
        state, saved = sampler.step(problem, state, *inputs)
        return state, saved if trajectory else None

    state, states = jax.lax.scan(
        body,
        sampler.init(problem, x, grid),
        jax.tree.map(lambda a: a[:scanned], inputs),
    )
    if scanned < num_steps:
        last_inputs = jax.tree.map(lambda a: a[scanned], inputs)
        state, saved = sampler.final_step(problem, state, *last_inputs)
        states = None if states is None else jnp.concatenate([states, saved[None]])
    last = jax.tree.map(lambda a: a[-1], grid)
    final = sampler.sample(state, last)
    if trajectory:
        assert states is not None
        states = jnp.concatenate([states, final[None]])
    if denoise:
        final = sampler.denoise(problem, final, last)
    return SampleResult(
        sample=check_finite(final, sampler.name),
        num_evaluations=jnp.asarray(
            sampler.evaluations(num_steps) + int(denoise), jnp.int32
        ),
        trajectory=states,
        times=grid.t if trajectory else None,
    )
