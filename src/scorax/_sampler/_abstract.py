r"""The shape of a fixed-grid sampler: a problem to sample, and a sampler that
steps a state from one grid point to the next.

Like a Diffrax solver, a sampler holds its method's options; what it is applied
to (the model, its path, the time interval) is the `Problem`, and the loop that
drives it (`run`, in `_loop.py`) does what every sampler shares: the checks of
the start, the model and the key, the scan, the trajectory, the final denoising
step, the finiteness check and the evaluation count. Optional parts of a method
are marker bases, as in Diffrax (`AbstractAdaptiveSolver`): a method with a
final denoising step is an `AbstractDenoisingSampler`, one whose last step is of
another kind an `AbstractLastStepSampler`.
"""

import abc
from typing import Generic, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, PRNGKeyArray, PyTree

from .._checks import check_time_range
from .._parameterisation import AbstractParameterisation, NoisePrediction
from .._path import AbstractGaussianPath, DDPMSchedule
from .._predict import Model, predict


_State = TypeVar("_State")


def normal(source: PRNGKeyArray | Array, like: Array) -> Array:
    """A standard Gaussian draw shaped like `like`: drawn with `source` if it is a
    PRNG key, else `source` itself (a draw the user supplied, see `run`'s
    `noise`)."""
    if jnp.issubdtype(source.dtype, jax.dtypes.prng_key):
        return jr.normal(source, like.shape, like.dtype)
    return source.astype(like.dtype)


class Problem(eqx.Module):
    """What is sampled: a model `model(x, t)`, the path (or DDPM schedule) it was
    trained on (`None` for a model of noise levels), what it predicts, and the
    time interval of a continuous path."""

    model: Model
    path: AbstractGaussianPath | DDPMSchedule | None = None
    parameterisation: AbstractParameterisation = NoisePrediction()
    t_min: float = eqx.field(static=True, default=1e-3, converter=float)
    t_max: float = eqx.field(static=True, default=1.0, converter=float)

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
            self.model,
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

    `name` is the public function that runs it, for error messages.
    """

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def evaluations(self, num_steps: int) -> int:
        """The model evaluations of `num_steps` steps, before any denoising step."""

    @abc.abstractmethod
    def needs_key(self) -> bool:
        """Whether the method draws noise with these options."""

    def draws(self) -> int:
        """The standard Gaussian draws of one step (when `needs_key()`): each step
        gets a key, or, where the user supplies the noise, an array of this many
        draws shaped like the sample (without the leading axis when it is 1)."""
        return 1

    @abc.abstractmethod
    def grid(self, problem: Problem, num_steps: int, dtype) -> PyTree[Array]:
        """The `num_steps + 1` grid points, stacked along a leading axis; each has
        a field `t`, the model's time there, which the trajectory reports."""

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
        key: PRNGKeyArray | Array,
        index: Array,
    ) -> tuple[_State, Array]:
        """The state at grid point `t` from the state at `s` (step `index`), and
        the sample at `s` that the trajectory records. `key` is the step's PRNG
        key, or its Gaussian draws where the user supplies them (read them with
        `normal`)."""

    @abc.abstractmethod
    def sample(self, state: _State, node: PyTree[Array]) -> Array:
        """The sample a state holds at grid point `node`."""


class AbstractMarkovSampler(AbstractSampler[Array]):
    """A sampler whose state is the sample itself: each step depends on the
    current sample alone (no history)."""

    def init(self, problem: Problem, x: Array, grid: PyTree[Array]) -> Array:
        return x

    def sample(self, state: Array, node: PyTree[Array]) -> Array:
        return state


class AbstractDenoisingSampler(AbstractSampler[_State]):
    """A sampler that may finish with Tweedie's posterior mean at its last grid
    point (`denoise=True` of its function)."""

    @abc.abstractmethod
    def denoise(self, problem: Problem, x: Array, node: PyTree[Array]) -> Array:
        """The posterior mean of the data given `x` at grid point `node` (one
        evaluation)."""


class AbstractLastStepSampler(AbstractSampler[_State]):
    """A sampler whose last step is of another kind than the others (EDM's Euler
    step to noise level 0): the loop scans the others with `step` and takes the
    last with `last_step`."""

    @abc.abstractmethod
    def last_step(
        self,
        problem: Problem,
        state: _State,
        s: PyTree[Array],
        t: PyTree[Array],
        key: PRNGKeyArray | Array,
        index: Array,
    ) -> tuple[_State, Array]:
        """The last step, with the arguments and results of `step`."""
