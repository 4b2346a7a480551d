r"""The shape of a fixed-grid sampler: a problem to sample, and a solver that
steps a state from one grid point to the next.

Like a Diffrax solver, a sampler holds only its method's options; what it is
applied to (the model, its path, the time interval) is the
[`Problem`][], and the loop that drives it (`scorax._sampler._loop.run`) does
what every sampler shares: the model check, the scan, the trajectory, the final
denoising step, the finiteness check and the evaluation count.
"""

import abc
from typing import ClassVar, Generic, TypeVar

import equinox as eqx
from jaxtyping import Array, PRNGKeyArray, PyTree

from .._checks import check_model, check_time_range
from .._parameterisation import AbstractParameterisation, NoisePrediction
from .._path import AbstractGaussianPath, DDPMSchedule
from .._predict import Model, predict, ScoreFn


_State = TypeVar("_State")


class Problem(eqx.Module):
    """What is sampled: a model, the path (or DDPM schedule) it was trained on,
    what it predicts, and the time interval of a continuous path."""

    model: Model | ScoreFn
    path: AbstractGaussianPath | DDPMSchedule | None = None
    parameterisation: AbstractParameterisation = NoisePrediction()
    t_min: float = eqx.field(static=True, default=1e-3)
    t_max: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if isinstance(self.path, DDPMSchedule):
            if (self.t_min, self.t_max) != (1e-3, 1.0):
                raise ValueError(
                    "`t_min`, `t_max`: on a DDPMSchedule the sampler runs over the "
                    "schedule's own steps, from step N (t = 1) to step 1 (t = 1/N); "
                    "leave them at their defaults, got "
                    f"t_min={self.t_min}, t_max={self.t_max}."
                )
        elif self.path is not None:
            check_time_range(self.t_min, self.t_max, self.path)

    @property
    def model_path(self) -> AbstractGaussianPath:
        """The continuous path on which the model's outputs are converted."""
        path = self.path
        assert path is not None
        return path.path if isinstance(path, DDPMSchedule) else path

    def read(self, x: Array, t: Array, target: AbstractParameterisation) -> Array:
        """`model(x, t)` read as `target` on the model's path (one evaluation)."""
        return predict(
            self.model,  # pyright: ignore[reportArgumentType]
            self.model_path,
            x,
            t,
            source=self.parameterisation,
            target=target,
        )


class AbstractSampler(eqx.Module, Generic[_State]):
    """A sampler on a fixed grid of `num_steps + 1` points, from the noise end to
    the data end: `init` a state at the first point, `step` it from each point
    to the next, read the `sample` it holds.

    `name` is the public function that runs it, for error messages;
    `can_denoise` marks methods with a final denoising step (`denoise`);
    `final_step_differs` marks methods whose last step is of another kind (EDM's
    Euler step to noise level 0): the loop then scans all steps but the last
    with `step` and takes the last with `final_step`.
    """

    name: ClassVar[str]
    can_denoise: ClassVar[bool] = False
    final_step_differs: ClassVar[bool] = False

    @abc.abstractmethod
    def evaluations(self, num_steps: int) -> int:
        """The model evaluations of `num_steps` steps, before any denoising step."""

    @abc.abstractmethod
    def grid(self, problem: Problem, num_steps: int, dtype) -> PyTree[Array]:
        """The `num_steps + 1` grid points, stacked along a leading axis; each has
        a field `t`, the time the trajectory reports."""

    def check(self, problem: Problem, x: Array, grid: PyTree[Array]) -> None:
        """Raise `ValueError` unless the model maps `x` to an array like it."""
        check_model(problem.model, x, grid.t[0])

    @abc.abstractmethod
    def init(self, problem: Problem, x: Array, grid: PyTree[Array]) -> _State:
        """The state at the first grid point."""

    @abc.abstractmethod
    def step(
        self,
        problem: Problem,
        state: _State,
        s: PyTree[Array],
        t: PyTree[Array],
        key: PRNGKeyArray,
        index: Array,
    ) -> tuple[_State, Array]:
        """The state at grid point `t` from the state at `s` (step `index`), and
        the sample at `s` that the trajectory records."""

    def final_step(
        self,
        problem: Problem,
        state: _State,
        s: PyTree[Array],
        t: PyTree[Array],
        key: PRNGKeyArray,
        index: Array,
    ) -> tuple[_State, Array]:
        """The last step, where `final_step_differs`."""
        return self.step(problem, state, s, t, key, index)

    @abc.abstractmethod
    def sample(self, state: _State, node: PyTree[Array]) -> Array:
        """The sample a state holds at grid point `node`."""

    def denoise(self, problem: Problem, x: Array, node: PyTree[Array]) -> Array:
        """Tweedie's posterior mean at the last grid point (one evaluation), for
        methods that `can_denoise`."""
        raise NotImplementedError


class AbstractSampleState(AbstractSampler[Array]):
    """A sampler whose state is the sample itself."""

    def init(self, problem: Problem, x: Array, grid: PyTree[Array]) -> Array:
        return x

    def sample(self, state: Array, node: PyTree[Array]) -> Array:
        return state
