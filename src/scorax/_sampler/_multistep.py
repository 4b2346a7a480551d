r"""Multistep exponential steps: the history of interpolated values, the order
of each step, and the weights of a step, the exact integral of the polynomial
through the last values (data predictions, or their residuals after a
Gaussian's linear part) against the step's exponential kernel, in closed form
(Lu et al. 2022b) or by Gauss-Legendre quadrature. What DPM-Solver++ and any
other multistep exponential integrator (UniPC, DEIS) build on."""

from typing import get_args, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._grid import AbstractNodes, Node


Interpolation = Literal["log_snr", "time"]
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)
# Gauss-Legendre nodes and weights on [-1, 1] for the weights that have no closed
# form (interpolation in time, or a data standard deviation): 16 nodes integrate
# the smooth integrands of a step to rounding in float64 (tested against the
# closed forms).
_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(16)


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


class History(NamedTuple):
    """The last interpolated values (data predictions or their residuals), newest
    first, and their nodes."""

    values: Array  # (3, *shape)
    nodes: Node  # of (3,) arrays


def join(value: Array, node: Node, history: History, size: int) -> History:
    """`value` at `node`, then the newest `size` of `history`."""
    return History(
        jnp.concatenate([value[None], history.values[:size]]),
        jax.tree.map(
            lambda a, b: jnp.concatenate([a[None], b[:size]]), node, history.nodes
        ),
    )


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


class Rule(eqx.Module):
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

    nodes: AbstractNodes
    log_data_std: Array | None
    interpolation: str = eqx.field(static=True)
    rate: int = eqx.field(static=True)

    @property
    def closed_form(self) -> bool:
        """Whether the weights have the closed form of Lu et al. (data prediction
        interpolated in ell)."""
        return self.log_data_std is None and self.interpolation == "log_snr"

    def coordinate(self, node: Node) -> Array:
        return node.t if self.interpolation == "time" else node.ell

    def _log_scale(self, ell: Array) -> Array:
        """log(S / sigma) = log(1 + sigma_d^2 e^{2 ell}) / 2."""
        if self.log_data_std is None:
            return jnp.zeros_like(ell)
        return jnp.logaddexp(0, 2 * (ell + self.log_data_std)) / 2

    def residual(self, data: Array, x: Array, node: Node) -> Array:
        """The interpolated value r = x0_hat - c x at `node`."""
        if self.log_data_std is None:
            return data
        share = jax.nn.sigmoid(2 * (node.ell + self.log_data_std))
        return data - share * x / node.alpha

    def linear(self, s: Node, t: Node) -> Array:
        """The factor S_t / S_s (times e^{-h} for the SDE) on x_s."""
        h = t.ell - s.ell
        exponent = -(self.rate - 1) * h + self._log_scale(t.ell)
        return t.sigma / s.sigma * jnp.exp(exponent - self._log_scale(s.ell))

    def weights(
        self, s: Node, t: Node, nodes: Node, count: Array, midpoint: bool
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


def exponential_step(
    rule: Rule,
    x: Array,
    s: Node,
    t: Node,
    values: Array,
    nodes: Node,
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
