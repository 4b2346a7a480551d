"""The exact model: a Gaussian mixture's diffused score, read in any
parameterisation."""

import equinox as eqx
from jaxtyping import Array, ArrayLike, Float, Int

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
