"""Every argument check of scorax, in one place: each works on concrete values
(raising `ValueError` at once, naming the argument) and under `jit`/`vmap`
(becoming an `eqx.error_if`, raised when the computation runs)."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool


def is_concrete(*values: object) -> bool:
    """True when no value is a JAX tracer, so it can be inspected in Python."""
    return not any(isinstance(v, jax.core.Tracer) for v in values)


def check(value: ArrayLike, ok: Bool[ArrayLike, "..."], message: str) -> Array:
    """Return `value` as an array, failing with `message` where `ok` is false.

    With concrete inputs this raises `ValueError` immediately (construction-time
    errors); under `jit`/`vmap` it becomes an `eqx.error_if`, raised when the
    computation runs.
    """
    value = jnp.asarray(value)
    if is_concrete(value, ok):
        if not bool(np.all(np.asarray(ok))):
            raise ValueError(message)
        return value
    return eqx.error_if(value, jnp.logical_not(jnp.all(ok)), message)


def check_time(t: ArrayLike, name: str = "t") -> Array:
    """Check that a time lies in the unit interval [0, 1] (t = 0 data, t = 1 noise)."""
    return check(
        t,
        (jnp.asarray(t) >= 0) & (jnp.asarray(t) <= 1),
        f"`{name}` must lie in [0, 1] (t = 0 is data, t = 1 is noise).",
    )


def check_positive(value: ArrayLike, name: str) -> Array:
    """`value` as an array, with an error naming `name` unless it is finite and > 0."""
    value = jnp.asarray(value)
    shown = value if is_concrete(value) else "a traced value"
    return check(
        value,
        jnp.isfinite(value) & (value > 0),
        f"`{name}` must be finite and > 0, got {shown}.",
    )


def check_count(value: object, name: str, *, minimum: int = 1) -> int:
    """`value`, unless it is not a Python integer >= `minimum` (a static count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return value


def check_choice(value: object, name: str, allowed: tuple[str, ...]) -> None:
    """Raise `ValueError` unless `value` is one of the `allowed` names."""
    if value not in allowed:
        raise ValueError(
            f"`{name}` must be one of {', '.join(map(repr, allowed))}, got {value!r}."
        )


def check_time_range(t_min: float, t_max: float = 1.0) -> None:
    """`0 < t_min < t_max <= 1`, with an error naming the argument at fault."""
    if not 0 < t_min < 1:
        raise ValueError(f"`t_min` must lie in (0, 1), got {t_min}.")
    if not t_min < t_max <= 1:
        raise ValueError(f"`t_max` must lie in (t_min, 1] = ({t_min}, 1], got {t_max}.")


def check_log_snr_ends(value: ArrayLike, ends: Array, path: object) -> Array:
    """`value`, with an error unless the log-SNR `ends` (at `t_max` and `t_min`,
    or any multiple of them) are finite: alpha(t_max) > 0 and sigma(t_min) > 0."""
    return check(
        value,
        jnp.all(jnp.isfinite(ends)),
        f"`t_max`, `t_min`: {type(path).__name__} needs alpha(t_max) > 0 and "
        "sigma(t_min) > 0 for a finite log-SNR at both ends (paths with "
        "alpha(1) = 0, such as CosinePath and LinearPath, need t_max < 1).",
    )


def check_finite(x: Array, name: str) -> Array:
    """Report a NaN or infinity produced along the way instead of returning it."""
    return check(
        x,
        jnp.all(jnp.isfinite(x)),
        f"{name} produced a non-finite value (NaN or inf): the model output or "
        "the step size is unstable; try smaller steps, a larger `t_min` or check "
        "the model.",
    )


def check_model(model: Callable, x: Array, *args: Array) -> None:
    """Raise `ValueError` unless `model(x, *args)` is an array shaped like `x`."""
    out = jax.eval_shape(model, x, *args)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != x.shape:
        got = out.shape if isinstance(out, jax.ShapeDtypeStruct) else type(out)
        raise ValueError(
            f"`model` must return an array shaped like its input {x.shape}, got {got}."
        )
