"""`fit` on real Grain pipelines: a `MapDataset`'s iterator and a `DataLoader`'s
iterator stream the batches, and a run resumed from a checkpoint restores the
stream through the iterator's own `get_state`/`set_state`."""

import equinox as eqx
import grain
import jax
import jax.random as jr
import numpy as np
import optax
import pytest

import scorax

from .helpers import without_runtime_type_checking


PATH = scorax.VPPath()
DATA = np.asarray(
    scorax.datasets.gaussian_mixture().sample(key=jr.key(0), sample_shape=(256,)),
    np.float32,
)
OPTIMIZER = optax.adam(1e-3)  # one object, so that every run shares its program


def _loss(model, x, key):
    return scorax.diffusion_loss(model, PATH, x, key=key)


def _dataset_iterator():
    """Shuffled, repeated for epochs, in batches of 32: its state is a dict."""
    dataset = grain.MapDataset.source(DATA).shuffle(seed=1).repeat()
    return iter(dataset.batch(32, drop_remainder=True))


def _data_loader_iterator():
    """The same through a `DataLoader` (no worker processes): its state is bytes."""
    sampler = grain.samplers.IndexSampler(
        num_records=len(DATA),
        shard_options=grain.sharding.NoSharding(),
        shuffle=True,
        num_epochs=None,
        seed=1,
    )
    loader = grain.DataLoader(
        data_source=DATA,
        sampler=sampler,
        operations=[grain.transforms.Batch(32, drop_remainder=True)],
        worker_count=0,
    )
    return iter(loader)


def _fit(data, **overrides):
    model = scorax.ScoreMLP((2,), width=16, depth=2, key=jr.key(1))
    arguments = dict(
        optimizer=OPTIMIZER,
        num_steps=12,
        batch_size=32,
        steps_per_chunk=4,
        key=jr.key(2),
        progress=False,
    )
    arguments.update(overrides)
    return scorax.fit(model, _loss, data, **arguments)


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


@pytest.mark.parametrize("make", [_dataset_iterator, _data_loader_iterator])
def test_grain_stream_resumes_exactly_through_its_own_state(tmp_path, make):
    """Stop a streamed run at step 8 and call `fit` again the same way (a fresh
    Grain iterator, `num_steps=12`, the same checkpoint): the model, optimiser
    state and losses equal one uninterrupted run bit for bit, and the resumed
    iterator ends where the uninterrupted one did: the checkpoint restored it by
    `set_state`, from the state Grain's `get_state` gave."""
    uninterrupted = make()
    straight = _fit(uninterrupted)
    assert np.all(np.isfinite(straight.losses))
    checkpoint = tmp_path / "run.eqx"
    _fit(make(), num_steps=8, checkpoint=checkpoint)
    resumed_iterator = make()
    resumed = _fit(resumed_iterator, checkpoint=checkpoint)
    for a, b in zip(_leaves(straight), _leaves(resumed), strict=True):
        assert np.array_equal(a, b)
    assert resumed_iterator.get_state() == uninterrupted.get_state()


def test_a_grain_dataset_rather_than_its_iterator_is_refused():
    """A `MapDataset` is iterable, not an iterator: `fit` asks for `iter(data)`
    (what a user without runtime type checking sees)."""
    dataset = grain.MapDataset.source(DATA).batch(32)
    with (
        without_runtime_type_checking(),
        pytest.raises(ValueError, match=r"not an iterator: pass `iter\(data\)`"),
    ):
        _fit(dataset)
