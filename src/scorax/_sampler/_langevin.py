r"""Langevin-type samplers: unadjusted Langevin, annealed Langevin (NCSN) and the
predictor-corrector sampler of Song et al. (2021)."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import RealScalarLike
from .._misc import check_count, is_concrete
from .._parameterisation import (
    AbstractParameterisation,
    DataPrediction,
    NoisePrediction,
    ScorePrediction,
)
from .._path import AbstractGaussianPath
from ._common import (
    check_finite,
    check_model,
    check_positive,
    check_time_range,
    Model,
    num_evaluations,
    predict,
    SampleResult,
    ScoreFn,
    time_grid,
)


def with_start(
    x: Float[Array, "*shape"], states: Float[Array, " num *shape"] | None
) -> Float[Array, " num_saved *shape"] | None:
    """Prepend the starting point to the states a scan saved (None stays None)."""
    return None if states is None else jnp.concatenate([x[None], states])


def langevin_step(
    x: Float[Array, "*shape"],
    score: Float[Array, "*shape"],
    step_size: Array,
    key: PRNGKeyArray,
) -> Float[Array, "*shape"]:
    r"""$x + \epsilon s + \sqrt{2\epsilon}\, z$ with $z \sim \mathcal{N}(0, I)$."""
    z = jr.normal(key, x.shape, x.dtype)
    return x + step_size * score + jnp.sqrt(2 * step_size) * z


def langevin(
    score_fn: ScoreFn,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray,
    step_size: RealScalarLike,
    num_steps: int,
    trajectory: bool = False,
) -> SampleResult:
    r"""Unadjusted Langevin dynamics (Roberts & Tweedie 1996; the sampler of Song &
    Ermon 2019):

    $$x_{k+1} = x_k + \epsilon\, s(x_k) + \sqrt{2\epsilon}\, z_k, \qquad
    z_k \sim \mathcal{N}(0, I),$$

    the Euler-Maruyama discretisation of $\mathrm{d}x = \nabla \log p(x)\,
    \mathrm{d}t + \sqrt2\, \mathrm{d}w$, whose stationary law is $p$. With a
    positive step the chain's own stationary law is $p$ only up to $O(\epsilon)$:
    for $p = \mathcal{N}(\mu, \Sigma)$ it is exactly
    $\mathcal{N}(\mu, \Sigma (I - \tfrac{\epsilon}{2}\Sigma^{-1})^{-1})$.
    There is no Metropolis correction.

    **Arguments:**

    - `score_fn`: the score $s(x) \approx \nabla \log p(x)$, not time-conditional.
    - `x`: the starting point, of any shape.
    - `key`: a JAX PRNG key for the noise.
    - `step_size`: $\epsilon > 0$.
    - `num_steps`: the number of steps $K \ge 1$, one score evaluation each.
    - `trajectory`: also return the $K + 1$ states, with `times` $k\epsilon$ (the
      time of the Langevin diffusion each state approximates).

    **Returns:**

    A [`SampleResult`][scorax.SampleResult] with $x_K$ and `num_evaluations` $= K$.
    """
    check_count(num_steps, "num_steps")
    step_size = check_positive(step_size, "step_size").astype(x.dtype)
    check_model(score_fn, x)

    def step(x, key):
        x = langevin_step(x, score_fn(x), step_size, key)
        return x, x if trajectory else None

    final, states = jax.lax.scan(step, x, jr.split(key, num_steps))
    return SampleResult(
        sample=check_finite(final, "langevin"),
        num_evaluations=num_evaluations(num_steps),
        trajectory=with_start(x, states),
        times=step_size * jnp.arange(num_steps + 1, dtype=x.dtype)
        if trajectory
        else None,
    )


def _check_sigmas(sigmas: Array) -> None:
    if sigmas.ndim != 1 or sigmas.shape[0] < 1:
        raise ValueError(f"`sigmas` must be a 1-D array of levels, got {sigmas.shape}.")
    if is_concrete(sigmas):
        levels = np.asarray(sigmas)
        if not (np.all(levels > 0) and np.all(np.diff(levels) < 0)):
            raise ValueError(
                "`sigmas` must be positive and strictly decreasing (largest first, "
                f"as scorax.geometric_sigmas returns them), got {levels}."
            )


def annealed_langevin(
    model: Model,
    sigmas: Float[Array, " num_levels"],
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray,
    step_size: RealScalarLike = 2e-5,
    steps_per_level: int = 100,
    denoise: bool = True,
    trajectory: bool = False,
) -> SampleResult:
    r"""Annealed Langevin dynamics, Algorithm 1 of Song & Ermon (2019), "Generative
    modeling by estimating gradients of the data distribution".

    For each noise level $\sigma_1 > \dots > \sigma_L$ in turn, run $T$ Langevin
    steps with the step size scaled to the level,

    $$\alpha_i = \epsilon\, \frac{\sigma_i^2}{\sigma_L^2}, \qquad
    x \leftarrow x + \frac{\alpha_i}{2}\, s_\theta(x, \sigma_i) + \sqrt{\alpha_i}\,
    z,$$

    which keeps the signal-to-noise ratio of each update the same at every level.
    (In the notation of [`langevin`][scorax.langevin] each step has step size
    $\alpha_i / 2$.) With `denoise=True` a final step returns Tweedie's posterior
    mean at the smallest level, $x + \sigma_L^2\, s_\theta(x, \sigma_L)$, which
    removes the residual noise of scale $\sigma_L$ (Jolicoeur-Martineau et al.
    2021; Song & Ermon 2020).

    **Arguments:**

    - `model`: a noise-conditional score model called as `model(x, sigma)`, as
      trained by [`ncsn_loss`][scorax.ncsn_loss].
    - `sigmas`: the levels, positive and strictly decreasing, e.g.
      [`geometric_sigmas`][scorax.geometric_sigmas].
    - `x`: the starting point, in the paper uniform noise; any shape.
    - `key`: a JAX PRNG key for the noise.
    - `step_size`: $\epsilon > 0$; default $2 \times 10^{-5}$ as in the paper.
    - `steps_per_level`: $T \ge 1$; default 100.
    - `denoise`: finish with the denoising step (one more model evaluation).
    - `trajectory`: also return the $LT + 1$ states, with `times` holding the
      noise level each state was produced at (the first: $\sigma_1$).

    **Returns:**

    A [`SampleResult`][scorax.SampleResult]; `num_evaluations` is $LT$, plus one
    with `denoise`.
    """
    _check_sigmas(sigmas)
    sigmas = sigmas.astype(x.dtype)
    check_count(steps_per_level, "steps_per_level")
    step_size = check_positive(step_size, "step_size").astype(x.dtype)
    check_model(model, x, sigmas[0])
    levels = jnp.repeat(sigmas, steps_per_level)

    def step(x, inputs):
        sigma, key = inputs
        alpha = step_size * (sigma / sigmas[-1]) ** 2
        x = langevin_step(x, model(x, sigma), alpha / 2, key)
        return x, x if trajectory else None

    keys = jr.split(key, levels.shape[0])
    final, states = jax.lax.scan(step, x, (levels, keys))
    if denoise:
        final = final + sigmas[-1] ** 2 * model(final, sigmas[-1])
    return SampleResult(
        sample=check_finite(final, "annealed_langevin"),
        num_evaluations=num_evaluations(levels.shape[0] + int(denoise)),
        trajectory=with_start(x, states),
        times=jnp.concatenate([sigmas[:1], levels]) if trajectory else None,
    )


def predictor_corrector_sample(
    model: Model,
    path: AbstractGaussianPath,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray,
    num_steps: int = 1000,
    corrector_steps: int = 1,
    snr: RealScalarLike = 0.16,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    parameterisation: AbstractParameterisation = NoisePrediction(),
    denoise: bool = True,
    trajectory: bool = False,
    axis_name: str | None = None,
) -> SampleResult:
    r"""Predictor-corrector sampling (Song et al. 2021, "Score-based generative
    modeling through stochastic differential equations", Algorithms 2 and 3), on
    any Gaussian path.

    On the grid $t_0 = t_\text{max} > t_1 > \dots > t_N = t_\text{min}$, each step
    from $t = t_k$ to $s = t_{k+1}$ is

    - a **reverse-diffusion predictor**: with $a = \alpha(t)/\alpha(s)$ and
      $b^2 = \sigma(t)^2 - a^2 \sigma(s)^2$ the forward transition
      $x_t = a\, x_s + b\, z$ between the two times,
      $$x \leftarrow (2 - a)\, x + b^2\, s_\theta(x, t) + b\, z$$
      (for `VPPath` this is the paper's $(2 - \sqrt{1-\beta_i})x + \beta_i s +
      \sqrt{\beta_i} z$; for `VEPath`, $x + (\sigma_t^2 - \sigma_s^2) s +
      \sqrt{\sigma_t^2 - \sigma_s^2}\, z$);
    - then `corrector_steps` **Langevin corrector** steps at time $s$ with the
      signal-to-noise step rule
      $$\epsilon = 2 a^2 \left(r \frac{\|z\|}{\|s_\theta(x, s)\|}\right)^2, \qquad
      x \leftarrow x + \epsilon\, s_\theta(x, s) + \sqrt{2\epsilon}\, z,$$
      where $r$ is `snr`.

    The norms are of this one sample, unless `axis_name` names the `jax.vmap`
    axis the sampler runs under: then each norm is averaged over the batch, as
    the reference implementation does. Per-sample norms concentrate in high
    dimension (images) but not in low: in two dimensions $\|s_\theta\|$ comes
    close to 0 near modes and saddles, the step blows up, and batch averaging is
    needed.

    The chain stops at $t_\text{min}$, where $p_{t_\text{min}}$ is the data
    blurred by noise of scale $\sigma(t_\text{min})$; `denoise=True` then returns
    Tweedie's posterior mean $\mathbb{E}[x_0 \mid x_{t_\text{min}}]$ read from the
    model ([`DataPrediction`][scorax.DataPrediction]).

    **Arguments:**

    - `model`: called as `model(x_t, t)`, predicting `parameterisation`.
    - `path`: the Gaussian path the model was trained on.
    - `x`: the starting point, a draw from
      [`prior_sample`][scorax.AbstractGaussianPath.prior_sample].
    - `key`: a JAX PRNG key for the noise.
    - `num_steps`: predictor steps $N \ge 1$.
    - `corrector_steps`: Langevin steps after each predictor step, $\ge 0$ ($0$
      gives the predictor alone, "reverse diffusion"); default 1.
    - `snr`: $r > 0$; default 0.16, the paper's value for VE on CIFAR-10.
    - `t_min`, `t_max`: the time interval, $0 < t_\text{min} < t_\text{max} \le 1$.
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `denoise`: finish with the posterior mean (one more model evaluation).
    - `trajectory`: also return the $N + 1$ states after each full step, with
      `times` $t_k$.
    - `axis_name`: the name of an enclosing `jax.vmap` axis
      (`jax.vmap(..., axis_name="batch")`) to average the step-size norms over,
      or `None` for per-sample norms.

    **Returns:**

    A [`SampleResult`][scorax.SampleResult]; `num_evaluations` is
    $N(1 + \text{corrector\_steps})$, plus one with `denoise`.
    """
    check_count(num_steps, "num_steps")
    if (
        isinstance(corrector_steps, bool)
        or not isinstance(corrector_steps, int)
        or corrector_steps < 0
    ):
        raise ValueError(
            f"`corrector_steps` must be an integer >= 0, got {corrector_steps!r}."
        )
    check_time_range(t_min, t_max)
    snr = check_positive(snr, "snr").astype(x.dtype)
    times = time_grid(t_max, t_min, num_steps, x.dtype)
    check_model(model, x, times[0])

    def score(x, t):
        return predict(
            model, path, x, t, source=parameterisation, target=ScorePrediction()
        )

    def corrector(x, inputs):
        s, retention, key = inputs
        g = score(x, s)
        z = jr.normal(key, x.shape, x.dtype)
        g_norm, z_norm = jnp.sqrt(jnp.sum(g**2)), jnp.sqrt(jnp.sum(z**2))
        if axis_name is not None:
            g_norm, z_norm = jax.lax.pmean((g_norm, z_norm), axis_name)
        ratio = jnp.where(g_norm > 0, snr * z_norm / g_norm, 0)
        step_size = 2 * retention * ratio**2
        return x + step_size * g + jnp.sqrt(2 * step_size) * z, None

    def step(x, inputs):
        t, s, key = inputs
        predictor_key, corrector_key = jr.split(key)
        a = path.alpha(t) / path.alpha(s)
        b = jnp.sqrt(jnp.maximum(path.sigma(t) ** 2 - (a * path.sigma(s)) ** 2, 0))
        z = jr.normal(predictor_key, x.shape, x.dtype)
        x = (2 - a) * x + b**2 * score(x, t) + b * z
        if corrector_steps:
            keys = jr.split(corrector_key, corrector_steps)
            x, _ = jax.lax.scan(lambda x, key: corrector(x, (s, a**2, key)), x, keys)
        return x, x if trajectory else None

    keys = jr.split(key, num_steps)
    final, states = jax.lax.scan(step, x, (times[:-1], times[1:], keys))
    if denoise:
        final = predict(
            model,
            path,
            final,
            times[-1],
            source=parameterisation,
            target=DataPrediction(),
        )
    return SampleResult(
        sample=check_finite(final, "predictor_corrector_sample"),
        num_evaluations=num_evaluations(
            num_steps * (1 + corrector_steps) + int(denoise)
        ),
        trajectory=with_start(x, states),
        times=times if trajectory else None,
    )
