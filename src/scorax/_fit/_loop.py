"""The host loop of `fit`: chunks of compiled steps dispatched one after another,
the next chunk's batches read and the last chunk's losses copied while the devices
run, a checkpoint written after each chunk, and the progress shown."""

import math
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.experimental import checkify
from jax.sharding import Mesh
from jaxtyping import Array, Float, PyTree
from tqdm.auto import tqdm as auto_tqdm

from .._sharded import failed_check
from . import _checkpoint
from ._collectives import processes, wait_for_all
from ._feed import AbstractFeed
from ._state import TrainState


# `(length, state, data, batches) -> (state, losses, error)`: `run_chunk` with the
# rest of its arguments bound.
RunChunk = Callable[
    [int, TrainState, PyTree | None, PyTree | None],
    tuple[TrainState, Float[Array, " length"], checkify.Error],
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
    previous chunk's losses. A check that failed in a chunk (on any device) is
    raised when its losses are copied, before its state is saved, on every
    process. On several processes only the first writes the checkpoint and shows
    the progress, and none returns before the last checkpoint is on disk."""
    num_steps = len(history)
    start = min(int(state.step), num_steps)
    writer = jax.process_index() == processes(mesh)[0]
    with show_progress(num_steps, start, enabled=progress and writer) as shown:
        batches = None
        if start < num_steps:
            batches, error = feed.read(start, min(steps_per_chunk, num_steps - start))
            if error is not None:
                raise error
        pending: tuple[int, Array, checkify.Error] | None = None
        while start < num_steps:
            length = min(steps_per_chunk, num_steps - start)
            state, losses, failed = run_chunk(length, state, feed.data, batches)
            # Where the data stands after this chunk's batches, before the next's.
            position = None if checkpoint is None else feed.position()
            start += length
            ended = None  # raised once this chunk is recorded and saved
            if start < num_steps:
                next_length = min(steps_per_chunk, num_steps - start)
                batches, ended = feed.read(start, next_length)
            if pending is not None:
                _record(history, shown, *pending)
            pending = (start - length, losses, failed)
            if checkpoint is not None and position is not None:
                _record(history, shown, *pending)
                pending = None
                if writer:
                    _checkpoint.save(checkpoint, state, history[:start], position)
            if ended is not None:
                raise ended
        if pending is not None:
            _record(history, shown, *pending)
    if len(processes(mesh)) > 1 and checkpoint is not None:
        # No process returns (and perhaps resumes) before the last checkpoint is
        # on disk.
        wait_for_all(f"scorax.fit checkpoint {checkpoint}")
    return state


def _record(
    history: np.ndarray,
    shown: "Progress",
    first: int,
    losses: Array,
    failed: checkify.Error,
) -> None:
    """Copy one chunk's losses to `history` from step `first` (waiting for that
    chunk only), and show the progress; or raise the check that failed in it."""
    found = failed_check(failed)
    if found is not None:
        (step, device), message = found
        raise eqx.EquinoxRuntimeError(
            f"{message}\n\n(a check in the loss or the model failed at step "
            f"{first + step} of `fit`, on device {device} of the run; nothing from "
            f"step {first} on is kept)"
        )
    history[first : first + losses.shape[0]] = np.asarray(losses, np.float32)
    chunk = history[first : first + losses.shape[0]]
    shown.update(losses.shape[0], float(np.mean(chunk)))


class Progress:
    """How far `fit` is, shown nowhere: `update(steps, loss)` after each chunk,
    then `close()`. `Bar` and `Lines` show it."""

    def update(self, steps: int, loss: float) -> None:
        """`steps` more steps done, with this mean `loss` over them."""

    def close(self) -> None:
        """The run ended (or failed)."""

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Bar(Progress):
    """A live tqdm bar, redrawn in place: for a terminal or a notebook."""

    def __init__(self, total: int, initial: int, file: Any) -> None:
        self.bar = auto_tqdm(total=total, initial=initial, desc="fit", file=file)

    def update(self, steps: int, loss: float) -> None:
        self.bar.set_postfix(loss=f"{loss:.4g}")
        self.bar.update(steps)

    def close(self) -> None:
        self.bar.close()


class Lines(Progress):
    """One line per chunk, at most one every `interval` seconds (and always the
    last): for a log file or captured output, where a bar's carriage returns
    would pile up."""

    def __init__(
        self, total: int, initial: int, file: Any, interval: float = 5.0
    ) -> None:
        self.total, self.step, self.file, self.interval = total, initial, file, interval
        self.start = time.monotonic()
        self.last = -math.inf

    def update(self, steps: int, loss: float) -> None:
        self.step += steps
        now = time.monotonic()
        if self.step < self.total and now - self.last < self.interval:
            return
        self.last = now
        percent = 100 * self.step // self.total
        print(
            f"fit: step {self.step}/{self.total} ({percent}%), loss {loss:.4g}, "
            f"{now - self.start:.1f} s",
            file=self.file,
            flush=True,
        )


def show_progress(
    total: int, initial: int, *, enabled: bool, file: Any = None
) -> Progress:
    """The progress display of a run from step `initial` to `total`, on `file`
    (any text stream; default: standard error, as it is when `fit` runs): a live bar on a terminal or in a notebook, lines
    elsewhere, nothing unless `enabled`."""
    if not enabled:
        return Progress()
    stream = sys.stderr if file is None else file
    # `tqdm.auto` draws a widget in a notebook, whose output is no terminal.
    notebook = any(cls.__module__ == "tqdm.notebook" for cls in auto_tqdm.__mro__)
    isatty = getattr(stream, "isatty", None)
    if notebook or (isatty is not None and isatty()):
        return Bar(total, initial, stream)
    return Lines(total, initial, stream)
