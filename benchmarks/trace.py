r"""Variance of Hutchinson's trace estimator per probe, against the closed forms.

For a known symmetric matrix $A$ (so $f(x) = A x$ has Jacobian $A$), one probe
$v$ gives the estimate $v^\top A v$ of $\operatorname{tr} A$, with variance

- Gaussian, $v \sim \mathcal{N}(0, I)$: $2 \|A\|_F^2$;
- Rademacher, independent $\pm 1$ entries: $2 (\|A\|_F^2 - \sum_i A_{ii}^2)$;
- sphere, uniform on the sphere of radius $\sqrt d$:
  $\frac{2d}{d + 2} (\|A\|_F^2 - (\operatorname{tr} A)^2 / d)$.

The sphere's follows from $v = \sqrt d\, u$, $u$ uniform on the unit sphere, whose
fourth moments are $\mathbb{E}[u_i u_j u_k u_l] = (\delta_{ij} \delta_{kl} +
\delta_{ik} \delta_{jl} + \delta_{il} \delta_{jk}) / (d (d + 2))$: so
$\mathbb{E}[(v^\top A v)^2] = \frac{d}{d + 2} ((\operatorname{tr} A)^2 + 2
\|A\|_F^2)$, and subtracting $(\operatorname{tr} A)^2$ gives the form above. It
is $\frac{2d}{d+2}$ times $d$ times the variance of the eigenvalues of $A$: zero
for $A = c I$, where every probe gives the exact trace.

Each row draws many keys, calls `scorax.hutchinson_trace` with one probe per key,
and compares the sample variance of the estimates with the closed form, giving the
sample variance's standard error and the difference in standard errors (`z`).
Matrices ($S$ a symmetric matrix with standard normal entries): dense symmetric,
where the three probes are close; $I + 0.1 S$, near the identity, where Rademacher
and sphere probes both drop the large diagonal that makes Gaussian probes noisy;
and $\operatorname{diag}(1, \dots, 3) + 0.1 S$, whose diagonal has a spread that
Rademacher probes drop and sphere probes do not.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float

import scorax


PROBES = ("gaussian", "rademacher", "sphere")


@dataclasses.dataclass(frozen=True)
class Variance:
    """Per-probe variance of Hutchinson's estimate for one matrix and probe."""

    case: str
    probe: str
    num_keys: int
    closed_form: float
    empirical: float  # sample variance of one-probe estimates over the keys
    standard_error: float  # of `empirical`
    mean_error: float  # (mean estimate - trace) / its standard error

    @property
    def z(self) -> float:
        """(empirical - closed form) / standard error."""
        return (self.empirical - self.closed_form) / self.standard_error

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "z": self.z}


def closed_form(a: Float[Array, "d d"], probe: str) -> float:
    """Variance of v^T A v for one probe and symmetric A (see the module doc)."""
    d = a.shape[0]
    frobenius = jnp.sum(a**2)
    if probe == "gaussian":
        value = 2 * frobenius
    elif probe == "rademacher":
        value = 2 * (frobenius - jnp.sum(jnp.diag(a) ** 2))
    else:
        value = 2 * d / (d + 2) * (frobenius - jnp.trace(a) ** 2 / d)
    return float(value)


def matrices() -> list[tuple[str, Float[Array, "d d"]]]:
    keys = jr.split(jr.key(0), 4)

    def symmetric(key, d):
        b = jr.normal(key, (d, d))
        return (b + b.T) / 2

    return [
        ("dense symmetric, d=8", symmetric(keys[0], 8)),
        ("dense symmetric, d=64", symmetric(keys[1], 64)),
        (
            "I + 0.1 S, d=64",
            jnp.eye(64) + 0.1 * symmetric(keys[2], 64),
        ),
        (
            "diag(1..3) + 0.1 S, d=64",
            jnp.diag(jnp.linspace(1.0, 3.0, 64)) + 0.1 * symmetric(keys[3], 64),
        ),
    ]


def one_probe_estimates(
    a: Float[Array, "d d"], probe: str, keys: Array
) -> Float[Array, " keys"]:
    def fn(v: Float[Array, " d"]) -> Float[Array, " d"]:
        return a @ v

    x = jnp.zeros(a.shape[0], a.dtype)  # f is linear: the point does not matter

    def estimate(key: Array) -> Array:
        return scorax.hutchinson_trace(fn, x, key=key, num_probes=1, probe=probe)[0]

    return jax.jit(jax.vmap(estimate))(keys)


def sample_variance_and_error(samples: Float[Array, " n"]) -> tuple[float, float]:
    """The sample variance and its standard error, from the fourth central
    moment: Var(s^2) = (mu_4 - sigma^4 (n - 3) / (n - 1)) / n."""
    n = samples.shape[0]
    centred = samples - jnp.mean(samples)
    variance = jnp.sum(centred**2) / (n - 1)
    fourth = jnp.mean(centred**4)
    error = jnp.sqrt((fourth - variance**2 * (n - 3) / (n - 1)) / n)
    return float(variance), float(error)


def run(*, quick: bool = False) -> list[Variance]:
    """Measure in float64, so the variances are not blurred by rounding."""
    num_keys = 5_000 if quick else 100_000
    rows = []
    with jax.enable_x64(True):
        keys = jr.split(jr.key(1), num_keys)
        for case, a in matrices():
            for probe in PROBES:
                estimates = one_probe_estimates(a, probe, keys)
                empirical, error = sample_variance_and_error(estimates)
                mean_error = (jnp.mean(estimates) - jnp.trace(a)) / jnp.sqrt(
                    empirical / num_keys
                )
                rows.append(
                    Variance(
                        case,
                        probe,
                        num_keys,
                        closed_form(a, probe),
                        empirical,
                        error,
                        float(mean_error),
                    )
                )
                print(
                    f"  {case}, {probe}: variance {empirical:.4g} +- {error:.2g}, "
                    f"closed form {rows[-1].closed_form:.4g} (z = {rows[-1].z:+.2f})"
                )
    return rows


def markdown_table(name: str, rows: list[Variance]) -> list[str]:
    lines = [
        "Variance of one probe's estimate v^T A v of tr A over the keys, against "
        "its closed form; `z` = (empirical - closed form) / standard error, and "
        "`bias z` = (mean estimate - tr A) / its standard error (both should be "
        "a few units at most).",
        "",
        "| name | matrix | probe | keys | closed form | empirical | std error | z "
        "| bias z |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {name} | {row.case} | {row.probe} | {row.num_keys} "
            f"| {row.closed_form:.4g} | {row.empirical:.4g} "
            f"| {row.standard_error:.2g} | {row.z:+.2f} | {row.mean_error:+.2f} |"
        )
    return lines
