"""Statistical checks with fixed keys: unbiased estimators, consistent objectives,
samplers that reach the data, and honest evaluation counts."""

import hashlib
import statistics
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Key, PRNGKeyArray

from .._checks import check_count
from .._custom_types import IntScalarLike
from .._metric import sliced_wasserstein
from .._mixture import GaussianMixture
from .._sampler import SampleResult
from ._report import assert_close, fail, relative_tolerance


Sampler = Callable[[Any, Array, PRNGKeyArray], SampleResult]
Loss = Callable[[Any, Array, PRNGKeyArray], Array]


def _key(key: PRNGKeyArray | None) -> PRNGKeyArray:
    """The caller's key, or the fixed key 0 so that a check is deterministic."""
    return jr.key(0) if key is None else key


def _check_threshold(num_standard_errors: float) -> None:
    if not num_standard_errors > 0:
        raise ValueError(
            f"`num_standard_errors` must be > 0, got {num_standard_errors}."
        )


def _sigmas(num_standard_errors: float) -> str:
    return f"{num_standard_errors:g} standard errors"


def check_unbiased(
    estimator: Callable[[PRNGKeyArray], Array | tuple[Array, Array]],
    exact: ArrayLike,
    *,
    key: PRNGKeyArray | None = None,
    num_trials: IntScalarLike = 1000,
    num_standard_errors: float = 5.0,
) -> None:
    r"""Check that a stochastic estimator is unbiased and, if it reports its own
    standard error, that the report is honest.

    The estimator runs `num_trials` times with independent keys, under
    `jax.jit(jax.vmap(...))`. With estimates $e_1, \dots, e_N$, mean $\bar e$ and
    sample standard deviation $s$:

    1. **unbiased:** $|\bar e - \text{exact}| \le z\, s / \sqrt N$ (plus 1000
       ulps of $|\text{exact}|$ for rounding), entry by entry;
    2. **calibrated:** if the estimator returns `(estimate, standard_error)`,
       the reported variance $\hat s_i^2$ is unbiased for the variance of the
       estimate: with $d_i = \hat s_i^2 - \frac{N}{N-1}(e_i - \bar e)^2$,
       $|\bar d| \le z\, \operatorname{sd}(d) / \sqrt N$. Pairing the two
       terms trial by trial cancels their common fluctuation.

    $z$ is `num_standard_errors` (default 5: a correct estimator fails with
    probability below $10^{-6}$ per entry). The key is fixed, so the check is
    deterministic.

    **Arguments:**

    - `estimator`: `estimator(key)` returns the estimate, or a pair
      `(estimate, standard_error)` of arrays of the same shape; e.g.
      `lambda k: scorax.hutchinson_trace(f, x, key=k, num_probes=4)`.
    - `exact`: the value the estimator is unbiased for.
    - `key`: a JAX PRNG key (default: a fixed key).
    - `num_trials`: $N \ge 2$.
    - `num_standard_errors`: $z > 0$.

    **Returns:**

    `None`; raises `AssertionError` with a report otherwise.
    """
    num_trials = check_count(num_trials, "num_trials")
    if num_trials < 2:
        raise ValueError(f"`num_trials` must be >= 2, got {num_trials}.")
    _check_threshold(num_standard_errors)
    name = "scorax.testing.check_unbiased"
    keys = jr.split(_key(key), num_trials)
    out = jax.jit(jax.vmap(estimator))(keys)
    reported = None
    if isinstance(out, tuple):
        if len(out) != 2:
            raise ValueError(
                "`estimator` must return an estimate or a pair (estimate, "
                f"standard_error), got a tuple of {len(out)}."
            )
        estimates, reported = (np.asarray(a, np.float64) for a in out)
    else:
        estimates = np.asarray(out, np.float64)
    exact = np.broadcast_to(np.asarray(exact, np.float64), estimates.shape[1:])
    mean = np.mean(estimates, 0)
    spread = np.std(estimates, 0, ddof=1) / np.sqrt(num_trials)
    rounding = relative_tolerance(jnp.result_type(float)) * np.abs(exact)
    entries = max(exact.size, 1)
    assert_close(
        name,
        "E[estimate] = exact",
        actual=mean.reshape(entries),
        expected=exact.reshape(entries),
        tolerance=(num_standard_errors * spread + rounding).reshape(entries),
        where=[f"entry {i}, mean of {num_trials} estimates" for i in range(entries)],
        tolerance_source=f"{_sigmas(num_standard_errors)} of the mean estimate "
        "(from the spread of the estimates) + 1000 ulps of |exact|",
    )
    if reported is None:
        return
    if not np.all(np.isfinite(reported) & (reported >= 0)):
        fail(
            name,
            "the reported standard error is finite and >= 0",
            [("got", f"{reported[~(np.isfinite(reported) & (reported >= 0))][:4]}")],
        )
    centred = (estimates - mean) ** 2 * num_trials / (num_trials - 1)
    difference = reported**2 - centred
    # Rounding: relative to either variance, and the variance that rounding the
    # estimates alone produces.
    rtol = relative_tolerance(jnp.result_type(float))
    rounding = rtol * (np.mean(reported**2, 0) + np.mean(centred, 0))
    rounding = rounding + (rtol * np.abs(exact)) ** 2
    assert_close(
        name,
        "E[reported standard error^2] = Var[estimate] (the report is calibrated)",
        actual=np.mean(reported**2, 0).reshape(entries),
        expected=np.mean(centred, 0).reshape(entries),
        tolerance=(
            num_standard_errors * np.std(difference, 0, ddof=1) / np.sqrt(num_trials)
            + rounding
        ).reshape(entries),
        where=[f"entry {i}, over {num_trials} estimates" for i in range(entries)],
        tolerance_source=f"{_sigmas(num_standard_errors)} of the mean of "
        "reported^2 - (e - mean)^2, paired trial by trial, + 1000 ulps",
    )


class _Perturbed(eqx.Module):
    """`minimiser(x, *args) + sum_j theta_j psi_j(x)`, with fixed random smooth
    directions psi_j(x) = c_j cos(<w_j, x> + b_j)."""

    minimiser: Any
    theta: Float[Array, " directions"]
    scales: Array  # c_j, shaped (directions, *x.shape)
    frequencies: Array  # w_j, shaped (directions, *x.shape)
    phases: Array  # b_j, shaped (directions,)

    def __call__(self, x: Array, *args: Any) -> Array:
        def direction(c, w, b):
            return c * jnp.cos(jnp.sum(w * x) + b)

        psi = jax.vmap(direction)(self.scales, self.frequencies, self.phases)
        return self.minimiser(x, *args) + jnp.tensordot(self.theta, psi, 1)


def check_objective_minimiser(
    loss: Loss,
    minimiser: Callable[..., Array],
    data: Float[Array, " num *shape"],
    *,
    key: PRNGKeyArray | None = None,
    num_directions: IntScalarLike = 8,
    num_standard_errors: float = 5.0,
) -> None:
    r"""Check that a per-sample objective is minimised by a given model (for a
    score-matching objective: by the exact score), statistically.

    The model is perturbed along `num_directions` fixed, smooth random directions,
    $m_\theta(x, \dots) = m^\star(x, \dots) + \sum_j \theta_j\, c_j
    \cos(\langle w_j, x\rangle + b_j)$, and per sample $x_i$ (with its own key
    $k_i$) the gradient $g_i = \nabla_\theta \ell(m_\theta; x_i, k_i)$ and the
    Hessian diagonal $h_i$ are taken at $\theta = 0$. Over the $n$ samples:

    1. **stationary:** the expected gradient vanishes, $|\bar g_j| \le
       z\, \operatorname{sd}(g_j)/\sqrt n$ for every direction (plus 1000 ulps of
       the mean $|g_j|$ for rounding): the objective's minimiser is where it
       should be;
    2. **a minimum:** the loss depends on the model (some $h_{ij} \ne 0$ in
       every direction) and the expected curvature is not negative,
       $\bar h_j \ge -z\, \operatorname{sd}(h_j)/\sqrt n$: the point is a
       minimum, not a maximum or a saddle. (Per-sample curvatures of weighted
       regressions are heavy-tailed, so the check asks for evidence against a
       minimum rather than a significance test of positivity.)

    An objective with a sign error in its target fails 1; one that maximises
    (a global sign error) or ignores the model fails 2. $z$ is
    `num_standard_errors`; keys are fixed, so the check is deterministic.

    **Arguments:**

    - `loss`: `loss(model, x, key) -> scalar` for one sample, e.g.
      `lambda m, x, k: scorax.diffusion_loss(m, path, x, key=k)`.
    - `minimiser`: the model the expected loss should be minimal at, called as
      the loss calls it, `minimiser(x, ...)`, returning an array shaped like
      `x`; e.g. [`ExactModel`][scorax.testing.ExactModel] for a
      time-conditional loss or `mixture.score` for one that is not.
    - `data`: samples $x_i$ from the distribution the minimiser belongs to,
      along the first axis (a few thousand).
    - `key`: a JAX PRNG key for the directions and the loss (default: fixed).
    - `num_directions`: how many directions to perturb along, $\ge 1$.
    - `num_standard_errors`: $z > 0$.

    **Returns:**

    `None`; raises `AssertionError` with a report otherwise.
    """
    num_directions = check_count(num_directions, "num_directions")
    _check_threshold(num_standard_errors)
    data = jnp.asarray(data)
    if data.ndim < 1 or data.shape[0] < 2:
        raise ValueError(
            f"`data` must hold at least two samples along its first axis, got shape "
            f"{data.shape}."
        )
    name = "scorax.testing.check_objective_minimiser"
    shape = data.shape[1:]
    direction_key, loss_key = jr.split(_key(key))
    c_key, w_key, b_key = jr.split(direction_key, 3)
    scale = jnp.std(data) + jnp.finfo(data.dtype).tiny
    size = max(int(np.prod(shape)), 1)
    scales = jr.normal(c_key, (num_directions, *shape), data.dtype)
    frequencies = jr.normal(w_key, (num_directions, *shape), data.dtype) / (
        scale * size**0.5
    )
    phases = jr.uniform(b_key, (num_directions,), data.dtype, 0, 2 * np.pi)

    def per_sample(theta, x, k):
        model = _Perturbed(minimiser, theta, scales, frequencies, phases)
        return loss(model, x, k)

    def derivatives(x, k):
        theta = jnp.zeros(num_directions, data.dtype)
        gradient = jax.grad(per_sample)(theta, x, k)
        hessian = jax.jacfwd(jax.grad(per_sample))(theta, x, k)
        return gradient, jnp.diagonal(hessian)

    keys = jr.split(loss_key, data.shape[0])
    gradients, curvatures = (
        np.asarray(a, np.float64) for a in jax.jit(jax.vmap(derivatives))(data, keys)
    )
    n = data.shape[0]
    where = [
        f"direction {j} of {num_directions}, over {n} samples"
        for j in range(num_directions)
    ]
    rounding = relative_tolerance(data.dtype) * np.mean(np.abs(gradients), 0)
    assert_close(
        name,
        "E[d loss / d theta] = 0 at the minimiser (the objective is consistent)",
        actual=np.mean(gradients, 0),
        expected=np.zeros(num_directions),
        tolerance=num_standard_errors * np.std(gradients, 0, ddof=1) / np.sqrt(n)
        + rounding,
        where=where,
        tolerance_source=f"{_sigmas(num_standard_errors)} of the mean gradient + "
        "1000 ulps of its mean magnitude",
    )
    independent = np.flatnonzero(
        np.max(np.abs(curvatures), 0) <= rounding + np.finfo(np.float64).tiny
    )
    if independent.size:
        j = int(independent[0])
        fail(
            name,
            "the loss depends on the model: d^2 loss / d theta^2 is not zero for "
            "every sample",
            [("where", where[j]), ("got", "zero curvature at every sample")],
        )
    mean = np.mean(curvatures, 0)
    bound = -num_standard_errors * np.std(curvatures, 0, ddof=1) / np.sqrt(n)
    negative = np.flatnonzero(mean < bound)
    if negative.size:
        j = int(negative[0])
        fail(
            name,
            "E[d^2 loss / d theta^2] >= 0 at the minimiser (a minimum, not a "
            "maximum or saddle)",
            [
                ("where", where[j]),
                ("got", f"mean curvature {mean[j]:.6g}"),
                ("expected", f">= {bound[j]:.6g}"),
                (
                    "tolerance",
                    f"{_sigmas(num_standard_errors)} of the mean curvature below 0",
                ),
            ],
        )


class _Counting:
    """`model`, counting its calls into `calls` as they run; its other attributes
    (such as a consistency model's `t_min`) read through."""

    def __init__(self, model: Callable, calls: list):
        self._model, self._calls = model, calls

    def __call__(self, *args):
        jax.debug.callback(lambda: self._calls.append(1))
        return self._model(*args)

    def __getattr__(self, name: str):
        return getattr(self._model, name)


def check_evaluation_count(
    sampler: Sampler,
    model: Callable[..., Array],
    start: Float[Array, " num *shape"],
    *,
    key: PRNGKeyArray | None = None,
    num_counted: IntScalarLike = 2,
) -> None:
    r"""Check that a sampler reports the number of model evaluations it made.

    The model is wrapped so that every call is counted as it runs (a
    `jax.debug.callback`, so calls inside `jax.jit`, `lax.scan` and Diffrax's
    loops count, and calls in branches not taken do not). For each of the first
    `num_counted` starting points, the sampler runs once under `jax.jit`, as a
    batch of one under `jax.vmap(..., axis_name="batch")` (so a sampler that
    averages over that axis, as [`check_sampler`][scorax.testing.check_sampler]
    allows, runs too), and its [`SampleResult`][scorax.SampleResult]'s
    `num_evaluations` must equal the count exactly; it must also return a sample
    shaped like its start.

    **Arguments:**

    - `sampler`: `sampler(model, x, key) -> SampleResult` for one starting point,
      e.g. `lambda m, x, k: scorax.ddpm_sample(m, schedule, x, key=k)`.
    - `model`: the model to count, called by the sampler.
    - `start`: starting points along the first axis.
    - `key`: a JAX PRNG key (default: fixed).
    - `num_counted`: how many starting points to count, $\ge 1$ (each is a
      separate run, so adaptive solvers are counted per sample).

    **Returns:**

    `None`; raises `AssertionError` with a report otherwise.
    """
    num_counted = check_count(num_counted, "num_counted")
    name = "scorax.testing.check_evaluation_count"
    calls: list = []
    counted = _Counting(model, calls)
    # A batch of one under the vmap axis "batch", as check_sampler runs it, so
    # that samplers averaging over that axis run too.
    run = jax.jit(jax.vmap(lambda x, k: sampler(counted, x, k), axis_name="batch"))
    keys = jr.split(_key(key), num_counted)
    for i in range(min(num_counted, start.shape[0])):
        calls.clear()
        result = run(start[i : i + 1], keys[i : i + 1])
        jax.block_until_ready(result)
        jax.effects_barrier()
        result = jax.tree.map(lambda leaf: leaf[0], result)
        if not isinstance(result, SampleResult):
            fail(
                name,
                "the sampler returns a scorax.SampleResult",
                [("got", type(result).__name__)],
            )
        if result.sample.shape != start.shape[1:]:
            fail(
                name,
                "the sample is shaped like its starting point",
                [("got", f"{result.sample.shape}"), ("expected", f"{start.shape[1:]}")],
            )
        reported = int(result.num_evaluations)
        if reported != len(calls):
            fail(
                name,
                "num_evaluations = the number of model calls made",
                [
                    ("where", f"starting point {i}"),
                    ("got", f"{reported} reported"),
                    ("expected", f"{len(calls)} calls counted as they ran"),
                ],
            )


def _moment_statistics(x: Float[Array, " d"]) -> Float[Array, " moments"]:
    """The first moments x_i and the second moments x_i x_j (i <= j) of one point."""
    upper = jnp.triu_indices(x.shape[0])
    return jnp.concatenate([x, jnp.outer(x, x)[upper]])


def _moment_names(dim: int) -> list[str]:
    first = [f"E[x_{i}]" for i in range(dim)]
    rows, columns = np.triu_indices(dim)
    second = [f"E[x_{i} x_{j}]" for i, j in zip(rows, columns, strict=True)]
    return first + second


def exact_moments(mixture: GaussianMixture) -> Float[Array, " moments"]:
    """E[x_i] and E[x_i x_j] (i <= j) of a mixture, in closed form."""
    means = mixture.weights @ mixture.means
    second = jnp.einsum(
        "k,kij->ij",
        mixture.weights,
        mixture.covs + mixture.means[:, :, None] * mixture.means[:, None, :],
    )
    return jnp.concatenate([means, second[jnp.triu_indices(mixture.dim)]])


# The noise floors computed so far: a floor depends on the target, the keys and
# the sample size alone, not on the sampler, and sorting its pairs is the costly
# part of check_sampler; checks of many samplers against one target (a test
# suite) compute it once.
_FLOORS: dict[bytes, np.ndarray] = {}


def _noise_floor(
    target: GaussianMixture, keys: Key[Array, " pairs"], sw_key: PRNGKeyArray, n: int
) -> np.ndarray:
    """`_noise_floor_of`, computed once for each target, keys and size."""
    leaves = [target.means, target.covs, target.weights]
    leaves += [jr.key_data(keys), jr.key_data(sw_key)]
    digest = hashlib.sha256(str(n).encode())
    for leaf in leaves:
        array = np.asarray(leaf)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    entry = digest.digest()
    if entry not in _FLOORS:
        _FLOORS[entry] = np.asarray(_noise_floor_of(target, keys, sw_key, n))
    return _FLOORS[entry]


@eqx.filter_jit
def _noise_floor_of(
    target: GaussianMixture, keys: Key[Array, " pairs"], sw_key: PRNGKeyArray, n: int
) -> Array:
    """Sliced Wasserstein distances between pairs of fresh samples of size `n`
    (one compiled program per mixture shape and `n`)."""

    def fresh_pair(key):
        a_key, b_key = jr.split(key)
        return sliced_wasserstein(
            target.sample(key=a_key, sample_shape=(n,)),
            target.sample(key=b_key, sample_shape=(n,)),
            key=sw_key,
        )

    return jax.vmap(fresh_pair)(keys)


@eqx.filter_jit
def _moment_spread(target: GaussianMixture, key: PRNGKeyArray) -> Array:
    """The standard deviation of each moment statistic, from 100,000 draws."""
    reference = target.sample(key=key, sample_shape=(100_000,))
    return jnp.std(jax.vmap(_moment_statistics)(reference), 0)


class SamplerCheck(NamedTuple):
    r"""What [`check_sampler`][scorax.testing.check_sampler] measured, when the
    check passes.

    - `num_samples`: $n$, the samples checked.
    - `detectable`: $\delta_n$, the smallest error of any first or second moment,
      relative to its scale, that the check detects with probability `power`
      at this $n$.
    - `power`: the probability of detection $\delta_n$ refers to.
    - `largest_error`: the largest moment error in standard errors (below
      `num_standard_errors` since the check passed).
    """

    num_samples: int
    detectable: float
    power: float
    largest_error: float


def _moment_scales(target: GaussianMixture) -> Array:
    """The scale each moment's relative error refers to: sqrt(E[x_i^2]) for
    E[x_i], sqrt(E[x_i^2] E[x_j^2]) for E[x_i x_j]."""
    dim = target.dim
    second = exact_moments(target)[dim:]
    square = jnp.zeros((dim, dim), second.dtype).at[jnp.triu_indices(dim)].set(second)
    diagonal = jnp.diagonal(square)
    rows, columns = jnp.triu_indices(dim)
    return jnp.sqrt(jnp.concatenate([diagonal, diagonal[rows] * diagonal[columns]]))


def _detectable(
    relative_spread: np.ndarray, n: int, num_standard_errors: float, power: float
) -> float:
    """The relative moment error detected with probability `power` from n
    samples: (z + Phi^{-1}(power)) s / sqrt(n), for the worst-resolved moment."""
    margin = num_standard_errors + statistics.NormalDist().inv_cdf(power)
    return float(margin * np.max(relative_spread) / np.sqrt(n))


def _samples_needed(
    relative_spread: np.ndarray, detect: float, num_standard_errors: float, power: float
) -> int:
    """The smallest n at which `_detectable` is at most `detect`."""
    margin = num_standard_errors + statistics.NormalDist().inv_cdf(power)
    return int(np.ceil((margin * np.max(relative_spread) / detect) ** 2))


def _check_power(detect: float | None, power: float) -> None:
    if detect is not None and not (np.isfinite(detect) and detect > 0):
        raise ValueError(f"`detect` must be finite and > 0, got {detect}.")
    if not 0.5 <= power < 1:
        raise ValueError(f"`power` must be in [0.5, 1), got {power}.")


def check_sampler(
    sampler: Sampler,
    model: Callable[..., Array],
    start: Float[Array, "num d"] | Callable[[PRNGKeyArray, int], Array],
    target: GaussianMixture,
    *,
    key: PRNGKeyArray | None = None,
    num_standard_errors: float = 5.0,
    detect: float | None = None,
    power: float = 0.99,
    num_noise_floor: IntScalarLike = 30,
    num_distance: IntScalarLike | None = 2000,
    num_counted: IntScalarLike = 2,
) -> SamplerCheck:
    r"""Check a sampler against the exact answer: fed an exact model (e.g.
    [`ExactModel`][scorax.testing.ExactModel] of `target` on a path), its samples
    must be statistically indistinguishable from `target`, and it must report
    its model evaluations exactly.

    The sampler runs on every starting point under
    `jax.jit(jax.vmap(..., axis_name="batch"))`, giving $n$ samples. Then:

    1. **moments:** every first moment $\mathbb{E}[x_i]$ and second moment
       $\mathbb{E}[x_i x_j]$ of the samples is within $z$ standard errors
       $s_m / \sqrt n$ of the mixture's exact value ($s_m$, the moment's spread,
       from 100,000 fresh draws);
    2. **distribution:** the sliced Wasserstein distance
       ([`sliced_wasserstein`][scorax.sliced_wasserstein]) from (the first
       `num_distance` of) the samples to as many fresh draws of `target` is
       within $z$ standard deviations of its two-sample noise floor, the same
       distance between two fresh samples of that size (mean and standard
       deviation over `num_noise_floor` pairs);
    3. **evaluations:** [`check_evaluation_count`][scorax.testing.check_evaluation_count]
       on the first `num_counted` starting points (2 by default).

    **Power.** A moment whose true error is $\delta$ times its scale (the root
    mean square $\sqrt{\mathbb{E}[x_i^2]}$ for $\mathbb{E}[x_i]$,
    $\sqrt{\mathbb{E}[x_i^2]\mathbb{E}[x_j^2]}$ for $\mathbb{E}[x_i x_j]$) fails
    check 1 with probability at least `power` when

    $$\delta \ge \delta_n = \bigl(z + \Phi^{-1}(\text{power})\bigr)
    \max_m \frac{s_m}{\text{scale}_m \sqrt n},$$

    the detectable effect of $n$ samples, reported by every failure and returned
    on success. Ask for the effect instead with `detect`: given a function
    `start(key, n)`, the check draws the $n$ starting points that $\delta_n \le$
    `detect` needs; given an array of starting points, it refuses too few. (For
    the seeds' two-Gaussian mixture, $z = 5$ and power 0.99, `detect=0.03`
    needs about 60,000 samples.) For a correct sampler the check fails with
    probability below about $10^{-5}$ at $z = 5$; it is deterministic (fixed
    keys).

    **Arguments:**

    - `sampler`: `sampler(model, x, key) -> SampleResult` for one starting point;
      it may use the `jax.vmap` axis name `"batch"` (as
      [`predictor_corrector_sample`][scorax.predictor_corrector_sample]'s
      `axis_name` does).
    - `model`: the exact model the sampler is fed.
    - `start`: $n$ starting points along the first axis (a thousand or more),
      e.g. draws of [`prior_sample`][scorax.AbstractGaussianPath.prior_sample];
      or, with `detect`, a function `start(key, n)` that draws them.
    - `target`: the [`GaussianMixture`][scorax.GaussianMixture] the samples
      should follow.
    - `key`: a JAX PRNG key (default: fixed).
    - `num_standard_errors`: $z > 0$.
    - `detect`: the relative moment error $> 0$ the check must detect with
      probability `power` (default `None`: the $n$ of `start`).
    - `power`: in $[0.5, 1)$; default 0.99.
    - `num_noise_floor`: pairs of fresh samples for the noise floor, $\ge 2$.
    - `num_distance`: the samples the distance uses, $\ge 2$ (default 2,000;
      `None`: all). Each pair of the noise floor sorts this many points along
      128 directions, so the distance is the costly part at large $n$; the
      moments always use every sample.
    - `num_counted`: starting points whose evaluations are counted, $\ge 0$.
      Counting compiles the sampler a second time (with the counting model);
      `0` leaves the count out, for a sampler whose count a separate
      [`check_evaluation_count`][scorax.testing.check_evaluation_count] checks.

    **Returns:**

    A [`SamplerCheck`][scorax.testing.SamplerCheck] with $n$ and $\delta_n$;
    raises `AssertionError` with a report otherwise.
    """
    _check_threshold(num_standard_errors)
    _check_power(detect, power)
    num_noise_floor = check_count(num_noise_floor, "num_noise_floor", minimum=2)
    num_counted = check_count(num_counted, "num_counted", minimum=0)
    if num_distance is not None:
        num_distance = check_count(num_distance, "num_distance", minimum=2)
    name = "scorax.testing.check_sampler"
    start_key, sample_key, fresh_key, floor_key, moment_key, sw_key, count_key = (
        jr.split(_key(key), 7)
    )
    spread = np.asarray(_moment_spread(target, moment_key))
    relative_spread = spread / np.asarray(_moment_scales(target))
    start = _starting_points(
        start, target, start_key, relative_spread, detect, num_standard_errors, power
    )
    n = start.shape[0]
    detectable = _detectable(relative_spread, n, num_standard_errors, power)
    power_note = (
        f"; at n = {n} a moment off by {detectable:.3g} of its scale fails with "
        f"probability {power:g}"
    )
    batched = jax.jit(jax.vmap(lambda x, k: sampler(model, x, k), axis_name="batch"))
    samples = _checked_samples(batched(start, jr.split(sample_key, n)).sample, start)
    samples = samples.astype(target.means.dtype)
    statistics_ = jax.vmap(_moment_statistics)(samples)
    moments = np.asarray(jnp.mean(statistics_, 0))
    errors = np.abs(moments - np.asarray(exact_moments(target))) / (spread / np.sqrt(n))
    assert_close(
        name,
        "the samples' first and second moments equal the target's (closed form)",
        actual=moments,
        expected=np.asarray(exact_moments(target)),
        tolerance=num_standard_errors * spread / np.sqrt(n),
        where=[f"{moment}, over {n} samples" for moment in _moment_names(target.dim)],
        tolerance_source=f"{_sigmas(num_standard_errors)} of the sample moment "
        "(its spread from 100,000 fresh draws)" + power_note,
    )
    _check_distance(
        samples[:num_distance],
        target,
        fresh_key,
        jr.split(floor_key, num_noise_floor),
        sw_key,
        num_standard_errors,
    )
    if num_counted:
        check_evaluation_count(
            sampler, model, start, key=count_key, num_counted=num_counted
        )
    return SamplerCheck(n, detectable, power, float(np.max(errors)))


def _starting_points(
    start: Array | Callable[[PRNGKeyArray, int], Array],
    target: GaussianMixture,
    key: PRNGKeyArray,
    relative_spread: np.ndarray,
    detect: float | None,
    num_standard_errors: float,
    power: float,
) -> Array:
    """`start` checked, or drawn with as many points as `detect` needs."""
    needed = None
    if detect is not None:
        needed = _samples_needed(relative_spread, detect, num_standard_errors, power)
    if callable(start):
        if needed is None:
            raise ValueError(
                "`detect` is required when `start` is a function: it sets how many "
                "starting points the check draws."
            )
        start = start(key, max(needed, 2))
    if start.ndim != 2 or start.shape[1] != target.dim or start.shape[0] < 2:
        raise ValueError(
            f"`start` must have shape (n, d) with n >= 2 and d = {target.dim} (the "
            f"dimension of `target`), got {start.shape}."
        )
    if needed is not None and start.shape[0] < needed:
        raise ValueError(
            f"`start` holds {start.shape[0]} starting points; detecting a relative "
            f"moment error of {detect:g} with probability {power:g} at "
            f"{num_standard_errors:g} standard errors needs n >= {needed}."
        )
    return start


def _checked_samples(samples: Array, start: Array) -> Array:
    name = "scorax.testing.check_sampler"
    if samples.shape != start.shape:
        fail(
            name,
            "the samples are shaped like their starting points",
            [("got", f"{samples.shape}"), ("expected", f"{start.shape}")],
        )
    if not bool(jnp.all(jnp.isfinite(samples))):
        fail(name, "every sample is finite", [("got", "NaN or inf in the samples")])
    return samples


def _check_distance(
    samples: Array,
    target: GaussianMixture,
    fresh_key: PRNGKeyArray,
    floor_keys: Key[Array, " pairs"],
    sw_key: PRNGKeyArray,
    num_standard_errors: float,
) -> None:
    """The sliced Wasserstein distance from `samples` to fresh draws is within
    the two-sample noise floor."""
    n = samples.shape[0]
    floor = _noise_floor(target, floor_keys, sw_key, n)
    floor_mean, floor_sd = float(np.mean(floor)), float(np.std(floor, ddof=1))
    fresh = target.sample(key=fresh_key, sample_shape=(n,))
    observed = float(sliced_wasserstein(samples, fresh, key=sw_key))
    bound = floor_mean + num_standard_errors * floor_sd
    if not observed <= bound:
        fail(
            "scorax.testing.check_sampler",
            "the samples follow the target: sliced Wasserstein distance to fresh "
            "data within the two-sample noise floor",
            [
                ("where", f"{n} samples"),
                ("got", f"distance {observed:.6g}"),
                (
                    "expected",
                    f"<= {bound:.6g} (noise floor {floor_mean:.6g} + "
                    f"{num_standard_errors:g} x {floor_sd:.6g})",
                ),
                (
                    "tolerance",
                    f"{_sigmas(num_standard_errors)}: mean and standard deviation "
                    f"of the distance between {floor_keys.shape[0]} pairs of fresh "
                    "samples",
                ),
            ],
        )
