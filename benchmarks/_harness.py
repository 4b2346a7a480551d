"""A small timing harness: each measurement compares a candidate with a reference.

Both callables are timed in the same run, on the same inputs, so the ratio
`candidate_median / reference_median` is meaningful on any machine even when
absolute times are not.
"""

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array


@dataclasses.dataclass(frozen=True)
class Budget:
    """How many untimed warm-up calls and timed calls to make per callable."""

    warmup: int
    repeats: int


FULL = Budget(warmup=3, repeats=30)
QUICK = Budget(warmup=1, repeats=5)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Times of one callable, in seconds."""

    compile_s: float  # the first call: tracing, compilation and one run
    median_s: float  # median of the timed calls after warm-up


@dataclasses.dataclass(frozen=True)
class Measurement:
    """A candidate against a reference on one case."""

    case: str
    reference: str
    candidate: str
    reference_timing: Timing
    candidate_timing: Timing
    max_rel_diff: float  # max |candidate - reference| / max |reference|

    @property
    def ratio(self) -> float:
        """Candidate median over reference median: below 1 means faster."""
        return self.candidate_timing.median_s / self.reference_timing.median_s

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ratio": self.ratio}


# Called as `benchmark(quick=...)`; rows are Measurements, or any record with a
# `to_json` method and its own markdown table, registered in `__main__.TABLES`
# (see `samplers.Accuracy`).
Benchmark = Callable[..., list[Any]]

MEASUREMENT_HEADER = (
    "| name | case | reference | candidate | compile s | median s | ratio "
    "| max rel diff |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- |"
)


def measurement_table(name: str, measurements: list[Measurement]) -> list[str]:
    """Markdown lines of a table of measurements, with its header."""
    lines = [MEASUREMENT_HEADER]
    for m in measurements:
        ref, cand = m.reference_timing, m.candidate_timing
        lines.append(
            f"| {name} | {m.case} | `{m.reference}` | `{m.candidate}` "
            f"| {ref.compile_s:.3g} / {cand.compile_s:.3g} "
            f"| {ref.median_s:.3g} / {cand.median_s:.3g} "
            f"| {m.ratio:.3f} | {m.max_rel_diff:.1e} |"
        )
    return lines


def time_callable(
    fn: Callable[..., Array], args: tuple[Any, ...], budget: Budget
) -> tuple[Timing, Array]:
    """Time `fn(*args)`; `fn` should already be `jax.jit`-ed.

    Returns the timing and the output of the first call.
    """
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - start
    for _ in range(budget.warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(budget.repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return Timing(compile_s, statistics.median(times)), out


def compare(
    case: str,
    *,
    reference: tuple[str, Callable[..., Array]],
    candidate: tuple[str, Callable[..., Array]],
    args: tuple[Any, ...],
    budget: Budget,
) -> Measurement:
    """Time a `(name, jitted_fn)` candidate against a reference on the same `args`.

    The outputs must agree in shape; how closely their values agree is recorded
    as `max_rel_diff`, so a fast but wrong candidate shows up in the results.
    """
    reference_name, reference_fn = reference
    candidate_name, candidate_fn = candidate
    reference_timing, reference_out = time_callable(reference_fn, args, budget)
    candidate_timing, candidate_out = time_callable(candidate_fn, args, budget)
    if candidate_out.shape != reference_out.shape:
        raise ValueError(
            f"{case}: candidate output shape {candidate_out.shape} differs from "
            f"reference output shape {reference_out.shape}."
        )
    diff = jnp.max(jnp.abs(candidate_out - reference_out))
    scale = jnp.max(jnp.abs(reference_out))
    return Measurement(
        case=case,
        reference=reference_name,
        candidate=candidate_name,
        reference_timing=reference_timing,
        candidate_timing=candidate_timing,
        max_rel_diff=float(diff / scale),
    )
