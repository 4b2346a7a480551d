r"""Consistency training and distillation (Song et al. 2023; Song & Dhariwal
2023): the discretisation curricula N(k), the recipes by name, and the two
losses."""

import abc
import math
from typing import Literal, NamedTuple

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.special as jss
from jax.typing import DTypeLike
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .._checks import (
    check_choice,
    check_consistency_model,
    check_count,
    check_model,
    check_positive,
    check_range,
    to_count,
)
from .._custom_types import FloatScalar, IntScalarLike, RealScalarLike
from .._parameterisation import AbstractParameterisation, NoisePrediction
from .._path import AbstractGaussianPath, default_t_max
from .._predict import Model
from .._sampler import rho_interpolate, teacher_step, TeacherMethod


LevelSampling = Literal["uniform", "lognormal"]
Distance = Literal["squared", "l1", "pseudo_huber"]
ConsistencyWeighting = Literal["uniform", "inverse_step"]
RECIPES: tuple[str, ...] = ("improved", "original_ct", "original_cd")
# Song & Dhariwal (2023), Section 3.3: c = 0.00054 sqrt(d).
_HUBER_PER_ROOT_DIM = 0.00054


class AbstractDiscretisation(eqx.Module):
    r"""The discretisation schedule $N(k)$ of consistency training: the number of
    noise levels at training step $k$, at most `max_levels`."""

    @property
    @abc.abstractmethod
    def max_levels(self) -> int:
        """The largest $N(k)$, a Python integer (it fixes array shapes)."""

    @abc.abstractmethod
    def num_levels(self, step: Int[ArrayLike, "*steps"]) -> Int[Array, "*steps"]:
        """$N(k) \\ge 2$ at step $k$ (an int32 scalar; `step` may be traced)."""


class FixedDiscretisation(AbstractDiscretisation):
    r"""$N(k) = N$ at every step: the fixed schedule of consistency distillation
    (Song et al. 2023 use $N = 18$ on CIFAR-10).

    **Arguments:**

    - `levels`: $N \ge 2$.
    """

    levels: int = eqx.field(static=True, converter=to_count)

    def __check_init__(self):
        check_count(self.levels, "levels", minimum=2)

    @property
    def max_levels(self) -> int:
        return self.levels

    def num_levels(self, step: Int[ArrayLike, "*steps"]) -> Int[Array, "*steps"]:
        return jnp.full(jnp.shape(step), self.levels, jnp.int32)


class SquareRootCurriculum(AbstractDiscretisation):
    r"""The curriculum of the original consistency training (Song et al. 2023,
    Appendix C):

    $$N(k) = \left\lceil \sqrt{\tfrac{k}{K}\big((s_1 + 1)^2 - s_0^2\big) + s_0^2}
    - 1 \right\rceil + 1,$$

    from $N(0) = s_0$ to $N(K) = s_1 + 1$.

    **Arguments:**

    - `num_steps`: $K \ge 1$, the training steps.
    - `start`: $s_0 \ge 2$; default 2.
    - `end`: $s_1 \ge s_0$; default 150.
    """

    num_steps: int = eqx.field(static=True, converter=to_count)
    start: int = eqx.field(static=True, default=2, converter=to_count)
    end: int = eqx.field(static=True, default=150, converter=to_count)

    def __check_init__(self):
        check_count(self.num_steps, "num_steps")
        check_count(self.start, "start", minimum=2)
        check_count(self.end, "end", minimum=self.start)

    @property
    def max_levels(self) -> int:
        return self.end + 1

    def num_levels(self, step: Int[ArrayLike, "*steps"]) -> Int[Array, "*steps"]:
        k = jnp.minimum(jnp.asarray(step), self.num_steps).astype(jnp.float32)
        s0, s1 = self.start, self.end
        inner = k / self.num_steps * ((s1 + 1) ** 2 - s0**2) + s0**2
        levels = jnp.ceil(jnp.sqrt(inner) - 1).astype(jnp.int32) + 1
        return jnp.clip(levels, s0, s1 + 1)


class DoublingCurriculum(AbstractDiscretisation):
    r"""The exponential curriculum of improved consistency training (Song &
    Dhariwal 2023, eq. 11): the number of levels doubles at even intervals,

    $$N(k) = \min\big(s_0\, 2^{\lfloor k / K' \rfloor}, s_1\big) + 1, \qquad
    K' = \left\lfloor \frac{K}{\log_2 \lfloor s_1 / s_0 \rfloor + 1}
    \right\rfloor.$$

    **Arguments:**

    - `num_steps`: $K \ge 1$, the training steps.
    - `start`: $s_0 \ge 1$; default 10.
    - `end`: $s_1 \ge s_0$; default 1280.
    """

    num_steps: int = eqx.field(static=True, converter=to_count)
    start: int = eqx.field(static=True, default=10, converter=to_count)
    end: int = eqx.field(static=True, default=1280, converter=to_count)

    def __check_init__(self):
        check_count(self.num_steps, "num_steps")
        check_count(self.start, "start")
        check_count(self.end, "end", minimum=self.start)

    @property
    def max_levels(self) -> int:
        return self.end + 1

    def interval(self) -> int:
        """$K'$, the steps between doublings (at least 1)."""
        doublings = math.log2(self.end // self.start) + 1
        return max(int(self.num_steps // doublings), 1)

    def num_levels(self, step: Int[ArrayLike, "*steps"]) -> Int[Array, "*steps"]:
        doublings = jnp.minimum(jnp.asarray(step) // self.interval(), 30)
        levels = self.start * jnp.left_shift(1, doublings.astype(jnp.int32))
        return jnp.minimum(levels, self.end).astype(jnp.int32) + 1


class LevelPair(NamedTuple):
    """Two adjacent levels of a drawn step: their times `t_low` < `t_high`, the
    index `n` of the lower, and the loss weight there."""

    n: Int[Array, ""]
    t_low: Float[Array, ""]
    t_high: Float[Array, ""]
    weight: Float[Array, ""]


class ConsistencyRecipe(eqx.Module):
    r"""What a consistency loss is made of (Song et al. 2023; Song & Dhariwal
    2023): the levels, how a pair of adjacent levels is drawn, the distance, the
    weight, and the target network's decay. Get the papers' recipes by name with
    [`consistency_recipe`][scorax.consistency_recipe].

    **The levels.** At step $k$, $N = N(k)$ noise levels $\tilde\sigma = \sigma /
    \alpha$ are $\rho$-spaced between those of $t_\text{min}$ (the model's) and
    $t_\text{max}$,

    $$\tilde\sigma_i = \Big(\tilde\sigma_\text{min}^{1/\rho} + \tfrac{i}{N - 1}
    \big(\tilde\sigma_\text{max}^{1/\rho} - \tilde\sigma_\text{min}^{1/\rho}\big)
    \Big)^\rho, \qquad t_i = \tilde\sigma^{-1}(\tilde\sigma_i),$$

    with $t_0 = t_\text{min}$ exactly, so the pair $(t_0, t_1)$ anchors the model to
    its boundary condition. A pair $(t_n, t_{n+1})$, $0 \le n \le N - 2$, is drawn
    uniformly (`"uniform"`: $n = \lfloor u (N - 1) \rfloor$, $u \sim
    \mathcal{U}[0, 1)$) or with the discretised lognormal of improved consistency
    training (`"lognormal"`, eq. 12):

    $$p(n) \propto \operatorname{erf}\Big(\frac{\log \tilde\sigma_{n+1} -
    P_\text{mean}}{\sqrt2\, P_\text{std}}\Big) - \operatorname{erf}\Big(\frac{\log
    \tilde\sigma_n - P_\text{mean}}{\sqrt2\, P_\text{std}}\Big).$$

    **The loss** of the pair is $\lambda_n\, d\big(f_\theta(x_{t_{n+1}}, t_{n+1}),
    f_{\theta^-}(\hat x_{t_n}, t_n)\big)$ with $d$ the squared distance $\|a -
    b\|^2$, the $\ell_1$ distance $\|a - b\|_1$ or the pseudo-Huber distance
    $\sqrt{\|a - b\|^2 + c^2} - c$ (Song & Dhariwal's choice, with $c = 0.00054
    \sqrt{d}$ for data of $d$ entries unless `huber_c` is given), and $\lambda_n =
    1$ (`"uniform"`) or $1 / (\tilde\sigma_{n+1} - \tilde\sigma_n)$
    (`"inverse_step"`).

    **The target** $\theta^-$ follows $\theta^- \leftarrow \mu\,\theta^- + (1 -
    \mu)\,\theta$ (pass [`decay`][scorax.ConsistencyRecipe.decay] to
    [`fit`][scorax.fit]'s `target_decay`): a constant $\mu$ = `target_decay`, or,
    with `decay_follows_levels`, the original CT's $\mu(k) = \exp\big(N(0) \log
    \mu_0 / N(k)\big)$. With $\mu = 0$, improved training's choice, the target is
    the model itself under a stop-gradient: pass `target_model=None` to the loss
    and no `target_decay` to `fit`.

    **Arguments:**

    - `discretisation`: $N(k)$, an
      [`AbstractDiscretisation`][scorax.AbstractDiscretisation].
    - `level_sampling`: `"uniform"` (default) or `"lognormal"`.
    - `lognormal_mean`, `lognormal_std`: $P_\text{mean}$, $P_\text{std} > 0$;
      default $-1.1$ and $2.0$.
    - `distance`: `"squared"` (default), `"l1"` or `"pseudo_huber"`.
    - `huber_c`: $c > 0$ for the pseudo-Huber distance; default `None`, $0.00054
      \sqrt{d}$.
    - `weighting`: `"uniform"` (default) or `"inverse_step"`.
    - `target_decay`: $\mu$ (or $\mu_0$) in $[0, 1)$; default 0.
    - `decay_follows_levels`: use $\mu(k)$ above; default `False`.
    - `rho`: $\rho > 0$; default 7.
    - `t_max`: the top level's time; default 1 (0.99 where $\alpha(1) = 0$).
    """

    discretisation: AbstractDiscretisation
    level_sampling: LevelSampling = eqx.field(static=True, default="uniform")
    lognormal_mean: RealScalarLike = -1.1
    lognormal_std: RealScalarLike = 2.0
    distance: Distance = eqx.field(static=True, default="squared")
    huber_c: RealScalarLike | None = None
    weighting: ConsistencyWeighting = eqx.field(static=True, default="uniform")
    target_decay: float = eqx.field(static=True, default=0.0, converter=float)
    decay_follows_levels: bool = eqx.field(static=True, default=False)
    rho: RealScalarLike = 7.0
    t_max: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not isinstance(self.discretisation, AbstractDiscretisation):
            raise ValueError(
                "`discretisation` must be an AbstractDiscretisation (such as "
                "FixedDiscretisation(18) or DoublingCurriculum(num_steps)), got "
                f"{type(self.discretisation).__name__}."
            )
        check_choice(self.level_sampling, "level_sampling", ("uniform", "lognormal"))
        check_choice(self.distance, "distance", ("squared", "l1", "pseudo_huber"))
        check_choice(self.weighting, "weighting", ("uniform", "inverse_step"))
        check_positive(self.lognormal_std, "lognormal_std")
        check_positive(self.rho, "rho")
        if self.huber_c is not None:
            check_positive(self.huber_c, "huber_c")
        if not 0 <= self.target_decay < 1:
            raise ValueError(
                f"`target_decay` must lie in [0, 1), got {self.target_decay}."
            )
        if self.t_max is not None and not 0 < self.t_max <= 1:
            raise ValueError(f"`t_max` must lie in (0, 1], got {self.t_max}.")

    def top_time(self, path: AbstractGaussianPath) -> float:
        """The time of the top level: `t_max`, or 1 (0.99 where alpha(1) = 0)."""
        return default_t_max(path) if self.t_max is None else self.t_max

    def decay(self, step: Int[ArrayLike, "*steps"]) -> Float[Array, "*steps"]:
        r"""$\mu(k)$, the target's decay after step $k$: for
        [`fit`][scorax.fit]'s `target_decay`."""
        mu = jnp.asarray(self.target_decay, jnp.float32)
        if not self.decay_follows_levels:
            return jnp.full(jnp.shape(step), mu)
        schedule = self.discretisation
        ratio = schedule.num_levels(0) / schedule.num_levels(step)
        return jnp.where(mu > 0, jnp.exp(ratio * jnp.log(mu)), 0.0)

    def levels(
        self,
        path: AbstractGaussianPath,
        t_min: float,
        step: Int[ArrayLike, ""],
        dtype: DTypeLike,
    ) -> tuple[Float[Array, " max_levels"], Int[Array, ""]]:
        r"""The $\rho$-spaced noise levels $\tilde\sigma_i$ at step $k$, padded to
        `max_levels` (entries past $N(k)$ repeat $\tilde\sigma_\text{max}$), and
        $N(k)$."""
        num = self.discretisation.num_levels(step)
        t_max = self.top_time(path)
        low = path.noise_to_signal(jnp.asarray(t_min, dtype))
        high = path.noise_to_signal(jnp.asarray(t_max, dtype))
        rho = jnp.asarray(self.rho, dtype)
        index = jnp.arange(self.discretisation.max_levels, dtype=dtype)
        fraction = jnp.minimum(index / (num - 1).astype(dtype), 1)
        return rho_interpolate(low, high, fraction, rho).at[0].set(low), num

    def draw_pair(
        self,
        path: AbstractGaussianPath,
        t_min: float,
        step: Int[ArrayLike, ""],
        *,
        key: PRNGKeyArray,
        dtype: DTypeLike,
    ) -> LevelPair:
        """A pair of adjacent levels at step $k$, their times and weight."""
        levels, num = self.levels(path, t_min, step, dtype)
        if self.level_sampling == "uniform":
            u = jr.uniform(key, (), dtype)
            n = jnp.minimum(jnp.floor(u * (num - 1)).astype(jnp.int32), num - 2)
        else:
            mean = jnp.asarray(self.lognormal_mean, dtype)
            std = jnp.asarray(self.lognormal_std, dtype)
            cdf = jss.erf((jnp.log(levels) - mean) / (2**0.5 * std))
            mass = cdf[1:] - cdf[:-1]
            allowed = jnp.arange(levels.shape[0] - 1) < num - 1
            logits = jnp.where(allowed & (mass > 0), jnp.log(mass), -jnp.inf)
            n = jr.categorical(key, logits).astype(jnp.int32)
        low, high = levels[n], levels[n + 1]
        t_low = jnp.where(n == 0, jnp.asarray(t_min, dtype), _time(path, low))
        t_max = self.top_time(path)
        t_high = jnp.where(
            n + 1 == num - 1, jnp.asarray(t_max, dtype), _time(path, high)
        )
        weight = 1 / (high - low) if self.weighting == "inverse_step" else 1.0
        return LevelPair(n, t_low, t_high, jnp.asarray(weight, dtype))

    def compare(
        self, a: Float[Array, "*shape"], b: Float[Array, "*shape"]
    ) -> FloatScalar:
        """$d(a, b)$, the recipe's distance."""
        diff = (a - b).ravel()
        if self.distance == "l1":
            return jnp.sum(jnp.abs(diff))
        squared = jnp.sum(diff**2)
        if self.distance == "squared":
            return squared
        c = self.huber_c
        c = _HUBER_PER_ROOT_DIM * math.sqrt(diff.size) if c is None else c
        c = jnp.asarray(c, diff.dtype)
        return jnp.sqrt(squared + c**2) - c


def _time(path: AbstractGaussianPath, level: Array) -> Array:
    return path.inverse_noise_to_signal(level).astype(level.dtype)


def consistency_recipe(name: str, *, num_steps: IntScalarLike) -> ConsistencyRecipe:
    r"""A consistency recipe of the papers by name, for a run of `num_steps`
    training steps $K$.

    | name | $N(k)$ | pair drawn | distance | weight | target |
    | --- | --- | --- | --- | --- | --- |
    | `improved` | doubling, 10 to 1280 | lognormal (−1.1, 2.0) | pseudo-Huber | $1/\Delta\tilde\sigma$ | the model ($\mu = 0$) |
    | `original_ct` | square root, 2 to 150 | uniform | squared | 1 | EMA, $\mu_0 = 0.9$, $\mu(k)$ |
    | `original_cd` | fixed, 18 | uniform | squared | 1 | EMA, $\mu = 0.95$ |

    `improved` is improved consistency training (Song & Dhariwal 2023, "Improved
    techniques for training consistency models", Section 3); `original_ct` and
    `original_cd` are consistency training and distillation of Song et al. (2023),
    "Consistency models" (CIFAR-10 settings, with the squared distance in place of
    LPIPS). See [`ConsistencyRecipe`][scorax.ConsistencyRecipe] for each part; to
    change one, `dataclasses.replace` the recipe or build your own.

    **Arguments:**

    - `name`: `"improved"`, `"original_ct"` or `"original_cd"`.
    - `num_steps`: $K \ge 1$, the training steps (the curricula's length).
    """
    check_choice(name, "name", RECIPES)
    num_steps = check_count(num_steps, "num_steps")
    if name == "improved":
        return ConsistencyRecipe(
            DoublingCurriculum(num_steps, 10, 1280),
            level_sampling="lognormal",
            distance="pseudo_huber",
            weighting="inverse_step",
        )
    if name == "original_ct":
        return ConsistencyRecipe(
            SquareRootCurriculum(num_steps, 2, 150),
            target_decay=0.9,
            decay_follows_levels=True,
        )
    return ConsistencyRecipe(FixedDiscretisation(18), target_decay=0.95)


def _call(model: Model, x: Array, t: Array, label) -> Array:
    return model(x, t) if label is None else model(x, t, label)  # pyright: ignore


def _pair_loss(
    model: Model,
    target_model: Model | None,
    x_high: Array,
    x_low: Array,
    pair: LevelPair,
    recipe: ConsistencyRecipe,
    label,
) -> FloatScalar:
    online = _call(model, x_high, pair.t_high, label)
    target = _call(
        model if target_model is None else target_model, x_low, pair.t_low, label
    )
    return pair.weight * recipe.compare(online, jax.lax.stop_gradient(target))


def _draw(
    model: Model,
    path: AbstractGaussianPath,
    x0: Array,
    key: PRNGKeyArray,
    step: Int[ArrayLike, ""],
    recipe: ConsistencyRecipe,
) -> tuple[float, LevelPair, Array]:
    """The model's t_min, a pair of levels and the Gaussian draw."""
    t_min = check_consistency_model(model)
    if not isinstance(recipe, ConsistencyRecipe):
        raise ValueError(
            "`recipe` must be a ConsistencyRecipe (see consistency_recipe), got "
            f"{type(recipe).__name__}."
        )
    step = check_range(step, "step", low=0)
    level_key, noise_key = jr.split(key)
    pair = recipe.draw_pair(path, t_min, step, key=level_key, dtype=x0.dtype)
    return t_min, pair, jr.normal(noise_key, x0.shape, x0.dtype)


def consistency_training_loss(
    model: Model,
    target_model: Model | None,
    path: AbstractGaussianPath,
    x0: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray,
    step: Int[ArrayLike, ""],
    recipe: ConsistencyRecipe,
    label: Int[ArrayLike, ""] | None = None,
) -> FloatScalar:
    r"""Consistency training (CT; Song et al. 2023, Algorithm 3; Song & Dhariwal
    2023), with no teacher: the loss of one data point.

    Draw a pair of adjacent levels $t_n < t_{n+1}$ of step $k$'s discretisation
    and one $z \sim \mathcal{N}(0, I)$, then

    $$\ell(x_0) = \lambda_n\, d\Big(f_\theta\big(\alpha_{t_{n+1}} x_0 +
    \sigma_{t_{n+1}} z,\ t_{n+1}\big),\ \operatorname{sg}\, f_{\theta^-}\big(
    \alpha_{t_n} x_0 + \sigma_{t_n} z,\ t_n\big)\Big),$$

    the same noise at both levels: $x_0 + \tilde\sigma z$ is an unbiased
    one-sample estimate of the probability-flow ODE step (the score's DSM
    estimate), so the loss matches consistency distillation with the exact score
    as $N \to \infty$ (Song et al. 2023, Theorem 2). The recipe sets $N(k)$, how
    the pair is drawn, $d$ and $\lambda_n$ (see
    [`ConsistencyRecipe`][scorax.ConsistencyRecipe]).

    **Arguments:**

    - `model`: the [`ConsistencyModel`][scorax.ConsistencyModel] trained.
    - `target_model`: $f_{\theta^-}$, a copy of the model under an EMA (in
      [`fit`][scorax.fit], the `target` it passes), or `None` for the model
      itself (improved training); its output is under a stop-gradient either way.
    - `path`: the Gaussian path.
    - `x0`: a data point.
    - `key`: a JAX PRNG key.
    - `step`: the training step $k \ge 0$ (in `fit`, the `step` it passes).
    - `recipe`: a [`ConsistencyRecipe`][scorax.ConsistencyRecipe], e.g.
      `consistency_recipe("improved", num_steps=K)`.
    - `label`: the class of `x0` for a class-conditional model.

    **Returns:**

    The loss, a scalar.
    """
    _, pair, z = _draw(model, path, x0, key, step, recipe)
    x_high = path.alpha(pair.t_high) * x0 + path.sigma(pair.t_high) * z
    x_low = path.alpha(pair.t_low) * x0 + path.sigma(pair.t_low) * z
    return _pair_loss(model, target_model, x_high, x_low, pair, recipe, label)


def consistency_distillation_loss(
    model: Model,
    target_model: Model | None,
    teacher: Model,
    path: AbstractGaussianPath,
    x0: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray,
    step: Int[ArrayLike, ""],
    recipe: ConsistencyRecipe,
    method: TeacherMethod | dfx.AbstractSolver = "heun",
    parameterisation: AbstractParameterisation = NoisePrediction(),
    label: Int[ArrayLike, ""] | None = None,
) -> FloatScalar:
    r"""Consistency distillation (CD; Song et al. 2023, Algorithm 2): the loss of
    one data point, with a trained diffusion model as the teacher.

    Draw a pair of adjacent levels $t_n < t_{n+1}$ and $x_{t_{n+1}} =
    \alpha_{t_{n+1}} x_0 + \sigma_{t_{n+1}} z$; take one step of the teacher's
    probability-flow ODE back to $t_n$, $\hat x_{t_n} = \Phi(x_{t_{n+1}},
    t_{n+1} \to t_n)$; then

    $$\ell(x_0) = \lambda_n\, d\Big(f_\theta(x_{t_{n+1}}, t_{n+1}),\
    \operatorname{sg}\, f_{\theta^-}(\hat x_{t_n}, t_n)\Big).$$

    With the exact consistency function as model and target and an exact
    teacher, the loss is the teacher step's local error carried through
    $f^*$: for the squared distance $O(h^{2(p+1)})$ for a step of order $p$ over
    $h = t_{n+1} - t_n$ ($h^4$ for Euler and DPM-Solver-1, $h^6$ for Heun and
    DPM-Solver-2), which the tests check.

    **The step** $\Phi$ (`method`): `"euler"` or `"heun"`, a step in $t$ of the
    ODE $\mathrm{d}x/\mathrm{d}t = f(t) x - \tfrac12 g(t)^2 \nabla \log p_t$ (that
    of [`probability_flow_sample`][scorax.probability_flow_sample] with
    `diffrax.Euler()` or `diffrax.Heun()`; any other Diffrax ODE solver may be
    given); `"dpm1"` or `"dpm2"`, DPM-Solver's step of order 1 (DDIM) or 2 in
    the half log-SNR (that of [`dpm_solver_sample`][scorax.dpm_solver_sample]).
    Heun and `"dpm2"` cost the teacher two evaluations, the others one.

    **Arguments:**

    - `model`, `target_model`, `path`, `x0`, `key`, `step`, `recipe`, `label`: as
      for [`consistency_training_loss`][scorax.consistency_training_loss].
    - `teacher`: the diffusion model `teacher(x_t, t)` distilled, predicting
      `parameterisation` (class-conditional ones are given `label`).
    - `method`: the teacher's step; default `"heun"`.
    - `parameterisation`: what the teacher predicts; default `NoisePrediction()`.

    **Returns:**

    The loss, a scalar.
    """
    t_min, pair, z = _draw(model, path, x0, key, step, recipe)
    t_max = recipe.top_time(path)

    def guided(x: Array, t: Array) -> Array:
        return _call(teacher, x, t, label)

    check_model(guided, x0, jnp.asarray(t_max, x0.dtype), name="teacher")
    x_high = path.alpha(pair.t_high) * x0 + path.sigma(pair.t_high) * z
    x_low = teacher_step(
        guided,
        path,
        x_high,
        pair.t_high,
        pair.t_low,
        method=method,
        parameterisation=parameterisation,
        t_min=t_min,
        t_max=t_max,
    )
    return _pair_loss(model, target_model, x_high, x_low, pair, recipe, label)
