r"""What a network predicts, and the exact conversions between the choices."""

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._checks import check, check_positive, check_time
from ._custom_types import FloatScalar, RealScalarLike
from ._path import AbstractGaussianPath


class AbstractParameterisation(eqx.Module):
    r"""What a model $m(x_t, t)$ predicts on a Gaussian path.

    On a path $x_t = \alpha(t) x_0 + \sigma(t)\varepsilon$, every parameterisation
    here is an affine function of the noise given $x_t$:

    $$\varepsilon = a(t)\, x_t + b(t)\, m(x_t, t),$$

    with $b(t) \neq 0$. That one fact makes every conversion exact and generic; see
    [`convert`][scorax.convert].
    """

    @abc.abstractmethod
    def noise_coefficients(
        self, path: AbstractGaussianPath, t: RealScalarLike
    ) -> tuple[FloatScalar, FloatScalar]:
        r"""The pair $(a(t), b(t))$ with $\varepsilon = a(t) x_t + b(t) m(x_t, t)$."""


class ScorePrediction(AbstractParameterisation):
    r"""The model predicts the score $\nabla_x \log p_t(x)$ (Song & Ermon 2019).

    Since the conditional score is $-\varepsilon / \sigma(t)$:
    $\varepsilon = -\sigma(t)\, s$.
    """

    def noise_coefficients(
        self, path: AbstractGaussianPath, t: RealScalarLike
    ) -> tuple[FloatScalar, FloatScalar]:
        sigma = path.sigma(t)
        return jnp.zeros_like(sigma), -sigma


class NoisePrediction(AbstractParameterisation):
    r"""The model predicts the noise $\varepsilon$ (Ho et al. 2020):
    $\hat\varepsilon$, with score $-\hat\varepsilon / \sigma(t)$."""

    def noise_coefficients(
        self, path: AbstractGaussianPath, t: RealScalarLike
    ) -> tuple[FloatScalar, FloatScalar]:
        sigma = path.sigma(t)
        return jnp.zeros_like(sigma), jnp.ones_like(sigma)


class DataPrediction(AbstractParameterisation):
    r"""The model predicts the clean data $\hat x_0$, a denoiser (Karras et al. 2022).

    $\varepsilon = (x_t - \alpha(t) \hat x_0) / \sigma(t)$. The exact posterior mean
    $\mathbb{E}[x_0 \mid x_t]$ is this parameterisation of the true score
    (Tweedie's formula).
    """

    def noise_coefficients(
        self, path: AbstractGaussianPath, t: RealScalarLike
    ) -> tuple[FloatScalar, FloatScalar]:
        sigma = path.sigma(t)
        return 1 / sigma, -path.alpha(t) / sigma


class VelocityPrediction(AbstractParameterisation):
    r"""The model predicts the velocity $u = \alpha'(t) x_0 + \sigma'(t) \varepsilon$,
    the time derivative of the path (flow matching: Lipman et al. 2022; Liu et al.
    2022).

    Eliminating $x_0$ gives $u = f(t)\, x_t + c(t)\, \varepsilon$ with
    $f = \alpha'/\alpha$ and $c = \sigma' - f \sigma$. The velocity of the true
    score is the probability-flow ODE's drift, $f x - \tfrac12 g^2 \nabla \log p_t$.
    On the trigonometric path (`CosinePath(s=0)`) $u = \tfrac{\pi}{2} v$, where
    $v = \alpha\varepsilon - \sigma x_0$ is the "v-prediction" of Salimans & Ho
    (2022).
    """

    def noise_coefficients(
        self, path: AbstractGaussianPath, t: RealScalarLike
    ) -> tuple[FloatScalar, FloatScalar]:
        f = path.alpha_derivative(t) / path.alpha(t)
        c = path.sigma_derivative(t) - f * path.sigma(t)
        return -f / c, 1 / c


class EDMPrediction(AbstractParameterisation):
    r"""The model's output $F$ is read through EDM's preconditioning (Karras et
    al. 2022, "Elucidating the design space of diffusion-based generative
    models", Table 1), on any Gaussian path.

    With the scaled input $\tilde x = x_t / \alpha(t)$ and noise level
    $\tilde\sigma = \sigma(t) / \alpha(t)$ (so that $\tilde x = x_0 +
    \tilde\sigma \varepsilon$, EDM's variance-exploding form of any path),
    the denoiser is

    $$\hat x_0 = c_\text{skip}\, \tilde x + c_\text{out}\, F, \qquad
    c_\text{skip} = \frac{\sigma_d^2}{\tilde\sigma^2 + \sigma_d^2}, \qquad
    c_\text{out} = \frac{\tilde\sigma\, \sigma_d}{\sqrt{\tilde\sigma^2 +
    \sigma_d^2}},$$

    with $\sigma_d$ the data's standard deviation (`sigma_data`). Then the
    training target of $F$, $(x_0 - c_\text{skip} \tilde x) / c_\text{out}$,
    has unit variance at every noise level for data of standard deviation
    $\sigma_d$. In the noise form, with $S = \sqrt{\sigma^2 + \alpha^2
    \sigma_d^2}$,

    $$\varepsilon = \frac{\sigma}{S^2}\, x_t - \frac{\alpha\,\sigma_d}{S}\,
    F,$$

    finite at every time where $S > 0$ (at $t = 0$ too, where $\sigma = 0$, and at
    $\alpha = 0$). Pair it with [`Preconditioned`][scorax.Preconditioned], which
    scales the network's input and noise input to match; on
    [`EDMPath`][scorax.EDMPath] ($\alpha = 1$) this is EDM's and k-diffusion's
    `Denoiser` exactly.

    **Arguments:**

    - `sigma_data`: $\sigma_d > 0$; default 0.5, EDM's value for images scaled
      to $[-1, 1]$.
    """

    sigma_data: RealScalarLike = 0.5

    def __check_init__(self):
        check_positive(self.sigma_data, "sigma_data")

    def scalings(
        self, path: AbstractGaussianPath, t: RealScalarLike
    ) -> tuple[FloatScalar, FloatScalar]:
        r"""$(c_\text{skip}, c_\text{out})$ at time $t$, as functions of
        $\tilde\sigma = \sigma/\alpha$: the denoiser is $c_\text{skip}\, x_t /
        \alpha + c_\text{out}\, F$."""
        alpha, sigma = path.alpha(t), path.sigma(t)
        sigma_d = jnp.asarray(self.sigma_data, sigma.dtype)
        spread = jnp.sqrt(sigma**2 + (alpha * sigma_d) ** 2)  # alpha sqrt(s~^2 + sd^2)
        return (alpha * sigma_d) ** 2 / spread**2, sigma * sigma_d / spread

    def noise_coefficients(
        self, path: AbstractGaussianPath, t: RealScalarLike
    ) -> tuple[FloatScalar, FloatScalar]:
        alpha, sigma = path.alpha(t), path.sigma(t)
        sigma_d = jnp.asarray(self.sigma_data, sigma.dtype)
        squared = sigma**2 + (alpha * sigma_d) ** 2
        return sigma / squared, -alpha * sigma_d / jnp.sqrt(squared)


def convert(
    path: AbstractGaussianPath,
    value: Float[Array, "*shape"],
    x_t: Float[Array, "*shape"],
    t: RealScalarLike,
    *,
    source: AbstractParameterisation,
    target: AbstractParameterisation,
) -> Float[Array, "*shape"]:
    r"""Convert a model output from one parameterisation to another.

    With $\varepsilon = a_s x_t + b_s m_s$ and $\varepsilon = a_t x_t + b_t m_t$
    (see [`AbstractParameterisation`][scorax.AbstractParameterisation]),

    $$m_t = \frac{(a_s - a_t)\, x_t + b_s\, m_s}{b_t}.$$

    The map is exact and affine, so it commutes with expectations: converting the
    true score gives the true posterior mean of each target.

    **Arguments:**

    - `path`: the Gaussian path the model lives on.
    - `value`: the model output, in the `source` parameterisation.
    - `x_t`: the noisy input the model saw.
    - `t`: the time, in $[0, 1]$.
    - `source`, `target`: instances such as `scorax.NoisePrediction()`.

    **Returns:**

    The same prediction in the `target` parameterisation.

    Conversions are singular where $\sigma(t) = 0$ or $\alpha(t) = 0$ if the
    parameterisations involved divide by them (for example `DataPrediction` at
    $t = 0$ of a path with $\sigma(0) = 0$); there an error is raised.

    !!! example

        ```python
        path = scorax.VPPath()
        score = scorax.convert(
            path, eps_hat, x_t, t,
            source=scorax.NoisePrediction(), target=scorax.ScorePrediction(),
        )
        ```
    """
    t = check_time(t)
    a_source, b_source = source.noise_coefficients(path, t)
    a_target, b_target = target.noise_coefficients(path, t)
    coefficients = jnp.stack([a_source, b_source, a_target, b_target])
    ok = jnp.all(jnp.isfinite(coefficients)) & (b_source != 0) & (b_target != 0)
    coefficients = check(
        coefficients,
        ok,
        f"`t`: converting {type(source).__name__} to {type(target).__name__} on "
        f"{type(path).__name__} is singular at this t (sigma(t) = 0 or alpha(t) = 0); "
        "use a t strictly inside the path's domain.",
    )
    a_source, b_source, a_target, b_target = coefficients
    return ((a_source - a_target) / b_target) * x_t + (b_source / b_target) * value
