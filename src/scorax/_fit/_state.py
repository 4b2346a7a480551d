"""The training state of [`fit`][scorax.fit]: what its steps carry and what its
checkpoints hold."""

from collections.abc import Callable
from typing import TypeAlias

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Int, PyTree


# The target's decay: a number, or a function of the step.
TargetDecay: TypeAlias = float | Callable[[Int[Array, ""]], ArrayLike]


class TrainState(eqx.Module):
    r"""The trained arrays of the model, the optimiser state, the EMA of the arrays
    (or `None`), the number of steps taken and the target copy of the arrays (or
    `None`).

    A checkpoint holds the leaves of this state in order
    (`eqx.tree_serialise_leaves`), so the order of the fields is part of the
    checkpoint format: it is the order in which 0.1.0 flattened the dictionary it
    kept the same state in (by sorted key: `"ema"`, `"opt_state"`, `"params"`,
    `"step"`), and `tests/checkpoints/0.1.0/fit_*` hold such files. A field added
    later goes last, and is `None` (no leaves) when an older file is read.

    - `ema`: $\bar\theta$, shaped as `params`, or `None` without `ema_decay`.
    - `opt_state`: the optimiser's state.
    - `params`: $\theta$, the inexact arrays of the model (`eqx.partition` with
      `eqx.is_inexact_array`; the rest of the model is not trained or saved).
    - `step`: the steps taken, a 32-bit integer scalar.
    - `target`: $\theta^-$, shaped as `params`, or `None` without `target_decay`
      (added after 0.1.0, so last).
    """

    ema: PyTree | None
    opt_state: PyTree
    params: PyTree
    step: Int[Array, ""]
    target: PyTree | None = None

    def apply_gradients(
        self,
        grads: PyTree,
        *,
        optimizer: optax.GradientTransformation,
        ema_decay: float | None,
        target_decay: TargetDecay | None = None,
    ) -> "TrainState":
        r"""The state after one step $k$: one `optimizer` update of the parameters
        with `grads`, then, with `ema_decay` $\gamma$,
        $\bar\theta \leftarrow \gamma \bar\theta + (1 - \gamma)\theta$, and with
        `target_decay` $\mu$ (a number, or $\mu(k)$ of the step),
        $\theta^- \leftarrow \mu \theta^- + (1 - \mu)\theta$."""
        updates, opt_state = optimizer.update(grads, self.opt_state, self.params)
        params = eqx.apply_updates(self.params, updates)
        ema = self.ema
        if ema_decay is not None:
            decay = ema_decay
            ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
        target = self.target
        if target_decay is not None:
            mu = target_decay(self.step) if callable(target_decay) else target_decay
            target = jax.tree.map(
                lambda e, p: (mu * e + (1 - mu) * p).astype(p.dtype), target, params
            )
        return TrainState(
            ema=ema,
            opt_state=opt_state,
            params=params,
            step=self.step + 1,
            target=target,
        )


def initial_state(
    params: PyTree,
    *,
    optimizer: optax.GradientTransformation,
    ema_decay: float | None,
    target_decay: TargetDecay | None = None,
) -> TrainState:
    """The state before the first step: the EMA and the target start at the
    parameters."""
    return TrainState(
        ema=params if ema_decay is not None else None,
        opt_state=optimizer.init(params),
        params=params,
        step=jnp.zeros((), jnp.int32),
        target=params if target_decay is not None else None,
    )
