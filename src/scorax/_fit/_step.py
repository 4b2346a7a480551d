"""The compiled steps of `fit`: a chunk of steps under `lax.scan`, each splitting
its batch across the devices of a mesh and summing their gradients."""

import inspect
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.random as jr
import optax
from jax.experimental import checkify
from jax.sharding import NamedSharding, PartitionSpec
from jaxtyping import Array, Float, Int, Key, PRNGKeyArray, PyTree

from .._custom_types import FloatScalar
from .._sharded import checked, replicate_error
from ._state import TargetDecay, TrainState


LossFn = Callable[..., FloatScalar]
# The keywords `fit` passes to a loss that takes them.
_EXTRAS = ("step", "target")


def loss_keywords(loss_fn: LossFn) -> frozenset[str]:
    """Which of `step` and `target` `loss_fn` takes as keywords (all of them if it
    takes `**kwargs`; none if its signature cannot be read)."""
    try:
        parameters = inspect.signature(loss_fn).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return frozenset(_EXTRAS)
    keywords = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return frozenset(
        p.name for p in parameters if p.name in _EXTRAS and p.kind in keywords
    )


def call_loss(
    loss_fn: LossFn,
    model: Any,
    x: PyTree,
    key: PRNGKeyArray,
    *,
    step: Array,
    target: Any,
) -> FloatScalar:
    """`loss_fn(model, x, key)`, with `step=` (the step index) if it takes it and
    `target=` (the target model) if there is one."""
    extra: dict[str, Any] = {}
    if "step" in loss_keywords(loss_fn):
        extra["step"] = step
    if target is not None:
        extra["target"] = target
    return loss_fn(model, x, key, **extra)


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
    target_decay: TargetDecay | None,
    split_batch: NamedSharding,
) -> tuple[TrainState, Float[Array, " length"], checkify.Error]:
    """`length` training steps under `lax.scan`, on batches drawn from the in-memory
    `data` or on the streamed `batches` (one per step, along their first axis), and
    the checks that failed in them (`eqx.error_if` in the loss or the model, on
    any device), as one error replicated on every device for the host to raise. A
    module-level function with the model skeleton, loss and optimiser as (static)
    arguments, so repeated calls of `fit` with the same objects reuse the compiled
    program.

    While it is traced, before any step runs, `loss_fn` is evaluated abstractly
    on one sample of the data, so that data it cannot take is reported as such."""
    # One sample: a row of the data set `(rows, ...)` or of the batches
    # `(steps, rows, ...)`.
    source, leading = (data, 1) if data is not None else (batches, 2)
    sample = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape[leading:], leaf.dtype), source
    )
    model = eqx.combine(state.params, static)
    target = None if state.target is None else eqx.combine(state.target, static)
    check_loss(loss_fn, model, sample, key, target=target)
    loss_and_grads = _sharded_loss_and_grads(
        static, loss_fn, batch_size, split_batch, in_memory=data is not None
    )

    def one_step(
        state: TrainState, inputs: tuple[Array, PyTree | None]
    ) -> tuple[TrainState, tuple[Array, checkify.Error]]:
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
        error, (loss, grads) = loss_and_grads(
            state.params, state.target, step, batch, indices, keys
        )
        state = state.apply_gradients(
            grads,
            optimizer=optimizer,
            ema_decay=ema_decay,
            target_decay=target_decay,
        )
        return state, (loss, error)

    steps = state.step + jnp.arange(length, dtype=jnp.int32)
    state, (losses, error) = jax.lax.scan(one_step, state, (steps, batches))
    replicated = NamedSharding(split_batch.mesh, PartitionSpec())
    # Replicated, so that every process can read every loss and the error.
    losses = jax.lax.with_sharding_constraint(losses, replicated)
    return state, losses, replicate_error(error, replicated)


def check_loss(
    loss_fn: LossFn,
    model: Any,
    sample: PyTree,
    key: PRNGKeyArray,
    *,
    target: Any = None,
) -> None:
    """Raise `ValueError` unless `loss_fn(model, sample, key)` (with the keywords
    `call_loss` passes) evaluates (abstractly) to a real scalar on one `sample` of
    the data: whatever it raised, with the sample's dtypes and shapes, chained."""
    step = jax.ShapeDtypeStruct((), jnp.int32)
    try:
        out = eqx.filter_eval_shape(
            lambda m, x, k, i, g: call_loss(loss_fn, m, x, k, step=i, target=g),
            model,
            sample,
            key,
            step,
            target,
        )
    except Exception as error:
        leaves = jax.tree.leaves(sample)
        layout = jax.tree.map(lambda leaf: f"{leaf.dtype}{list(leaf.shape)}", sample)
        hint = ""
        if isinstance(sample, list):
            hint = (
                " `data` is a list, so a sample is a list of one row of each of its "
                "arrays; a list of batches is streamed as `iter(batches)`."
            )
        elif all(not jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in leaves):
            hint = (
                " Every array of `data` is integer (or boolean), and `fit` passes "
                "the data as it is: a loss of real-valued data, such as "
                "`diffusion_loss`, needs floating point (`x.astype(jnp.float32)`); "
                "integer arrays beside it, such as labels, are fine."
            )
        raise ValueError(
            f"`data`: `loss_fn(model, sample, key)` fails on one sample of `data` "
            f"({layout}), with {type(error).__name__}: {error}{hint}"
        ) from error
    if not (
        isinstance(out, jax.ShapeDtypeStruct)
        and out.shape == ()
        and jnp.issubdtype(out.dtype, jnp.floating)
    ):
        got = (
            f"{out.dtype}{list(out.shape)}"
            if isinstance(out, jax.ShapeDtypeStruct)
            else type(out).__name__
        )
        raise ValueError(
            "`loss_fn` must return the loss of one sample, a floating-point "
            f"scalar, got {got}."
        )


def _sharded_loss_and_grads(
    static: Any,
    loss_fn: LossFn,
    batch_size: int,
    split_batch: NamedSharding,
    *,
    in_memory: bool,
) -> Callable[..., tuple[checkify.Error, tuple[Array, PyTree]]]:
    """`(params, target, step, source, indices, keys) -> (error, (loss, grads))`:
    the batch-mean
    loss and its gradient, each device computing its share of the batch and one
    all-reduce per step summing them. A device's rows are `source[indices]` (in
    memory, where every device holds the whole data set and draws its own rows) or
    `source` (streamed, split along the batch).

    The checks that the loss and model make (`eqx.error_if`) do not stop a device:
    each device returns its own as an error value (`checked`), the errors split
    along the first axis, one entry per device."""

    def local(
        params: PyTree,
        target_params: PyTree | None,
        step: Array,
        source: PyTree,
        indices: Int[Array, " rows"] | None,
        keys: Key[Array, " rows"],
    ) -> tuple[checkify.Error, tuple[Array, PyTree]]:
        if indices is not None:
            source = jax.tree.map(lambda leaf: leaf[indices], source)

        target = None
        if target_params is not None:
            target = eqx.combine(target_params, static)

        def share(params: PyTree) -> Array:
            model = eqx.combine(params, static)
            losses = jax.vmap(
                lambda x, k: call_loss(loss_fn, model, x, k, step=step, target=target)
            )(source, keys)
            return jnp.sum(losses) / batch_size

        error, loss_and_grads = checked(jax.value_and_grad(share))(params)
        # One buffer, so one all-reduce: across processes each is a round trip.
        flat, unflatten = jax.flatten_util.ravel_pytree(loss_and_grads)
        error = jax.tree.map(lambda leaf: jnp.expand_dims(leaf, 0), error)
        return error, unflatten(jax.lax.psum(flat, "batch"))

    split, whole = PartitionSpec("batch"), PartitionSpec()
    return jax.shard_map(
        local,
        mesh=split_batch.mesh,
        in_specs=(whole, whole, whole, whole if in_memory else split, split, split),
        out_specs=(split, whole),
        check_vma=False,  # the gradients are local until the explicit `psum`
    )
