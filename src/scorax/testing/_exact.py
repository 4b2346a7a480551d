"""The exact model: a Gaussian mixture's diffused score, read in any
parameterisation."""

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from .._checks import check_boundary_time
from .._custom_types import RealScalarLike
from .._mixture import GaussianMixture
from .._parameterisation import AbstractParameterisation, convert, ScorePrediction
from .._path import AbstractGaussianPath


class ExactModel(eqx.Module):
    r"""The exact diffused score of a [`GaussianMixture`][scorax.GaussianMixture],
    as a model `model(x_t, t)` in any parameterisation: the oracle a sampler, a
    loss or a likelihood is checked with.

    $$m(x_t, t) = \operatorname{convert}\left(\nabla \log p_t(x_t)\right), \qquad
    p_t = \text{mixture.marginal(path, t)},$$

    where `convert` is [`scorax.convert`][scorax.convert] from
    [`ScorePrediction`][scorax.ScorePrediction] to `parameterisation`. It is an
    Equinox module, so a jitted sampler sees the mixture as data and does not
    recompile for a new one.

    **Arguments:**

    - `mixture`: the data distribution at $t = 0$.
    - `path`: the Gaussian path that diffuses it.
    - `parameterisation`: what the model predicts; default `ScorePrediction()`.
    """

    mixture: GaussianMixture
    path: AbstractGaussianPath
    parameterisation: AbstractParameterisation = ScorePrediction()

    @property
    def num_classes(self) -> int:
        """The number of classes $K$: the mixture's components."""
        return self.mixture.weights.shape[0]

    def __call__(
        self,
        x: Float[Array, " d"],
        t: RealScalarLike,
        y: Int[ArrayLike, ""] | None = None,
    ) -> Float[Array, " d"]:
        """The exact prediction at `(x, t)`, shaped like `x`; given a label `y`,
        that of class `y` alone (the mixture's component $y$; `None` or -1: the
        whole mixture), so it is also the exact class-conditional model."""
        score = self.mixture.marginal(self.path, t).score(x, y)
        return convert(
            self.path,
            score,
            x,
            t,
            source=ScorePrediction(),
            target=self.parameterisation,
        )


class ExactConsistencyModel(eqx.Module):
    r"""The exact consistency function of a
    [`GaussianMixture`][scorax.GaussianMixture] (Song et al. 2023): the point
    $x_{t_\text{min}}$ that the probability-flow ODE of the exact score carries
    $x_t$ to,

    $$f^*(x_t, t) = x_t + \int_t^{t_\text{min}} \Big(f(u)\, x_u - \tfrac12
    g(u)^2\, \nabla \log p_u(x_u)\Big)\, \mathrm{d}u,$$

    solved with Diffrax from $t$ down to $t_\text{min}$ to tolerance `rtol`,
    `atol`. It is the oracle of consistency models: a
    [`ConsistencyModel`][scorax.ConsistencyModel] trained to perfection is this
    function, [`consistency_sample`][scorax.consistency_sample] with it samples
    $p_{t_\text{min}}$ exactly in any number of steps, and as the target or
    teacher of [`consistency_distillation_loss`][scorax.consistency_distillation_loss]
    it makes that loss vanish up to the teacher step's error. At $t =
    t_\text{min}$ it returns $x$ (a solve over an empty interval). It is
    differentiable (Diffrax's adjoint), so it can serve as a target network.

    **Arguments:**

    - `mixture`: the data distribution at $t = 0$.
    - `path`: the Gaussian path that diffuses it.
    - `t_min`: the boundary time, in $(0, 1)$; default $10^{-3}$.
    - `rtol`, `atol`: the solver's tolerances; default $10^{-10}$ (in float64;
      use about $10^{-6}$ in float32).
    - `solver`: a Diffrax ODE solver; default `diffrax.Tsit5()`.
    - `max_steps`: the solver's step limit; default 4096.
    """

    mixture: GaussianMixture
    path: AbstractGaussianPath
    t_min: float = eqx.field(static=True, default=1e-3, converter=float)
    rtol: float = eqx.field(static=True, default=1e-10, converter=float)
    atol: float = eqx.field(static=True, default=1e-10, converter=float)
    solver: dfx.AbstractSolver = dfx.Tsit5()
    max_steps: int = eqx.field(static=True, default=4096)

    def __check_init__(self):
        check_boundary_time(self.t_min)

    @property
    def score_model(self) -> ExactModel:
        """The exact score model of the same mixture and path (a teacher)."""
        return ExactModel(self.mixture, self.path)

    def __call__(
        self,
        x: Float[Array, " d"],
        t: RealScalarLike,
        y: Int[ArrayLike, ""] | None = None,
    ) -> Float[Array, " d"]:
        """$f^*(x, t)$; given a label `y`, that of class `y` alone."""
        path, mixture = self.path, self.mixture
        t = jnp.asarray(t, x.dtype)

        def velocity(u, z, args):
            score = mixture.marginal(path, u).score(z, y)
            return path.drift(z, u) - path.diffusion_squared(u) * score / 2

        solution = dfx.diffeqsolve(
            dfx.ODETerm(velocity),
            self.solver,
            t,
            jnp.asarray(self.t_min, x.dtype),
            None,
            x,
            stepsize_controller=dfx.PIDController(rtol=self.rtol, atol=self.atol),
            max_steps=self.max_steps,
        )
        assert solution.ys is not None
        return solution.ys[-1]
