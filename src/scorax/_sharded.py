r"""Batches split across devices, on one process or several: `map_sharded`, and the
helpers that `fit` shares: placement, and Equinox's runtime checks turned into
values that every process raises on the host."""

import hashlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax._src import checkify as _checkify  # the error-check rules of `checkify`
from jax._src.callback import pure_callback_p
from jax.experimental import checkify, multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree


def batch_mesh(devices: Sequence[Any] | None) -> Mesh:
    """A one-dimensional mesh, axis `"batch"`, over `devices` (default: every device
    of every process, `jax.devices()`), each a distinct `jax.Device`."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("`devices` must name at least one device.")
    if not all(isinstance(device, jax.Device) for device in devices):
        kinds = sorted({type(device).__name__ for device in devices})
        raise ValueError(
            "`devices` must be a sequence of `jax.Device`s (from `jax.devices()`), "
            f"got {', '.join(kinds)}."
        )
    if len(set(devices)) != len(devices):
        repeated = sorted({str(d) for d in devices if devices.count(d) > 1})
        raise ValueError(
            f"`devices` must list each device once; {', '.join(repeated)} "
            "appears more than once."
        )
    return Mesh(np.asarray(devices), ("batch",))


# Equinox's runtime checks (`eqx.error_if`, which every check of scorax is) raise
# from a host callback inside the compiled program. On several devices, the device
# whose check failed stops while the others wait for it in a collective, and XLA
# aborts the process after a timeout. `checked` runs a function with each such
# check turned into a value instead (a `checkify.Error`, through a rule for
# Equinox's callback that applies only to `checked`'s own error category), so that
# the program runs to its end on every device and the host raises the error.


class _FailedCheck(_checkify.JaxException):
    """A failed `eqx.error_if`, as a `checkify` error carrying its message."""

    def __init__(self, traceback_info: Any, message: str) -> None:
        super().__init__(traceback_info)
        self.message = message

    def tree_flatten(self) -> tuple[list[Any], tuple[Any, str]]:
        return [], (self.traceback_info, self.message)

    @classmethod
    def tree_unflatten(cls, metadata: tuple[Any, str], payload: Any) -> "_FailedCheck":
        del payload
        return cls(*metadata)

    def get_effect_type(self) -> Any:
        return _checkify.ErrorEffect(_FailedCheck, ())

    def __str__(self) -> str:
        return self.message


_CHECKS = frozenset({_FailedCheck})


def _placeholder(aval: Any) -> Any:
    """What a failed check returns in place of its value, as Equinox's "nan" mode
    does: NaN, the largest integer, or True."""
    dtype = np.dtype(aval.dtype)
    if np.issubdtype(dtype, np.inexact):
        fill = np.nan
    elif np.issubdtype(dtype, np.integer):
        fill = np.iinfo(dtype).max
    else:
        fill = True
    return jnp.full(aval.shape, fill, dtype)


def _equinox_callback_rule(previous: Callable[..., Any]) -> Callable[..., Any]:
    """A `checkify` rule for `pure_callback` that, when `_FailedCheck` is enabled,
    replaces the callback by which a failed `eqx.error_if` raises (`raises`, which
    holds the check's messages and is given the index of the one to raise) with a
    `checkify` error per message, and its TPU follow-up (`tpu_msg`) with its
    input. Other callbacks, and other uses of `checkify`, go to `previous`."""

    def rule(error: Any, enabled_errors: Any, *args: Any, **params: Any) -> Any:
        callback = getattr(params.get("callback"), "callback_func", None)
        avals = params.get("result_avals", ())
        # (A check on PRNG keys has no placeholder value: it keeps Equinox's callback.)
        numeric = not any(
            jnp.issubdtype(aval.dtype, jax.dtypes.extended) for aval in avals
        )
        if (
            _FailedCheck in enabled_errors
            and callable(callback)
            and getattr(callback, "__module__", None) == "equinox._errors"
            and numeric
        ):
            name = getattr(callback, "__name__", None)
            messages = inspect.getclosurevars(callback).nonlocals.get("msgs")
            if name == "raises" and messages is not None:
                (index,) = args
                for i, message in enumerate(messages):
                    failed = _FailedCheck(_checkify.get_traceback(), str(message))
                    error = _checkify.assert_func(error, index == i, failed)
                return error, [_placeholder(aval) for aval in avals]
            if name == "tpu_msg":
                return error, list(args[: len(avals)])
        return previous(error, enabled_errors, *args, **params)

    rule.scorax_equinox_checks = True  # pyright: ignore[reportFunctionMemberAccess]
    return rule


def checked(fn: Callable[..., Any]) -> Callable[..., tuple[checkify.Error, Any]]:
    """`fn`, returning `(error, output)`: every `eqx.error_if` that fails inside it
    (under `jit`, `vmap`, `scan`, `shard_map`, ...) is recorded in `error` rather
    than raised from the device. Read it on the host with `failed_check`, after
    `replicate_error` inside the `jit`. (The rule that turns Equinox's checks into
    values is added to `checkify`'s rules on first use, and acts only for this
    function's error category: other uses of `checkify` are unchanged.)"""
    rules = _checkify.error_checks
    if not getattr(rules.get(pure_callback_p), "scorax_equinox_checks", False):
        previous = rules.get(pure_callback_p) or (
            lambda *args, **params: _checkify.default_checkify_rule(
                pure_callback_p, *args, **params
            )
        )
        rules[pure_callback_p] = _equinox_callback_rule(previous)
    return checkify.checkify(fn, errors=_CHECKS)


def replicate_error(error: checkify.Error, replicated: NamedSharding) -> checkify.Error:
    """`error` (inside `jit`) on every device of the mesh of the `replicated`
    sharding, so that every process can read it."""
    return jax.tree.map(
        lambda leaf: jax.lax.with_sharding_constraint(leaf, replicated), error
    )


def failed_check(error: checkify.Error) -> tuple[tuple[int, ...], str] | None:
    """Where and why the first check failed in `error` (replicated, as
    `replicate_error` leaves it): its index along the leading axes of the error's
    arrays (`()` for an error of one call) and its message; or None."""
    exception = jax.tree.map(np.asarray, error).get_exception()
    if exception is None:
        return None
    if isinstance(exception, _checkify.BatchedError):
        index, first = next(iter(exception.error_mapping.items()))
        return tuple(int(i) for i in index), str(first)
    return (), str(exception)


def put(tree: PyTree, sharding: NamedSharding, name: str) -> PyTree:
    """Place every array of `tree` (the argument `name`) with `sharding`. A
    sharding over the devices of several processes needs each process to pass
    the same whole value: `put` checks that by a fingerprint of every process's
    bytes (which, unlike `jax.device_put`'s own check, holds for NaN, and moves
    a few bytes rather than the arrays), and each process then places its own
    devices' part. PRNG key arrays go through their key data."""
    spans_processes = not sharding.is_fully_addressable
    fingerprint = hashlib.blake2b(digest_size=8)

    def place(value: Any) -> jax.Array:
        if not spans_processes:
            return jax.device_put(value, sharding)
        host = np.asarray(value)
        fingerprint.update(f"{host.dtype}{host.shape}".encode())
        fingerprint.update(np.ascontiguousarray(host).tobytes())
        return jax.make_array_from_callback(
            host.shape, sharding, lambda index: host[index]
        )

    def leaf(value: Any) -> Any:
        if isinstance(value, jax.Array) and not value.is_fully_addressable:
            return value  # already a global array: `jit` moves it if it must
        if isinstance(value, jax.Array) and jnp.issubdtype(
            value.dtype, jax.dtypes.prng_key
        ):
            data = place(jr.key_data(value))
            return jr.wrap_key_data(data, impl=jr.key_impl(value))
        if eqx.is_array_like(value) and not isinstance(value, (bool, int, float)):
            return place(value)
        return value

    placed = jax.tree.map(leaf, tree)
    if spans_processes:
        mine = np.frombuffer(fingerprint.digest(), np.int64)
        everyone = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1)
        if np.any(everyone != everyone[0]):
            raise ValueError(
                f"`{name}`: the processes passed different values; on several "
                "processes each passes the same whole value (or a global "
                "`jax.Array`)."
            )
    return placed


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
    split: NamedSharding,
    args: tuple[Any, ...],
) -> tuple[checkify.Error, Any]:
    """`jax.vmap(fn)` over sharded inputs, with the outputs split as the inputs, and
    the failed checks of every row as one error on every device. A module-level
    `filter_jit`, so calls with the same `fn` object and shapes reuse the compiled
    program."""
    args = tuple(
        jax.tree.map(lambda leaf: jax.lax.with_sharding_constraint(leaf, split), arg)
        if axis == 0
        else arg
        for arg, axis in zip(args, in_axes, strict=True)
    )
    error, out = checked(jax.vmap(fn, in_axes=in_axes))(*args)

    def keep_split(leaf: Any) -> Any:
        if not eqx.is_array(leaf):
            return leaf
        return jax.lax.with_sharding_constraint(leaf, split)

    replicated = NamedSharding(split.mesh, PartitionSpec())
    return replicate_error(error, replicated), jax.tree.map(keep_split, out)


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

    The number of rows must be a multiple of the number of devices, so that every
    device holds an equal share of the output as of the input (JAX cannot split
    an array unevenly); for another number, pad the batch (say, repeat its last
    row) and drop the extra outputs, or pass fewer `devices`.

    A check inside `fn` that fails on any row (every check of scorax is an
    `eqx.error_if`: a sampler's start that is not finite, say) raises
    `equinox.EquinoxRuntimeError` with the check's message once the call is
    done, on every process, as `jax.vmap(fn)` does on one device. So
    `map_sharded` waits for its result before it returns. The values are passed
    to `fn` as they are: a NaN is refused only where `fn` checks for it.

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
    if size % num_devices:
        padded = size + -size % num_devices
        raise ValueError(
            f"`args`: {size} rows cannot be split evenly over {num_devices} "
            f"devices; pass a multiple of {num_devices} (pad to {padded} rows, say "
            "by repeating the last, and drop their outputs), or fewer `devices`."
        )
    placed = tuple(
        put(arg, split if axis == 0 else replicated, "args")
        for arg, axis in zip(args, axes, strict=True)
    )
    error, out = _vmap_sharded(fn, axes, split, placed)
    failed = failed_check(error)
    if failed is not None:
        raise eqx.EquinoxRuntimeError(
            f"{failed[1]}\n\n(raised by a check in `fn`, on at least one of the "
            f"{size} rows given to `map_sharded`)"
        )
    return out
