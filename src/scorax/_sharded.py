r"""Batches split across devices, on one process or several: `map_sharded`, and the
placement helpers that `fit` shares."""

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree


def batch_mesh(devices: Sequence[Any] | None) -> Mesh:
    """A one-dimensional mesh, axis `"batch"`, over `devices` (default: every device
    of every process, `jax.devices()`)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("`devices` must name at least one device.")
    return Mesh(np.asarray(devices), ("batch",))


def put(tree: PyTree, sharding: NamedSharding) -> PyTree:
    """Place every array of `tree` with `sharding`, which may span the devices of
    several processes: each process then passes the same whole value (as
    `jax.device_put` expects of a global sharding). PRNG key arrays go through their
    key data, which `jax.device_put` cannot place on another process's devices."""

    def leaf(value: Any) -> Any:
        if isinstance(value, jax.Array) and not value.is_fully_addressable:
            return value  # already a global array: `jit` moves it if it must
        if isinstance(value, jax.Array) and jnp.issubdtype(
            value.dtype, jax.dtypes.prng_key
        ):
            data = jax.device_put(jr.key_data(value), sharding)
            return jr.wrap_key_data(data, impl=jr.key_impl(value))
        if eqx.is_array_like(value) and not isinstance(value, (bool, int, float)):
            return jax.device_put(value, sharding)
        return value

    return jax.tree.map(leaf, tree)


def _normalise_axes(in_axes: Any, num_args: int) -> tuple[int | None, ...]:
    axes = (
        tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * num_args
    )
    if len(axes) != num_args or any(axis not in (0, None) for axis in axes):
        raise ValueError(
            "`in_axes` must be 0 or None, or a tuple of one 0 or None per argument "
            f"({num_args} here), got {in_axes!r}."
        )
    if 0 not in axes:
        raise ValueError("`in_axes`: at least one argument must be batched (0).")
    return axes


@eqx.filter_jit
def _vmap_sharded(
    fn: Callable[..., Any],
    in_axes: tuple[int | None, ...],
    size: int,
    split: NamedSharding,
    args: tuple[Any, ...],
) -> Any:
    """`jax.vmap(fn)` over sharded inputs; the outputs keep the batch split and
    lose the padding rows. A module-level `filter_jit`, so calls with the same `fn`
    object and shapes reuse the compiled program."""
    args = tuple(
        jax.tree.map(lambda leaf: jax.lax.with_sharding_constraint(leaf, split), arg)
        if axis == 0
        else arg
        for arg, axis in zip(args, in_axes, strict=True)
    )
    out = jax.vmap(fn, in_axes=in_axes)(*args)

    def unpad(leaf: Any) -> Any:
        if not eqx.is_array(leaf):
            return leaf
        leaf = jax.lax.with_sharding_constraint(leaf, split)
        return leaf[:size]

    return jax.tree.map(unpad, out)


def map_sharded(
    fn: Callable[..., Any],
    *args: PyTree,
    in_axes: int | Sequence[int | None] | None = 0,
    devices: Sequence[Any] | None = None,
) -> PyTree:
    r"""`jax.vmap(fn)(*args)`, with the batch split across devices: each device
    maps its own share of the rows, under one `jax.jit`.

    This is how to run any per-sample function, a sampler or
    [`log_likelihood`][scorax.log_likelihood], over a batch bigger than one device
    handles in good time: the batched arguments are placed along a one-dimensional
    `jax.sharding.Mesh` of `devices`, the unbatched ones (the model, say) are
    replicated on every device, and XLA runs `jax.vmap(fn)` on each device's rows.
    Nothing is communicated between devices, so every row is computed by the same
    per-sample program as on one device; the results agree with one device's to
    rounding (XLA may vectorise a batch of another size differently), and were
    bit-identical in scorax's tests on four CPU devices.

    When the number of rows is not a multiple of the number of devices, the last row
    is repeated to the next multiple and the copies' outputs are dropped.

    On several processes (after `jax.distributed.initialize()`), every process
    calls `map_sharded` with the same whole arguments (or with global `jax.Array`s
    already sharded over the processes), and each computes the rows of its own
    devices. The output is then a global array, split over the processes: read
    one process's rows from its `.addressable_shards`, or every row on every process
    with `jax.experimental.multihost_utils.process_allgather(out, tiled=True)`.

    **Arguments:**

    - `fn`: a function of one sample, such as a sampler or a likelihood with its
      options fixed (see the example). The compiled program is cached on this
      object: pass the same function again, not a new `lambda`, to reuse it.
    - `*args`: its arguments, each a PyTree of arrays. The batched ones have the
      rows along the first axis of every array, the same number in each.
    - `in_axes`: `0` (batched) or `None` (the same for every row, such as the
      model), for all arguments at once or as a tuple of one per argument, as in
      `jax.vmap`.
    - `devices`: the devices to split the rows over (default: `jax.devices()`,
      every device of every process).

    **Returns:**

    `jax.vmap(fn, in_axes=in_axes)(*args)`, each array split across `devices`
    along its first axis.

    !!! example

        ```python
        path = scorax.VPPath()


        def sample(model, x, key):
            return scorax.reverse_sde_sample(model, path, x, key=key)


        keys = jr.split(jr.key(0), 4096)
        x1 = jax.vmap(lambda k: path.prior_sample(key=k, shape=(2,)))(keys)
        # The model is the same for every row (None); x1 and keys are split.
        result = scorax.map_sharded(sample, model, x1, keys, in_axes=(None, 0, 0))
        result.sample  # (4096, 2), a quarter on each of four devices
        ```
    """
    if not args:
        raise ValueError("`map_sharded` needs at least one argument to map over.")
    axes = _normalise_axes(in_axes, len(args))
    mesh = batch_mesh(devices)
    num_devices = mesh.devices.size
    split = NamedSharding(mesh, PartitionSpec("batch"))
    replicated = NamedSharding(mesh, PartitionSpec())
    batched = [
        leaf
        for arg, axis in zip(args, axes, strict=True)
        if axis == 0
        for leaf in jax.tree.leaves(arg)
    ]
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else -1 for leaf in batched}
    if not batched or len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            "`args`: every array of a batched argument must have the same number of "
            "rows along its first axis, got shapes "
            f"{[np.shape(leaf) for leaf in batched]}."
        )
    size = sizes.pop()
    if size == 0:
        raise ValueError("`args`: there are no rows to map over.")
    padding = -size % num_devices

    def pad(leaf: Any) -> Any:
        if not padding:
            return leaf
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            raise ValueError(
                f"`args`: {size} rows in a global array cannot be split evenly "
                f"over {num_devices} devices; pass a multiple of {num_devices}."
            )
        return jnp.concatenate([leaf, jnp.repeat(leaf[-1:], padding, axis=0)])

    placed = tuple(
        put(jax.tree.map(pad, arg), split) if axis == 0 else put(arg, replicated)
        for arg, axis in zip(args, axes, strict=True)
    )
    return _vmap_sharded(fn, axes, size, split, placed)
