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

The goals: `fit` at least 1.5x the steps per second of the PyTorch loop on CPU
(ratio at most 0.667) and within 5% of the `lax.scan` loop (ratio at most 1.05).
The harness has no memory column, so each case ends with the peak resident set
size of the process so far (`ru_maxrss`): a high-water mark of the whole run, so
PyTorch's row also counts JAX's memory, and what a row adds is the growth since
the row before. Fewer repeats than other benchmarks (fewer still for PyTorch's
row): a `fit` call that compiles takes seconds, and the eager loop is slow.
"""

import dataclasses
import importlib.util
import os
import resource
import sys
from collections.abc import Callable

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
PATH = scorax.VPPath()

Train = Callable[[scorax.ScoreMLP, Float[Array, "n 2"], PRNGKeyArray], Array]


def loss_fn(
    model: scorax.ScoreMLP, x: Float[Array, " 2"], key: PRNGKeyArray
) -> Float[Array, ""]:
    return scorax.diffusion_loss(model, PATH, x, key=key)


def fit_losses(num_steps: int) -> Train:
    """A user's call of `fit`, returning its losses."""
    optimizer = optax.adam(LEARNING_RATE)  # one object: a new one is a new program

    def train(
        model: scorax.ScoreMLP, data: Float[Array, "n 2"], key: PRNGKeyArray
    ) -> Array:
        result = scorax.fit(
            model,
            loss_fn,
            data,
            optimizer=optimizer,
            num_steps=num_steps,
            batch_size=BATCH,
            key=key,
            progress=False,
        )
        return result.losses

    return train


def scan_losses(model: scorax.ScoreMLP, num_steps: int) -> Train:
    """Fit's steps, written out as one jitted `lax.scan` over all steps."""
    _, static = eqx.partition(model, eqx.is_inexact_array)
    optimizer = optax.adam(LEARNING_RATE)

    def batch_loss(
        params: PyTree, batch: Float[Array, "b 2"], keys: PRNGKeyArray
    ) -> Float[Array, ""]:
        model = eqx.combine(params, static)
        return jnp.mean(jax.vmap(lambda x, k: loss_fn(model, x, k))(batch, keys))

    @jax.jit
    def scan(params: PyTree, data: Float[Array, "n 2"], key: PRNGKeyArray) -> Array:
        def step(carry: tuple, i: Array) -> tuple[tuple, Array]:
            params, opt_state = carry
            index_key, loss_key = jr.split(jr.fold_in(key, i))
            indices = jr.randint(index_key, (BATCH,), 0, data.shape[0])
            keys = jr.split(loss_key, BATCH)
            loss, grads = jax.value_and_grad(batch_loss)(params, data[indices], keys)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (eqx.apply_updates(params, updates), opt_state), loss

        carry = (params, optimizer.init(params))
        steps = jnp.arange(num_steps, dtype=jnp.int32)
        return jax.lax.scan(step, carry, steps)[1]

    def train(
        model: scorax.ScoreMLP, data: Float[Array, "n 2"], key: PRNGKeyArray
    ) -> Array:
        params, _ = eqx.partition(model, eqx.is_inexact_array)
        return scan(params, data, key)

    return train


def torch_losses(model: scorax.ScoreMLP, num_steps: int) -> Train:
    """The same training in eager PyTorch, from the same initial weights."""
    import torch  # pyright: ignore[reportMissingImports]

    torch.set_num_threads(os.cpu_count() or 1)
    frequencies = torch.from_numpy(np.array(model.time_features.frequencies))
    linears = [
        (np.array(layer.weight), np.array(layer.bias))
        for layer in model.mlp.layers
        if layer.bias is not None
    ]

    def network() -> "torch.nn.Sequential":
        layers = []
        for weight, bias in linears:
            linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(weight))
                linear.bias.copy_(torch.from_numpy(bias))
            layers += [linear, torch.nn.SiLU()]
        return torch.nn.Sequential(*layers[:-1])

    def train(
        model: scorax.ScoreMLP, data: Float[Array, "n 2"], key: PRNGKeyArray
    ) -> Array:
        del model, key  # the network is rebuilt from the copied weights
        x = torch.from_numpy(np.array(data))
        net = network()
        optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        generator = torch.Generator().manual_seed(0)
        losses = torch.empty(num_steps)
        for i in range(num_steps):
            x0 = x[torch.randint(0, x.shape[0], (BATCH,), generator=generator)]
            t = 1e-3 + (1 - 1e-3) * torch.rand(BATCH, 1, generator=generator)
            eps = torch.randn(BATCH, 2, generator=generator)
            b = 0.1 * t + 9.95 * t**2  # the integral of beta, 0.1 to 20
            x_t = torch.exp(-0.5 * b) * x0 + torch.sqrt(-torch.expm1(-b)) * eps
            angles = 2 * torch.pi * frequencies * t
            features = torch.cat([x_t, torch.sin(angles), torch.cos(angles)], dim=1)
            loss = 0.5 * ((net(features) - eps) ** 2).sum(dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[i] = loss.detach()
        return jnp.asarray(losses.numpy())

    return train


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
    data_key, model_key, key = jr.split(jr.key(0), 3)
    data = scorax.datasets.gaussian_mixture().sample(
        key=data_key, sample_shape=(NUM_POINTS,)
    )
    model = scorax.ScoreMLP((2,), width=128, depth=3, key=model_key)
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

    if importlib.util.find_spec("torch") is not None:
        torch_name = "PyTorch eager loop"
        against_torch = compare(
            case,
            reference=(torch_name, torch_losses(model, num_steps)),
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
    return measurements
