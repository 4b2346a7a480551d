r"""Traces of Jacobians: exact by forward-mode columns, or Hutchinson's estimator."""

from collections.abc import Callable
from typing import Literal, TypeAlias

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, DTypeLike, Float, PRNGKeyArray

from ._checks import check_choice, check_count
from ._custom_types import FloatScalar, IntScalarLike


Probe: TypeAlias = Literal["gaussian", "rademacher", "sphere"]
PROBES: tuple[str, ...] = ("gaussian", "rademacher", "sphere")
VectorField: TypeAlias = Callable[[Float[Array, "*shape"]], Float[Array, "*shape"]]


def sample_probes(
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    num: int,
    kind: Probe,
    dtype: DTypeLike,
) -> Float[Array, " num *shape"]:
    r"""Draw `num` probes $v$ with $\mathbb{E}[v v^\top] = I$.

    `"gaussian"`: $v \sim \mathcal{N}(0, I)$; `"rademacher"`: independent $\pm 1$
    entries; `"sphere"`: uniform on the sphere of radius $\sqrt{d}$.
    """
    check_choice(kind, "probe", PROBES)
    full_shape = (num, *shape)
    if kind == "rademacher":
        return jr.rademacher(key, full_shape, dtype)
    v = jr.normal(key, full_shape, dtype)
    if kind == "gaussian":
        return v
    axes = tuple(range(1, v.ndim))
    dim = max(1, v[0].size)
    return v * jnp.sqrt(dim / jnp.sum(v**2, axis=axes, keepdims=True))


def quadratic_forms(
    jvp: Callable[[Array], Array], probes: Float[Array, " num *shape"]
) -> Float[Array, " num"]:
    """$v_k^\\top J v_k$ for each probe, one forward-mode product each."""
    return jax.vmap(lambda v: jnp.sum(v * jvp(v)))(probes)


def value_and_exact_trace(
    fn: VectorField,
    x: Float[Array, "*shape"],
    *,
    chunk_size: IntScalarLike | None = None,
) -> tuple[Float[Array, "*shape"], FloatScalar]:
    """`fn(x)` and the trace of its Jacobian, sharing one linearisation."""
    if chunk_size is not None:
        chunk_size = check_count(chunk_size, "chunk_size")
    value, jvp = jax.linearize(fn, x)
    dim = x.size

    def diagonal_entry(i):
        basis = jnp.zeros(dim, x.dtype).at[i].set(1).reshape(x.shape)
        return jvp(basis).reshape(-1)[i]

    indices = jnp.arange(dim)
    if chunk_size is None:
        diagonal = jax.vmap(diagonal_entry)(indices)
    else:
        diagonal = jax.lax.map(diagonal_entry, indices, batch_size=chunk_size)
    return value, jnp.sum(diagonal)


def value_and_hutchinson_trace(
    fn: VectorField,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray,
    num_probes: IntScalarLike = 1,
    probe: Probe = "rademacher",
) -> tuple[Float[Array, "*shape"], FloatScalar, FloatScalar]:
    """`fn(x)`, Hutchinson's estimate of the trace and its standard error."""
    num_probes = check_count(num_probes, "num_probes")
    value, jvp = jax.linearize(fn, x)
    probes = sample_probes(key, x.shape, num_probes, probe, x.dtype)
    samples = quadratic_forms(jvp, probes)
    return value, jnp.mean(samples), standard_error(samples)


def standard_error(samples: Float[Array, " num"]) -> FloatScalar:
    """The standard error of the mean of i.i.d. samples, sqrt(var / m); +inf for
    one sample, where it cannot be estimated."""
    if samples.shape[0] == 1:
        return jnp.full((), jnp.inf, samples.dtype)
    # Gradient 0 rather than NaN where the spread is zero (a diagonal Jacobian
    # with Rademacher probes, for instance).
    variance = jnp.var(samples, ddof=1)
    spread = variance > 0
    return jnp.where(
        spread, jnp.sqrt(jnp.where(spread, variance, 1) / samples.shape[0]), 0
    )


def exact_trace(
    fn: VectorField,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray | None = None,
    chunk_size: IntScalarLike | None = None,
) -> tuple[FloatScalar, FloatScalar]:
    r"""The exact trace of the Jacobian of `fn` at `x`, $\operatorname{tr} \nabla f(x)
    = \sum_i \partial f_i / \partial x_i$, with a standard error of zero.

    Computed column by column in forward mode: $d$ Jacobian-vector products with
    the basis vectors $e_i$, keeping only $e_i^\top \nabla f\, e_i$. Its cost grows
    linearly with the dimension $d$ = `x.size`; see
    [`hutchinson_trace`][scorax.hutchinson_trace] for a cost independent of $d$.

    **Arguments:**

    - `fn`: a function from arrays shaped like `x` to arrays shaped like `x`.
    - `x`: the point, of any shape; the trace is over all its entries.
    - `key`: accepted and unused, so that this and
      [`hutchinson_trace`][scorax.hutchinson_trace] can be swapped.
    - `chunk_size`: how many columns to compute at once (`None`: all $d$, which
      holds a $d \times d$ array in memory; a smaller value bounds memory by
      `chunk_size` $\times\, d$).

    **Returns:**

    The pair `(trace, standard_error)`, the latter exactly zero.
    """
    del key
    _, trace = value_and_exact_trace(fn, x, chunk_size=chunk_size)
    return trace, jnp.zeros_like(trace)


def hutchinson_trace(
    fn: VectorField,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray,
    num_probes: IntScalarLike = 1,
    probe: Probe = "rademacher",
) -> tuple[FloatScalar, FloatScalar]:
    r"""Hutchinson's unbiased estimate of the Jacobian trace, with its standard error.

    $$\operatorname{tr} \nabla f(x) \approx \frac{1}{m} \sum_{k=1}^m v_k^\top
    \nabla f(x)\, v_k, \qquad \mathbb{E}[v v^\top] = I,$$

    one Jacobian-vector product per probe, whatever the dimension (Hutchinson 1989;
    used for divergences of score models by Grathwohl et al. 2019 and Song et al.
    2019). The standard error is the sample standard deviation of the $m$ terms over
    $\sqrt{m}$; with one probe it cannot be estimated and is $+\infty$.

    With $A = \nabla f(x)$, the variance of one term is $2\|A_s\|_F^2$ for Gaussian
    probes ($A_s$ the symmetric part) and $2\|A_s\|_F^2 - 2\sum_i A_{ii}^2$ for
    Rademacher probes, never larger: Rademacher is the default.

    **Arguments:**

    - `fn`, `x`: as for [`exact_trace`][scorax.exact_trace].
    - `key`: a JAX PRNG key for the probes.
    - `num_probes`: $m \ge 1$.
    - `probe`: `"rademacher"`, `"gaussian"` or `"sphere"` (uniform on the sphere of
      radius $\sqrt{d}$).

    **Returns:**

    The pair `(estimate, standard_error)`.
    """
    _, estimate, standard_error = value_and_hutchinson_trace(
        fn, x, key=key, num_probes=num_probes, probe=probe
    )
    return estimate, standard_error


def divergence(
    fn: VectorField,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray | None = None,
    num_probes: IntScalarLike = 1,
    probe: Probe = "rademacher",
) -> FloatScalar:
    r"""The divergence $\nabla \cdot f(x) = \operatorname{tr} \nabla f(x)$: exact when
    no `key` is given ([`exact_trace`][scorax.exact_trace]), otherwise Hutchinson's
    estimate with `num_probes` probes ([`hutchinson_trace`][scorax.hutchinson_trace]).
    """
    if key is None:
        return exact_trace(fn, x)[0]
    return hutchinson_trace(fn, x, key=key, num_probes=num_probes, probe=probe)[0]
