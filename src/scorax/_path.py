"""Gaussian probability paths $x_t = \\alpha(t) x_0 + \\sigma(t) \\varepsilon$."""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, DTypeLike, Float, PRNGKeyArray

from ._checks import (
    check,
    check_count,
    check_positive,
    check_time,
    is_concrete,
    to_count,
)
from ._custom_types import FloatScalar, IntScalarLike, RealScalarLike


def _as_float(t: RealScalarLike) -> FloatScalar:
    """`t` as a floating array; Python numbers stay weakly typed (no promotion)."""
    t = jnp.asarray(t)
    return t if jnp.issubdtype(t.dtype, jnp.floating) else t + 0.0


# Where a path has alpha(1) = 0, its SDE and log-SNR diverge at t = 1: samplers
# and the consistency losses start from this time instead.
T_MAX_ALPHA_ZERO = 0.99


def default_t_max(path: "AbstractGaussianPath") -> float:
    """The latest time a sampler starts from on `path`: 1, or `T_MAX_ALPHA_ZERO`
    where alpha(1) = 0 (`CosinePath`, `LinearPath`)."""
    alpha_one = path.alpha(1.0)
    vanishes = is_concrete(alpha_one) and not float(alpha_one) > 0
    return T_MAX_ALPHA_ZERO if vanishes else 1.0


def _ordered(low: RealScalarLike, high: RealScalarLike, low_name: str, high_name: str):
    check_positive(low, low_name)
    check_positive(high, high_name)
    if is_concrete(low, high) and not low < high:
        raise ValueError(
            f"`{low_name}` must be smaller than `{high_name}`, got "
            f"{low_name}={low} and {high_name}={high}."
        )


def isotropic_gaussian_log_prob(
    x: Float[Array, "*shape"], sigma: FloatScalar
) -> FloatScalar:
    r"""$\log \mathcal{N}(x; 0, \sigma^2 I)$, summed over all entries of `x`."""
    return -0.5 * (jnp.sum((x / sigma) ** 2) + x.size * jnp.log(2 * jnp.pi * sigma**2))


class AbstractGaussianPath(eqx.Module):
    r"""A Gaussian probability path between data ($t = 0$) and noise ($t = 1$).

    Given a data point $x_0$, the path is the conditional distribution

    $$x_t = \alpha(t)\, x_0 + \sigma(t)\, \varepsilon, \qquad
    \varepsilon \sim \mathcal{N}(0, I), \qquad t \in [0, 1].$$

    Equivalently, it is the marginal of the linear forward SDE

    $$\mathrm{d}x = f(t)\, x\, \mathrm{d}t + g(t)\, \mathrm{d}w, \qquad
    f = \frac{\alpha'}{\alpha}, \qquad
    g^2 = \frac{\mathrm{d}\sigma^2}{\mathrm{d}t} - 2 f \sigma^2$$

    (Song et al. 2021, "Score-based generative modeling through stochastic
    differential equations").

    A subclass supplies $\alpha$, $\sigma$, their time derivatives, $g^2$ and the
    inverse of the log signal-to-noise ratio, all in closed form. Everything else
    (sampling, the conditional score, the SDE, the prior, conversions between
    parameterisations) is written once here in terms of those.

    Methods take one scalar time; use `jax.vmap` for many. The closed-form
    primitives (`alpha`, `sigma`, their derivatives, `diffusion_squared`,
    `log_snr`) evaluate their formula for any `t`, with no range check, so they
    stay cheap inside solvers; every method built on them (`sample`,
    `conditional_score`, `drift`, `diffusion`, [`convert`][scorax.convert],
    [`GaussianMixture.marginal`][scorax.GaussianMixture.marginal]) checks that
    $t \in [0, 1]$.
    """

    @abc.abstractmethod
    def alpha(self, t: RealScalarLike) -> FloatScalar:
        r"""The signal scale $\alpha(t)$."""

    @abc.abstractmethod
    def sigma(self, t: RealScalarLike) -> FloatScalar:
        r"""The noise scale $\sigma(t)$."""

    @abc.abstractmethod
    def alpha_derivative(self, t: RealScalarLike) -> FloatScalar:
        r"""The time derivative $\alpha'(t) = \mathrm{d}\alpha / \mathrm{d}t$."""

    @abc.abstractmethod
    def sigma_derivative(self, t: RealScalarLike) -> FloatScalar:
        r"""The time derivative $\sigma'(t) = \mathrm{d}\sigma / \mathrm{d}t$."""

    @abc.abstractmethod
    def diffusion_squared(self, t: RealScalarLike) -> FloatScalar:
        r"""The squared diffusion coefficient $g(t)^2$ of the forward SDE."""

    @abc.abstractmethod
    def _inverse_log_snr(self, log_snr: RealScalarLike) -> FloatScalar:
        """The closed-form inverse of `log_snr`, before clipping to [0, 1]."""

    def inverse_log_snr(self, log_snr: RealScalarLike) -> FloatScalar:
        r"""The time $t \in [0, 1]$ at which
        [`log_snr`][scorax.AbstractGaussianPath.log_snr] equals the given value, in
        closed form.

        Values outside the path's range $[\lambda(1), \lambda(0)]$ map to the
        nearer endpoint, so rounding at the ends never produces a time outside
        $[0, 1]$.
        """
        return jnp.clip(self._inverse_log_snr(log_snr), 0, 1)

    def log_snr(self, t: RealScalarLike) -> FloatScalar:
        r"""The log signal-to-noise ratio $\lambda(t) = \log \alpha(t)^2 / \sigma(t)^2$.

        It decreases from $+\infty$ (or a large value) at $t = 0$ to its smallest
        value at $t = 1$; it is $\pm\infty$ where $\sigma$ or $\alpha$ vanishes.
        """
        return 2 * (jnp.log(self.alpha(t)) - jnp.log(self.sigma(t)))

    def noise_to_signal(self, t: RealScalarLike) -> FloatScalar:
        r"""The noise-to-signal ratio $\sigma(t) / \alpha(t) = e^{-\lambda(t)/2}$.

        It is the noise level of the rescaled variable $x_t / \alpha(t) = x_0 +
        (\sigma / \alpha)\, \varepsilon$ (the $\sigma$ of Karras et al. 2022), so
        it measures how noisy $x_t$ is in the same units on every path: $0$ at the
        data (where $\sigma(0) = 0$), $+\infty$ where $\alpha$ vanishes.
        """
        return self.sigma(t) / self.alpha(t)

    def inverse_noise_to_signal(self, ratio: RealScalarLike) -> FloatScalar:
        r"""The time $t \in [0, 1]$ at which
        [`noise_to_signal`][scorax.AbstractGaussianPath.noise_to_signal] equals
        `ratio` $> 0$, in closed form:
        [`inverse_log_snr`][scorax.AbstractGaussianPath.inverse_log_snr]$(-2 \log
        \text{ratio})$. Ratios outside the path's range map to the nearer endpoint.
        """
        return self.inverse_log_snr(-2 * jnp.log(_as_float(ratio)))

    def transition(
        self, s: RealScalarLike, t: RealScalarLike
    ) -> tuple[FloatScalar, FloatScalar]:
        r"""The Gaussian transition from time $s$ to a later time $t \ge s$: the pair
        $(a, b)$ with $x_t \mid x_s \sim \mathcal{N}(a\, x_s, b^2 I)$,

        $$a = \frac{\alpha(t)}{\alpha(s)}, \qquad b = \sigma(t)
        \sqrt{1 - e^{\lambda(t) - \lambda(s)}},$$

        so that $a^2 \sigma(s)^2 + b^2 = \sigma(t)^2$: the forward process run on
        from $s$ keeps the marginals of the path (Kingma et al. 2021, "Variational
        diffusion models", eq. 7). Composing the transitions $s \to u \to t$ gives
        that of $s \to t$ (Chapman–Kolmogorov). It is what re-noises a sample at
        $s$ to $t$, as multistep consistency sampling does; $b$ is computed with
        `expm1`, accurate for $t$ near $s$, and $b = \sigma(t)$ where $\sigma(s)
        = 0$.
        """
        s, t = _as_float(s), _as_float(t)
        a = self.alpha(t) / self.alpha(s)
        b = self.sigma(t) * jnp.sqrt(-jnp.expm1(self.log_snr(t) - self.log_snr(s)))
        return a, b

    def sample(
        self, x0: Float[Array, "*shape"], t: RealScalarLike, *, key: PRNGKeyArray
    ) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
        r"""Draw $x_t = \alpha(t) x_0 + \sigma(t) \varepsilon$ for one data point.

        **Arguments:**

        - `x0`: a data point, of any shape.
        - `t`: the time, in $[0, 1]$.
        - `key`: a JAX PRNG key.

        **Returns:**

        The pair `(x_t, eps)`, both shaped like `x0`.
        """
        t = check_time(t)
        eps = jr.normal(key, x0.shape, x0.dtype)
        return self.alpha(t) * x0 + self.sigma(t) * eps, eps

    def conditional_score(
        self,
        x_t: Float[Array, "*shape"],
        x0: Float[Array, "*shape"],
        t: RealScalarLike,
    ) -> Float[Array, "*shape"]:
        r"""The score of the path given its starting point,

        $$\nabla_{x_t} \log p_t(x_t \mid x_0) = -\frac{x_t - \alpha(t) x_0}{\sigma(t)^2}
        = -\frac{\varepsilon}{\sigma(t)},$$

        the regression target of denoising score matching (Vincent 2011).
        Undefined where $\sigma(t) = 0$ (at $t = 0$ for most paths): that raises an
        error, so sample training times from $[t_\text{min}, 1]$.
        """
        t = check_time(t)
        sigma = self.sigma(t)
        sigma = check(
            sigma,
            sigma > 0,
            f"`t`: {type(self).__name__}.conditional_score needs sigma(t) > 0, "
            "which fails at this t (t = 0 for most paths); use t >= t_min > 0.",
        )
        return (self.alpha(t) * x0 - x_t) / sigma**2

    def drift(
        self, x: Float[Array, "*shape"], t: RealScalarLike
    ) -> Float[Array, "*shape"]:
        r"""The drift $f(t)\, x$ of the forward SDE, with $f = \alpha' / \alpha$.

        Infinite where $\alpha(t) = 0$ (at $t = 1$ for
        [`CosinePath`][scorax.CosinePath] and [`LinearPath`][scorax.LinearPath]):
        that raises an error, so integrate such paths on $[t_\text{min}, t_\text{max}]$
        with $t_\text{max} < 1$.
        """
        t = check_time(t)
        f = self.alpha_derivative(t) / self.alpha(t)
        f = check(f, jnp.isfinite(f), self._diverges("drift"))
        return f * x

    def diffusion(self, t: RealScalarLike) -> FloatScalar:
        r"""The diffusion coefficient $g(t)$ of the forward SDE (see
        [`drift`][scorax.AbstractGaussianPath.drift] for where it diverges)."""
        g2 = self.diffusion_squared(check_time(t))
        g2 = check(g2, jnp.isfinite(g2), self._diverges("diffusion"))
        return jnp.sqrt(g2)

    def prior_sample(
        self,
        *,
        key: PRNGKeyArray,
        shape: tuple[int, ...],
        dtype: DTypeLike | None = None,
    ) -> Float[Array, "*shape"]:
        r"""Draw from the prior $\mathcal{N}(0, \sigma(1)^2 I)$.

        This is the path's marginal at $t = 1$ when $\alpha(1) = 0$, and the usual
        approximation of it otherwise ($\alpha(1) \approx 0.0066$ for the default
        [`VPPath`][scorax.VPPath]; $\sigma(1) \gg$ the data scale for
        [`VEPath`][scorax.VEPath] and [`EDMPath`][scorax.EDMPath]).
        """
        dtype = jnp.result_type(float) if dtype is None else dtype
        return self.sigma(1.0) * jr.normal(key, shape, dtype)

    def prior_log_prob(self, x: Float[Array, "*shape"]) -> FloatScalar:
        r"""The log density of [`prior_sample`][scorax.AbstractGaussianPath.prior_sample]'s
        distribution, $\log \mathcal{N}(x; 0, \sigma(1)^2 I)$, summed over all entries."""
        return isotropic_gaussian_log_prob(x, self.sigma(1.0))

    def _diverges(self, what: str) -> str:
        return (
            f"`t`: the forward-SDE {what} of {type(self).__name__} is not finite at "
            "this t: alpha(t) is 0 (or underflows) there; evaluate it for a smaller t."
        )


def _integrated_beta(
    t: FloatScalar, beta_min: RealScalarLike, beta_max: RealScalarLike
) -> FloatScalar:
    r"""$B(t) = \int_0^t \beta(s)\,\mathrm{d}s$ for a linear $\beta$."""
    return jnp.asarray(beta_min * t + 0.5 * (beta_max - beta_min) * t**2)


def _beta(
    t: FloatScalar, beta_min: RealScalarLike, beta_max: RealScalarLike
) -> FloatScalar:
    r"""$\beta(t)$, linear from `beta_min` at $t = 0$ to `beta_max` at $t = 1$."""
    return jnp.asarray(beta_min + (beta_max - beta_min) * t)


def _time_of_integrated_beta(
    b: FloatScalar, beta_min: RealScalarLike, beta_max: RealScalarLike
) -> FloatScalar:
    """Solve `_integrated_beta(t) = b` for t (the stable root of the quadratic)."""
    return 2 * b / (beta_min + jnp.sqrt(beta_min**2 + 2 * (beta_max - beta_min) * b))


class VPPath(AbstractGaussianPath):
    r"""The variance-preserving path with a linear noise rate.

    With $\beta(t) = \beta_\text{min} + t(\beta_\text{max} - \beta_\text{min})$ and
    $B(t) = \int_0^t \beta$,

    $$\alpha(t) = e^{-B(t)/2}, \qquad \sigma(t) = \sqrt{1 - e^{-B(t)}}, \qquad
    f(t) = -\tfrac12 \beta(t), \qquad g(t)^2 = \beta(t),$$

    so $\alpha^2 + \sigma^2 = 1$. This is the continuous limit of DDPM (Ho et al.
    2020; see [`DDPMSchedule`][scorax.DDPMSchedule]) as the VP SDE of Song et al.
    (2021).

    **Endpoints:** everything is finite on $[0, 1]$ except $\sigma'(0) = +\infty$
    ($\sigma \sim \sqrt{\beta_\text{min} t}$), so the conditional score is undefined
    at $t = 0$. The prior $\mathcal{N}(0, \sigma(1)^2 I)$ neglects
    $\alpha(1) = e^{-B(1)/2}$ ($\approx 0.0066$ with the defaults).

    **Arguments:**

    - `beta_min`, `beta_max`: the noise rate at $t = 0$ and $t = 1$, with
      $0 < \beta_\text{min} < \beta_\text{max}$. Defaults 0.1 and 20, as in Song et
      al. (2021).
    """

    beta_min: RealScalarLike = 0.1
    beta_max: RealScalarLike = 20.0

    def __check_init__(self):
        _ordered(self.beta_min, self.beta_max, "beta_min", "beta_max")

    def alpha(self, t: RealScalarLike) -> FloatScalar:
        return jnp.exp(
            -0.5 * _integrated_beta(_as_float(t), self.beta_min, self.beta_max)
        )

    def sigma(self, t: RealScalarLike) -> FloatScalar:
        b = _integrated_beta(_as_float(t), self.beta_min, self.beta_max)
        return jnp.sqrt(-jnp.expm1(-b))

    def alpha_derivative(self, t: RealScalarLike) -> FloatScalar:
        t = _as_float(t)
        return -0.5 * _beta(t, self.beta_min, self.beta_max) * self.alpha(t)

    def sigma_derivative(self, t: RealScalarLike) -> FloatScalar:
        t = _as_float(t)
        beta = _beta(t, self.beta_min, self.beta_max)
        return 0.5 * beta * self.alpha(t) ** 2 / self.sigma(t)

    def diffusion_squared(self, t: RealScalarLike) -> FloatScalar:
        return _beta(_as_float(t), self.beta_min, self.beta_max)

    def _inverse_log_snr(self, log_snr: RealScalarLike) -> FloatScalar:
        # lambda = -log(e^B - 1)  <=>  B = log(1 + e^{-lambda}).
        b = jax.nn.softplus(-_as_float(log_snr))
        return _time_of_integrated_beta(b, self.beta_min, self.beta_max)


class SubVPPath(AbstractGaussianPath):
    r"""The sub-variance-preserving path of Song et al. (2021).

    With $\beta$ and $B$ as in [`VPPath`][scorax.VPPath],

    $$\alpha(t) = e^{-B(t)/2}, \qquad \sigma(t) = 1 - e^{-B(t)}, \qquad
    f(t) = -\tfrac12\beta(t), \qquad g(t)^2 = \beta(t)\,(1 - e^{-2B(t)}).$$

    Its variance $\sigma^2$ is never above the VP path's, which gives better
    likelihoods in the paper.

    **Endpoints:** everything is finite on $[0, 1]$; $\sigma(0) = 0$, so the
    conditional score is undefined at $t = 0$.

    **Arguments:**

    - `beta_min`, `beta_max`: as for [`VPPath`][scorax.VPPath].
    """

    beta_min: RealScalarLike = 0.1
    beta_max: RealScalarLike = 20.0

    def __check_init__(self):
        _ordered(self.beta_min, self.beta_max, "beta_min", "beta_max")

    def alpha(self, t: RealScalarLike) -> FloatScalar:
        return jnp.exp(
            -0.5 * _integrated_beta(_as_float(t), self.beta_min, self.beta_max)
        )

    def sigma(self, t: RealScalarLike) -> FloatScalar:
        return -jnp.expm1(-_integrated_beta(_as_float(t), self.beta_min, self.beta_max))

    def alpha_derivative(self, t: RealScalarLike) -> FloatScalar:
        t = _as_float(t)
        return -0.5 * _beta(t, self.beta_min, self.beta_max) * self.alpha(t)

    def sigma_derivative(self, t: RealScalarLike) -> FloatScalar:
        t = _as_float(t)
        return _beta(t, self.beta_min, self.beta_max) * self.alpha(t) ** 2

    def diffusion_squared(self, t: RealScalarLike) -> FloatScalar:
        t = _as_float(t)
        b = _integrated_beta(t, self.beta_min, self.beta_max)
        return _beta(t, self.beta_min, self.beta_max) * -jnp.expm1(-2 * b)

    def _inverse_log_snr(self, log_snr: RealScalarLike) -> FloatScalar:
        # With a = e^{-B}, e^lambda = a / (1 - a)^2, whose root in (0, 1) is
        # 1 - a = 2 / (1 + r) and a = 4 e^lambda / (1 + r)^2, r = sqrt(1 + 4 e^lambda).
        # Take B = -log(a) from the form without cancellation on each side of 0.
        log_snr = _as_float(log_snr)
        low = jnp.minimum(log_snr, 0)
        b_low = 2 * jnp.log1p(jnp.sqrt(1 + 4 * jnp.exp(low))) - low - 2 * math.log(2)
        high = jnp.maximum(log_snr, 0)  # each branch sees only its own side of 0
        b_high = -jnp.log1p(-2 / (1 + jnp.sqrt(1 + 4 * jnp.exp(high))))
        b = jnp.where(log_snr > 0, b_high, b_low)
        return _time_of_integrated_beta(b, self.beta_min, self.beta_max)


class VEPath(AbstractGaussianPath):
    r"""The variance-exploding path with geometric noise levels.

    $$\alpha(t) = 1, \qquad
    \sigma(t) = \sigma_\text{min} \left(\frac{\sigma_\text{max}}{\sigma_\text{min}}\right)^t,
    \qquad f = 0, \qquad g(t)^2 = 2 \sigma(t)^2 \log\frac{\sigma_\text{max}}{\sigma_\text{min}}.$$

    The continuous form of the NCSN noise levels (Song & Ermon 2019; the VE SDE of
    Song et al. 2021); [`geometric_sigmas`][scorax.geometric_sigmas] gives the
    discrete levels.

    **Endpoints:** everything is finite on $[0, 1]$. The data end is perturbed by
    $\sigma_\text{min}$, as in the paper; the prior is
    $\mathcal{N}(0, \sigma_\text{max}^2 I)$.

    **Arguments:**

    - `sigma_min`, `sigma_max`: the noise scale at $t = 0$ and $t = 1$, with
      $0 < \sigma_\text{min} < \sigma_\text{max}$. Defaults 0.01 and 50 (Song et
      al. 2021, CIFAR-10); choose $\sigma_\text{max}$ near the largest distance
      between data points.
    """

    sigma_min: RealScalarLike = 0.01
    sigma_max: RealScalarLike = 50.0

    def __check_init__(self):
        _ordered(self.sigma_min, self.sigma_max, "sigma_min", "sigma_max")

    def _log_ratio(self):
        return jnp.log(self.sigma_max) - jnp.log(self.sigma_min)

    def alpha(self, t: RealScalarLike) -> FloatScalar:
        return jnp.ones_like(_as_float(t))

    def sigma(self, t: RealScalarLike) -> FloatScalar:
        return jnp.asarray(self.sigma_min * jnp.exp(_as_float(t) * self._log_ratio()))

    def alpha_derivative(self, t: RealScalarLike) -> FloatScalar:
        return jnp.zeros_like(_as_float(t))

    def sigma_derivative(self, t: RealScalarLike) -> FloatScalar:
        return self.sigma(t) * self._log_ratio()

    def diffusion_squared(self, t: RealScalarLike) -> FloatScalar:
        return 2 * self.sigma(t) ** 2 * self._log_ratio()

    def _inverse_log_snr(self, log_snr: RealScalarLike) -> FloatScalar:
        log_sigma = -0.5 * _as_float(log_snr)
        return (log_sigma - jnp.log(self.sigma_min)) / self._log_ratio()


class CosinePath(AbstractGaussianPath):
    r"""The cosine path of Nichol & Dhariwal (2021), variance preserving.

    With $\phi(t) = \frac{\pi}{2} \frac{t + s}{1 + s}$,

    $$\alpha(t) = \frac{\cos\phi(t)}{\cos\phi(0)}, \qquad
    \sigma(t) = \sqrt{1 - \alpha(t)^2}, \qquad
    f(t) = -\phi'\tan\phi(t), \qquad g(t)^2 = 2 \phi' \tan\phi(t).$$

    The offset $s$ keeps the noise rate from vanishing at $t = 0$. With $s = 0$ this
    is the trigonometric path $\alpha = \cos(\pi t / 2)$, $\sigma = \sin(\pi t/2)$.

    **Endpoints:** $\alpha(1) = 0$, so the prior $\mathcal{N}(0, I)$ is exact but
    the SDE drift and diffusion diverge at $t = 1$ (an error: stop at
    $t_\text{max} < 1$) and $\lambda(1) = -\infty$. $\sigma(0) = 0$: the conditional
    score is undefined at $t = 0$, and $\sigma'(0) = +\infty$ when $s > 0$.

    **Arguments:**

    - `s`: the offset, $s \ge 0$; default 0.008 as in the paper.
    """

    s: RealScalarLike = 0.008

    def __check_init__(self):
        if is_concrete(self.s) and not (math.isfinite(self.s) and self.s >= 0):
            raise ValueError(f"`s` must be finite and >= 0, got {self.s}.")

    def _phi_derivative(self) -> FloatScalar:
        return 0.5 * jnp.pi / (1 + jnp.asarray(self.s))

    def _angles(self, t: RealScalarLike) -> tuple[FloatScalar, FloatScalar]:
        # phi and its complement psi = pi/2 - phi. Only their sines are used
        # (cos(phi) = sin(psi)), which are exactly 0 at the endpoints in any dtype.
        t = _as_float(t)
        return self._phi_derivative() * (t + self.s), self._phi_derivative() * (1 - t)

    def alpha(self, t: RealScalarLike) -> FloatScalar:
        _, psi = self._angles(t)
        _, psi0 = self._angles(0.0)
        return jnp.sin(psi) / jnp.sin(psi0)

    def sigma(self, t: RealScalarLike) -> FloatScalar:
        # 1 - sin^2(psi) / sin^2(psi0) = sin(psi0 - psi) sin(psi0 + psi) / sin^2(psi0),
        # with psi0 - psi = phi' t and, as pi = 2 phi' (1 + s),
        # sin(psi0 + psi) = sin(phi' (t + 2 s)): small, exact arguments near t = 0.
        t = _as_float(t)
        dphi = self._phi_derivative()
        _, psi0 = self._angles(0.0)
        variance = (
            jnp.sin(dphi * t) * jnp.sin(dphi * (t + 2 * self.s)) / jnp.sin(psi0) ** 2
        )
        return jnp.sqrt(jnp.clip(variance, 0, 1))

    def alpha_derivative(self, t: RealScalarLike) -> FloatScalar:
        phi, _ = self._angles(t)
        _, psi0 = self._angles(0.0)
        return -jnp.sin(phi) * self._phi_derivative() / jnp.sin(psi0)

    def sigma_derivative(self, t: RealScalarLike) -> FloatScalar:
        # sigma' = (sigma^2)' / (2 sigma), with (sigma^2)' = -2 alpha alpha'.
        phi, psi = self._angles(t)
        _, psi0 = self._angles(0.0)
        sigma, dphi = self.sigma(t), self._phi_derivative()
        safe_sigma = jnp.where(sigma > 0, sigma, 1)
        derivative = (
            jnp.sin(phi) * jnp.sin(psi) * dphi / (jnp.sin(psi0) ** 2 * safe_sigma)
        )
        # At sigma = 0 (t = 0): +inf when s > 0, the limit phi' when s = 0.
        limit = jnp.where(self.s > 0, jnp.inf, dphi)
        return jnp.where(sigma > 0, derivative, limit)

    def diffusion_squared(self, t: RealScalarLike) -> FloatScalar:
        phi, psi = self._angles(t)
        return 2 * self._phi_derivative() * jnp.sin(phi) / jnp.sin(psi)

    def _inverse_log_snr(self, log_snr: RealScalarLike) -> FloatScalar:
        # alpha^2 = sigmoid(lambda), sigma^2 = sigmoid(-lambda); then
        # sin(psi) = alpha sin(psi0) and cos(psi)^2 = sin(phi0)^2 + sigma^2 sin(psi0)^2.
        log_snr = _as_float(log_snr)
        phi0, psi0 = self._angles(0.0)
        sin_psi = jnp.sqrt(jax.nn.sigmoid(log_snr)) * jnp.sin(psi0)
        cos_psi = jnp.sqrt(
            jnp.sin(phi0) ** 2 + jax.nn.sigmoid(-log_snr) * jnp.sin(psi0) ** 2
        )
        return 1 - jnp.arctan2(sin_psi, cos_psi) / self._phi_derivative()


class LinearPath(AbstractGaussianPath):
    r"""The straight-line path of rectified flow and conditional optimal transport.

    $$\alpha(t) = 1 - t, \qquad \sigma(t) = t, \qquad
    f(t) = -\frac{1}{1 - t}, \qquad g(t)^2 = \frac{2t}{1 - t}.$$

    Its conditional velocity $\mathrm{d}x_t/\mathrm{d}t = \varepsilon - x_0$ is
    constant along each path (Liu et al. 2022, "Flow straight and fast"; Lipman et
    al. 2022, "Flow matching for generative modeling").

    **Endpoints:** $\alpha(1) = 0$, so the prior $\mathcal{N}(0, I)$ is exact but the
    SDE drift and diffusion diverge at $t = 1$ (an error: stop at $t_\text{max} < 1$).
    $\sigma(0) = 0$: the conditional score is undefined at $t = 0$, while the SDE is
    finite there ($g(0) = 0$).
    """

    def alpha(self, t: RealScalarLike) -> FloatScalar:
        return 1 - _as_float(t)

    def sigma(self, t: RealScalarLike) -> FloatScalar:
        return _as_float(t)

    def alpha_derivative(self, t: RealScalarLike) -> FloatScalar:
        return -jnp.ones_like(_as_float(t))

    def sigma_derivative(self, t: RealScalarLike) -> FloatScalar:
        return jnp.ones_like(_as_float(t))

    def diffusion_squared(self, t: RealScalarLike) -> FloatScalar:
        t = _as_float(t)
        return 2 * t / (1 - t)

    def _inverse_log_snr(self, log_snr: RealScalarLike) -> FloatScalar:
        return jax.nn.sigmoid(-0.5 * _as_float(log_snr))


class EDMPath(AbstractGaussianPath):
    r"""The noise levels of Karras et al. (2022), "Elucidating the design space of
    diffusion-based generative models" (EDM), as a path on $[0, 1]$.

    $$\alpha(t) = 1, \qquad
    \sigma(t) = \left(\sigma_\text{min}^{1/\rho}
    + t\,(\sigma_\text{max}^{1/\rho} - \sigma_\text{min}^{1/\rho})\right)^\rho,
    \qquad f = 0, \qquad g(t)^2 = 2\sigma(t)\sigma'(t).$$

    EDM integrates in $\sigma$ itself; this path reparameterises $\sigma$ by $t$ so
    that uniform steps in $t$ are exactly EDM's $\rho$-spaced noise levels, finely
    spaced near the data.

    **Endpoints:** everything is finite on $[0, 1]$; the data end is perturbed by
    $\sigma_\text{min}$ and the prior is $\mathcal{N}(0, \sigma_\text{max}^2 I)$.

    **Arguments:**

    - `sigma_min`, `sigma_max`: with $0 < \sigma_\text{min} < \sigma_\text{max}$;
      defaults 0.002 and 80 as in the paper.
    - `rho`: the spacing exponent, $\rho > 0$; default 7.
    """

    sigma_min: RealScalarLike = 0.002
    sigma_max: RealScalarLike = 80.0
    rho: RealScalarLike = 7.0

    def __check_init__(self):
        _ordered(self.sigma_min, self.sigma_max, "sigma_min", "sigma_max")
        check_positive(self.rho, "rho")

    def _ends(self) -> tuple[Array, Array]:
        return (
            jnp.asarray(self.sigma_min) ** (1 / self.rho),
            jnp.asarray(self.sigma_max) ** (1 / self.rho),
        )

    def alpha(self, t: RealScalarLike) -> FloatScalar:
        return jnp.ones_like(_as_float(t))

    def sigma(self, t: RealScalarLike) -> FloatScalar:
        low, high = self._ends()
        return (low + _as_float(t) * (high - low)) ** self.rho

    def alpha_derivative(self, t: RealScalarLike) -> FloatScalar:
        return jnp.zeros_like(_as_float(t))

    def sigma_derivative(self, t: RealScalarLike) -> FloatScalar:
        low, high = self._ends()
        scale = (low + _as_float(t) * (high - low)) ** (self.rho - 1)
        return jnp.asarray(self.rho * (high - low) * scale)

    def diffusion_squared(self, t: RealScalarLike) -> FloatScalar:
        return 2 * self.sigma(t) * self.sigma_derivative(t)

    def _inverse_log_snr(self, log_snr: RealScalarLike) -> FloatScalar:
        low, high = self._ends()
        return (jnp.exp(-0.5 * _as_float(log_snr) / self.rho) - low) / (high - low)


class DDPMSchedule(eqx.Module):
    r"""The discrete noise schedule of DDPM (Ho et al. 2020), a view of
    [`VPPath`][scorax.VPPath].

    Step $i = 1, \dots, N$ sits at time $t_i = i / N$ and has

    $$\beta_i = \frac{1}{N}\left(\beta_\text{min}
    + \frac{i - 1}{N - 1}(\beta_\text{max} - \beta_\text{min})\right), \qquad
    \bar\alpha_i = \prod_{j \le i} (1 - \beta_j),$$

    so that $x_i = \sqrt{\bar\alpha_i}\, x_0 + \sqrt{1 - \bar\alpha_i}\,\varepsilon$.
    With $N = 1000$ and the defaults, $\beta_i$ runs linearly from $10^{-4}$ to
    $0.02$, exactly as in the paper; as $N \to \infty$, $\bar\alpha_i \to
    \alpha(t_i)^2$ of `VPPath(beta_min, beta_max)` (Song et al. 2021, appendix B),
    available as [`path`][scorax.DDPMSchedule.path].

    Arrays are indexed from 0: entry `i - 1` belongs to step $i$.

    **Arguments:**

    - `num_steps`: $N \ge 2$.
    - `beta_min`, `beta_max`: the continuous rates, $0 < \beta_\text{min} <
      \beta_\text{max} < N$ (so every $\beta_i < 1$).
    """

    num_steps: int = eqx.field(default=1000, static=True, converter=to_count)
    beta_min: RealScalarLike = 0.1
    beta_max: RealScalarLike = 20.0

    def __check_init__(self):
        check_count(self.num_steps, "num_steps", minimum=2)
        _ordered(self.beta_min, self.beta_max, "beta_min", "beta_max")
        if is_concrete(self.beta_max) and not self.beta_max < self.num_steps:
            raise ValueError(
                f"`beta_max` must be < num_steps = {self.num_steps} so that every "
                f"discrete beta is < 1, got {self.beta_max}."
            )

    @property
    def betas(self) -> Float[Array, " num_steps"]:
        r"""$\beta_1, \dots, \beta_N$."""
        fraction = jnp.linspace(0.0, 1.0, self.num_steps)
        rates = self.beta_min + fraction * (self.beta_max - self.beta_min)
        return jnp.asarray(rates / self.num_steps)

    @property
    def alphas(self) -> Float[Array, " num_steps"]:
        r"""$1 - \beta_i$."""
        return 1 - self.betas

    @property
    def alphas_cumprod(self) -> Float[Array, " num_steps"]:
        r"""$\bar\alpha_i = \prod_{j \le i}(1 - \beta_j)$, accumulated in log space."""
        return jnp.exp(jnp.cumsum(jnp.log1p(-self.betas)))

    @property
    def times(self) -> Float[Array, " num_steps"]:
        r"""The continuous times $t_i = i / N$ of the steps."""
        return jnp.arange(1, self.num_steps + 1) / self.num_steps

    @property
    def path(self) -> VPPath:
        """The continuous path this schedule discretises."""
        return VPPath(beta_min=self.beta_min, beta_max=self.beta_max)


def geometric_sigmas(
    *,
    sigma_min: RealScalarLike = 0.01,
    sigma_max: RealScalarLike = 1.0,
    num_levels: IntScalarLike = 10,
    dtype: DTypeLike | None = None,
) -> Float[Array, " num_levels"]:
    r"""The NCSN noise levels $\sigma_1 > \sigma_2 > \dots > \sigma_L$, a geometric
    sequence from `sigma_max` down to `sigma_min` (Song & Ermon 2019):

    $$\sigma_i = \sigma_\text{max}
    \left(\frac{\sigma_\text{min}}{\sigma_\text{max}}\right)^{(i-1)/(L-1)}.$$

    These are [`VEPath`][scorax.VEPath]'s $\sigma(t)$ at $L$ evenly spaced times
    from $t = 1$ to $t = 0$, largest first, the order annealed Langevin dynamics
    visits them. Defaults $\sigma_1 = 1$, $\sigma_{10} = 0.01$, as in the paper.

    **Arguments:**

    - `sigma_min`, `sigma_max`: with $0 < \sigma_\text{min} < \sigma_\text{max}$.
    - `num_levels`: $L \ge 2$.
    - `dtype`: the floating dtype of the result (default: JAX's default float).
    """
    num_levels = check_count(num_levels, "num_levels", minimum=2)
    path = VEPath(sigma_min=sigma_min, sigma_max=sigma_max)
    dtype = jnp.result_type(float) if dtype is None else dtype
    return jax.vmap(path.sigma)(jnp.linspace(1.0, 0.0, num_levels, dtype=dtype))
