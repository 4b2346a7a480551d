"""The host loop of `fit`: chunks of compiled steps dispatched one after another,
the next chunk's batches read and the last chunk's losses copied while the devices
run, a checkpoint written after each chunk, and a progress bar."""

import pathlib
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, Float, PyTree
from tqdm.auto import tqdm

from . import _checkpoint
from ._collectives import processes, wait_for_all
from ._feed import AbstractFeed
from ._state import TrainState


# `(length, state, data, batches) -> (state, losses)`: `run_chunk` with the rest of
# its arguments bound.
RunChunk = Callable[
    [int, TrainState, PyTree | None, PyTree | None],
    tuple[TrainState, Float[Array, " length"]],
]


def train(
    state: TrainState,
    feed: AbstractFeed,
    history: np.ndarray,
    run_chunk: RunChunk,
    *,
    steps_per_chunk: int,
    checkpoint: pathlib.Path | None,
    progress: bool,
    mesh: Mesh,
) -> TrainState:
    """Train from `state` to step `len(history)`, writing each chunk's losses into
    `history` and, with `checkpoint`, the state after each chunk to that file.

    Each chunk is dispatched asynchronously: the devices run it while the host
    reads the next chunk's batches and, without a checkpoint to write, copies the
    previous chunk's losses. On several processes only the first writes the
    checkpoint and shows the bar, and none returns before the last checkpoint is
    on disk."""
    num_steps = len(history)
    start = min(int(state.step), num_steps)
    writer = jax.process_index() == processes(mesh)[0]
    bar = tqdm(
        total=num_steps, initial=start, disable=not progress or not writer, desc="fit"
    )
    with bar:
        batches = None
        if start < num_steps:
            batches, error = feed.read(start, min(steps_per_chunk, num_steps - start))
            if error is not None:
                raise error
        pending: tuple[int, Array] | None = None
        while start < num_steps:
            length = min(steps_per_chunk, num_steps - start)
            state, losses = run_chunk(length, state, feed.data, batches)
            # Where the data stands after this chunk's batches, before the next's.
            position = None if checkpoint is None else feed.position()
            start += length
            ended = None  # raised once this chunk is recorded and saved
            if start < num_steps:
                next_length = min(steps_per_chunk, num_steps - start)
                batches, ended = feed.read(start, next_length)
            if pending is not None:
                _record(history, bar, *pending)
            pending = (start - length, losses)
            if checkpoint is not None and position is not None:
                _record(history, bar, *pending)
                pending = None
                if writer:
                    _checkpoint.save(checkpoint, state, history[:start], position)
            if ended is not None:
                raise ended
        if pending is not None:
            _record(history, bar, *pending)
    if len(processes(mesh)) > 1 and checkpoint is not None:
        # No process returns (and perhaps resumes) before the last checkpoint is
        # on disk.
        wait_for_all(f"scorax.fit checkpoint {checkpoint}")
    return state


def _record(history: np.ndarray, bar: tqdm, first: int, losses: Array) -> None:
    """Copy one chunk's losses to `history` from step `first` (waiting for that
    chunk only), and advance the bar."""
    history[first : first + losses.shape[0]] = np.asarray(losses, np.float32)
    chunk = history[first : first + losses.shape[0]]
    bar.set_postfix(loss=f"{float(np.mean(chunk)):.4g}")
    bar.update(losses.shape[0])
