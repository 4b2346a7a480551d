r"""Log-likelihoods through the probability-flow ODE: accuracy per evaluation, the
cost of the exact divergence against Hutchinson's as the dimension grows, and
whether Hutchinson's reported standard error is calibrated.

1. **Accuracy.** `scorax.log_likelihood` of the seeds' two-Gaussian mixture on a
   `VPPath`, with its exact score (`scorax.testing.ExactModel`) and the exact
   divergence, in float64, on held-out draws of the mixture, against the analytic
   `GaussianMixture.marginal(path, t_min).log_prob`. The `error` column
   substitutes the true $p_1$ (`marginal(path, 1).log_prob` of the latent) for
   the library's $\mathcal{N}(0, \sigma(1)^2 I)$ prior, as the tests do, so that
   it is the solver's error alone; `reported error` is that of the value the
   library returns, prior mismatch included.
2. **Cost.** One `log_likelihood` of one point under an untrained `ScoreMLP`
   (width 128, depth 3), with Heun's method and 10 constant steps (20
   evaluations of the vector field and its divergence, whatever the divergence),
   at d = 2 to 784: the exact divergence (d Jacobian-vector products per
   evaluation) against Hutchinson's with 1, 4 and 16 Rademacher probes (that
   many products). `max rel diff` is the relative error of the estimate.
3. **Calibration.** The same network and solve at d = 16 and 64, repeated over
   many probe keys: the spread (standard deviation) of Hutchinson's estimates
   over the keys against the standard error `log_likelihood` reports for each.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr

import scorax
import scorax.testing

from ._harness import (
    Budget,
    FULL,
    Measurement,
    measurement_table,
    QUICK,
    time_callable,
)


PATH = scorax.VPPath()
T_MIN = 1e-3
DIMS = (2, 16, 64, 256, 784)
QUICK_DIMS = (2, 64)
PROBES = (1, 4, 16)
HEUN_10 = {
    "solver": dfx.Heun(),
    "stepsize_controller": dfx.ConstantStepSize(),
    "num_steps": 10,
}


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """One solver setting: model evaluations against log-likelihood error."""

    case: str
    num_points: int
    evaluations: float  # mean over points
    error: float  # mean |error| in nats, true p_1 in place of the prior
    max_error: float
    reported_error: float  # mean |error| of the value returned
    compile_s: float
    median_s: float  # all points, under one `jax.vmap`

    def to_json(self) -> dict[str, Any]:
        return {"table": "accuracy", **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class Cost:
    """Exact divergence (reference) against Hutchinson's (candidate) at one d."""

    dim: int
    num_probes: int
    measurement: Measurement

    def to_json(self) -> dict[str, Any]:
        return {
            "table": "cost",
            "dim": self.dim,
            "num_probes": self.num_probes,
            **self.measurement.to_json(),
        }


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Hutchinson's reported standard error against the spread over keys."""

    dim: int
    num_probes: int
    num_keys: int
    exact: float  # with the exact divergence
    spread: float  # standard deviation of the estimates over the keys
    spread_error: float  # its standard error, spread / sqrt(2 (keys - 1))
    mean_reported: float  # mean of the reported standard errors
    rms_reported: float  # root mean square of the reported standard errors
    bias_z: float  # (mean estimate - exact) / (spread / sqrt(keys))

    def to_json(self) -> dict[str, Any]:
        return {"table": "calibration", **dataclasses.asdict(self)}


Row = Accuracy | Cost | Calibration


def accuracy_settings(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    settings = []
    for tol in (1e-3,) if quick else (1e-3, 1e-5, 1e-7):
        controller = dfx.PIDController(rtol=tol, atol=tol)
        settings.append(
            (
                f"Tsit5, PID rtol = atol = {tol:g}",
                {"solver": dfx.Tsit5(), "stepsize_controller": controller},
            )
        )
    for n in (10,) if quick else (10, 30, 100):
        settings.append(
            (
                f"Heun, {n} constant steps",
                {
                    "solver": dfx.Heun(),
                    "stepsize_controller": dfx.ConstantStepSize(),
                    "num_steps": n,
                },
            )
        )
    return settings


def accuracy(quick: bool) -> list[Accuracy]:
    """Solver error against the exact density, in float64."""
    budget = Budget(warmup=0, repeats=1) if quick else Budget(warmup=1, repeats=3)
    num = 50 if quick else 300
    rows = []
    with jax.enable_x64(True):
        mixture = scorax.datasets.gaussian_mixture()
        model = scorax.testing.ExactModel(mixture, PATH)
        x = mixture.sample(key=jr.key(0), sample_shape=(num,))
        exact = jax.vmap(mixture.marginal(PATH, T_MIN).log_prob)(x)
        p1 = mixture.marginal(PATH, 1.0)
        for case, options in accuracy_settings(quick):
            solve = jax.jit(
                jax.vmap(
                    lambda x, options=options: scorax.log_likelihood(
                        model,
                        PATH,
                        x,
                        t_min=T_MIN,
                        parameterisation=scorax.ScorePrediction(),
                        **options,
                    )
                )
            )
            timing, result = time_callable(solve, (x,), budget)
            corrected = (
                result.log_likelihood
                - result.prior_log_prob
                + jax.vmap(p1.log_prob)(result.latent)
            )
            error = jnp.abs(corrected - exact)
            rows.append(
                Accuracy(
                    case,
                    num,
                    float(jnp.mean(result.num_evaluations)),
                    float(jnp.mean(error)),
                    float(jnp.max(error)),
                    float(jnp.mean(jnp.abs(result.log_likelihood - exact))),
                    timing.compile_s - timing.median_s,
                    timing.median_s,
                )
            )
            print(
                f"  {case}: {rows[-1].evaluations:.0f} evaluations, "
                f"error {rows[-1].error:.2e} (reported {rows[-1].reported_error:.2e})"
            )
    return rows


def network(dim: int) -> scorax.ScoreMLP:
    return scorax.ScoreMLP((dim,), key=jr.key(dim))


def likelihood_fn(
    model: scorax.ScoreMLP, num_probes: int | None
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """`(x, key) -> log p(x)` with the exact divergence (`num_probes=None`) or
    Hutchinson's, jitted."""

    def fn(x, key):
        return scorax.log_likelihood(
            model,
            PATH,
            x,
            key=None if num_probes is None else key,
            num_probes=num_probes or 1,
            t_min=T_MIN,
            **HEUN_10,
        ).log_likelihood

    return jax.jit(fn)


def hutchinson_result(
    model: scorax.ScoreMLP, num_probes: int
) -> Callable[[jax.Array, jax.Array], scorax.LikelihoodResult]:
    def fn(x, key):
        return scorax.log_likelihood(
            model, PATH, x, key=key, num_probes=num_probes, t_min=T_MIN, **HEUN_10
        )

    return fn


def cost(quick: bool) -> list[Cost]:
    budget = QUICK if quick else FULL
    rows = []
    for dim in QUICK_DIMS if quick else DIMS:
        model = network(dim)
        x = 0.5 * jr.normal(jr.key(100 + dim), (dim,))
        key = jr.key(200 + dim)
        exact_timing, exact = time_callable(
            likelihood_fn(model, None), (x, key), budget
        )
        for m in PROBES:
            timing, estimate = time_callable(likelihood_fn(model, m), (x, key), budget)
            measurement = Measurement(
                case=f"d={dim}, Heun 10 steps",
                reference="exact divergence",
                candidate=f"Hutchinson, {m} probe{'s' if m > 1 else ''}",
                reference_timing=exact_timing,
                candidate_timing=timing,
                max_rel_diff=float(jnp.abs(estimate - exact) / jnp.abs(exact)),
            )
            rows.append(Cost(dim, m, measurement))
            print(
                f"  d={dim}, {m} probes: {timing.median_s:.3g} s against exact "
                f"{exact_timing.median_s:.3g} s (ratio {measurement.ratio:.3f})"
            )
    return rows


def calibration(quick: bool) -> list[Calibration]:
    num_keys = 50 if quick else 200
    rows = []
    for dim in (16,) if quick else (16, 64):
        model = network(dim)
        x = 0.5 * jr.normal(jr.key(100 + dim), (dim,))
        keys = jr.split(jr.key(300 + dim), num_keys)
        exact = float(likelihood_fn(model, None)(x, keys[0]))
        for m in PROBES:
            results = jax.jit(jax.vmap(hutchinson_result(model, m), in_axes=(None, 0)))(
                x, keys
            )
            estimates = results.log_likelihood
            spread = float(jnp.std(estimates, ddof=1))
            reported = results.standard_error
            rows.append(
                Calibration(
                    dim,
                    m,
                    num_keys,
                    exact,
                    spread,
                    spread / (2 * (num_keys - 1)) ** 0.5,
                    float(jnp.mean(reported)),
                    float(jnp.sqrt(jnp.mean(reported**2))),
                    float((jnp.mean(estimates) - exact) / (spread / num_keys**0.5)),
                )
            )
            print(
                f"  d={dim}, {m} probes: spread {spread:.3g}, mean reported "
                f"{rows[-1].mean_reported:.3g}, bias z {rows[-1].bias_z:+.2f}"
            )
    return rows


def run(*, quick: bool = False) -> list[Row]:
    return [*accuracy(quick), *cost(quick), *calibration(quick)]


def markdown_table(name: str, rows: list[Row]) -> list[str]:
    accuracy_rows = [row for row in rows if isinstance(row, Accuracy)]
    cost_rows = [row for row in rows if isinstance(row, Cost)]
    calibration_rows = [row for row in rows if isinstance(row, Calibration)]
    lines = [
        "### Accuracy against the exact density (float64)",
        "",
        "`error`: mean |log p - exact| over the points, the true p_1 in place of "
        "the prior (solver error alone); `reported error`: the value returned, "
        "with the library's N(0, sigma(1)^2 I) prior.",
        "",
        "| name | case | points | evaluations | error | max error "
        "| reported error | compile s | median s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in accuracy_rows:
        lines.append(
            f"| {name} | {row.case} | {row.num_points} | {row.evaluations:.0f} "
            f"| {row.error:.2e} | {row.max_error:.2e} | {row.reported_error:.2e} "
            f"| {row.compile_s:.3g} | {row.median_s:.3g} |"
        )
    lines += [
        "",
        "### Cost: exact divergence against Hutchinson's, as d grows",
        "",
        "Median seconds of one `log_likelihood` (one point, Heun, 10 steps, 20 "
        "evaluations), untrained `ScoreMLP` width 128 depth 3, float32.",
        "",
        "| d | exact s | "
        + " | ".join(f"Hutchinson {m} s" for m in PROBES)
        + " | "
        + " | ".join(f"exact / Hutchinson {m}" for m in PROBES)
        + " |",
        "| --- " * (2 + 2 * len(PROBES)) + "|",
    ]
    for dim in dict.fromkeys(row.dim for row in cost_rows):
        by_probes = {
            row.num_probes: row.measurement for row in cost_rows if row.dim == dim
        }
        exact_s = by_probes[PROBES[0]].reference_timing.median_s
        lines.append(
            f"| {dim} | {exact_s:.3g} | "
            + " | ".join(
                f"{by_probes[m].candidate_timing.median_s:.3g}" for m in PROBES
            )
            + " | "
            + " | ".join(f"{1 / by_probes[m].ratio:.1f}" for m in PROBES)
            + " |"
        )
    lines += ["", *measurement_table(name, [row.measurement for row in cost_rows])]
    lines += [
        "",
        "### Calibration of Hutchinson's standard error",
        "",
        "Over the keys: the spread (standard deviation) of the estimates, against "
        "the mean and the root mean square of the standard errors reported with "
        "them. With one probe the reported error is +inf by design (one sample has "
        "no spread); with m probes the mean reported error is expected slightly "
        "below the spread (E[s] < sigma for a sample standard deviation s), the "
        "root mean square close to it. `bias z` = (mean estimate - exact) / "
        "(spread / sqrt(keys)).",
        "",
        "| name | d | probes | keys | exact log p | spread | mean reported "
        "| rms reported | bias z |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in calibration_rows:
        lines.append(
            f"| {name} | {row.dim} | {row.num_probes} | {row.num_keys} "
            f"| {row.exact:.4g} | {row.spread:.3g} +- {row.spread_error:.2g} "
            f"| {row.mean_reported:.3g} | {row.rms_reported:.3g} "
            f"| {row.bias_z:+.2f} |"
        )
    return lines
