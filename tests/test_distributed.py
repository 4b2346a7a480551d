"""Training and sampling past one device and one process: `fit` on two CPU
processes joined by `jax.distributed`, and `map_sharded` on four host devices;
and a check that fails on one of the devices, raised on every process.

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

import equinox as eqx
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


# Appended to both scripts below: checks that fail inside the compiled programs
# of `map_sharded` and `fit` (a NaN start of a sampler; labels outside a
# conditional model's classes, in an in-memory data set or on one device of the
# last process in a stream), raised as Python exceptions on every process. Each
# case first runs on good values of the same shapes (compiling the program, timed
# as `compiled`), then on the bad ones (`seconds`: the time to the exception);
# then `map_sharded` runs again on every device.
FAILURES = textwrap.dedent(
    """
    def failures(process, cases):
        # Imported here: the script calls `jax.distributed.initialize` first.
        import itertools, time
        import equinox as eqx, jax, jax.random as jr, numpy as np, optax, scorax

        path = scorax.VPPath()
        model = scorax.ScoreMLP((2,), width=16, depth=2, num_classes=3, key=jr.key(1))
        last = process == jax.process_count() - 1

        def sample(m, x, k):
            return scorax.reverse_sde_sample(m, path, x, key=k, num_steps=10).sample

        def loss(m, xy, k):
            x, y = xy
            return scorax.diffusion_loss(m, path, x, label=y, key=k)

        keys = jr.split(jr.key(0), 8)
        starts = np.array(jax.vmap(lambda k: path.prior_sample(key=k, shape=(2,)))(keys))
        bad_starts = starts.copy()
        bad_starts[7, 1] = np.nan  # the last row: on the last device
        data = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
        labels = (np.arange(64) % 3).astype(np.int32)
        share = 16 * jax.local_device_count() // jax.device_count()

        def stream(bad):
            # With `bad`, the last process's last row of step 5 has class 3 of 3.
            rng = np.random.default_rng(process)
            for step in itertools.count():
                rows = rng.integers(0, 64, share)
                y = labels[rows]
                if bad and step == 5 and last:
                    y = np.where(np.arange(share) == share - 1, 3, y).astype(np.int32)
                yield data[rows], y

        common = dict(
            optimizer=optax.adam(1e-3), num_steps=8, batch_size=16, key=jr.key(2),
            steps_per_chunk=4, progress=False,
        )

        def map_sharded(x):
            return scorax.map_sharded(sample, model, x, keys, in_axes=(None, 0, 0))

        runs = {
            "map_sharded": lambda bad: map_sharded(bad_starts if bad else starts),
            "fit": lambda bad: scorax.fit(
                model, loss, (data, np.where(bad & (labels == 2), 5, labels)), **common
            ),
            "fit-stream": lambda bad: scorax.fit(model, loss, stream(bad), **common),
        }
        report = {}
        for name in cases:
            start = time.perf_counter()
            runs[name](False)
            compiled = time.perf_counter() - start
            start = time.perf_counter()
            try:
                runs[name](True)
                message = None
            except eqx.EquinoxRuntimeError as error:
                message = str(error)
            seconds = time.perf_counter() - start
            report[name] = {"compiled": compiled, "seconds": seconds, "message": message}
        # Every device is still there for the next call.
        good = map_sharded(starts)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            good = multihost_utils.process_allgather(good, tiled=True)
        report["after"] = bool(np.all(np.isfinite(np.asarray(good))))
        return report
    """
)

CAUSES = {
    "map_sharded": "`x` must be finite",
    "fit": "`y` must be a class in [0, 3)",
    "fit-stream": "`y` must be a class in [0, 3)",
}


def _check_failures(report: dict) -> None:
    """Each failing call of `FAILURES` raised its check's message within 10 s, and
    `map_sharded` worked afterwards."""
    for name, outcome in report.items():
        if name == "after":
            continue
        message = outcome["message"]
        assert message is not None and CAUSES[name] in message, (name, message)
        assert outcome["seconds"] < 10, (name, outcome)
    if "fit-stream" in report:
        assert "at step 5 of `fit`" in report["fit-stream"]["message"]
    assert report["after"]


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
    # One process with two devices: the four-device test covers it.
    report = failures(process, ["map_sharded", "fit-stream"]) if mode == "multi" else None
    print(json.dumps({"saves": saves, "error": error, "failures": report}))
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
    with an error, rather than leaving one waiting for the other. A check that
    fails on process 1's device only (a NaN start in `map_sharded`, a label
    outside the classes in one process's stream) raises the same error on both
    processes within 10 s."""
    script = tmp_path / "train.py"
    script.write_text(FAILURES + TRAIN)
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
    for output in saves[:2]:
        _check_failures(output["failures"])
    for name in ("map_sharded", "fit-stream"):
        # The check failed on process 1's device only; both raised its message.
        messages = [saves[p]["failures"][name]["message"] for p in (0, 1)]
        assert messages[0] == messages[1], messages
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
    import json
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

    # 8 rows: two per device; 4 rows: one per device.
    cases = [(sample, (model, x1, keys), (None, 0, 0)), (likelihood, (model, x1[:4]), (None, 0))]
    for fn, args, axes in cases:
        four = scorax.map_sharded(fn, *args, in_axes=axes)
        one = eqx.filter_jit(lambda *a: jax.vmap(fn, in_axes=axes)(*a))(*args)
        for a, b in zip(jax.tree.leaves(four), jax.tree.leaves(one), strict=True):
            assert a.shape == b.shape, (a.shape, b.shape)
            # Split along the rows: each device holds its own share, not all.
            assert len(a.sharding.device_set) == 4, a.sharding
            assert a.addressable_shards[0].data.shape[0] == a.shape[0] // 4
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
            print(fn.__name__, "bit for bit", np.array_equal(np.asarray(a), np.asarray(b)))
    try:
        scorax.map_sharded(likelihood, model, x1[:6], in_axes=(None, 0))
        raise AssertionError("6 rows on 4 devices did not raise")
    except ValueError as error:
        assert "`args`: 6 rows cannot be split evenly over 4 devices" in str(error)
    print(json.dumps(failures(0, ["map_sharded", "fit", "fit-stream"])))
    """
)


def test_map_sharded_sampler_and_likelihood_match_one_device():
    """On four host devices, `map_sharded` runs `reverse_sde_sample` over 8 rows
    (two per device) and `log_likelihood` over 4: every output is split along its
    rows over the four devices and equals `jax.vmap` on one device, to float32
    rounding (the rows are computed by the same per-sample program; the script
    reports whether they are bit for bit). 6 rows, which four devices cannot
    share evenly, raise an error naming `args`. A check that fails on one device
    (a NaN start in `map_sharded`, a label outside the classes in `fit`, from an
    array or a stream) raises its message as an `EquinoxRuntimeError` within 10 s
    of the call (milliseconds: the program is compiled by a call on good values
    first), where the process used to hang and abort; and the devices work on."""
    script = [sys.executable, "-c", FAILURES + MAP]
    (output,) = _run_all([(script, _environment(4))])
    _check_failures(json.loads(output.strip().splitlines()[-1]))


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


@pytest.mark.parametrize(
    "devices, match",
    [
        ([jax.devices()[0]] * 2, "`devices` must list each device once"),
        ([0], "`devices` must be a sequence of `jax.Device`s"),
        ([], "`devices` must name at least one device"),
    ],
)
def test_map_sharded_bad_devices_raise(devices, match):
    x = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match=match):
        scorax.map_sharded(_affine, jnp.zeros((2, 3)), x, x[:, :2], devices=devices)


def _double_unless_negative(x):
    return eqx.error_if(2 * x, x < 0, "`x` must be >= 0.")


def test_map_sharded_raises_a_failed_check_and_passes_nan_through():
    """A check of `fn` that fails on one row raises its message, as `jax.vmap` on
    one device does; a NaN that `fn` does not check is passed through, not refused
    (`map_sharded` does not know what `fn` accepts)."""
    x = jnp.array([1.0, 2.0, -3.0, 4.0])
    with pytest.raises(eqx.EquinoxRuntimeError, match="`x` must be >= 0"):
        scorax.map_sharded(_double_unless_negative, x)
    doubled = scorax.map_sharded(_double_unless_negative, x.at[2].set(jnp.nan))
    np.testing.assert_array_equal(doubled, [2.0, 4.0, jnp.nan, 8.0])
