"""The compiled steps of `fit`: a chunk of steps under `lax.scan`, each splitting
its batch across the devices of a mesh and summing their gradients."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.random as jr
import optax
from jax.sharding import NamedSharding, PartitionSpec
from jaxtyping import Array, Float, Int, Key, PRNGKeyArray, PyTree

from .._custom_types import FloatScalar
from ._state import TrainState


LossFn = Callable[[Any, PyTree, PRNGKeyArray], FloatScalar]


@eqx.filter_jit
def run_chunk(
    length: int,
    state: TrainState,
    data: PyTree | None,
    batches: PyTree | None,
    *,
    key: PRNGKeyArray,
    static: Any,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    ema_decay: float | None,
    split_batch: NamedSharding,
) -> tuple[TrainState, Float[Array, " length"]]:
    """`length` training steps under `lax.scan`, on batches drawn from the in-memory
    `data` or on the streamed `batches` (one per step, along their first axis). A
    module-level function with the model skeleton, loss and optimiser as (static)
    arguments, so repeated calls of `fit` with the same objects reuse the compiled
    program."""
    loss_and_grads = _sharded_loss_and_grads(
        static, loss_fn, batch_size, split_batch, in_memory=data is not None
    )

    def one_step(
        state: TrainState, inputs: tuple[Array, PyTree | None]
    ) -> tuple[TrainState, Array]:
        step, batch = inputs
        # The index key is split off in both modes, so a stream of the rows drawn
        # here trains exactly as the in-memory data set.
        index_key, loss_key = jr.split(jr.fold_in(key, step))
        indices = None
        if batch is None:
            batch = data
            num_samples = jax.tree.leaves(data)[0].shape[0]
            indices = jr.randint(index_key, (batch_size,), 0, num_samples)
        keys = jr.split(loss_key, batch_size)
        loss, grads = loss_and_grads(state.params, batch, indices, keys)
        state = state.apply_gradients(grads, optimizer=optimizer, ema_decay=ema_decay)
        return state, loss

    steps = state.step + jnp.arange(length, dtype=jnp.int32)
    state, losses = jax.lax.scan(one_step, state, (steps, batches))
    replicated = NamedSharding(split_batch.mesh, PartitionSpec())
    # Replicated, so that every process can read every loss.
    return state, jax.lax.with_sharding_constraint(losses, replicated)


def _sharded_loss_and_grads(
    static: Any,
    loss_fn: LossFn,
    batch_size: int,
    split_batch: NamedSharding,
    *,
    in_memory: bool,
) -> Callable[..., tuple[Array, PyTree]]:
    """`(params, source, indices, keys) -> (loss, grads)`: the batch-mean loss and
    its gradient, each device computing its share of the batch and one all-reduce
    per step summing them, whatever checks the loss makes. A device's rows are
    `source[indices]` (in memory, where every device holds the whole data set and
    draws its own rows) or `source` (streamed, split along the batch)."""

    def local(
        params: PyTree,
        source: PyTree,
        indices: Int[Array, " rows"] | None,
        keys: Key[Array, " rows"],
    ) -> tuple[Array, PyTree]:
        if indices is not None:
            source = jax.tree.map(lambda leaf: leaf[indices], source)

        def share(params: PyTree) -> Array:
            model = eqx.combine(params, static)
            losses = jax.vmap(lambda x, k: loss_fn(model, x, k))(source, keys)
            return jnp.sum(losses) / batch_size

        # One buffer, so one all-reduce: across processes each is a round trip.
        flat, unflatten = jax.flatten_util.ravel_pytree(
            jax.value_and_grad(share)(params)
        )
        return unflatten(jax.lax.psum(flat, "batch"))

    split, whole = PartitionSpec("batch"), PartitionSpec()
    return jax.shard_map(
        local,
        mesh=split_batch.mesh,
        in_specs=(whole, whole if in_memory else split, split, split),
        out_specs=whole,
        check_vma=False,  # the gradients are local until the explicit `psum`
    )
