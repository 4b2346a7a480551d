"""Small private helpers: boundary checks that work eagerly and under tracing."""

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


def positive(value: ArrayLike, name: str) -> None:
    """Raise `ValueError` unless a Python hyperparameter is finite and positive."""
    if is_concrete(value) and not (
        np.isfinite(value) and np.all(np.asarray(value) > 0)
    ):
        raise ValueError(f"`{name}` must be finite and > 0, got {value}.")


def check_choice(value: object, name: str, allowed: tuple[str, ...]) -> None:
    """Raise `ValueError` unless `value` is one of the `allowed` names."""
    if value not in allowed:
        raise ValueError(
            f"`{name}` must be one of {', '.join(map(repr, allowed))}, got {value!r}."
        )


def check_count(value: object, name: str) -> None:
    """Raise `ValueError` unless `value` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
