"""Hypothesis strategies for times, paths, mixtures, parameterisations and dtypes."""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jaxtyping import DTypeLike

from .._checks import check_count
from .._custom_types import IntScalarLike
from .._mixture import GaussianMixture
from .._parameterisation import (
    AbstractParameterisation,
    DataPrediction,
    NoisePrediction,
    ScorePrediction,
    VelocityPrediction,
)
from .._path import (
    AbstractGaussianPath,
    CosinePath,
    EDMPath,
    LinearPath,
    SubVPPath,
    VEPath,
    VPPath,
)


# How close to an end `times()` goes: 1e-8 from the data end, 1e-7 from the noise
# end (float32 cannot tell 1 - 1e-8 from 1), up to 2% away.
_NEAREST = {"data": 1e-8, "noise": 1e-7}
_FARTHEST = 0.02


def times(
    *,
    min_value: float = 0.0,
    max_value: float = 1.0,
    near_ends: bool = True,
) -> st.SearchStrategy[float]:
    r"""Times in the interval (`min_value`, `max_value`), by default $(0, 1)$, at
    least $10^{-8}$ from its lower end and $10^{-7}$ from its upper end.

    With `near_ends=True`, two thirds of the draws lie within 2% of an end, at a
    log-uniform distance down to $10^{-8}$ from the data end and $10^{-7}$ from
    the noise end (so that they stay below 1 in float32): where $\sigma(t)$ or
    $\alpha(t)$ is small and a formula that cancels loses its accuracy. The ends
    themselves are never drawn; [`check_path`][scorax.testing.check_path] checks
    them separately. Draws shrink towards the middle of the interval.

    **Arguments:**

    - `min_value`, `max_value`: the interval, with
      $0 \le \text{min\_value} < \text{max\_value} \le 1$.
    - `near_ends`: also draw close to the ends (needs an interval wider than 4%).
    """
    if not 0 <= min_value < max_value <= 1:
        raise ValueError(
            "`min_value` and `max_value` must satisfy 0 <= min_value < max_value "
            f"<= 1, got {min_value} and {max_value}."
        )
    middle = st.floats(min_value + _NEAREST["data"], max_value - _NEAREST["noise"])
    if not near_ends:
        return middle
    if max_value - min_value <= 2 * _FARTHEST:
        raise ValueError(
            f"`near_ends` must be False for an interval no wider than {2 * _FARTHEST}, "
            f"got max_value - min_value = {max_value - min_value:.6g}."
        )

    def distances(nearest: float) -> st.SearchStrategy[float]:
        exponents = st.floats(math.log10(nearest), math.log10(_FARTHEST))
        return exponents.map(lambda e: 10.0**e)

    near_data = distances(_NEAREST["data"]).map(lambda d: min_value + d)
    near_noise = distances(_NEAREST["noise"]).map(lambda d: max_value - d)
    return st.one_of(middle, near_data, near_noise)


def _ordered_pair(
    low: tuple[float, float], high: tuple[float, float]
) -> st.SearchStrategy[tuple[float, float]]:
    """A (small, large) pair from two disjoint ranges, so small < large always."""
    return st.tuples(st.floats(*low), st.floats(*high))


def _vp_like(kind: type) -> st.SearchStrategy[AbstractGaussianPath]:
    return _ordered_pair((0.05, 1.0), (2.0, 25.0)).map(
        lambda pair: kind(beta_min=pair[0], beta_max=pair[1])
    )


_PATH_STRATEGIES = {
    VPPath: lambda: _vp_like(VPPath),
    SubVPPath: lambda: _vp_like(SubVPPath),
    VEPath: lambda: _ordered_pair((0.005, 0.2), (2.0, 80.0)).map(
        lambda pair: VEPath(sigma_min=pair[0], sigma_max=pair[1])
    ),
    CosinePath: lambda: st.floats(0.0, 0.02).map(lambda s: CosinePath(s=s)),
    LinearPath: lambda: st.just(LinearPath()),
    EDMPath: lambda: st.tuples(
        st.floats(0.001, 0.05), st.floats(5.0, 100.0), st.floats(2.0, 10.0)
    ).map(lambda v: EDMPath(sigma_min=v[0], sigma_max=v[1], rho=v[2])),
}


def gaussian_paths(
    *, kinds: Sequence[type[AbstractGaussianPath]] | None = None
) -> st.SearchStrategy[AbstractGaussianPath]:
    r"""Every built-in Gaussian path, with random valid hyperparameters.

    | path | hyperparameters drawn from |
    | --- | --- |
    | [`VPPath`][scorax.VPPath], [`SubVPPath`][scorax.SubVPPath] | $\beta_\text{min} \in [0.05, 1]$, $\beta_\text{max} \in [2, 25]$ |
    | [`VEPath`][scorax.VEPath] | $\sigma_\text{min} \in [0.005, 0.2]$, $\sigma_\text{max} \in [2, 80]$ |
    | [`CosinePath`][scorax.CosinePath] | $s \in [0, 0.02]$ |
    | [`LinearPath`][scorax.LinearPath] | (none) |
    | [`EDMPath`][scorax.EDMPath] | $\sigma_\text{min} \in [0.001, 0.05]$, $\sigma_\text{max} \in [5, 100]$, $\rho \in [2, 10]$ |

    Draws shrink towards a `VPPath` with small hyperparameters.

    **Arguments:**

    - `kinds`: the path classes to draw from (default: all of the above).
    """
    kinds = tuple(_PATH_STRATEGIES) if kinds is None else tuple(kinds)
    unknown = [kind for kind in kinds if kind not in _PATH_STRATEGIES]
    if not kinds or unknown:
        raise ValueError(
            "`kinds` must be a non-empty selection of "
            f"{', '.join(k.__name__ for k in _PATH_STRATEGIES)}, got {kinds!r}."
        )
    return st.one_of(*(_PATH_STRATEGIES[kind]() for kind in kinds))


def default_dtype() -> np.dtype:
    """JAX's default floating dtype: float64 with `jax_enable_x64`, else float32."""
    return np.dtype(jnp.result_type(float))


def gaussian_mixtures(
    *,
    dim: IntScalarLike = 2,
    num_components: IntScalarLike = 2,
    dtype: DTypeLike | None = None,
) -> st.SearchStrategy[GaussianMixture]:
    r"""Well-conditioned random [`GaussianMixture`][scorax.GaussianMixture]s.

    Means have entries in $[-3, 3]$; each covariance is
    $\Sigma_k = A_k A_k^\top / d + 0.3\, I$ with the entries of $A_k$ in
    $[-1.5, 1.5]$, so its eigenvalues lie in $[0.3, 0.3 + 2.25 d]$; the weights
    are the softmax of logits in $[-1, 1]$, so none is below $e^{-2} / K$. Every
    entry is drawn by Hypothesis, so a failing mixture shrinks towards equal
    weights, centred means and isotropic covariances.

    **Arguments:**

    - `dim`: the dimension $d \ge 1$ (fixed: JAX compiles once per shape).
    - `num_components`: $K \ge 1$.
    - `dtype`: the floating dtype (default: JAX's default, float64 when
      `jax_enable_x64` is on and float32 otherwise).
    """
    dim = check_count(dim, "dim")
    num_components = check_count(num_components, "num_components")
    entries = st.floats(-3.0, 3.0)
    factor_entries = st.floats(-1.5, 1.5)
    logit_entries = st.floats(-1.0, 1.0)

    def build(means, factors, logits) -> GaussianMixture:
        target = default_dtype() if dtype is None else jnp.dtype(dtype)
        factors = jnp.asarray(factors, target)
        eye = jnp.eye(dim, dtype=target)[None]
        covs = factors @ jnp.swapaxes(factors, -1, -2) / dim + 0.3 * eye
        return GaussianMixture(
            means=jnp.asarray(means, target),
            covs=covs,
            weights=jax.nn.softmax(jnp.asarray(logits, target)),
        )

    return st.builds(
        build,
        hnp.arrays(np.float64, (num_components, dim), elements=entries),
        hnp.arrays(np.float64, (num_components, dim, dim), elements=factor_entries),
        hnp.arrays(np.float64, (num_components,), elements=logit_entries),
    )


def parameterisations() -> st.SearchStrategy[AbstractParameterisation]:
    """The four built-in parameterisations: [`ScorePrediction`][scorax.ScorePrediction],
    [`NoisePrediction`][scorax.NoisePrediction],
    [`DataPrediction`][scorax.DataPrediction] and
    [`VelocityPrediction`][scorax.VelocityPrediction] (shrinking to the first)."""
    return st.sampled_from(
        [ScorePrediction(), NoisePrediction(), DataPrediction(), VelocityPrediction()]
    )


def dtypes() -> st.SearchStrategy[np.dtype]:
    """The floating dtypes JAX offers now: float32, and float64 when
    `jax_enable_x64` is on (read when a value is drawn, so a test module may turn
    x64 on after importing this). Shrinks to float32."""
    return st.just(None).flatmap(
        lambda _: st.sampled_from(
            [np.dtype(np.float32)]
            + ([np.dtype(np.float64)] if jax.config.read("jax_enable_x64") else [])
        )
    )
