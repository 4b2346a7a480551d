"""Type aliases shared across scorax (one place, as in Diffrax)."""

from typing import TypeAlias

import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Real


RealScalarLike: TypeAlias = float | int | Real[ArrayLike, ""]
"""A real scalar: a Python number or a zero-dimensional array."""

FloatScalar: TypeAlias = Float[Array, ""]
"""A floating-point zero-dimensional JAX array."""

IntScalarLike: TypeAlias = int | Int[ArrayLike, ""] | np.integer
"""An integer scalar."""
