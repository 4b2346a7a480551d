"""One training script for one device, several devices, several processes and
streamed data: `fit` and `map_sharded` take the devices JAX sees.

Train a `ScoreMLP` on the seeds' two-Gaussian mixture, then sample it with the
reverse SDE over every device and log-likelihood 256 held-out points, and print
what ran where. On one machine:

    python examples/scaling_out.py                  # one CPU device
    XLA_FLAGS=--xla_force_host_platform_device_count=4 \\
        python examples/scaling_out.py              # four CPU devices
    python examples/scaling_out.py --stream         # batches from an iterator
    # Two processes (two terminals, or `&`): each has one CPU device.
    python examples/scaling_out.py --processes 2 --process 0 &
    python examples/scaling_out.py --processes 2 --process 1

Add `--checkpoint run.eqx`, stop a run and start it again: it resumes.
"""

import argparse
import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import scorax


NUM_POINTS = 8192
BATCH = 256


def batches(data: np.ndarray, share: int, process: int) -> Iterator[np.ndarray]:
    """This process's share of every batch, forever: rows drawn by NumPy, with a
    stream of random numbers of its own. Any iterator of NumPy (or JAX) batches
    does, such as `iter(loader)` of a Grain, tf.data or PyTorch data loader."""
    rng = np.random.default_rng([0, process])
    while True:
        yield data[rng.integers(0, len(data), share)]


def main(
    *,
    num_steps: int = 2000,
    num_samples: int = 1024,
    stream: bool = False,
    checkpoint: str | None = None,
) -> dict[str, float]:
    path = scorax.VPPath()
    mixture = scorax.datasets.gaussian_mixture()
    # Every process makes the same data set and model from the same keys.
    data = mixture.sample(key=jr.key(0), sample_shape=(NUM_POINTS,))
    model = scorax.ScoreMLP((2,), width=128, depth=3, time_scale=4.0, key=jr.key(1))
    if stream:
        # The rows of this process's devices in every global batch of BATCH.
        share = BATCH * jax.local_device_count() // jax.device_count()
        source = batches(np.asarray(data), share, jax.process_index())
    else:
        source = data

    start = time.perf_counter()
    result = scorax.fit(
        model,
        lambda m, x, k: scorax.diffusion_loss(m, path, x, key=k),
        source,
        optimizer=optax.adam(optax.cosine_decay_schedule(2e-3, num_steps)),
        num_steps=num_steps,
        batch_size=BATCH,
        key=jr.key(2),
        checkpoint=checkpoint,
    )
    seconds = time.perf_counter() - start

    def sample(m, x, key):
        return scorax.reverse_sde_sample(m, path, x, key=key, num_steps=200).sample

    def likelihood(m, x):
        return scorax.log_likelihood(m, path, x).log_likelihood

    keys = jr.split(jr.key(3), num_samples)
    prior = jax.vmap(lambda k: path.prior_sample(key=k, shape=(2,)))(keys)
    samples = scorax.map_sharded(
        sample, result.model, prior, keys, in_axes=(None, 0, 0)
    )
    held_out = mixture.sample(key=jr.key(4), sample_shape=(256,))
    log_likelihoods = scorax.map_sharded(
        likelihood, result.model, held_out, in_axes=(None, 0)
    )
    if jax.process_count() > 1:
        # Each process holds its devices' rows; gather every row on every process.
        from jax.experimental import multihost_utils

        samples, log_likelihoods = multihost_utils.process_allgather(
            (samples, log_likelihoods), tiled=True
        )
    fresh = mixture.sample(key=jr.key(5), sample_shape=(num_samples,))
    return {
        "processes": float(jax.process_count()),
        "devices": float(jax.device_count()),
        "training steps per second": num_steps / seconds,
        "final loss (mean of the last 100 steps)": float(
            jnp.mean(result.losses[-100:])
        ),
        "sliced Wasserstein distance to fresh data": float(
            scorax.sliced_wasserstein(
                jnp.asarray(samples), fresh, key=jr.key(6), num_projections=128
            )
        ),
        "mean held-out log-likelihood (nats)": float(jnp.mean(log_likelihoods)),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--stream", action="store_true", help="feed an iterator")
    parser.add_argument("--checkpoint", help="a file to save to and resume from")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--process", type=int, default=0)
    parser.add_argument("--coordinator", default="127.0.0.1:9476")
    args = parser.parse_args()
    if args.processes > 1:
        # Before any other JAX call. On a cluster (SLURM, Kubernetes, TPU pods)
        # `jax.distributed.initialize()` finds these by itself.
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.processes,
            process_id=args.process,
        )
    summary = main(
        num_steps=args.steps,
        num_samples=args.samples,
        stream=args.stream,
        checkpoint=args.checkpoint,
    )
    if jax.process_index() == 0:
        for name, value in summary.items():
            print(f"{name:>42}: {value:.4g}")
