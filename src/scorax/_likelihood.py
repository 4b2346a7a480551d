r"""Exact log-likelihoods through the probability-flow ODE."""

import functools
import math
from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._checks import (
    check_count,
    check_finite,
    check_model,
    check_start,
    check_time_range,
)
from ._custom_types import FloatScalar, IntScalarLike
from ._parameterisation import (
    AbstractParameterisation,
    NoisePrediction,
    VelocityPrediction,
)
from ._path import AbstractGaussianPath, isotropic_gaussian_log_prob
from ._predict import Model, predict
from ._solve import check_solver_options, solve
from ._trace import (
    Probe,
    quadratic_forms,
    sample_probes,
    standard_error,
    value_and_exact_trace,
)


class LikelihoodResult(eqx.Module):
    r"""What [`log_likelihood`][scorax.log_likelihood] returns for one data point.

    **Fields:**

    - `log_likelihood`: $\log p_{t_\text{min}}(x)$, the estimate (exact up to the
      solver's tolerance with the exact divergence).
    - `standard_error`: its Monte Carlo standard error: 0 for the exact
      divergence, $+\infty$ for a single Hutchinson probe.
    - `latent`: $x$ carried to $t_\text{max}$ by the probability-flow ODE (the
      encoding of $x$ in the prior).
    - `prior_log_prob`: $\log \mathcal{N}(\text{latent}; 0, \sigma(t_\text{max})^2
      I)$.
    - `num_evaluations`: how many times the vector field and its divergence were
      evaluated.
    """

    log_likelihood: FloatScalar
    standard_error: FloatScalar
    latent: Float[Array, "*shape"]
    prior_log_prob: FloatScalar
    num_evaluations: Int[Array, ""]


def log_likelihood(
    model: Model,
    path: AbstractGaussianPath,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray | None = None,
    num_probes: IntScalarLike = 1,
    probe: Probe = "rademacher",
    chunk_size: int | None = None,
    solver: dfx.AbstractSolver = dfx.Tsit5(),
    stepsize_controller: dfx.AbstractStepSizeController = dfx.PIDController(
        rtol=1e-5, atol=1e-5
    ),
    num_steps: IntScalarLike = 100,
    max_steps: IntScalarLike = 4096,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    parameterisation: AbstractParameterisation = NoisePrediction(),
) -> LikelihoodResult:
    r"""The log-density of one data point under the model, through the
    probability-flow ODE (Song et al. 2021, "Score-based generative modeling
    through stochastic differential equations"; Chen et al. 2018 and Grathwohl et
    al. 2019 for the instantaneous change of variables).

    Along a solution of the ODE $\dot x = v(x, t)$, $v = f x - \tfrac12 g^2 \nabla
    \log p_t$ (the model read as [`VelocityPrediction`][scorax.VelocityPrediction]),
    densities obey $\frac{\mathrm{d}}{\mathrm{d}t} \log p_t(x(t)) = -\nabla \cdot
    v(x(t), t)$. Integrating $x$ and the divergence together from $x(t_\text{min})
    = x$ up to $t_\text{max}$,

    $$\log p_{t_\text{min}}(x) = \log \pi\big(x(t_\text{max})\big) +
    \int_{t_\text{min}}^{t_\text{max}} \nabla \cdot v(x(t), t)\,\mathrm{d}t,$$

    with the prior $\pi = \mathcal{N}(0, \sigma(t_\text{max})^2 I)$ (at
    $t_\text{max} = 1$, [`prior_log_prob`][scorax.AbstractGaussianPath.prior_log_prob]).

    **What it measures.** The result is the density of the model's
    $p_{t_\text{min}}$: the data distribution blurred by the path's noise at
    $t_\text{min}$ ($\sigma(t_\text{min}) \approx 0.01$ for the default
    [`VPPath`][scorax.VPPath] and $t_\text{min} = 10^{-3}$), not of $p_0$, where
    the score of a distribution with a density still exists but the ODE is stiff.
    Lower $t_\text{min}$ to measure closer to the data ($10^{-5}$ is customary for
    image likelihoods), at the price of more solver steps. With an exact score, the
    result is exactly $\log p_{t_\text{min}}(x)$ up to the solver tolerance and the
    prior's mismatch with the true $p_{t_\text{max}}$.

    **The divergence.** Without a `key`, exactly
    ([`exact_trace`][scorax.exact_trace], $d$ Jacobian-vector products per
    evaluation): use it for small $d$. With a `key`, Hutchinson's estimator
    ([`hutchinson_trace`][scorax.hutchinson_trace]) with `num_probes` probes
    drawn once and held fixed along the whole solve, so that each probe gives an
    unbiased estimate of the integral (a trace estimator redrawn at every solver
    step would not be a smooth ODE). The estimate is their mean; the standard
    error is their sample standard deviation over $\sqrt{m}$.

    Gradients with respect to the model (and `x`) flow through the solve
    (Diffrax's default `RecursiveCheckpointAdjoint`), so the result can be
    trained on directly.

    **Arguments:**

    - `model`: called as `model(x_t, t)`, predicting `parameterisation`.
    - `path`: the Gaussian path the model was trained on.
    - `x`: one data point, any shape.
    - `key`: `None` for the exact divergence; otherwise a JAX PRNG key for the
      probes.
    - `num_probes`, `probe`: the Hutchinson probes, as for
      [`hutchinson_trace`][scorax.hutchinson_trace].
    - `chunk_size`: for the exact divergence, how many basis vectors at once (see
      [`exact_trace`][scorax.exact_trace]).
    - `solver`, `stepsize_controller`, `num_steps`, `max_steps`, `t_min`,
      `t_max`: as for [`probability_flow_sample`][scorax.probability_flow_sample].

    **Returns:**

    A [`LikelihoodResult`][scorax.LikelihoodResult].
    """
    check_time_range(t_min, t_max, path)
    num_steps, max_steps = check_solver_options(solver, num_steps, max_steps)
    num_probes = check_count(num_probes, "num_probes")
    x = check_start(x)
    check_model(model, x, jnp.asarray(t_min, x.dtype))

    def velocity(t, y):
        return predict(
            model,
            path,
            y,
            t_min + t,
            source=parameterisation,
            target=VelocityPrediction(),
        )

    if key is None:
        divergence = functools.partial(value_and_exact_trace, chunk_size=chunk_size)
        delta0 = jnp.zeros((), x.dtype)
    else:
        probes = sample_probes(key, x.shape, num_probes, probe, x.dtype)
        divergence = functools.partial(_probe_quadratic_forms, probes=probes)
        delta0 = jnp.zeros((num_probes,), x.dtype)

    def drift(s, state):
        y, _ = state
        return divergence(lambda y: velocity(s, y), y)

    (latent, deltas), _, evaluations = solve(
        drift,
        (x, delta0),
        jnp.asarray(t_max - t_min, x.dtype),
        solver=solver,
        controller=stepsize_controller,
        num_steps=num_steps,
        max_steps=max_steps,
    )
    prior = isotropic_gaussian_log_prob(latent, path.sigma(jnp.asarray(t_max, x.dtype)))
    if key is None:
        estimate, error = deltas, jnp.zeros_like(deltas)
    else:
        estimate, error = jnp.mean(deltas), standard_error(deltas)
    value = check_finite(prior + estimate, "log_likelihood")
    return LikelihoodResult(
        log_likelihood=value,
        standard_error=error,
        latent=latent,
        prior_log_prob=prior,
        num_evaluations=evaluations,
    )


def _probe_quadratic_forms(
    fn: Callable[[Array], Array], y: Array, *, probes: Array
) -> tuple[Array, Array]:
    """`fn(y)` and v^T (d fn) v for each fixed probe v: one linearisation."""
    value, jvp = jax.linearize(fn, y)
    return value, quadratic_forms(jvp, probes)


def bits_per_dim(
    log_likelihood: FloatScalar,
    x: Float[Array, "*shape"],
    *,
    num_bins: IntScalarLike | None = 256,
    data_width: float = 1.0,
) -> FloatScalar:
    r"""Convert a log-likelihood in nats to bits per dimension.

    For continuous data, $\text{bpd} = -\log p(x) / (D \ln 2)$ with
    $D$ = `x.size`.

    For integer data (pixels $k \in \{0, \dots, K - 1\}$, $K$ = `num_bins`), a
    continuous density is compared with a discrete distribution through uniform
    dequantisation (Theis et al. 2016): the data $x = a + w (k + u) / K$ with
    $u \sim \mathcal{U}[0, 1)^D$ fill an interval of width $w$ = `data_width`
    (1 for pixels scaled to $[0, 1]$, 2 for $[-1, 1]$). The discrete probability
    of $k$ is at least $\mathbb{E}_u[\log p(x)] + D \log(w / K)$, so

    $$\text{bpd} = \frac{1}{\ln 2}\left(-\frac{\log p(x)}{D} + \log \frac{K}{w}
    \right),$$

    which adds 8 bits for 8-bit images on $[0, 1]$. Averaged over $u$ and the data
    it is an upper bound on the discrete model's bits per dimension. Pass
    `num_bins=None` for the continuous value.

    **Arguments:**

    - `log_likelihood`: $\log p(x)$ in nats, e.g. from
      [`log_likelihood`][scorax.log_likelihood].
    - `x`: the data point (only its size $D$ is used).
    - `num_bins`: $K \ge 1$, or `None` for continuous data; default 256.
    - `data_width`: $w > 0$; default 1.
    """
    if num_bins is not None:
        num_bins = check_count(num_bins, "num_bins")
    if not data_width > 0:
        raise ValueError(f"`data_width` must be > 0, got {data_width}.")
    nats = -log_likelihood / x.size
    if num_bins is not None:
        nats = nats + math.log(num_bins / data_width)
    return nats / math.log(2)
