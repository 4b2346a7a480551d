r"""Score matching without noise: explicit (ESM), implicit (ISM) and sliced (SSM)."""

from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check, check_choice, check_count, check_positive
from .._custom_types import FloatScalar, IntScalarLike, RealScalarLike
from .._trace import (
    Probe,
    PROBES,
    quadratic_forms,
    sample_probes,
    value_and_exact_trace,
    VectorField,
)


def explicit_score_matching(
    score_fn: VectorField,
    x: Float[Array, "*shape"],
    target_score: Float[Array, "*shape"],
) -> FloatScalar:
    r"""Explicit score matching: the squared error against a known target score,

    $$\ell(x) = \tfrac12 \left\| s_\theta(x) - \nabla_x \log p(x) \right\|^2,$$

    whose expectation over $p$ is half the Fisher divergence between $p$ and the
    model. The true score is rarely known; [`kde_score`][scorax.kde_score] gives
    the score of a kernel density estimate as a practical target (Vincent 2011,
    section 4), and a [`GaussianMixture`][scorax.GaussianMixture] gives an exact one.

    **Arguments:**

    - `score_fn`: the model, mapping `x` to an array shaped like `x`.
    - `x`: one sample.
    - `target_score`: the target score at `x`.

    **Returns:**

    A scalar; average over samples with `jax.vmap`.
    """
    return 0.5 * jnp.sum((score_fn(x) - target_score) ** 2)


BANDWIDTH_RULES: tuple[str, ...] = ("scott", "silverman")


def _bandwidth(
    data: Float[Array, "n d"], bandwidth: RealScalarLike | Literal["scott", "silverman"]
) -> FloatScalar:
    if isinstance(bandwidth, str):
        check_choice(bandwidth, "bandwidth", BANDWIDTH_RULES)
        n, d = data.shape
        spread = jnp.sqrt(jnp.mean(jnp.var(data, axis=0)))
        if bandwidth == "scott":
            factor = n ** (-1 / (d + 4))
        else:
            factor = (4 / (n * (d + 2))) ** (1 / (d + 4))
        h = spread * factor
        message = (
            f"`bandwidth`: the {bandwidth!r} rule gives h = 0 because `data` has no "
            "spread (a single point or constant data); pass a positive bandwidth."
        )
        return check(h, h > 0, message)
    check_positive(bandwidth, "bandwidth")
    h = jnp.asarray(bandwidth, data.dtype)
    return check(h, jnp.isfinite(h) & (h > 0), "`bandwidth` must be finite and > 0.")


@eqx.filter_jit  # one compilation per shape, also when called eagerly
def kde_score(
    x: Float[Array, " d"],
    data: Float[Array, "n d"],
    *,
    bandwidth: RealScalarLike | Literal["scott", "silverman"],
    chunk_size: IntScalarLike = 4096,
) -> Float[Array, " d"]:
    r"""The score of a Gaussian kernel density estimate, the practical target of
    explicit score matching.

    For data $y_1, \dots, y_n$ and bandwidth $h$,

    $$\hat p(x) = \frac1n \sum_i \mathcal{N}(x; y_i, h^2 I), \qquad
    \nabla_x \log \hat p(x) = \frac{1}{h^2} \left(\sum_i w_i(x)\, y_i - x\right),
    \qquad w = \operatorname{softmax}_i\!\left(-\frac{\|x - y_i\|^2}{2h^2}\right).$$

    The softmax is accumulated over chunks of `chunk_size` data points with a
    running maximum (an online `logsumexp`), so memory stays bounded for large $n$
    and the weights never underflow to $0/0$, even far from the data (as long as
    $\|x - y_i\|^2$ itself is representable in the dtype).

    **Arguments:**

    - `x`: the point, shape `(d,)`.
    - `data`: the samples, shape `(n, d)`.
    - `bandwidth`: $h > 0$, or a rule of thumb computed from `data` with the
      isotropic spread $\hat s = (\frac1d \sum_j \operatorname{Var}[y_{\cdot j}])^{1/2}$:
      `"scott"`, $h = \hat s\, n^{-1/(d+4)}$ (Scott 1992), or `"silverman"`,
      $h = \hat s\, (4 / (n (d + 2)))^{1/(d+4)}$ (Silverman 1986).
    - `chunk_size`: how many data points to hold at once.

    **Returns:**

    $\nabla_x \log \hat p(x)$, shape `(d,)`.
    """
    chunk_size = check_count(chunk_size, "chunk_size")
    dtype = jnp.result_type(x, data)
    x, data = x.astype(dtype), data.astype(dtype)
    h = _bandwidth(data, bandwidth)
    num, dim = data.shape
    chunk = min(chunk_size, num)
    num_chunks = -(-num // chunk)
    padding = num_chunks * chunk - num
    chunks = jnp.concatenate([data, jnp.zeros((padding, dim), data.dtype)])
    chunks = chunks.reshape(num_chunks, chunk, dim)
    valid = (jnp.arange(num_chunks * chunk) < num).reshape(num_chunks, chunk)

    def accumulate(carry, inputs):
        running_max, total, weighted = carry
        points, mask = inputs
        logits = -0.5 * jnp.sum((x[None] - points) ** 2, axis=-1) / h**2
        logits = jnp.where(mask, logits, -jnp.inf)
        new_max = jnp.maximum(running_max, jnp.max(logits))
        rescale = jnp.exp(running_max - new_max)
        weights = jnp.exp(logits - new_max)
        return (
            new_max,
            rescale * total + jnp.sum(weights),
            rescale * weighted + weights @ points,
        ), None

    init = (
        jnp.full((), -jnp.inf, x.dtype),
        jnp.zeros((), x.dtype),
        jnp.zeros(dim, x.dtype),
    )
    (_, total, weighted), _ = jax.lax.scan(accumulate, init, (chunks, valid))
    return (weighted / total - x) / h**2


def implicit_score_matching(
    score_fn: VectorField,
    x: Float[Array, "*shape"],
    *,
    chunk_size: IntScalarLike | None = None,
) -> FloatScalar:
    r"""Implicit score matching (Hyvärinen 2005), with the exact Jacobian trace:

    $$\ell(x) = \operatorname{tr} \nabla_x s_\theta(x) + \tfrac12 \|s_\theta(x)\|^2.$$

    Integration by parts shows that
    $\mathbb{E}_p[\ell] = \tfrac12 \mathbb{E}_p \|s_\theta - \nabla \log p\|^2 -
    \tfrac12 \mathbb{E}_p\|\nabla \log p\|^2$: half the Fisher divergence up to a
    constant that does not depend on the model, with no need for $\nabla \log p$.

    The trace takes $d$ forward-mode Jacobian-vector products, one per input
    dimension (see [`exact_trace`][scorax.exact_trace]), so the cost grows with $d$;
    [`sliced_score_matching`][scorax.sliced_score_matching] has a cost independent
    of $d$.

    **Arguments:**

    - `score_fn`: the model, mapping `x` to an array shaped like `x`; an energy
      model becomes one through [`score_from_energy`][scorax.score_from_energy].
    - `x`: one sample, of any shape.
    - `chunk_size`: Jacobian columns computed at once (`None`: all).
    """
    score, trace = value_and_exact_trace(score_fn, x, chunk_size=chunk_size)
    return trace + 0.5 * jnp.sum(score**2)


def sliced_score_matching(
    score_fn: VectorField,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray,
    num_projections: IntScalarLike = 1,
    projection: Probe = "gaussian",
    variance_reduction: bool = False,
) -> FloatScalar:
    r"""Sliced score matching (Song et al. 2019): implicit score matching along
    random projections $v_1, \dots, v_m$ with $\mathbb{E}[v v^\top] = I$,

    $$\ell(x) = \frac1m \sum_{k=1}^m \left( v_k^\top \nabla_x s_\theta(x)\, v_k
    + \tfrac12 (v_k^\top s_\theta(x))^2 \right),$$

    or, with `variance_reduction=True` (SSM-VR), the second term replaced by its
    expectation over $v$: $\frac1m \sum_k v_k^\top \nabla_x s_\theta(x)\, v_k +
    \tfrac12 \|s_\theta(x)\|^2$. Either way $\mathbb{E}_v[\ell] =$
    [`implicit_score_matching`][scorax.implicit_score_matching]$(x)$, at the cost
    of one Jacobian-vector product per projection, whatever the dimension.

    **Arguments:**

    - `score_fn`: the model, mapping `x` to an array shaped like `x`.
    - `x`: one sample, of any shape.
    - `key`: a JAX PRNG key for the projections.
    - `num_projections`: $m \ge 1$.
    - `projection`: the law of $v$: `"gaussian"` (the paper's default),
      `"rademacher"` or `"sphere"` (uniform on the sphere of radius $\sqrt d$).
    - `variance_reduction`: use SSM-VR.
    """
    num_projections = check_count(num_projections, "num_projections")
    check_choice(projection, "projection", PROBES)
    score, jvp = jax.linearize(score_fn, x)
    v = sample_probes(key, x.shape, num_projections, projection, x.dtype)
    curvature = quadratic_forms(jvp, v)
    if variance_reduction:
        return jnp.mean(curvature) + 0.5 * jnp.sum(score**2)
    projected = jax.vmap(lambda vk: jnp.sum(vk * score))(v)
    return jnp.mean(curvature + 0.5 * projected**2)


def score_from_energy(
    energy_fn: Callable[..., FloatScalar],
) -> Callable[..., Float[Array, "*shape"]]:
    r"""Turn an energy model into a score model, $s_\theta(x) = -\nabla_x E_\theta(x)$.

    For $p_\theta(x) = e^{-E_\theta(x)} / Z_\theta$ the normalising constant drops
    out of the score, so implicit and sliced score matching train energy-based
    models without ever computing $Z_\theta$. Extra arguments (such as a time)
    are passed through: `score_from_energy(energy)(x, t) = -grad(energy)(x, t)`.
    """

    def score(x: Float[Array, "*shape"], *args: Any) -> Float[Array, "*shape"]:
        return -jax.grad(energy_fn)(x, *args)

    return score
