"""Distil a consistency model from a diffusion U-Net trained on scikit-learn's 8x8
digits, and sample it in one and two evaluations.

The teacher is `examples/digits.py`'s U-Net (noise prediction on a `VPPath`).
The student is a `ConsistencyModel` around a U-Net of the same size, trained with
`consistency_distillation_loss` (the original recipe: 18 levels, squared
distance, an EMA target kept by `fit`, Heun teacher steps). Each sampler draws
297 digits from the same prior draws; the table gives their Fréchet distance to
the 297 held-out digits in pixel space (`scorax.frechet_distance` on the 64
pixels), beside the distance between the training digits and the held-out ones
(the floor).

Run with `python examples/digits_consistency.py` (writes
`digits-consistency.png`: rows of the teacher's EDM samples at 35 evaluations,
DPM-Solver++(3M) at 2, and the consistency model at 1 and 2). The default run
trains the teacher and the student 4,000 steps each (about 20 minutes on two CPU
cores); `main(num_steps=200, distil_steps=200)` is a short trial.
"""

import pathlib
import runpy

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

import scorax


DIGITS = runpy.run_path(str(pathlib.Path(__file__).parent / "digits.py"))
PATH = scorax.VPPath()
NUM_SAMPLES = 297


def distil(
    teacher, train: jax.Array, *, num_steps: int, progress: bool = True
) -> scorax.ConsistencyModel:
    """Consistency distillation of the noise-prediction `teacher` into a
    `ConsistencyModel` around a fresh U-Net of the teacher's size."""
    recipe = scorax.consistency_recipe("original_cd", num_steps=num_steps)
    network = scorax.UNet((8, 8), channels=(32, 64), key=jr.key(10))
    student = scorax.ConsistencyModel(network, PATH, sigma_data=float(jnp.std(train)))

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
            parameterisation=scorax.NoisePrediction(),
        )

    return scorax.fit(
        student,
        loss,
        train,
        optimizer=optax.adam(optax.cosine_decay_schedule(4e-4, num_steps)),
        num_steps=num_steps,
        batch_size=128,
        key=jr.key(11),
        target_decay=recipe.decay,
        progress=progress,
    ).model


@eqx.filter_jit
def _samples(teacher, student, x1, keys) -> dict[str, jax.Array]:
    def one(x, key):
        edm = scorax.edm_sample(teacher, PATH, x)
        dpm = scorax.dpm_solver_pp_sample(
            teacher, PATH, x, num_steps=2, order=3, denoise=False
        )
        return {
            "teacher, EDM Heun (35 evaluations)": edm.sample,
            "teacher, DPM-Solver++(3M) (2 evaluations)": dpm.sample,
            "consistency, 1 evaluation": scorax.consistency_sample(
                student, PATH, x
            ).sample,
            "consistency, 2 evaluations": scorax.consistency_sample(
                student, PATH, x, times=2, key=key
            ).sample,
        }

    return jax.vmap(one)(x1, keys)


def main(
    num_steps: int = 4000,
    distil_steps: int = 4000,
    output: str | None = "digits-consistency.png",
    progress: bool = True,
) -> dict[str, float]:
    images = scorax.datasets.digits()
    train, held_out = images[:1500], images[1500:]
    teacher = DIGITS["train_model"](
        train, num_steps=num_steps, progress=progress
    ).ema_model
    student = distil(teacher, train, num_steps=distil_steps, progress=progress)
    x1 = jax.vmap(lambda k: PATH.prior_sample(key=k, shape=(8, 8)))(
        jr.split(jr.key(12), NUM_SAMPLES)
    )
    samples = _samples(teacher, student, x1, jr.split(jr.key(13), NUM_SAMPLES))

    def flat(x):
        return jnp.reshape(x, (x.shape[0], -1))

    summary = {
        name: float(scorax.frechet_distance(flat(x), flat(held_out)))
        for name, x in samples.items()
    }
    summary["training digits (floor)"] = float(
        scorax.frechet_distance(flat(train[:NUM_SAMPLES]), flat(held_out))
    )
    print(f"{'sampler':>56}  Fréchet distance (pixels)")
    for name, value in summary.items():
        print(f"{name:>56}  {value:.3f}")
    if output is not None:
        rows = [
            samples[name][:8]
            for name in (
                "teacher, EDM Heun (35 evaluations)",
                "teacher, DPM-Solver++(3M) (2 evaluations)",
                "consistency, 1 evaluation",
                "consistency, 2 evaluations",
            )
        ]
        DIGITS["save_grid"](jnp.concatenate(rows), pathlib.Path(output))
    return summary


if __name__ == "__main__":
    main()
