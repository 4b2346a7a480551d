r"""Consistency sampling (Song et al. 2023, Algorithm 1), and the one ODE step
between adjacent times that consistency distillation takes with its teacher."""

from collections.abc import Sequence
from typing import ClassVar, Literal, NamedTuple, TypeAlias

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .._checks import (
    check_choice,
    check_consistency_model,
    check_count,
    check_decreasing_times,
    check_positive,
)
from .._custom_types import RealScalarLike
from .._parameterisation import (
    AbstractParameterisation,
    NoisePrediction,
    VelocityPrediction,
)
from .._path import AbstractGaussianPath, default_t_max
from .._predict import Model, predict
from ._abstract import AbstractLastStepSampler, AbstractMarkovSampler, normal, Problem
from ._dpm import DPMSolver
from ._grid import PathNodes, rho_levels
from ._loop import run
from ._result import SampleResult


TeacherMethod: TypeAlias = Literal["euler", "heun", "dpm1", "dpm2"]
TEACHER_METHODS: tuple[str, ...] = ("euler", "heun", "dpm1", "dpm2")
_DIFFRAX_STEPS = {"euler": dfx.Euler(), "heun": dfx.Heun()}
_DPM_ORDERS = {"dpm1": 1, "dpm2": 2}


class _Time(NamedTuple):
    """A point of the grid: its time."""

    t: Array


def spaced_times(
    path: AbstractGaussianPath, num_times: int, *, t_min: float, t_max: float, rho
) -> Float[Array, " num_times"]:
    """`num_times` times from `t_max` down, with the noise levels sigma/alpha
    rho-spaced as in Karras et al. (2022) between those of `t_max` and `t_min`
    (which is not among them)."""
    dtype = jnp.result_type(float)
    top = path.noise_to_signal(jnp.asarray(t_max, dtype))
    bottom = path.noise_to_signal(jnp.asarray(t_min, dtype))
    rho = check_positive(rho, "rho").astype(dtype)
    levels = rho_levels(top, bottom, num_times + 1, rho)[:num_times]
    times = jax.vmap(path.inverse_noise_to_signal)(levels)
    return times.at[0].set(t_max)


class ConsistencySampler(AbstractLastStepSampler[Array], AbstractMarkovSampler):
    """Multistep consistency sampling: at each time, map to t_min with the model,
    then re-noise to the next time; the last step maps to t_min and stops. `times`
    is a count (that many rho-spaced times from t_max) or the times themselves."""

    name: ClassVar[str] = "consistency_sample"

    times: int | tuple[float, ...] = 1
    rho: RealScalarLike = 7.0

    def __check_init__(self):
        check_positive(self.rho, "rho")
        if isinstance(self.times, int):
            check_count(self.times, "times")

    def count(self) -> int:
        """The number of times, K: the steps and the evaluations."""
        return self.times if isinstance(self.times, int) else len(self.times)

    def evaluations(self, num_steps: int) -> int:
        return num_steps

    def needs_key(self) -> bool:
        return self.count() > 1

    def grid(self, problem: Problem, num_steps: int, dtype) -> _Time:
        path = problem.model_path
        if isinstance(self.times, int):
            times = spaced_times(
                path,
                self.times,
                t_min=problem.t_min,
                t_max=problem.t_max,
                rho=self.rho,
            )
        else:
            times = jnp.asarray(self.times)
        return _Time(jnp.append(times, problem.t_min).astype(dtype))

    def _to_boundary(self, problem: Problem, x: Array, s: _Time) -> Array:
        return problem.model(x, s.t).astype(x.dtype)

    def step(
        self,
        problem: Problem,
        state: Array,
        s: _Time,
        t: _Time,
        key: PRNGKeyArray | Array,
        index: Array,
    ) -> tuple[Array, Array]:
        """To t_min, then re-noised to `t` with the path's transition."""
        boundary = self._to_boundary(problem, state, s)
        a, b = problem.model_path.transition(jnp.asarray(problem.t_min, t.t.dtype), t.t)
        return a * boundary + b * normal(key, boundary), state

    def last_step(
        self,
        problem: Problem,
        state: Array,
        s: _Time,
        t: _Time,
        key: PRNGKeyArray | Array,
        index: Array,
    ) -> tuple[Array, Array]:
        """To t_min, where sampling ends."""
        return self._to_boundary(problem, state, s), state


class _Labelled(eqx.Module):
    """A class-conditional model called with a fixed label."""

    model: Model
    label: Int[ArrayLike, ""]

    def __call__(self, x: Array, t: Array) -> Array:
        return self.model(x, t, self.label)  # pyright: ignore[reportCallIssue]


def consistency_sample(
    model: Model,
    path: AbstractGaussianPath,
    x: Float[Array, "*shape"],
    *,
    times: int | Sequence[float] = 1,
    rho: RealScalarLike = 7.0,
    t_max: float | None = None,
    key: PRNGKeyArray | None = None,
    noise: Float[Array, " steps *shape"] | None = None,
    label: Int[ArrayLike, ""] | None = None,
    trajectory: bool = False,
) -> SampleResult:
    r"""One-step and multistep consistency sampling (Song et al. 2023,
    "Consistency models", Algorithm 1), on any Gaussian path.

    A consistency model $f(x_t, t) \approx x_{t_\text{min}}$ maps a point of the
    probability-flow ODE straight to its end, so one evaluation at the prior's
    time $\tau_0$ samples: $x \leftarrow f(x_{\tau_0}, \tau_0)$. With more times
    $\tau_0 > \tau_1 > \dots > \tau_{K-1} > t_\text{min}$, each later time first
    re-noises the sample with the path's
    [`transition`][scorax.AbstractGaussianPath.transition] from $t_\text{min}$,
    then maps it back:

    $$x_{\tau_k} = a_k\, x + b_k\, z, \quad z \sim \mathcal{N}(0, I), \qquad
    x \leftarrow f(x_{\tau_k}, \tau_k), \qquad (a_k, b_k) =
    \text{transition}(t_\text{min}, \tau_k),$$

    which is the paper's $x + \sqrt{\tau_k^2 - \epsilon^2}\, z$ on
    [`EDMPath`][scorax.EDMPath]. It spends $K$ evaluations. With an exact
    consistency function ([`scorax.testing.ExactConsistencyModel`][]) every $K$
    samples $p_{t_\text{min}}$ exactly.

    **Arguments:**

    - `model`: the consistency model, `model(x_t, t)`, with its boundary time
      `model.t_min`: a [`ConsistencyModel`][scorax.ConsistencyModel] or
      [`scorax.testing.ExactConsistencyModel`][].
    - `path`: the Gaussian path it was trained on.
    - `x`: the starting point, a draw from
      [`prior_sample`][scorax.AbstractGaussianPath.prior_sample] (at $t = 1$;
      where $\alpha(1) = 0$ the sampler starts at $t_\text{max} = 0.99$, where the
      prior is nearly the same).
    - `times`: the number of steps $K \ge 1$ (default 1), at times whose noise
      levels $\sigma/\alpha$ are $\rho$-spaced as in
      [`edm_sample`][scorax.edm_sample] between those of $t_\text{max}$ and
      $t_\text{min}$ (the first is $t_\text{max}$); or the times themselves, a
      strictly decreasing sequence in $(t_\text{min}, t_\text{max}]$.
    - `rho`: $\rho > 0$ for a number of `times`; default 7.
    - `t_max`: the first time for a number of `times`, and the upper end for given
      times; default 1 (0.99 where $\alpha(1) = 0$).
    - `key`: a JAX PRNG key, needed for $K > 1$.
    - `noise`: the Gaussian draws, given instead of `key`: shape `(K, *x.shape)`,
      `noise[k]` re-noising to $\tau_{k+1}$ (the last is unused).
    - `label`: the class to sample, for a class-conditional model (called as
      `model(x, t, label)`); default `None`.
    - `trajectory`: also return the $K + 1$ states: the start, each re-noised point
      $x_{\tau_k}$, and the sample; `times` are the $\tau_k$ then $t_\text{min}$.

    **Returns:**

    A [`SampleResult`][scorax.SampleResult]; `num_evaluations` $= K$.
    """
    t_min = check_consistency_model(model)
    t_max = default_t_max(path) if t_max is None else float(t_max)
    if label is not None:
        model = _Labelled(model, label)
    problem = Problem(model, path, NoisePrediction(), t_min, t_max)
    if isinstance(times, int):
        count = check_count(times, "times")
        sampler = ConsistencySampler(times=count, rho=rho)
    else:
        given = check_decreasing_times(
            times, "times", t_min=t_min, t_max=t_max, path=path
        )
        sampler = ConsistencySampler(times=tuple(given.tolist()), rho=rho)
    return run(
        sampler,
        problem,
        x,
        num_steps=sampler.count(),
        key=key,
        noise=noise,
        denoise=False,
        trajectory=trajectory,
    )


def teacher_step(
    teacher: Model,
    path: AbstractGaussianPath,
    x: Float[Array, "*shape"],
    s: Array,
    t: Array,
    *,
    method: TeacherMethod | dfx.AbstractSolver,
    parameterisation: AbstractParameterisation,
    t_min: float,
    t_max: float,
) -> Float[Array, "*shape"]:
    """One step of the probability-flow ODE of `teacher` from time `s` to an earlier
    time `t`: a Diffrax solver's step in t on the velocity (`"euler"`, `"heun"`,
    or any `diffrax.AbstractSolver`, as `probability_flow_sample` takes), or
    DPM-Solver's step of order 1 or 2 in the half log-SNR (`"dpm1"`, `"dpm2"`, as
    `dpm_solver_sample` takes)."""
    if isinstance(method, str):
        check_choice(method, "method", TEACHER_METHODS)
    if isinstance(method, str) and method in _DPM_ORDERS:
        problem = Problem(teacher, path, parameterisation, t_min, t_max)
        nodes = PathNodes(path)
        solver = DPMSolver(order=_DPM_ORDERS[method])
        index = jnp.zeros((), jnp.int32)
        stepped, _ = solver.step(
            problem, x, nodes.at_time(s), nodes.at_time(t), jax.random.key(0), index
        )
        return stepped
    solver = _DIFFRAX_STEPS[method] if isinstance(method, str) else method

    def velocity(time, y, args):
        return predict(
            teacher, path, y, time, source=parameterisation, target=VelocityPrediction()
        )

    term = dfx.ODETerm(velocity)
    state = solver.init(term, s, t, x, None)
    stepped, *_ = solver.step(term, s, t, x, None, state, made_jump=False)
    return stepped
