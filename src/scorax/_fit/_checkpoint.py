"""The checkpoint file of `fit`: written atomically, read back whole.

One file: the training state (Equinox serialisation of a `TrainState`, so the
leaves in the order of its fields), the loss history (`np.save`), then where the data stands (`np.save` of a JSON document
as bytes): `{"data": "array"}` for an in-memory data set,
`{"data": "iterator", "batches": n}` for an iterator without state, plus
`"states": [one per process]` for one with `get_state`/`set_state`. A file without
the last part is an in-memory run's. 0.1.0 wrote this format.
"""

import base64
import json
import os
import pathlib
import tempfile
from typing import Any

import equinox as eqx
import numpy as np

from ._state import TrainState


def save(
    path: pathlib.Path, state: TrainState, losses: np.ndarray, position: dict[str, Any]
) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it over
    `path`: an interrupted write leaves the previous checkpoint untouched. The loss
    history and the data position follow the state in the same file."""
    record = np.frombuffer(json.dumps(position).encode(), np.uint8)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            eqx.tree_serialise_leaves(file, state)
            np.save(file, losses, allow_pickle=False)
            np.save(file, record, allow_pickle=False)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def check_writable(path: pathlib.Path) -> ValueError | None:
    """None if a checkpoint can be written at `path`, else the error saying why
    (naming `checkpoint`): the folder is missing, is a file, or refuses a file.
    Probed by creating (and removing) a temporary file there, as `save` does."""
    folder = path.parent
    if path.is_dir():
        return ValueError(
            f"`checkpoint` must be a file path, got the folder {path}; pass a path "
            f"in it, such as {path / 'run.eqx'}."
        )
    if not folder.is_dir():
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            return ValueError(
                f"`checkpoint`: {path} lies under {existing}, which is a file, "
                "not a folder."
            )
        return ValueError(
            f"`checkpoint`: the folder {folder} of {path} does not exist; create "
            "it first."
        )
    try:
        handle, probe = tempfile.mkstemp(
            dir=folder, prefix=f".{path.name}.", suffix=".tmp"
        )
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        return ValueError(
            f"`checkpoint`: cannot write a file in the folder {folder} "
            f"({error.strerror or error})."
        )
    return None


def load(
    path: pathlib.Path, like: TrainState
) -> tuple[TrainState, np.ndarray, dict[str, Any]]:
    """The state (shaped as `like`), loss history and data position saved at
    `path`, or a `ValueError` that says the file cannot be read as such."""
    try:
        with open(path, "rb") as file:
            state = eqx.tree_deserialise_leaves(file, like)
            losses = np.load(file, allow_pickle=False)
            here = file.tell()
            position = {"data": "array"}
            if file.read(1):
                file.seek(here)
                position = json.loads(np.load(file, allow_pickle=False).tobytes())
        if losses.shape != (int(state.step),):
            raise ValueError(f"{losses.shape[0]} losses for step {int(state.step)}")
        return state, losses, position
    except Exception as error:
        raise ValueError(
            f"`checkpoint`: {path} cannot be read as a checkpoint of this model and "
            f"optimiser ({type(error).__name__}: {error}). It is "
            "left as it is; pass another path to start afresh."
        ) from error


def encode_iterator_state(state: Any) -> dict[str, Any]:
    """An iterator's `get_state()` as JSON: bytes in base64, anything else as is."""
    if isinstance(state, bytes):
        return {"bytes": base64.b64encode(state).decode("ascii")}
    try:
        json.dumps(state)
    except (TypeError, ValueError) as error:
        raise ValueError(
            "`data.get_state()` must return bytes or a value that JSON holds (dicts "
            "with string keys, lists, strings, numbers, booleans, None), got "
            f"{type(state).__name__}: {error}"
        ) from error
    return {"json": state}


def decode_iterator_state(entry: dict[str, Any]) -> Any:
    """The iterator state that `encode_iterator_state` encoded as `entry`."""
    if "bytes" in entry:
        return base64.b64decode(entry["bytes"])
    return entry["json"]
