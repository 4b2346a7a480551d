r"""Conditional sampling as model transformations: classifier-free guidance,
classifier (and any likelihood) guidance, and inpainting by replacement.

Each takes a model and returns a model (or runs a sampler you choose), so every
sampler and [`log_likelihood`][scorax.log_likelihood] accepts the result as it
is: guidance is a function of models, not a flag of samplers.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from ._checks import (
    check,
    check_count,
    check_finite_scalar,
    check_label,
    check_start,
)
from ._custom_types import FloatScalar, IntScalarLike, RealScalarLike
from ._parameterisation import (
    AbstractParameterisation,
    convert,
    NoisePrediction,
    ScorePrediction,
)
from ._path import AbstractGaussianPath
from ._sampler import SampleResult


LogLikelihood = Callable[[Float[Array, "*shape"], FloatScalar], FloatScalar]


class _ClassifierFree(eqx.Module):
    model: Any
    label: Int[Array, ""]
    weight: Float[Array, ""]

    def __call__(self, x: Float[Array, "*shape"], t: RealScalarLike) -> Array:
        # One batched call of the network for the class and the null label.
        labels = jnp.stack([self.label, jnp.full_like(self.label, -1)])
        conditional, unconditional = jax.vmap(lambda y: self.model(x, t, y))(labels)
        weight = self.weight.astype(x.dtype)
        return (1 + weight) * conditional - weight * unconditional


def classifier_free_guidance(
    model: Callable[..., Array],
    label: Int[ArrayLike, ""] | None,
    *,
    weight: RealScalarLike,
) -> Callable[[Array, Array], Array]:
    r"""Classifier-free guidance (Ho & Salimans 2022): the model of class $y$ at
    guidance weight $w$,

    $$\tilde m(x, t) = (1 + w)\, m(x, t, y) - w\, m(x, t, \varnothing),$$

    for a class-conditional model $m(x, t, y)$ trained with label dropout (see
    `label_dropout` of [`diffusion_loss`][scorax.diffusion_loss]), where
    $\varnothing$ is the null label $y = -1$. Every parameterisation is affine in
    the score with the same coefficients for both calls, so in any of them this
    is the guided score $(1 + w) \nabla \log p_t(x \mid y) - w \nabla \log p_t(x)
    = \nabla \log p_t(x) + (1 + w) \nabla \log p_t(y \mid x)$: $w = 0$ is the
    conditional model, larger $w$ sharpens the class at the cost of diversity.

    **Arguments:**

    - `model`: called as `model(x, t, y)`, e.g. a [`ScoreMLP`][scorax.ScoreMLP]
      or [`UNet`][scorax.UNet] built with `num_classes`.
    - `label`: the class $y$, an integer in $[0, K)$ where the model says its
      number of classes $K$ (`num_classes`, as scorax's models and
      `ExactModel` do), or $-1$ (or `None`) for the unconditional model.
    - `weight`: $w$, finite; may be traced, e.g. `jax.vmap` over several weights.

    **Returns:**

    A model `guided(x, t)` in the same parameterisation, an Equinox module
    (jit- and vmap-friendly). Each call evaluates the network once on a batch of
    two, the class and the null label.
    """
    label = check_label(
        label, allow_null=True, num_classes=getattr(model, "num_classes", None)
    )
    return _ClassifierFree(model, label, check_finite_scalar(weight, "weight"))


class _LikelihoodGuided(eqx.Module):
    model: Any
    log_likelihood: Any
    scale: Float[Array, ""]
    path: AbstractGaussianPath
    parameterisation: AbstractParameterisation

    def __call__(self, x: Float[Array, "*shape"], t: RealScalarLike) -> Array:
        score = convert(
            self.path,
            self.model(x, t),
            x,
            t,
            source=self.parameterisation,
            target=ScorePrediction(),
        )
        gradient = jax.grad(lambda y: self.log_likelihood(y, t))(x)
        guided = score + self.scale.astype(x.dtype) * gradient
        return convert(
            self.path,
            guided,
            x,
            t,
            source=ScorePrediction(),
            target=self.parameterisation,
        )


def posterior_guidance(
    model: Callable[[Array, Array], Array],
    log_likelihood: LogLikelihood,
    *,
    path: AbstractGaussianPath,
    scale: RealScalarLike = 1.0,
    parameterisation: AbstractParameterisation = NoisePrediction(),
) -> Callable[[Array, Array], Array]:
    r"""Posterior sampling: guide a model by the log-likelihood of an observation.

    By Bayes, the score of the noisy data given an observation $o$ is

    $$\nabla_{x} \log p_t(x \mid o) = \nabla_x \log p_t(x) + \nabla_x \log
    p_t(o \mid x),$$

    so a model of $\nabla \log p_t$ plus the gradient of a (noise-conditional)
    log-likelihood $\log p_t(o \mid x_t)$ samples the posterior with any sampler
    (Song et al. 2021, section 5; Chung et al. 2023, "Diffusion posterior
    sampling", approximate the likelihood through the denoiser). The sum is taken
    on the score and converted back, so the model may predict anything. With the
    exact likelihood (e.g. [`GaussianMixture.posterior_log_prob`][scorax.GaussianMixture.posterior_log_prob]
    for inpainting, or the exact class posterior) the result is the exact
    posterior score.

    **Arguments:**

    - `model`: called as `model(x_t, t)`, predicting `parameterisation`.
    - `log_likelihood`: `log_likelihood(x_t, t) -> scalar`, differentiable in
      `x_t`.
    - `path`: the Gaussian path the model was trained on.
    - `scale`: a finite factor $s$ on the likelihood term (1: Bayes' rule; may
      be traced).
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.

    **Returns:**

    The guided model `guided(x, t)`, in the model's parameterisation.
    """
    return _LikelihoodGuided(
        model,
        log_likelihood,
        check_finite_scalar(scale, "scale"),
        path,
        parameterisation,
    )


class _ClassLikelihood(eqx.Module):
    log_classifier: Any
    label: Int[Array, ""]

    def __call__(self, x: Array, t: RealScalarLike) -> Array:
        return self.log_classifier(x, t, self.label)


def classifier_guidance(
    model: Callable[[Array, Array], Array],
    log_classifier: Callable[[Array, Array, Array], Array],
    label: Int[ArrayLike, ""],
    *,
    path: AbstractGaussianPath,
    scale: RealScalarLike = 1.0,
    parameterisation: AbstractParameterisation = NoisePrediction(),
    num_classes: IntScalarLike | None = None,
) -> Callable[[Array, Array], Array]:
    r"""Classifier guidance (Dhariwal & Nichol 2021; Song et al. 2021): add the
    gradient of a noise-conditional classifier's log-probability of class $y$,

    $$\nabla_x \log p_t(x) + s\, \nabla_x \log p_\phi(y \mid x, t),$$

    read in the model's own parameterisation through [`convert`][scorax.convert].
    With the exact classifier and $s = 1$ this is the exact conditional score
    $\nabla \log p_t(x \mid y)$; $s > 1$ sharpens the class. It is
    [`posterior_guidance`][scorax.posterior_guidance] with the class as the
    observation.

    **Arguments:**

    - `model`: called as `model(x_t, t)`, predicting `parameterisation`.
    - `log_classifier`: `log_classifier(x_t, t, y) -> scalar`, the log-probability
      of class `y`, e.g. `mixture.marginal(path, t).log_class_posterior(x)[y]`.
    - `label`: the class $y$, an integer $\ge 0$ (and $< K$ with `num_classes`).
    - `path`: the Gaussian path the model was trained on.
    - `scale`: $s$, finite; default 1.
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `num_classes`: the classifier's number of classes $K$, to check `label`
      against; default `None` (the classifier cannot say it).

    **Returns:**

    The guided model `guided(x, t)`, in the model's parameterisation.
    """
    return posterior_guidance(
        model,
        _ClassLikelihood(
            log_classifier,
            check_label(
                label,
                allow_null=False,
                num_classes=None
                if num_classes is None
                else check_count(num_classes, "num_classes"),
            ),
        ),
        path=path,
        scale=scale,
        parameterisation=parameterisation,
    )


def _time_key(key: PRNGKeyArray, t: Array) -> PRNGKeyArray:
    """A key for time `t`: the same time gives the same key."""
    t = jnp.asarray(t)
    if t.dtype == jnp.float64:
        bits = jax.lax.bitcast_convert_type(t, jnp.uint64)
        low = (bits & 0xFFFFFFFF).astype(jnp.uint32)
        return jr.fold_in(jr.fold_in(key, low), (bits >> 32).astype(jnp.uint32))
    return jr.fold_in(
        key, jax.lax.bitcast_convert_type(t.astype(jnp.float32), jnp.uint32)
    )


class _Replacing(eqx.Module):
    model: Any
    path: AbstractGaussianPath
    known: Array
    mask: Array
    key: PRNGKeyArray

    def __call__(self, x: Float[Array, "*shape"], t: RealScalarLike) -> Array:
        t = jnp.asarray(t, x.dtype)
        noise = jr.normal(_time_key(self.key, t), x.shape, x.dtype)
        noisy = self.path.alpha(t) * self.known + self.path.sigma(t) * noise
        return self.model(jnp.where(self.mask, noisy.astype(x.dtype), x), t)


def inpaint(
    sampler: Callable[[Any, Array, PRNGKeyArray], SampleResult],
    model: Callable[[Array, Array], Array],
    path: AbstractGaussianPath,
    x: Float[Array, "*shape"],
    *,
    known: Float[Array, "*shape"],
    mask: Bool[ArrayLike, "*shape"],
    key: PRNGKeyArray,
) -> SampleResult:
    r"""Inpainting by replacement (Song et al. 2021, appendix I; the base of
    RePaint, Lugmayr et al. 2022): sample the unknown entries of $x_0$ given the
    known ones, with any sampler.

    Wherever the model is called at time $t$, the known entries of its input are
    replaced by a fresh draw of the forward process from the known data,
    $\alpha(t)\, x_0^\text{known} + \sigma(t)\, \varepsilon$; the unknown entries
    evolve under the sampler as usual. Every scorax sampler updates each entry
    by an affine function of that entry and the model's output, so this is the
    replacement method, whatever the sampler. At the end the known entries are
    set to the known data exactly.

    It is an approximation: the unknown entries follow the score conditioned on
    the *noisy* known entries, $\nabla \log p_t(x^\text{unknown} \mid
    x_t^\text{known})$, rather than on the clean ones. For strongly coupled
    entries the result is biased towards the unconditional law (for two
    coordinates with correlation 0.8, the conditional mean comes out about 40%
    too small). For the exact posterior, guide the model by the likelihood of the
    known entries with [`posterior_guidance`][scorax.posterior_guidance] (exact
    with an exact likelihood), and use `inpaint` on top to keep the known
    entries exact.

    **Arguments:**

    - `sampler`: `sampler(model, x, key) -> SampleResult`, e.g.
      `lambda m, x, k: scorax.ddpm_sample(m, schedule, x, key=k)`.
    - `model`: called as `model(x_t, t)`, in any parameterisation.
    - `path`: the path the model's times refer to (for
      [`ddpm_sample`][scorax.ddpm_sample], `schedule.path`).
    - `x`: the starting point, e.g. a prior draw.
    - `known`: the data, shaped like `x`; only its entries where `mask` is true
      are used.
    - `mask`: `True` where an entry is known.
    - `key`: a JAX PRNG key, for the sampler and the replacement noise.

    **Returns:**

    The sampler's [`SampleResult`][scorax.SampleResult], with the known entries
    of the sample set exactly.
    """
    mask = jnp.asarray(mask, bool)
    if mask.shape != x.shape or known.shape != x.shape:
        raise ValueError(
            f"`known` and `mask` must be shaped like `x` {x.shape}, got "
            f"{known.shape} and {mask.shape}."
        )
    x = check_start(x)
    known = check(
        known,
        jnp.all(jnp.isfinite(known) | ~mask),
        "`known` must be finite where `mask` is true, but it holds a NaN or an "
        "infinity there.",
    )
    replacement_key, sampler_key = jr.split(key)
    result = sampler(
        _Replacing(model, path, known, mask, replacement_key), x, sampler_key
    )
    return eqx.tree_at(
        lambda r: r.sample, result, jnp.where(mask, known, result.sample)
    )
