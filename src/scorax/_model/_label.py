"""Class labels for conditional models: an embedding with a null class."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .._checks import check, check_count
from .._custom_types import IntScalarLike


class LabelEmbedding(eqx.Module):
    """A learned vector per class, plus one for the null label: `y = -1` or `None`
    (no class), which classifier-free training drops labels to."""

    num_classes: int = eqx.field(static=True)
    weight: Float[Array, "classes_plus_one dim"]

    def __init__(self, num_classes: IntScalarLike, dim: int, *, key: PRNGKeyArray):
        num_classes = check_count(num_classes, "num_classes")
        self.num_classes = num_classes
        self.weight = jr.normal(key, (num_classes + 1, dim))

    def __call__(self, y: Int[ArrayLike, ""] | None) -> Float[Array, " dim"]:
        if y is None:
            return self.weight[self.num_classes]
        y = jnp.asarray(y)
        if y.shape != () or not jnp.issubdtype(y.dtype, jnp.integer):
            raise ValueError(f"`y` must be an integer scalar label, got {y!r}.")
        y = check(
            y,
            (y >= -1) & (y < self.num_classes),
            f"`y` must be a class in [0, {self.num_classes}) or -1 (no class).",
        )
        return self.weight[jnp.where(y < 0, self.num_classes, y)]


def unconditional(y: Int[ArrayLike, ""] | None, name: str) -> None:
    """Raise unless `y` is None: `name` was built without `num_classes`."""
    if y is not None:
        raise ValueError(
            f"`y`: this {name} is unconditional; build it with `num_classes=K` to "
            "give it class labels."
        )
