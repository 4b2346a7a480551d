r"""EDM's preconditioning of a network's input and noise input, on any path."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from .._checks import check_positive
from .._custom_types import RealScalarLike
from .._parameterisation import EDMPrediction
from .._path import AbstractGaussianPath


class Preconditioned(eqx.Module):
    r"""A network wrapped in EDM's input and noise-input scalings (Karras et al.
    2022, Table 1), on any Gaussian path; read its output with
    [`EDMPrediction`][scorax.EDMPrediction] (its `parameterisation`).

    With $\tilde x = x_t / \alpha(t)$ and $\tilde\sigma = \sigma(t) / \alpha(t)$,
    the network $F_\theta$ is called as

    $$F_\theta\big(c_\text{in}\, \tilde x,\ c_\text{noise}\big), \qquad
    c_\text{in} = \frac{1}{\sqrt{\tilde\sigma^2 + \sigma_d^2}}, \qquad
    c_\text{noise} = \tfrac14 \ln \tilde\sigma = -\tfrac18 \lambda(t),$$

    so its input has unit variance at every noise level for data of standard
    deviation $\sigma_d$, and its noise input is a quarter of the log noise
    level, whatever the path ($\lambda$ is the log-SNR). Computed as $c_\text{in}
    \tilde x = x_t / \sqrt{\sigma^2 + \alpha^2 \sigma_d^2}$, which stays finite
    where $\alpha = 0$. The denoiser is then $c_\text{skip} \tilde x +
    c_\text{out} F_\theta$ (see `EDMPrediction`).

    Calling `model(x, t)` (or `model(x, t, y)` for a class-conditional network,
    the label passed through) returns $F_\theta$, so the wrapper is a scorax model
    like any other: pass `parameterisation=model.parameterisation` to
    [`diffusion_loss`][scorax.diffusion_loss], the samplers and the likelihood.

    **Arguments:**

    - `network`: any model called as `network(x, noise)` or `network(x, noise,
      y)` with `x` shaped like the data, e.g. [`ScoreMLP`][scorax.ScoreMLP] or
      [`UNet`][scorax.UNet] (their time input receives $c_\text{noise}$).
    - `path`: the Gaussian path.
    - `sigma_data`: $\sigma_d > 0$, the data's standard deviation; default 0.5.
    """

    network: Callable[..., Array]
    path: AbstractGaussianPath
    sigma_data: RealScalarLike = 0.5

    def __check_init__(self):
        check_positive(self.sigma_data, "sigma_data")

    @property
    def parameterisation(self) -> EDMPrediction:
        """`EDMPrediction(sigma_data)`, how the output is read."""
        return EDMPrediction(self.sigma_data)

    @property
    def num_classes(self) -> Any:
        """The network's number of classes (`None` if unconditional)."""
        return getattr(self.network, "num_classes", None)

    def inputs(
        self, x: Float[Array, "*shape"], t: RealScalarLike
    ) -> tuple[Float[Array, "*shape"], Float[Array, ""]]:
        r"""The network's inputs at `(x, t)`: $c_\text{in} \tilde x$ and
        $c_\text{noise}$."""
        t = jnp.asarray(t, x.dtype)
        alpha, sigma = self.path.alpha(t), self.path.sigma(t)
        sigma_d = jnp.asarray(self.sigma_data, x.dtype)
        scaled = x / jnp.sqrt(sigma**2 + (alpha * sigma_d) ** 2)
        return scaled.astype(x.dtype), (-self.path.log_snr(t) / 8).astype(x.dtype)

    def __call__(
        self,
        x: Float[Array, "*shape"],
        t: RealScalarLike,
        y: Int[ArrayLike, ""] | None = None,
    ) -> Float[Array, "*shape"]:
        """$F_\\theta$ at the scaled inputs of `(x, t)`, given the label `y` for a
        class-conditional network."""
        scaled, noise = self.inputs(x, t)
        if y is None:
            return self.network(scaled, noise)
        return self.network(scaled, noise, y)
