"""Type aliases shared across scorax (one place, as in Diffrax)."""

from typing import TypeAlias

import numpy as np
from jaxtyping import Array, Float, Real


RealScalarLike: TypeAlias = float | int | Real[Array, ""] | Real[np.ndarray, ""]
"""A real scalar: a Python number or a zero-dimensional JAX or NumPy array."""

FloatScalar: TypeAlias = Float[Array, ""]
"""A floating-point zero-dimensional JAX array."""
