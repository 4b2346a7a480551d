"""Write the compatibility checkpoints of `fit`: `python tests/checkpoints/make_fit.py`.

For every case below, a short run of `fit` writes its checkpoint (the training
state by `eqx.tree_serialise_leaves`, whose leaf order is therefore part of the
format, then the loss history and where the data stands), and a copy of that file
is resumed for a few more steps. The cases cover every layout the state and the
data position take: with and without an EMA, Adam and SGD with momentum, an
in-memory data set, and a stream whose iterator restores its state (as JSON or as
bytes) or is skipped. The resumed run's losses and final model, EMA and optimiser
state are recorded in `fit_outputs.json`, under the version that wrote them.
`tests/test_checkpoints.py` resumes every file with the current code and checks
it gives the recorded results: a run interrupted under one release resumes under
the next. Files are never rewritten once released; a new release adds its own.
"""

import json
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import equinox as eqx
import jax
import jax.random as jr
import numpy as np
import optax

import scorax


HERE = pathlib.Path(__file__).parent
PATH = scorax.VPPath()
FIRST_STEPS = 6  # the run that writes the checkpoint: chunks of 4 and 2 steps
NUM_STEPS = 10  # the resumed run: 4 more steps, in chunks of 3 and 1
BATCH_SIZE = 16


def _data() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(256, 2)).astype(np.float32)


class Rows:
    """A deterministic stream of labelled batches `(x, label)` with Grain's state
    protocol: `get_state()` is the next batch's number, as a JSON dict or as bytes."""

    def __init__(self, as_bytes: bool) -> None:
        self.data, self.as_bytes, self.next = _data(), as_bytes, 0

    def __iter__(self) -> "Rows":
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        rows = np.random.default_rng([7, self.next]).integers(0, 256, BATCH_SIZE)
        self.next += 1
        return self.data[rows], (rows % 2).astype(np.int32)

    def get_state(self) -> Any:
        state = {"next": self.next}
        return json.dumps(state).encode() if self.as_bytes else state

    def set_state(self, state: Any) -> None:
        self.next = (json.loads(state) if self.as_bytes else state)["next"]


def _plain_rows() -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The batches of `Rows`, from a generator without state (resumed by skipping)."""
    yield from Rows(as_bytes=False)


def _loss(model: Any, x: Any, key: Any) -> Any:
    return scorax.diffusion_loss(model, PATH, x, key=key)


def _labelled_loss(model: Any, sample: Any, key: Any) -> Any:
    x, label = sample
    return (1 + label) * _loss(model, x, key)


# name: (optimizer, ema_decay, data, loss). A large learning rate and a quick EMA
# keep the parameters, the EMA and Adam's two moments far apart, so that a state
# read back with two leaves exchanged resumes visibly differently.
def cases() -> dict[str, tuple[Any, float | None, Any, Any]]:
    """Every case, with fresh data (iterators are consumed by a run)."""
    adam = optax.adam(1e-2)
    return {
        "memory_ema": (adam, 0.5, _data(), _loss),
        "memory": (optax.sgd(1e-2, momentum=0.9), None, _data(), _loss),
        "stream_state": (adam, 0.5, Rows(as_bytes=False), _labelled_loss),
        "stream_bytes_state": (adam, None, Rows(as_bytes=True), _labelled_loss),
        "stream_skip": (adam, 0.5, _plain_rows(), _labelled_loss),
    }


def run(name: str, checkpoint: pathlib.Path, num_steps: int) -> scorax.FitResult:
    """Case `name` trained to `num_steps` with `checkpoint` (resumed if it exists).
    Call it with float32 as JAX's default (`jax.enable_x64(False)`), as written."""
    optimizer, ema_decay, data, loss = cases()[name]
    model = scorax.ScoreMLP((2,), width=8, depth=2, key=jr.key(1))
    return scorax.fit(
        model,
        loss,
        data,
        optimizer=optimizer,
        num_steps=num_steps,
        batch_size=BATCH_SIZE,
        key=jr.key(2),
        steps_per_chunk=4 if num_steps == FIRST_STEPS else 3,
        ema_decay=ema_decay,
        checkpoint=checkpoint,
        progress=False,
    )


def leaves(result: scorax.FitResult) -> list[np.ndarray]:
    """The arrays of the model, EMA and optimiser state, in order."""
    trees = (result.model, result.ema_model, result.opt_state)
    return [
        np.asarray(leaf) for leaf in jax.tree.leaves(eqx.filter(trees, eqx.is_array))
    ]


def main() -> None:
    folder = HERE / scorax.__version__
    folder.mkdir(exist_ok=True)
    record = {}
    with jax.enable_x64(False), tempfile.TemporaryDirectory() as scratch:
        for name in cases():
            checkpoint = folder / f"fit_{name}.eqx"
            run(name, checkpoint, FIRST_STEPS)
            copy = pathlib.Path(scratch) / checkpoint.name
            shutil.copyfile(checkpoint, copy)
            resumed = run(name, copy, NUM_STEPS)
            record[name] = {
                "losses": np.asarray(resumed.losses).tolist(),
                "leaves": [leaf.ravel().tolist() for leaf in leaves(resumed)],
            }
    (folder / "fit_outputs.json").write_text(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
