r"""Denoising score matching: one noise level, several (NCSN), or a whole path."""

from collections.abc import Callable
from typing import Literal, TypeAlias

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .._checks import (
    check,
    check_boundary_time,
    check_choice,
    check_time,
    is_concrete,
)
from .._custom_types import FloatScalar, RealScalarLike
from .._parameterisation import (
    AbstractParameterisation,
    convert,
    EDMPrediction,
    NoisePrediction,
    ScorePrediction,
)
from .._path import AbstractGaussianPath
from ._time import AbstractTimeSampling, UniformTime


Model: TypeAlias = Callable[
    [Float[Array, "*shape"], FloatScalar], Float[Array, "*shape"]
]
Weighting: TypeAlias = (
    Literal["noise", "likelihood", "uniform", "data", "min_snr", "edm"]
    | Callable[[AbstractGaussianPath, FloatScalar], FloatScalar]
)
WEIGHTINGS: tuple[str, ...] = (
    "noise",
    "likelihood",
    "uniform",
    "data",
    "min_snr",
    "edm",
)
MIN_SNR_GAMMA = 5.0


def denoising_score_matching(
    score_fn: Callable[[Float[Array, "*shape"]], Float[Array, "*shape"]],
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray,
    sigma: RealScalarLike,
    parameterisation: AbstractParameterisation = ScorePrediction(),
    label: Int[ArrayLike, ""] | None = None,
    label_dropout: RealScalarLike = 0.0,
) -> FloatScalar:
    r"""Denoising score matching at one noise level (Vincent 2011).

    Perturb $\tilde x = x + \sigma\varepsilon$, $\varepsilon \sim \mathcal{N}(0, I)$,
    and regress on the score of the perturbation kernel,
    $\nabla_{\tilde x} \log q_\sigma(\tilde x \mid x) = -\varepsilon / \sigma$:

    $$\ell(x) = \tfrac12 \left\| s_\theta(\tilde x) + \frac{\varepsilon}{\sigma}
    \right\|^2 \quad\text{(score form)}, \qquad
    \ell(x) = \tfrac12 \left\| \hat\varepsilon_\theta(\tilde x) - \varepsilon
    \right\|^2 \quad\text{(noise form)}.$$

    In expectation the score form equals explicit score matching against the
    perturbed density $q_\sigma = p * \mathcal{N}(0, \sigma^2 I)$ plus a constant
    independent of the model, so its minimiser is $\nabla \log q_\sigma$. The noise
    form is $\sigma^2$ times the score form with $s_\theta = -\hat\varepsilon_\theta
    / \sigma$.

    **Arguments:**

    - `score_fn`: the model, mapping $\tilde x$ to an array shaped like `x`.
    - `x`: one clean sample.
    - `key`: a JAX PRNG key for the noise.
    - `sigma`: the noise scale, $\sigma > 0$.
    - `parameterisation`: `scorax.ScorePrediction()` (the model predicts the score)
      or `scorax.NoisePrediction()` (it predicts $\varepsilon$).
    - `label`, `label_dropout`: for a class-conditional model, the sample's class
      $y$; the model is then called as `score_fn(x_tilde, y)`, with $y$ replaced
      by the null label $-1$ with probability `label_dropout` (see
      [`diffusion_loss`][scorax.diffusion_loss]).
    """
    if not isinstance(parameterisation, (ScorePrediction, NoisePrediction)):
        raise ValueError(
            "`parameterisation` must be scorax.ScorePrediction() or "
            f"scorax.NoisePrediction(), got {parameterisation!r}."
        )
    sigma = check(sigma, jnp.asarray(sigma) > 0, "`sigma` must be > 0.")
    key, score_fn = with_label(score_fn, key, label, label_dropout)
    eps = jr.normal(key, x.shape, x.dtype)
    prediction = score_fn(x + sigma * eps)
    if isinstance(parameterisation, NoisePrediction):
        return 0.5 * jnp.sum((prediction - eps) ** 2)
    return 0.5 * jnp.sum((prediction + eps / sigma) ** 2)


def ncsn_loss(
    model: Model,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray,
    sigmas: Float[Array, " num_levels"],
    weighting: Literal["noise", "uniform"] = "noise",
) -> FloatScalar:
    r"""The multi-scale denoising objective of NCSN (Song & Ermon 2019).

    $$\mathcal{L}(\theta) = \frac1L \sum_{i=1}^L \lambda(\sigma_i)\,
    \mathbb{E}\left[\tfrac12 \left\| s_\theta(x + \sigma_i\varepsilon, \sigma_i)
    + \frac{\varepsilon}{\sigma_i} \right\|^2\right],
    \qquad \lambda(\sigma) = \sigma^2,$$

    the weighting that makes every level contribute on the same scale. Each call
    draws one level uniformly (as the paper's training does), an unbiased estimate
    of the average over levels.

    **Arguments:**

    - `model`: a noise-conditional score model, called as `model(x_tilde, sigma)`.
    - `x`: one clean sample.
    - `key`: a JAX PRNG key for the level and the noise.
    - `sigmas`: the noise levels, all $> 0$, e.g.
      [`geometric_sigmas`][scorax.geometric_sigmas].
    - `weighting`: `"noise"` for $\lambda = \sigma^2$, `"uniform"` for $\lambda = 1$.
    """
    check_choice(weighting, "weighting", ("noise", "uniform"))
    # NumPy, not jnp: under jit a closed-over concrete array stays concrete, but a
    # jnp comparison of it would be staged into the trace.
    if is_concrete(sigmas) and not np.all(np.asarray(sigmas) > 0):
        raise ValueError("`sigmas` must all be > 0.")
    level_key, noise_key = jr.split(key)
    sigma = sigmas[jr.randint(level_key, (), 0, sigmas.shape[0])].astype(x.dtype)
    loss = denoising_score_matching(
        lambda x_tilde: model(x_tilde, sigma), x, key=noise_key, sigma=sigma
    )
    return sigma**2 * loss if weighting == "noise" else loss


def with_label(
    model: Callable[..., Array],
    key: PRNGKeyArray,
    label: Int[ArrayLike, ""] | None,
    label_dropout: RealScalarLike,
) -> tuple[PRNGKeyArray, Callable[..., Array]]:
    """The model with its label bound (dropped to -1 with probability
    `label_dropout`), and the key left for the loss. Without a label, both are
    returned unchanged, so unconditional losses draw exactly what they did."""
    if label is None:
        if not (is_concrete(label_dropout) and float(label_dropout) == 0):
            raise ValueError("`label_dropout` needs a `label` to drop.")
        return key, model
    if is_concrete(label_dropout) and not 0 <= float(label_dropout) <= 1:
        raise ValueError(f"`label_dropout` must lie in [0, 1], got {label_dropout}.")
    dropout_key, key = jr.split(key)
    drop = jr.bernoulli(dropout_key, jnp.asarray(label_dropout, float))
    label = jnp.where(drop, -1, jnp.asarray(label))
    return key, lambda *args: model(*args, label)


def _weight(
    path: AbstractGaussianPath,
    t: FloatScalar,
    weighting: Weighting,
    parameterisation: AbstractParameterisation,
) -> FloatScalar:
    """$\\lambda(t)$, the weight on the score error $\\frac12\\|s_\\theta - s\\|^2$."""
    if callable(weighting):
        return jnp.asarray(weighting(path, t))
    sigma2 = path.sigma(t) ** 2
    if weighting == "edm":
        # EDM's (s~^2 + sd^2) / (s~ sd)^2 on the denoiser's error, times s~^2
        # sigma^2 (the "data" weighting's sigma^2 / SNR): on the score's.
        assert isinstance(parameterisation, EDMPrediction)
        sigma_d2 = jnp.asarray(parameterisation.sigma_data, sigma2.dtype) ** 2
        return sigma2 * (sigma2 / path.alpha(t) ** 2 + sigma_d2) / sigma_d2
    if weighting == "noise":
        return sigma2
    if weighting == "likelihood":
        return path.diffusion(t) ** 2
    if weighting == "uniform":
        return jnp.ones_like(sigma2)
    snr = jnp.exp(path.log_snr(t))
    if weighting == "data":
        return sigma2 / snr
    return sigma2 * jnp.minimum(snr, MIN_SNR_GAMMA) / snr  # "min_snr"


def diffusion_loss(
    model: Model,
    path: AbstractGaussianPath,
    x0: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray,
    parameterisation: AbstractParameterisation = NoisePrediction(),
    weighting: Weighting = "noise",
    t_min: float = 1e-3,
    t: RealScalarLike | None = None,
    label: Int[ArrayLike, ""] | None = None,
    label_dropout: RealScalarLike = 0.0,
    time_sampling: AbstractTimeSampling = UniformTime(),
) -> FloatScalar:
    r"""Continuous-time denoising score matching on any Gaussian path, for a model
    in any parameterisation (Song et al. 2021).

    Draw $t \sim \mathcal{U}[t_\text{min}, 1)$ (or from `time_sampling`) and
    $x_t = \alpha(t) x_0 + \sigma(t)\varepsilon$, then

    $$\ell(x_0) = \tfrac12\, \lambda(t) \left\| s_\theta(x_t, t) - \nabla_{x_t}
    \log p_t(x_t \mid x_0) \right\|^2,$$

    where $s_\theta$ is the model's output read as a score. Since every
    parameterisation is affine in the noise, $\varepsilon = a x_t + b\, m_\theta$
    (see [`AbstractParameterisation`][scorax.AbstractParameterisation]), the score
    error is $\|s_\theta - s\| = (|b| / \sigma) \|m_\theta - m\|$ with $m$ the
    true target in the model's own parameterisation, and that is how the loss is
    computed: no division by a small $\sigma$ inside the norm.

    The weightings $\lambda(t)$:

    - `"noise"`: $\sigma^2$, so a `NoisePrediction` model minimises
      $\frac12\|\hat\varepsilon - \varepsilon\|^2$ (Ho et al. 2020);
    - `"likelihood"`: $g(t)^2$, for which the integral over $t$ bounds the
      negative log-likelihood (Song et al. 2021, "Maximum likelihood training of
      score-based diffusion models");
    - `"uniform"`: $1$, the plain score error;
    - `"data"`: $\sigma^2 / \mathrm{SNR}$, the squared error of the denoised
      $\hat x_0$;
    - `"min_snr"`: $\sigma^2 \min(\mathrm{SNR}, 5) / \mathrm{SNR}$ (Min-SNR-5,
      Hang et al. 2023);
    - `"edm"`: EDM's $\lambda(\tilde\sigma) = (\tilde\sigma^2 + \sigma_d^2) /
      (\tilde\sigma \sigma_d)^2$ on the denoiser's squared error (Karras et al.
      2022, with $\tilde\sigma = \sigma/\alpha$), that is $\sigma^2
      (\tilde\sigma^2 + \sigma_d^2) / \sigma_d^2$ on the score's; for a model
      read with [`EDMPrediction`][scorax.EDMPrediction] (whose $\sigma_d$ it
      takes), the loss is then $\tfrac12 \|F_\theta - F\|^2$ with unit weight
      at every noise level. With `time_sampling=LogNormalNoise()` this is EDM's
      objective (half of its equation 2);
    - or a function `(path, t) -> lambda`.

    **Where the times come from** (`time_sampling`): a distribution of $t$
    *defines* the objective, $\mathbb{E}_{t \sim p}[\ell]$:
    [`UniformTime`][scorax.UniformTime] (the default),
    [`LogNormalNoise`][scorax.LogNormalNoise] (EDM) or
    [`LogitNormalTime`][scorax.LogitNormalTime] (SD3's rectified flow). Importance
    sampling, [`ImportanceTime`][scorax.ImportanceTime], keeps the objective of a
    target distribution and draws from a proposal, weighting by the density ratio,
    only to lower the variance (with
    [`LikelihoodProposal`][scorax.LikelihoodProposal] for the likelihood
    weighting).

    **Arguments:**

    - `model`: called as `model(x_t, t)`, returning an array shaped like `x0`.
    - `path`: the Gaussian path.
    - `x0`: one clean sample.
    - `key`: a JAX PRNG key for the time and the noise (the noise alone when `t`
      is given).
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `weighting`: as above; default `"noise"`.
    - `t_min`: the smallest time, $0 < t_\text{min} < 1$; the conditional score is
      undefined at $t = 0$ on paths with $\sigma(0) = 0$.
    - `t`: a fixed time instead of a random one, in $[0, 1]$ with $\sigma(t) > 0$
      (an error otherwise).
    - `label`: for a class-conditional model, the sample's class $y \in \{0,
      \dots, K-1\}$; the model is then called as `model(x_t, t, y)` and learns
      $\nabla \log p_t(x \mid y)$. With `fit`, pass labelled data `(x, y)` and
      `lambda m, xy, k: diffusion_loss(m, path, xy[0], label=xy[1], key=k)`.
    - `label_dropout`: the probability $p_\text{uncond} \in [0, 1]$ of replacing
      the label by the null label $-1$ ("no class"), drawn per sample from `key`:
      classifier-free training (Ho & Salimans 2022), so that one model learns
      both $\nabla \log p_t(x \mid y)$ and $\nabla \log p_t(x)$, as
      [`classifier_free_guidance`][scorax.classifier_free_guidance] needs. A
      typical value is 0.1 to 0.2.
    - `time_sampling`: an
      [`AbstractTimeSampling`][scorax.AbstractTimeSampling], as above; default
      `UniformTime()`. Not used when `t` is given.
    """
    if not callable(weighting):
        check_choice(weighting, "weighting", WEIGHTINGS)
    if weighting == "edm" and not isinstance(parameterisation, EDMPrediction):
        raise ValueError(
            "`weighting`: 'edm' takes sigma_data from an EDMPrediction "
            f"parameterisation, got {parameterisation!r}; for another "
            "parameterisation pass the weight as a function (path, t) -> lambda."
        )
    if not isinstance(time_sampling, AbstractTimeSampling):
        raise ValueError(
            "`time_sampling` must be a scorax.AbstractTimeSampling, such as "
            f"scorax.UniformTime() or scorax.LogNormalNoise(), got {time_sampling!r}."
        )
    check_boundary_time(t_min)
    key, model = with_label(model, key, label, label_dropout)
    importance = jnp.ones((), x0.dtype)
    if t is None:
        time_key, key = jr.split(key)
        t, importance = time_sampling.draw(path, t_min, key=time_key, dtype=x0.dtype)
    t = check_time(jnp.asarray(t, x0.dtype))
    x_t, eps = path.sample(x0, t, key=key)
    target = convert(
        path, eps, x_t, t, source=NoisePrediction(), target=parameterisation
    )
    sigma = path.sigma(t)
    sigma = check(
        sigma,
        sigma > 0,
        f"`t`: diffusion_loss needs sigma(t) > 0, which fails at this t on "
        f"{type(path).__name__} (t = 0); use t >= t_min > 0.",
    )
    _, b = parameterisation.noise_coefficients(path, t)
    scale = _weight(path, t, weighting, parameterisation) * (b / sigma) ** 2
    return 0.5 * importance * scale * jnp.sum((model(x_t, t) - target) ** 2)
