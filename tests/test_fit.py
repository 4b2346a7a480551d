import io
import itertools
import json
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

from .helpers import assert_beats_the_best_affine_score, without_runtime_type_checking


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
    of several times, and at t = 0.2, where the diffused mixture is still bimodal,
    it is below the best affine score's (helpers.best_affine_score): the network
    learned the modes, not a Gaussian.

    Fivefold is a regression bound, not a statistical one. The initial network's
    output is near zero, so `before` is about the zero score's divergence
    E||grad log p_t||^2 and the ratio about 1 / R(t) (fisher_divergence_by_time's
    relative divergence): a network that learned nothing stays near 1. On this
    seed training gives 15, 135 and 126 at t = 0.2, 0.5 and 0.8; five is a
    factor 3 below the least of them (room for float32 reassociation across
    platforms and versions) and five times no learning. The estimates' Monte
    Carlo error (2000 points) is a few percent of each."""
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
        if t == 0.2:
            assert_beats_the_best_affine_score(_score(result.model, t), marginal, x)


@pytest.mark.parametrize("objective", ["ssm-vr", "ism"])
def test_energy_models_trained_by_score_matching_recover_the_mixture_score(objective):
    """EnergyMLP trained with sliced (variance-reduced) or implicit score matching on
    the seed mixture: the Fisher divergence of its score to the exact one falls at
    least fivefold from the initial network's, and is below the best affine
    score's (helpers.best_affine_score), beyond 5 standard errors: the energy has
    both modes.

    Fivefold as in the test above: `before` is about the zero score's divergence;
    on this seed training gives 33 (SSM-VR) and 28 (ISM), and the best affine
    score's divergence is 1.48 against 0.08 and 0.09 after training."""
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
    assert_beats_the_best_affine_score(
        scorax.score_from_energy(result.model), MIXTURE, x
    )


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

    monkeypatch.setattr(scorax._fit._checkpoint.np, "save", broken_save)
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


def test_ema_follows_its_recursion_from_the_initial_weights(key, tmp_path):
    """With ema_decay d, after every step k the EMA is d ema_{k-1} + (1 - d) w_k,
    where w_k are the weights after that step and ema_0 = w_0 the initial
    weights: checked step by step against the recorded weights, over five steps
    (one step per call, each resumed from the checkpoint the last one wrote, which
    continues the run exactly: see the resume tests). Without ema_decay there is
    no EMA."""
    data, model = _setup()
    common = dict(optimizer=optax.adam(1e-2), batch_size=16, key=key, progress=False)
    assert scorax.fit(model, _loss, data, num_steps=1, **common).ema_model is None
    decay = 0.9
    weights, emas = [_leaves(model)], [_leaves(model)]
    for step in range(1, 6):
        result = scorax.fit(
            model,
            _loss,
            data,
            num_steps=step,
            steps_per_chunk=1,
            ema_decay=decay,
            checkpoint=tmp_path / "run.eqx",
            **common,
        )
        weights.append(_leaves(result.model))
        emas.append(_leaves(result.ema_model))
    for k in range(1, 6):
        # The weights move (by about Adam's learning rate, 1e-2), so the
        # recursion is not met by a constant. (The random time features are
        # fixed and do not.)
        moved = [
            np.max(np.abs(a - b))
            for a, b in zip(weights[k], weights[k - 1], strict=True)
        ]
        assert max(moved) > 1e-3
        for previous, w, ema in zip(emas[k - 1], weights[k], emas[k], strict=True):
            # Both sides compute d e + (1 - d) w in the weights' dtype: two
            # products and a sum, each rounded to half an ulp, or the sum fused
            # with a product; they differ by at most 2 eps (|d e| + |(1 - d) w|).
            # A wrong recursion (the weights before the step, say) is off by
            # (1 - d) times a step, about 1e-3, far more.
            d, rest = np.asarray(decay, w.dtype), np.asarray(1 - decay, w.dtype)
            expected = d * previous + rest * w
            scale = np.abs(d * previous) + np.abs(rest * w)
            rounding = 2 * np.finfo(w.dtype).eps * scale
            assert np.all(np.abs(ema - expected) <= rounding), (k, ema - expected)


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
        (dict(data=iter([np.zeros((4, 2))])), "with 8 samples along the first axis"),
        (dict(data=iter([np.full((8, 2), np.inf)] * 2)), "`data` must be finite"),
        (
            dict(data=iter([np.zeros((8, 2)), np.zeros((8, 3))])),
            "batch 2 has structure and shapes",
        ),
        (dict(data=iter([np.zeros((8, 2))])), "iterator ended after 1 batches"),
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


def _drawn_rows(data, key, batch_size, num_steps):
    """The rows fit's in-memory draw takes at each step, as a host stream."""
    for step in range(num_steps):
        index_key, _ = jr.split(jr.fold_in(key, step))
        indices = jr.randint(index_key, (batch_size,), 0, data.shape[0])
        yield np.asarray(data)[np.asarray(indices)]


def test_stream_of_the_drawn_rows_trains_exactly_as_in_memory_data():
    """An iterator that yields, at step i, the rows the in-memory draw takes at
    step i trains bit for bit as the in-memory data set: the step keys do not
    depend on where the batch comes from."""
    data, model = _setup()
    common = dict(
        optimizer=optax.adam(1e-3),
        batch_size=32,
        key=jr.key(5),
        num_steps=12,
        steps_per_chunk=5,
        progress=False,
    )
    in_memory = scorax.fit(model, _loss, data, **common)
    streamed = scorax.fit(model, _loss, _drawn_rows(data, jr.key(5), 32, 12), **common)
    for a, b in zip(_leaves(in_memory), _leaves(streamed), strict=True):
        assert np.array_equal(a, b)


class _Rows:
    """A deterministic stream of labelled batches `(x, label)` with Grain's state
    protocol: `get_state()` is the next batch's number (as a JSON dict, or as
    bytes), and `set_state` jumps there without reading the batches before it."""

    def __init__(self, data, batch_size, as_bytes=False):
        self.data, self.batch_size, self.as_bytes = (
            np.asarray(data),
            batch_size,
            as_bytes,
        )
        self.next, self.reads = 0, 0

    def __iter__(self):
        return self

    def __next__(self):
        rng = np.random.default_rng([7, self.next])
        rows = rng.integers(0, len(self.data), self.batch_size)
        self.next += 1
        self.reads += 1
        return self.data[rows], (rows % 2).astype(np.int32)

    def get_state(self):
        state = {"next": self.next}
        return json.dumps(state).encode() if self.as_bytes else state

    def set_state(self, state):
        self.next = (json.loads(state) if self.as_bytes else state)["next"]


def _labelled_loss(model, sample, key):
    x, label = sample
    return (1 + label) * _loss(model, x, key)


def _plain_rows(data, batch_size):
    """The same batches as `_Rows`, from a generator without state."""
    yield from _Rows(data, batch_size)


@pytest.mark.parametrize("protocol", ["get_state", "get_state-bytes", "skip"])
def test_resumed_stream_equals_uninterrupted_run_bit_for_bit(tmp_path, protocol):
    """Stream labelled batches; stop after 12 steps (chunks of 5) and resume to 30
    (chunks of 7) from a fresh iterator: the model, optimiser state, EMA and losses
    equal one uninterrupted run, whether the iterator's own state is restored
    (`set_state`, with a JSON or a bytes state: no batch is read twice) or the
    fresh iterator is advanced past the batches already consumed."""
    data, model = _setup()

    def stream():
        if protocol == "skip":
            return _plain_rows(data, 32)
        return _Rows(data, 32, as_bytes=protocol == "get_state-bytes")

    common = dict(
        optimizer=optax.adam(1e-3),
        batch_size=32,
        key=jr.key(5),
        ema_decay=0.9,
        progress=False,
    )
    straight = scorax.fit(
        model, _labelled_loss, stream(), num_steps=30, steps_per_chunk=7, **common
    )
    checkpoint = tmp_path / "run.eqx"
    first = stream()
    scorax.fit(
        model,
        _labelled_loss,
        first,
        num_steps=12,
        steps_per_chunk=5,
        checkpoint=checkpoint,
        **common,
    )
    second = stream()
    resumed = scorax.fit(
        model,
        _labelled_loss,
        second,
        num_steps=30,
        steps_per_chunk=7,
        checkpoint=checkpoint,
        **common,
    )
    for a, b in zip(_leaves(straight), _leaves(resumed), strict=True):
        assert np.array_equal(a, b)
    if protocol != "skip":
        assert (first.reads, second.reads) == (12, 18)  # nothing read twice


def test_stream_that_ends_early_keeps_the_last_checkpoint_and_says_so(tmp_path):
    """An iterator of 10 batches for 20 steps (chunks of 4): `fit` trains and saves
    steps 0 to 8, finds the stream short while reading the next chunk, and raises
    once step 8 is on disk; a longer stream then resumes from it."""
    data, model = _setup()
    checkpoint = tmp_path / "run.eqx"
    common = dict(
        optimizer=optax.sgd(1e-3),
        batch_size=16,
        key=jr.key(6),
        num_steps=20,
        steps_per_chunk=4,
        checkpoint=checkpoint,
        progress=False,
    )
    short = itertools.islice(_plain_rows(data, 16), 10)
    with pytest.raises(ValueError, match="iterator ended after 10 batches"):
        scorax.fit(model, _labelled_loss, short, **common)
    result = scorax.fit(model, _labelled_loss, _plain_rows(data, 16), **common)
    assert result.losses.shape == (20,) and np.all(np.isfinite(result.losses))


def test_checkpoint_resumes_only_with_the_kind_of_data_it_was_written_with(tmp_path):
    data, model = _setup()
    common = dict(
        optimizer=optax.sgd(1e-3),
        batch_size=16,
        key=jr.key(7),
        progress=False,
        num_steps=2,
    )
    memory = tmp_path / "memory.eqx"
    scorax.fit(model, _loss, data, checkpoint=memory, **common)
    with pytest.raises(ValueError, match="in-memory data set, and `data` is an iter"):
        scorax.fit(model, _loss, iter([data[:16]] * 4), checkpoint=memory, **common)
    stream = tmp_path / "stream.eqx"
    scorax.fit(model, _loss, iter([data[:16]] * 2), checkpoint=stream, **common)
    with pytest.raises(ValueError, match="written by a run on an iterator"):
        scorax.fit(model, _loss, data, checkpoint=stream, **common)
    with pytest.raises(ValueError, match="ended after 1 batches, while skipping the 2"):
        scorax.fit(model, _loss, iter([data[:16]]), checkpoint=stream, **common)
    with pytest.raises(ValueError, match="holds no iterator state"):
        scorax.fit(model, _labelled_loss, _Rows(data, 16), checkpoint=stream, **common)


def test_iterator_state_that_json_cannot_hold_raises_before_writing(tmp_path):
    """`get_state()` must return bytes or a JSON value: a set, say, is refused with
    a message naming the rule before any batch is read, and no checkpoint is
    written."""
    data, model = _setup()

    class SetState(_Rows):
        def get_state(self):
            return {self.next}

    checkpoint = tmp_path / "run.eqx"
    stream = SetState(data, 16)
    with pytest.raises(ValueError, match=r"`data.get_state\(\)` must return bytes"):
        scorax.fit(
            model,
            _labelled_loss,
            stream,
            optimizer=optax.sgd(1e-3),
            batch_size=16,
            key=jr.key(8),
            num_steps=2,
            checkpoint=checkpoint,
            progress=False,
        )
    assert not checkpoint.exists()
    assert stream.reads == 0  # refused before training, not after the first chunk


# Shared by the tests below, so that they reuse one compiled program.
_SGD = optax.sgd(1e-3)


def _small_fit(model, loss, data, **overrides):
    arguments = dict(
        optimizer=_SGD,
        batch_size=16,
        key=jr.key(9),
        num_steps=8,
        steps_per_chunk=4,
        progress=False,
    )
    arguments.update(overrides)
    return scorax.fit(model, loss, data, **arguments)


def _refuse_training(*args, **kwargs):
    raise AssertionError("`fit` trained before it found the argument wrong")


@pytest.mark.parametrize("case", ["no folder", "file as folder", "folder", "denied"])
def test_checkpoint_that_cannot_be_written_raises_before_training(
    tmp_path, monkeypatch, case
):
    """A `checkpoint` path in a folder that does not exist, under a file, that is a
    folder, or in a folder that refuses files raises an error naming `checkpoint`
    before any step is trained (not a FileNotFoundError about a temporary file
    after the first chunk)."""
    data, model = _setup()
    (tmp_path / "file").write_text("")
    path, match = {
        "no folder": (tmp_path / "missing" / "run.eqx", "folder .* does not exist"),
        "file as folder": (tmp_path / "file" / "sub" / "run.eqx", "which is a file"),
        "folder": (tmp_path, "must be a file path"),
        "denied": (tmp_path / "run.eqx", "cannot write a file in the folder"),
    }[case]
    if case == "denied":

        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(scorax._fit._checkpoint.tempfile, "mkstemp", denied)
    monkeypatch.setattr(scorax._fit._fit, "train", _refuse_training)
    with pytest.raises(ValueError, match=f"`checkpoint`.*{match}"):
        _small_fit(model, _loss, data, checkpoint=path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _batches():
    yield np.zeros((16, 2), np.float32)


def _loss_of_two_values(model, x, key):
    return jnp.stack([_loss(model, x, key)] * 2)


@pytest.mark.parametrize(
    "data, loss, match",
    [
        (
            jnp.zeros((64, 2), jnp.int32),
            _loss,
            r"`data`: `loss_fn\(model, sample, key\)` fails on one sample of `data` "
            r"\(int32\[2\]\).*Every array of `data` is integer.*floating point",
        ),
        (
            iter([np.zeros((16, 2), np.int32)] * 8),
            _loss,
            r"fails on one sample of `data` \(int32\[2\]\)",
        ),
        (_batches, _loss, r"`data` is the function `_batches`.*`_batches\(\)`"),
        (range(64), _loss, r"iterable but not an iterator: pass `iter\(data\)`"),
        ((np.zeros((64, 2)), "labels"), _loss, "it holds a str"),
        (
            [np.zeros((16, 2), np.float32)] * 3,
            _loss,
            r"`data` is a list.*streamed as `iter\(batches\)`",
        ),
        (
            [np.zeros((16, 2)), np.zeros((12, 2))],
            _loss,
            r"same number of samples.*streamed as `iter\(batches\)`",
        ),
        (
            jnp.zeros((64, 2)),
            _loss_of_two_values,
            r"`loss_fn` must return the loss of one sample, a floating-point scalar, "
            r"got float\d+\[2\]",
        ),
    ],
    ids=[
        "integer array",
        "integer stream",
        "generator function",
        "iterable",
        "not an array",
        "list of batches",
        "list of unequal arrays",
        "vector loss",
    ],
)
def test_data_the_loss_cannot_take_raises_naming_data(data, loss, match, monkeypatch):
    """Data that `fit` or the loss cannot take is refused before training, with an
    error naming `data` (or `loss_fn`) and saying what is expected: not integer
    data failing deep inside `diffusion_loss`, nor a JAX error about a function, a
    list of batches or a `range`. Integer arrays are passed as they are (labels
    are integers); only a loss that cannot take them fails, with a hint."""
    _, model = _setup()
    monkeypatch.setattr(scorax._fit._loop, "_record", _refuse_training)
    with without_runtime_type_checking(), pytest.raises(ValueError, match=match):
        _small_fit(model, loss, data)


def test_resuming_with_fewer_steps_than_the_checkpoint_raises(tmp_path):
    """A checkpoint at step 8 and `num_steps=4`: an error naming `num_steps` and
    the checkpoint's step, rather than the further-trained model with 4 losses."""
    data, model = _setup()
    checkpoint = tmp_path / "run.eqx"
    _small_fit(model, _loss, data, checkpoint=checkpoint)
    with pytest.raises(ValueError, match=r"`num_steps` \(4\) is smaller than the "):
        _small_fit(model, _loss, data, checkpoint=checkpoint, num_steps=4)
    assert _small_fit(model, _loss, data, checkpoint=checkpoint).losses.shape == (8,)


def _conditional_loss(model, sample, key):
    x, label = sample
    return scorax.diffusion_loss(model, PATH, x, label=label, key=key)


def test_failed_check_in_the_loss_raises_with_its_step_and_keeps_the_chunk_before(
    tmp_path,
):
    """A label outside a conditional model's classes at step 5 (chunks of 4):
    `fit` raises the model's check as an `EquinoxRuntimeError` naming step 5, and
    the checkpoint keeps step 4, the last chunk whose checks all passed."""
    data, _ = _setup()
    model = scorax.ScoreMLP((2,), width=32, depth=2, num_classes=3, key=jr.key(1))

    def stream():
        for step in itertools.count():
            labels = np.full(16, step % 3, np.int32)
            if step == 5:
                labels[9] = 3  # the model has classes 0, 1 and 2
            yield np.asarray(data[16 * step : 16 * step + 16]), labels

    checkpoint = tmp_path / "run.eqx"
    with pytest.raises(
        eqx.EquinoxRuntimeError, match=r"(?s)`y` must be a class.*at step 5 of `fit`"
    ):
        _small_fit(model, _conditional_loss, stream(), checkpoint=checkpoint)
    with pytest.raises(
        ValueError, match=r"smaller than the step of `checkpoint` \(4\)"
    ):
        _small_fit(
            model, _conditional_loss, stream(), checkpoint=checkpoint, num_steps=3
        )


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_log(monkeypatch, terminal):
    """On a terminal, the progress is tqdm's live bar (redrawn with carriage
    returns); in a log or captured output, one plain line per chunk (at most one
    every few seconds, and always the last), with no carriage return to pile up."""
    data, model = _setup()
    stream = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    _small_fit(model, _loss, data, progress=True)
    shown = stream.getvalue()
    if terminal:
        assert "\r" in shown and "8/8" in shown
    else:
        assert "\r" not in shown
        lines = shown.splitlines()
        assert lines[0].startswith("fit: step 4/8 (50%), loss ")
        assert lines[-1].startswith("fit: step 8/8 (100%), loss ")
        assert len(lines) == 2
