r"""Every time and noise-level grid of the samplers.

A grid runs from the noise end to the data end. On a continuous path its points
are times, spaced uniformly in $t$, in $\sqrt t$, in the half log-SNR
$\ell = \log(\alpha/\sigma)$, or with the noise levels $\sigma/\alpha$
$\rho$-spaced as in Karras et al. (2022); on the discrete DDPM schedule they are
the schedule's own steps.
"""

import abc
from typing import get_args, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._checks import check_log_snr_ends
from .._path import AbstractGaussianPath, DDPMSchedule


Spacing = Literal["log_snr", "time", "time_quadratic", "edm"]
SPACINGS: tuple[str, ...] = get_args(Spacing)


def uniform_times(
    t_max: float, t_min: float, num_steps: int, dtype
) -> Float[Array, " levels"]:
    """`num_steps + 1` evenly spaced times from `t_max` down to `t_min`."""
    return jnp.linspace(t_max, t_min, num_steps + 1, dtype=dtype)


def quadratic_times(start: Array, end: Array, num_steps: int) -> Array:
    """`num_steps + 1` times from `start` down to `end`, uniform in sqrt(t) (Lu et
    al.'s "time_quadratic", after DDIM's quadratic step choice), with the ends
    exactly where asked."""
    times = jnp.linspace(jnp.sqrt(start), jnp.sqrt(end), num_steps + 1) ** 2
    return times.at[0].set(start).at[-1].set(end)


def rho_interpolate(start: Array, end: Array, fraction: Array, rho: Array) -> Array:
    r"""Karras et al.'s $\rho$-spacing: $(a^{1/\rho} + f (b^{1/\rho} -
    a^{1/\rho}))^\rho$ between levels $a$ = `start` and $b$ = `end` at the
    `fraction`s $f \in [0, 1]$ (which may be traced)."""
    first, last = start ** (1 / rho), end ** (1 / rho)
    return (first + fraction * (last - first)) ** rho


def rho_levels(
    level_max: Array, level_min: Array, num_levels: int, rho: Array
) -> Float[Array, " levels"]:
    r"""Karras et al.'s levels $(\sigma_\text{max}^{1/\rho} + \frac{i}{N-1}
    (\sigma_\text{min}^{1/\rho} - \sigma_\text{max}^{1/\rho}))^\rho$ for
    $i < N$ = `num_levels`, then 0."""
    fraction = jnp.linspace(0, 1, num_levels, dtype=level_max.dtype)
    levels = rho_interpolate(level_max, level_min, fraction, rho)
    # The first level exactly `level_max`, whatever the rounding of the powers.
    levels = levels.at[0].set(level_max)
    return jnp.concatenate([levels, jnp.zeros((1,), level_max.dtype)])


def ddim_steps(num_total: int, num_steps: int) -> Int[np.ndarray, " num_steps"]:
    """`num_steps` distinct schedule steps from N down to 1, evenly spaced."""
    return np.round(np.linspace(num_total, 1, num_steps)).astype(int)


def _ells(start: Array, end: Array, num_steps: int, spacing: str, rho: Array) -> Array:
    """`num_steps + 1` half log-SNRs from `start` up to `end`: uniform in ell, or
    rho-spaced in the noise level exp(-ell)."""
    if spacing == "log_snr":
        return jnp.linspace(start, end, num_steps + 1)
    levels = rho_levels(jnp.exp(-start), jnp.exp(-end), num_steps + 1, rho)[:-1]
    return -jnp.log(levels)


class Node(NamedTuple):
    """One point of a grid (or a stacked grid): the model's time, the path's
    scales there and the half log-SNR ell = log(alpha / sigma)."""

    t: Array
    alpha: Array
    sigma: Array
    ell: Array


class AbstractNodes(eqx.Module):
    """Where the exponential integrators read alpha, sigma and the model's time:
    a continuous path or the discrete DDPM schedule."""

    @abc.abstractmethod
    def model_path(self) -> AbstractGaussianPath:
        """The path on which the model's outputs are converted."""

    @abc.abstractmethod
    def at(self, ell: Array) -> Node:
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
    ) -> Node:
        """`num_steps + 1` nodes from the noise end to the data end."""


class PathNodes(AbstractNodes):
    """Nodes of a continuous Gaussian path, from its closed forms alone."""

    path: AbstractGaussianPath

    def model_path(self) -> AbstractGaussianPath:
        return self.path

    def at_time(self, t: Array) -> Node:
        alpha, sigma = self.path.alpha(t), self.path.sigma(t)
        return Node(t, alpha, sigma, self.path.log_snr(t) / 2)

    def at(self, ell: Array) -> Node:
        return self.at_time(self.path.inverse_log_snr(2 * ell))

    def grid(self, num_steps, spacing, rho, t_min, t_max, dtype) -> Node:
        start, end = jnp.asarray(t_max, dtype), jnp.asarray(t_min, dtype)
        if spacing == "time":
            times = jnp.linspace(start, end, num_steps + 1)
        elif spacing == "time_quadratic":
            times = quadratic_times(start, end, num_steps)
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
        nodes = jax.vmap(self.at_time)(times)
        ends = nodes.ell[jnp.array([0, -1])]
        ell = check_log_snr_ends(nodes.ell, ends, self.path, t_max, t_min)
        return nodes._replace(ell=ell)


class ScheduleNodes(AbstractNodes):
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

    def _at_steps(self, steps: np.ndarray, dtype) -> Node:
        cumprod = self.schedule.alphas_cumprod.astype(dtype)[steps - 1]
        return Node(
            jnp.asarray(steps / self.schedule.num_steps, dtype),
            jnp.sqrt(cumprod),
            jnp.sqrt(1 - cumprod),
            (jnp.log(cumprod) - jnp.log1p(-cumprod)) / 2,
        )

    def at(self, ell: Array) -> Node:
        ells = self._step_ells(ell.dtype)
        times = self.schedule.times.astype(ell.dtype)
        t = jnp.interp(ell, ells[::-1], times[::-1])
        return Node(
            t,
            jnp.sqrt(jax.nn.sigmoid(2 * ell)),
            jnp.sqrt(jax.nn.sigmoid(-2 * ell)),
            ell,
        )

    def grid(self, num_steps, spacing, rho, t_min, t_max, dtype) -> Node:
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
            times = quadratic_times(ends.t[0], ends.t[1], num_steps)
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


def nodes_of(path: AbstractGaussianPath | DDPMSchedule) -> AbstractNodes:
    """The nodes of a continuous path or of the DDPM schedule."""
    if isinstance(path, DDPMSchedule):
        return ScheduleNodes(path)
    return PathNodes(path)
