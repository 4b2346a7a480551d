r"""Training recipes: the variance of the likelihood-weighted loss with uniform
times and with Song et al. 2021's importance proposal.

`diffusion_loss` with `weighting="likelihood"` on a `VPPath`, per sample over
the seeds' two-Gaussian mixture (a fresh data point, time and noise per draw),
for two models: the exact model (`scorax.testing.ExactModel`, noise prediction)
and a `ScoreMLP` trained by `fit` with the default noise weighting. Each row
gives the mean loss over the draws with its standard error, the variance of one
draw, and the ratio of the uniform-time variance to this row's: importance
sampling keeps the mean (the objective) and should lower the variance at least
twofold. The draws are the same number for both rows of a model; `agrees` says
whether the two means are within 5 standard errors of their difference.
"""

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.random as jr
import numpy as np
import optax

import scorax
import scorax.testing


PATH = scorax.VPPath()
NUM_DRAWS = 200_000
QUICK_DRAWS = 20_000
TRAIN_STEPS = 3000
QUICK_TRAIN_STEPS = 300


@dataclasses.dataclass(frozen=True)
class Variance:
    model: str
    time_sampling: str
    draws: int
    mean: float
    standard_error: float
    variance: float
    variance_ratio: float  # uniform-time variance / this row's
    agrees: bool  # the mean is within 5 standard errors of the uniform row's

    def to_json(self) -> dict[str, Any]:
        return {"table": "variance", **dataclasses.asdict(self)}


@eqx.filter_jit
def _losses(model, parameterisation, time_sampling, data, key):
    keys = jr.split(key, data.shape[0])
    return jax.vmap(
        lambda x0, k: scorax.diffusion_loss(
            model,
            PATH,
            x0,
            key=k,
            parameterisation=parameterisation,
            weighting="likelihood",
            time_sampling=time_sampling,
        )
    )(data, keys)


def _trained(quick: bool) -> scorax.ScoreMLP:
    mixture = scorax.datasets.gaussian_mixture()
    data = mixture.sample(key=jr.key(0), sample_shape=(8192,))
    model = scorax.ScoreMLP((2,), width=64, depth=2, key=jr.key(1))
    return scorax.fit(
        model,
        lambda m, x, k: scorax.diffusion_loss(m, PATH, x, key=k),
        data,
        optimizer=optax.adam(1e-3),
        num_steps=QUICK_TRAIN_STEPS if quick else TRAIN_STEPS,
        batch_size=256,
        key=jr.key(2),
        progress=False,
    ).model


def run(*, quick: bool = False) -> list[Variance]:
    mixture = scorax.datasets.gaussian_mixture()
    num = QUICK_DRAWS if quick else NUM_DRAWS
    data = mixture.sample(key=jr.key(3), sample_shape=(num,))
    noise = scorax.NoisePrediction()
    models = {
        "exact (ExactModel)": scorax.testing.ExactModel(mixture, PATH, noise),
        "trained ScoreMLP": _trained(quick),
    }
    samplings = {
        "UniformTime()": scorax.UniformTime(),
        "ImportanceTime(LikelihoodProposal())": scorax.ImportanceTime(
            scorax.LikelihoodProposal()
        ),
    }
    rows = []
    for model_name, model in models.items():
        results = {}
        for i, (name, sampling) in enumerate(samplings.items()):
            losses = np.asarray(_losses(model, noise, sampling, data, jr.key(10 + i)))
            results[name] = (losses.mean(), losses.var(ddof=1))
        base_mean, base_variance = results["UniformTime()"]
        for name, (mean, variance) in results.items():
            error = (variance / num) ** 0.5
            difference = ((variance + base_variance) / num) ** 0.5
            rows.append(
                Variance(
                    model=model_name,
                    time_sampling=name,
                    draws=num,
                    mean=float(mean),
                    standard_error=float(error),
                    variance=float(variance),
                    variance_ratio=float(base_variance / variance),
                    agrees=bool(abs(mean - base_mean) <= 5 * difference),
                )
            )
    return rows


def markdown_table(name: str, rows: list[Variance]) -> list[str]:
    lines = [
        "The likelihood-weighted `diffusion_loss` on the seeds' mixture (VP path), "
        "one draw per data point, time and noise: mean with its standard error, "
        "variance of one draw, and uniform-time variance over this row's (target: "
        "at least 2 for the importance proposal).",
        "",
        "| model | time sampling | draws | mean loss | standard error | variance "
        "| variance ratio | mean agrees (5 SE) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.model} | `{row.time_sampling}` | {row.draws} | {row.mean:.4g} "
            f"| {row.standard_error:.2g} | {row.variance:.4g} "
            f"| {row.variance_ratio:.3g} | {'yes' if row.agrees else 'NO'} |"
        )
    return lines
