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

Per recipe: the held-out bits per dimension of the variational bound
(`nll_bound`, 64 samples per digit) and of the probability-flow ODE
(`log_likelihood` with 4 Hutchinson probes and 50 Heun steps, on the first 64
held-out digits), both on digits uniformly dequantised across each pixel's bin
(17 levels over a width of 17/8; t_max = 0.99 on the linear path, where alpha(1)
= 0), with standard errors over the digits; the variance of the recipe's own
per-sample loss on the held-out digits; and the Fréchet distance
(`scorax.frechet_distance`) between 297 DPM-Solver++(3M) samples at 10, 20 and 50
steps and the held-out digits, in the hidden features of an MLP classifier
(scikit-learn, 64 ReLU units) trained on the training digits, beside the
distance between 297 training digits and the held-out ones (the floor). The
table is what it is: the recipes are not tuned against each other.
"""

import dataclasses
import time
from typing import Any

import diffrax as dfx
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
    # Vmapped in chunks (lax.map): one vmap over 200,000 draws risks XLA CPU's
    # hang (jaxlib 0.10.2).
    return jax.lax.map(
        lambda xk: scorax.diffusion_loss(
            model,
            PATH,
            xk[0],
            key=xk[1],
            parameterisation=parameterisation,
            weighting="likelihood",
            time_sampling=time_sampling,
        ),
        (data, keys),
        batch_size=2000,
    )


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


DIGIT_STEPS = 2000
QUICK_DIGIT_STEPS = 400


@dataclasses.dataclass(frozen=True)
class Digits:
    recipe: str
    steps: int
    train_s: float
    bpd_bound: float
    bpd_bound_error: float
    bpd_ode: float
    bpd_ode_error: float
    loss_variance: float
    evaluations: tuple[int, ...]
    frechet: tuple[float, ...]
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


SAMPLER_STEPS = (10, 20, 50)
ODE_DIGITS = 64  # held-out digits for the ODE likelihood (Hutchinson, Heun)


def _classifier_features(train, labels):
    """A classifier of the training digits (scikit-learn's MLP, one hidden layer
    of 64 ReLU units, fixed seed) and the map from images to its hidden
    activations, the features of the Fréchet distance."""
    from sklearn.neural_network import MLPClassifier

    flat = np.asarray(train).reshape(train.shape[0], -1)
    classifier = MLPClassifier((64,), max_iter=300, random_state=0)
    classifier.fit(flat, np.asarray(labels))
    weights, bias = classifier.coefs_[0], classifier.intercepts_[0]

    def features(images):
        flat = np.asarray(images).reshape(images.shape[0], -1)
        return jnp.asarray(np.maximum(flat @ weights + bias, 0))

    return features


def digits_rows(quick: bool) -> list[Digits]:
    images, labels = scorax.datasets.digits(labels=True)
    train, held_out = images[:1500], images[1500:]
    sigma_data = float(jnp.std(train))
    steps = QUICK_DIGIT_STEPS if quick else DIGIT_STEPS
    features = _classifier_features(train, labels[:1500])
    held_out_features = features(held_out)
    floor = float(
        scorax.frechet_distance(features(train[: held_out.shape[0]]), held_out_features)
    )
    return [
        _digits_row(name, recipe, train, held_out, sigma_data, steps, floor, features)
        for name, recipe in _recipes(sigma_data).items()
    ]


def _digits_row(
    name, recipe, train, held_out, sigma_data, steps, floor, features
) -> Digits:
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
    count = held_out.shape[0]
    # The recipe's own loss on the held-out digits, 8 draws each: its variance.
    losses = eqx.filter_jit(
        lambda m, xs, ks: jax.vmap(lambda x, k: loss(m, x, k))(xs, ks)
    )(trained, jnp.repeat(held_out, 8, axis=0), jr.split(jr.key(6), 8 * count))
    # Dequantised held-out digits: uniform noise across each bin of width 1/8;
    # 17 levels over a width of 17/8.
    noise = jr.uniform(jr.key(2), held_out.shape, minval=0.0, maxval=1 / 8)
    dequantised = held_out - 1 / 16 + noise

    def bpd(nll):
        return np.asarray(
            jax.vmap(
                lambda n, x: scorax.bits_per_dim(-n, x, num_bins=17, data_width=17 / 8)
            )(nll, held_out[: nll.shape[0]])
        )

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

    @eqx.filter_jit
    def ode(model, xs):
        keys = jr.split(jr.key(8), xs.shape[0])
        return jax.lax.map(
            lambda xk: (
                -scorax.log_likelihood(
                    model,
                    path,
                    xk[0],
                    key=xk[1],
                    num_probes=4,
                    solver=dfx.Heun(),
                    stepsize_controller=dfx.ConstantStepSize(),
                    num_steps=50,
                    parameterisation=parameterisation,
                    t_max=t_max,
                ).log_likelihood
            ),
            (xs, keys),
            batch_size=8,
        )

    bound_bpd = bpd(bounds(trained, dequantised))
    ode_bpd = bpd(ode(trained, dequantised[:ODE_DIGITS]))
    starts = jax.vmap(lambda k: path.prior_sample(key=k, shape=(8, 8)))(
        jr.split(jr.key(4), count)
    )
    evaluations, frechet = [], []
    for num_steps in SAMPLER_STEPS:
        sampler = scorax.get_sampler(
            "dpm3m",
            path,
            num_steps=num_steps,
            parameterisation=parameterisation,
            t_max=t_max if t_max < 1 else None,
        )
        result = eqx.filter_jit(
            lambda m, xs, ks, sampler=sampler: jax.vmap(lambda x, k: sampler(m, x, k))(
                xs, ks
            )
        )(trained, starts, jr.split(jr.key(5), count))
        evaluations.append(int(result.num_evaluations[0]))
        frechet.append(
            float(scorax.frechet_distance(features(result.sample), features(held_out)))
        )
    return Digits(
        recipe=name,
        steps=steps,
        train_s=train_s,
        bpd_bound=float(bound_bpd.mean()),
        bpd_bound_error=float(bound_bpd.std(ddof=1) / bound_bpd.size**0.5),
        bpd_ode=float(ode_bpd.mean()),
        bpd_ode_error=float(ode_bpd.std(ddof=1) / ode_bpd.size**0.5),
        loss_variance=float(np.var(np.asarray(losses), ddof=1)),
        evaluations=tuple(evaluations),
        frechet=tuple(frechet),
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
            "Same UNet((8, 8), channels=(32, 64)), Adam 1e-3, batch 64, steps and "
            "seeds (model key 0, training key 1) for every recipe; trained on the "
            "first 1,500 digits, evaluated on the other 297. Bits per dimension of "
            "the variational bound (`nll_bound`, 64 samples, all 297 digits) and of "
            "the probability-flow ODE (`log_likelihood`, 4 Hutchinson probes, 50 "
            "Heun steps, the first 64 digits), both on dequantised digits, with "
            "standard errors over the digits; the variance of the recipe's own "
            "per-sample loss on held-out digits; the Fréchet distance of 297 "
            "DPM-Solver++(3M) samples to the held-out digits in the hidden features "
            "of an MLP classifier trained on the training digits, at each number of "
            "model evaluations, beside the training digits' distance (the floor).",
            "",
            "| recipe | steps | training s | bits/dim (bound) | bits/dim (ODE) "
            "| loss variance | Fréchet distance (evaluations) | floor |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in digits:
            frechet = ", ".join(
                f"{d:.3g} ({n})"
                for d, n in zip(row.frechet, row.evaluations, strict=True)
            )
            lines.append(
                f"| {row.recipe} | {row.steps} | {row.train_s:.1f} "
                f"| {row.bpd_bound:.3f} ± {row.bpd_bound_error:.2g} "
                f"| {row.bpd_ode:.3f} ± {row.bpd_ode_error:.2g} "
                f"| {row.loss_variance:.3g} | {frechet} | {row.floor:.3g} |"
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
