r"""Exponential integrators of the probability-flow ODE: DPM-Solver (Lu et al.
2022a) and DPM-Solver++ (Lu et al. 2022b), on every Gaussian path.

**The semi-linear ODE.** In the half log-SNR $\ell = \log(\alpha/\sigma)$ (Lu et
al.'s $\lambda$; half of scorax's [`log_snr`][scorax.AbstractGaussianPath.log_snr]),
the probability-flow ODE of any Gaussian path reads, with the model's noise
prediction $\hat\varepsilon$ or its data prediction $\hat x_0$,

$$\frac{\mathrm{d}x}{\mathrm{d}\ell} = \frac{\dot\alpha}{\alpha} x - \sigma
\hat\varepsilon = \frac{\dot\sigma}{\sigma} x + \alpha \hat x_0,$$

(dots are $\mathrm{d}/\mathrm{d}\ell$): a linear part known exactly and a
non-linear part carried by the model. Variation of constants integrates the
linear part exactly from $\ell_s$ to $\ell_t = \ell_s + h$,

$$x_t = \frac{\alpha_t}{\alpha_s} x_s - \alpha_t \int_{\ell_s}^{\ell_t}
e^{-\ell} \hat\varepsilon\, \mathrm{d}\ell
= \frac{\sigma_t}{\sigma_s} x_s + \sigma_t \int_{\ell_s}^{\ell_t} e^{\ell}
\hat x_0\, \mathrm{d}\ell,$$

and an exponential integrator of order $k$ replaces the model by a polynomial in
$\ell$ of degree $k - 1$ and integrates the exponential weight exactly.

**One mechanism.** Everything here is one `jax.lax.scan` over a grid of nodes
$(t_i, \alpha_i, \sigma_i, \ell_i)$, with the multistep history in its carry;
the methods differ only in the update of one step. The grid comes from any
[`AbstractGaussianPath`][scorax.AbstractGaussianPath], through `alpha`, `sigma`,
`log_snr` and `inverse_log_snr` alone, or from a
[`DDPMSchedule`][scorax.DDPMSchedule], whose discrete $\bar\alpha$ are read
exactly as [`ddim_sample`][scorax.ddim_sample] reads them (so DPM-Solver-1 is
DDIM step for step). These are per-sample functions beside `ddim_sample` rather
than Diffrax solvers: a Diffrax solver steps in the time of the ODE it is given
and sees only its vector field, whereas an exponential integrator needs the
path's $\alpha$ and $\sigma$ at each node and the model's raw prediction (not
the vector field) in its history; it also needs the discrete DDPM schedule,
which is no ODE at all. A fixed grid in a scan keeps the evaluation count exact
and static.
"""

import abc
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import RealScalarLike
from .._misc import check, check_choice, check_count
from .._parameterisation import AbstractParameterisation, NoisePrediction
from .._path import AbstractGaussianPath, DDPMSchedule
from ._common import (
    check_finite,
    check_model,
    check_positive,
    check_time_range,
    Model,
    num_evaluations,
    predict,
    SampleResult,
)
from ._ddpm import ddim_steps
from ._edm import edm_sigmas


Spacing = Literal["log_snr", "time", "time_quadratic", "edm"]
SPACINGS: tuple[str, ...] = ("log_snr", "time", "time_quadratic", "edm")
Interpolation = Literal["log_snr", "time"]
INTERPOLATIONS: tuple[str, ...] = ("log_snr", "time")
# Gauss-Legendre nodes and weights on [-1, 1] for the weights that have no closed
# form (interpolation in time, or a data standard deviation): 16 nodes integrate
# the smooth integrands of a step to rounding in float64 (tested against the
# closed forms).
_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(16)


class _Node(NamedTuple):
    """One point of the grid (or a stacked grid): the model's time, the path's
    scales there and the half log-SNR ell = log(alpha / sigma)."""

    t: Array
    alpha: Array
    sigma: Array
    ell: Array


class _AbstractNodes(eqx.Module):
    """Where the solvers read alpha, sigma and the model's time: a continuous path
    or the discrete DDPM schedule."""

    @abc.abstractmethod
    def model_path(self) -> AbstractGaussianPath:
        """The path on which the model's outputs are converted."""

    @abc.abstractmethod
    def at(self, ell: Array) -> _Node:
        """The node at half log-SNR `ell` (for intermediate stages)."""

    @abc.abstractmethod
    def grid(
        self,
        num_steps: int,
        spacing: str,
        rho: Array,
        t_min: float,
        t_max: float,
        dtype,
    ) -> _Node:
        """`num_steps + 1` nodes from the noise end to the data end."""


def _ells(start: Array, end: Array, num_steps: int, spacing: str, rho: Array) -> Array:
    """`num_steps + 1` half log-SNRs from `start` up to `end`: uniform in ell, or
    rho-spaced in the noise level exp(-ell) (Karras et al. 2022)."""
    if spacing == "log_snr":
        return jnp.linspace(start, end, num_steps + 1)
    levels = edm_sigmas(jnp.exp(-start), jnp.exp(-end), num_steps + 1, rho)[:-1]
    return -jnp.log(levels)


def _times(start: Array, end: Array, num_steps: int, spacing: str) -> Array:
    """`num_steps + 1` times from `start` down to `end`, uniform in t or in
    sqrt(t) (Lu et al.'s "time_quadratic", after DDIM's quadratic step choice)."""
    if spacing == "time":
        return jnp.linspace(start, end, num_steps + 1)
    times = jnp.linspace(jnp.sqrt(start), jnp.sqrt(end), num_steps + 1) ** 2
    return times.at[0].set(start).at[-1].set(end)


class _PathNodes(_AbstractNodes):
    """Nodes of a continuous Gaussian path, from its closed forms alone."""

    path: AbstractGaussianPath

    def model_path(self) -> AbstractGaussianPath:
        return self.path

    def _at_time(self, t: Array) -> _Node:
        alpha, sigma = self.path.alpha(t), self.path.sigma(t)
        return _Node(t, alpha, sigma, self.path.log_snr(t) / 2)

    def at(self, ell: Array) -> _Node:
        return self._at_time(self.path.inverse_log_snr(2 * ell))

    def grid(self, num_steps, spacing, rho, t_min, t_max, dtype) -> _Node:
        start, end = jnp.asarray(t_max, dtype), jnp.asarray(t_min, dtype)
        if spacing in ("time", "time_quadratic"):
            times = _times(start, end, num_steps, spacing)
        else:
            ells = _ells(
                self.path.log_snr(start) / 2,
                self.path.log_snr(end) / 2,
                num_steps,
                spacing,
                rho,
            )
            times = jax.vmap(self.path.inverse_log_snr)(2 * ells)
            # The ends exactly where asked, whatever the rounding of the inverse.
            times = times.at[0].set(start).at[-1].set(end)
        return jax.vmap(self._at_time)(times)


class _ScheduleNodes(_AbstractNodes):
    """Nodes of the discrete DDPM schedule: step n at time n / N with the discrete
    alpha_bar_n; between steps, ell is interpolated linearly in time (as in Lu et
    al.'s code for discrete-time models), and alpha^2 = sigmoid(2 ell),
    sigma^2 = sigmoid(-2 ell) as on every variance-preserving path."""

    schedule: DDPMSchedule

    def model_path(self) -> AbstractGaussianPath:
        return self.schedule.path

    def _step_ells(self, dtype) -> Array:
        cumprod = self.schedule.alphas_cumprod.astype(dtype)
        return (jnp.log(cumprod) - jnp.log1p(-cumprod)) / 2

    def _at_steps(self, steps: np.ndarray, dtype) -> _Node:
        cumprod = self.schedule.alphas_cumprod.astype(dtype)[steps - 1]
        return _Node(
            jnp.asarray(steps / self.schedule.num_steps, dtype),
            jnp.sqrt(cumprod),
            jnp.sqrt(1 - cumprod),
            (jnp.log(cumprod) - jnp.log1p(-cumprod)) / 2,
        )

    def at(self, ell: Array) -> _Node:
        ells = self._step_ells(ell.dtype)
        times = self.schedule.times.astype(ell.dtype)
        t = jnp.interp(ell, ells[::-1], times[::-1])
        return _Node(
            t,
            jnp.sqrt(jax.nn.sigmoid(2 * ell)),
            jnp.sqrt(jax.nn.sigmoid(-2 * ell)),
            ell,
        )

    def grid(self, num_steps, spacing, rho, t_min, t_max, dtype) -> _Node:
        total = self.schedule.num_steps
        if spacing == "time":
            if num_steps + 1 > total:
                raise ValueError(
                    f"`num_steps` must be at most the schedule's num_steps - 1 = "
                    f"{total - 1} with spacing='time' (one schedule step per grid "
                    f"point), got {num_steps}."
                )
            return self._at_steps(ddim_steps(total, num_steps + 1), dtype)
        ends = self._at_steps(np.array([total, 1]), dtype)
        if spacing == "time_quadratic":
            times = _times(ends.t[0], ends.t[1], num_steps, spacing)
            ells = self._step_ells(dtype)
            scheduled = self.schedule.times.astype(dtype)
            ells = jnp.interp(times, scheduled, ells)
        else:
            ells = _ells(ends.ell[0], ends.ell[1], num_steps, spacing, rho)
        nodes = jax.vmap(self.at)(ells)
        # The ends on the schedule's own steps N and 1.
        return jax.tree.map(
            lambda grid, end: grid.at[0].set(end[0]).at[-1].set(end[1]), nodes, ends
        )


def _nodes(path: AbstractGaussianPath | DDPMSchedule) -> _AbstractNodes:
    if isinstance(path, DDPMSchedule):
        return _ScheduleNodes(path)
    return _PathNodes(path)


class _Reader(eqx.Module):
    """The model read as noise at a node (one evaluation), and as data through the
    node's own alpha and sigma, x0 = (x - sigma eps) / alpha: on a continuous path
    this is `convert` to `DataPrediction`; on the DDPM schedule it uses the
    discrete alpha_bar, as `ddim_sample` does."""

    model: Model
    nodes: _AbstractNodes
    parameterisation: AbstractParameterisation

    def noise(self, x: Array, node: _Node) -> Array:
        return predict(
            self.model,
            self.nodes.model_path(),
            x,
            node.t,
            source=self.parameterisation,
            target=NoisePrediction(),
        )

    def data(self, x: Array, node: _Node) -> Array:
        return (x - node.sigma * self.noise(x, node)) / node.alpha


# ------------------------------------------------------------------ the steps


def _single_step(reader: _Reader, order: int, x: Array, s: _Node, t: _Node) -> Array:
    """One step of DPM-Solver-`order` (noise prediction) from node s to node t,
    with intermediate nodes at ell_s + h/2 (order 2) or ell_s + h/3, + 2h/3
    (order 3), Lu et al. (2022a), Algorithms 1 and 2."""
    h = t.ell - s.ell
    eps = reader.noise(x, s)

    def first_order(node: _Node) -> Array:
        return node.alpha / s.alpha * x - node.sigma * jnp.expm1(node.ell - s.ell) * eps

    phi = t.sigma * jnp.expm1(h)
    if order == 1:
        return first_order(t)
    if order == 2:
        mid = reader.nodes.at(s.ell + h / 2)
        r1 = (mid.ell - s.ell) / h
        eps1 = reader.noise(first_order(mid), mid)
        return first_order(t) - phi / (2 * r1) * (eps1 - eps)
    one, two = reader.nodes.at(s.ell + h / 3), reader.nodes.at(s.ell + 2 * h / 3)
    r1, r2 = (one.ell - s.ell) / h, (two.ell - s.ell) / h
    eps1 = reader.noise(first_order(one), one)
    phi_22 = jnp.expm1(r2 * h) / (r2 * h) - 1
    u2 = first_order(two) - two.sigma * r2 / r1 * phi_22 * (eps1 - eps)
    eps2 = reader.noise(u2, two)
    return first_order(t) - t.sigma * (jnp.expm1(h) / h - 1) / r2 * (eps2 - eps)


def _moments(h: Array, rate: int, count: int) -> list[Array]:
    r"""$I_k = \int_0^1 c h\, e^{-c h (1 - w)} w^k\, \mathrm{d}w$ for $k < $ `count`
    ($c$ = `rate`: 1 for the ODE, 2 for the SDE), by $I_0 = 1 - e^{-ch}$ and
    integration by parts, $I_k = 1 - \frac{k}{ch} I_{k-1}$."""
    moments = [-jnp.expm1(-rate * h)]
    for k in range(1, count):
        moments.append(1 - k / (rate * h) * moments[-1])
    return moments


def _quadrature(us: Array, moments: list[Array], count: int) -> Array:
    r"""Weights $w_j$ with $\sum_j w_j p(u_j) = \sum_k p_k I_k$ for every polynomial
    $p(u) = \sum_k p_k u^k$ of degree < `count`: the exact integral of the
    interpolant through the first `count` nodes $u_j$, from the monomial
    coefficients of the Lagrange basis; zero weight on the other nodes."""
    weights = []
    for j in range(count):
        basis = [jnp.ones_like(us[0])]  # coefficients of prod (u - u_m), low first
        scale = jnp.ones_like(us[0])
        for m in range(count):
            if m != j:
                shifted = [jnp.zeros_like(us[0]), *basis]
                basis = [
                    a - us[m] * b for a, b in zip(shifted, [*basis, 0], strict=True)
                ]
                scale = scale * (us[j] - us[m])
        weights.append(sum(c * i for c, i in zip(basis, moments, strict=False)) / scale)
    padding = [jnp.zeros_like(us[0])] * (us.shape[0] - count)
    return jnp.stack(weights + padding)


class _History(NamedTuple):
    """The last interpolated values (data predictions or their residuals), newest
    first, and their nodes."""

    values: Array  # (3, *shape)
    nodes: _Node  # of (3,) arrays


class _Rule(eqx.Module):
    r"""What a multistep step integrates exactly and what it interpolates.

    With `log_data_std` $= \log\sigma_d$ the model's data prediction is split as
    $\hat x_0 = c\, x + r$, $c = \operatorname{sigmoid}(2\ell + 2\log\sigma_d) /
    \alpha$, the posterior mean of $\mathcal{N}(0, \sigma_d^2 I)$ data (EDM's
    $c_\text{skip}$), and the step integrates the linear part exactly,
    $x_t = \frac{S_t}{S_s} x_s + \alpha_t \int_{\ell_s}^{\ell_t} K(\ell)\,
    r\, \mathrm{d}\ell$ with $S = \sqrt{\alpha^2 \sigma_d^2 + \sigma^2}$ and
    $K(\ell) = e^{\ell - \ell_t} S_t \sigma / (\sigma_t S)$. Without it
    ($\sigma_d = 0$) $r = \hat x_0$, $S = \sigma$: DPM-Solver++. With `rate` 2 (the
    SDE, data prediction only) $K = 2 e^{2(\ell - \ell_t)}$ and the linear factor
    gains $e^{-h}$. The residual is interpolated in $\ell$ or in $t$
    (`interpolation`)."""

    nodes: _AbstractNodes
    log_data_std: Array | None
    interpolation: str = eqx.field(static=True)
    rate: int = eqx.field(static=True)

    @property
    def closed_form(self) -> bool:
        """Whether the weights have the closed form of Lu et al. (data prediction
        interpolated in ell)."""
        return self.log_data_std is None and self.interpolation == "log_snr"

    def coordinate(self, node: _Node) -> Array:
        return node.t if self.interpolation == "time" else node.ell

    def _log_scale(self, ell: Array) -> Array:
        """log(S / sigma) = log(1 + sigma_d^2 e^{2 ell}) / 2."""
        if self.log_data_std is None:
            return jnp.zeros_like(ell)
        return jnp.logaddexp(0, 2 * (ell + self.log_data_std)) / 2

    def residual(self, data: Array, x: Array, node: _Node) -> Array:
        """The interpolated value r = x0_hat - c x at `node`."""
        if self.log_data_std is None:
            return data
        share = jax.nn.sigmoid(2 * (node.ell + self.log_data_std))
        return data - share * x / node.alpha

    def linear(self, s: _Node, t: _Node) -> Array:
        """The factor S_t / S_s (times e^{-h} for the SDE) on x_s."""
        h = t.ell - s.ell
        exponent = -(self.rate - 1) * h + self._log_scale(t.ell)
        return t.sigma / s.sigma * jnp.exp(exponent - self._log_scale(s.ell))

    def weights(
        self, s: _Node, t: _Node, nodes: _Node, count: Array, midpoint: bool
    ) -> Array:
        """The weights on the values at `nodes` (the first `count` of them) of the
        integral from s to t of K times their interpolant."""
        h = t.ell - s.ell
        size = nodes.ell.shape[0]
        if self.closed_form:
            us = (nodes.ell - s.ell) / h
            moments = _moments(h, self.rate, size)
            table = [_quadrature(us, moments, n) for n in range(1, size + 1)]
            if midpoint:
                # (1 + 1/(2r)) m0 - 1/(2r) m1 with r = -u_1: weights I_0 (1 -
                # 1/(2u_1)), I_0/(2u_1).
                half = moments[0] / (2 * us[1])
                pair = jnp.stack([moments[0] - half, half])
                table[1] = jnp.concatenate([pair, jnp.zeros(size - 2, us.dtype)])
        else:
            # Gauss-Legendre in ell; the interpolant in the chosen coordinate.
            ells = s.ell + h * (1 + jnp.asarray(_GAUSS_NODES, h.dtype)) / 2
            kernel = self.rate * jnp.exp(
                self.rate * (ells - t.ell)
                + self._log_scale(t.ell)
                - self._log_scale(ells)
            )
            kernel = kernel * jnp.asarray(_GAUSS_WEIGHTS, h.dtype) * h / 2
            origin = self.coordinate(s)
            span = self.coordinate(t) - origin
            if self.interpolation == "time":
                points = (jax.vmap(self.nodes.at)(ells).t - origin) / span
            else:
                points = (ells - origin) / span
            us = (self.coordinate(nodes) - origin) / span
            table = [_lagrange(us, points, kernel, n) for n in range(1, size + 1)]
        return jnp.select([count == n for n in range(1, size + 1)], table)


def _lagrange(us: Array, points: Array, kernel: Array, count: int) -> Array:
    """sum_q kernel_q L_j(points_q) for the Lagrange basis L_j through the first
    `count` of `us`; zero weight on the others."""
    weights = []
    for j in range(count):
        basis = jnp.ones_like(points)
        for m in range(count):
            if m != j:
                basis = basis * (points - us[m]) / (us[j] - us[m])
        weights.append(jnp.sum(kernel * basis))
    padding = [jnp.zeros_like(us[0])] * (us.shape[0] - count)
    return jnp.stack(weights + padding)


def _exponential_step(
    rule: _Rule,
    x: Array,
    s: _Node,
    t: _Node,
    values: Array,
    nodes: _Node,
    count: Array,
    midpoint: bool,
) -> Array:
    r"""$x_t = \frac{S_t}{S_s} x_s + \alpha_t \sum_j w_j r^{(j)}$: the linear part
    exactly, and the interpolated value replaced by its interpolant through the
    first `count` of `values` (at `nodes`), integrated exactly against the
    rule's weight. With `midpoint` and two nodes on the closed form, Lu et al.'s
    midpoint form of 2M instead."""
    weights = rule.weights(s, t, nodes, count, midpoint)
    return rule.linear(s, t) * x + t.alpha * jnp.tensordot(weights, values, axes=1)


# --------------------------------------------------------------------- the core


def _check_arguments(
    path: AbstractGaussianPath | DDPMSchedule,
    num_steps: int,
    order: int,
    orders: tuple[int, ...],
    spacing: str,
    t_min: float,
    t_max: float,
) -> None:
    check_count(num_steps, "num_steps")
    if order not in orders or isinstance(order, bool):
        raise ValueError(
            f"`order` must be one of {', '.join(map(str, orders))}, got {order!r}."
        )
    check_choice(spacing, "spacing", SPACINGS)
    if isinstance(path, DDPMSchedule):
        if (t_min, t_max) != (1e-3, 1.0):
            raise ValueError(
                "`t_min`, `t_max`: on a DDPMSchedule the solver runs from the "
                "schedule's step N (t = 1) to step 1 (t = 1/N); leave them at their "
                f"defaults, got t_min={t_min}, t_max={t_max}."
            )
    else:
        check_time_range(t_min, t_max)


def _check_grid(grid: _Node, path: AbstractGaussianPath | DDPMSchedule) -> _Node:
    """The grid, with an error unless the half log-SNR is finite at both ends
    (alpha(t_max) > 0 and sigma(t_min) > 0)."""
    ends = grid.ell[jnp.array([0, -1])]
    ell = check(
        grid.ell,
        jnp.all(jnp.isfinite(ends)),
        f"`t_max`, `t_min`: {type(path).__name__} needs alpha(t_max) > 0 and "
        "sigma(t_min) > 0 for a finite log-SNR at both ends (paths with "
        "alpha(1) = 0, such as CosinePath and LinearPath, need t_max < 1).",
    )
    return grid._replace(ell=ell)


def _run(
    step,
    carry,
    model: Model,
    reader: _Reader,
    x: Array,
    grid: _Node,
    per_step: tuple,
    *,
    evaluations: int,
    denoise: bool,
    trajectory: bool,
    name: str,
) -> SampleResult:
    """Scan `step(carry, (node_s, node_t, *per_step)) -> (carry, x_s)` over the
    grid (`carry[0]` is the state), then the optional Tweedie step at the last
    node and the finiteness check."""
    check_model(model, x, grid.t[0])
    starts = jax.tree.map(lambda a: a[:-1], grid)
    ends = jax.tree.map(lambda a: a[1:], grid)

    def body(carry, inputs):
        carry, state = step(carry, inputs)
        return carry, state if trajectory else None

    carry, states = jax.lax.scan(body, carry, (starts, ends, *per_step))
    final = carry[0]
    states = None if states is None else jnp.concatenate([states, final[None]])
    if denoise:
        final = reader.data(final, jax.tree.map(lambda a: a[-1], grid))
    return SampleResult(
        sample=check_finite(final, name),
        num_evaluations=num_evaluations(evaluations + int(denoise)),
        trajectory=states,
        times=grid.t if trajectory else None,
    )


def _setup(
    model: Model,
    path: AbstractGaussianPath | DDPMSchedule,
    x: Array,
    num_steps: int,
    spacing: str,
    rho: RealScalarLike,
    t_min: float,
    t_max: float,
    parameterisation: AbstractParameterisation,
) -> tuple[_Reader, _Node]:
    rho = check_positive(rho, "rho").astype(x.dtype)
    nodes = _nodes(path)
    grid = nodes.grid(num_steps, spacing, rho, t_min, t_max, x.dtype)
    grid = _check_grid(grid, path)
    return _Reader(model, nodes, parameterisation), grid


def step_orders(
    order: int, num_steps: int, lower_order_final: bool, corrector: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The order of each multistep step (warm-up from 1 and, with
    `lower_order_final`, down to 1 again over the last steps), and whether each
    step first corrects the one before: always with `corrector`, otherwise where
    that step's order was below `order - 1` (the first step of 3M), so that no
    step has a local error larger than O(h^order)."""
    index = np.arange(num_steps)
    orders = np.minimum(order, index + 1)
    if lower_order_final:
        orders = np.minimum(orders, num_steps - index)
    before = np.concatenate([[0], orders[:-1]])
    corrections = (before > 0) & (corrector | (before < order - 1))
    return orders, corrections


# ------------------------------------------------------------------ public API


def dpm_solver_sample(
    model: Model,
    path: AbstractGaussianPath | DDPMSchedule,
    x: Float[Array, "*shape"],
    *,
    num_steps: int = 10,
    order: int = 3,
    spacing: Spacing = "log_snr",
    rho: RealScalarLike = 7.0,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    parameterisation: AbstractParameterisation = NoisePrediction(),
    denoise: bool = True,
    trajectory: bool = False,
) -> SampleResult:
    r"""DPM-Solver (Lu et al. 2022a, "DPM-Solver: a fast ODE solver for diffusion
    probabilistic model sampling in around 10 steps"): single-step exponential
    integrators of order 1, 2 or 3 for the probability-flow ODE, with the model
    read as noise, on any Gaussian path or on the DDPM schedule.

    With $\ell = \log(\alpha/\sigma)$ the half log-SNR (half of
    [`log_snr`][scorax.AbstractGaussianPath.log_snr]), $h = \ell_t - \ell_s$ and
    $\hat\varepsilon_s = \hat\varepsilon(x_s, s)$, DPM-Solver-1 is

    $$x_t = \frac{\alpha_t}{\alpha_s} x_s - \sigma_t (e^h - 1)\,\hat\varepsilon_s,$$

    which is DDIM with $\eta = 0$. DPM-Solver-2 first takes that step to the node
    $u$ at $\ell_s + h/2$ and then

    $$x_t = \frac{\alpha_t}{\alpha_s} x_s - \sigma_t (e^h - 1)\,\hat\varepsilon_u;$$

    DPM-Solver-3 evaluates at $\ell_s + h/3$ and $\ell_s + 2h/3$ (Algorithm 2 of
    the paper, with $r_1 = 1/3$, $r_2 = 2/3$):

    $$x_t = \frac{\alpha_t}{\alpha_s} x_s - \sigma_t (e^h - 1)\,\hat\varepsilon_s
    - \frac{\sigma_t}{r_2}\left(\frac{e^h - 1}{h} - 1\right)
    (\hat\varepsilon_{s_2} - \hat\varepsilon_s).$$

    Order $k$ has local error $O(h^{k+1})$ and global error $O(h^k)$. The
    intermediate times come from
    [`inverse_log_snr`][scorax.AbstractGaussianPath.inverse_log_snr].

    **The grid** of `num_steps + 1` nodes runs from $t_\text{max}$ to
    $t_\text{min}$, uniform in $\ell$ (`spacing="log_snr"`, the paper's choice),
    uniform in $t$ (`"time"`), uniform in $\sqrt t$ (`"time_quadratic"`, the
    authors' code's option after DDIM's quadratic steps), or with the noise
    levels $e^{-\ell} = \sigma/\alpha$ $\rho$-spaced as in
    [`edm_sample`][scorax.edm_sample] (`"edm"`).

    **On a [`DDPMSchedule`][scorax.DDPMSchedule]** the grid runs from step $N$
    to step 1 with the discrete $\bar\alpha$; with `spacing="time"` its nodes are
    the steps $\tau_k$ of [`ddim_sample`][scorax.ddim_sample] with `num_steps + 1`
    steps, the model is called at $\tau_k / N$ and its output converted to noise on
    [`schedule.path`][scorax.DDPMSchedule.path], so that DPM-Solver-1 with the
    final denoising step is `ddim_sample(..., num_steps=num_steps + 1)` step for
    step (and so is DPM-Solver++ of order 1). Between steps (intermediate stages, other spacings) $\ell$ is
    interpolated linearly in $t$ and $\alpha^2 = 1 - \sigma^2 =
    \operatorname{sigmoid}(2\ell)$.

    **Arguments:**

    - `model`: called as `model(x_t, t)`, predicting `parameterisation`.
    - `path`: the Gaussian path the model was trained on, or a `DDPMSchedule`.
    - `x`: the starting point, a draw from
      [`prior_sample`][scorax.AbstractGaussianPath.prior_sample].
    - `num_steps`: the number of steps, $\ge 1$; default 10.
    - `order`: 1, 2 or 3; default 3.
    - `spacing`: `"log_snr"` (default), `"time"`, `"time_quadratic"` or `"edm"`.
    - `rho`: $\rho > 0$ for `spacing="edm"`; default 7.
    - `t_min`, `t_max`: the time interval, $0 < t_\text{min} < t_\text{max} \le 1$,
      with $\alpha(t_\text{max}) > 0$ (paths with $\alpha(1) = 0$, `CosinePath` and
      `LinearPath`, need $t_\text{max} < 1$). With a `DDPMSchedule`, leave them
      at their defaults: the grid runs over the schedule's own steps.
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `denoise`: finish with Tweedie's posterior mean $\hat x_0 = (x - \sigma
      \hat\varepsilon)/\alpha$ at the last node (one more evaluation).
    - `trajectory`: also return the `num_steps + 1` states on the grid, with
      their times (before the denoising step).

    **Returns:**

    A [`SampleResult`][scorax.SampleResult]; `num_evaluations` $=$ `order`
    $\times$ `num_steps` (+1 with `denoise`).
    """
    _check_arguments(path, num_steps, order, (1, 2, 3), spacing, t_min, t_max)
    reader, grid = _setup(
        model, path, x, num_steps, spacing, rho, t_min, t_max, parameterisation
    )

    def step(carry, inputs):
        (x,) = carry
        s, t = inputs
        return (_single_step(reader, order, x, s, t),), x

    return _run(
        step,
        (x,),
        model,
        reader,
        x,
        grid,
        (),
        evaluations=order * num_steps,
        denoise=denoise,
        trajectory=trajectory,
        name="dpm_solver_sample",
    )


def dpm_solver_pp_sample(
    model: Model,
    path: AbstractGaussianPath | DDPMSchedule,
    x: Float[Array, "*shape"],
    *,
    num_steps: int = 20,
    order: int = 2,
    stochastic: bool = False,
    key: PRNGKeyArray | None = None,
    lower_order_final: bool = True,
    corrector: bool = False,
    spacing: Spacing = "log_snr",
    interpolation: Interpolation = "log_snr",
    data_std: RealScalarLike | None = None,
    rho: RealScalarLike = 7.0,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    parameterisation: AbstractParameterisation = NoisePrediction(),
    denoise: bool = True,
    trajectory: bool = False,
) -> SampleResult:
    r"""DPM-Solver++ (Lu et al. 2022b, "DPM-Solver++: fast solver for guided
    sampling of diffusion probabilistic models"): multistep exponential
    integrators with the model read as data, one model evaluation per step; its
    stochastic variant; and an optional UniC corrector (Zhao et al. 2023,
    "UniPC: a unified predictor-corrector framework for fast sampling of
    diffusion models"). On any Gaussian path or on the DDPM schedule.

    With $\ell = \log(\alpha/\sigma)$ the half log-SNR, $h_i = \ell_i -
    \ell_{i-1}$ and $\hat x_0^{(i)}$ the data prediction at node $i$, the
    first-order step is

    $$x_i = \frac{\sigma_i}{\sigma_{i-1}} x_{i-1} + \alpha_i (1 - e^{-h_i})\,
    \hat x_0^{(i-1)}$$

    (DDIM again). DPM-Solver++(2M) (Algorithm 2 of the paper) replaces
    $\hat x_0^{(i-1)}$ by $(1 + \tfrac{1}{2r_i})\hat x_0^{(i-1)} -
    \tfrac{1}{2r_i}\hat x_0^{(i-2)}$, $r_i = h_{i-1}/h_i$, reusing the previous
    step's evaluation. DPM-Solver++(3M) takes the quadratic through the last three
    data predictions, $\hat x_0^{(i-1)} + D_1 u + D_2 u^2$ in $u = (\ell -
    \ell_{i-1})/h_i$, and integrates it exactly:

    $$x_i = \frac{\sigma_i}{\sigma_{i-1}} x_{i-1} + \alpha_i\left[(1 -
    e^{-h_i})\, \hat x_0^{(i-1)} + I_1 D_1 + I_2 D_2\right], \qquad
    I_k = 1 - \frac{k}{h_i} I_{k-1}, \quad I_0 = 1 - e^{-h_i}.$$

    (Lu et al.'s reference code weighs $D_2$ by $I_2/2$, which makes 3M second
    order.) The first steps warm up with orders $1, 2, \dots$ as in the paper;
    scorax corrects the first-order warm-up step of 3M with UniC (below) at no
    extra evaluation, so that no step has a local error above $O(h^3)$ and 3M
    keeps order 3 globally. With `lower_order_final` (the default, as the
    authors recommend for few steps) the order comes down to 1 again over the
    last `order - 1` steps: steadier at very few steps, at the price of a local
    error $O(h^2)\,|\mathrm{d}\hat x_0/\mathrm{d}\ell|$ at the data end, small
    where the data prediction has settled but enough to cap the asymptotic order
    of 3M at 2; set it to `False` for the full order.

    With `corrector=True`, each step is followed by UniC: the evaluation at the
    new point, which the next step needs anyway, joins the interpolating
    polynomial and the step is taken again from the same starting point, one
    order higher at no extra evaluation (the new evaluation is not repeated at the
    corrected point; the last step is not corrected). scorax integrates the
    interpolant exactly rather than through UniC's $B(h)$ family.

    With `stochastic=True` this is DPM-Solver++(2M) SDE, which integrates the
    linear part of the reverse SDE and its Gaussian noise exactly,

    $$x_i = \frac{\sigma_i}{\sigma_{i-1}} e^{-h_i} x_{i-1} + \alpha_i (1 -
    e^{-2h_i})\, \bar x_0 + \sigma_i \sqrt{1 - e^{-2h_i}}\, z, \qquad
    z \sim \mathcal{N}(0, I),$$

    with $\bar x_0$ the same (midpoint) combination as in 2M; its first-order
    form is DDIM with $\eta = 1$.

    **The residual and its interpolation.** Two options change what the
    multistep steps interpolate, for data far from the regime the data prediction
    suits (it is exact only where $\hat x_0$ stays constant, that is near the
    data end of images). With `data_std` $= \sigma_d$, the data prediction is
    split as $\hat x_0 = c\, x + r$, where $c\, x$, $c = \alpha \sigma_d^2 / S^2$,
    $S^2 = \alpha^2\sigma_d^2 + \sigma^2$, is the posterior mean of $\mathcal{N}(0,
    \sigma_d^2 I)$ data (EDM's $c_\text{skip}$, Karras et al. 2022); that linear part
    is integrated exactly and only the residual $r$ is interpolated:

    $$x_i = \frac{S_i}{S_{i-1}} x_{i-1} + S_i \int_{\ell_{i-1}}^{\ell_i}
    \frac{e^{\ell}}{\sqrt{1 + \sigma_d^2 e^{2\ell}}}\, r\, \mathrm{d}\ell.$$

    It is exact for any step count on $\mathcal{N}(0, \sigma_d^2 I)$ data (where
    $r = 0$), and $\sigma_d = 0$ is DPM-Solver++; choosing the linear part to
    suit the data is the idea of DPM-Solver-v3 (Zheng et al. 2023, "DPM-Solver-v3:
    improved diffusion ODE solver with empirical model statistics"), here with
    the Gaussian's closed form instead of statistics estimated from the model.
    Set it to the data's standard deviation (the root mean square over
    coordinates, as EDM's $\sigma_\text{data}$). With `interpolation="time"`, the
    polynomial through the last values is one in $t$ rather than in $\ell$ (the
    $t$-AB of DEIS, Zhang & Chen 2023, "Fast sampling of diffusion models with
    exponential integrator"). Either way the weights are integrals of
    Lagrange polynomials against the kernel above, with no closed form; scorax
    takes them by 16-point Gauss-Legendre quadrature in $\ell$ (exact to rounding
    on the closed forms, tested), costing no model evaluation. In 2M these use
    the interpolant, not Lu et al.'s midpoint form. UniC adds its value at the
    new node to the same interpolant. On the seeds' mixture (VP path, exact
    score), 3M with UniC, `data_std` set to the data's, interpolation in time
    and the quadratic time grid has a mean pathwise error of about 1e-2 at 10
    evaluations and 1.5e-3 at 20, against 8e-2 and 8e-3 for the best default
    DPM-Solver++ configuration (benchmarks/results/cpu.md).

    The grid (`spacing`, `rho`), the DDPM schedule and the model's
    parameterisation work as for [`dpm_solver_sample`][scorax.dpm_solver_sample].

    **Arguments:**

    - `model`, `path`, `x`, `spacing`, `rho`, `t_min`, `t_max`,
      `parameterisation`, `denoise`, `trajectory`: as for
      [`dpm_solver_sample`][scorax.dpm_solver_sample]; with `corrector=True` the
      trajectory holds the corrected states.
    - `num_steps`: the number of steps, $\ge 1$; default 20.
    - `order`: 1, 2 or 3 (1 or 2 with `stochastic=True`); default 2.
    - `stochastic`: the SDE variant; needs `key`.
    - `key`: a JAX PRNG key, for `stochastic=True`.
    - `corrector`: apply UniC after each step (not with `stochastic=True`).
    - `interpolation`: `"log_snr"` (default, Lu et al.) or `"time"` (DEIS).
    - `data_std`: $\sigma_d \ge 0$, the data's standard deviation, whose
      Gaussian's linear part is integrated exactly; default `None`, the data
      prediction itself (DPM-Solver++). Not with `stochastic=True`.
    - `lower_order_final`: lower the order over the last `order - 1` steps;
      default `True`.

    **Returns:**

    A [`SampleResult`][scorax.SampleResult]; `num_evaluations` $=$ `num_steps`
    (+1 with `denoise`).
    """
    _check_arguments(path, num_steps, order, (1, 2, 3), spacing, t_min, t_max)
    if stochastic and order == 3:
        raise ValueError(
            "`order` must be 1 or 2 with `stochastic=True` (DPM-Solver++(2M) SDE), "
            "got 3."
        )
    if stochastic and key is None:
        raise ValueError("`key` is required when `stochastic=True` (noise is added).")
    if stochastic and corrector:
        raise ValueError(
            "`corrector` must be False with `stochastic=True` (UniC corrects the "
            "deterministic steps only)."
        )
    check_choice(interpolation, "interpolation", INTERPOLATIONS)
    if data_std is not None:
        if stochastic:
            raise ValueError(
                "`data_std` must be None with `stochastic=True` (the SDE variant "
                "integrates the data prediction's linear part only)."
            )
        data_std = check(
            data_std,
            jnp.isfinite(data_std) & (jnp.asarray(data_std) >= 0),
            f"`data_std` must be finite and >= 0, got {data_std}.",
        )
    key = jr.key(0) if key is None else key  # unused without noise
    reader, grid = _setup(
        model, path, x, num_steps, spacing, rho, t_min, t_max, parameterisation
    )
    rule = _Rule(
        reader.nodes,
        None if data_std is None else jnp.log(jnp.asarray(data_std, x.dtype)),
        interpolation,
        2 if stochastic else 1,
    )
    orders, corrections = step_orders(order, num_steps, lower_order_final, corrector)
    keys = jr.split(key, num_steps)
    # Before the first step: a history the warm-up never weighs (its order ignores
    # it), at distinct coordinates (before the grid's start) so that every weight
    # stays finite.
    first = jax.tree.map(lambda a: a[0], grid)
    offsets = jnp.arange(1, 4, dtype=x.dtype)
    history = _History(
        jnp.stack([x, x, x]),
        jax.tree.map(lambda a: jnp.broadcast_to(a, (3,)), first)._replace(
            t=first.t + offsets, ell=first.ell - offsets
        ),
    )
    previous = jax.tree.map(
        lambda a, b: jnp.concatenate([b[None], a[:-2]]),
        grid,
        first._replace(t=first.t + 1, ell=first.ell - 1),
    )

    def join(value: Array, node: _Node, history: _History, size: int) -> _History:
        """`value` at `node`, then the newest `size` of `history`."""
        return _History(
            jnp.concatenate([value[None], history.values[:size]]),
            jax.tree.map(
                lambda a, b: jnp.concatenate([a[None], b[:size]]), node, history.nodes
            ),
        )

    def step(carry, inputs):
        x, history, x_before, count_before = carry
        s, t, before, count, correct, key = inputs
        m0 = reader.data(x, s)
        r0 = rule.residual(m0, x, s)
        if np.any(corrections):
            # UniC: the step into s again, with the value at s (the model
            # evaluated at the predicted x) added to its interpolant, one order
            # higher.
            known = join(r0, s, history, 3)
            corrected = _exponential_step(
                rule,
                x_before,
                before,
                s,
                known.values,
                known.nodes,
                count_before + 1,
                midpoint=False,
            )
            x = jnp.where(correct, corrected, x)
        # The value at s stays the residual at the predicted state, where the
        # model was evaluated (not re-evaluated at the corrected state; moving
        # only its linear part there would leave the residual's own x-dependence
        # behind, which on near-Gaussian data is about -c dx and costs accuracy).
        history = join(r0, s, history, 2)
        x_t = _exponential_step(
            rule, x, s, t, history.values, history.nodes, count, midpoint=True
        )
        if stochastic:
            z = jr.normal(key, x.shape, x.dtype)
            x_t = x_t + t.sigma * jnp.sqrt(-jnp.expm1(-2 * (t.ell - s.ell))) * z
        return (x_t, history, x, count), x

    return _run(
        step,
        (x, history, x, jnp.asarray(0, jnp.int32)),
        model,
        reader,
        x,
        grid,
        (previous, jnp.asarray(orders, jnp.int32), jnp.asarray(corrections), keys),
        evaluations=num_steps,
        denoise=denoise,
        trajectory=trajectory,
        name="dpm_solver_pp_sample",
    )
