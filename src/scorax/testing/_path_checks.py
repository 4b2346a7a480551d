"""Deterministic identities of a Gaussian path and of the parameterisations on it."""

import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, TypeAlias

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy as jsp
import numpy as np
from jaxtyping import Array, ArrayLike, DTypeLike, PRNGKeyArray

from .._checks import runtime_message
from .._parameterisation import (
    AbstractParameterisation,
    convert,
    DataPrediction,
    NoisePrediction,
    ScorePrediction,
    VelocityPrediction,
)
from .._path import AbstractGaussianPath
from ._report import assert_close, fail, relative_tolerance
from ._strategies import default_dtype


Definition: TypeAlias = Callable[[AbstractGaussianPath, Array, Array, Array], Array]
"""`definition(path, x0, eps, t)`: what a parameterisation predicts for data x0
and noise eps at time t."""

# Where the smooth identities are checked unless the caller passes times: strictly
# inside (0, 1), where every built-in path is smooth and non-singular.
DEFAULT_TIMES = tuple(float(t) for t in np.linspace(0.02, 0.98, 25))
# Close to either end, where float32 formulas that cancel lose their accuracy.
NEAR_END_TIMES = (1e-8, 1e-6, 1e-4, 1e-2, 0.99, 1 - 1e-4, 1 - 1e-6, 1 - 1e-7)
TINY = 1e-30  # an absolute floor, so that exact zeros compare equal


def _reference_dtype() -> np.dtype:
    """The widest float JAX offers now: reference values are computed in it."""
    return np.dtype(jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32)


def _traced(path: AbstractGaussianPath) -> AbstractGaussianPath:
    """The path with its Python-float hyperparameters as (weakly typed) arrays, so
    that compiled checks trace them and reuse one program per path class."""
    return jax.tree.map(
        lambda leaf: jnp.asarray(leaf) if isinstance(leaf, float) else leaf, path
    )


def _check_times(times: Sequence[float] | ArrayLike | None) -> np.ndarray:
    if times is None:
        return np.asarray(DEFAULT_TIMES)
    values = np.atleast_1d(np.asarray(times, np.float64))
    if values.ndim != 1 or values.size == 0 or not np.all((values > 0) & (values < 1)):
        raise ValueError(
            "`times` must be a non-empty 1-D collection of times strictly inside "
            f"(0, 1), got {times!r}."
        )
    return values


def check_scales(name: str, path: AbstractGaussianPath, t: Array) -> None:
    """Fail unless alpha(t) and sigma(t) are finite and > 0 at every time `t`
    (all inside (0, 1)): what every identity of a path is built on."""
    for scale in ("alpha", "sigma"):
        try:
            values = np.asarray(jax.vmap(getattr(path, scale))(t), np.float64)
        except Exception as error:
            fail(
                name,
                f"{scale}(t) is defined at every time",
                [("where", f"times {np.asarray(t)}"), ("got", runtime_message(error))],
            )
        bad = ~(np.isfinite(values) & (values > 0))
        if np.any(bad):
            first = int(np.argmax(bad))
            fail(
                name,
                f"{scale}(t) is finite and > 0 for 0 < t < 1",
                [
                    (
                        "where",
                        f"t = {float(t[first]):.6g} (and {int(bad.sum()) - 1} more)",
                    ),
                    ("got", f"{scale}(t) = {values[first]:.6g}"),
                ],
            )


def _derivative(fn: Callable, t: Array) -> Array:
    """d fn / dt at each entry of `t`, by forward-mode autodiff."""
    return jax.vmap(lambda s: jax.jvp(fn, (s,), (jnp.ones_like(s),))[1])(t)


def _describe(times: np.ndarray) -> list[str]:
    return [f"t = {t:.8g}" for t in times]


def check_path(
    path: AbstractGaussianPath,
    *,
    times: Sequence[float] | ArrayLike | None = None,
    dtype: DTypeLike | None = None,
) -> None:
    r"""Check the identities every Gaussian path must satisfy, and raise an
    `AssertionError` naming the first that fails.

    At each time $t$ of `times` (default: 25 evenly spaced times in
    $[0.02, 0.98]$), in `dtype`:

    1. the closed-form $\alpha'(t)$ and $\sigma'(t)$ equal forward-mode autodiff of
       $\alpha$ and $\sigma$, and every primitive keeps the dtype of $t$;
    2. the forward SDE $\mathrm{d}x = f x\, \mathrm{d}t + g\, \mathrm{d}w$
       (`drift`, `diffusion`) has the path's marginals: $f\alpha = \alpha'$ and
       $(\sigma^2)' = 2 f \sigma^2 + g^2$, derivatives by autodiff;
    3. `conditional_score` is the gradient of $\log \mathcal{N}(x_t; \alpha x_0,
       \sigma^2 I)$, and equals $-\varepsilon / \sigma$ for
       $(x_t, \varepsilon)$ drawn by `sample`;
    4. `inverse_log_snr` inverts `log_snr`.

    Then, independently of `times`:

    5. $\lambda(t)$ is strictly decreasing on a grid of 101 times in
       $[10^{-3}, 1 - 10^{-3}]$, and `inverse_log_snr` maps every
       $\lambda \in [-40, 40]$ into $[0, 1]$ with a finite derivative;
    6. at exactly $t = 0$ and $t = 1$, the endpoints behave as documented:
       $\alpha$, $\sigma$ and $\alpha'$ are finite with $\alpha(0) > 0$ and
       $\sigma(1) > 0$; $\lambda(0) = +\infty$ exactly when $\sigma(0) = 0$ and
       $\lambda(1) = -\infty$ exactly when $\alpha(1) = 0$, finite otherwise;
       `conditional_score`, `drift` and `diffusion` return finite values or raise
       a `ValueError` naming `t`, and raise where $\sigma = 0$ (the score) or
       $\alpha = 0$ (the SDE); nothing is NaN;
    7. with `jax_enable_x64` on, float32 $\alpha$, $\sigma$ and $\lambda$ agree
       with float64 at times from $10^{-8}$ to $1 - 10^{-7}$, so no formula loses
       float32 accuracy to cancellation near the ends. Without x64 this identity
       cannot be checked, and a warning says so.

    **Tolerances.** An identity exact in real arithmetic is checked to 1000 units
    in the last place of the dtype, relative to the size of the terms compared
    (for a derivative, $|f'| + |f|$ per unit of time: near an extremum the
    derivative is small but its rounding is not), times the condition number of
    the formulas: $1 + |\lambda(t)|$ (an exponential such as $e^{-B(t)}$
    amplifies the rounding of its argument by about the log-SNR),
    $1/|\lambda'(t)|$ in time units for the inverse, and the cancellation in
    $x_t - \alpha x_0$ divided by $\sigma^2$ for $-\varepsilon / \sigma$.
    Reference derivatives are computed in float64 when x64 is on.

    **Arguments:**

    - `path`: an instance of any [`AbstractGaussianPath`][scorax.AbstractGaussianPath]
      subclass, including your own.
    - `times`: the times of identities 1-4, each strictly inside $(0, 1)$; pass
      draws of [`times()`][scorax.testing.times] to drive the check from
      Hypothesis.
    - `dtype`: the floating dtype to evaluate in (default: JAX's default float).

    **Returns:**

    `None`; raises `AssertionError` with a report (identity, where, values,
    tolerance and where it comes from) if an identity fails.

    !!! example

        ```python
        scorax.testing.check_path(scorax.VPPath(beta_min=0.1, beta_max=20.0))
        ```
    """
    name = f"scorax.testing.check_path({path!r})"
    dtype = default_dtype() if dtype is None else np.dtype(dtype)
    values = _check_times(times)
    t = jnp.asarray(values, dtype)
    check_scales(name, path, t)
    _check_dtypes(name, path, t[0], dtype)
    try:
        # One compiled program per path class and dtype: the hyperparameters are
        # traced, so Hypothesis's many paths of one class reuse it.
        v = jax.tree.map(
            lambda a: np.asarray(a, np.float64),
            _identity_values(_traced(path), t, jr.key(0)),
        )
    except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError) as error:
        fail(
            name,
            "drift, diffusion and conditional_score are finite at every time of "
            "identities 1-4",
            [("where", f"times {values}"), ("got", runtime_message(error))],
        )
    at = _AtTimes(
        name=name,
        v=v,
        times=values,
        where=_describe(values),
        rtol=relative_tolerance(dtype),
        condition=1 + np.abs(v["log_snr_reference"]),
        ulps=f"1000 ulps of {dtype.name}",
    )
    _check_derivatives(at)
    _check_sde_marginals(at)
    _check_conditional_score(at)
    _check_inverse_log_snr(at)
    _check_monotone_log_snr(name, _traced(path), dtype)
    _check_endpoints(name, path, dtype)
    if jax.config.read("jax_enable_x64"):
        _check_float32_near_the_ends(name, _traced(path))
    else:
        warnings.warn(
            "check_path: identity 7 (float32 accuracy near the ends) needs "
            "jax_enable_x64 and was not checked.",
            stacklevel=2,
        )


def _check_dtypes(
    name: str, path: AbstractGaussianPath, t: Array, dtype: np.dtype
) -> None:
    """Identity 1, second half: every primitive keeps the dtype of `t`."""
    for method in (
        "alpha",
        "sigma",
        "alpha_derivative",
        "sigma_derivative",
        "diffusion_squared",
        "log_snr",
    ):
        got = jax.eval_shape(getattr(path, method), t).dtype
        if got != dtype:
            fail(
                name,
                f"{method}(t) keeps the dtype of t",
                [("where", f"a {dtype.name} t"), ("got", f"a {got} result")],
            )


class _AtTimes(NamedTuple):
    """The values identities 1-4 compare at the checked times, and what their
    tolerances and reports are made of."""

    name: str  # the check, as reports name it
    v: dict[str, np.ndarray]  # from `_identity_values`, in float64
    times: np.ndarray
    where: list[str]  # each time, described
    rtol: float  # 1000 ulps of the dtype
    condition: np.ndarray  # 1 + |log_snr(t)|
    ulps: str  # `rtol` in words


def _check_derivatives(at: _AtTimes) -> None:
    """Identity 1: the closed-form derivatives against autodiff."""
    v = at.v
    for method, of in (("alpha_derivative", "alpha"), ("sigma_derivative", "sigma")):
        expected = v[f"{of}_autodiff"]
        # Both sides round relative to the derivative and, where it is small (a
        # cosine near its peak), to the function itself per unit of time.
        assert_close(
            at.name,
            f"{method}(t) = d {of} / dt (forward-mode autodiff)",
            actual=v[method],
            expected=expected,
            tolerance=at.rtol * at.condition * (np.abs(expected) + np.abs(v[of]))
            + TINY,
            where=at.where,
            tolerance_source=f"{at.ulps} x (1 + |log_snr(t)|) x (|{of}'| + |{of}|)",
        )


def _check_sde_marginals(at: _AtTimes) -> None:
    """Identity 2: the forward SDE reproduces the marginals."""
    v = at.v
    sde_rtol = 2 * at.rtol * at.condition  # g^2 goes through a square root and back
    assert_close(
        at.name,
        "f(t) alpha(t) = alpha'(t), with f from drift (alpha' by autodiff)",
        actual=v["drift"] * v["alpha"],
        expected=v["alpha_autodiff"],
        tolerance=sde_rtol * (np.abs(v["alpha_autodiff"]) + v["alpha"]) + TINY,
        where=at.where,
        tolerance_source=f"2 x {at.ulps} x (1 + |log_snr(t)|) x (|alpha'| + alpha)",
    )
    two_f_variance = 2 * v["drift"] * v["sigma"] ** 2
    assert_close(
        at.name,
        "(sigma^2)'(t) = 2 f(t) sigma(t)^2 + g(t)^2, with f from drift, g from "
        "diffusion ((sigma^2)' by autodiff)",
        actual=two_f_variance + v["diffusion"] ** 2,
        expected=v["variance_autodiff"],
        tolerance=sde_rtol
        * (np.abs(two_f_variance) + v["diffusion"] ** 2 + v["sigma"] ** 2)
        + TINY,
        where=at.where,
        tolerance_source=f"2 x {at.ulps} x (1 + |log_snr(t)|) x (|2 f sigma^2| + g^2 "
        "+ sigma^2)",
    )


def _check_conditional_score(at: _AtTimes) -> None:
    """Identity 3: the conditional score, by autodiff and from `sample`'s noise."""
    v = at.v
    expected = v["score_autodiff"]
    assert_close(
        at.name,
        "conditional_score(x_t, x0, t) = grad log N(x_t; alpha x0, sigma^2 I)",
        actual=v["score"],
        expected=expected,
        tolerance=at.rtol * np.abs(expected) + TINY,
        where=at.where,
        tolerance_source=f"{at.ulps} x |expected|",
    )
    sigma, alpha = v["sigma"][:, None], v["alpha"][:, None]
    expected = -v["sample_noise"] / sigma
    # x_t - alpha x0 = sigma eps cancels when sigma |eps| << |x0|: its rounding,
    # about ulps x (|x_t| + |alpha x0|), divided by sigma^2, sets the error scale.
    cancellation = np.abs(v["sample"]) + np.abs(alpha * v["x0"])
    scale = np.max(np.abs(expected) + cancellation / sigma**2, axis=1, keepdims=True)
    assert_close(
        at.name,
        "conditional_score(x_t, x0, t) = -eps / sigma(t) for (x_t, eps) = "
        "sample(x0, t)",
        actual=v["sample_score"],
        expected=expected,
        tolerance=at.rtol * (1 + scale),
        where=at.where,
        tolerance_source=f"{at.ulps} x (1 + |eps / sigma| + (|x_t| + |alpha x0|) / "
        "sigma^2), the cancellation in x_t - alpha x0",
    )


def _check_inverse_log_snr(at: _AtTimes) -> None:
    """Identity 4: `inverse_log_snr` inverts `log_snr`."""
    slope = np.abs(at.v["log_snr_autodiff"])
    assert_close(
        at.name,
        "inverse_log_snr(log_snr(t)) = t",
        actual=at.v["inverse"],
        expected=at.times,
        tolerance=at.rtol * (at.condition / slope + 1),
        where=at.where,
        tolerance_source=f"{at.ulps} x ((1 + |log_snr(t)|) / |log_snr'(t)| + 1): "
        "the rounding of log_snr, in time units",
    )


@eqx.filter_jit
def _identity_values(
    path: AbstractGaussianPath, t: Array, key: PRNGKeyArray
) -> dict[str, Array]:
    """Everything identities 1-4 compare, at the times `t` (reference
    derivatives in the widest float JAX offers)."""
    t_ref = t.astype(_reference_dtype())
    x0, x_t = jr.normal(key, (2, 3), t.dtype)
    noisy, eps = jax.vmap(lambda s, k: path.sample(x0, s, key=k))(
        t, jr.split(jr.fold_in(key, 1), t.shape[0])
    )

    def log_density(x, s):
        return jnp.sum(jsp.stats.norm.logpdf(x, path.alpha(s) * x0, path.sigma(s)))

    every = jax.vmap
    return {
        "log_snr_reference": every(path.log_snr)(t_ref),
        "log_snr_autodiff": _derivative(path.log_snr, t_ref),
        "alpha": every(path.alpha)(t),
        "sigma": every(path.sigma)(t),
        "alpha_derivative": every(path.alpha_derivative)(t),
        "sigma_derivative": every(path.sigma_derivative)(t),
        "alpha_autodiff": _derivative(path.alpha, t_ref),
        "sigma_autodiff": _derivative(path.sigma, t_ref),
        "variance_autodiff": _derivative(lambda s: path.sigma(s) ** 2, t_ref),
        "drift": every(lambda s: path.drift(jnp.ones((), t.dtype), s))(t),
        "diffusion": every(path.diffusion)(t),
        "score": every(path.conditional_score, (None, None, 0))(x_t, x0, t),
        "score_autodiff": every(jax.grad(log_density), (None, 0))(x_t, t),
        "x0": x0,
        "sample": noisy,
        "sample_noise": eps,
        "sample_score": every(path.conditional_score, (0, None, 0))(noisy, x0, t),
        "inverse": every(path.inverse_log_snr)(every(path.log_snr)(t)),
    }


@eqx.filter_jit
def _along(path: AbstractGaussianPath, method: str, t: Array) -> Array:
    """`path.<method>` at each entry of `t`, compiled once per path class."""
    return jax.vmap(getattr(path, method))(t)


@eqx.filter_jit
def _gradient_along(path: AbstractGaussianPath, method: str, t: Array) -> Array:
    """The derivative of `path.<method>` at each entry of `t`."""
    return jax.vmap(jax.grad(getattr(path, method)))(t)


def _check_monotone_log_snr(name: str, path: AbstractGaussianPath, dtype) -> None:
    grid = np.linspace(1e-3, 1 - 1e-3, 101)
    log_snr = np.asarray(
        _along(path, "log_snr", jnp.asarray(grid, _reference_dtype())), np.float64
    )
    increases = np.flatnonzero(~(np.diff(log_snr) < 0))
    if increases.size:
        i = int(increases[0])
        fail(
            name,
            "log_snr(t) is strictly decreasing in t (noise grows from data to noise)",
            [
                ("where", f"t = {grid[i]:.6g} and t = {grid[i + 1]:.6g}"),
                ("got", f"log_snr = {log_snr[i]:.8g} then {log_snr[i + 1]:.8g}"),
            ],
        )
    lam = jnp.linspace(-40.0, 40.0, 161, dtype=dtype)
    inverse = np.asarray(_along(path, "inverse_log_snr", lam))
    gradient = np.asarray(_gradient_along(path, "inverse_log_snr", lam))
    bad = np.flatnonzero(~((inverse >= 0) & (inverse <= 1) & np.isfinite(gradient)))
    if bad.size:
        i = int(bad[0])
        fail(
            name,
            "inverse_log_snr maps every log-SNR into [0, 1], with a finite derivative",
            [
                ("where", f"log_snr = {float(lam[i]):.6g}"),
                ("got", f"t = {inverse[i]:.8g}, derivative {gradient[i]:.6g}"),
            ],
        )


def _outcome(fn: Callable[[], Array]) -> Array | ValueError:
    """The value of `fn()`, or the `ValueError` it raised."""
    try:
        return jax.block_until_ready(fn())
    except ValueError as error:
        return error


def _check_endpoints(name: str, path: AbstractGaussianPath, dtype) -> None:
    x = jnp.ones(3, dtype)
    for end in (0.0, 1.0):
        t = jnp.asarray(end, dtype)
        where = [("where", f"t = {end:g} exactly ({dtype.name})")]
        alpha, sigma = float(path.alpha(t)), float(path.sigma(t))
        for method in ("alpha", "sigma", "alpha_derivative"):
            value = float(getattr(path, method)(t))
            if not np.isfinite(value):
                fail(
                    name,
                    f"{method}(t) is finite at the ends",
                    [*where, ("got", f"{value}")],
                )
        if (end == 0 and not alpha > 0) or (end == 1 and not sigma > 0):
            fail(
                name,
                "alpha(0) > 0 and sigma(1) > 0 (data at t = 0, noise at t = 1)",
                [*where, ("got", f"alpha = {alpha}, sigma = {sigma}")],
            )
        log_snr = float(path.log_snr(t))
        vanishing, infinity = (
            (sigma == 0, np.inf) if end == 0 else (alpha == 0, -np.inf)
        )
        if (log_snr == infinity) != vanishing or np.isnan(log_snr):
            fail(
                name,
                "log_snr is +inf at t = 0 exactly when sigma(0) = 0, -inf at t = 1 "
                "exactly when alpha(1) = 0, and finite otherwise",
                [
                    *where,
                    ("got", f"log_snr = {log_snr}, alpha = {alpha}, sigma = {sigma}"),
                ],
            )
        for method, call, singular in (
            (
                "conditional_score",
                lambda t=t: path.conditional_score(x, 0.5 * x, t),
                sigma == 0,
            ),
            ("drift", lambda t=t: path.drift(x, t), alpha == 0),
            ("diffusion", lambda t=t: path.diffusion(t), alpha == 0),
        ):
            outcome = _outcome(call)
            if isinstance(outcome, ValueError):
                if "`t`" not in str(outcome):
                    fail(
                        name,
                        f"{method} at an end raises a ValueError that names `t`",
                        [*where, ("got", repr(outcome))],
                    )
            elif singular or not bool(jnp.all(jnp.isfinite(outcome))):
                fail(
                    name,
                    f"{method} at an end is finite, or raises a ValueError naming "
                    "`t` where it is singular (sigma = 0 for the score, alpha = 0 "
                    "for the SDE)",
                    [*where, ("got", f"{np.asarray(outcome)} (no error raised)")],
                )


def _check_float32_near_the_ends(name: str, path: AbstractGaussianPath) -> None:
    t32 = jnp.asarray(NEAR_END_TIMES, jnp.float32)
    t64 = t32.astype(jnp.float64)  # the same times, evaluated in float64
    rtol = relative_tolerance(jnp.float32)
    where = _describe(np.asarray(t32, np.float64))
    for method in ("alpha", "sigma"):
        expected = np.asarray(_along(path, method, t64))
        assert_close(
            name,
            f"{method}(t) in float32 agrees with float64 near the ends (no "
            "cancellation)",
            actual=_along(path, method, t32),
            expected=expected,
            tolerance=rtol * np.abs(expected) + TINY,
            where=where,
            tolerance_source="1000 ulps of float32 x |float64 value|",
        )
    expected = np.asarray(_along(path, "log_snr", t64))
    assert_close(
        name,
        "log_snr(t) in float32 agrees with float64 near the ends (no cancellation)",
        actual=_along(path, "log_snr", t32),
        expected=expected,
        tolerance=rtol * (1 + np.abs(expected)),
        where=where,
        tolerance_source="1000 ulps of float32 x (1 + |log_snr|)",
    )


BUILT_IN = (
    ScorePrediction(),
    NoisePrediction(),
    DataPrediction(),
    VelocityPrediction(),
)


def _score_definition(path, x0, eps, t):
    return -eps / path.sigma(t)


def _noise_definition(path, x0, eps, t):
    return eps


def _data_definition(path, x0, eps, t):
    return x0


def _velocity_definition(path, x0, eps, t):
    return path.alpha_derivative(t) * x0 + path.sigma_derivative(t) * eps


# What each built-in parameterisation predicts, from its definition in terms of
# the data point and the noise.
BUILT_IN_DEFINITIONS: dict[type[AbstractParameterisation], Definition] = {
    ScorePrediction: _score_definition,
    NoisePrediction: _noise_definition,
    DataPrediction: _data_definition,
    VelocityPrediction: _velocity_definition,
}


def _coefficients(
    path: AbstractGaussianPath,
    t: Array,
    source: AbstractParameterisation,
    target: AbstractParameterisation,
) -> tuple[Array, Array]:
    """(c1, c2) with convert(m) = c1 x_t + c2 m, from source to target."""
    a_s, b_s = source.noise_coefficients(path, t)
    a_t, b_t = target.noise_coefficients(path, t)
    return (a_s - a_t) / b_t, b_s / b_t


def check_parameterisation_roundtrip(
    path: AbstractGaussianPath,
    *,
    parameterisations: Sequence[AbstractParameterisation] | None = None,
    definitions: Mapping[type[AbstractParameterisation], Definition] | None = None,
    times: Sequence[float] | ArrayLike | None = None,
    dtype: DTypeLike | None = None,
) -> None:
    r"""Check that [`convert`][scorax.convert] between every pair of
    parameterisations is exact on `path`, and raise an `AssertionError` naming
    the first pair that fails.

    At each time of `times` (default: 25 evenly spaced times in $[0.02, 0.98]$),
    for a fixed data point $x_0$, noise $\varepsilon$ and $x_t = \alpha x_0 +
    \sigma\varepsilon$:

    1. **round trip:** for every pair $\{S, T\}$ of `parameterisations`,
       converting a value from $S$ to $T$ and back returns it;
    2. **meaning:** for every pair whose definitions are known, converting what
       $S$ predicts for this $(x_0, \varepsilon)$ gives what $T$ predicts
       (checked both ways against the first parameterisation with a definition,
       which covers every pair because `convert` composes exactly). The
       built-in definitions are $-\varepsilon/\sigma$ for
       [`ScorePrediction`][scorax.ScorePrediction], $\varepsilon$ for
       [`NoisePrediction`][scorax.NoisePrediction], $x_0$ for
       [`DataPrediction`][scorax.DataPrediction] and $\alpha' x_0 + \sigma'
       \varepsilon$ for [`VelocityPrediction`][scorax.VelocityPrediction].

    The round trip holds for any coefficients $(a, b)$ with $b \ne 0$, so for a
    parameterisation of your own pass its definition in `definitions`: a wrong
    `noise_coefficients` then fails the meaning check.

    **Tolerances:** 1000 units in the last place of the dtype, times
    $1 + |\lambda(t)|$, times the size of the terms of the affine maps involved
    ($|c_1 x_t| + |c_2 m|$ for $m \mapsto c_1 x_t + c_2 m$, carried through the
    way back).

    **Arguments:**

    - `path`: any Gaussian path.
    - `parameterisations`: the parameterisations to convert between (default:
      the four built-in ones).
    - `definitions`: for parameterisations of your own, their class mapped to
      `definition(path, x0, eps, t)`, what the model should predict for data
      $x_0$ and noise $\varepsilon$ at time $t$; e.g. for the v-prediction of
      Salimans & Ho (2022),
      `lambda path, x0, eps, t: path.alpha(t) * eps - path.sigma(t) * x0`.
    - `times`: times strictly inside $(0, 1)$.
    - `dtype`: the floating dtype (default: JAX's default float).

    **Returns:**

    `None`; raises `AssertionError` with a report if a conversion is not exact.
    """
    name = f"scorax.testing.check_parameterisation_roundtrip({path!r})"
    dtype = default_dtype() if dtype is None else np.dtype(dtype)
    chosen = BUILT_IN if parameterisations is None else tuple(parameterisations)
    if len(chosen) < 2 or not all(
        isinstance(p, AbstractParameterisation) for p in chosen
    ):
        raise ValueError(
            "`parameterisations` must hold at least two AbstractParameterisation "
            f"instances, got {parameterisations!r}."
        )
    known = {**BUILT_IN_DEFINITIONS, **(definitions or {})}
    values = _check_times(times)
    t = jnp.asarray(values, dtype)
    rtol = relative_tolerance(dtype)
    check_scales(name, path, t)
    # Round trips: each unordered pair once, which converts both ways.
    round_trips = list(itertools.combinations(chosen, 2))
    # Meaning: every parameterisation with a definition, both ways against the
    # first one with a definition (convert composes exactly, so this covers all
    # pairs of them).
    defined = [p for p in chosen if type(p) in known]
    meanings = [(defined[0], p) for p in defined[1:]]
    meanings += [(p, defined[0]) for p in defined[1:]]
    try:
        v = jax.tree.map(
            lambda a: np.asarray(a, np.float64),
            _conversion_values(
                _traced(path),
                t,
                jr.key(0),
                round_trips,
                [
                    (pair, known[type(pair[0])], known[type(pair[1])])
                    for pair in meanings
                ],
            ),
        )
    except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError) as error:
        fail(
            name,
            "convert is defined (finite coefficients, b(t) != 0) between every "
            "pair at every time",
            [("where", f"times {values}"), ("got", runtime_message(error))],
        )
    condition = 1 + np.abs(v["log_snr"])[:, None]
    ulps = f"1000 ulps of {dtype.name} x (1 + |log_snr(t)|)"

    def describe(pair):
        return f"{type(pair[0]).__name__} -> {type(pair[1]).__name__}"

    for pair, (back, size) in zip(round_trips, v["round_trip"], strict=True):
        assert_close(
            name,
            f"convert(convert(m, {describe(pair)}), back) = m",
            actual=back,
            expected=np.broadcast_to(v["value"], back.shape),
            tolerance=rtol * condition * size,
            where=[f"t = {s:.8g}, {describe(pair)} and back" for s in values],
            tolerance_source=f"{ulps} x the size of the terms of both maps",
        )
    for pair, (got, expected, size) in zip(meanings, v["meaning"], strict=True):
        assert_close(
            name,
            f"convert maps what {type(pair[0]).__name__} predicts for (x0, eps) to "
            f"what {type(pair[1]).__name__} predicts",
            actual=got,
            expected=expected,
            tolerance=rtol * condition * size,
            where=[f"t = {s:.8g}, {describe(pair)}" for s in values],
            tolerance_source=f"{ulps} x the size of the terms of the map",
        )


@eqx.filter_jit
def _conversion_values(
    path: AbstractGaussianPath,
    t: Array,
    key: PRNGKeyArray,
    round_trips: list[tuple[AbstractParameterisation, AbstractParameterisation]],
    meanings: list[tuple[tuple, Definition, Definition]],
) -> dict:
    """Every conversion `check_parameterisation_roundtrip` compares, at once (one
    compiled program per path class, dtype and set of parameterisations)."""
    x0, eps, value = jr.normal(key, (3, 3), t.dtype)
    x_t = jax.vmap(lambda s: path.alpha(s) * x0 + path.sigma(s) * eps)(t)

    def there_and_back(x, s, source, target):
        there = convert(path, value, x, s, source=source, target=target)
        back = convert(path, there, x, s, source=target, target=source)
        c1, c2 = _coefficients(path, s, source, target)
        d1, d2 = _coefficients(path, s, target, source)
        size = jnp.abs(d2) * (jnp.abs(c1 * x) + jnp.abs(c2 * value))
        return back, size + jnp.abs(d1 * x) + jnp.abs(d2 * there)

    def converted_truth(x, s, pair, source_definition, target_definition):
        source, target = pair
        truth = source_definition(path, x0, eps, s)
        got = convert(path, truth, x, s, source=source, target=target)
        c1, c2 = _coefficients(path, s, source, target)
        # x_t itself carries the rounding of alpha x0 + sigma eps.
        noisy = jnp.abs(path.alpha(s) * x0) + jnp.abs(path.sigma(s) * eps)
        size = jnp.abs(c1) * (noisy + jnp.abs(x)) + jnp.abs(c2 * truth)
        expected = target_definition(path, x0, eps, s)
        return got, expected, size + jnp.abs(expected)

    def along(fn, *args):
        return jax.vmap(lambda x, s: fn(x, s, *args))(x_t, t)

    return {
        "log_snr": jax.vmap(path.log_snr)(t),
        "value": value,
        "round_trip": [along(there_and_back, *pair) for pair in round_trips],
        "meaning": [along(converted_truth, *meaning) for meaning in meanings],
    }
