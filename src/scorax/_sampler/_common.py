"""What every sampler shares: the result type, argument checks and model reads."""

from collections.abc import Callable
from typing import TypeAlias

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .._custom_types import FloatScalar, RealScalarLike
from .._misc import check
from .._parameterisation import AbstractParameterisation, convert
from .._path import AbstractGaussianPath


Model: TypeAlias = Callable[
    [Float[Array, "*shape"], FloatScalar], Float[Array, "*shape"]
]
ScoreFn: TypeAlias = Callable[[Float[Array, "*shape"]], Float[Array, "*shape"]]


class SampleResult(eqx.Module):
    r"""What a sampler returns for one sample.

    Under `jax.vmap` every field gains a leading batch axis (each sample reports
    its own number of model evaluations, which differs between samples only for
    adaptive step-size controllers).

    **Fields:**

    - `sample`: the final sample, shaped like the starting point.
    - `num_evaluations`: how many times the model was called (for the
      likelihood, how many times the vector field and its divergence were
      evaluated), counting rejected adaptive steps and the final denoising step.
    - `trajectory`: with `trajectory=True`, the states visited, first the starting
      point; otherwise `None`. It holds the chain before any final denoising step.
    - `times`: the time of each state of `trajectory` (on the sampler's own time
      axis, see each sampler), or `None`.
    """

    sample: Float[Array, "*shape"]
    num_evaluations: Int[Array, ""]
    trajectory: Float[Array, " num_saved *shape"] | None = None
    times: Float[Array, " num_saved"] | None = None


def check_positive(value: RealScalarLike, name: str) -> Array:
    """`value` as an array, with an error naming `name` unless it is finite and > 0."""
    value = jnp.asarray(value)
    return check(
        value,
        jnp.isfinite(value) & (value > 0),
        f"`{name}` must be finite and > 0, got {value}.",
    )


def check_time_range(t_min: float, t_max: float = 1.0) -> None:
    """`0 < t_min < t_max <= 1`, with an error naming the argument at fault."""
    if not 0 < t_min < 1:
        raise ValueError(f"`t_min` must lie in (0, 1), got {t_min}.")
    if not t_min < t_max <= 1:
        raise ValueError(f"`t_max` must lie in (t_min, 1] = ({t_min}, 1], got {t_max}.")


def check_model(model: Callable, x: Array, *args: Array) -> None:
    """Raise `ValueError` unless `model(x, *args)` is an array shaped like `x`."""
    out = jax.eval_shape(model, x, *args)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != x.shape:
        got = out.shape if isinstance(out, jax.ShapeDtypeStruct) else type(out)
        raise ValueError(
            f"`model` must return an array shaped like its input {x.shape}, got {got}."
        )


def check_finite(x: Array, sampler: str) -> Array:
    """Report a NaN or infinity produced along the way instead of returning it."""
    return check(
        x,
        jnp.all(jnp.isfinite(x)),
        f"{sampler} produced a non-finite value (NaN or inf): the model output or "
        "the step size is unstable; try smaller steps, a larger `t_min` or check "
        "the model.",
    )


def predict(
    model: Model,
    path: AbstractGaussianPath,
    x: Float[Array, "*shape"],
    t: FloatScalar,
    *,
    source: AbstractParameterisation,
    target: AbstractParameterisation,
) -> Float[Array, "*shape"]:
    """`model(x, t)` read in the `target` parameterisation (one model evaluation)."""
    value = model(x, t)
    if type(source) is type(target):
        return value
    return convert(path, value, x, t, source=source, target=target)


def num_evaluations(count: int | Array) -> Int[Array, ""]:
    return jnp.asarray(count, dtype=jnp.int32)


def time_grid(
    t_max: float, t_min: float, num_steps: int, dtype
) -> Float[Array, " levels"]:
    """`num_steps + 1` evenly spaced times from `t_max` down to `t_min`."""
    return jnp.linspace(t_max, t_min, num_steps + 1, dtype=dtype)
