import os
import pathlib
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import scorax

from .helpers import without_runtime_type_checking


PATH = scorax.VPPath()
MIXTURE = scorax.datasets.gaussian_mixture()


def _loss(model, x, key):
    return scorax.diffusion_loss(model, PATH, x, key=key, t_min=1e-2)


def _setup(width=32):
    data = MIXTURE.sample(key=jr.key(0), sample_shape=(2048,))
    model = scorax.ScoreMLP((2,), width=width, depth=2, time_scale=4.0, key=jr.key(1))
    return data, model


def _score(model, t):
    def score(x):
        return scorax.convert(
            PATH,
            model(x, t),
            x,
            t,
            source=scorax.NoisePrediction(),
            target=scorax.ScorePrediction(),
        )

    return score


def test_training_with_diffusion_loss_learns_the_diffused_mixture_score():
    """ScoreMLP trained by fit with diffusion_loss on the seed mixture: the Fisher
    divergence to the exact diffused-mixture score falls at least fivefold at each
    of several times."""
    data, model = _setup(width=64)
    result = scorax.fit(
        model,
        _loss,
        data,
        optimizer=optax.adam(3e-3),
        num_steps=1500,
        batch_size=128,
        key=jr.key(2),
        progress=False,
    )
    assert result.losses.shape == (1500,) and jnp.all(jnp.isfinite(result.losses))
    for t in (0.2, 0.5, 0.8):
        marginal = MIXTURE.marginal(PATH, t)
        x = marginal.sample(key=jr.key(3), sample_shape=(2000,))
        before = scorax.fisher_divergence(_score(model, t), marginal.score, x)
        after = scorax.fisher_divergence(_score(result.model, t), marginal.score, x)
        assert after < before / 5, (t, before, after)


@pytest.mark.parametrize("objective", ["ssm-vr", "ism"])
def test_energy_models_trained_by_score_matching_recover_the_mixture_score(objective):
    """EnergyMLP trained with sliced (variance-reduced) or implicit score matching on
    the seed mixture: the Fisher divergence of its score to the exact one falls at
    least fivefold from the initial network's."""
    data = MIXTURE.sample(key=jr.key(0), sample_shape=(4096,))
    energy = scorax.EnergyMLP((2,), width=64, depth=2, key=jr.key(1))

    def loss(e, x, k):
        score = scorax.score_from_energy(e)
        if objective == "ism":
            return scorax.implicit_score_matching(score, x)
        return scorax.sliced_score_matching(score, x, key=k, variance_reduction=True)

    result = scorax.fit(
        energy,
        loss,
        data,
        optimizer=optax.adam(3e-3),
        num_steps=1000,
        batch_size=128,
        key=jr.key(2),
        progress=False,
    )
    x = MIXTURE.sample(key=jr.key(3), sample_shape=(2000,))
    before = scorax.fisher_divergence(
        scorax.score_from_energy(energy), MIXTURE.score, x
    )
    after = scorax.fisher_divergence(
        scorax.score_from_energy(result.model), MIXTURE.score, x
    )
    assert after < before / 5, (before, after)


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def test_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path):
    """Stop after 12 steps (chunks of 5), resume to 30 (chunks of 7): the model,
    optimiser state, EMA and losses equal one uninterrupted run (chunks of 7)."""
    data, model = _setup()
    common = dict(
        optimizer=optax.adam(1e-3),
        batch_size=32,
        key=jr.key(5),
        ema_decay=0.9,
        progress=False,
    )
    straight = scorax.fit(model, _loss, data, num_steps=30, steps_per_chunk=7, **common)
    checkpoint = tmp_path / "run.eqx"
    scorax.fit(
        model,
        _loss,
        data,
        num_steps=12,
        steps_per_chunk=5,
        checkpoint=checkpoint,
        **common,
    )
    resumed = scorax.fit(
        model,
        _loss,
        data,
        num_steps=30,
        steps_per_chunk=7,
        checkpoint=checkpoint,
        **common,
    )
    for a, b in zip(_leaves(straight), _leaves(resumed), strict=True):
        assert np.array_equal(a, b)


def test_interrupted_checkpoint_write_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch
):
    data, model = _setup()
    checkpoint = tmp_path / "run.eqx"
    common = dict(
        optimizer=optax.sgd(1e-3), batch_size=16, key=jr.key(6), progress=False
    )
    scorax.fit(
        model,
        _loss,
        data,
        num_steps=4,
        steps_per_chunk=2,
        checkpoint=checkpoint,
        **common,
    )
    saved = checkpoint.read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(scorax._fit.np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        scorax.fit(
            model,
            _loss,
            data,
            num_steps=8,
            steps_per_chunk=2,
            checkpoint=checkpoint,
            **common,
        )
    assert checkpoint.read_bytes() == saved
    assert [p.name for p in tmp_path.iterdir()] == ["run.eqx"]  # no temporary left


def test_checkpoint_of_another_model_or_corrupt_file_raises_and_is_kept(tmp_path):
    data, model = _setup()
    common = dict(
        optimizer=optax.sgd(1e-3),
        batch_size=16,
        key=jr.key(7),
        progress=False,
        num_steps=2,
    )
    checkpoint = tmp_path / "run.eqx"
    scorax.fit(model, _loss, data, checkpoint=checkpoint, **common)
    saved = checkpoint.read_bytes()
    _, wider = _setup(width=48)
    with pytest.raises(ValueError, match=r"`checkpoint`.*cannot be read"):
        scorax.fit(wider, _loss, data, checkpoint=checkpoint, **common)
    assert checkpoint.read_bytes() == saved
    corrupt = tmp_path / "corrupt.eqx"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"`checkpoint`.*cannot be read"):
        scorax.fit(model, _loss, data, checkpoint=corrupt, **common)
    assert corrupt.read_bytes() == b"not a checkpoint"


def test_ema_tracks_the_weights(key):
    data, model = _setup()
    common = dict(
        optimizer=optax.adam(1e-2), batch_size=16, key=key, num_steps=20, progress=False
    )
    plain = scorax.fit(model, _loss, data, **common)
    assert plain.ema_model is None
    same = scorax.fit(model, _loss, data, ema_decay=0.0, **common)
    for a, b in zip(_leaves(same.model), _leaves(same.ema_model), strict=True):
        assert np.array_equal(a, b)
    averaged = scorax.fit(model, _loss, data, ema_decay=0.9, **common)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(
            _leaves(averaged.model), _leaves(averaged.ema_model), strict=True
        )
    )


def test_pytree_data_keeps_rows_together():
    """`data` may be any PyTree with a common first axis: with (x, y, label) where
    y = A x + label, a linear model fitted by least squares on the triples recovers
    A and the label offset, which it could not if rows were mixed across leaves."""
    key_x, key_a, key_l = jr.split(jr.key(0), 3)
    x = jr.normal(key_x, (512, 3))
    matrix = jr.normal(key_a, (2, 3))
    labels = jr.randint(key_l, (512,), 0, 2)  # an integer leaf: no finiteness check
    y = x @ matrix.T + 5.0 * labels[:, None]

    class Affine(eqx.Module):
        weight: jax.Array
        offset: jax.Array

    def loss(model, sample, key):
        x, y, label = sample
        prediction = model.weight @ x + model.offset * label
        return jnp.sum((prediction - y) ** 2)

    result = scorax.fit(
        Affine(jnp.zeros((2, 3)), jnp.zeros(2)),
        loss,
        (x, y, labels),
        optimizer=optax.adam(5e-2),
        num_steps=600,
        batch_size=64,
        key=jr.key(1),
        progress=False,
    )
    np.testing.assert_allclose(result.model.weight, matrix, atol=1e-3)
    np.testing.assert_allclose(result.model.offset, [5.0, 5.0], atol=1e-3)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (
            dict(data=(jnp.zeros((10, 2)), jnp.zeros((9,)))),
            "same number of samples",
        ),
        (dict(data=(jnp.zeros((10, 2)), jnp.zeros(()))), "samples along the first"),
        (dict(num_steps=0), "`num_steps` must be an integer >= 1"),
        (dict(batch_size=5000), "`batch_size` must be at most the number of samples"),
        (dict(ema_decay=1.0), r"`ema_decay` must lie in \[0, 1\)"),
        (dict(data=jnp.full((10, 2), jnp.nan)), "`data` must be finite"),
    ],
)
def test_bad_fit_arguments_raise(overrides, match):
    data, model = _setup()
    arguments = dict(
        optimizer=optax.sgd(1e-3),
        batch_size=8,
        key=jr.key(0),
        num_steps=2,
        progress=False,
        data=data,
    )
    arguments.update(overrides)
    data = arguments.pop("data")
    with without_runtime_type_checking(), pytest.raises(ValueError, match=match):
        scorax.fit(model, _loss, data, **arguments)


DATA_PARALLEL = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, jax.random as jr, numpy as np, optax, equinox as eqx, scorax
    assert jax.device_count() == 4, jax.devices()
    path = scorax.VPPath()
    data = scorax.datasets.gaussian_mixture().sample(key=jr.key(0), sample_shape=(512,))
    model = scorax.ScoreMLP((2,), width=32, depth=2, key=jr.key(1))
    loss = lambda m, x, k: scorax.diffusion_loss(m, path, x, key=k)
    kwargs = dict(optimizer=optax.adam(1e-3), num_steps=20, batch_size=64, key=jr.key(2), progress=False)
    one = scorax.fit(model, loss, data, devices=jax.devices()[:1], **kwargs)
    four = scorax.fit(model, loss, data, **kwargs)
    for a, b in zip(jax.tree.leaves(eqx.filter(one.model, eqx.is_array)), jax.tree.leaves(eqx.filter(four.model, eqx.is_array))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-6)
    np.testing.assert_allclose(np.asarray(one.losses), np.asarray(four.losses), rtol=2e-4)
    print("data-parallel ok")
    """
)


def test_data_parallel_training_matches_one_device():
    """On 4 host devices the batch is sharded and gradients reduced by XLA; the
    result equals training on one device up to float32 reassociation (20 Adam
    steps, so a few hundred ulps)."""
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
    )
    src = str(pathlib.Path(scorax.__file__).parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", DATA_PARALLEL],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data-parallel ok" in result.stdout
