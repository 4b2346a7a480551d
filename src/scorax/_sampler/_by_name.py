r"""Samplers by name: one table of the time-conditional samplers with settings
that suit them, for code that picks a sampler at run time (a command line, a
configuration file, a sweep over samplers)."""

import dataclasses
import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, TypeAlias

import diffrax as dfx
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import (
    check_choice,
    check_consistency_model,
    check_count,
    check_time_range,
    is_concrete,
)
from .._custom_types import IntScalarLike
from .._parameterisation import AbstractParameterisation, NoisePrediction
from .._path import AbstractGaussianPath, DDPMSchedule, default_t_max, VPPath
from ._abstract import AbstractDenoisingSampler, AbstractSampler, Problem
from ._consistency import ConsistencySampler
from ._ddpm import DDIM, DDPM
from ._dpm import DPMSolver
from ._dpm_pp import DPMSolverPP
from ._edm import EDMHeun
from ._loop import run
from ._pc import PredictorCorrector
from ._result import SampleResult
from ._sde import probability_flow_sample, reverse_sde_sample


Sampler: TypeAlias = Callable[[Any, Float[Array, "*shape"], PRNGKeyArray], SampleResult]

# The DDIM entry's schedule has this many steps.
_DDIM_SCHEDULE_STEPS = 1000
# The adaptive ode sampler's first step is (t_max - t_min) / this.
_ADAPTIVE_FIRST_STEPS = 50


class SamplerEntry(NamedTuple):
    """One sampler of [`get_sampler`][scorax.get_sampler]'s table.

    **Fields:**

    - `description`: what it runs, in words, with the function it calls.
    - `num_steps`: its default number of steps (`None`: adaptive steps).
    """

    description: str
    num_steps: int | None


class _Entry(NamedTuple):
    """A row of the table: its public part, the method with its options (a
    scorax sampler, or the Diffrax solver of the reverse SDE or the
    probability-flow ODE), and whether `get_sampler`'s `data_std` sets the
    method's."""

    entry: SamplerEntry
    sampler: AbstractSampler | dfx.AbstractSolver
    takes_data_std: bool = False


def _row(
    description: str,
    num_steps: int | None,
    sampler: AbstractSampler | dfx.AbstractSolver,
    takes_data_std: bool = False,
) -> _Entry:
    return _Entry(SamplerEntry(description, num_steps), sampler, takes_data_std)


@functools.cache
def _samplers() -> dict[str, _Entry]:
    """The samplers by name, built on first use (building them touches JAX,
    which `import scorax` must not, so that `jax.distributed.initialize` can
    still run after it). The table in the docstring of `get_sampler` shows the
    same (a test checks that it does)."""
    return {
        "sde": _row(
            "reverse SDE, Euler-Maruyama (reverse_sde_sample)", 500, dfx.Euler()
        ),
        "ode": _row(
            "probability-flow ODE, adaptive Tsit5 (probability_flow_sample)",
            None,
            dfx.Tsit5(),
        ),
        "pc": _row(
            "predictor-corrector (predictor_corrector_sample)",
            250,
            PredictorCorrector(),
        ),
        "edm": _row("Heun, Karras et al. (edm_sample)", 40, EDMHeun()),
        "ddim": _row("DDIM, eta = 0 (ddim_sample; VPPath only)", 100, DDIM()),
        "ddpm": _row("ancestral DDPM (ddpm_sample; VPPath only)", 1000, DDPM()),
        "dpm1": _row(
            "DPM-Solver-1, DDIM on any path (dpm_solver_sample)", 20, DPMSolver(order=1)
        ),
        "dpm2": _row(
            "DPM-Solver-2, 2 evaluations a step (dpm_solver_sample)",
            10,
            DPMSolver(order=2),
        ),
        "dpm3": _row(
            "DPM-Solver-3, 3 evaluations a step (dpm_solver_sample)",
            7,
            DPMSolver(order=3),
        ),
        "dpm2m": _row(
            "DPM-Solver++(2M) (dpm_solver_pp_sample)", 20, DPMSolverPP(order=2)
        ),
        "dpm3m": _row(
            "DPM-Solver++(3M) (dpm_solver_pp_sample)", 20, DPMSolverPP(order=3)
        ),
        "dpm3m-unic": _row(
            "DPM-Solver++(3M) with UniC (dpm_solver_pp_sample)",
            20,
            DPMSolverPP(order=3, corrector=True),
        ),
        "dpm3m-time": _row(
            "DPM-Solver++(3M) with UniC, interpolated in time on the quadratic time "
            "grid, with data_std (dpm_solver_pp_sample)",
            20,
            DPMSolverPP(
                order=3,
                corrector=True,
                spacing="time_quadratic",
                interpolation="time",
            ),
            takes_data_std=True,
        ),
        "dpm2m-sde": _row(
            "DPM-Solver++(2M) SDE (dpm_solver_pp_sample)",
            50,
            DPMSolverPP(order=2, stochastic=True),
        ),
        "consistency": _row(
            "consistency model, one step or several (consistency_sample)",
            1,
            ConsistencySampler(),
        ),
    }


def sampler_table() -> Mapping[str, SamplerEntry]:
    """The samplers [`get_sampler`][scorax.get_sampler] knows, by name: a
    read-only mapping from each name to its
    [`SamplerEntry`][scorax.SamplerEntry] (description and default number of
    steps), in the order of `get_sampler`'s table. For command lines and sweeps
    that list or describe the samplers."""
    return MappingProxyType({name: row.entry for name, row in _samplers().items()})


class _Settings(NamedTuple):
    """What `get_sampler` resolved."""

    path: AbstractGaussianPath
    num_steps: int
    parameterisation: AbstractParameterisation
    t_min: float
    t_max: float
    axis_name: str | None
    adaptive: bool  # the ode entry: no `num_steps` given
    data_std: float | None


def _schedule(s: _Settings, name: str, num_steps: int) -> DDPMSchedule:
    """The DDPM schedule of the VPPath `s.path`, with `num_steps` steps."""
    if not isinstance(s.path, VPPath):
        raise ValueError(
            f"`path`: the {name} sampler runs on the discrete DDPM schedule, a view "
            f"of VPPath, so it needs a VPPath; got {type(s.path).__name__}."
        )
    beta_max = s.path.beta_max
    if is_concrete(beta_max) and not num_steps > beta_max:
        raise ValueError(
            f"`num_steps`: {name} runs a DDPM schedule of num_steps steps, which "
            f"needs num_steps > beta_max = {beta_max} of the path; got {num_steps}."
        )
    return DDPMSchedule(num_steps, beta_min=s.path.beta_min, beta_max=beta_max)


def _diffrax(name: str, solver: dfx.AbstractSolver, s: _Settings) -> Sampler:
    """The reverse SDE or the probability-flow ODE with a Diffrax solver."""
    ranged = {
        "parameterisation": s.parameterisation,
        "t_min": s.t_min,
        "t_max": s.t_max,
        "num_steps": s.num_steps,
    }
    if name == "sde":
        return lambda model, x, key: reverse_sde_sample(
            model, s.path, x, key=key, solver=solver, **ranged
        )
    if s.adaptive:
        controller = dfx.PIDController(rtol=1e-4, atol=1e-4)
    else:
        controller = dfx.ConstantStepSize()
    return lambda model, x, key: probability_flow_sample(
        model, s.path, x, solver=solver, stepsize_controller=controller, **ranged
    )


def _fixed_grid(name: str, entry: _Entry, s: _Settings) -> Sampler:
    """A scorax sampler on the path, or on its DDPM schedule (ddim, ddpm)."""
    sampler = entry.sampler
    assert isinstance(sampler, AbstractSampler)
    num_steps = s.num_steps
    path: AbstractGaussianPath | DDPMSchedule = s.path
    ranged = {"t_min": s.t_min, "t_max": s.t_max}
    if isinstance(sampler, DDPM):
        path, ranged = _schedule(s, name, num_steps), {}
    elif isinstance(sampler, DDIM):
        path, ranged = _schedule(s, name, _DDIM_SCHEDULE_STEPS), {}
        if num_steps > _DDIM_SCHEDULE_STEPS:
            raise ValueError(
                f"`num_steps`: ddim takes at most the {_DDIM_SCHEDULE_STEPS} steps "
                f"of the DDPM schedule, got {num_steps}."
            )
    elif isinstance(sampler, PredictorCorrector):
        sampler = dataclasses.replace(sampler, axis_name=s.axis_name)
    elif entry.takes_data_std:
        sampler = dataclasses.replace(sampler, data_std=s.data_std)
    elif isinstance(sampler, ConsistencySampler):
        sampler = dataclasses.replace(sampler, times=num_steps)

    def sample(model, x, key):
        times = ranged
        if isinstance(sampler, ConsistencySampler):
            times = {**ranged, "t_min": check_consistency_model(model)}
        problem = Problem(model, path, s.parameterisation, **times)
        return run(
            sampler,
            problem,
            x,
            num_steps=num_steps,
            key=key,
            denoise=isinstance(sampler, AbstractDenoisingSampler),
            trajectory=False,
        )

    return sample


def get_sampler(
    name: str,
    path: AbstractGaussianPath,
    *,
    num_steps: IntScalarLike | None = None,
    parameterisation: AbstractParameterisation = NoisePrediction(),
    t_min: float = 1e-3,
    t_max: float | None = None,
    axis_name: str | None = None,
    data_std: float | None = None,
) -> Sampler:
    r"""A sampler chosen by name, with settings that suit it, as
    `sampler(model, x, key) -> SampleResult` for one starting point.

    That is the protocol of [`scorax.testing.check_sampler`][] and
    [`inpaint`][scorax.inpaint], so a sampler picked at run time can be checked
    and used like any other:
    `scorax.testing.check_sampler(scorax.get_sampler("dpm2m", path), ...)`. For
    settings this table does not expose (solvers, tolerances, churn, spacing),
    call the sampler function itself.

    | name | sampler | default `num_steps` |
    | --- | --- | --- |
    | `sde` | reverse SDE, Euler-Maruyama ([`reverse_sde_sample`][scorax.reverse_sde_sample]) | 500 |
    | `ode` | probability-flow ODE, adaptive Tsit5 ([`probability_flow_sample`][scorax.probability_flow_sample]) | adaptive |
    | `pc` | predictor-corrector ([`predictor_corrector_sample`][scorax.predictor_corrector_sample]) | 250 |
    | `edm` | Heun, Karras et al. ([`edm_sample`][scorax.edm_sample]) | 40 |
    | `ddim` | DDIM, eta = 0 ([`ddim_sample`][scorax.ddim_sample]; VPPath only) | 100 |
    | `ddpm` | ancestral DDPM ([`ddpm_sample`][scorax.ddpm_sample]; VPPath only) | 1000 |
    | `dpm1` | DPM-Solver-1, DDIM on any path ([`dpm_solver_sample`][scorax.dpm_solver_sample]) | 20 |
    | `dpm2` | DPM-Solver-2, 2 evaluations a step ([`dpm_solver_sample`][scorax.dpm_solver_sample]) | 10 |
    | `dpm3` | DPM-Solver-3, 3 evaluations a step ([`dpm_solver_sample`][scorax.dpm_solver_sample]) | 7 |
    | `dpm2m` | DPM-Solver++(2M) ([`dpm_solver_pp_sample`][scorax.dpm_solver_pp_sample]) | 20 |
    | `dpm3m` | DPM-Solver++(3M) ([`dpm_solver_pp_sample`][scorax.dpm_solver_pp_sample]) | 20 |
    | `dpm3m-unic` | DPM-Solver++(3M) with UniC ([`dpm_solver_pp_sample`][scorax.dpm_solver_pp_sample]) | 20 |
    | `dpm3m-time` | DPM-Solver++(3M) with UniC, interpolated in time on the quadratic time grid, with data_std ([`dpm_solver_pp_sample`][scorax.dpm_solver_pp_sample]) | 20 |
    | `dpm2m-sde` | DPM-Solver++(2M) SDE ([`dpm_solver_pp_sample`][scorax.dpm_solver_pp_sample]) | 50 |
    | `consistency` | consistency model, one step or several ([`consistency_sample`][scorax.consistency_sample]) | 1 |

    Every other setting is the sampler function's default. `ode` takes adaptive
    steps (tolerances $10^{-4}$, first step $(t_\text{max} - t_\text{min})/50$)
    unless `num_steps` is given, and then exactly that many constant steps.
    `ddim` and `ddpm` run on the discrete [`DDPMSchedule`][scorax.DDPMSchedule]
    of the `VPPath` (its `beta_min` and `beta_max`): `ddim` on `num_steps` of its
    1000 steps, `ddpm` on all the steps of a schedule with `num_steps` steps
    (more than `beta_max`). The others run on any path. `consistency` takes a
    consistency model ([`ConsistencyModel`][scorax.ConsistencyModel]), whose own
    `t_min` it uses in place of `t_min`, and `num_steps` $\rho$-spaced times from
    `t_max`.

    **Arguments:**

    - `name`: a name from the table.
    - `path`: the Gaussian path the model was trained on; start the sampler from
      its [`prior_sample`][scorax.AbstractGaussianPath.prior_sample].
    - `num_steps`: the number of steps, $\ge 1$; default: the table's.
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `t_min`, `t_max`: the time interval of the samplers on a continuous path,
      $0 \le t_\text{min} < t_\text{max} \le 1$ ($t_\text{min} = 0$ only on paths with $\sigma(0) > 0$). The default `t_max` is 1, or 0.99
      on a path with $\alpha(1) = 0$ ([`CosinePath`][scorax.CosinePath],
      [`LinearPath`][scorax.LinearPath]), whose SDE and log-SNR diverge at
      $t = 1$. `ddim` and `ddpm` run over the schedule's own times: leave both
      at their defaults there.
    - `axis_name`: the name of the `jax.vmap` axis the sampler runs under, if
      any. `pc` then averages its corrector's step-size norms over the batch,
      which low-dimensional data needs (see
      [`predictor_corrector_sample`][scorax.predictor_corrector_sample]); the
      other samplers ignore it. [`scorax.testing.check_sampler`][] runs samplers
      under the axis name `"batch"`.
    - `data_std`: the data's standard deviation (for instance
      `float(jnp.std(data))`), for `dpm3m-time`, which integrates the linear part
      of $\mathcal{N}(0, \sigma_d^2 I)$ data exactly (see
      [`dpm_solver_pp_sample`][scorax.dpm_solver_pp_sample]); default `None`, the
      data prediction itself. The other samplers ignore it.

    **Returns:**

    The sampler, `sampler(model, x, key) -> SampleResult`, where `model(x_t, t)`
    predicts `parameterisation` and `key` is a JAX PRNG key (unused by the
    deterministic samplers). Batch it with `jax.vmap` and compile it with
    `jax.jit`.

    !!! example

        ```python
        path = scorax.VPPath()
        sampler = scorax.get_sampler("dpm2m", path, num_steps=15)
        x1 = path.prior_sample(key=jr.key(0), shape=(2,))
        sampler(model, x1, jr.key(1)).sample
        ```
    """
    check_choice(name, "name", tuple(_samplers()))
    entry = _samplers()[name]
    if num_steps is not None:
        num_steps = check_count(num_steps, "num_steps")
    on_schedule = isinstance(entry.sampler, (DDIM, DDPM))
    if on_schedule and (t_min != 1e-3 or t_max not in (None, 1.0)):
        raise ValueError(
            f"`t_min`, `t_max`: the {name} sampler runs over the DDPM schedule's own "
            f"times; leave them at their defaults, got t_min={t_min}, t_max={t_max}."
        )
    if t_max is None:
        t_max = default_t_max(path)
    check_time_range(t_min, t_max, path)
    steps = num_steps or entry.entry.num_steps or _ADAPTIVE_FIRST_STEPS
    settings = _Settings(
        path,
        steps,
        parameterisation,
        t_min,
        t_max,
        axis_name,
        adaptive=num_steps is None and entry.entry.num_steps is None,
        data_std=data_std,
    )
    if isinstance(entry.sampler, dfx.AbstractSolver):
        return _diffrax(name, entry.sampler, settings)
    return _fixed_grid(name, entry, settings)
