"""The plots of `scorax demo` (matplotlib with the Agg backend, imported lazily so
the rest of scorax never needs matplotlib)."""

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

import scorax

from ._sampler import sampler_table


GRID_ARROWS = 21
GRID_DENSITY = 160
# The noise-to-signal ratio sigma(t) / alpha(t) at which the score field is drawn.
PLOT_NOISE_TO_SIGNAL = 0.2


@dataclasses.dataclass(frozen=True)
class ScoreField:
    """What the score-field plot shows: the learned score at time `t`, the exact
    diffused mixture if known, and draws of `x_t` (for the density otherwise)."""

    t: float
    learned: Callable[[Array], Array]
    exact: scorax.GaussianMixture | None
    noised: Float[np.ndarray, "n 2"]


def pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            "the plots of scorax demo need matplotlib: pip install 'scorax[plots]' "
            "(or pass --no-plots)"
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _limits(points: Float[np.ndarray, "n 2"]) -> tuple[float, float, float, float]:
    """A square window around the bulk of `points`, with a margin."""
    low = np.quantile(points, 0.005, axis=0)
    high = np.quantile(points, 0.995, axis=0)
    centre = (low + high) / 2
    half = 0.6 * float(np.max(high - low)) + 0.1
    return (
        float(centre[0] - half),
        float(centre[0] + half),
        float(centre[1] - half),
        float(centre[1] + half),
    )


def _grid(
    limits: tuple[float, float, float, float], size: int
) -> tuple[Float[np.ndarray, "s s"], Float[np.ndarray, "s s"]]:
    xs = np.linspace(limits[0], limits[1], size)
    ys = np.linspace(limits[2], limits[3], size)
    return np.meshgrid(xs, ys)


def _evaluate(
    fn: Callable[[Array], Array],
    gx: Float[np.ndarray, "s s"],
    gy: Float[np.ndarray, "s s"],
) -> np.ndarray:
    """`fn` on every grid point (vmapped), shaped as the grid plus its own shape."""
    points = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], axis=-1), jnp.float32)
    values = np.asarray(jax.jit(jax.vmap(fn))(points), np.float64)
    return values.reshape(*gx.shape, *values.shape[1:])


def plot_samples(
    plt: Any,
    file: pathlib.Path,
    data: Float[np.ndarray, "n 2"],
    samples: dict[str, Float[np.ndarray, "m 2"]],
    titles: dict[str, str],
) -> None:
    """Fresh data beside each sampler's samples, on shared axes."""
    panels = [("data", "data (fresh draws)", data)] + [
        (name, titles[name], points) for name, points in samples.items()
    ]
    limits = _limits(data)
    figure, axes = plt.subplots(
        1, len(panels), figsize=(4 * len(panels), 4.2), squeeze=False
    )
    for axis, (name, title, points) in zip(axes[0], panels, strict=True):
        color = "tab:gray" if name == "data" else "tab:blue"
        axis.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color=color)
        axis.set_title(f"{title}\n{len(points)} points", fontsize=10)
        _frame(axis, limits)
    _save(plt, figure, file)


def _quiver(
    axis: Any, gx: np.ndarray, gy: np.ndarray, vectors: np.ndarray, color: str
) -> None:
    """Arrows of the field, their lengths capped at the 90% quantile so that the
    large scores far from the data do not drown the rest."""
    norms = np.linalg.norm(vectors, axis=-1)
    cap = max(float(np.quantile(norms, 0.9)), 1e-12)
    shrink = np.minimum(1.0, cap / np.maximum(norms, 1e-12))
    scaled = vectors * shrink[..., None]
    axis.quiver(gx, gy, scaled[..., 0], scaled[..., 1], color=color, width=0.004)


def plot_score_field(
    plt: Any, file: pathlib.Path, field: ScoreField, limits: tuple[float, ...]
) -> None:
    """The learned score as arrows over the density of x_t (and, for the mixture,
    the exact score beside it)."""
    box = (limits[0], limits[1], limits[2], limits[3])
    dense_x, dense_y = _grid(box, GRID_DENSITY)
    if field.exact is not None:
        density = np.exp(_evaluate(field.exact.log_prob, dense_x, dense_y))
        background = "exact density of x_t"
    else:
        density, _, _ = np.histogram2d(
            field.noised[:, 1],
            field.noised[:, 0],
            bins=GRID_DENSITY // 4,
            range=[[box[2], box[3]], [box[0], box[1]]],
            density=True,
        )
        background = "histogram of x_t"
    arrows_x, arrows_y = _grid(box, GRID_ARROWS)
    fields = [("learned score", _evaluate(field.learned, arrows_x, arrows_y))]
    if field.exact is not None:
        fields.append(("exact score", _evaluate(field.exact.score, arrows_x, arrows_y)))
    figure, axes = plt.subplots(
        1, len(fields), figsize=(5.5 * len(fields), 5.2), squeeze=False
    )
    for axis, (title, vectors) in zip(axes[0], fields, strict=True):
        axis.imshow(
            density,
            extent=box,
            origin="lower",
            cmap="Greys",
            aspect="equal",
            interpolation="bilinear",
        )
        _quiver(axis, arrows_x, arrows_y, vectors, "tab:red")
        axis.set_title(f"{title} at t = {field.t:.3f}\nover the {background}")
        _frame(axis, box, equal=False)
    _save(plt, figure, file)


def plot_loss(
    plt: Any, file: pathlib.Path, losses: Float[np.ndarray, " steps"]
) -> None:
    """The batch loss per step and its moving average."""
    steps = np.arange(1, len(losses) + 1)
    window = max(1, len(losses) // 50)
    average = np.convolve(losses, np.ones(window) / window, mode="valid")
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.7, label="batch")
    axis.plot(
        steps[window - 1 :],
        average,
        color="tab:blue",
        label=f"moving average ({window} steps)",
    )
    if np.all(losses > 0):
        axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel("diffusion loss")
    axis.set_title("training loss")
    axis.legend()
    _save(plt, figure, file)


def plot_conditional(
    plt: Any,
    file: pathlib.Path,
    weights: tuple[float, ...],
    guided: Float[np.ndarray, "classes weights m 2"],
    fresh: Float[np.ndarray, "n 2"],
    labels: Int[np.ndarray, " n"],
) -> None:
    """Top row: per class, the samples guided at the first weight over fresh data
    of that class. Bottom row: per guidance weight, the samples of every class
    (a colour each) over all the fresh data."""
    num_classes, num_weights = guided.shape[:2]
    columns = max(num_classes, num_weights)
    figure, axes = plt.subplots(2, columns, figsize=(3.6 * columns, 7.6))
    for axis in axes.ravel():
        axis.set_axis_off()
    panels = []
    for y in range(num_classes):
        title = f"class {y}, w = {weights[0]:g}\nover fresh data of the class"
        panels.append((axes[0, y], fresh[labels == y], {y: guided[y, 0]}, title))
    for j, w in enumerate(weights):
        title = f"guidance weight w = {w:g}\nevery class over all fresh data"
        panels.append((axes[1, j], fresh, dict(enumerate(guided[:, j])), title))
    limits = _limits(fresh)
    for axis, background, groups, title in panels:
        axis.set_axis_on()
        axis.scatter(*background.T, s=2, alpha=0.3, color="tab:gray")
        for y, points in groups.items():
            axis.scatter(*points.T, s=2, alpha=0.5, color=f"C{y}", label=f"class {y}")
        if len(groups) > 1:
            axis.legend(loc="upper left", fontsize=8, markerscale=4)
        axis.set_title(title, fontsize=10)
        _frame(axis, limits)
    _save(plt, figure, file)


@eqx.filter_jit
def noised(
    path: scorax.AbstractGaussianPath,
    data: Float[Array, "n 2"],
    t: float,
    *,
    key: PRNGKeyArray,
) -> Float[Array, "n 2"]:
    """The data diffused to time `t`: draws of `x_t`."""
    keys = jr.split(key, data.shape[0])
    return jax.vmap(lambda x, k: path.sample(x, t, key=k)[0])(data, keys)


def write_plots(
    output: pathlib.Path,
    *,
    model: Any,
    path: scorax.AbstractGaussianPath,
    parameterisation: scorax.AbstractParameterisation,
    mixture: scorax.GaussianMixture | None,
    data: Float[Array, "n 2"],
    fresh: tuple[Float[Array, "m 2"], Int[Array, " m"]],
    samples: dict[str, Float[Array, "k 2"]],
    losses: Float[np.ndarray, " steps"],
    guided: tuple[tuple[float, ...], Float[Array, "classes weights per 2"]] | None,
    key: PRNGKeyArray,
) -> list[str]:
    """Write `samples.png`, `score_field.png`, `loss.png` and, given guided
    samples, `conditional.png`; return their names."""
    plt = pyplot()
    points = np.asarray(fresh[0])
    titles = {
        name: sampler_table()[name].description.split(" (")[0] for name in samples
    }
    drawn = {name: np.asarray(value) for name, value in samples.items()}
    plot_samples(plt, output / "samples.png", points, drawn, titles)
    t = float(path.inverse_noise_to_signal(PLOT_NOISE_TO_SIGNAL))
    target = scorax.ScorePrediction()
    field = ScoreField(
        t=t,
        learned=lambda x: scorax.convert(
            path, model(x, t), x, t, source=parameterisation, target=target
        ),
        exact=None if mixture is None else mixture.marginal(path, t),
        noised=np.asarray(noised(path, data, t, key=key)),
    )
    plot_score_field(plt, output / "score_field.png", field, _limits(field.noised))
    plot_loss(plt, output / "loss.png", losses)
    files = ["samples.png", "score_field.png", "loss.png"]
    if guided is not None:
        weights, values = guided
        labels = np.asarray(fresh[1])
        plot_conditional(
            plt, output / "conditional.png", weights, np.asarray(values), points, labels
        )
        files.append("conditional.png")
    return files


def _frame(axis: Any, limits: Any, *, equal: bool = True) -> None:
    """Show the box `(x_min, x_max, y_min, y_max)` on `axis`, at equal scales."""
    axis.set_xlim(limits[0], limits[1])
    axis.set_ylim(limits[2], limits[3])
    if equal:
        axis.set_aspect("equal")


def _save(plt: Any, figure: Any, file: pathlib.Path) -> None:
    """Lay out, write and close `figure`."""
    figure.tight_layout()
    figure.savefig(file, dpi=100)
    plt.close(figure)
