r"""What the exponential integrators (DPM-Solver, DPM-Solver++) share: a grid of
nodes in the half log-SNR $\ell = \log(\alpha/\sigma)$ from a path or the DDPM
schedule, and the model read at a node as noise or as data."""

from typing import TypeVar

import equinox as eqx
from jaxtyping import Array

from .._checks import check_choice, check_positive
from .._custom_types import RealScalarLike
from .._parameterisation import NoisePrediction
from ._abstract import AbstractDenoisingSampler, Problem
from ._grid import AbstractNodes, Node, nodes_of, SPACINGS


_State = TypeVar("_State")


class AbstractExponentialSampler(AbstractDenoisingSampler[_State]):
    """An exponential integrator on a grid of nodes spaced by `spacing` (and
    `rho` for `"edm"`), on any Gaussian path or the DDPM schedule."""

    spacing: eqx.AbstractVar[str]
    rho: eqx.AbstractVar[RealScalarLike]

    def __check_init__(self):
        check_choice(self.spacing, "spacing", SPACINGS)
        check_positive(self.rho, "rho")

    @staticmethod
    def nodes(problem: Problem) -> AbstractNodes:
        assert problem.path is not None
        return nodes_of(problem.path)

    def grid(self, problem: Problem, num_steps: int, dtype) -> Node:
        rho = check_positive(self.rho, "rho").astype(dtype)
        return self.nodes(problem).grid(
            num_steps, self.spacing, rho, problem.t_min, problem.t_max, dtype
        )

    @staticmethod
    def noise(problem: Problem, x: Array, node: Node) -> Array:
        """The model read as noise at `node` (one evaluation)."""
        return problem.read(x, node.t, NoisePrediction())

    @classmethod
    def data(cls, problem: Problem, x: Array, node: Node) -> Array:
        """The model read as data through the node's own alpha and sigma,
        x0 = (x - sigma eps) / alpha: on a continuous path this is `convert` to
        `DataPrediction`; on the DDPM schedule it uses the discrete alpha_bar,
        as `ddim_sample` does."""
        return (x - node.sigma * cls.noise(problem, x, node)) / node.alpha

    def denoise(self, problem: Problem, x: Array, node: Node) -> Array:
        return self.data(problem, x, node)
