"""A model read in another parameterisation: what samplers and the likelihood
ask of a model."""

from collections.abc import Callable
from typing import TypeAlias

from jaxtyping import Array, Float

from ._custom_types import FloatScalar
from ._parameterisation import AbstractParameterisation, convert
from ._path import AbstractGaussianPath


Model: TypeAlias = Callable[
    [Float[Array, "*shape"], FloatScalar], Float[Array, "*shape"]
]
ScoreFn: TypeAlias = Callable[[Float[Array, "*shape"]], Float[Array, "*shape"]]


def predict(
    model: Model,
    path: AbstractGaussianPath,
    x: Float[Array, "*shape"],
    t: FloatScalar,
    *,
    source: AbstractParameterisation,
    target: AbstractParameterisation,
) -> Float[Array, "*shape"]:
    """`model(x, t)` read in the `target` parameterisation (one model evaluation)."""
    value = model(x, t)
    if type(source) is type(target):
        return value
    return convert(path, value, x, t, source=source, target=target)
