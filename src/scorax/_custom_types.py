"""Type aliases shared across scorax (one place, as in Diffrax)."""

from typing import TypeAlias

import numpy as np
from jaxtyping import Array, Float, Integer, Real


RealScalarLike: TypeAlias = float | int | Real[Array, ""] | Real[np.ndarray, ""]
"""A real scalar: a Python number or a zero-dimensional JAX or NumPy array."""

FloatScalar: TypeAlias = Float[Array, ""]
"""A floating-point zero-dimensional JAX array."""

IntScalarLike: TypeAlias = (
    int | np.integer | Integer[Array, ""] | Integer[np.ndarray, ""]
)
"""An integer scalar: a Python or NumPy integer, or a zero-dimensional integer
JAX or NumPy array (a count is read as a Python `int`; booleans are refused)."""
