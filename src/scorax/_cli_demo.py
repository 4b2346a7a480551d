"""What `scorax demo` runs (its options and outputs are described in `_cli.py`):
draw a toy data set, fit a `ScoreMLP`, sample with samplers chosen by name, and
measure the samples and the learned score. Each step is a call of the public
library, as a user would write it (`import scorax`); this module only chooses
the settings and writes the results down."""

import dataclasses
import json
import math
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

import scorax
from scorax import datasets

from ._sampler import sampler_table


DATASETS = ("gaussian_mixture", "two_moons", "swiss_roll", "checkerboard", "rings")
LABELLED = ("gaussian_mixture", "two_moons")  # the data sets with classes
PATHS: dict[str, Callable[[], scorax.AbstractGaussianPath]] = {
    "vp": scorax.VPPath,
    "subvp": scorax.SubVPPath,
    # Noise scales matched to the unit-scale 2-D data sets rather than to images.
    "ve": lambda: scorax.VEPath(sigma_min=0.01, sigma_max=10.0),
    "cosine": scorax.CosinePath,
    "linear": scorax.LinearPath,
    "edm": lambda: scorax.EDMPath(sigma_min=0.002, sigma_max=10.0),
}
OBJECTIVES: dict[str, Callable[[], scorax.AbstractParameterisation]] = {
    "noise": scorax.NoisePrediction,
    "score": scorax.ScorePrediction,
    "data": scorax.DataPrediction,
    "velocity": scorax.VelocityPrediction,
}
# Noise-to-signal ratios sigma(t) / alpha(t) of the Fisher divergence report.
NOISE_TO_SIGNAL: tuple[float, ...] = (0.1, 0.3, 1.0)
NUM_TRAIN = 10_000
NUM_PROJECTIONS = 256
LABEL_DROPOUT = 0.2
BATCH_AXIS = "batch"  # the vmapped sample axis, for samplers that average over it
Labelled: TypeAlias = tuple[Float[Array, "n 2"], Int[Array, " n"]]  # points, classes


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    """The options of `scorax demo`, as parsed from the command line."""

    dataset: str = "gaussian_mixture"
    path: str = "vp"
    objective: str = "noise"
    weighting: str = "noise"
    # The reverse SDE, and the ODE sampler most accurate at few evaluations on
    # the mixture (benchmarks/results/cpu.md): dpm3m-time, 21 evaluations.
    samplers: tuple[str, ...] = ("sde", "dpm3m-time")
    steps: int = 6000
    batch_size: int = 256
    width: int = 128
    depth: int = 3
    learning_rate: float = 2e-3
    samples: int = 2000
    sampler_steps: int | None = None
    seed: int = 0
    output: str = "scorax-demo"
    conditional: bool = False
    guidance: tuple[float, ...] = (0.0, 1.0, 4.0)
    plots: bool = True
    quiet: bool = False


class _Log:
    """Phase messages on stderr and the wall time of each phase."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.times: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str, message: str) -> Iterator[None]:
        """Time the enclosed block as `name`, announcing it with `message`."""
        if not self.quiet:
            print(f"scorax demo: {message}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = time.perf_counter() - start


@eqx.filter_jit
def load_data(
    name: str, num: int, mixture: scorax.GaussianMixture | None, *, key: PRNGKeyArray
) -> tuple[Float[Array, "num 2"], Int[Array, " num"]]:
    """`num` float32 points of the data set and their classes (all 0 for the data
    sets without classes)."""
    if mixture is not None:
        points, labels = mixture.sample_labelled(key=key, sample_shape=(num,))
    elif name == "two_moons":
        points, labels = datasets.two_moons(num, key=key, labels=True)
    else:
        points = getattr(datasets, name)(num, key=key)
        labels = jnp.zeros(num, jnp.int32)
    return points.astype(jnp.float32), labels


def train(
    options: DemoOptions,
    path: scorax.AbstractGaussianPath,
    data: Float[Array, "n 2"],
    labels: Int[Array, " n"] | None,
    *,
    key: PRNGKeyArray,
) -> scorax.FitResult:
    """Fit a `ScoreMLP` with `diffusion_loss`, Adam with cosine decay and an EMA;
    class-conditional, with label dropout, when `labels` are given."""
    model_key, fit_key = jr.split(key)
    num_classes = None if labels is None else int(jnp.max(labels)) + 1
    model = scorax.ScoreMLP(
        (2,),
        width=options.width,
        depth=options.depth,
        num_classes=num_classes,
        key=model_key,
    )

    def loss_fn(model: Any, sample: Any, key: PRNGKeyArray) -> Array:
        x, y = sample if labels is not None else (sample, None)
        return scorax.diffusion_loss(
            model,
            path,
            x,
            key=key,
            parameterisation=OBJECTIVES[options.objective](),
            weighting=options.weighting,  # pyright: ignore[reportArgumentType]
            label=y,
            label_dropout=0.0 if y is None else LABEL_DROPOUT,
        )

    decay = optax.cosine_decay_schedule(options.learning_rate, options.steps, 0.05)
    return scorax.fit(
        model,
        loss_fn,
        data if labels is None else (data, labels),
        optimizer=optax.adam(decay),
        num_steps=options.steps,
        batch_size=options.batch_size,
        key=fit_key,
        # An average over about the last tenth of the steps, none for short runs.
        ema_decay=max(0.0, min(0.999, 1 - 10 / options.steps)),
        progress=not options.quiet,
    )


@eqx.filter_jit
def _sample(sampler: Callable, model: Any, starts: Array, keys: Array, guide: Any):
    """The sampler vmapped over its starting points and, with `guide = (labels,
    weights)`, over the class and guidance weight of each sample."""

    def one(x: Array, key: Array, guide: Any) -> scorax.SampleResult:
        if guide is None:
            return sampler(model, x, key)
        return sampler(
            scorax.classifier_free_guidance(model, guide[0], weight=guide[1]), x, key
        )

    return jax.vmap(one, axis_name=BATCH_AXIS)(starts, keys, guide)


def draw_samples(
    name: str,
    options: DemoOptions,
    model: Any,
    path: scorax.AbstractGaussianPath,
    num: int,
    *,
    key: PRNGKeyArray,
    guide: tuple[Int[Array, " num"], Float[Array, " num"]] | None = None,
    data_std: float | None = None,
) -> tuple[Float[Array, "num 2"], float]:
    """`num` samples with the sampler `name` from draws of the prior, and the mean
    number of model evaluations per sample."""
    sampler = scorax.get_sampler(
        name,
        path,
        num_steps=options.sampler_steps,
        parameterisation=OBJECTIVES[options.objective](),
        axis_name=BATCH_AXIS,
        data_std=data_std,
    )
    prior_key, sampler_key = jr.split(key)
    starts = path.prior_sample(key=prior_key, shape=(num, 2), dtype=jnp.float32)
    result = _sample(sampler, model, starts, jr.split(sampler_key, num), guide)
    samples = jax.block_until_ready(result.sample)
    return samples, float(np.mean(np.asarray(result.num_evaluations, np.float64)))


@jax.jit
def _distance(x: Array, y: Array, key: PRNGKeyArray) -> Array:
    """[`sliced_wasserstein`][scorax.sliced_wasserstein], compiled once per shape."""
    return scorax.sliced_wasserstein(x, y, key=key, num_projections=NUM_PROJECTIONS)


def _number(value: ArrayLike) -> float | None:
    """A float for JSON, which has no NaN or infinity: those become null."""
    number = float(np.asarray(value))
    return number if math.isfinite(number) else None


def fisher_report(
    model: Any,
    path: scorax.AbstractGaussianPath,
    options: DemoOptions,
    mixture: scorax.GaussianMixture,
    *,
    key: PRNGKeyArray,
) -> list[dict[str, float | None]]:
    """`fisher_divergence_by_time` at the noise-to-signal ratios `NOISE_TO_SIGNAL`."""
    times = jax.vmap(path.inverse_noise_to_signal)(jnp.asarray(NOISE_TO_SIGNAL))
    divergence, relative = eqx.filter_jit(scorax.fisher_divergence_by_time)(
        model,
        path,
        mixture,
        times,
        key=key,
        num_samples=options.samples,
        parameterisation=OBJECTIVES[options.objective](),
    )
    values = zip(times, NOISE_TO_SIGNAL, divergence, relative, strict=True)
    return [
        {
            "t": float(t),
            "noise_to_signal": ratio,
            "fisher_divergence": _number(d),
            "relative": _number(r),
        }
        for t, ratio, d, r in values
    ]


def conditional_demo(
    options: DemoOptions,
    model: Any,
    path: scorax.AbstractGaussianPath,
    fresh: Labelled,
    floor: Labelled,
    mixture: scorax.GaussianMixture | None,
    *,
    key: PRNGKeyArray,
) -> tuple[dict[str, Any], Float[Array, "classes weights per 2"]]:
    """Samples of every class at every guidance weight, `samples // num_classes`
    each, with the first sampler in one batch; and per class and weight, their
    distance to fresh data of the class and, for the mixture, their mean exact
    class posterior."""
    sample_key, metric_key = jr.split(key)
    num_classes, num_weights = int(jnp.max(fresh[1])) + 1, len(options.guidance)
    per = max(1, options.samples // num_classes)
    labels = jnp.repeat(jnp.arange(num_classes), num_weights * per)
    weights = jnp.tile(jnp.repeat(jnp.asarray(options.guidance), per), num_classes)
    name = options.samplers[0]
    samples, evaluations = draw_samples(
        name,
        options,
        model,
        path,
        labels.shape[0],
        key=sample_key,
        guide=(labels, weights),
        data_std=float(jnp.std(fresh[0])),
    )
    samples = samples.reshape(num_classes, num_weights, per, 2)
    records, noise_floor = [], {}
    for label, per_weight in enumerate(samples):
        of_class = fresh[0][fresh[1] == label]
        floor_of_class = floor[0][floor[1] == label]
        noise_floor[str(label)] = _number(
            _distance(floor_of_class, of_class, metric_key)
        )
        for weight, points in zip(options.guidance, per_weight, strict=True):
            posterior = None
            if mixture is not None:
                log_posteriors = jax.vmap(mixture.log_class_posterior)(points)
                posterior = _number(jnp.mean(jnp.exp(log_posteriors[:, label])))
            distance = _number(_distance(points, of_class, metric_key))
            records.append(
                {
                    "label": label,
                    "weight": weight,
                    "sliced_wasserstein": distance,
                    "class_posterior": posterior,
                    "num_evaluations": evaluations,
                }
            )
    summary = {
        "sampler": name,
        "label_dropout": LABEL_DROPOUT,
        "noise_floor": noise_floor,
        "samples": records,
    }
    return summary, samples


def _draw_data(
    options: DemoOptions,
    mixture: scorax.GaussianMixture | None,
    log: _Log,
    *,
    key: PRNGKeyArray,
) -> tuple[tuple[Float[Array, "train 2"], Int[Array, " train"]], Labelled, Labelled]:
    """One draw of the data set, split: training data, fresh data to compare
    samples with, and a second fresh set (as large) for the noise floor of that
    comparison."""
    with log.phase("data", f"data set {options.dataset}, {NUM_TRAIN} points"):
        num = NUM_TRAIN + 2 * options.samples
        points, labels = load_data(options.dataset, num, mixture, key=key)
        cuts = [NUM_TRAIN, NUM_TRAIN + options.samples]
        data, fresh, floor = jnp.split(points, cuts)
        labels, fresh_labels, floor_labels = jnp.split(labels, cuts)
    return (data, labels), (fresh, fresh_labels), (floor, floor_labels)


def _train_logged(
    options: DemoOptions,
    path: scorax.AbstractGaussianPath,
    train_data: Labelled,
    log: _Log,
    *,
    key: PRNGKeyArray,
) -> tuple[Any, np.ndarray]:
    """`train`, announced and timed: the model to sample (the EMA one when there
    is one) and the losses."""
    kind = "class-conditional " if options.conditional else ""
    with log.phase(
        "train",
        f"training a {kind}ScoreMLP (width {options.width}, depth {options.depth}) "
        f"for {options.steps} steps on the {options.path} path, {options.objective} "
        f"prediction, {options.weighting} weighting",
    ):
        data, labels = train_data
        given = labels if options.conditional else None
        result = train(options, path, data, given, key=key)
    model = result.ema_model if result.ema_model is not None else result.model
    return model, np.asarray(result.losses)


def _sample_each(
    options: DemoOptions,
    model: Any,
    path: scorax.AbstractGaussianPath,
    data: Float[Array, "train 2"],
    fresh: Float[Array, "num 2"],
    log: _Log,
    *,
    key: PRNGKeyArray,
    metric_key: PRNGKeyArray,
) -> tuple[dict[str, Float[Array, "num 2"]], dict[str, dict[str, Any]]]:
    """The samples of each sampler of `options`, and per sampler its distance to
    the fresh data, model evaluations and wall time."""
    samples, sampler_summary = {}, {}
    sampler_keys = jr.split(key, len(options.samplers))
    for name, sampler_key in zip(options.samplers, sampler_keys, strict=True):
        description = sampler_table()[name].description
        with log.phase(
            f"sample_{name}", f"sampling {options.samples} points: {description}"
        ):
            samples[name], evaluations = draw_samples(
                name,
                options,
                model,
                path,
                options.samples,
                key=sampler_key,
                data_std=float(jnp.std(data)),
            )
        sampler_summary[name] = {
            "sliced_wasserstein": _number(_distance(samples[name], fresh, metric_key)),
            "num_evaluations": evaluations,
            "wall_time_s": log.times[f"sample_{name}"],
        }
    return samples, sampler_summary


def _write_summary(output: pathlib.Path, summary: dict[str, Any]) -> None:
    """`summary.json` in the output folder."""
    with open(output / "summary.json", "w") as file:
        json.dump(summary, file, indent=2)
        file.write("\n")


def _writable_folder(name: str) -> pathlib.Path:
    """The output folder, created if missing, once a file can be written in it:
    checked before any work, so that nothing trained is lost to a bad path."""
    if not name:
        raise ValueError("`--output` must name a folder, got an empty string.")
    output = pathlib.Path(name)
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as error:
        raise ValueError(
            f"`--output` {name!r} is not a folder scorax can write to: {error}"
        ) from error
    return output


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run the demo with `options` and return the summary it writes."""
    from . import __version__, _cli_plots

    start = time.perf_counter()
    if options.plots:  # fail before training, not after, if matplotlib is missing
        _cli_plots.pyplot()
    log = _Log(options.quiet)
    output = _writable_folder(options.output)
    path = PATHS[options.path]()
    keys = jr.split(jr.key(options.seed), 4)
    data_key, train_key, sample_key, metric_key = keys
    is_mixture = options.dataset == "gaussian_mixture"
    mixture = datasets.gaussian_mixture() if is_mixture else None

    train_data, fresh, floor = _draw_data(options, mixture, log, key=data_key)
    model, losses = _train_logged(options, path, train_data, log, key=train_key)
    data = train_data[0]
    samples, sampler_summary = _sample_each(
        options,
        model,
        path,
        data,
        fresh[0],
        log,
        key=sample_key,
        metric_key=metric_key,
    )

    with log.phase("metrics", "metrics: sliced Wasserstein, Fisher divergence"):
        floor_distance = _number(_distance(floor[0], fresh[0], metric_key))
        fisher = None
        if mixture is not None:
            fisher = fisher_report(model, path, options, mixture, key=metric_key)

    guided, conditional = None, None
    if options.conditional:
        weights = ", ".join(f"{w:g}" for w in options.guidance)
        with log.phase("conditional", f"sampling each class at weights {weights}"):
            conditional, guided = conditional_demo(
                options,
                model,
                path,
                fresh,
                floor,
                mixture,
                key=jr.fold_in(sample_key, 1),
            )

    files = ["summary.json"]
    if options.plots:
        with log.phase("plots", f"plots in {output}"):
            files += _cli_plots.write_plots(
                output,
                model=model,
                path=path,
                parameterisation=OBJECTIVES[options.objective](),
                mixture=mixture,
                data=data,
                fresh=fresh,
                samples=samples,
                losses=losses,
                guided=None if guided is None else (options.guidance, guided),
                key=metric_key,
            )

    tail = losses[-max(1, len(losses) // 10) :]
    summary: dict[str, Any] = {
        "scorax_version": __version__,
        "options": dataclasses.asdict(options),
        "backend": jax.default_backend(),
        "final_loss": _number(np.mean(tail)),
        "samplers": sampler_summary,
        "sliced_wasserstein_noise_floor": floor_distance,
        "fisher_divergence": fisher,
        "conditional": conditional,
        "wall_time_s": {"total": time.perf_counter() - start, **log.times},
        "files": files,
    }
    _write_summary(output, summary)
    return summary


def report(summary: dict[str, Any], output: str) -> str:
    """A few lines for the terminal: the headline numbers of the summary and where
    the files are."""

    def shown(value: float | None, form: str = ".4f") -> str:
        return "nan" if value is None else format(value, form)

    lines = [f"final loss {shown(summary['final_loss'], '.4g')}"]
    floor = summary["sliced_wasserstein_noise_floor"]
    for name, values in summary["samplers"].items():
        lines.append(
            f"{name:<11} sliced Wasserstein {shown(values['sliced_wasserstein'])} "
            f"(noise floor {shown(floor)}), {values['num_evaluations']:.0f} model "
            "evaluations per sample"
        )
    for entry in summary["fisher_divergence"] or ():
        lines.append(
            f"Fisher divergence at t = {entry['t']:.3f}: "
            f"{shown(entry['fisher_divergence'], '.4g')} "
            f"(relative {shown(entry['relative'], '.3g')})"
        )
    conditional: dict[str, Any] = summary["conditional"] or {"samples": []}
    for entry in conditional["samples"]:
        floor = conditional["noise_floor"][str(entry["label"])]
        posterior = entry["class_posterior"]
        lines.append(
            f"class {entry['label']}, guidance {entry['weight']:g}: sliced "
            f"Wasserstein {shown(entry['sliced_wasserstein'])} (noise floor "
            f"{shown(floor)})"
            + ("" if posterior is None else f", E[p(y | x)] {posterior:.3f}")
        )
    total = summary["wall_time_s"]["total"]
    lines.append(f"wrote {', '.join(summary['files'])} to {output} in {total:.1f} s")
    return "\n".join(lines)
