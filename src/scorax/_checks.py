"""Every argument check of scorax, in one place: each works on concrete values
(raising `ValueError` at once, naming the argument) and under `jit`/`vmap`
(becoming an `eqx.error_if`, raised when the computation runs)."""

from collections.abc import Callable
from typing import Any

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


def _on_host(value: object) -> np.ndarray | None:
    """`value` as a NumPy array when it is a Python or NumPy number or array
    (known on the host even inside a traced function), else None."""
    if isinstance(value, (bool, int, float, np.number, np.bool_, np.ndarray)):
        return np.asarray(value)
    return None


def _checked(
    value: ArrayLike, ok: Callable[[Any], Any], message: Callable[[object], str]
) -> Array:
    """`value` as an array, failing unless `ok(value)` holds everywhere: decided
    at once for a value known on the host (even inside `jit`, where a Python
    number stays a number), otherwise by `check`. `message` formats the value."""
    host = _on_host(value)
    if host is not None:
        if not bool(np.all(ok(host))):
            raise ValueError(message(host))
        return jnp.asarray(value)
    value = jnp.asarray(value)
    shown = value if is_concrete(value) else "a traced value"
    return check(value, ok(value), message(shown))


def check_positive(value: ArrayLike, name: str) -> Array:
    """`value` as an array, with an error naming `name` unless it is finite and > 0."""
    return _checked(
        value,
        lambda v: (v > 0) & (abs(v) < float("inf")),
        lambda shown: f"`{name}` must be finite and > 0, got {shown}.",
    )


def _as_int(value: object) -> int | None:
    """`value` as a Python `int` if it is a concrete integer scalar of any integer
    type (not a boolean), else None."""
    if isinstance(value, (bool, np.bool_)) or not is_concrete(value):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (np.ndarray, jax.Array)) and value.shape == ():
        if jnp.issubdtype(value.dtype, jnp.integer):
            return int(value)
    return None


def to_count(value: Any) -> Any:
    """A converter for a static count field: an integer scalar of any integer
    type becomes a Python `int`; anything else is left for `__check_init__`
    (`check_count`) to refuse."""
    count = _as_int(value)
    if count is None and isinstance(value, np.generic):
        return value.item()  # a NumPy scalar, refused as the Python value it holds
    return value if count is None else count


def check_range(
    value: ArrayLike,
    name: str,
    *,
    low: float | int,
    high: float | int | None = None,
) -> Array:
    """`value` as an array, with an error naming `name` unless it lies in
    [`low`, `high`] (or is >= `low`)."""
    allowed = f"be >= {low}" if high is None else f"lie in [{low}, {high}]"
    return _checked(
        value,
        lambda v: (v >= low) if high is None else (v >= low) & (v <= high),
        lambda shown: f"`{name}` must {allowed}, got {shown}.",
    )


def check_count(
    value: object, name: str, *, minimum: int = 1, maximum: int | None = None
) -> int:
    """`value` as a Python `int`, unless it is not an integer scalar (of any integer
    type: Python, NumPy or a zero-dimensional array; not a boolean or a float)
    in [`minimum`, `maximum`]. Counts are static: they fix shapes and loops."""
    count = _as_int(value)
    if count is None or count < minimum or (maximum is not None and count > maximum):
        allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"`{name}` must be an integer {allowed}, got {value!r}.")
    return count


def check_choice(value: object, name: str, allowed: tuple[str, ...]) -> None:
    """Raise `ValueError` unless `value` is one of the `allowed` names."""
    if value not in allowed:
        raise ValueError(
            f"`{name}` must be one of {', '.join(map(repr, allowed))}, got {value!r}."
        )


def check_time_range(t_min: float, t_max: float = 1.0, path: object = None) -> None:
    """`0 <= t_min < t_max <= 1`, with an error naming the argument at fault;
    `t_min = 0` only where the `path` (an `AbstractGaussianPath`) has
    sigma(0) > 0, so that its score is finite at the data end."""
    if not 0 <= t_min < 1:
        raise ValueError(f"`t_min` must lie in [0, 1), got {t_min}.")
    if t_min == 0:
        sigma = getattr(path, "sigma", None)
        at_zero = None if sigma is None else sigma(0.0)
        if at_zero is None or not is_concrete(at_zero) or not float(at_zero) > 0:
            name = type(path).__name__ if path is not None else "this sampler"
            why = (
                "whose sigma(0) is 0 (the score diverges at the data)"
                if at_zero is not None and is_concrete(at_zero)
                else "where sigma(0) > 0 cannot be checked (a traced path)"
            )
            raise ValueError(
                f"`t_min` must be > 0 on {name}, {why}; t_min = 0 is allowed on "
                "paths with sigma(0) > 0 such as VEPath and EDMPath."
            )
    if not t_min < t_max <= 1:
        raise ValueError(f"`t_max` must lie in (t_min, 1] = ({t_min}, 1], got {t_max}.")


def check_boundary_time(t_min: object, name: str = "t_min") -> float:
    """`t_min` as a float, unless it is not a number in (0, 1): the boundary time of
    a consistency model, or the smallest time of a loss."""
    if isinstance(t_min, bool) or not isinstance(t_min, (int, float, np.number)):
        raise ValueError(f"`{name}` must be a number in (0, 1), got {t_min!r}.")
    if not 0 < t_min < 1:
        raise ValueError(f"`{name}` must lie in (0, 1), got {t_min}.")
    return float(t_min)


def check_consistency_model(model: object, name: str = "model") -> float:
    """The boundary time `t_min` of a consistency model (`ConsistencyModel`,
    `testing.ExactConsistencyModel`, or any model with a float `t_min` in (0, 1)),
    or an error naming `name`."""
    t_min = getattr(model, "t_min", None)
    if not isinstance(t_min, float) or not 0 < t_min < 1:
        raise ValueError(
            f"`{name}` must be a consistency model with its boundary time `t_min`, "
            "a float in (0, 1) (a ConsistencyModel or "
            f"scorax.testing.ExactConsistencyModel), got {type(model).__name__} "
            f"with t_min={t_min!r}."
        )
    return t_min


def check_decreasing_times(
    times: object, name: str, *, t_min: float, t_max: float, path: Any
) -> np.ndarray:
    """`times` as a float64 NumPy vector, unless it is not a non-empty, concrete,
    strictly decreasing sequence in (`t_min`, `t_max`] at whose first time the
    `path` keeps some signal (alpha > 0)."""
    if not is_concrete(times):
        raise ValueError(f"`{name}` must be concrete (not traced): it fixes the grid.")
    try:
        values = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`{name}` must be a sequence of times, got {times!r}."
        ) from error
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            f"`{name}` must be a non-empty sequence of times, got shape {values.shape}."
        )
    inside = (values > t_min) & (values <= t_max)
    if not np.all(np.diff(values) < 0) or not np.all(inside):
        raise ValueError(
            f"`{name}` must be strictly decreasing and lie in (t_min, t_max] = "
            f"({t_min}, {t_max}], got {values.tolist()}."
        )
    alpha = path.alpha(float(values[0]))
    if is_concrete(alpha) and not float(alpha) > 0:
        raise ValueError(
            f"`{name}`: the first time {values[0]} has alpha = 0 on "
            f"{type(path).__name__} (no signal left); start earlier."
        )
    return values


def check_log_snr_ends(
    value: ArrayLike, ends: Array, path: object, t_max: float, t_min: float
) -> Array:
    """`value`, with an error unless the log-SNR `ends` (at `t_max` and `t_min`,
    or any multiple of them) are finite: alpha(t_max) > 0 and sigma(t_min) > 0."""
    return check(
        value,
        jnp.all(jnp.isfinite(ends)),
        f"`t_max`, `t_min`: {type(path).__name__} needs alpha(t_max) > 0 and "
        "sigma(t_min) > 0 for a finite log-SNR at both ends (paths with "
        "alpha(1) = 0, such as CosinePath and LinearPath, need t_max < 1), got "
        f"t_max={t_max}, t_min={t_min}.",
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


def check_model(model: Callable, x: Array, *args: Array, name: str = "model") -> None:
    """Raise `ValueError` unless `model(x, *args)` is an array shaped like `x`."""
    out = jax.eval_shape(model, x, *args)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != x.shape:
        got = out.shape if isinstance(out, jax.ShapeDtypeStruct) else type(out)
        raise ValueError(
            f"`{name}` must return an array shaped like its input {x.shape}, got {got}."
        )


def check_start(x: Array, name: str = "x") -> Array:
    """`x`, unless it is not floating point or holds a NaN or infinity: a
    starting point (or data point) is checked before any work is done on it."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"`{name}` must be a floating-point array, got dtype {x.dtype}; convert "
            f"it with `{name}.astype(jnp.float32)`."
        )
    return check(
        x,
        jnp.all(jnp.isfinite(x)),
        f"`{name}` must be finite, but it holds a NaN or an infinity.",
    )


def check_finite_scalar(value: ArrayLike, name: str) -> Array:
    """`value` as a floating array, unless it is a NaN or an infinity."""
    checked = _checked(
        value,
        lambda v: abs(v) < float("inf"),
        lambda shown: f"`{name}` must be finite, got {shown}.",
    )
    return jnp.asarray(checked, float)


def check_label(
    label: object,
    name: str = "label",
    *,
    allow_null: bool,
    num_classes: int | None = None,
) -> Array:
    """`label` as an int32 scalar: an integer class in [0, `num_classes`) (or
    >= 0 when the number of classes is unknown), or, with `allow_null`, -1 or
    None for no class. Booleans and floats are refused rather than rounded."""
    if label is None and allow_null:
        return jnp.asarray(-1, jnp.int32)
    low = -1 if allow_null else 0
    classes = "[0, K)" if num_classes is None else f"[0, {num_classes})"
    allowed = f"an integer class in {classes}" + (
        " or -1 (or None) for no class" if allow_null else ""
    )
    is_integer = not isinstance(label, (bool, np.bool_)) and (
        isinstance(label, (int, np.integer))
        or (
            isinstance(label, (np.ndarray, jax.Array))
            and label.shape == ()
            and jnp.issubdtype(label.dtype, jnp.integer)
        )
    )
    if not is_integer:
        raise ValueError(f"`{name}` must be {allowed}, got {label!r}.")
    value = jnp.asarray(label, jnp.int32)
    ok = value >= low
    if num_classes is not None:
        ok = ok & (value < num_classes)
    shown = label if is_concrete(label) else "a traced value"
    return check(value, ok, f"`{name}` must be {allowed}, got {shown}.")


_RUNTIME_MARKER = "RuntimeError: "


def runtime_message(error: BaseException) -> str:
    """The message of a failed runtime check (`eqx.error_if`) in one line, from
    the error JAX or Equinox raises around it (which may hold a traceback), or
    the first line of any other error."""
    text = str(error)
    if _RUNTIME_MARKER in text:
        text = text.rsplit(_RUNTIME_MARKER, 1)[1]
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("Above is the stack"):
            return line
    return type(error).__name__
