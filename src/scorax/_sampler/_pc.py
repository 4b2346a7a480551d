r"""The predictor-corrector sampler of Song et al. (2021), on any Gaussian path."""

from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_count, check_positive, to_count
from .._custom_types import IntScalarLike, RealScalarLike
from .._parameterisation import (
    AbstractParameterisation,
    DataPrediction,
    NoisePrediction,
    ScorePrediction,
)
from .._path import AbstractGaussianPath
from .._predict import Model
from ._abstract import (
    AbstractDenoisingSampler,
    AbstractMarkovSampler,
    normal,
    Problem,
)
from ._grid import uniform_times
from ._loop import run
from ._result import SampleResult


class _Time(NamedTuple):
    t: Array


class PredictorCorrector(AbstractMarkovSampler, AbstractDenoisingSampler[Array]):
    """The reverse-diffusion predictor and `corrector_steps` Langevin corrector
    steps with signal-to-noise ratio `snr`, on an evenly spaced time grid; the
    state is the sample."""

    name: ClassVar[str] = "predictor_corrector_sample"

    corrector_steps: int = eqx.field(default=1, converter=to_count)
    snr: RealScalarLike = 0.16
    axis_name: str | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_count(self.corrector_steps, "corrector_steps", minimum=0)
        check_positive(self.snr, "snr")

    def evaluations(self, num_steps: int) -> int:
        return num_steps * (1 + self.corrector_steps)

    def needs_key(self) -> bool:
        return True

    def draws(self) -> int:
        return 1 + self.corrector_steps

    def grid(self, problem: Problem, num_steps: int, dtype) -> _Time:
        return _Time(uniform_times(problem.t_max, problem.t_min, num_steps, dtype))

    def _corrector(self, problem: Problem, x, s, retention, key) -> Array:
        g = problem.read(x, s, ScorePrediction())
        z = normal(key, x)
        g_norm, z_norm = jnp.sqrt(jnp.sum(g**2)), jnp.sqrt(jnp.sum(z**2))
        if self.axis_name is not None:
            g_norm, z_norm = jax.lax.pmean((g_norm, z_norm), self.axis_name)
        snr = check_positive(self.snr, "snr").astype(x.dtype)
        ratio = jnp.where(g_norm > 0, snr * z_norm / g_norm, 0)
        step_size = 2 * retention * ratio**2
        return x + step_size * g + jnp.sqrt(2 * step_size) * z

    def step(
        self,
        problem: Problem,
        state: Array,
        s: _Time,
        t: _Time,
        key: PRNGKeyArray | Array,
        index: Array,
    ) -> tuple[Array, Array]:
        """From time `s.t` to the next, earlier time `t.t`."""
        path = problem.model_path
        x, now, then = state, s.t, t.t
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            predictor_key, corrector_key = jr.split(key)
            corrector_keys = jr.split(corrector_key, self.corrector_steps)
        else:  # the draws given: the predictor's, then the corrector's
            draws = key.reshape((self.draws(), *x.shape))
            predictor_key, corrector_keys = draws[0], draws[1:]
        a = path.alpha(now) / path.alpha(then)
        b = jnp.sqrt(jnp.maximum(path.sigma(now) ** 2 - (a * path.sigma(then)) ** 2, 0))
        z = normal(predictor_key, x)
        x = (2 - a) * x + b**2 * problem.read(x, now, ScorePrediction()) + b * z
        if self.corrector_steps:
            x, _ = jax.lax.scan(
                lambda x, key: (self._corrector(problem, x, then, a**2, key), None),
                x,
                corrector_keys,
            )
        return x, state

    def denoise(self, problem: Problem, x: Array, node: _Time) -> Array:
        """Tweedie's posterior mean at the last time."""
        return problem.read(x, node.t, DataPrediction())


def predictor_corrector_sample(
    model: Model,
    path: AbstractGaussianPath,
    x: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray | None = None,
    noise: Float[Array, " num_steps *noise_shape"] | None = None,
    num_steps: IntScalarLike = 1000,
    corrector_steps: IntScalarLike = 1,
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
    - `key`: a JAX PRNG key for the noise (or `noise`).
    - `noise`: the Gaussian draws, given instead of `key`: standard normal, of
      shape `(num_steps, 1 + corrector_steps, *x.shape)` (`(num_steps,
      *x.shape)` without corrector steps), the predictor's draw of step $k$ in
      `noise[k, 0]` and the corrector's after it.
    - `num_steps`: predictor steps $N \ge 1$.
    - `corrector_steps`: Langevin steps after each predictor step, $\ge 0$ ($0$
      gives the predictor alone, "reverse diffusion"); default 1.
    - `snr`: $r > 0$; default 0.16, the paper's value for VE on CIFAR-10.
    - `t_min`, `t_max`: the time interval, $0 \le t_\text{min} < t_\text{max} \le 1$ ($t_\text{min} = 0$ only on paths with $\sigma(0) > 0$).
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
    num_steps = check_count(num_steps, "num_steps")
    return run(
        PredictorCorrector(
            corrector_steps=corrector_steps, snr=snr, axis_name=axis_name
        ),
        Problem(model, path, parameterisation, t_min, t_max),
        x,
        num_steps=num_steps,
        key=key,
        noise=noise,
        denoise=denoise,
        trajectory=trajectory,
    )
