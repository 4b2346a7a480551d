r"""The training loop: steps fused under `lax.scan`, checkpoints, data parallelism
over the devices of one process or several, and data held in memory or streamed."""

import base64
import collections.abc
import json
import os
import pathlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree, Shaped
from tqdm.auto import tqdm

from ._custom_types import FloatScalar
from ._misc import check_count
from ._sharded import batch_mesh, put


LossFn = Callable[[Any, PyTree, PRNGKeyArray], FloatScalar]


class FitResult(eqx.Module):
    """What [`fit`][scorax.fit] returns.

    - `model`: the trained model.
    - `ema_model`: the exponential moving average of its weights, or `None`
      without `ema_decay`.
    - `opt_state`: the final optimiser state.
    - `losses`: the batch loss at every step, shape `(num_steps,)`.

    On several processes the arrays of `model`, `ema_model` and `opt_state` are
    global arrays replicated on every device of the run; `losses` is on the host of
    each process.
    """

    model: Any
    ema_model: Any
    opt_state: PyTree
    losses: Float[Array, " num_steps"]


# --- Checkpoints -------------------------------------------------------------------
#
# One file: the training state (Equinox serialisation), the loss history
# (`np.save`), then where the data stands (`np.save` of a JSON document as bytes):
# `{"data": "array"}` for an in-memory data set, `{"data": "iterator", "batches": n}`
# for an iterator without state, plus `"states": [one per process]` for one with
# `get_state`/`set_state`. A file without the last part is an in-memory run's.


def _save_atomically(
    path: pathlib.Path, tree: PyTree, losses: np.ndarray, position: dict[str, Any]
) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it over
    `path`: an interrupted write leaves the previous checkpoint untouched. The loss
    history and the data position follow the state in the same file."""
    record = np.frombuffer(json.dumps(position).encode(), np.uint8)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            eqx.tree_serialise_leaves(file, tree)
            np.save(file, losses, allow_pickle=False)
            np.save(file, record, allow_pickle=False)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def _load(path: pathlib.Path, like: PyTree) -> tuple[PyTree, np.ndarray, dict]:
    try:
        with open(path, "rb") as file:
            tree = eqx.tree_deserialise_leaves(file, like)
            losses = np.load(file, allow_pickle=False)
            here = file.tell()
            position = {"data": "array"}
            if file.read(1):
                file.seek(here)
                position = json.loads(np.load(file, allow_pickle=False).tobytes())
        if losses.shape != (int(tree["step"]),):
            raise ValueError(f"{losses.shape[0]} losses for step {int(tree['step'])}")
        return tree, losses, position
    except Exception as error:
        raise ValueError(
            f"`checkpoint`: {path} cannot be read as a checkpoint of this model and "
            f"optimiser ({type(error).__name__}: {error}). It is "
            "left as it is; pass another path to start afresh."
        ) from error


def _encode_state(state: Any) -> dict[str, Any]:
    """An iterator's `get_state()` as JSON: bytes in base64, anything else as is."""
    if isinstance(state, bytes):
        return {"bytes": base64.b64encode(state).decode("ascii")}
    try:
        json.dumps(state)
    except (TypeError, ValueError) as error:
        raise ValueError(
            "`data.get_state()` must return bytes or a value that JSON holds (dicts "
            "with string keys, lists, strings, numbers, booleans, None), got "
            f"{type(state).__name__}: {error}"
        ) from error
    return {"json": state}


def _decode_state(entry: dict[str, Any]) -> Any:
    if "bytes" in entry:
        return base64.b64decode(entry["bytes"])
    return entry["json"]


def _allgather_bytes(blob: bytes) -> list[bytes]:
    """Every process's `blob`, in process order (a collective: all must call it)."""
    length = np.array([len(blob)], np.int64)
    lengths = np.asarray(multihost_utils.process_allgather(length)).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[: len(blob)] = np.frombuffer(blob, np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return [row[:n].tobytes() for row, n in zip(gathered, lengths, strict=True)]


# --- Streamed data -----------------------------------------------------------------


class _Exhausted(Exception):
    pass


class _Feed:
    """Host batches from a user's iterator, a chunk at a time: stacked along a new
    leading (step) axis and laid out as one global array per leaf, each process's
    rows on its own devices (`jax.make_array_from_process_local_data`)."""

    def __init__(self, iterator: Iterator[PyTree], batch_size: int, mesh: Mesh) -> None:
        self.iterator = iterator
        self.batch_size = batch_size
        local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
        self.local_size = batch_size * local // mesh.devices.size
        self.sharding = NamedSharding(mesh, PartitionSpec(None, "batch"))
        self.consumed = 0
        self.layout: tuple[Any, list[tuple[tuple[int, ...], np.dtype]]] | None = None
        self.stateful = callable(getattr(iterator, "get_state", None)) and callable(
            getattr(iterator, "set_state", None)
        )

    def next_leaves(self) -> list[np.ndarray]:
        try:
            batch = next(self.iterator)
        except StopIteration:
            raise _Exhausted from None
        self.consumed += 1
        leaves, treedef = jax.tree.flatten(batch)
        leaves = [np.asarray(leaf) for leaf in leaves]
        layout = (treedef, [(leaf.shape, leaf.dtype) for leaf in leaves])
        if self.layout is None:
            if not leaves or any(
                leaf.ndim == 0 or leaf.shape[0] != self.local_size for leaf in leaves
            ):
                raise ValueError(
                    "`data`: every batch the iterator yields must be an array, or a "
                    f"PyTree of arrays, with {self.local_size} samples along the "
                    f"first axis (`batch_size` {self.batch_size}, less the rows of "
                    "the other processes' devices), got shapes "
                    f"{[leaf.shape for leaf in leaves]}."
                )
            self.layout = layout
        elif layout != self.layout:
            raise ValueError(
                f"`data`: batch {self.consumed} has structure and shapes {layout}; "
                f"the first had {self.layout}. Every batch must be alike."
            )
        return leaves

    def skip(self, count: int) -> None:
        for _ in range(count):
            self.next_leaves()

    def take(self, length: int) -> PyTree:
        """The next `length` batches, as global arrays shaped `(length, batch, ...)`."""
        columns = list(zip(*(self.next_leaves() for _ in range(length)), strict=True))
        assert self.layout is not None
        arrays = []
        for column in columns:
            stacked = np.stack(column)
            stacked = stacked.astype(
                jax.dtypes.canonicalize_dtype(stacked.dtype), copy=False
            )
            if np.issubdtype(stacked.dtype, np.inexact) and not np.all(
                np.isfinite(stacked)
            ):
                raise ValueError(
                    "`data` must be finite; a batch from the iterator (one of "
                    f"batches {self.consumed - length + 1} to {self.consumed}) "
                    "contains NaN or inf."
                )
            shape = (length, self.batch_size, *stacked.shape[2:])
            arrays.append(
                jax.make_array_from_process_local_data(self.sharding, stacked, shape)
            )
        return jax.tree.unflatten(self.layout[0], arrays)

    def position(self, multiprocess: bool) -> dict[str, Any]:
        """Where the stream stands, for the checkpoint (a collective on several
        processes when the iterator has state)."""
        position: dict[str, Any] = {"data": "iterator", "batches": self.consumed}
        if self.stateful:
            entry = _encode_state(self.iterator.get_state())  # pyright: ignore
            if multiprocess:
                blobs = _allgather_bytes(json.dumps(entry).encode())
                position["states"] = [json.loads(blob) for blob in blobs]
            else:
                position["states"] = [entry]
        return position

    def resume(self, position: dict[str, Any], step: int) -> None:
        """Move a fresh iterator to where the checkpoint's run stopped."""
        if position.get("data") != "iterator":
            raise ValueError(
                "`checkpoint` was written by a run on an in-memory data set, and "
                "`data` is an iterator; resume with the kind of data it was written "
                "with, or pass another path to start afresh."
            )
        if self.stateful:
            states = position.get("states")
            if states is None:
                raise ValueError(
                    "`checkpoint` holds no iterator state (it was written with an "
                    "iterator without `get_state`), and `data` has `set_state`; "
                    "resume with an iterator like the one it was written with."
                )
            if len(states) != jax.process_count():
                raise ValueError(
                    f"`checkpoint` holds the iterator states of {len(states)} "
                    f"processes; this run has {jax.process_count()}."
                )
            self.iterator.set_state(  # pyright: ignore
                _decode_state(states[jax.process_index()])
            )
            self.consumed = step
        else:
            try:
                self.skip(step)
            except _Exhausted:
                raise ValueError(
                    f"`data`: the iterator ended after {self.consumed} batches, "
                    f"while skipping the {step} that the checkpoint's run consumed; "
                    "pass an iterator that starts from the beginning."
                ) from None


# --- The compiled steps ------------------------------------------------------------


@eqx.filter_jit
def _run_chunk(
    length: int,
    state: dict[str, Any],
    data: PyTree | None,
    batches: PyTree | None,
    key: PRNGKeyArray,
    static: Any,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    ema_decay: float | None,
    split_batch: NamedSharding,
) -> tuple[dict[str, Any], Float[Array, " length"]]:
    """`length` training steps under `lax.scan`, on batches drawn from the in-memory
    `data` or on the streamed `batches` (one per step, along their first axis). A
    module-level function with the model skeleton, loss and optimiser as (static)
    arguments, so repeated calls of `fit` with the same objects reuse the compiled
    program."""

    def local_loss_and_grads(params, source, indices, keys):
        """One device's share of the batch-mean loss and its gradient, summed over
        the devices by one all-reduce per step, whatever checks the loss makes. The
        device's rows are `source[indices]` (in memory) or `source` (streamed)."""
        if indices is not None:
            source = jax.tree.map(lambda leaf: leaf[indices], source)

        def share(params):
            model = eqx.combine(params, static)
            losses = jax.vmap(lambda x, k: loss_fn(model, x, k))(source, keys)
            return jnp.sum(losses) / batch_size

        # One buffer, so one all-reduce: across processes each is a round trip.
        flat, unflatten = jax.flatten_util.ravel_pytree(
            jax.value_and_grad(share)(params)
        )
        return unflatten(jax.lax.psum(flat, "batch"))

    split, whole = PartitionSpec("batch"), PartitionSpec()
    loss_and_grads = jax.shard_map(
        local_loss_and_grads,
        mesh=split_batch.mesh,
        # In memory, every device holds the data set and draws its own rows.
        in_specs=(whole, split if data is None else whole, split, split),
        out_specs=whole,
        check_vma=False,  # the gradients are local until the explicit `psum`
    )

    def one_step(state, inputs):
        step, batch = inputs
        # The index key is split off in both modes, so a stream of the rows drawn
        # here trains exactly as the in-memory data set.
        index_key, loss_key = jr.split(jr.fold_in(key, step))
        indices = None
        if batch is None:
            batch = data
            num_samples = jax.tree.leaves(data)[0].shape[0]
            indices = jr.randint(index_key, (batch_size,), 0, num_samples)
        keys = jr.split(loss_key, batch_size)
        loss, grads = loss_and_grads(state["params"], batch, indices, keys)
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
    state, losses = jax.lax.scan(one_step, state, (steps, batches))
    replicated = NamedSharding(split_batch.mesh, PartitionSpec())
    # Replicated, so that every process can read every loss.
    return state, jax.lax.with_sharding_constraint(losses, replicated)


def _check_data(data: PyTree) -> tuple[PyTree, int]:
    """The data as a PyTree of JAX arrays with a common leading axis, all finite
    where floating, and that axis's length."""
    data = jax.tree.map(jnp.asarray, data)
    leaves = jax.tree.leaves(data)
    if not leaves or any(leaf.ndim == 0 for leaf in leaves):
        raise ValueError(
            "`data` must be an array, or a PyTree of arrays, with samples along the "
            "first axis, or an iterator of such batches."
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


def _agree(value: int) -> list[int]:
    """Every process's `value`, in process order."""
    gathered = multihost_utils.process_allgather(np.array([value], np.int64))
    return [int(v) for v in np.asarray(gathered).reshape(-1)]


def fit(
    model: Any,
    loss_fn: LossFn,
    data: Iterator | PyTree[Shaped[ArrayLike, " n ..."]],
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
    before are trained and saved (on several processes, every process does). To resume, pass a fresh iterator of the same stream, and
    `fit` moves it to where the checkpoint stopped, in one of two ways:

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
    shows the progress bar; `checkpoint` must name a file that every process can
    read (on one machine, any path; across machines, a shared file system), and
    every process resumes from it. When `fit` returns, the last checkpoint is on
    disk for every process.

    **Arguments:**

    - `model`: an Equinox module (or any PyTree); its inexact arrays are trained.
    - `loss_fn`: `loss_fn(model, x, key) -> scalar` for one sample, e.g.
      `lambda m, x, k: scorax.diffusion_loss(m, path, x, key=k)`; `x` has the
      structure of one sample of `data`.
    - `data`: the training set in memory, with samples along the first axis, all
      finite: an array, or any PyTree of arrays with a common first axis, such as
      labelled data `(x, y)`; a batch takes the same rows of every leaf, and the
      loss receives one sample of each, `loss_fn(model, (x, y), key)`. Or an
      iterator of batches of such PyTrees, as above.
    - `optimizer`: any Optax gradient transformation.
    - `num_steps`: the total number of steps, $\ge 1$.
    - `batch_size`: the global batch, $B \ge 1$ (at most the number of in-memory
      samples); a multiple of the number of devices.
    - `key`: a JAX PRNG key.
    - `steps_per_chunk`: steps fused per compiled call. Each chunk costs one host
      round trip (a few milliseconds); raise it when a step takes well under a
      millisecond, as for small models on a GPU. The steps of a chunk run as a
      plain `lax.scan`: on a CPU it is at least as fast as dispatching one
      compiled step at a time and, within measurement noise, as a scan unrolled
      ten steps per iteration, which compiles ten steps (the `unet` benchmark
      measures all three). A convolutional model of your own should convolve
      with [`conv_nhwc`][scorax.conv_nhwc], as `UNet` does: inside any loop,
      XLA's CPU backend runs other convolutions, and their gradients, several
      times slower.
    - `ema_decay`: if given, in $[0, 1)$, also keep
      $\bar\theta \leftarrow \gamma \bar\theta + (1 - \gamma)\theta$ after each step.
    - `checkpoint`: a file path. After every chunk the model, optimiser state, EMA,
      step, losses and the stream's position are written there with Equinox
      serialisation, atomically (a temporary file renamed over the old one). If
      the file exists when `fit` starts, training resumes from it; a checkpoint
      of another model or optimiser, or a corrupt file, raises an error and is
      left untouched.
    - `devices`: the devices to train on (default: all of `jax.devices()`, every
      device of every process). The batch is split across them along a
      `jax.sharding.Mesh`; each device computes the loss and gradient of its rows
      (`jax.shard_map`) and one all-reduce per step sums them: data-parallel
      training with the result of one device, up to floating-point
      reassociation. Devices of several processes must include those of all.
    - `progress`: show a tqdm progress bar with the running loss.

    **Returns:**

    A [`FitResult`][scorax.FitResult].
    """
    check_count(num_steps, "num_steps")
    check_count(batch_size, "batch_size")
    check_count(steps_per_chunk, "steps_per_chunk")
    streamed = isinstance(data, collections.abc.Iterator)
    if ema_decay is not None and not 0 <= ema_decay < 1:
        raise ValueError(f"`ema_decay` must lie in [0, 1), got {ema_decay}.")
    mesh = batch_mesh(devices)
    num_devices = mesh.devices.size
    if batch_size % num_devices:
        raise ValueError(
            f"`batch_size` ({batch_size}) must be a multiple of the number of devices "
            f"({num_devices})."
        )
    processes = sorted({d.process_index for d in mesh.devices.flat})
    multiprocess = len(processes) > 1
    if multiprocess and len(processes) != jax.process_count():
        raise ValueError(
            f"`devices` span processes {processes} of {jax.process_count()}; a run "
            "on several processes must include devices of all of them."
        )
    writer = jax.process_index() == processes[0]

    feed = None
    if streamed:
        assert isinstance(data, collections.abc.Iterator)
        feed = _Feed(data, batch_size, mesh)
        data = None
    else:
        data, num_samples = _check_data(data)
        if batch_size > num_samples:
            raise ValueError(
                "`batch_size` must be at most the number of samples "
                f"({num_samples}), got {batch_size}."
            )
        if multiprocess and len(set(_agree(num_samples))) != 1:
            raise ValueError(
                "`data`: the processes passed data sets of different lengths "
                f"({_agree(num_samples)}); on several processes every one must pass "
                "the whole data set, or stream its share of each batch."
            )

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
    loaded, failure = None, None
    if path is not None and path.exists():
        try:
            loaded = _load(path, state)
        except ValueError as error:
            failure = error
    if multiprocess:
        # Every process must resume from the same checkpoint, or none: -1 none,
        # -2 unreadable, else the step found.
        found = -2 if failure else -1 if loaded is None else int(loaded[0]["step"])
        everyone = _agree(found)
        if failure is not None:
            raise failure
        if len(set(everyone)) != 1:
            raise ValueError(
                f"`checkpoint`: the processes found different checkpoints at {path} "
                f"(step by process, -1 none, -2 unreadable: {everyone}); every "
                "process must read the same file, on a file system they share."
            )
    elif failure is not None:
        raise failure
    if loaded is not None:
        state, saved, position = loaded
        history[: len(saved)] = saved[:num_steps]
        if feed is not None:
            feed.resume(position, int(state["step"]))
        elif position.get("data") != "array":
            raise ValueError(
                "`checkpoint` was written by a run on an iterator, and `data` is an "
                "in-memory data set; resume with the kind of data it was written "
                "with, or pass another path to start afresh."
            )
    state = put(state, replicated)
    data = put(data, replicated)
    key = put(key, replicated)

    start = min(int(state["step"]), num_steps)
    bar = tqdm(
        total=num_steps,
        initial=start,
        disable=not progress or not writer,
        desc="fit",
    )
    with bar:

        def record(first: int, losses: Array) -> None:
            """Copy one chunk's losses to the host (waiting for that chunk only)."""
            history[first : first + losses.shape[0]] = np.asarray(losses, np.float32)
            bar.set_postfix(
                loss=f"{float(np.mean(history[first : first + losses.shape[0]])):.4g}"
            )
            bar.update(losses.shape[0])

        def take(first: int) -> tuple[PyTree, ValueError | None]:
            """The batches of the chunk from step `first`, or the error that reading
            them raised. On several processes every process learns whether any
            failed (a collective once per chunk), so that all stop together rather
            than wait for one another in the next chunk."""
            assert feed is not None
            batches, error = None, None
            try:
                batches = feed.take(min(steps_per_chunk, num_steps - first))
            except _Exhausted:
                error = ValueError(
                    f"`data`: the iterator ended after {feed.consumed} batches; "
                    f"training to step {num_steps} needs one batch per step."
                )
            except ValueError as bad:
                error = bad
            if multiprocess:
                failed = _agree(int(error is not None))
                if error is None and any(failed):
                    error = ValueError(
                        f"`data`: reading the batches of process {failed.index(1)} "
                        f"from step {first} failed; every process stops there."
                    )
            return batches, error

        batches = None
        if feed is not None and start < num_steps:
            batches, error = take(start)
            if error is not None:
                raise error
        pending: tuple[int, Array] | None = None
        while start < num_steps:
            length = min(steps_per_chunk, num_steps - start)
            # Dispatched asynchronously: the device runs this chunk while the host
            # reads the next chunk's batches and the previous chunk's losses.
            state, losses = _run_chunk(
                length,
                state,
                data,
                batches,
                key,
                static,
                loss_fn,
                optimizer,
                batch_size,
                ema_decay,
                split_batch,
            )
            position: dict[str, Any] = {"data": "array"}
            if feed is not None and path is not None:
                position = feed.position(multiprocess)
            start += length
            ended = None  # raised once this chunk is recorded and saved
            if feed is not None and start < num_steps:
                batches, ended = take(start)
            if pending is not None:
                record(*pending)
            pending = (start - length, losses)
            if path is not None:
                record(*pending)
                pending = None
                if writer:
                    _save_atomically(path, state, history[:start], position)
            if ended is not None:
                raise ended
        if pending is not None:
            record(*pending)
    if multiprocess and path is not None:
        # No process returns (and perhaps resumes) before the last checkpoint is
        # on disk.
        multihost_utils.sync_global_devices(f"scorax.fit checkpoint {path}")

    ema_model = None if ema_decay is None else eqx.combine(state["ema"], static)
    return FitResult(
        model=eqx.combine(state["params"], static),
        ema_model=ema_model,
        opt_state=state["opt_state"],
        losses=jnp.asarray(history),
    )
