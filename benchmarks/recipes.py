r"""Training recipes: the variance of the likelihood-weighted loss with uniform
times and with Song et al. 2021's importance proposal, and four recipes compared
on real images (scikit-learn's 8x8 digits).

**Variance.**
`diffusion_loss` with `weighting="likelihood"` on a `VPPath`, per sample over
the seeds' two-Gaussian mixture (a fresh data point, time and noise per draw),
for two models: the exact model (`scorax.testing.ExactModel`, noise prediction)
and a `ScoreMLP` trained by `fit` with the default noise weighting. Each row
gives the mean loss over the draws with its standard error, the variance of one
draw, and the ratio of the uniform-time variance to this row's: importance
sampling keeps the mean (the objective) and should lower the variance at least
twofold. The draws are the same number for both rows of a model; `agrees` says
whether the two means are within 5 standard errors of their difference.

**Digits.** The same `UNet((8, 8), channels=(32, 64))`, Adam (learning rate
1e-3), batch 64 and number of steps for each recipe, trained on the first 1,500
digits and evaluated on the other 297:

- DDPM: `VPPath`, noise prediction, `"noise"` weighting, uniform times;
- EDM: `EDMPath`, `Preconditioned` + `EDMPrediction` with sigma_data the training
  pixels' standard deviation, `"edm"` weighting, `LogNormalNoise()`;
- likelihood: `VPPath`, noise prediction, `"likelihood"` weighting,
  `ImportanceTime(LikelihoodProposal())`;
- rectified flow: `LinearPath`, velocity prediction, `"uniform"` weighting,
  `LogitNormalTime()`.

Per recipe: the held-out bits per dimension of `nll_bound` (64 samples per
digit, uniformly dequantised across each pixel's bin: 17 levels over a width of
17/8; t_max = 0.99 on the linear path, where alpha(1) = 0), with its standard
error over the digits, and the sliced Wasserstein distance of 297 samples
(DPM-Solver++(3M), 20 evaluations) to the held-out digits, beside the distance
between the training digits and the held-out ones (the floor).
"""

import dataclasses
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
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


def run(*, quick: bool = False) -> list[Any]:
    return [*variance_rows(quick), *digits_rows(quick)]


def variance_rows(quick: bool) -> list[Variance]:
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


DIGIT_STEPS = 4000
QUICK_DIGIT_STEPS = 50


@dataclasses.dataclass(frozen=True)
class Digits:
    recipe: str
    steps: int
    train_s: float
    bits_per_dim: float
    bits_per_dim_error: float
    distance: float
    floor: float

    def to_json(self) -> dict[str, Any]:
        return {"table": "digits", **dataclasses.asdict(self)}


def _recipes(sigma_data: float) -> dict[str, tuple]:
    """name -> (path, parameterisation, loss options, wrap, t_max)."""
    edm = scorax.EDMPrediction(sigma_data)
    return {
        "DDPM": (PATH, scorax.NoisePrediction(), {}, False, 1.0),
        "EDM": (
            scorax.EDMPath(),
            edm,
            {"weighting": "edm", "time_sampling": scorax.LogNormalNoise()},
            True,
            1.0,
        ),
        "likelihood": (
            PATH,
            scorax.NoisePrediction(),
            {
                "weighting": "likelihood",
                "time_sampling": scorax.ImportanceTime(scorax.LikelihoodProposal()),
            },
            False,
            1.0,
        ),
        "rectified flow": (
            scorax.LinearPath(),
            scorax.VelocityPrediction(),
            {"weighting": "uniform", "time_sampling": scorax.LogitNormalTime()},
            False,
            0.99,
        ),
    }


def digits_rows(quick: bool) -> list[Digits]:
    images = scorax.datasets.digits()
    train, held_out = images[:1500], images[1500:]
    sigma_data = float(jnp.std(train))
    steps = QUICK_DIGIT_STEPS if quick else DIGIT_STEPS
    floor = float(
        scorax.sliced_wasserstein(
            train[: held_out.shape[0]].reshape(-1, 64),
            held_out.reshape(-1, 64),
            key=jr.key(7),
        )
    )
    return [
        _digits_row(name, recipe, train, held_out, sigma_data, steps, floor)
        for name, recipe in _recipes(sigma_data).items()
    ]


def _digits_row(name, recipe, train, held_out, sigma_data, steps, floor) -> Digits:
    path, parameterisation, options, wrap, t_max = recipe
    network = scorax.UNet((8, 8), channels=(32, 64), key=jr.key(0))
    model = scorax.Preconditioned(network, path, sigma_data) if wrap else network

    def loss(m, x, k):
        return scorax.diffusion_loss(
            m, path, x, key=k, parameterisation=parameterisation, **options
        )

    start = time.perf_counter()
    trained = scorax.fit(
        model,
        loss,
        train,
        optimizer=optax.adam(1e-3),
        num_steps=steps,
        batch_size=64,
        key=jr.key(1),
        progress=False,
    ).model
    train_s = time.perf_counter() - start
    # Dequantised held-out digits: uniform noise across each bin of width 1/8.
    noise = jr.uniform(jr.key(2), held_out.shape, minval=0.0, maxval=1 / 8)
    dequantised = held_out - 1 / 16 + noise

    @eqx.filter_jit
    def bounds(model, xs):
        keys = jr.split(jr.key(3), xs.shape[0])
        return jax.lax.map(
            lambda xk: (
                scorax.nll_bound(
                    model,
                    path,
                    xk[0],
                    key=xk[1],
                    num_samples=64,
                    parameterisation=parameterisation,
                    t_max=t_max,
                ).nll
            ),
            (xs, keys),
            batch_size=8,
        )

    nll = bounds(trained, dequantised)
    bpd = np.asarray(
        jax.vmap(
            lambda n, x: scorax.bits_per_dim(-n, x, num_bins=17, data_width=17 / 8)
        )(nll, held_out)
    )
    sampler = scorax.get_sampler(
        "dpm3m",
        path,
        num_steps=20,
        parameterisation=parameterisation,
        t_max=t_max if t_max < 1 else None,
    )
    count = held_out.shape[0]
    starts = jax.vmap(lambda k: path.prior_sample(key=k, shape=(8, 8)))(
        jr.split(jr.key(4), count)
    )

    @eqx.filter_jit
    def draw(model, xs, keys):
        return jax.vmap(lambda x, k: sampler(model, x, k).sample)(xs, keys)

    samples = draw(trained, starts, jr.split(jr.key(5), count))
    distance = float(
        scorax.sliced_wasserstein(
            samples.reshape(-1, 64), held_out.reshape(-1, 64), key=jr.key(7)
        )
    )
    return Digits(
        recipe=name,
        steps=steps,
        train_s=train_s,
        bits_per_dim=float(bpd.mean()),
        bits_per_dim_error=float(bpd.std(ddof=1) / bpd.size**0.5),
        distance=distance,
        floor=floor,
    )


def markdown_table(name: str, rows: list[Any]) -> list[str]:
    variance = [row for row in rows if isinstance(row, Variance)]
    digits = [row for row in rows if isinstance(row, Digits)]
    lines = _variance_table(variance)
    if digits:
        lines += [
            "",
            "### Recipes on 8x8 digits",
            "",
            "Same UNet, optimiser, batch and steps; held-out bits per dimension of "
            "the variational bound (dequantised) with its standard error over the "
            "297 held-out digits, and the sliced Wasserstein distance of 297 "
            "DPM-Solver++(3M) samples (20 evaluations) to them; the floor is the "
            "training digits' distance to the held-out ones.",
            "",
            "| recipe | steps | training s | bits/dim (bound) | standard error "
            "| sliced Wasserstein | floor |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in digits:
            lines.append(
                f"| {row.recipe} | {row.steps} | {row.train_s:.1f} "
                f"| {row.bits_per_dim:.3f} | {row.bits_per_dim_error:.2g} "
                f"| {row.distance:.3g} | {row.floor:.3g} |"
            )
    return lines


def _variance_table(rows: list[Variance]) -> list[str]:
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
