"""A first look at scorax: diffuse a Gaussian mixture along a path and check the
exact scores that every later model is measured against.

Run with `python examples/quickstart.py`.
"""

import jax
import jax.numpy as jnp
import jax.random as jr

import scorax


def vincent_check(mixture, path, t, x0) -> tuple[float, float, float]:
    """E|s|^2 and E<target, s> with its standard error, for the exact score s."""
    keys = jr.split(jr.key(1), len(x0))
    x_t, _ = jax.vmap(lambda x, k: path.sample(x, t, key=k))(x0, keys)
    # The regression target of denoising score matching, -eps / sigma ...
    target = jax.vmap(lambda xt, x: path.conditional_score(xt, x, t))(x_t, x0)
    # ... averages to the exact score s of the diffused mixture (Vincent 2011),
    # so E<target, s> = E|s|^2 up to Monte Carlo error.
    s = jax.vmap(mixture.marginal(path, t).score)(x_t)
    inner = jnp.sum(target * s, axis=-1)
    return (
        float(jnp.mean(jnp.sum(s**2, axis=-1))),
        float(jnp.mean(inner)),
        float(jnp.std(inner) / jnp.sqrt(len(inner))),
    )


def main() -> None:
    mixture = scorax.GaussianMixture(
        means=jnp.array([[-2.0, 0.0], [2.0, 1.0]]),
        covs=jnp.stack([0.3 * jnp.eye(2), jnp.array([[0.5, 0.2], [0.2, 0.4]])]),
        weights=jnp.array([0.4, 0.6]),
    )
    x0 = mixture.sample(key=jr.key(0), sample_shape=(4096,))

    print(
        f"{'path':<12} {'t':>4} {'alpha':>6} {'sigma':>6} {'E|s|^2':>9}  E<target, s>"
    )
    for path in (scorax.VPPath(), scorax.VEPath(sigma_max=5.0), scorax.LinearPath()):
        for t in (0.1, 0.5, 0.9):
            squared_norm, inner, standard_error = vincent_check(mixture, path, t, x0)
            print(
                f"{type(path).__name__:<12} {t:>4} {float(path.alpha(t)):6.3f} "
                f"{float(path.sigma(t)):6.3f} {squared_norm:9.3f}  "
                f"{inner:.3f} +- {standard_error:.3f}"
            )

    # A noise-prediction model can be read as a score or a denoiser on any path.
    path, t = scorax.CosinePath(), 0.4
    x_t = mixture.marginal(path, t).sample(key=jr.key(2))
    score = mixture.marginal(path, t).score(x_t)
    denoised = scorax.convert(
        path,
        score,
        x_t,
        t,
        source=scorax.ScorePrediction(),
        target=scorax.DataPrediction(),
    )
    print("Tweedie denoiser from the exact score:", denoised)
    print(
        "Closed-form posterior mean E[x0 | x_t]: ", mixture.posterior_mean(path, x_t, t)
    )


if __name__ == "__main__":
    main()
