"""Training-step cost of sliced and implicit score matching against denoising.

For each dimension `d`, a score network `eqx.nn.MLP(d -> d, width 128, depth 2,
softplus)` takes one training step: the value and parameter gradient of the
batch-mean loss. The reference is always a `denoising_score_matching` step; the
candidates are `sliced_score_matching` with one Gaussian projection, the same with
variance reduction (SSM-VR), and `implicit_score_matching` (exact Jacobian trace,
`d` forward-mode products). All share the network, inputs and per-sample keys, so
the ratio is the cost of the objective alone: SSM should stay within about 2x of
DSM at every `d`, while exact ISM grows with `d`.

Each step returns `[loss, ||grad||]`: the gradient norm keeps the backward pass in
the compiled program (returning the loss alone would let XLA drop it). The
objectives differ, so `max_rel_diff` is not a correctness check here, only a
record of how far the two outputs are apart.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

import scorax

from ._harness import compare, FULL, Measurement, QUICK


DIMS = (2, 16, 64, 256, 784)
QUICK_DIMS = (2, 64)
SIGMA = 0.5
WIDTH = 128
DEPTH = 2

Objective = Callable[
    [Callable[[Array], Array], Float[Array, " d"], PRNGKeyArray], Float[Array, ""]
]
Step = Callable[[eqx.nn.MLP, Float[Array, "n d"], PRNGKeyArray], Float[Array, " 2"]]


def dsm(score_fn: Callable[[Array], Array], x: Array, key: PRNGKeyArray) -> Array:
    return scorax.denoising_score_matching(score_fn, x, key=key, sigma=SIGMA)


def ssm(score_fn: Callable[[Array], Array], x: Array, key: PRNGKeyArray) -> Array:
    return scorax.sliced_score_matching(score_fn, x, key=key, num_projections=1)


def ssm_vr(score_fn: Callable[[Array], Array], x: Array, key: PRNGKeyArray) -> Array:
    return scorax.sliced_score_matching(
        score_fn, x, key=key, num_projections=1, variance_reduction=True
    )


def ism(score_fn: Callable[[Array], Array], x: Array, key: PRNGKeyArray) -> Array:
    del key  # deterministic: the exact trace needs no projections
    return scorax.implicit_score_matching(score_fn, x)


def training_step(objective: Objective, static: eqx.nn.MLP) -> Step:
    """A jitted `(params, x, keys) -> [loss, ||grad||]` for one objective.

    The parameters are an argument, not a closed-over constant, so XLA cannot fold
    them into the compiled program; only the array-free `static` part is closed
    over. Plain `jax.jit` keeps dispatch overhead small next to the d=2 steps.
    """

    def batch_loss(
        params: eqx.nn.MLP, x: Float[Array, "n d"], keys: PRNGKeyArray
    ) -> Float[Array, ""]:
        model = eqx.combine(params, static)
        return jnp.mean(jax.vmap(lambda xi, ki: objective(model, xi, ki))(x, keys))

    @jax.jit
    def step(
        params: eqx.nn.MLP, x: Float[Array, "n d"], keys: PRNGKeyArray
    ) -> Float[Array, " 2"]:
        loss, grads = jax.value_and_grad(batch_loss)(params, x, keys)
        grad_sq = sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))
        return jnp.stack([loss, jnp.sqrt(grad_sq)])

    return step


def run(*, quick: bool) -> list[Measurement]:
    budget = QUICK if quick else FULL
    batch = 16 if quick else 64
    measurements = []
    for d in QUICK_DIMS if quick else DIMS:
        model_key, x_key, sample_key = jr.split(jr.key(d), 3)
        model = eqx.nn.MLP(
            in_size=d,
            out_size=d,
            width_size=WIDTH,
            depth=DEPTH,
            activation=jax.nn.softplus,
            key=model_key,
        )
        params, static = eqx.partition(model, eqx.is_inexact_array)
        x = jr.normal(x_key, (batch, d))
        keys = jr.split(sample_key, batch)  # the same keys for every objective
        case = f"d={d} batch={batch}"
        candidates = (
            ("SSM m=1 step", ssm),
            ("SSM-VR m=1 step", ssm_vr),
            ("ISM exact-trace step", ism),
        )
        for name, objective in candidates:
            measurements.append(
                compare(
                    case,
                    # A fresh jit per row, so each row's compile time is its own.
                    reference=("DSM step", training_step(dsm, static)),
                    candidate=(name, training_step(objective, static)),
                    args=(params, x, keys),
                    budget=budget,
                )
            )
    return measurements
