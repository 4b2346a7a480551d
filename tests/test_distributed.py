"""Training and sampling past one device and one process: `fit` on two CPU
processes joined by `jax.distributed`, and `map_sharded` on four host devices.

Each test runs its JAX programs in fresh Python processes (the device count and
the distributed runtime are fixed when JAX starts), with `src` on the path, a
time limit, and every process killed if one fails.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scorax


SRC = str(pathlib.Path(scorax.__file__).parent.parent)
TIMEOUT_S = 240  # far above the ~30 s these take on two busy cores: a hang fails


def _environment(num_devices: int) -> dict[str, str]:
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}",
    )
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_all(commands: list[tuple[list[str], dict[str, str]]]) -> list[str]:
    """Start every command at once, wait for all within `TIMEOUT_S`, and return
    their outputs; if one fails or time runs out, kill them all and fail."""
    processes = [
        subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for command, env in commands
    ]
    outputs = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=TIMEOUT_S)
            outputs.append(output)
            assert process.returncode == 0, output[-4000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return outputs


# Run as `python script.py MODE PROCESS PORT FOLDER`: MODE "single" is one process
# with two host devices, "multi" one of two processes with one device each. Both
# train the same model on the same global batches and save what they got.
TRAIN = textwrap.dedent(
    """
    import itertools, json, pathlib, sys
    mode, process, port, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3], pathlib.Path(sys.argv[4])
    import jax
    if mode == "multi":
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{port}", num_processes=2,
            process_id=process, initialization_timeout=60,
        )
    import equinox as eqx, jax.random as jr, numpy as np, optax, scorax
    import scorax._fit._checkpoint

    assert jax.device_count() == 2 and jax.process_count() == (2 if mode == "multi" else 1)
    saves = []
    save = scorax._fit._checkpoint.save
    def counting_save(path, *args):
        saves.append(path.name)
        save(path, *args)
    scorax._fit._checkpoint.save = counting_save

    path = scorax.VPPath()
    data = np.random.default_rng(0).normal(size=(512, 2)).astype(np.float32)
    model = scorax.ScoreMLP((2,), width=16, depth=2, key=jr.key(1))

    def loss(m, x, k):
        return scorax.diffusion_loss(m, path, x, key=k)

    def labelled(m, sample, k):
        x, label = sample
        return (1 + label) * loss(m, x, k)

    class Rows:
        # Batch i of the global stream is 16 rows drawn by NumPy from seed (7, i);
        # a process yields its share, with Grain's get_state/set_state.
        def __init__(self):
            self.next = 0
        def __iter__(self):
            return self
        def __next__(self):
            rows = np.random.default_rng([7, self.next]).integers(0, 512, 16)
            self.next += 1
            if mode == "multi":
                rows = rows[8 * process : 8 * (process + 1)]
            return data[rows], (rows % 2).astype(np.int32)
        def get_state(self):
            return {"next": self.next, "process": process}
        def set_state(self, state):
            assert state["process"] == process, state
            self.next = state["next"]

    common = dict(
        optimizer=optax.adam(1e-3), batch_size=16, key=jr.key(2), steps_per_chunk=4,
        ema_decay=0.9, progress=False,
    )
    runs = {}
    runs["memory"] = scorax.fit(model, loss, data, num_steps=20, **common)
    scorax.fit(model, loss, data, num_steps=12, checkpoint=folder / "memory.eqx", **common)
    runs["memory-resumed"] = scorax.fit(
        model, loss, data, num_steps=20, checkpoint=folder / "memory.eqx", **common
    )
    runs["stream"] = scorax.fit(model, labelled, Rows(), num_steps=20, **common)
    scorax.fit(model, labelled, Rows(), num_steps=12, checkpoint=folder / "stream.eqx", **common)
    runs["stream-resumed"] = scorax.fit(
        model, labelled, Rows(), num_steps=20, checkpoint=folder / "stream.eqx", **common
    )

    # A stream that runs short on process 1 only: both stop, with an error.
    error = None
    short = itertools.islice(Rows(), 6 if process == 1 else 8)
    try:
        scorax.fit(model, labelled, short, num_steps=8, **common)
    except ValueError as failure:
        error = str(failure)

    def denoise(m, x):
        return m(x, 0.5)

    x = np.random.default_rng(1).normal(size=(6, 2)).astype(np.float32)
    sampled = scorax.map_sharded(denoise, runs["memory"].model, x, in_axes=(None, 0))
    if mode == "multi":
        from jax.experimental import multihost_utils
        sampled = multihost_utils.process_allgather(sampled, tiled=True)

    arrays = {"samples": np.asarray(sampled)}
    for name, result in runs.items():
        for i, leaf in enumerate(jax.tree.leaves(eqx.filter(result, eqx.is_array))):
            arrays[f"{name}/{i}"] = np.asarray(leaf)
    np.savez(folder / f"{mode}-{process}.npz", **arrays)
    print(json.dumps({"saves": saves, "error": error}))
    """
)


def test_two_processes_train_as_one_process_with_two_devices(tmp_path):
    """`fit` on two CPU processes (one device each, joined by `jax.distributed` with
    the coordinator on 127.0.0.1 at a free port) against one process with two host
    devices, on the same global batches and key, in-memory and streamed (each
    process streaming its half of every batch): the models, optimiser states, EMAs
    and losses are equal bit for bit, and so are both processes' copies. Only
    process 0 writes checkpoints (once per chunk: 3 + 2 per resumed run), and a
    run stopped at step 12 and resumed by both processes from that file (the
    stream through its per-process `set_state`) equals the uninterrupted run.
    `map_sharded` over the two processes (the trained model at 6 points) equals
    the single process's. A stream that runs short on one process stops both
    with an error, rather than leaving one waiting for the other."""
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir()
    multi.mkdir()
    port = str(_free_port())
    python = [sys.executable, str(script)]
    outputs = _run_all(
        [
            ([*python, "multi", "0", port, str(multi)], _environment(1)),
            ([*python, "multi", "1", port, str(multi)], _environment(1)),
            ([*python, "single", "0", port, str(single)], _environment(2)),
        ]
    )
    saves = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
    per_chunk = ["memory.eqx"] * 5 + ["stream.eqx"] * 5
    assert saves[0]["saves"] == per_chunk
    assert saves[1]["saves"] == []  # process 1 never writes
    assert saves[1]["error"].startswith("`data`: the iterator ended after 6 batches")
    assert saves[0]["error"].startswith("`data`: reading the batches of process 1")
    assert saves[2]["error"] is None  # one process, whose stream is long enough
    assert sorted(p.name for p in multi.iterdir()) == [
        "memory.eqx",
        "multi-0.npz",
        "multi-1.npz",
        "stream.eqx",
    ]  # no temporary file left behind
    reference = np.load(single / "single-0.npz")
    for process in (0, 1):
        got = np.load(multi / f"multi-{process}.npz")
        assert sorted(got.files) == sorted(reference.files)
        for name in reference.files:
            assert np.array_equal(got[name], reference[name]), (process, name)
    for kind in ("memory", "stream"):
        names = [n for n in reference.files if n.startswith(f"{kind}/")]
        for name in names:
            resumed = name.replace(f"{kind}/", f"{kind}-resumed/")
            assert np.array_equal(reference[name], reference[resumed]), name


# One process with four host devices: `map_sharded` against `jax.vmap` on one device.
MAP = textwrap.dedent(
    """
    import diffrax, equinox as eqx, jax, jax.random as jr, numpy as np, scorax
    assert jax.device_count() == 4
    path = scorax.VPPath()
    model = scorax.ScoreMLP((2,), width=16, depth=2, key=jr.key(1))
    keys = jr.split(jr.key(0), 8)
    x1 = jax.vmap(lambda k: path.prior_sample(key=k, shape=(2,)))(keys)

    def sample(m, x, k):
        return scorax.reverse_sde_sample(m, path, x, key=k, num_steps=20)

    def likelihood(m, x):
        return scorax.log_likelihood(
            m, path, x, solver=diffrax.Heun(),
            stepsize_controller=diffrax.ConstantStepSize(), num_steps=10,
        )

    # 8 rows: two per device; 6 rows: padded to 8 and cut back.
    cases = [(sample, (model, x1, keys), (None, 0, 0)), (likelihood, (model, x1[:6]), (None, 0))]
    for fn, args, axes in cases:
        four = scorax.map_sharded(fn, *args, in_axes=axes)
        one = eqx.filter_jit(lambda *a: jax.vmap(fn, in_axes=axes)(*a))(*args)
        devices = {d for leaf in jax.tree.leaves(four) for d in leaf.devices()}
        assert len(devices) == 4, devices
        for a, b in zip(jax.tree.leaves(four), jax.tree.leaves(one), strict=True):
            assert a.shape == b.shape, (a.shape, b.shape)
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
            print(fn.__name__, "bit for bit", np.array_equal(np.asarray(a), np.asarray(b)))
    print("map_sharded ok")
    """
)


def test_map_sharded_sampler_and_likelihood_match_one_device():
    """On four host devices, `map_sharded` runs `reverse_sde_sample` over 8 rows
    (two per device) and `log_likelihood` over 6 (padded to 8): every output lies
    on all four devices and equals `jax.vmap` on one device, to float32 rounding
    (the rows are computed by the same per-sample program; the script reports
    whether they are bit for bit)."""
    script = [sys.executable, "-c", MAP]
    (output,) = _run_all([(script, _environment(4))])
    assert "map_sharded ok" in output


def _affine(weight, x, shift):
    return weight @ x + shift


def test_map_sharded_is_vmap_with_a_batch_split_over_devices():
    """On this process's device: `map_sharded` equals `jax.vmap` with the same
    `in_axes`, for one batched argument or several, with PyTree outputs."""
    weight = jnp.arange(6.0).reshape(2, 3)
    x = jnp.linspace(-1.0, 1.0, 15).reshape(5, 3)
    shift = jnp.arange(5.0)[:, None] * jnp.ones((5, 2))
    got = scorax.map_sharded(_affine, weight, x, shift, in_axes=(None, 0, 0))
    np.testing.assert_array_equal(
        got, jax.vmap(_affine, in_axes=(None, 0, 0))(weight, x, shift)
    )
    pair = scorax.map_sharded(lambda a: (a.sum(), {"twice": 2 * a}), x)
    assert pair[0].shape == (5,) and pair[1]["twice"].shape == (5, 3)
    np.testing.assert_array_equal(pair[1]["twice"], 2 * x)


@pytest.mark.parametrize(
    "args, in_axes, match",
    [
        (
            (jnp.zeros((2, 3)), jnp.zeros((4, 3)), jnp.zeros((5, 2))),
            (None, 0, 0),
            "same number of rows",
        ),
        (
            (jnp.zeros((2, 3)), jnp.zeros((4, 3)), jnp.zeros((4, 2))),
            (None, 1, 0),
            "`in_axes` must be 0 or None",
        ),
        (
            (jnp.zeros((2, 3)), jnp.zeros((4, 3)), jnp.zeros((4, 2))),
            (0, 0),
            "one 0 or None per argument",
        ),
        (
            (jnp.zeros((2, 3)), jnp.zeros((4, 3)), jnp.zeros((4, 2))),
            None,
            "at least one argument must be batched",
        ),
        (
            (jnp.zeros((2, 3)), jnp.zeros((0, 3)), jnp.zeros((0, 2))),
            (None, 0, 0),
            "no rows",
        ),
    ],
)
def test_map_sharded_bad_arguments_raise(args, in_axes, match):
    with pytest.raises(ValueError, match=match):
        scorax.map_sharded(_affine, *args, in_axes=in_axes)
