"""Consistency models on the seeds' two-Gaussian mixture: one distilled from the
exact score (consistency distillation, Heun teacher steps, the original recipe)
and one trained from data alone (consistency training, the improved recipe),
each sampled in one and two evaluations, beside DPM-Solver++(3M) and Euler on
the exact score at the same numbers of evaluations.

Run with `python examples/consistency.py`: it trains both models (about a
minute on two CPU cores), prints the sliced Wasserstein distance of every
sampler's samples to fresh data with the distance between two fresh samples (the
noise floor), and writes `consistency.png`: the data, the distilled model's one-
and two-step samples, and DPM-Solver++(3M) at two evaluations.
"""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

import scorax
import scorax.testing


PATH = scorax.VPPath()
SCORE = scorax.ScorePrediction()
EVALUATIONS = (1, 2, 4)


def consistency_network(data: jax.Array, *, key: jax.Array) -> scorax.ConsistencyModel:
    """An MLP read as a consistency function, with sigma_data the data's spread."""
    network = scorax.ScoreMLP((2,), width=128, depth=3, time_scale=1.0, key=key)
    return scorax.ConsistencyModel(network, PATH, sigma_data=float(jnp.std(data)))


def distil(
    teacher,
    data: jax.Array,
    *,
    num_steps: int,
    key: jax.Array,
    parameterisation: scorax.AbstractParameterisation = SCORE,
    progress: bool = True,
) -> scorax.ConsistencyModel:
    """Consistency distillation of `teacher` with the original recipe (18 levels,
    squared distance, an EMA target at 0.95 kept by `fit`) and Heun steps."""
    recipe = scorax.consistency_recipe("original_cd", num_steps=num_steps)

    def loss(model, x, key, step, target):
        return scorax.consistency_distillation_loss(
            model,
            target,
            teacher,
            PATH,
            x,
            key=key,
            step=step,
            recipe=recipe,
            method="heun",
            parameterisation=parameterisation,
        )

    model_key, fit_key = jr.split(key)
    return scorax.fit(
        consistency_network(data, key=model_key),
        loss,
        data,
        optimizer=optax.adam(optax.cosine_decay_schedule(1e-3, num_steps)),
        num_steps=num_steps,
        batch_size=256,
        key=fit_key,
        target_decay=recipe.decay,
        progress=progress,
    ).model


def train(
    data: jax.Array, *, num_steps: int, key: jax.Array, progress: bool = True
) -> scorax.ConsistencyModel:
    """Consistency training from data with the improved recipe (the doubling
    curriculum, lognormal levels, pseudo-Huber distance; the target is the model
    itself, so `fit` keeps no copy and passes the step alone)."""
    recipe = scorax.consistency_recipe("improved", num_steps=num_steps)

    def loss(model, x, key, step):
        return scorax.consistency_training_loss(
            model, None, PATH, x, key=key, step=step, recipe=recipe
        )

    model_key, fit_key = jr.split(key)
    return scorax.fit(
        consistency_network(data, key=model_key),
        loss,
        data,
        optimizer=optax.adam(optax.cosine_decay_schedule(1e-3, num_steps)),
        num_steps=num_steps,
        batch_size=256,
        key=fit_key,
        progress=progress,
    ).model


@eqx.filter_jit
def consistency_samples(model, x1, keys, *, times: int) -> jax.Array:
    return jax.vmap(
        lambda x, k: (
            scorax.consistency_sample(model, PATH, x, times=times, key=k).sample
        )
    )(x1, keys)


@eqx.filter_jit
def ode_samples(
    model,
    x1,
    *,
    evaluations: int,
    method: str,
    parameterisation: scorax.AbstractParameterisation = SCORE,
) -> jax.Array:
    """DPM-Solver++(3M) or Euler on the probability-flow ODE of `model` (which
    predicts `parameterisation`), with exactly `evaluations` model calls (no final
    denoising step)."""

    def one(x):
        if method == "dpm3m":
            return scorax.dpm_solver_pp_sample(
                model,
                PATH,
                x,
                num_steps=evaluations,
                order=3,
                parameterisation=parameterisation,
                denoise=False,
            ).sample
        return scorax.probability_flow_sample(
            model,
            PATH,
            x,
            solver=dfx.Euler(),
            stepsize_controller=dfx.ConstantStepSize(),
            num_steps=evaluations,
            parameterisation=parameterisation,
            denoise=False,
        ).sample

    return jax.vmap(one)(x1)


def sample_every_way(
    consistency: dict[str, scorax.ConsistencyModel],
    score_model,
    num_samples: int,
    *,
    key: jax.Array,
    parameterisation: scorax.AbstractParameterisation = SCORE,
) -> dict[str, jax.Array]:
    """Samples of each consistency model in 1 and 2 evaluations, and of
    DPM-Solver++(3M) and Euler on `score_model` (predicting `parameterisation`) in
    1, 2 and 4, all from the same prior draws."""
    prior_key, noise_key = jr.split(key)
    x1 = PATH.prior_sample(key=prior_key, shape=(num_samples, 2))
    keys = jr.split(noise_key, num_samples)
    samples = {}
    for name, model in consistency.items():
        for times in (1, 2):
            samples[f"{name}, {times} eval"] = consistency_samples(
                model, x1, keys, times=times
            )
    for method in ("dpm3m", "euler"):
        for evaluations in EVALUATIONS:
            samples[f"{method}, {evaluations} eval"] = ode_samples(
                score_model,
                x1,
                evaluations=evaluations,
                method=method,
                parameterisation=parameterisation,
            )
    return samples


def distances(
    samples: dict[str, jax.Array], data_law, *, key: jax.Array
) -> dict[str, float]:
    """The sliced Wasserstein distance of each sample to fresh data, and the
    noise floor (two fresh samples of the same size)."""
    num = next(iter(samples.values())).shape[0]
    fresh_key, floor_key, sw_key = jr.split(key, 3)
    fresh = data_law(fresh_key, num)
    out = {
        name: float(scorax.sliced_wasserstein(x, fresh, key=sw_key))
        for name, x in samples.items()
    }
    out["noise floor (fresh data)"] = float(
        scorax.sliced_wasserstein(data_law(floor_key, num), fresh, key=sw_key)
    )
    return out


def plot(data, samples: dict[str, jax.Array], output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {"data": data, **samples}
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for axis, (title, points) in zip(axes, panels.items(), strict=True):
        points = jnp.asarray(points)[:4000]
        axis.scatter(points[:, 0], points[:, 1], s=1, alpha=0.3)
        axis.set_title(title, fontsize=10)
        axis.set_xlim(-6, 6)
        axis.set_ylim(-6, 6)
        axis.set_aspect("equal")
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)


def main(
    num_steps: int = 4000,
    num_samples: int = 20_000,
    output: str | None = "consistency.png",
    progress: bool = True,
) -> dict[str, float]:
    mixture = scorax.datasets.gaussian_mixture()
    data = mixture.sample(key=jr.key(0), sample_shape=(8192,))
    exact = scorax.testing.ExactModel(mixture, PATH)  # the exact score
    consistency = {
        "CD": distil(
            exact, data, num_steps=num_steps, key=jr.key(1), progress=progress
        ),
        "CT": train(data, num_steps=num_steps, key=jr.key(2), progress=progress),
    }
    samples = sample_every_way(consistency, exact, num_samples, key=jr.key(3))

    def data_law(key, num):
        return mixture.sample(key=key, sample_shape=(num,))

    summary = distances(samples, data_law, key=jr.key(4))
    print(f"{'sampler':>28}  sliced W2 to fresh data")
    for name, value in summary.items():
        print(f"{name:>28}  {value:.4f}")
    if output is not None:
        shown = ("CD, 1 eval", "CD, 2 eval", "dpm3m, 2 eval")
        plot(data, {name: samples[name] for name in shown}, output)
    return summary


if __name__ == "__main__":
    main()
