"""Saved models keep working: every checkpoint under `tests/checkpoints/<version>/`,
written by that release's code (`tests/checkpoints/make.py`), loads into the
current classes and gives the outputs recorded when it was written. So do saved
training runs: every checkpoint of `fit` there (`tests/checkpoints/make_fit.py`)
resumes with the current `fit` to the results recorded when it was written."""

import json
import pathlib
import shutil

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from .checkpoints.make import MODELS, output
from .checkpoints.make_fit import (
    cases as fit_cases,
    FIRST_STEPS,
    leaves,
    NUM_STEPS,
    run,
)


FOLDER = pathlib.Path(__file__).parent / "checkpoints"
RELEASES = sorted(p.name for p in FOLDER.iterdir() if (p / "outputs.json").exists())
CASES = [(version, name) for version in RELEASES for name in MODELS]


def test_a_checkpoint_of_every_model_class_is_committed():
    assert RELEASES, "no released checkpoints found"
    for version in RELEASES:
        record = json.loads((FOLDER / version / "outputs.json").read_text())
        assert set(record) == set(MODELS), version


@pytest.mark.parametrize(("version", "name"), CASES)
def test_released_checkpoint_loads_and_gives_its_recorded_outputs(version, name):
    like, *_ = MODELS[name]()
    # Written in float32 (JAX's default); the suite runs with x64 enabled.
    like = jax.tree.map(
        lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, like
    )
    model = eqx.tree_deserialise_leaves(FOLDER / version / f"{name}.eqx", like)
    record = json.loads((FOLDER / version / "outputs.json").read_text())[name]
    x = jnp.asarray(record["x"], jnp.float32)
    got = output(model, x, record["t"], record["y"])
    # float32 weights and inputs, summed in another order by the current code:
    # the largest difference measured is 7 float32 ulps (about 6e-7 at the
    # outputs' scale of 1); 1e-5 leaves a margin for other CPUs' kernels.
    np.testing.assert_allclose(got, record["output"], rtol=1e-5, atol=1e-5)


FIT_RELEASES = sorted(
    p.name for p in FOLDER.iterdir() if (p / "fit_outputs.json").exists()
)
FIT_CASES = [(version, name) for version in FIT_RELEASES for name in fit_cases()]


def test_a_fit_checkpoint_of_every_state_layout_is_committed():
    assert FIT_RELEASES, "no released fit checkpoints found"
    for version in FIT_RELEASES:
        record = json.loads((FOLDER / version / "fit_outputs.json").read_text())
        assert set(record) == set(fit_cases()), version


@pytest.mark.parametrize(("version", "name"), FIT_CASES)
def test_released_fit_checkpoint_resumes_to_its_recorded_results(
    version, name, tmp_path
):
    """A run of `fit` checkpointed by a release (`tests/checkpoints/make_fit.py`)
    resumes with the current code: the loss history read back, then the losses,
    model, EMA and optimiser state of the steps trained after it, as recorded."""
    checkpoint = tmp_path / "run.eqx"  # `fit` writes to it: never to the release's
    shutil.copyfile(FOLDER / version / f"fit_{name}.eqx", checkpoint)
    record = json.loads((FOLDER / version / "fit_outputs.json").read_text())[name]
    with jax.enable_x64(False):  # written with float32 as JAX's default
        result = run(name, checkpoint, NUM_STEPS)
    # The history up to the checkpoint is read back from the file as it was saved.
    assert np.array_equal(
        result.losses[:FIRST_STEPS], np.float32(record["losses"][:FIRST_STEPS])
    )
    # The steps after it rerun float32 arithmetic: bit for bit on the CPU that
    # wrote them, and 1e-5 leaves a margin for other CPUs' kernels. A state read
    # back with the parameters and the EMA exchanged is off by 2e-2 in the losses
    # (measured), one with Adam's two moments exchanged gives NaN.
    np.testing.assert_allclose(result.losses, record["losses"], rtol=1e-5)
    got = leaves(result)
    assert [leaf.size for leaf in got] == [len(leaf) for leaf in record["leaves"]]
    for leaf, want in zip(got, record["leaves"], strict=True):
        np.testing.assert_allclose(leaf.ravel(), want, rtol=1e-5, atol=1e-7)
