"""Where the batches of `fit` come from: an in-memory data set, from which the
devices draw every batch's rows themselves, or a stream of host batches from the
user's iterator, read a chunk of steps at a time. Either feed says where it stands
for the checkpoint and moves to where a checkpoint's run stopped."""

import abc
import collections.abc
import inspect
import json
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree

from .._sharded import put
from . import _checkpoint
from ._collectives import (
    agree,
    agree_on_failure,
    gather_bytes,
    gather_ints,
    processes,
)


class AbstractFeed(abc.ABC):
    """The data of one run of `fit`, on the devices of `mesh`.

    - `data`: the in-memory data set, placed on every device, or `None`.
    - `read(first, length)`: the streamed batches of the chunk of `length` steps
      from step `first` (`None` in memory), or the error that reading them raised.
    - `position()`: where the data stands, for the checkpoint.
    - `resume(position, step)`: move to where a checkpoint's run stopped.
    - `check_position()`: raise now if `position()` could not be saved later.
    """

    data: PyTree | None

    @abc.abstractmethod
    def read(self, first: int, length: int) -> tuple[PyTree | None, ValueError | None]:
        """The batches of the chunk from step `first`, or the error."""

    @abc.abstractmethod
    def position(self) -> dict[str, Any]:
        """Where the data stands, for the checkpoint."""

    @abc.abstractmethod
    def resume(self, position: dict[str, Any], step: int) -> None:
        """Move to where the checkpoint's run, at `position` and `step`, stopped."""

    @abc.abstractmethod
    def check_position(self) -> None:
        """Raise `ValueError` now if `position()` could not be saved."""


def make_feed(
    data: Any, *, batch_size: int, num_steps: int, mesh: Mesh
) -> AbstractFeed:
    """A stream if `data` is an iterator (anything with `__next__`), else an
    in-memory data set, checked."""
    if isinstance(data, collections.abc.Iterator):
        return StreamFeed(data, batch_size=batch_size, num_steps=num_steps, mesh=mesh)
    if inspect.isroutine(data):
        name = getattr(data, "__name__", "data")
        raise ValueError(
            f"`data` is the function `{name}`; pass arrays or an iterator of "
            f"batches, such as `{name}()` for a generator function."
        )
    return ArrayFeed(data, batch_size=batch_size, mesh=mesh)


class ArrayFeed(AbstractFeed):
    """A data set in memory, as a PyTree of JAX arrays with a common leading axis,
    all finite where floating, placed whole on every device: each step draws its
    rows on the devices, so nothing is read on the host."""

    def __init__(self, data: PyTree, *, batch_size: int, mesh: Mesh) -> None:
        data, num_samples = _check_data(data)
        if batch_size > num_samples:
            raise ValueError(
                "`batch_size` must be at most the number of samples "
                f"({num_samples}), got {batch_size}."
            )
        if len(processes(mesh)) > 1:
            lengths = gather_ints(num_samples)
            if len(set(lengths)) != 1:
                raise ValueError(
                    "`data`: the processes passed data sets of different lengths "
                    f"({lengths}); on several processes every one must pass "
                    "the whole data set, or stream its share of each batch."
                )
        self.data = put(data, NamedSharding(mesh, PartitionSpec()), "data")

    def read(self, first: int, length: int) -> tuple[None, None]:
        return None, None

    def position(self) -> dict[str, Any]:
        return {"data": "array"}

    def check_position(self) -> None:
        pass

    def resume(self, position: dict[str, Any], step: int) -> None:
        if position.get("data") != "array":
            raise ValueError(
                "`checkpoint` was written by a run on an iterator, and `data` is an "
                "in-memory data set; resume with the kind of data it was written "
                "with, or pass another path to start afresh."
            )


_EXPECTED = (
    "`data` must be an array, or a PyTree of arrays (such as `(x, y)`), with "
    "samples along the first axis, or an iterator of such batches"
)


def _is_array(leaf: Any) -> bool:
    """Whether `jnp.asarray` takes `leaf` as the array it is."""
    return isinstance(leaf, (int, float, complex, np.generic)) or any(
        hasattr(leaf, name) for name in ("__array__", "__jax_array__")
    )


def _check_data(data: PyTree) -> tuple[PyTree, int]:
    """The data as a PyTree of JAX arrays with a common leading axis, all finite
    where floating, and that axis's length."""
    for leaf in jax.tree.leaves(data):
        if _is_array(leaf):
            continue
        if leaf is data and isinstance(data, collections.abc.Iterable):
            raise ValueError(
                f"{_EXPECTED}; got a {type(data).__name__}, which is iterable but "
                "not an iterator: pass `iter(data)` to stream its batches."
            )
        raise ValueError(f"{_EXPECTED}; it holds a {type(leaf).__name__}.")
    data = jax.tree.map(jnp.asarray, data)
    leaves = jax.tree.leaves(data)
    if not leaves or any(leaf.ndim == 0 for leaf in leaves):
        raise ValueError(f"{_EXPECTED}.")
    lengths = {leaf.shape[0] for leaf in leaves}
    if len(lengths) != 1:
        shapes = [leaf.shape for leaf in leaves]
        listed = (
            " (a list of batches is streamed as `iter(batches)`)"
            if isinstance(data, list)
            else ""
        )
        raise ValueError(
            "`data`: every array must have the same number of samples along its "
            f"first axis, got shapes {shapes}{listed}."
        )
    for leaf in leaves:
        inexact = jnp.issubdtype(leaf.dtype, jnp.inexact)
        if inexact and not bool(jnp.all(jnp.isfinite(leaf))):
            raise ValueError("`data` must be finite; it contains NaN or inf.")
    return data, lengths.pop()


class Exhausted(Exception):
    """The iterator ended."""


class StreamFeed(AbstractFeed):
    """Host batches from a user's iterator, a chunk at a time: stacked along a new
    leading (step) axis and laid out as one global array per leaf, each process's
    rows on its own devices (`jax.make_array_from_process_local_data`).

    On several processes, reading a chunk and saving the iterators' states are
    collectives: every process learns whether any failed to read, and the
    checkpoint holds every process's state."""

    def __init__(
        self, iterator: Iterator[PyTree], *, batch_size: int, num_steps: int, mesh: Mesh
    ) -> None:
        self.data = None
        self.iterator = iterator
        self.batch_size = batch_size
        self.num_steps = num_steps
        local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
        self.local_size = batch_size * local // mesh.devices.size
        self.sharding = NamedSharding(mesh, PartitionSpec(None, "batch"))
        self.multiprocess = len(processes(mesh)) > 1
        self.consumed = 0
        self.layout: tuple[Any, list[tuple[tuple[int, ...], np.dtype]]] | None = None
        self.stateful = callable(getattr(iterator, "get_state", None)) and callable(
            getattr(iterator, "set_state", None)
        )

    def read(self, first: int, length: int) -> tuple[PyTree, ValueError | None]:
        batches, error = None, None
        try:
            batches = self._take(length)
        except Exhausted:
            error = ValueError(
                f"`data`: the iterator ended after {self.consumed} batches; "
                f"training to step {self.num_steps} needs one batch per step."
            )
        except ValueError as bad:
            error = bad
        if self.multiprocess:
            error = agree_on_failure(error, first)
        return batches, error

    def position(self) -> dict[str, Any]:
        position: dict[str, Any] = {"data": "iterator", "batches": self.consumed}
        if self.stateful:
            get_state = self.iterator.get_state  # pyright: ignore[reportAttributeAccessIssue]
            entry = _checkpoint.encode_iterator_state(get_state())
            if self.multiprocess:
                blobs = gather_bytes(json.dumps(entry).encode())
                position["states"] = [json.loads(blob) for blob in blobs]
            else:
                position["states"] = [entry]
        return position

    def check_position(self) -> None:
        """Encode the iterator's state once, before training: a state that JSON
        cannot hold is refused now rather than after the first chunk."""
        error = None
        if self.stateful:
            get_state = self.iterator.get_state  # pyright: ignore[reportAttributeAccessIssue]
            try:
                _checkpoint.encode_iterator_state(get_state())
            except ValueError as failure:
                error = failure
        if self.multiprocess:
            error = agree(
                error,
                lambda process: (
                    f"`data.get_state()` of process {process} cannot "
                    "be saved in the checkpoint; every process stops."
                ),
            )
        if error is not None:
            raise error

    def resume(self, position: dict[str, Any], step: int) -> None:
        if position.get("data") != "iterator":
            raise ValueError(
                "`checkpoint` was written by a run on an in-memory data set, and "
                "`data` is an iterator; resume with the kind of data it was written "
                "with, or pass another path to start afresh."
            )
        if self.stateful:
            self._set_state(position.get("states"))
            self.consumed = step
            return
        try:
            for _ in range(step):
                self._next_leaves()
        except Exhausted:
            raise ValueError(
                f"`data`: the iterator ended after {self.consumed} batches, "
                f"while skipping the {step} that the checkpoint's run consumed; "
                "pass an iterator that starts from the beginning."
            ) from None

    def _set_state(self, states: list[dict[str, Any]] | None) -> None:
        """Restore this process's iterator state from the checkpoint's `states`."""
        if states is None:
            raise ValueError(
                "`checkpoint` holds no iterator state (it was written with an "
                "iterator without `get_state`), and `data` has `set_state`; "
                "resume with an iterator like the one it was written with."
            )
        if len(states) != jax.process_count():
            raise ValueError(
                f"`checkpoint` holds the iterator states of {len(states)} "
                f"processes; this run has {jax.process_count()}."
            )
        set_state = self.iterator.set_state  # pyright: ignore[reportAttributeAccessIssue]
        set_state(_checkpoint.decode_iterator_state(states[jax.process_index()]))

    def _next_leaves(self) -> list[np.ndarray]:
        """The leaves of the next batch, checked against the first batch's layout."""
        try:
            batch = next(self.iterator)
        except StopIteration:
            raise Exhausted from None
        self.consumed += 1
        leaves, treedef = jax.tree.flatten(batch)
        leaves = [np.asarray(leaf) for leaf in leaves]
        layout = (treedef, [(leaf.shape, leaf.dtype) for leaf in leaves])
        if self.layout is None:
            if not leaves or any(
                leaf.ndim == 0 or leaf.shape[0] != self.local_size for leaf in leaves
            ):
                raise ValueError(
                    "`data`: every batch the iterator yields must be an array, or a "
                    f"PyTree of arrays, with {self.local_size} samples along the "
                    f"first axis (`batch_size` {self.batch_size}, less the rows of "
                    "the other processes' devices), got shapes "
                    f"{[leaf.shape for leaf in leaves]}."
                )
            self.layout = layout
        elif layout != self.layout:
            raise ValueError(
                f"`data`: batch {self.consumed} has structure and shapes {layout}; "
                f"the first had {self.layout}. Every batch must be alike."
            )
        return leaves

    def _take(self, length: int) -> PyTree:
        """The next `length` batches, as global arrays shaped `(length, batch, ...)`."""
        columns = list(zip(*(self._next_leaves() for _ in range(length)), strict=True))
        assert self.layout is not None
        arrays = []
        for column in columns:
            stacked = np.stack(column)
            stacked = stacked.astype(
                jax.dtypes.canonicalize_dtype(stacked.dtype), copy=False
            )
            if np.issubdtype(stacked.dtype, np.inexact) and not np.all(
                np.isfinite(stacked)
            ):
                raise ValueError(
                    "`data` must be finite; a batch from the iterator (one of "
                    f"batches {self.consumed - length + 1} to {self.consumed}) "
                    "contains NaN or inf."
                )
            shape = (length, self.batch_size, *stacked.shape[2:])
            arrays.append(
                jax.make_array_from_process_local_data(self.sharding, stacked, shape)
            )
        return jax.tree.unflatten(self.layout[0], arrays)
