"""Image models: training and sampling a `scorax.UNet` against what they cost alone.

Three kinds of row, all with `UNet(shape, channels=(32, 64))` in float32:

- **Convolutions in a loop.** Ten 3x3 convolutions (32 channels, 28x28, batch 32)
  with their kernel gradient, run three times under `lax.scan`: channel-first as
  Equinox's `Conv2d` computes under `vmap` (NCHW) against the channel-last
  primitive the UNet uses (`scorax._model._conv.conv_nhwc`). XLA's CPU backend
  rewrites convolutions into its fast layout only outside loops, so this row is
  where the difference shows.
- **Training.** `fit` with `diffusion_loss` on a `VPPath` (noise prediction,
  Adam 1e-3, batch 32) on 28x28 and 8x8 images, against (1) a hand-written JAX
  loop that dispatches one jitted step per step, with fit's exact keys (the losses
  agree to rounding: `max rel diff`), and (2) the same UNet written in PyTorch
  (`_torch_unet.py`, built from the same weights and checked to compute the
  same outputs), trained on the same loss, eager and with the loss compiled by
  `torch.compile` (its own random numbers: `max rel diff` means nothing there).
  On 8x8 images also against the same steps in one `lax.scan` unrolled 10 steps
  per iteration, the third way of running the loop (fit runs a plain scan).
  The targets: `fit` at least as fast as PyTorch eager (ratio at most 1) and
  within 10% of the per-step loop (ratio at most 1.10).
- **Sampling.** Every sampler of `get_sampler`'s table, 32 images, about 20
  model evaluations each, against the same number of evaluations of the jitted,
  vmapped model dispatched one by one (`max rel diff` means nothing). The target:
  at most 1.10, a sampler costing no more than its model evaluations.

Each case names the steps or images per second of reference / candidate.
"""

import dataclasses
import importlib.util
import os
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jax import lax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

import scorax
from scorax import conv_nhwc

from ._harness import Budget, compare, Measurement, QUICK
from .fit import fit_losses, fit_step, torch_adam


CHANNELS = (32, 64)
BATCH = 32
LEARNING_RATE = 1e-3
PATH = scorax.VPPath()
# (image side, fit steps per call); fewer with --quick.
TRAIN_SIZES = ((28, 20), (8, 100))
QUICK_TRAIN_SIZES = ((8, 10),)
BUDGET = Budget(warmup=1, repeats=3)
UNROLL = 10  # steps per iteration of the unrolled scan row
UNROLLED_MAX_SIDE = 8
# The samplers and their step counts: about 20 model evaluations each.
SAMPLERS = {
    "sde": 20,
    "ode": 20,
    "pc": 10,
    "edm": 10,
    "ddim": 20,
    "ddpm": 25,  # a DDPM schedule needs more steps than beta_max = 20
    "dpm1": 20,
    "dpm2": 10,
    "dpm3": 7,
    "dpm2m": 20,
    "dpm3m": 20,
    "dpm3m-unic": 20,
    "dpm3m-time": 20,
    "dpm2m-sde": 20,
}
QUICK_SAMPLERS = {"ode": 5, "dpm2m": 5, "ddpm": 25}


def loss_fn(model: scorax.UNet, x: Float[Array, "h w"], key: PRNGKeyArray) -> Array:
    return scorax.diffusion_loss(model, PATH, x, key=key)


def setup(side: int) -> tuple[scorax.UNet, Float[Array, "n h w"], PRNGKeyArray]:
    model_key, data_key, key = jr.split(jr.key(0), 3)
    model = scorax.UNet((side, side), channels=CHANNELS, key=model_key)
    return model, jr.normal(data_key, (256, side, side)), key


# --- Convolutions in a loop --------------------------------------------------------


def conv_rows(quick: bool) -> list[Measurement]:
    side, channels, layers = (14, 16, 4) if quick else (28, 32, 10)
    x = jr.normal(jr.key(0), (BATCH, side, side, channels))
    kernel = 0.05 * jr.normal(jr.key(1), (3, 3, channels, channels))

    def first(h: Array, w: Array) -> Array:  # NCHW activations, OIHW kernel
        dn = ("NCHW", "OIHW", "NCHW")
        return lax.conv_general_dilated(h, w, (1, 1), "SAME", dimension_numbers=dn)

    def last(h: Array, w: Array) -> Array:  # NHWC activations, HWIO kernel
        return conv_nhwc(h, w, padding=((1, 1), (1, 1)))

    def looped(conv: Callable, h: Array, w: Array) -> Array:
        def loss(w: Array) -> Array:
            out = h
            for _ in range(layers):
                out = jnp.tanh(conv(out, w))
            return jnp.sum(out**2)

        def body(w: Array, _: None) -> tuple[Array, None]:
            return w - 1e-4 * jax.grad(loss)(w), None

        return lax.scan(body, w, None, length=3)[0]

    # Both take the same NHWC input and HWIO kernel and return the HWIO kernel
    # after the steps; the channel-first one transposes outside its loop.
    channel_first = jax.jit(
        lambda h, w: looped(
            first, h.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1)
        ).transpose(2, 3, 1, 0)
    )
    channel_last = jax.jit(lambda h, w: looped(last, h, w))
    row = compare(
        f"{layers} 3x3 convolutions and their kernel gradient, {channels} channels, "
        f"{side}x{side}, batch {BATCH}, 3 steps of lax.scan",
        reference=("channel-first (NCHW, as eqx.nn.Conv2d)", channel_first),
        candidate=("channel-last conv_nhwc (scorax.UNet)", channel_last),
        args=(x, kernel),
        budget=BUDGET,
    )
    return [row]


# --- Training ----------------------------------------------------------------------


def per_step_losses(model: scorax.UNet, data, key, num_steps: int) -> Callable:
    static = eqx.partition(model, eqx.is_inexact_array)[1]
    optimizer = optax.adam(LEARNING_RATE)
    step = jax.jit(fit_step(static, optimizer, data, key, loss=loss_fn, batch=BATCH))

    def train(model: scorax.UNet, data: Array, key: PRNGKeyArray) -> Array:
        params, _ = eqx.partition(model, eqx.is_inexact_array)
        opt_state = optimizer.init(params)
        losses = []
        for i in range(num_steps):
            params, opt_state, loss = step(params, opt_state, jnp.int32(i))
            losses.append(loss)
        return jnp.stack(losses)

    return train


def scan_losses(
    model: scorax.UNet, data, key, num_steps: int, *, unroll: int
) -> Callable:
    """The same steps in one jitted `lax.scan`, `unroll` steps per loop iteration
    (XLA compiles the unrolled steps as straight-line code)."""
    static = eqx.partition(model, eqx.is_inexact_array)[1]
    optimizer = optax.adam(LEARNING_RATE)
    step = fit_step(static, optimizer, data, key, loss=loss_fn, batch=BATCH)

    @jax.jit
    def scan(params: PyTree) -> Array:
        def body(carry: tuple, i: Array) -> tuple[tuple, Array]:
            params, opt_state, loss = step(*carry, i)
            return (params, opt_state), loss

        carry = (params, optimizer.init(params))
        steps = jnp.arange(num_steps, dtype=jnp.int32)
        return lax.scan(body, carry, steps, unroll=unroll)[1]

    def train(model: scorax.UNet, data: Array, key: PRNGKeyArray) -> Array:
        return scan(eqx.partition(model, eqx.is_inexact_array)[0])

    return train


def torch_losses(model: scorax.UNet, num_steps: int, *, compiled: bool) -> Callable:
    """The PyTorch twin trained on the same loss from the same weights (reset on
    each call, so `torch.compile`'s work on the first call is reused)."""
    import torch  # pyright: ignore[reportMissingImports]

    from . import _torch_unet

    torch.set_num_threads(os.cpu_count() or 1)
    twin = _torch_unet.build(model)
    initial = {k: v.clone() for k, v in twin.state_dict().items()}

    def loss_of(x0: "torch.Tensor", t: "torch.Tensor", eps: "torch.Tensor"):
        b = (0.1 * t + 9.95 * t**2)[:, None, None]  # the integral of beta
        x_t = torch.exp(-0.5 * b) * x0 + torch.sqrt(-torch.expm1(-b)) * eps
        return 0.5 * ((twin(x_t, t) - eps) ** 2).sum(dim=(1, 2)).mean()

    # Static shapes, compiled afresh per image size (after a first size, dynamo
    # would otherwise try symbolic sizes, which its UNet graph does not support).
    torch._dynamo.reset()
    step_loss = torch.compile(loss_of, dynamic=False) if compiled else loss_of

    def train(model: scorax.UNet, data: Array, key: PRNGKeyArray) -> Array:
        del model, key
        twin.load_state_dict(initial)
        return torch_adam(
            twin, step_loss, data, num_steps, time_shape=(BATCH,), batch=BATCH
        )

    return train


def check_twin(model: scorax.UNet) -> float:
    """The PyTorch twin's output against the UNet's, relative to its scale."""
    import torch  # pyright: ignore[reportMissingImports]

    from . import _torch_unet

    x = jr.normal(jr.key(3), (4, *model.shape))
    t = jnp.array([0.05, 0.3, 0.6, 0.95])
    want = np.asarray(jax.vmap(model)(x, t))
    twin = _torch_unet.build(model)
    got = twin(torch.from_numpy(np.array(x)), torch.from_numpy(np.array(t)))
    return float(np.max(np.abs(got.detach().numpy() - want)) / np.max(np.abs(want)))


def per_second(m: Measurement, count: int, what: str) -> Measurement:
    ref = count / m.reference_timing.median_s
    cand = count / m.candidate_timing.median_s
    return dataclasses.replace(m, case=f"{m.case}: {ref:.3g} / {cand:.3g} {what}/s")


def train_rows(quick: bool) -> list[Measurement]:
    rows = []
    budget = QUICK if quick else BUDGET
    for side, num_steps in QUICK_TRAIN_SIZES if quick else TRAIN_SIZES:
        model, data, key = setup(side)
        args = (model, data, key)
        case = f"UNet {side}x{side} channels={CHANNELS} batch={BATCH} steps={num_steps}"
        fit = ("fit", fit_losses(num_steps, loss=loss_fn, batch=BATCH))
        references = [
            (
                case,
                "JAX loop, one jitted step per step",
                per_step_losses(model, data, key, num_steps),
            )
        ]
        if side <= UNROLLED_MAX_SIDE:  # compiling unrolled 28x28 steps takes minutes
            references.append(
                (
                    case,
                    f"lax.scan unrolled {UNROLL} steps",
                    scan_losses(model, data, key, num_steps, unroll=UNROLL),
                )
            )
        if importlib.util.find_spec("torch") is not None:
            twin_error = check_twin(model)
            if twin_error > 1e-4:
                raise RuntimeError(f"the PyTorch twin differs by {twin_error:.1e}")
            for compiled in (False, True):
                references.append(
                    (
                        f"{case} (twin's outputs within {twin_error:.0e})",
                        "PyTorch torch.compile" if compiled else "PyTorch eager",
                        torch_losses(model, num_steps, compiled=compiled),
                    )
                )
        for row_case, name, train in references:
            row = compare(
                row_case,
                reference=(name, train),
                candidate=fit,
                args=args,
                budget=budget,
            )
            rows.append(per_second(row, num_steps, "steps"))
    return rows


# --- Sampling ----------------------------------------------------------------------


def sampler_rows(quick: bool) -> list[Measurement]:
    model, _, _ = setup(8 if quick else 28)
    budget = QUICK if quick else BUDGET
    starts = PATH.prior_sample(key=jr.key(5), shape=(BATCH, *model.shape))
    keys = jr.split(jr.key(6), BATCH)
    evaluate = jax.jit(jax.vmap(model))
    times = jnp.full((BATCH,), 0.5)
    rows = []
    for name, num_steps in (QUICK_SAMPLERS if quick else SAMPLERS).items():
        sampler = scorax.get_sampler(name, PATH, num_steps=num_steps)
        sample = jax.jit(jax.vmap(lambda x, k, s=sampler: s(model, x, k)))
        result = sample(starts, keys)
        count = int(result.num_evaluations[0])

        def alone(x: Array, key: Array, count: int = count) -> Array:
            del key
            for _ in range(count):
                x = evaluate(x, times)
            return x

        row = compare(
            f"{name}, {num_steps} steps, {count} model evaluations, {BATCH} "
            f"images {model.shape[0]}x{model.shape[1]}",
            reference=(f"{count} model evaluations dispatched alone", alone),
            candidate=(
                f"get_sampler({name!r})",
                lambda x, k, sample=sample: sample(x, k).sample,
            ),
            args=(starts, keys),
            budget=budget,
        )
        rows.append(per_second(row, BATCH, "images"))
    return rows


def run(*, quick: bool) -> list[Measurement]:
    return [*conv_rows(quick), *train_rows(quick), *sampler_rows(quick)]
