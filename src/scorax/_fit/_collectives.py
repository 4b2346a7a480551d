"""What the processes of one run of `fit` tell one another on the host, between
the compiled steps (whose gradients are summed inside them). Each function that
gathers is a collective: every process of the run must call it, in the same
order, or they wait for one another for ever."""

from collections.abc import Callable

import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh


def processes(mesh: Mesh) -> list[int]:
    """The indices of the processes whose devices `mesh` spans, in order."""
    return sorted({device.process_index for device in mesh.devices.flat})


def gather_ints(value: int) -> list[int]:
    """Every process's `value`, in process order."""
    gathered = multihost_utils.process_allgather(np.array([value], np.int64))
    return [int(v) for v in np.asarray(gathered).reshape(-1)]


def gather_bytes(blob: bytes) -> list[bytes]:
    """Every process's `blob`, in process order."""
    length = np.array([len(blob)], np.int64)
    lengths = np.asarray(multihost_utils.process_allgather(length)).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[: len(blob)] = np.frombuffer(blob, np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return [row[:n].tobytes() for row, n in zip(gathered, lengths, strict=True)]


def wait_for_all(name: str) -> None:
    """Return once every process has called this with the same `name`."""
    multihost_utils.sync_global_devices(name)


def agree(
    error: ValueError | None, elsewhere: Callable[[int], str]
) -> ValueError | None:
    """`error`, this process's own; without one, a `ValueError` with the message
    `elsewhere(process)` for the first process that failed, if any did.
    So every process raises at the same point, rather than wait at the next
    collective for one that raised."""
    failed = gather_ints(int(error is not None))
    if error is None and any(failed):
        error = ValueError(elsewhere(failed.index(1)))
    return error


def agree_on_failure(error: ValueError | None, first: int) -> ValueError | None:
    """`error`, this process's failure to read the batches of the chunk from step
    `first`; without one, an error naming the first process that failed, if any
    did. So every process stops at the same chunk, rather than wait in the next
    for one that stopped."""
    return agree(
        error,
        lambda process: (
            f"`data`: reading the batches of process {process} "
            f"from step {first} failed; every process stops there."
        ),
    )
