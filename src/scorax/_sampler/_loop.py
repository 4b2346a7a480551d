"""The one loop that drives every fixed-grid sampler."""

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_finite, check_model, check_start
from ._abstract import (
    AbstractDenoisingSampler,
    AbstractLastStepSampler,
    AbstractSampler,
    Problem,
)
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
    noise: Array | None = None,
) -> SampleResult:
    """Sample `problem` from `x` with `sampler` on its grid of `num_steps` steps:
    check the key, the start and the model, scan the steps (one key each, split
    from `key`, or the Gaussian draws of each step given in `noise`), optionally
    denoise at the last grid point, and check the result is finite."""
    if denoise and not isinstance(sampler, AbstractDenoisingSampler):
        raise ValueError(f"`denoise`: {sampler.name} has no final denoising step.")
    x = check_start(x)
    grid = sampler.grid(problem, num_steps, x.dtype)
    num_steps = grid.t.shape[0] - 1
    check_model(problem.model, x, grid.t[0])
    inputs = (
        jax.tree.map(lambda a: a[:-1], grid),
        jax.tree.map(lambda a: a[1:], grid),
        _randomness(sampler, key, noise, num_steps, x),
        jnp.arange(num_steps),
    )
    last_differs = isinstance(sampler, AbstractLastStepSampler)
    scanned = num_steps - 1 if last_differs else num_steps

    def body(state, inputs):
        state, saved = sampler.step(problem, state, *inputs)
        return state, saved if trajectory else None

    state, states = jax.lax.scan(
        body,
        sampler.init(problem, x, grid),
        jax.tree.map(lambda a: a[:scanned], inputs),
    )
    if isinstance(sampler, AbstractLastStepSampler):
        state, saved = sampler.last_step(
            problem, state, *jax.tree.map(lambda a: a[-1], inputs)
        )
        states = None if states is None else jnp.concatenate([states, saved[None]])
    last = jax.tree.map(lambda a: a[-1], grid)
    final = sampler.sample(state, last)
    if trajectory:
        assert states is not None
        states = jnp.concatenate([states, final[None]])
    if isinstance(sampler, AbstractDenoisingSampler) and denoise:
        final = sampler.denoise(problem, final, last)
    return SampleResult(
        sample=check_finite(final, sampler.name),
        num_evaluations=jnp.asarray(
            sampler.evaluations(num_steps) + int(denoise), jnp.int32
        ),
        trajectory=states,
        times=grid.t if trajectory else None,
    )


def _randomness(
    sampler: AbstractSampler,
    key: PRNGKeyArray | None,
    noise: Array | None,
    num_steps: int,
    x: Array,
) -> Array:
    """One key a step, split from `key`; or the draws of each step, `noise`
    checked against the shape the sampler draws."""
    if noise is None:
        if key is None:
            if sampler.needs_key():
                raise ValueError(
                    f"`key` is required: {sampler.name} draws noise with these "
                    "settings."
                )
            key = jr.key(0)  # unused: nothing is drawn
        return jr.split(key, num_steps)
    if key is not None:
        raise ValueError(
            "`key`, `noise`: pass one of them, not both (`noise` holds every "
            "Gaussian draw of the sampler)."
        )
    if not sampler.needs_key():
        raise ValueError(
            f"`noise`: {sampler.name} draws no noise with these settings; leave it "
            "None."
        )
    draws = sampler.draws()
    shape = (num_steps, *((draws,) if draws > 1 else ()), *x.shape)
    if noise.shape != shape:
        raise ValueError(
            f"`noise` must hold {draws} standard Gaussian draw(s) shaped like `x` "
            f"for each of the {num_steps} steps: shape {shape}, got {noise.shape}."
        )
    return jnp.asarray(noise, x.dtype)
