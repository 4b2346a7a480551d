"""Readable failure reports, and the tolerances the checks derive them from."""

from collections.abc import Sequence
from typing import NoReturn

import numpy as np
from jaxtyping import ArrayLike, DTypeLike


# Identities that hold exactly in real arithmetic are checked to ULPS units in the
# last place of the dtype (1.2e-4 in float32, 2.2e-13 in float64): room for the
# transcendental functions and the few roundings of one formula, far below any
# mathematical error. Where a formula amplifies rounding, the check multiplies
# this by the stated condition number.
ULPS = 1000


def relative_tolerance(dtype: DTypeLike) -> float:
    """`ULPS` units in the last place of a floating dtype."""
    return ULPS * float(np.finfo(np.dtype(dtype)).eps)


def fail(check: str, identity: str, details: Sequence[tuple[str, str]]) -> NoReturn:
    """Raise an `AssertionError` that says which check failed, which identity, and
    the facts as aligned `label: text` lines."""
    width = max(len(label) for label, _ in details) + 1
    lines = [f"{check} failed", f"  {'identity:'.ljust(width + 1)} {identity}"]
    lines += [f"  {(label + ':').ljust(width + 1)} {text}" for label, text in details]
    raise AssertionError("\n".join(lines))


def _format(value: ArrayLike) -> str:
    value = np.asarray(value)
    if value.ndim == 0:
        return f"{value.item():.6g}"
    return np.array2string(value, precision=6, threshold=12)


def assert_close(
    check: str,
    identity: str,
    *,
    actual: ArrayLike,
    expected: ArrayLike,
    tolerance: ArrayLike,
    where: Sequence[str],
    tolerance_source: str,
) -> None:
    """Fail unless `|actual - expected| <= tolerance` everywhere (all finite).

    The arrays share a leading axis, one entry per case described by `where`;
    trailing axes (components of a vector) are reduced to the worst. The report
    names the worst case relative to its tolerance.
    """
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    tolerance = np.broadcast_to(np.asarray(tolerance, np.float64), actual.shape)
    error = np.abs(actual - expected)
    ratio = np.where(
        np.isfinite(actual) & np.isfinite(expected) & np.isfinite(tolerance),
        error / np.maximum(tolerance, np.finfo(np.float64).tiny),
        np.inf,
    )
    ratio = ratio.reshape(len(where), -1) if ratio.ndim else ratio.reshape(1, 1)
    worst_case = np.max(ratio, axis=1)
    if np.all(worst_case <= 1):
        return
    case = int(np.argmax(worst_case))
    component = int(np.argmax(ratio[case]))
    pick = np.unravel_index(case * ratio.shape[1] + component, actual.shape)
    failing = int(np.sum(worst_case > 1))
    fail(
        check,
        identity,
        [
            ("where", f"{where[case]} (worst of {failing} failing of {len(where)})"),
            ("got", _format(actual[pick])),
            ("expected", _format(expected[pick])),
            (
                "off by",
                f"{_format(error[pick])}, tolerance {_format(tolerance[pick])}",
            ),
            (
                "tolerance",
                tolerance_source + _not_finite(actual, expected, tolerance, pick),
            ),
        ],
    )


def _not_finite(actual, expected, tolerance, pick) -> str:
    """Why a case failed when one of its values is NaN or infinite."""
    for label, value in (("got", actual), ("expected", expected)):
        if not np.isfinite(value[pick]):
            return f" (the {label} value is not finite)"
    if not np.isfinite(tolerance[pick]):
        return " (not finite here: a quantity it is derived from is NaN or infinite)"
    return ""
