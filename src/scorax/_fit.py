r"""The training loop: steps fused under `lax.scan`, checkpoints, data parallelism."""

import os
import pathlib
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree, Shaped
from tqdm.auto import tqdm

from ._custom_types import FloatScalar
from ._misc import check_count


LossFn = Callable[[Any, PyTree, PRNGKeyArray], FloatScalar]


class FitResult(eqx.Module):
    """What [`fit`][scorax.fit] returns.

    - `model`: the trained model.
    - `ema_model`: the exponential moving average of its weights, or `None`
      without `ema_decay`.
    - `opt_state`: the final optimiser state.
    - `losses`: the batch loss at every step, shape `(num_steps,)`.
    """

    model: Any
    ema_model: Any
    opt_state: PyTree
    losses: Float[Array, " num_steps"]


def _save_atomically(path: pathlib.Path, tree: PyTree, losses: np.ndarray) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it over
    `path`: an interrupted write leaves the previous checkpoint untouched. The loss
    history follows the state in the same file, at its own length."""
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            eqx.tree_serialise_leaves(file, tree)
            np.save(file, losses, allow_pickle=False)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def _load(path: pathlib.Path, like: PyTree) -> tuple[PyTree, np.ndarray]:
    try:
        with open(path, "rb") as file:
            tree = eqx.tree_deserialise_leaves(file, like)
            losses = np.load(file, allow_pickle=False)
        if losses.shape != (int(tree["step"]),):
            raise ValueError(f"{losses.shape[0]} losses for step {int(tree['step'])}")
        return tree, losses
    except Exception as error:
        raise ValueError(
            f"`checkpoint`: {path} cannot be read as a checkpoint of this model and "
            f"optimiser ({type(error).__name__}: {error}). It is "
            "left as it is; pass another path to start afresh."
        ) from error


@eqx.filter_jit
def _run_chunk(
    length: int,
    state: dict[str, Any],
    data: PyTree,
    key: PRNGKeyArray,
    static: Any,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    ema_decay: float | None,
    split_batch: NamedSharding,
) -> tuple[dict[str, Any], Float[Array, " length"]]:
    """`length` training steps under `lax.scan`. A module-level function with the
    model skeleton, loss and optimiser as (static) arguments, so repeated calls of
    `fit` with the same objects reuse the compiled program."""

    def batch_loss(params, batch, keys):
        model = eqx.combine(params, static)
        return jnp.mean(jax.vmap(lambda x, k: loss_fn(model, x, k))(batch, keys))

    def one_step(state, step):
        index_key, loss_key = jr.split(jr.fold_in(key, step))
        num_samples = jax.tree.leaves(data)[0].shape[0]
        indices = jr.randint(index_key, (batch_size,), 0, num_samples)
        batch = jax.tree.map(
            lambda leaf: jax.lax.with_sharding_constraint(leaf[indices], split_batch),
            data,
        )
        keys = jr.split(loss_key, batch_size)
        loss, grads = jax.value_and_grad(batch_loss)(state["params"], batch, keys)
        updates, opt_state = optimizer.update(
            grads, state["opt_state"], state["params"]
        )
        params = eqx.apply_updates(state["params"], updates)
        ema = state["ema"]
        if ema_decay is not None:
            decay = ema_decay
            ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
        return {
            "params": params,
            "opt_state": opt_state,
            "ema": ema,
            "step": step + 1,
        }, loss

    steps = state["step"] + jnp.arange(length, dtype=jnp.int32)
    return jax.lax.scan(one_step, state, steps)


def _check_data(data: PyTree) -> tuple[PyTree, int]:
    """The data as a PyTree of JAX arrays with a common leading axis, all finite
    where floating, and that axis's length."""
    data = jax.tree.map(jnp.asarray, data)
    leaves = jax.tree.leaves(data)
    if not leaves or any(leaf.ndim == 0 for leaf in leaves):
        raise ValueError(
            "`data` must be an array, or a PyTree of arrays, with samples along the "
            "first axis."
        )
    lengths = {leaf.shape[0] for leaf in leaves}
    if len(lengths) != 1:
        shapes = [leaf.shape for leaf in leaves]
        raise ValueError(
            "`data`: every array must have the same number of samples along its "
            f"first axis, got shapes {shapes}."
        )
    for leaf in leaves:
        inexact = jnp.issubdtype(leaf.dtype, jnp.inexact)
        if inexact and not bool(jnp.all(jnp.isfinite(leaf))):
            raise ValueError("`data` must be finite; it contains NaN or inf.")
    return data, lengths.pop()


def fit(
    model: Any,
    loss_fn: LossFn,
    data: PyTree[Shaped[ArrayLike, " n ..."]],
    *,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    batch_size: int,
    key: PRNGKeyArray,
    steps_per_chunk: int = 100,
    ema_decay: float | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    devices: Sequence[Any] | None = None,
    progress: bool = True,
) -> FitResult:
    r"""Train `model` by minimising the batch mean of a per-sample loss.

    Each step draws `batch_size` points uniformly with replacement, evaluates
    $\frac1B \sum_b \ell(\theta; x_b, k_b)$ with `jax.vmap`, and applies one `optimizer`
    update. Steps run fused under `jax.lax.scan`, `steps_per_chunk` at a time
    between host updates of the progress bar and checkpoints. Step $i$ uses the key
    `jax.random.fold_in(key, i)`, so the result does not depend on how the steps are
    chunked, and a run resumed from a checkpoint continues exactly as an
    uninterrupted one would. The compiled steps are cached: calling `fit` again
    with the same `loss_fn` and `optimizer` objects (and shapes) does not
    recompile.

    **Arguments:**

    - `model`: an Equinox module (or any PyTree); its inexact arrays are trained.
    - `loss_fn`: `loss_fn(model, x, key) -> scalar` for one sample, e.g.
      `lambda m, x, k: scorax.diffusion_loss(m, path, x, key=k)`; `x` has the
      structure of `data`, one sample of each leaf.
    - `data`: the training set, with samples along the first axis; all finite.
      An array, or any PyTree of arrays with a common first axis, such as
      labelled data `(x, y)`: a batch takes the same rows of every leaf, and the
      loss receives one sample of each, `loss_fn(model, (x, y), key)`.
    - `optimizer`: any Optax gradient transformation.
    - `num_steps`: the total number of steps, $\ge 1$.
    - `batch_size`: $1 \le B \le n$; a multiple of the number of devices.
    - `key`: a JAX PRNG key.
    - `steps_per_chunk`: steps fused per compiled call. Each chunk costs one host
      round trip (a few milliseconds); raise it when a step takes well under a
      millisecond, as for small models on a GPU.
    - `ema_decay`: if given, in $[0, 1)$, also keep
      $\bar\theta \leftarrow \gamma \bar\theta + (1 - \gamma)\theta$ after each step.
    - `checkpoint`: a file path. After every chunk the model, optimiser state, EMA,
      step and losses are written there with Equinox serialisation, atomically
      (a temporary file renamed over the old one). If the file exists when `fit`
      starts, training resumes from it; a checkpoint of another model or
      optimiser, or a corrupt file, raises an error and is left untouched.
    - `devices`: the devices to train on (default: all of `jax.devices()`). The
      batch is split across them along a `jax.sharding.Mesh` and the gradients are
      reduced by XLA: data-parallel training with the result of one device, up to
      floating-point reassociation.
    - `progress`: show a tqdm progress bar with the running loss.

    **Returns:**

    A [`FitResult`][scorax.FitResult].
    """
    check_count(num_steps, "num_steps")
    check_count(batch_size, "batch_size")
    check_count(steps_per_chunk, "steps_per_chunk")
    data, num_samples = _check_data(data)
    if batch_size > num_samples:
        raise ValueError(
            f"`batch_size` must be at most the number of samples ({num_samples}), "
            f"got {batch_size}."
        )
    if ema_decay is not None and not 0 <= ema_decay < 1:
        raise ValueError(f"`ema_decay` must lie in [0, 1), got {ema_decay}.")
    devices = list(jax.devices() if devices is None else devices)
    if batch_size % len(devices):
        raise ValueError(
            f"`batch_size` ({batch_size}) must be a multiple of the number of devices "
            f"({len(devices)})."
        )

    mesh = Mesh(np.asarray(devices), ("batch",))
    replicated = NamedSharding(mesh, PartitionSpec())
    split_batch = NamedSharding(mesh, PartitionSpec("batch"))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = {
        "params": params,
        "opt_state": optimizer.init(params),
        "ema": params if ema_decay is not None else None,
        "step": jnp.zeros((), jnp.int32),
    }
    history = np.zeros(num_steps, np.float32)
    path = None if checkpoint is None else pathlib.Path(checkpoint)
    if path is not None and path.exists():
        state, saved = _load(path, state)
        history[: len(saved)] = saved[:num_steps]
    state = jax.device_put(state, replicated)
    data = jax.device_put(data, replicated)

    start = min(int(state["step"]), num_steps)
    with tqdm(total=num_steps, initial=start, disable=not progress, desc="fit") as bar:

        def record(first: int, losses: Array) -> None:
            """Copy one chunk's losses to the host (waiting for that chunk only)."""
            history[first : first + losses.shape[0]] = np.asarray(losses, np.float32)
            bar.set_postfix(
                loss=f"{float(np.mean(history[first : first + losses.shape[0]])):.4g}"
            )
            bar.update(losses.shape[0])

        pending: tuple[int, Array] | None = None
        while start < num_steps:
            length = min(steps_per_chunk, num_steps - start)
            # Dispatched asynchronously: the device runs this chunk while the host
            # reads the previous chunk's losses, so the two never wait on each other.
            state, losses = _run_chunk(
                length,
                state,
                data,
                key,
                static,
                loss_fn,
                optimizer,
                batch_size,
                ema_decay,
                split_batch,
            )
            if pending is not None:
                record(*pending)
            pending = (start, losses)
            start += length
            if path is not None:
                record(*pending)
                pending = None
                _save_atomically(path, state, history[:start])
        if pending is not None:
            record(*pending)

    ema_model = None if ema_decay is None else eqx.combine(state["ema"], static)
    return FitResult(
        model=eqx.combine(state["params"], static),
        ema_model=ema_model,
        opt_state=state["opt_state"],
        losses=jnp.asarray(history),
    )
