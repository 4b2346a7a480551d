"""Write the compatibility checkpoints: `python tests/checkpoints/make.py`.

One small model of each class, its weights by `eqx.tree_serialise_leaves` (the
format `fit` uses for its state) and its outputs at fixed inputs, under the
version that wrote them. `tests/test_checkpoints.py` loads every file with the
current code and checks the outputs: a saved model must keep working. Files are
never rewritten once released; a new release adds its own.
"""

import json
import pathlib
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import scorax


HERE = pathlib.Path(__file__).parent


def _image():
    return jr.normal(jr.key(1), (8, 8))


def _point():
    return jr.normal(jr.key(2), (2,))


# name: a function building (model, input, time, label), all from fixed keys;
# built on demand, so that collecting the tests builds no model.
MODELS: dict[str, Callable[[], tuple[eqx.Module, jax.Array, float, int | None]]] = {
    "score_mlp": lambda: (
        scorax.ScoreMLP((2,), width=16, depth=2, key=jr.key(0)),
        _point(),
        0.3,
        None,
    ),
    "score_mlp_conditional": lambda: (
        scorax.ScoreMLP((2,), width=16, depth=2, num_classes=3, key=jr.key(0)),
        _point(),
        0.3,
        1,
    ),
    "energy_mlp": lambda: (
        scorax.EnergyMLP((2,), width=16, depth=2, key=jr.key(0)),
        _point(),
        0.3,
        None,
    ),
    "unet": lambda: (
        scorax.UNet((8, 8), channels=(8, 16), key=jr.key(0)),
        _image(),
        0.4,
        None,
    ),
    "unet_conditional": lambda: (
        scorax.UNet((2, 8, 8), channels=(8,), num_classes=3, key=jr.key(0)),
        jnp.stack([_image(), -_image()]),
        0.4,
        2,
    ),
}


def models() -> dict[str, tuple[eqx.Module, jax.Array, float, int | None]]:
    """name: (model, input, time, label), every one of `MODELS` built."""
    return {name: build() for name, build in MODELS.items()}


def output(model, x, t, y):
    """The model's output at the recorded input (an energy takes no time)."""
    if isinstance(model, scorax.EnergyMLP):
        return model(x)
    return model(x, t) if y is None else model(x, t, y)


def main() -> None:
    folder = HERE / scorax.__version__
    folder.mkdir(exist_ok=True)
    record = {}
    for name, (model, x, t, y) in models().items():
        eqx.tree_serialise_leaves(folder / f"{name}.eqx", model)
        record[name] = {
            "x": np.asarray(x).tolist(),
            "t": t,
            "y": y,
            "output": np.asarray(output(model, x, t, y)).tolist(),
        }
    (folder / "outputs.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
