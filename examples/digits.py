"""Train a small U-Net on scikit-learn's 8x8 digits, sample, and measure bits per
dimension on held-out digits.

Pixels take the 17 values 0..16, which `scorax.datasets.digits` maps to
x = -1 + k/8. For the likelihood of such discrete data, the held-out images are
dequantised by uniform noise across each pixel's bin of width 1/8, and the bits
per dimension count 17 bins over an interval of width 17/8.

Run with `python examples/digits.py` (writes `digits-samples.png`). For a short
trial, call `main(num_steps=200, num_samples=16, num_held_out=8)`; the default
run trains 20 times longer.
"""

import pathlib

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

import scorax


# Tolerances for the likelihood solve: ample for bits per dimension to 2 decimals.
CONTROLLER = dfx.PIDController(rtol=1e-4, atol=1e-4)


def train_model(
    train: jax.Array, *, num_steps: int, progress: bool = True
) -> scorax.FitResult:
    """A `UNet((8, 8), channels=(32, 64))` predicting noise on a `VPPath`, trained
    with `diffusion_loss` (Adam with a cosine decay from 2e-3, batch 128, an EMA of
    the weights at 0.999; `ema_model` is the one to sample)."""
    path = scorax.VPPath()
    model = scorax.UNet((8, 8), channels=(32, 64), key=jr.key(0))
    return scorax.fit(
        model,
        lambda m, x, k: scorax.diffusion_loss(m, path, x, key=k),
        train,
        optimizer=optax.adam(optax.cosine_decay_schedule(2e-3, num_steps)),
        num_steps=num_steps,
        batch_size=128,
        key=jr.key(1),
        ema_decay=0.999,
        progress=progress,
    )


def main(
    num_steps: int = 4000,
    num_samples: int = 64,
    num_held_out: int = 32,
    output: str = "digits-samples.png",
) -> dict[str, float]:
    path = scorax.VPPath()
    images = scorax.datasets.digits()
    train, held_out = images[:1500], images[1500 : 1500 + num_held_out]

    result = train_model(train, num_steps=num_steps)
    trained = result.ema_model

    # Sample with EDM's Heun sampler: 18 noise levels, 35 model evaluations each.
    starts = jax.vmap(lambda k: path.prior_sample(key=k, shape=(8, 8)))(
        jr.split(jr.key(2), num_samples)
    )
    samples = jax.jit(jax.vmap(lambda x: scorax.edm_sample(trained, path, x)))(starts)

    # Bits per dimension of dequantised held-out digits, Hutchinson with 4 probes.
    noise = jr.uniform(jr.key(3), held_out.shape) / 8
    dequantised = held_out + noise

    @jax.jit
    def bits(x, key):
        result = scorax.log_likelihood(
            trained, path, x, key=key, num_probes=4, stepsize_controller=CONTROLLER
        )
        return scorax.bits_per_dim(
            result.log_likelihood, x, num_bins=17, data_width=17 / 8
        )

    per_image = jax.vmap(bits)(dequantised, jr.split(jr.key(4), len(held_out)))
    summary = {
        "final loss": float(result.losses[-1]),
        "bits per dimension (held out)": float(jnp.mean(per_image)),
        "uniform over 17 values (reference)": float(jnp.log2(17.0)),
        "model evaluations per sample": float(jnp.mean(samples.num_evaluations)),
    }
    for name, value in summary.items():
        print(f"{name:>36}: {value:.4f}")
    save_grid(samples.sample, pathlib.Path(output))
    return summary


def save_grid(images: jax.Array, output: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 8
    rows = -(-len(images) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns, rows))
    for ax, image in zip(axes.flat, images, strict=False):
        ax.imshow(jnp.clip(image, -1, 1), cmap="gray_r", vmin=-1, vmax=1)
    for ax in axes.flat:
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(output, dpi=80)
    plt.close(figure)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
