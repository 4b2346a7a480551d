r"""The consistency function's parameterisation (Song et al. 2023), on any path."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from .._checks import check_boundary_time, check_positive
from .._custom_types import FloatScalar, RealScalarLike
from .._path import AbstractGaussianPath
from ._preconditioned import Preconditioned


def consistency_scalings(
    path: AbstractGaussianPath,
    t: RealScalarLike,
    *,
    t_min: RealScalarLike,
    sigma_data: RealScalarLike,
) -> tuple[FloatScalar, FloatScalar]:
    r"""$(a, b)$ with $f(x, t) = a\, x + b\, F$: the consistency scalings of
    Song et al. (2023, Appendix C) in the noise level $\tilde\sigma = \sigma/\alpha$,
    carried to $x_t$ and back to $x_{t_\text{min}}$ (see
    [`ConsistencyModel`][scorax.ConsistencyModel]). At $t = t_\text{min}$ (in
    the dtype of `t`), $a = 1$ and $b = 0$ exactly."""
    t = jnp.asarray(t)
    t_min = jnp.asarray(t_min, t.dtype)
    alpha, alpha_min = path.alpha(t), path.alpha(t_min)
    level, level_min = path.noise_to_signal(t), path.noise_to_signal(t_min)
    sigma_d = jnp.asarray(sigma_data, level.dtype)
    above = level - level_min
    c_skip = sigma_d**2 / (above**2 + sigma_d**2)
    c_out = sigma_d * above / jnp.sqrt(sigma_d**2 + level**2)
    # At t_min itself, exactly (1, 0): the two alphas may be computed differently
    # (one folded into a constant by XLA, say), so their ratio need not round to 1.
    at_boundary = t == t_min
    a = jnp.where(at_boundary, 1, alpha_min / alpha * c_skip)
    return a, jnp.where(at_boundary, 0, alpha_min * c_out)


class ConsistencyModel(eqx.Module):
    r"""A network read as a consistency function (Song et al. 2023, "Consistency
    models", eq. 3 and Appendix C), on any Gaussian path: a model whose output
    $f_\theta(x_t, t)$ estimates the point $x_{t_\text{min}}$ that the
    probability-flow ODE carries $x_t$ to.

    With the scaled variable $\tilde x = x_t / \alpha(t)$ and noise level
    $\tilde\sigma = \sigma(t)/\alpha(t)$ (EDM's variance-exploding form of any
    path, as in [`Preconditioned`][scorax.Preconditioned]) and $\tilde\sigma_\text{min} = \tilde\sigma(t_\text{min})$,

    $$f_\theta(x_t, t) = \alpha(t_\text{min})\Big(c_\text{skip}(t)\, \tilde x +
    c_\text{out}(t)\, F_\theta\big(c_\text{in}\tilde x, c_\text{noise}\big)\Big),
    \qquad c_\text{skip} = \frac{\sigma_d^2}{(\tilde\sigma - \tilde\sigma_\text{min})^2
    + \sigma_d^2}, \qquad c_\text{out} = \frac{\sigma_d (\tilde\sigma -
    \tilde\sigma_\text{min})}{\sqrt{\sigma_d^2 + \tilde\sigma^2}},$$

    with EDM's $c_\text{in}$ and $c_\text{noise}$. At $t = t_\text{min}$,
    $c_\text{skip} = 1$ and $c_\text{out} = 0$, so the boundary condition
    $f_\theta(x, t_\text{min}) = x$ holds exactly, bit for bit, whatever the
    network (with finite outputs). On [`EDMPath`][scorax.EDMPath] ($\alpha = 1$,
    $\tilde\sigma = t$ in the paper's units) this is the paper's parameterisation.

    **Arguments:**

    - `network`: any model called as `network(x, noise)` or `network(x, noise,
      y)`, such as [`ScoreMLP`][scorax.ScoreMLP] or [`UNet`][scorax.UNet].
    - `path`: the Gaussian path.
    - `sigma_data`: $\sigma_d > 0$; default 0.5.
    - `t_min`: $t_\text{min} \in (0, 1)$, the time of the boundary; default
      $10^{-3}$ (on `EDMPath`, $\tilde\sigma_\text{min} = 0.08$ then; the
      paper's 0.002 is `t_min=2e-5`).
    """

    network: Callable[..., Array]
    path: AbstractGaussianPath
    sigma_data: RealScalarLike = 0.5
    t_min: float = eqx.field(static=True, default=1e-3, converter=float)

    def __check_init__(self):
        check_positive(self.sigma_data, "sigma_data")
        check_boundary_time(self.t_min)

    @property
    def num_classes(self) -> Any:
        """The network's number of classes (`None` if unconditional)."""
        return getattr(self.network, "num_classes", None)

    def __call__(
        self,
        x: Float[Array, "*shape"],
        t: RealScalarLike,
        y: Int[ArrayLike, ""] | None = None,
    ) -> Float[Array, "*shape"]:
        """$f_\\theta(x, t)$, given the label `y` for a class-conditional network."""
        t = jnp.asarray(t, x.dtype)
        inner = Preconditioned(self.network, self.path, self.sigma_data)
        output = inner(x, t) if y is None else inner(x, t, y)
        a, b = consistency_scalings(
            self.path, t, t_min=self.t_min, sigma_data=self.sigma_data
        )
        return (a * x + b * output).astype(x.dtype)
