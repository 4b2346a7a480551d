r"""Multilayer perceptrons for scores (time-conditional) and energies."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .._checks import check_count
from .._custom_types import FloatScalar, IntScalarLike, RealScalarLike
from ._label import LabelEmbedding, unconditional


class GaussianFourierFeatures(eqx.Module):
    r"""Random Fourier features of a scalar time (Tancik et al. 2020), the time
    embedding of Song et al. (2021):

    $$\gamma(t) = \left[\sin(2\pi w_1 t), \dots, \sin(2\pi w_m t),
    \cos(2\pi w_1 t), \dots, \cos(2\pi w_m t)\right], \qquad
    w_i \sim \mathcal{N}(0, s^2),$$

    with the frequencies $w$ drawn once and never trained (gradients through them
    are stopped).

    **Arguments:**

    - `num_features`: the output size $2m$, an even integer $\ge 2$.
    - `scale`: the frequency scale $s > 0$; larger values resolve faster changes
      in $t$. Default 16, as in Song et al. (2021).
    - `key`: a JAX PRNG key for the frequencies.
    """

    frequencies: Float[Array, " half"]

    def __init__(
        self,
        num_features: IntScalarLike = 32,
        *,
        scale: float = 16.0,
        key: PRNGKeyArray,
    ):
        num_features = check_count(num_features, "num_features")
        if num_features % 2:
            raise ValueError(f"`num_features` must be even, got {num_features}.")
        if not scale > 0:
            raise ValueError(f"`scale` must be > 0, got {scale}.")
        self.frequencies = scale * jr.normal(key, (num_features // 2,))

    def __call__(self, t: RealScalarLike) -> Float[Array, " features"]:
        angles = 2 * jnp.pi * jax.lax.stop_gradient(self.frequencies) * t
        return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)])


class ScoreMLP(eqx.Module):
    r"""A time-conditional MLP $m_\theta(x, t)$ for score-based models.

    The input is the flattened $x$ concatenated with
    [`GaussianFourierFeatures`][scorax.GaussianFourierFeatures] of $t$; the
    output has the shape of $x$. What the output means is the caller's choice of
    parameterisation (score, noise, data or velocity; see
    [`convert`][scorax.convert]). The activation is SiLU by default: a smooth
    network gives the smooth vector field that SDE and ODE samplers integrate, and
    useful parameter gradients of the Jacobian trace in implicit and sliced score
    matching.

    **Arguments:**

    - `shape`: the shape of one sample $x$, e.g. `(2,)` or `(8, 8)`.
    - `width`, `depth`: hidden width and number of hidden layers.
    - `num_time_features`: the size of the time embedding.
    - `time_scale`: its frequency scale.
    - `activation`: the hidden activation.
    - `num_classes`: with $K$ classes, the model is class-conditional,
      $m_\theta(x, t, y)$: a learned embedding of the label $y \in \{0, \dots,
      K-1\}$ (or of the null label $y = -1$, "no class", learned too, as
      classifier-free guidance needs; Ho & Salimans 2022) joins the input.
      Default `None`: unconditional, exactly as before.
    - `key`: a JAX PRNG key.
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    time_features: GaussianFourierFeatures
    mlp: eqx.nn.MLP
    label_embedding: LabelEmbedding | None

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        width: IntScalarLike = 128,
        depth: IntScalarLike = 3,
        num_time_features: IntScalarLike = 32,
        time_scale: float = 16.0,
        activation: Callable[[Array], Array] = jax.nn.silu,
        num_classes: IntScalarLike | None = None,
        key: PRNGKeyArray,
    ):
        width = check_count(width, "width")
        depth = check_count(depth, "depth")
        num_time_features = check_count(num_time_features, "num_time_features")
        size = _size(shape)
        time_key, mlp_key = jr.split(key)
        self.shape = tuple(shape)
        self.time_features = GaussianFourierFeatures(
            num_time_features, scale=time_scale, key=time_key
        )
        # The label embedding has a key of its own, so unconditional models keep
        # their weights.
        self.label_embedding = (
            None
            if num_classes is None
            else LabelEmbedding(num_classes, num_time_features, key=jr.fold_in(key, 1))
        )
        label_size = 0 if num_classes is None else num_time_features
        self.mlp = eqx.nn.MLP(
            size + num_time_features + label_size,
            size,
            width,
            depth,
            activation=activation,
            key=mlp_key,
        )

    @property
    def num_classes(self) -> int | None:
        """The number of classes $K$ of a class-conditional model, else `None`."""
        return (
            None if self.label_embedding is None else self.label_embedding.num_classes
        )

    def __call__(
        self,
        x: Float[Array, "*shape"],
        t: RealScalarLike,
        y: Int[ArrayLike, ""] | None = None,
    ) -> Float[Array, "*shape"]:
        """The output at `(x, t)`, given the label `y` if the model is
        class-conditional (`None` or -1: no class)."""
        parts = [x.reshape(-1), self.time_features(t).astype(x.dtype)]
        if self.label_embedding is None:
            unconditional(y, "ScoreMLP")
        else:
            parts.append(self.label_embedding(y).astype(x.dtype))
        return self.mlp(jnp.concatenate(parts)).reshape(x.shape).astype(x.dtype)


class EnergyMLP(eqx.Module):
    r"""A scalar energy $E_\theta(x)$ for energy-based models,
    $p_\theta(x) \propto e^{-E_\theta(x)}$.

    Train it with implicit or sliced score matching through
    [`score_from_energy`][scorax.score_from_energy], which never needs the
    normalising constant. SiLU by default: the score is already a first
    derivative of $E_\theta$ and those objectives take one more, the Hessian trace
    $\operatorname{tr}\nabla^2 E_\theta$, which is zero almost everywhere for a
    ReLU network, so ISM and SSM would get no signal from it (as the seed notes
    observe).

    **Arguments:**

    - `shape`: the shape of one sample $x$.
    - `width`, `depth`: hidden width and number of hidden layers.
    - `activation`: the hidden activation.
    - `key`: a JAX PRNG key.
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    mlp: eqx.nn.MLP

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        width: IntScalarLike = 128,
        depth: IntScalarLike = 3,
        activation: Callable[[Array], Array] = jax.nn.silu,
        key: PRNGKeyArray,
    ):
        width = check_count(width, "width")
        depth = check_count(depth, "depth")
        self.shape = tuple(shape)
        self.mlp = eqx.nn.MLP(
            _size(shape), "scalar", width, depth, activation=activation, key=key
        )

    def __call__(self, x: Float[Array, "*shape"]) -> FloatScalar:
        return self.mlp(x.reshape(-1))


def _size(shape: tuple[int, ...]) -> int:
    if not all(isinstance(n, int) and n >= 1 for n in shape):
        raise ValueError(f"`shape` must be a tuple of positive integers, got {shape}.")
    size = 1
    for n in shape:
        size *= n
    return size
