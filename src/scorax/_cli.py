r"""The `scorax` command line (`python -m scorax ...` or the `scorax` script).

`scorax demo` is the newcomer's first run: it trains a [`ScoreMLP`][scorax.ScoreMLP]
with [`diffusion_loss`][scorax.diffusion_loss] on a 2-D toy data set (by default
the two-Gaussian mixture of [`scorax.datasets.gaussian_mixture`][scorax.datasets.gaussian_mixture],
whose diffused score is known exactly), draws samples with two samplers, and
writes to the output folder:

- `samples.png`: fresh data beside each sampler's samples;
- `score_field.png`: the learned score at a small time as arrows over the
  density of $x_t$ (for the mixture, its exact density, and the exact score
  beside the learned one);
- `loss.png`: the training loss per step and its moving average;
- `summary.json`, with the keys
    - `scorax_version`, `options` (every option used), `backend` (JAX's),
    - `final_loss`: the mean batch loss over the last 10% of the steps,
    - `samplers`: per sampler, `sliced_wasserstein` (to fresh data, see
      [`sliced_wasserstein`][scorax.sliced_wasserstein]), `num_evaluations`
      (mean model evaluations per sample) and `wall_time_s`,
    - `sliced_wasserstein_noise_floor`: the same distance between two fresh data
      sets of that size, the best a sampler can score,
    - `fisher_divergence`: for the mixture, a list of `{t, noise_to_signal,
      fisher_divergence, relative}` at a few times, comparing the learned score
      with the exact score of `mixture.marginal(path, t)` (`relative` divides by
      $\mathbb{E}\|\nabla \log p_t\|^2$); `null` for the other data sets,
    - `wall_time_s`: `total` and one entry per phase,
    - `files`: the files written.

Errors in the options exit with status 2 and a one-line message; a `ValueError`
raised by scorax during the run exits with status 1 as `scorax: error: ...`.
"""

import argparse
import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast, NoReturn, TypeAlias

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from . import datasets
from ._fit import fit, FitResult
from ._metric import fisher_divergence, sliced_wasserstein
from ._mixture import GaussianMixture
from ._model import ScoreMLP
from ._objective import diffusion_loss
from ._objective._denoising import Weighting, WEIGHTINGS
from ._parameterisation import (
    AbstractParameterisation,
    convert,
    DataPrediction,
    NoisePrediction,
    ScorePrediction,
    VelocityPrediction,
)
from ._path import (
    AbstractGaussianPath,
    CosinePath,
    DDPMSchedule,
    EDMPath,
    LinearPath,
    SubVPPath,
    VEPath,
    VPPath,
)
from ._sampler import (
    ddim_sample,
    ddpm_sample,
    dpm_solver_pp_sample,
    dpm_solver_sample,
    edm_sample,
    predictor_corrector_sample,
    probability_flow_sample,
    reverse_sde_sample,
    SampleResult,
)


PROG = "scorax"

DATASETS: tuple[str, ...] = (
    "gaussian_mixture",
    "two_moons",
    "swiss_roll",
    "checkerboard",
    "rings",
)

PATHS: dict[str, Callable[[], AbstractGaussianPath]] = {
    "vp": VPPath,
    "subvp": SubVPPath,
    # Noise scales matched to the unit-scale 2-D data sets (whose points lie within
    # about 10 of each other) rather than to images.
    "ve": lambda: VEPath(sigma_min=0.01, sigma_max=10.0),
    "cosine": CosinePath,
    "linear": LinearPath,
    "edm": lambda: EDMPath(sigma_min=0.002, sigma_max=10.0),
}

OBJECTIVES: dict[str, Callable[[], AbstractParameterisation]] = {
    "noise": NoisePrediction,
    "score": ScorePrediction,
    "data": DataPrediction,
    "velocity": VelocityPrediction,
}


# What each sampler does and how many steps it takes unless --sampler-steps says.
SAMPLERS: dict[str, tuple[str, int | None]] = {
    "sde": ("reverse SDE, Euler-Maruyama (reverse_sde_sample)", 500),
    "ode": ("probability-flow ODE, adaptive Tsit5 (probability_flow_sample)", None),
    "pc": ("predictor-corrector (predictor_corrector_sample)", 250),
    "edm": ("Heun, Karras et al. (edm_sample)", 40),
    "ddim": ("DDIM, eta = 0 (ddim_sample; needs --path vp)", 100),
    "ddpm": ("ancestral DDPM, 1000 steps (ddpm_sample; needs --path vp)", None),
    "dpm1": ("DPM-Solver-1, DDIM on any path (dpm_solver_sample)", 20),
    "dpm2": ("DPM-Solver-2, 2 evaluations a step (dpm_solver_sample)", 10),
    "dpm3": ("DPM-Solver-3, 3 evaluations a step (dpm_solver_sample)", 7),
    "dpm2m": ("DPM-Solver++(2M) (dpm_solver_pp_sample)", 20),
    "dpm3m": ("DPM-Solver++(3M) (dpm_solver_pp_sample)", 20),
    "dpm3m-unic": ("DPM-Solver++(3M) with UniC (dpm_solver_pp_sample)", 20),
    "dpm2m-sde": ("DPM-Solver++(2M) SDE (dpm_solver_pp_sample)", 50),
}
# The options of dpm_solver_pp_sample behind each multistep name.
MULTISTEP: dict[str, dict[str, Any]] = {
    "dpm2m": {"order": 2},
    "dpm3m": {"order": 3},
    "dpm3m-unic": {"order": 3, "corrector": True},
    "dpm2m-sde": {"order": 2, "stochastic": True},
}

# Paths with alpha(1) = 0 have a divergent SDE at t = 1: samplers stop short of it.
T_MIN = 1e-3
T_MAX_DIVERGENT = 0.99
# Noise-to-signal ratios sigma(t) / alpha(t) at which the score is compared with
# the exact one; the score field is drawn at the first.
NOISE_TO_SIGNAL: tuple[float, ...] = (0.1, 0.3, 1.0)
PLOT_NOISE_TO_SIGNAL = 0.2
NUM_TRAIN = 10_000
NUM_PROJECTIONS = 256
# The name of the vmapped sample axis (for samplers that average over the batch).
BATCH_AXIS = "batch"

Sampler: TypeAlias = Callable[[Any, Float[Array, " d"], PRNGKeyArray], SampleResult]


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    """The options of `scorax demo`, as parsed from the command line."""

    dataset: str = "gaussian_mixture"
    path: str = "vp"
    objective: str = "noise"
    weighting: str = "noise"
    samplers: tuple[str, ...] = ("sde", "ode")
    steps: int = 6000
    batch_size: int = 256
    width: int = 128
    depth: int = 3
    learning_rate: float = 2e-3
    samples: int = 2000
    sampler_steps: int | None = None
    seed: int = 0
    output: str = "scorax-demo"
    plots: bool = True
    quiet: bool = False


# ---------------------------------------------------------------------- parsing


def _count(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _sampler_list(text: str) -> list[str]:
    """An argparse type: one sampler name, or several separated by commas."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SAMPLERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"invalid choice {text!r} (choose from {', '.join(SAMPLERS)})"
        )
    return names


class _Formatter(
    argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter
):
    """Show defaults (except for flags and options without one) and keep the
    hand-wrapped description and epilog."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit with status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _add_demo_parser(commands: Any) -> argparse.ArgumentParser:
    defaults = DemoOptions()
    sampler_lines = "\n".join(
        f"  {name:<11} {text}" + (f"; {steps} steps" if steps else "")
        for name, (text, steps) in SAMPLERS.items()
    )
    parser = commands.add_parser(
        "demo",
        help="train a score model on a 2-D toy data set, sample, write plots",
        formatter_class=_Formatter,
        description=(
            "Train a time-conditional score model (ScoreMLP with diffusion_loss) "
            "on a 2-D toy\ndata set, draw samples with two samplers, and write "
            "to the output folder:\n"
            "  samples.png      data beside each sampler's samples\n"
            "  score_field.png  the learned score as arrows over the density "
            "at a small t\n"
            "  loss.png         the training loss\n"
            "  summary.json     final loss, sliced Wasserstein distance to fresh "
            "data and\n"
            "                   model evaluations per sampler, Fisher divergence "
            "to the exact\n"
            "                   score (mixture only), wall times, options, "
            "version\n"
            "About a minute on a two-core CPU with the defaults."
        ),
        epilog=(
            f"samplers:\n{sampler_lines}\n\n"
            "examples:\n"
            "  scorax demo\n"
            "  scorax demo --dataset two_moons --path cosine --objective velocity\n"
            "  scorax demo --sampler sde,edm --steps 2000 --output /tmp/demo"
        ),
    )
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default=defaults.dataset,
        help="the training data (scorax.datasets)",
    )
    parser.add_argument(
        "--path",
        choices=tuple(PATHS),
        default=defaults.path,
        help="the Gaussian probability path (ve and edm with sigma_max = 10)",
    )
    parser.add_argument(
        "--objective",
        choices=tuple(OBJECTIVES),
        default=defaults.objective,
        help="what the model predicts: the noise, the score, the clean data or "
        "the velocity",
    )
    parser.add_argument(
        "--weighting",
        choices=WEIGHTINGS,
        default=defaults.weighting,
        help="the time weighting of diffusion_loss",
    )
    parser.add_argument(
        "--sampler",
        dest="samplers",
        type=_sampler_list,
        default=",".join(defaults.samplers),
        metavar="NAME[,NAME...]",
        help=f"the samplers to compare, from {', '.join(SAMPLERS)}",
    )
    parser.add_argument(
        "--steps",
        type=_count,
        metavar="N",
        default=defaults.steps,
        help="training steps",
    )
    parser.add_argument(
        "--batch-size",
        type=_count,
        metavar="N",
        default=defaults.batch_size,
        help="batch size",
    )
    parser.add_argument(
        "--width", type=_count, metavar="N", default=defaults.width, help="hidden width"
    )
    parser.add_argument(
        "--depth",
        type=_count,
        metavar="N",
        default=defaults.depth,
        help="hidden layers",
    )
    parser.add_argument(
        "--learning-rate",
        type=_positive_float,
        metavar="LR",
        default=defaults.learning_rate,
        help="peak Adam learning rate (cosine decay)",
    )
    parser.add_argument(
        "--samples",
        type=_count,
        metavar="N",
        default=defaults.samples,
        help="samples drawn per sampler",
    )
    parser.add_argument(
        "--sampler-steps",
        type=_count,
        metavar="N",
        default=defaults.sampler_steps,
        help="steps of every fixed-step sampler (default: per sampler, see below; "
        "makes ode take constant steps)",
    )
    parser.add_argument(
        "--seed", type=int, metavar="N", default=defaults.seed, help="PRNG seed"
    )
    parser.add_argument(
        "--output",
        metavar="DIR",
        default=defaults.output,
        help="output folder (created if missing)",
    )
    parser.add_argument(
        "--no-plots",
        dest="plots",
        action="store_false",
        help="skip the PNG plots (no matplotlib needed)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar or phase messages",
    )
    parser.set_defaults(command="demo", parser=parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `scorax` command."""
    from . import __version__

    parser = _Parser(
        prog=PROG,
        description="scorax: score matching and score-based generative models in JAX.",
        epilog="Run `scorax demo --help` for the demo's options.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    _add_demo_parser(commands)
    return parser


def demo_options(namespace: argparse.Namespace) -> DemoOptions:
    """The parsed arguments of `scorax demo` as `DemoOptions`."""
    fields = {field.name for field in dataclasses.fields(DemoOptions)}
    values = {name: getattr(namespace, name) for name in fields}
    values["samplers"] = tuple(dict.fromkeys(values["samplers"]))  # drop repeats
    return DemoOptions(**values)


def check_combination(options: DemoOptions) -> str | None:
    """A message if the options do not fit together (argparse cannot see this)."""
    discrete = [name for name in options.samplers if name in ("ddim", "ddpm")]
    if discrete and options.path != "vp":
        return (
            f"argument --sampler: {discrete[0]} samples the discrete DDPM schedule "
            f"of the vp path; use --path vp (got --path {options.path})"
        )
    if options.batch_size > NUM_TRAIN:
        return f"argument --batch-size: must be at most {NUM_TRAIN}"
    return None


# ------------------------------------------------------------------ the demo


class _Log:
    """Phase messages on stderr and the wall time of each phase."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.times: dict[str, float] = {}

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"{PROG} demo: {message}", file=sys.stderr, flush=True)

    @contextmanager
    def phase(self, name: str, message: str) -> Iterator[None]:
        """Time the enclosed block as `name`, announcing it with `message`."""
        self.say(message)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = time.perf_counter() - start


def sampling_range(path: AbstractGaussianPath) -> tuple[float, float]:
    """`(t_min, t_max)` for the samplers: stop short of t = 1 where alpha(1) = 0."""
    t_max = T_MAX_DIVERGENT if isinstance(path, CosinePath | LinearPath) else 1.0
    return T_MIN, t_max


def load_data(
    name: str, num: int, *, key: PRNGKeyArray
) -> tuple[Float[Array, "num 2"], GaussianMixture | None]:
    """`num` float32 points of the data set, and the mixture when it is one."""
    mixture = datasets.gaussian_mixture() if name == "gaussian_mixture" else None
    return _draw(name, num, mixture, key), mixture


@eqx.filter_jit
def _draw(
    name: str, num: int, mixture: GaussianMixture | None, key: PRNGKeyArray
) -> Float[Array, "num 2"]:
    """The draws of `load_data`, compiled (eager JAX dispatches op by op)."""
    if mixture is not None:
        return mixture.sample(key=key, sample_shape=(num,)).astype(jnp.float32)
    return getattr(datasets, name)(num, key=key).astype(jnp.float32)


def model_score(
    model: Any,
    path: AbstractGaussianPath,
    parameterisation: AbstractParameterisation,
    t: Float[Array, ""],
) -> Callable[[Float[Array, " d"]], Float[Array, " d"]]:
    """The model at time `t` read as a score, `x -> s_theta(x, t)`."""

    def score(x: Float[Array, " d"]) -> Float[Array, " d"]:
        return convert(
            path, model(x, t), x, t, source=parameterisation, target=ScorePrediction()
        )

    return score


def train(
    options: DemoOptions,
    path: AbstractGaussianPath,
    parameterisation: AbstractParameterisation,
    data: Float[Array, "n 2"],
    *,
    key: PRNGKeyArray,
) -> FitResult:
    """Fit a `ScoreMLP` with `diffusion_loss`, Adam with cosine decay and an EMA."""
    model_key, fit_key = jr.split(key)
    model = ScoreMLP((2,), width=options.width, depth=options.depth, key=model_key)
    weighting = cast(Weighting, options.weighting)

    def loss_fn(model: Any, x: Float[Array, " 2"], key: PRNGKeyArray) -> Array:
        return diffusion_loss(
            model,
            path,
            x,
            key=key,
            parameterisation=parameterisation,
            weighting=weighting,
        )

    schedule = optax.cosine_decay_schedule(
        options.learning_rate, options.steps, alpha=0.05
    )
    return fit(
        model,
        loss_fn,
        data,
        optimizer=optax.adam(schedule),
        num_steps=options.steps,
        batch_size=options.batch_size,
        key=fit_key,
        # An average over about the last 1% of the steps, or none for short runs.
        ema_decay=max(0.0, min(0.999, 1 - 10 / options.steps)),
        progress=not options.quiet,
    )


def make_sampler(
    name: str,
    options: DemoOptions,
    path: AbstractGaussianPath,
    parameterisation: AbstractParameterisation,
) -> tuple[Sampler, AbstractGaussianPath]:
    """The sampler `name` as `(model, x, key) -> SampleResult`, and the path whose
    prior it starts from."""
    t_min, t_max = sampling_range(path)
    steps = options.sampler_steps or SAMPLERS[name][1]
    common: dict[str, Any] = {"parameterisation": parameterisation}
    ranged = {**common, "t_min": t_min, "t_max": t_max}

    if name == "sde":
        return lambda m, x, k: reverse_sde_sample(
            m, path, x, key=k, num_steps=steps or 500, **ranged
        ), path
    if name == "ode":
        if options.sampler_steps is None:
            controller = dfx.PIDController(rtol=1e-4, atol=1e-4)
        else:
            controller = dfx.ConstantStepSize()
        return lambda m, x, k: probability_flow_sample(
            m,
            path,
            x,
            stepsize_controller=controller,
            num_steps=options.sampler_steps or 50,
            **ranged,
        ), path
    if name == "pc":
        # In two dimensions the corrector's step-size norms must be batch averages.
        return lambda m, x, k: predictor_corrector_sample(
            m,
            path,
            x,
            key=k,
            num_steps=steps or 250,
            axis_name=BATCH_AXIS,
            **ranged,
        ), path
    if name == "edm":
        return lambda m, x, k: edm_sample(
            m, path, x, num_steps=steps or 40, **ranged
        ), path
    if name in ("dpm1", "dpm2", "dpm3"):
        order = int(name[-1])
        return lambda m, x, k: dpm_solver_sample(
            m, path, x, num_steps=steps or 20, order=order, **ranged
        ), path
    if name in MULTISTEP:
        return lambda m, x, k: dpm_solver_pp_sample(
            m, path, x, num_steps=steps or 20, key=k, **MULTISTEP[name], **ranged
        ), path
    schedule = DDPMSchedule()
    if name == "ddim":
        return lambda m, x, k: ddim_sample(
            m, schedule, x, num_steps=min(steps or 100, schedule.num_steps), **common
        ), schedule.path
    if name == "ddpm":
        return lambda m, x, k: ddpm_sample(m, schedule, x, key=k, **common), (
            schedule.path
        )
    raise ValueError(f"`sampler` must be one of {', '.join(SAMPLERS)}, got {name!r}.")


def draw_samples(
    sampler: Sampler,
    model: Any,
    prior: AbstractGaussianPath,
    num: int,
    *,
    key: PRNGKeyArray,
) -> tuple[Float[Array, "num 2"], float]:
    """`num` samples from prior draws, vmapped and jitted, and the mean number of
    model evaluations per sample."""
    prior_key, sampler_key = jr.split(key)
    starts = prior.prior_sample(key=prior_key, shape=(num, 2), dtype=jnp.float32)
    keys = jr.split(sampler_key, num)

    @eqx.filter_jit
    def run(model: Any, starts: Array, keys: Array) -> SampleResult:
        return jax.vmap(lambda x, k: sampler(model, x, k), axis_name=BATCH_AXIS)(
            starts, keys
        )

    result = run(model, starts, keys)
    samples = jax.block_until_ready(result.sample)
    return samples, float(np.mean(np.asarray(result.num_evaluations, np.float64)))


def noise_to_signal_time(path: AbstractGaussianPath, ratio: float) -> float:
    """The time at which `sigma(t) / alpha(t)` equals `ratio` (clipped to the path)."""
    t = float(path.inverse_log_snr(-2 * math.log(ratio)))
    return min(max(t, T_MIN), 1.0)


@eqx.filter_jit
def fisher_at(
    model: Any,
    path: AbstractGaussianPath,
    parameterisation: AbstractParameterisation,
    mixture: GaussianMixture,
    t: Float[Array, ""],
    num: int,
    *,
    key: PRNGKeyArray,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """The Fisher divergence of the learned to the exact score of the diffused
    mixture at time `t`, on `num` draws of `x_t`, and the exact score's mean
    square (the divergence of the zero score)."""
    marginal = mixture.marginal(path, t)
    points = marginal.sample(key=key, sample_shape=(num,)).astype(jnp.float32)
    score = model_score(model, path, parameterisation, t.astype(jnp.float32))
    divergence = fisher_divergence(score, marginal.score, points)
    scale = jnp.mean(jnp.sum(jax.vmap(marginal.score)(points) ** 2, axis=-1))
    return divergence, scale


def fisher_report(
    model: Any,
    path: AbstractGaussianPath,
    parameterisation: AbstractParameterisation,
    mixture: GaussianMixture,
    num: int,
    *,
    key: PRNGKeyArray,
) -> list[dict[str, float | None]]:
    """`fisher_at` at the times where the noise-to-signal ratio
    `sigma(t) / alpha(t)` is each of `NOISE_TO_SIGNAL`, absolute and relative."""
    report = []
    for ratio, subkey in zip(
        NOISE_TO_SIGNAL, jr.split(key, len(NOISE_TO_SIGNAL)), strict=True
    ):
        t = noise_to_signal_time(path, ratio)
        divergence, scale = fisher_at(
            model,
            path,
            parameterisation,
            mixture,
            jnp.asarray(t, mixture.means.dtype),
            num,
            key=subkey,
        )
        report.append(
            {
                "t": t,
                "noise_to_signal": ratio,
                "fisher_divergence": _jsonable(float(divergence)),
                "relative": _jsonable(float(divergence / scale)),
            }
        )
    return report


@jax.jit
def _sliced_wasserstein(
    x: Float[Array, "n d"], y: Float[Array, "m d"], key: PRNGKeyArray
) -> Float[Array, ""]:
    """[`sliced_wasserstein`][scorax.sliced_wasserstein], compiled once."""
    return sliced_wasserstein(x, y, key=key, num_projections=NUM_PROJECTIONS)


def _jsonable(value: float) -> float | None:
    """JSON has no NaN or infinity: write those as null."""
    return value if math.isfinite(value) else None


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run the demo with `options` and return the summary it writes."""
    from . import __version__

    start = time.perf_counter()
    if options.plots:  # fail before training, not after, if matplotlib is missing
        from ._cli_plots import _pyplot

        _pyplot()
    log = _Log(options.quiet)
    output = pathlib.Path(options.output)
    output.mkdir(parents=True, exist_ok=True)
    path = PATHS[options.path]()
    parameterisation = OBJECTIVES[options.objective]()
    keys = dict(
        zip(
            ("data", "train", "sample", "metric"),
            jr.split(jr.key(options.seed), 4),
            strict=True,
        )
    )

    with log.phase("data", f"data set {options.dataset}, {NUM_TRAIN} points"):
        # One draw, split: training data, fresh data to compare samples with, and
        # a second fresh set for the noise floor of that comparison.
        points, mixture = load_data(
            options.dataset, NUM_TRAIN + 2 * options.samples, key=keys["data"]
        )
        data, fresh, floor = jnp.split(points, [NUM_TRAIN, NUM_TRAIN + options.samples])

    with log.phase(
        "train",
        f"training ScoreMLP (width {options.width}, depth {options.depth}) for "
        f"{options.steps} steps on the {options.path} path, {options.objective} "
        f"prediction, {options.weighting} weighting",
    ):
        result = train(options, path, parameterisation, data, key=keys["train"])
        losses = np.asarray(result.losses)
    model = result.ema_model if result.ema_model is not None else result.model

    samples: dict[str, Float[Array, "num 2"]] = {}
    sampler_summary: dict[str, dict[str, float | None]] = {}
    metric_key = keys["metric"]
    for name, sample_key in zip(
        options.samplers, jr.split(keys["sample"], len(options.samplers)), strict=True
    ):
        with log.phase(
            f"sample_{name}",
            f"sampling {options.samples} points: {SAMPLERS[name][0]}",
        ):
            sampler, prior = make_sampler(name, options, path, parameterisation)
            samples[name], evaluations = draw_samples(
                sampler, model, prior, options.samples, key=sample_key
            )
        distance = _sliced_wasserstein(samples[name], fresh, metric_key)
        sampler_summary[name] = {
            "sliced_wasserstein": _jsonable(float(distance)),
            "num_evaluations": evaluations,
            "wall_time_s": log.times[f"sample_{name}"],
        }

    def score_at(t: Float[Array, ""]) -> Callable[[Array], Array]:
        return model_score(model, path, parameterisation, t)

    with log.phase("metrics", "metrics: sliced Wasserstein, Fisher divergence"):
        floor_distance = float(_sliced_wasserstein(floor, fresh, metric_key))
        fisher = None
        if mixture is not None:
            fisher = fisher_report(
                model, path, parameterisation, mixture, options.samples, key=metric_key
            )

    files = ["summary.json"]
    if options.plots:
        with log.phase("plots", f"plots in {output}"):
            from . import _cli_plots

            plot_t = noise_to_signal_time(path, PLOT_NOISE_TO_SIGNAL)
            files += _cli_plots.write_plots(
                output,
                data=np.asarray(fresh),
                samples={name: np.asarray(value) for name, value in samples.items()},
                losses=losses,
                field=_cli_plots.ScoreField(
                    t=plot_t,
                    learned=score_at(jnp.asarray(plot_t, jnp.float32)),
                    exact=None if mixture is None else mixture.marginal(path, plot_t),
                    noised=np.asarray(noised(path, data, plot_t, key=metric_key)),
                ),
                titles={name: SAMPLERS[name][0].split(" (")[0] for name in samples},
            )

    tail = losses[-max(1, len(losses) // 10) :]
    summary: dict[str, Any] = {
        "scorax_version": __version__,
        "options": dataclasses.asdict(options),
        "backend": jax.default_backend(),
        "final_loss": _jsonable(float(np.mean(tail))),
        "samplers": sampler_summary,
        "sliced_wasserstein_noise_floor": floor_distance,
        "fisher_divergence": fisher,
        "wall_time_s": {},
        "files": files,
    }
    summary["wall_time_s"] = {"total": time.perf_counter() - start, **log.times}
    with open(output / "summary.json", "w") as file:
        json.dump(summary, file, indent=2)
        file.write("\n")
    return summary


@eqx.filter_jit
def noised(
    path: AbstractGaussianPath,
    data: Float[Array, "n 2"],
    t: float,
    *,
    key: PRNGKeyArray,
) -> Float[Array, "n 2"]:
    """The data diffused to time `t`: draws of `x_t`."""
    keys = jr.split(key, data.shape[0])
    return jax.vmap(lambda x, k: path.sample(x, t, key=k)[0])(data, keys)


def _report(summary: dict[str, Any], output: str) -> str:
    """A few lines for the terminal: the headline numbers and where the files are."""
    lines = [f"final loss {summary['final_loss']:.4g}"]
    floor = summary["sliced_wasserstein_noise_floor"]
    for name, values in summary["samplers"].items():
        distance = values["sliced_wasserstein"]
        shown = "nan" if distance is None else f"{distance:.4f}"
        lines.append(
            f"{name:<11} sliced Wasserstein {shown} (noise floor {floor:.4f}), "
            f"{values['num_evaluations']:.0f} model evaluations per sample"
        )
    for entry in summary["fisher_divergence"] or ():
        lines.append(
            f"Fisher divergence at t = {entry['t']:.3f}: "
            f"{entry['fisher_divergence']:.4g} (relative {entry['relative']:.3g})"
        )
    total = summary["wall_time_s"]["total"]
    lines.append(f"wrote {', '.join(summary['files'])} to {output} in {total:.1f} s")
    return "\n".join(lines)


EQUINOX_MARKER = "EquinoxRuntimeError: "


def _error_message(error: BaseException) -> str | None:
    """The one-line message for an error of the run, or `None` to let it propagate
    (a bug deserves its traceback). Argument errors (`ValueError`), files
    (`OSError`), a missing optional dependency (`ImportError`) and the runtime
    checks of traced code (`eqx.error_if`, raised as Equinox errors, or inside a
    JAX runtime error under plain `jax.jit`) are reported."""
    text = str(error)
    if isinstance(error, RuntimeError):
        if EQUINOX_MARKER in text:  # under jax.jit: buried in a callback traceback
            text = text.split(EQUINOX_MARKER, 1)[1]
        elif "Equinox" not in type(error).__name__:
            return None
    elif not isinstance(error, ValueError | OSError | ImportError):
        return None
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `scorax` command with `argv` (default: `sys.argv[1:]`); return the
    exit status."""
    parser = build_parser()
    namespace = parser.parse_args(argv)
    options = demo_options(namespace)
    problem = check_combination(options)
    if problem is not None:
        namespace.parser.error(problem)
    try:
        summary = run_demo(options)
    except Exception as error:
        message = _error_message(error)
        if message is None:
            raise
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    print(_report(summary, os.fspath(options.output)))
    return 0
