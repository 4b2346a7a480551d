r"""The `scorax` command line (`python -m scorax ...` or the `scorax` script).

`scorax demo` is the newcomer's first run: it trains a [`ScoreMLP`][scorax.ScoreMLP]
with [`diffusion_loss`][scorax.diffusion_loss] on a 2-D toy data set (by default
the two-Gaussian mixture of [`scorax.datasets.gaussian_mixture`][scorax.datasets.gaussian_mixture],
whose diffused score is known exactly), draws samples with two samplers
([`get_sampler`][scorax.get_sampler]), and writes to the output folder:

- `samples.png`: fresh data beside each sampler's samples;
- `score_field.png`: the learned score at a small time as arrows over the
  density of $x_t$ (for the mixture, its exact density, and the exact score
  beside the learned one);
- `loss.png`: the training loss per step and its moving average;
- with `--conditional` (the mixture, whose classes are its components, or the
  two moons), the model is class-conditional, trained with label dropout 0.2
  (the other outputs read it with the null label, as the unconditional model),
  and `conditional.png` shows per class the samples with classifier-free
  guidance ([`classifier_free_guidance`][scorax.classifier_free_guidance]) at
  the first weight of `--guidance` over fresh data of that class, and a row
  across the guidance weights;
- `summary.json`, with the keys
    - `scorax_version`, `options` (every option used), `backend` (JAX's),
    - `final_loss`: the mean batch loss over the last 10% of the steps,
    - `samplers`: per sampler, `sliced_wasserstein` (to fresh data, see
      [`sliced_wasserstein`][scorax.sliced_wasserstein]), `num_evaluations`
      (mean model evaluations per sample) and `wall_time_s`,
    - `sliced_wasserstein_noise_floor`: the same distance between two fresh data
      sets of that size, the best a sampler can score,
    - `fisher_divergence`: for the mixture, a list of `{t, noise_to_signal,
      fisher_divergence, relative}` at a few noise-to-signal ratios
      ([`fisher_divergence_by_time`][scorax.fisher_divergence_by_time]); `null`
      for the other data sets,
    - `conditional`: with `--conditional`, the `sampler` used (the first of
      `--sampler`), `label_dropout`, `noise_floor` per class and a list
      `samples` of `{label, weight, sliced_wasserstein, class_posterior,
      num_evaluations}`: the distance to fresh data of the class, for the
      mixture the mean exact class posterior $\mathbb{E}[p(y \mid x)]$ of the
      samples (`null` otherwise), and the guided model's evaluations per sample
      (each runs the network on the class and the null label at once); `null`
      without `--conditional`,
    - `wall_time_s`: `total` and one entry per phase,
    - `files`: the files written.

Errors in the options exit with status 2 and a one-line message; a `ValueError`
raised by scorax during the run exits with status 1 as `scorax: error: ...`.
"""

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ._checks import runtime_message
from ._cli_demo import (
    DATASETS,
    DemoOptions,
    LABELLED,
    NOISE_TO_SIGNAL as NOISE_TO_SIGNAL,
    NUM_TRAIN,
    OBJECTIVES,
    PATHS,
    report,
    run_demo,
)
from ._objective import WEIGHTINGS
from ._sampler import get_sampler, sampler_table


# "edm" takes sigma_data from an EDMPrediction model, which the demo's objectives
# do not include.
DEMO_WEIGHTINGS = tuple(w for w in WEIGHTINGS if w != "edm")


PROG = "scorax"


def _parsed(kind: Callable[[str], Any], ok: Callable[[Any], bool], rule: str):
    """An argparse type: `kind(text)`, which must satisfy `ok`."""

    def parse(text: str) -> Any:
        try:
            value = kind(text.strip())
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return value

    return parse


def _listed(item: Callable[[str], Any]) -> Callable[[str], tuple]:
    """An argparse type: one `item`, or several separated by commas."""

    def parse(text: str) -> tuple:
        parts = [part for part in text.split(",") if part.strip()] or [text]
        return tuple(dict.fromkeys(map(item, parts)))  # repeats dropped

    return parse


_count = _parsed(int, lambda n: n >= 1, "an integer >= 1")
_rate = _parsed(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
_weight = _parsed(float, lambda w: math.isfinite(w) and w >= 0, "finite and >= 0")
_folder = _parsed(str, bool, "a folder name, not empty")
# The demo trains a diffusion model: every sampler of the table but the one that
# samples a consistency model.
DEMO_SAMPLERS = tuple(name for name in sampler_table() if name != "consistency")
_sampler = _parsed(
    str, DEMO_SAMPLERS.__contains__, f"one of {', '.join(DEMO_SAMPLERS)}"
)


class _Formatter(
    argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter
):
    """Defaults shown (not for flags), the hand-wrapped description kept."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit with status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


DESCRIPTION = """\
Train a time-conditional score model (ScoreMLP with diffusion_loss) on a 2-D toy
data set, draw samples with two samplers, and write to the output folder:
  samples.png      data beside each sampler's samples
  score_field.png  the learned score as arrows over the density at a small t
  loss.png         the training loss
  conditional.png  with --conditional: per class, guided samples over fresh
                   data of the class, and a row across the guidance weights
  summary.json     final loss; per sampler, the sliced Wasserstein distance to
                   fresh data and model evaluations; the Fisher divergence to the
                   exact score (mixture); per class and guidance weight (with
                   --conditional); wall times, options, version"""

EXAMPLES = """\
examples:
  scorax demo
  scorax demo --dataset two_moons --path cosine --objective velocity
  scorax demo --sampler sde,edm --steps 2000 --output /tmp/demo
  scorax demo --conditional --dataset two_moons --guidance 0,2,8"""

# Options with a value, besides the choices: (flag, type, metavar, help).
VALUED = (
    ("--steps", _count, "N", "training steps"),
    ("--batch-size", _count, "N", "batch size"),
    ("--width", _count, "N", "hidden width"),
    ("--depth", _count, "N", "hidden layers"),
    ("--learning-rate", _rate, "LR", "peak Adam learning rate (cosine decay)"),
    ("--samples", _count, "N", "samples drawn per sampler"),
    ("--sampler-steps", _count, "N", "steps of every sampler (default: see below)"),
    ("--seed", int, "N", "PRNG seed"),
    ("--output", _folder, "DIR", "output folder (created if missing)"),
)


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
    samplers = "\n".join(
        f"  {name:<11} {entry.description}"
        + (f"; {entry.num_steps} steps" if entry.num_steps else "")
        for name, entry in sampler_table().items()
        if name in DEMO_SAMPLERS
    )
    demo = commands.add_parser(
        "demo",
        help="train a score model on a 2-D toy data set, sample, write plots",
        formatter_class=_Formatter,
        description=DESCRIPTION,
        epilog=f"samplers (scorax.get_sampler; --sampler-steps replaces every "
        f"default,\nand ode then takes constant steps):\n{samplers}\n\n{EXAMPLES}",
    )
    defaults = DemoOptions()
    for flag, choices, text in (
        ("--dataset", DATASETS, "the training data (scorax.datasets)"),
        ("--path", tuple(PATHS), "the Gaussian path (ve, edm: sigma_max = 10)"),
        ("--objective", tuple(OBJECTIVES), "what the model predicts"),
        ("--weighting", DEMO_WEIGHTINGS, "the time weighting of diffusion_loss"),
    ):
        default = getattr(defaults, flag[2:])
        demo.add_argument(flag, choices=choices, default=default, help=text)
    demo.add_argument(
        "--sampler",
        dest="samplers",
        type=_listed(_sampler),
        default=",".join(defaults.samplers),
        metavar="NAME[,NAME...]",
        help="the samplers to compare (see below)",
    )
    for flag, kind, metavar, text in VALUED:
        default = getattr(defaults, flag[2:].replace("-", "_"))
        demo.add_argument(flag, type=kind, metavar=metavar, default=default, help=text)
    demo.add_argument(
        "--conditional",
        action="store_true",
        help="train a class-conditional model with label dropout and draw each "
        f"class with classifier-free guidance ({' or '.join(LABELLED)})",
    )
    demo.add_argument(
        "--guidance",
        type=_listed(_weight),
        metavar="W[,W...]",
        help="the guidance weights of --conditional (default: "
        f"{','.join(f'{w:g}' for w in defaults.guidance)})",
    )
    for flag, dest, action, text in (
        ("--no-plots", "plots", "store_false", "skip the PNGs (no matplotlib needed)"),
        ("--quiet", "quiet", "store_true", "no progress bar or phase messages"),
    ):
        demo.add_argument(flag, dest=dest, action=action, help=text)
    demo.set_defaults(command="demo", parser=demo)
    return parser


def demo_options(namespace: argparse.Namespace) -> DemoOptions:
    """The parsed arguments of `scorax demo` as `DemoOptions`."""
    values = {
        field.name: getattr(namespace, field.name)
        for field in dataclasses.fields(DemoOptions)
    }
    values["guidance"] = values["guidance"] or DemoOptions.guidance
    return DemoOptions(**values)


def check_combination(options: DemoOptions, guidance: bool = False) -> str | None:
    """A message if the options do not fit together (`guidance`: given or not)."""
    for name in options.samplers:
        try:
            get_sampler(name, PATHS[options.path](), num_steps=options.sampler_steps)
        except ValueError as error:
            option = "--sampler-steps" if "`num_steps`" in str(error) else "--sampler"
            return f"argument {option}: {name} with --path {options.path}: {error}"
    if options.batch_size > NUM_TRAIN:
        return f"argument --batch-size: must be at most {NUM_TRAIN}"
    if options.conditional and options.dataset not in LABELLED:
        return (
            f"argument --conditional: needs a data set with classes, "
            f"{' or '.join(LABELLED)}; got --dataset {options.dataset}"
        )
    if guidance and not options.conditional:
        return "argument --guidance: only with --conditional"
    return None


def _error_message(error: BaseException) -> str | None:
    """The one-line message for an error of the run, or `None` to let it propagate
    (a bug deserves its traceback). Argument errors (`ValueError`), files
    (`OSError`), a missing optional dependency (`ImportError`) and the runtime
    checks of traced code (`eqx.error_if`, raised as Equinox errors, or inside a
    JAX runtime error under plain `jax.jit`) are reported."""
    if isinstance(error, RuntimeError):
        if "EquinoxRuntimeError" not in str(error) + type(error).__name__:
            return None
    elif not isinstance(error, ValueError | OSError | ImportError):
        return None
    return runtime_message(error)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `scorax` command with `argv` (default: `sys.argv[1:]`); return the
    exit status."""
    namespace = build_parser().parse_args(argv)
    options = demo_options(namespace)
    problem = check_combination(options, guidance=namespace.guidance is not None)
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
    print(report(summary, os.fspath(options.output)))
    return 0
