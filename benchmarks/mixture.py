"""Closed-form Gaussian-mixture scores against autodiff of the log-density.

`GaussianMixture.score` is written out analytically; the obvious alternative is
`jax.grad(GaussianMixture.log_prob)`. Both are batched with `jax.vmap`, for the
data distribution and for its exact marginal at time `t` on a VP path.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

import scorax

from ._harness import compare, FULL, Measurement, QUICK


SHAPES = ((8, 2), (8, 64))  # (components k, dimension d)
T = 0.5


def random_mixture(key: PRNGKeyArray, k: int, d: int) -> scorax.GaussianMixture:
    """A mixture with well-conditioned covariances `A A^T / d + 0.5 I`."""
    mean_key, cov_key, weight_key = jr.split(key, 3)
    means = 2.0 * jr.normal(mean_key, (k, d))
    a = jr.normal(cov_key, (k, d, d))
    covs = a @ jnp.swapaxes(a, -1, -2) / d + 0.5 * jnp.eye(d)
    weights = jax.nn.softmax(jr.normal(weight_key, (k,)))
    return scorax.GaussianMixture(means, covs, weights)


# The mixture and `t` are arguments rather than closed-over constants, so XLA
# cannot fold the per-component factorisations into the compiled program.


@jax.jit
def score(mixture: scorax.GaussianMixture, x: Float[Array, "n d"]) -> Array:
    return jax.vmap(mixture.score)(x)


@jax.jit
def grad_log_prob(mixture: scorax.GaussianMixture, x: Float[Array, "n d"]) -> Array:
    return jax.vmap(jax.grad(mixture.log_prob))(x)


@jax.jit
def marginal_score(
    mixture: scorax.GaussianMixture, x: Float[Array, "n d"], t: Float[Array, ""]
) -> Array:
    return jax.vmap(mixture.marginal(scorax.VPPath(), t).score)(x)


@jax.jit
def marginal_grad_log_prob(
    mixture: scorax.GaussianMixture, x: Float[Array, "n d"], t: Float[Array, ""]
) -> Array:
    marginal = mixture.marginal(scorax.VPPath(), t)
    return jax.vmap(jax.grad(marginal.log_prob))(x)


def run(*, quick: bool) -> list[Measurement]:
    budget = QUICK if quick else FULL
    batch = 256 if quick else 4096
    t = jnp.asarray(T)
    measurements = []
    for k, d in SHAPES:
        mixture_key, x_key = jr.split(jr.key(k * 1000 + d))
        mixture = random_mixture(mixture_key, k, d)
        x = jr.normal(x_key, (batch, d))
        case = f"k={k} d={d} batch={batch}"
        measurements.append(
            compare(
                f"data, {case}",
                reference=("vmap(grad(log_prob))", grad_log_prob),
                candidate=("vmap(score)", score),
                args=(mixture, x),
                budget=budget,
            )
        )
        measurements.append(
            compare(
                f"VPPath marginal t={T}, {case}",
                reference=("vmap(grad(marginal.log_prob))", marginal_grad_log_prob),
                candidate=("vmap(marginal.score)", marginal_score),
                args=(mixture, x, t),
                budget=budget,
            )
        )
    return measurements
