"""Training throughput of `scorax.fit` against hand-written loops.

One setting: 4,096 points from `scorax.datasets.gaussian_mixture()`, a
`ScoreMLP((2,), width=128, depth=3)` trained with `diffusion_loss` on a `VPPath`
(noise prediction, "noise" weighting), `optax.adam(1e-3)`, batch 256, for
`N = 1000` steps (200 with `--quick`). Every callable trains from the same initial
model and returns the `(N,)` batch losses.

- `lax.scan` loop: the reference a user could write by hand. One `jax.jit`-ed
  function, compiled once on the first call, scans all `N` steps with fit's exact
  per-step computation and keys (`fold_in(key, step)`, split, `randint` batch
  indices, per-sample keys, `vmap` loss, mean, `value_and_grad`, Adam update), so
  `max rel diff` against `fit` checks that the losses agree.
- `fit`, called as a user would, with the same loss function and optimiser
  objects on every call. Its `compile s` is the first call, and whatever `fit`
  compiles again on a later call is in its median: a `fit` that rebuilds its jitted
  chunk function per call, or that is handed a new optimiser or `lambda` (new
  static arguments) per call, recompiles every time.
- `fit` without the per-call fixed cost: with `T(n)` the median time of a `fit`
  call of `n` steps, `T(2N) - T(N)` is the time of `N` steps alone, and this row
  reports it as the candidate median, with the fixed cost per call
  `2 T(N) - T(2N)` (compilation and setup) in its `compile s` column. A
  difference of two medians on a busy machine is noisy: read it as an estimate.
  Its `max rel diff` compares the first `N` losses of the `2N`-step run.
- A PyTorch eager loop, only when `torch` is installed (it is not a dependency):
  the same network (2 inputs + 32 Fourier features of t -> 128 -> 128 -> 128 -> 2,
  SiLU, initial weights copied from the JAX model), the same VP noise-prediction
  loss with its own random numbers, `torch.optim.Adam(lr=1e-3)`, batch 256,
  `torch.set_num_threads(os.cpu_count())`. Its losses cannot match JAX's, so
  `max rel diff` means nothing on those rows. The last row reuses the timings
  above: PyTorch against `fit` without its fixed cost. On a few cores shared with
  other work, PyTorch's multi-threaded kernels stall at every small operation and
  the loop can run several times slower than with one thread: trust this row only
  from an otherwise idle machine.

- A `torch.compile` PyTorch loop: the eager loop's network, loss and Adam, with
  the loss (forward and backward) compiled by `torch.compile` once (its first
  call, in `compile s`); each call resets the weights, so later calls reuse it.
- `fit` fed by a Python iterator against `fit` on the in-memory array: the
  iterator gathers on the host, at step i, the rows the in-memory draw takes at
  step i (their indices computed once, outside the timing), so the losses are
  equal and the ratio is the cost of the host feed.
- `fit` on two processes joined by `jax.distributed` (one CPU device each,
  coordinator on 127.0.0.1, each a fresh Python process running `worker`),
  against one process with one device and one with two host devices, for
  `PROCESS_STEPS` steps: the two-device process computes the same losses bit for
  bit.

The goals: `fit` at least 1.5x the steps per second of either PyTorch loop on CPU
(ratio at most 0.667) and within 5% of the `lax.scan` loop (ratio at most 1.05);
the iterator feed within 10% of the in-memory path (ratio at most 1.10).
The harness has no memory column, so each case ends with the peak resident set
size of the process so far (`ru_maxrss`): a high-water mark of the whole run, so
PyTorch's row also counts JAX's memory, and what a row adds is the growth since
the row before. Fewer repeats than other benchmarks (fewer still for PyTorch's
row): a `fit` call that compiles takes seconds, and the eager loop is slow.
"""

import dataclasses
import importlib.util
import json
import os
import pathlib
import resource
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

import scorax

from ._harness import Budget, compare, Measurement, QUICK, time_callable, Timing


NUM_POINTS = 4096
BATCH = 256
STEPS = 1000
QUICK_STEPS = 200
LEARNING_RATE = 1e-3
BUDGET = Budget(warmup=1, repeats=5)
TORCH_BUDGET = Budget(warmup=0, repeats=3)
PROCESS_STEPS = 300  # the rows on several processes: fewer steps, fewer repeats
QUICK_PROCESS_STEPS = 50
PROCESS_REPEATS = 3
PROCESS_TIMEOUT_S = 900
PATH = scorax.VPPath()

Train = Callable[[scorax.ScoreMLP, Float[Array, "n 2"], PRNGKeyArray], Array]


def loss_fn(
    model: scorax.ScoreMLP, x: Float[Array, " 2"], key: PRNGKeyArray
) -> Float[Array, ""]:
    return scorax.diffusion_loss(model, PATH, x, key=key)


def fit_losses(
    num_steps: int, *, loss: Callable = loss_fn, batch: int = BATCH
) -> Train:
    """A user's call of `fit`, returning its losses."""
    optimizer = optax.adam(LEARNING_RATE)  # one object: a new one is a new program

    def train(model: eqx.Module, data: Array, key: PRNGKeyArray) -> Array:
        result = scorax.fit(
            model,
            loss,
            data,
            optimizer=optimizer,
            num_steps=num_steps,
            batch_size=batch,
            key=key,
            progress=False,
        )
        return result.losses

    return train


def fit_step(
    static: PyTree,
    optimizer: optax.GradientTransformation,
    data: Array,
    key: PRNGKeyArray,
    *,
    loss: Callable = loss_fn,
    batch: int = BATCH,
) -> Callable:
    """Fit's step `i` written out, `(params, opt_state, i) -> (params, opt_state,
    loss)`: its keys (`fold_in(key, i)`, split), `randint` batch indices,
    per-sample keys, `vmap` loss, mean, `value_and_grad` and optimiser update."""

    def batch_loss(params: PyTree, rows: Array, keys: PRNGKeyArray) -> Array:
        model = eqx.combine(params, static)
        return jnp.mean(jax.vmap(lambda x, k: loss(model, x, k))(rows, keys))

    def step(params: PyTree, opt_state: PyTree, i: Array) -> tuple:
        index_key, loss_key = jr.split(jr.fold_in(key, i))
        indices = jr.randint(index_key, (batch,), 0, data.shape[0])
        keys = jr.split(loss_key, batch)
        value, grads = jax.value_and_grad(batch_loss)(params, data[indices], keys)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return eqx.apply_updates(params, updates), opt_state, value

    return step


def scan_losses(model: scorax.ScoreMLP, num_steps: int) -> Train:
    """Fit's steps, written out as one jitted `lax.scan` over all steps."""
    _, static = eqx.partition(model, eqx.is_inexact_array)
    optimizer = optax.adam(LEARNING_RATE)

    @jax.jit
    def scan(params: PyTree, data: Float[Array, "n 2"], key: PRNGKeyArray) -> Array:
        step = fit_step(static, optimizer, data, key)

        def body(carry: tuple, i: Array) -> tuple[tuple, Array]:
            params, opt_state, loss = step(*carry, i)
            return (params, opt_state), loss

        carry = (params, optimizer.init(params))
        steps = jnp.arange(num_steps, dtype=jnp.int32)
        return jax.lax.scan(body, carry, steps)[1]

    def train(
        model: scorax.ScoreMLP, data: Float[Array, "n 2"], key: PRNGKeyArray
    ) -> Array:
        params, _ = eqx.partition(model, eqx.is_inexact_array)
        return scan(params, data, key)

    return train


def torch_losses(model: scorax.ScoreMLP, num_steps: int, *, compiled: bool) -> Train:
    """The same training in PyTorch, from the same initial weights: eager, or with
    the loss (forward and backward) compiled by `torch.compile`. The network and
    the compiled function are built once, and each call resets the weights, so
    that later calls reuse what `torch.compile` built on the first."""
    import torch  # pyright: ignore[reportMissingImports]

    torch.set_num_threads(os.cpu_count() or 1)
    frequencies = torch.from_numpy(np.array(model.time_features.frequencies))
    linears = [
        (np.array(layer.weight), np.array(layer.bias))
        for layer in model.mlp.layers
        if layer.bias is not None
    ]
    layers = []
    for weight, _ in linears:
        layers += [torch.nn.Linear(weight.shape[1], weight.shape[0]), torch.nn.SiLU()]
    net = torch.nn.Sequential(*layers[:-1])
    linear_layers = [layer for layer in net if isinstance(layer, torch.nn.Linear)]

    def loss_of(
        x0: "torch.Tensor", t: "torch.Tensor", eps: "torch.Tensor"
    ) -> "torch.Tensor":
        b = 0.1 * t + 9.95 * t**2  # the integral of beta, 0.1 to 20
        x_t = torch.exp(-0.5 * b) * x0 + torch.sqrt(-torch.expm1(-b)) * eps
        angles = 2 * torch.pi * frequencies * t
        features = torch.cat([x_t, torch.sin(angles), torch.cos(angles)], dim=1)
        return 0.5 * ((net(features) - eps) ** 2).sum(dim=1).mean()

    step_loss = torch.compile(loss_of) if compiled else loss_of

    def train(
        model: scorax.ScoreMLP, data: Float[Array, "n 2"], key: PRNGKeyArray
    ) -> Array:
        del model, key  # the network holds the copied weights
        with torch.no_grad():
            for layer, (weight, bias) in zip(linear_layers, linears, strict=True):
                layer.weight.copy_(torch.from_numpy(weight))
                layer.bias.copy_(torch.from_numpy(bias))
        return torch_adam(net, step_loss, data, num_steps, time_shape=(BATCH, 1))

    return train


def torch_adam(
    net: Any,
    step_loss: Callable,
    data: Array,
    num_steps: int,
    *,
    time_shape: tuple[int, ...],
    batch: int = BATCH,
) -> Array:
    """PyTorch's training loop for the diffusion loss: `num_steps` Adam steps on
    `step_loss(x0, t, eps)` with batches drawn with replacement, t uniform on
    [1e-3, 1) in `time_shape`, standard normal noise; the `(num_steps,)` losses."""
    import torch  # pyright: ignore[reportMissingImports]

    x = torch.from_numpy(np.array(data))
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(0)
    losses = torch.empty(num_steps)
    for i in range(num_steps):
        x0 = x[torch.randint(0, x.shape[0], (batch,), generator=generator)]
        t = 1e-3 + (1 - 1e-3) * torch.rand(time_shape, generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        loss = step_loss(x0, t, eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[i] = loss.detach()
    return jnp.asarray(losses.numpy())


def drawn_indices(key: PRNGKeyArray, num_steps: int) -> np.ndarray:
    """The rows `fit`'s in-memory draw takes at each step, shape `(steps, BATCH)`."""

    def indices(step: Array) -> Array:
        index_key, _ = jr.split(jr.fold_in(key, step))
        return jr.randint(index_key, (BATCH,), 0, NUM_POINTS)

    return np.asarray(jax.jit(jax.vmap(indices))(jnp.arange(num_steps)))


def stream_losses(key: PRNGKeyArray, num_steps: int) -> Train:
    """`fit` fed by a Python generator of NumPy batches: at step i it gathers, on
    the host, the rows the in-memory draw takes at step i (indices computed once,
    outside the timing), so the losses must equal the in-memory run's."""
    optimizer = optax.adam(LEARNING_RATE)
    rows = drawn_indices(key, num_steps)

    def train(
        model: scorax.ScoreMLP, data: Float[Array, "n 2"], key: PRNGKeyArray
    ) -> Array:
        host = np.asarray(data)
        result = scorax.fit(
            model,
            loss_fn,
            (host[indices] for indices in rows),
            optimizer=optimizer,
            num_steps=num_steps,
            batch_size=BATCH,
            key=key,
            progress=False,
        )
        return result.losses

    return train


def worker(argv: list[str]) -> None:
    """One process of a `processes` row: `python -m benchmarks.fit MODE PROCESS
    PORT STEPS REPEATS OUT`. MODE `single` is a process of its own, `multi` one of
    two joined by `jax.distributed` (coordinator on 127.0.0.1:PORT). Times `fit`
    of STEPS steps as the other rows do; process 0 writes the timing and losses
    to OUT as JSON."""
    mode, process, port, num_steps, repeats, out = argv
    if mode == "multi":
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{port}",
            num_processes=2,
            process_id=int(process),
            initialization_timeout=120,
        )
    model, data, key = setup()
    budget = Budget(warmup=1, repeats=int(repeats))
    timing, losses = time_callable(
        fit_losses(int(num_steps)), (model, data, key), budget
    )
    if jax.process_index() == 0:
        record = {**dataclasses.asdict(timing), "losses": np.asarray(losses).tolist()}
        pathlib.Path(out).write_text(json.dumps(record))


def run_processes(
    num_processes: int, devices_per_process: int, num_steps: int, repeats: int
) -> tuple[Timing, Array]:
    """Run `worker` on `num_processes` CPU processes with `devices_per_process`
    host devices each; return process 0's timing and losses. Every process is
    killed if one fails or they run past `PROCESS_TIMEOUT_S`."""
    root = pathlib.Path(__file__).parent.parent
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
    )
    src = str(pathlib.Path(scorax.__file__).parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([str(root), src, env.get("PYTHONPATH", "")])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    mode = "multi" if num_processes > 1 else "single"
    with tempfile.TemporaryDirectory() as folder:
        out = pathlib.Path(folder) / "timing.json"
        command = [sys.executable, "-m", "benchmarks.fit", mode]
        processes = [
            subprocess.Popen(
                [*command, str(i), port, str(num_steps), str(repeats), str(out)],
                cwd=root,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for i in range(num_processes)
        ]
        try:
            for process in processes:
                output, _ = process.communicate(timeout=PROCESS_TIMEOUT_S)
                if process.returncode:
                    raise RuntimeError(f"a benchmark process failed:\n{output[-3000:]}")
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.communicate()
        record = json.loads(out.read_text())
    timing = Timing(compile_s=record["compile_s"], median_s=record["median_s"])
    return timing, jnp.asarray(record["losses"])


def processes_rows(num_steps: int, repeats: int) -> list[Measurement]:
    """Two processes with one CPU device each against one process with one device
    and one process with two host devices (the same global mesh size, so the
    same losses bit for bit)."""
    two_timing, two_losses = run_processes(2, 1, num_steps, repeats)
    rows = []
    for devices in (1, 2):
        timing, losses = run_processes(1, devices, num_steps, repeats)
        s = "" if devices == 1 else "s"
        rows.append(
            Measurement(
                case=f"n={NUM_POINTS} batch={BATCH} steps={num_steps}, processes",
                reference=f"fit, 1 process, {devices} device{s}",
                candidate="fit, 2 processes (jax.distributed), 1 device each",
                reference_timing=timing,
                candidate_timing=two_timing,
                max_rel_diff=rel_diff(two_losses, losses),
            )
        )
    return rows


def setup() -> tuple[scorax.ScoreMLP, Float[Array, "n 2"], PRNGKeyArray]:
    data_key, model_key, key = jr.split(jr.key(0), 3)
    data = scorax.datasets.gaussian_mixture().sample(
        key=data_key, sample_shape=(NUM_POINTS,)
    )
    model = scorax.ScoreMLP((2,), width=128, depth=3, key=model_key)
    return model, data, key


def peak_rss_mib() -> float:
    """The peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # B or KiB


def rel_diff(candidate: Array, reference: Array) -> float:
    """As in `compare`: max |candidate - reference| / max |reference|."""
    return float(jnp.max(jnp.abs(candidate - reference)) / jnp.max(jnp.abs(reference)))


def annotate(m: Measurement, num_steps: int) -> Measurement:
    """Steps per second (reference / candidate) and peak memory in the case."""
    ref = num_steps / m.reference_timing.median_s
    cand = num_steps / m.candidate_timing.median_s
    case = (
        f"{m.case}: {ref:.0f} / {cand:.0f} steps/s, peak RSS {peak_rss_mib():.0f} MiB"
    )
    return dataclasses.replace(m, case=case)


def run(*, quick: bool) -> list[Measurement]:
    budget = QUICK if quick else BUDGET
    num_steps = QUICK_STEPS if quick else STEPS
    model, data, key = setup()
    args = (model, data, key)
    case = f"n={NUM_POINTS} batch={BATCH} steps={num_steps}"
    scan_name = "lax.scan loop, jitted once"

    scan = scan_losses(model, num_steps)
    as_called = compare(
        case,
        reference=(scan_name, scan),
        candidate=("fit", fit_losses(num_steps)),
        args=args,
        budget=budget,
    )
    measurements = [annotate(as_called, num_steps)]

    double_timing, double_out = time_callable(fit_losses(2 * num_steps), args, budget)
    once = as_called.candidate_timing.median_s
    steady = Measurement(
        case=f"{case} (fit: T(2N) - T(N); compile s: 2T(N) - T(2N))",
        reference=scan_name,
        candidate="fit, per-call fixed cost excluded",
        reference_timing=as_called.reference_timing,
        candidate_timing=Timing(
            compile_s=2 * once - double_timing.median_s,
            median_s=double_timing.median_s - once,
        ),
        max_rel_diff=rel_diff(double_out[:num_steps], scan(*args)),
    )
    measurements.append(annotate(steady, num_steps))

    streamed = compare(
        case,
        reference=("fit, in-memory data", fit_losses(num_steps)),
        candidate=("fit, fed by a Python iterator", stream_losses(key, num_steps)),
        args=args,
        budget=budget,
    )
    measurements.append(annotate(streamed, num_steps))

    if importlib.util.find_spec("torch") is not None:
        for compiled in (False, True):
            torch_name = (
                "PyTorch torch.compile loop" if compiled else "PyTorch eager loop"
            )
            against_torch = compare(
                case,
                reference=(
                    torch_name,
                    torch_losses(model, num_steps, compiled=compiled),
                ),
                candidate=("fit", fit_losses(num_steps)),
                args=args,
                budget=TORCH_BUDGET,
            )
            measurements.append(annotate(against_torch, num_steps))
            steady_vs_torch = dataclasses.replace(
                steady,
                reference=torch_name,
                reference_timing=against_torch.reference_timing,
                max_rel_diff=against_torch.max_rel_diff,
            )
            measurements.append(annotate(steady_vs_torch, num_steps))

    process_steps = QUICK_PROCESS_STEPS if quick else PROCESS_STEPS
    process_repeats = QUICK.repeats if quick else PROCESS_REPEATS
    for row in processes_rows(process_steps, process_repeats):
        measurements.append(annotate(row, process_steps))
    return measurements


if __name__ == "__main__":
    worker(sys.argv[1:])
