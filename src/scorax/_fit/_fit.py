r"""[`fit`][scorax.fit], read top to bottom: check the arguments, restore the
checkpoint if there is one, then run the chunks of steps."""

import os
import pathlib
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree, Shaped

from .._checks import check_count
from .._custom_types import IntScalarLike
from .._sharded import batch_mesh, put
from . import _checkpoint
from ._collectives import agree, gather_ints, processes
from ._feed import AbstractFeed, make_feed
from ._loop import train
from ._state import initial_state, TargetDecay, TrainState
from ._step import loss_keywords, LossFn, run_chunk


class FitResult(eqx.Module):
    """What [`fit`][scorax.fit] returns.

    - `model`: the trained model.
    - `ema_model`: the exponential moving average of its weights, or `None`
      without `ema_decay`.
    - `opt_state`: the final optimiser state.
    - `losses`: the batch loss at every step, shape `(num_steps,)`.
    - `target_model`: the target copy of the model ($\theta^-$), or `None`
      without `target_decay`.

    On several processes the arrays of `model`, `ema_model` and `opt_state` are
    global arrays replicated on every device of the run; `losses` is on the host of
    each process.
    """

    model: Any
    ema_model: Any
    opt_state: PyTree
    losses: Float[Array, " num_steps"]
    target_model: Any = None


def fit(
    model: Any,
    loss_fn: LossFn,
    data: Iterator | PyTree[Shaped[ArrayLike, " n ..."]],
    *,
    optimizer: optax.GradientTransformation,
    num_steps: IntScalarLike,
    batch_size: IntScalarLike,
    key: PRNGKeyArray,
    steps_per_chunk: IntScalarLike = 100,
    ema_decay: float | None = None,
    target_decay: TargetDecay | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    devices: Sequence[Any] | None = None,
    progress: bool = True,
) -> FitResult:
    r"""Train `model` by minimising the batch mean of a per-sample loss.

    Each step takes a batch of `batch_size` points (drawn uniformly with replacement
    from an in-memory data set, or the next batch of a stream), evaluates
    $\frac1B \sum_b \ell(\theta; x_b, k_b)$ with `jax.vmap`, and applies one `optimizer`
    update. Steps run fused under `jax.lax.scan`, `steps_per_chunk` at a time
    between host updates of the progress bar and checkpoints. Step $i$ uses the key
    `jax.random.fold_in(key, i)`, so the result does not depend on how the steps are
    chunked, and a run resumed from a checkpoint continues exactly as an
    uninterrupted one would. The compiled steps are cached: calling `fit` again
    with the same `loss_fn` and `optimizer` objects (and shapes) does not
    recompile.

    **Streamed data.** When `data` is an iterator (anything with `__next__`: a
    generator, `iter(loader)` of a Grain, tf.data or PyTorch data loader), step
    $i$ trains on its $i$-th batch, a NumPy or JAX PyTree whose arrays all hold
    `batch_size` rows along the first axis (on several processes, the rows of this
    process's devices). `fit` stacks `steps_per_chunk` batches on the host and
    scans over them on the devices; the next chunk is read while the devices run
    the current one. The iterator must yield at least `num_steps` batches (for
    epochs, repeat it); one that ends early raises an error once the chunks
    before are trained and saved (on several processes, every process does). To
    resume, pass a fresh iterator of the same stream, and `fit` moves it to where
    the checkpoint stopped, in one of two ways:

    - if the iterator has `get_state()` and `set_state(state)` (Grain's dataset
      iterators and `DataLoader` do), its state after the last batch trained on is
      saved in the checkpoint, atomically with the model, and restored with
      `set_state`. The state must be `bytes` or a value JSON holds (dicts with
      string keys, lists, strings, numbers, booleans, `None`); it comes back as
      JSON reads it.
    - otherwise the checkpoint records the number of batches consumed, and the
      fresh iterator is advanced past as many. The iterator must then start from
      the beginning and yield the same batches in the same order on every run.

    **Several processes.** Under `jax.distributed.initialize()`, every process
    calls `fit` with the same arguments, and by default the run spans every
    device of every process. An in-memory `data` must then be the whole data set
    on every process (the same array: each device picks its own rows of every
    batch from it, so the batches are those of one process with the same `key`);
    a streamed `data` is each process's own share of every batch, in process
    order: the global batch of step $i$ is process 0's rows, then process 1's, and
    so on. The result is that of one process with as many devices and the same
    global batches and key: bit for bit where the gradient reduction adds the
    devices' partial sums in the same order, which it does for two devices and
    need not for more (then to rounding). Only process 0 writes checkpoints and
    shows the progress; `checkpoint` must name a file that every process can
    read (on one machine, any path; across machines, a shared file system), and
    every process resumes from it. When `fit` returns, the last checkpoint is on
    disk for every process.

    **Checks.** The arguments are checked before any step is trained: the
    checkpoint's folder must take files, an iterator's `get_state()` must be
    one a checkpoint holds, and `loss_fn` is evaluated (abstractly, once per
    compilation) on one sample of the data, so that data it cannot take (integer
    data for a loss of real-valued data, say) is refused with an error naming
    `data`. A check that fails inside the steps (an `eqx.error_if` in the loss or
    the model, such as a label outside a conditional model's classes) does not
    stop the devices: it is raised as `equinox.EquinoxRuntimeError`, with its
    message and step, when its chunk ends, on every process and on any number of
    devices. That chunk is not kept; the checkpoint holds the one before.

    **Arguments:**

    - `model`: an Equinox module (or any PyTree); its inexact arrays are trained.
    - `loss_fn`: `loss_fn(model, x, key) -> scalar` for one sample, e.g.
      `lambda m, x, k: scorax.diffusion_loss(m, path, x, key=k)`; `x` has the
      structure of one sample of `data`. A loss that takes a keyword `step` is
      also given the index $k$ of the step (an int32 scalar, from 0), as the
      curricula of consistency training need:
      `lambda m, x, k, step: scorax.consistency_training_loss(m, None, path, x,
      key=k, step=step, recipe=recipe)`; with `target_decay` it is given
      `target=` as well.
    - `data`: the training set in memory, with samples along the first axis, all
      finite: an array, or any PyTree of arrays with a common first axis, such as
      labelled data `(x, y)`; a batch takes the same rows of every leaf, and the
      loss receives one sample of each, `loss_fn(model, (x, y), key)`. Or an
      iterator of batches of such PyTrees, as above (`iter(loader)`, not the
      loader; `batches()`, not the generator function). Arrays are passed with
      their dtypes: integer arrays such as labels are fine, and data that is all
      integer must be converted to floating point if the loss needs it.
    - `optimizer`: any Optax gradient transformation.
    - `num_steps`: the total number of steps, $\ge 1$.
    - `batch_size`: the global batch, $B \ge 1$ (at most the number of in-memory
      samples); a multiple of the number of devices.
    - `key`: a JAX PRNG key.
    - `steps_per_chunk`: steps fused per compiled call. Each chunk costs one host
      round trip; raise it when a step takes much less than that, as for small
      models on a GPU. The steps of a chunk run as a plain `lax.scan`; the `unet`
      benchmark times it against one compiled step per call and against a scan
      unrolled ten steps per iteration (`benchmarks/results/`). A convolutional
      model of your own should convolve with [`conv_nhwc`][scorax.conv_nhwc], as
      `UNet` does: inside any loop, XLA's CPU backend runs other convolutions,
      and their gradients, more slowly.
    - `ema_decay`: if given, in $[0, 1)$, also keep
      $\bar\theta \leftarrow \gamma \bar\theta + (1 - \gamma)\theta$ after each step.
    - `target_decay`: if given, keep a target copy of the model, $\theta^-
      \leftarrow \mu \theta^- + (1 - \mu)\theta$ after each step $k$, with $\mu$
      in $[0, 1)$ a number or a function $\mu(k)$ of the step (an int32 scalar;
      such as [`ConsistencyRecipe.decay`][scorax.ConsistencyRecipe.decay]), and
      pass it to the loss as `loss_fn(model, x, key, target=target_model)`: the
      target network of consistency training. It starts at the model's
      parameters and is saved in the checkpoint, so a resumed run continues
      exactly.
    - `checkpoint`: a file path. After every chunk the model, optimiser state, EMA,
      step, losses and the stream's position are written there with Equinox
      serialisation, atomically (a temporary file renamed over the old one); its
      folder must exist. If the file exists when `fit` starts, training resumes
      from it (up to `num_steps`, which must be at least the checkpoint's step); a
      checkpoint of another model or optimiser, or a corrupt file, raises an error
      and is left untouched.
    - `devices`: the devices to train on (default: all of `jax.devices()`, every
      device of every process). The batch is split across them along a
      `jax.sharding.Mesh`; each device computes the loss and gradient of its rows
      (`jax.shard_map`) and one all-reduce per step sums them: data-parallel
      training with the result of one device, up to floating-point
      reassociation. Devices of several processes must include those of all.
    - `progress`: show the progress with the running loss, on standard error: a
      live tqdm bar on a terminal or in a notebook; elsewhere (a log file, output
      captured by a CI system or `nohup`), one line per chunk, at most one every
      5 seconds, and the last.

    **Returns:**

    A [`FitResult`][scorax.FitResult].
    """
    # Counts as Python integers (`check_count` takes any integer scalar).
    num_steps = check_count(num_steps, "num_steps")
    batch_size = check_count(batch_size, "batch_size")
    steps_per_chunk = check_count(steps_per_chunk, "steps_per_chunk")
    mesh = _check_arguments(batch_size, ema_decay, devices)
    _check_target_decay(target_decay, loss_fn)
    path = None if checkpoint is None else pathlib.Path(checkpoint)
    if path is not None:
        _check_checkpoint(path, mesh)
    feed = make_feed(data, batch_size=batch_size, num_steps=num_steps, mesh=mesh)
    if path is not None:
        feed.check_position()
    params, static = eqx.partition(model, eqx.is_inexact_array)
    start = initial_state(
        params, optimizer=optimizer, ema_decay=ema_decay, target_decay=target_decay
    )
    state, history = _restore(start, feed, path, num_steps=num_steps, mesh=mesh)

    replicated = NamedSharding(mesh, PartitionSpec())
    chunk = partial(
        run_chunk,
        key=put(key, replicated, "key"),
        static=static,
        loss_fn=loss_fn,
        optimizer=optimizer,
        batch_size=batch_size,
        ema_decay=ema_decay,
        target_decay=target_decay,
        split_batch=NamedSharding(mesh, PartitionSpec("batch")),
    )
    state = train(
        put(state, replicated, "model"),
        feed,
        history,
        chunk,
        steps_per_chunk=steps_per_chunk,
        checkpoint=path,
        progress=progress,
        mesh=mesh,
    )
    ema_model = None if ema_decay is None else eqx.combine(state.ema, static)
    target_model = None
    if target_decay is not None:
        target_model = eqx.combine(state.target, static)
    return FitResult(
        model=eqx.combine(state.params, static),
        ema_model=ema_model,
        opt_state=state.opt_state,
        losses=jnp.asarray(history),
        target_model=target_model,
    )


def _check_target_decay(target_decay: TargetDecay | None, loss_fn: LossFn) -> None:
    """Raise `ValueError` unless `target_decay` is None, or a number (or a function
    whose value at step 0 is a number) in [0, 1) with a loss that takes `target`."""
    if target_decay is None:
        return
    if "target" not in loss_keywords(loss_fn):
        raise ValueError(
            "`target_decay`: `loss_fn` must take the keyword `target` (the target "
            "model fit keeps), as in `lambda m, x, k, target: ...`."
        )
    value = (
        target_decay(jnp.zeros((), jnp.int32))
        if callable(target_decay)
        else target_decay
    )
    value = np.asarray(value)
    if value.shape != () or not 0 <= float(value) < 1:
        raise ValueError(
            "`target_decay` must be a number in [0, 1), or a function of the step "
            f"with values there; got {value.tolist() if value.ndim else float(value)}"
            f"{' at step 0' if callable(target_decay) else ''}."
        )


def _check_arguments(
    batch_size: int, ema_decay: float | None, devices: Sequence[Any] | None
) -> Mesh:
    """The mesh of `devices`, once `ema_decay` and the devices (for `batch_size`)
    are found valid."""
    if ema_decay is not None and not 0 <= ema_decay < 1:
        raise ValueError(f"`ema_decay` must lie in [0, 1), got {ema_decay}.")
    mesh = batch_mesh(devices)
    num_devices = mesh.devices.size
    if batch_size % num_devices:
        raise ValueError(
            f"`batch_size` ({batch_size}) must be a multiple of the number of devices "
            f"({num_devices})."
        )
    spanned = processes(mesh)
    if len(spanned) > 1 and len(spanned) != jax.process_count():
        raise ValueError(
            f"`devices` span processes {spanned} of {jax.process_count()}; a run "
            "on several processes must include devices of all of them."
        )
    return mesh


def _check_checkpoint(path: pathlib.Path, mesh: Mesh) -> None:
    """Raise `ValueError` (on every process) unless the process that writes the
    checkpoints can write a file at `path`."""
    writer = jax.process_index() == processes(mesh)[0]
    error = _checkpoint.check_writable(path) if writer else None
    if len(processes(mesh)) > 1:
        error = agree(
            error,
            lambda process: (
                f"`checkpoint`: process {process} cannot write {path}; "
                "every process stops."
            ),
        )
    if error is not None:
        raise error


def _restore(
    state: TrainState,
    feed: AbstractFeed,
    path: pathlib.Path | None,
    *,
    num_steps: int,
    mesh: Mesh,
) -> tuple[TrainState, np.ndarray]:
    """The state and loss history to start from: `state` and zeros, or those of the
    checkpoint at `path` if it exists, with `feed` moved to where its run stopped.
    On several processes every process must find the same checkpoint, or none."""
    history = np.zeros(num_steps, np.float32)
    loaded, failure = None, None
    if path is not None and path.exists():
        try:
            loaded = _checkpoint.load(path, state)
        except ValueError as error:
            failure = error
    # The step found, -1 for no checkpoint, -2 for an unreadable one.
    found = -2 if failure else -1 if loaded is None else int(loaded[0].step)
    everyone = gather_ints(found) if len(processes(mesh)) > 1 else [found]
    if failure is not None:
        raise failure
    if len(set(everyone)) != 1:
        raise ValueError(
            f"`checkpoint`: the processes found different checkpoints at {path} "
            f"(step by process, -1 none, -2 unreadable: {everyone}); every "
            "process must read the same file, on a file system they share."
        )
    if loaded is None:
        return state, history
    state, saved, position = loaded
    if int(state.step) > num_steps:
        raise ValueError(
            f"`num_steps` ({num_steps}) is smaller than the step of `checkpoint` "
            f"({int(state.step)}): the run there has trained further. Pass "
            f"`num_steps` >= {int(state.step)} to resume it, or another path to "
            "start afresh."
        )
    history[: len(saved)] = saved
    feed.resume(position, int(state.step))
    return state, history
