r"""Samplers by name: one table of the time-conditional samplers with settings
that suit them, for code that picks a sampler at run time (a command line, a
configuration file, a sweep over samplers)."""

from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias

import diffrax as dfx
from jaxtyping import Array, Float, PRNGKeyArray

from .._misc import check_choice, check_count, is_concrete
from .._parameterisation import AbstractParameterisation, NoisePrediction
from .._path import AbstractGaussianPath, DDPMSchedule, VPPath
from ._common import check_time_range, SampleResult
from ._ddpm import ddim_sample, ddpm_sample
from ._dpm import dpm_solver_pp_sample, dpm_solver_sample
from ._edm import edm_sample
from ._langevin import predictor_corrector_sample
from ._sde import probability_flow_sample, reverse_sde_sample


Sampler: TypeAlias = Callable[[Any, Float[Array, "*shape"], PRNGKeyArray], SampleResult]

# Where a path has alpha(1) = 0, its SDE and log-SNR diverge at t = 1: the
# samplers start from this time instead.
T_MAX_ALPHA_ZERO = 0.99
# The samplers of the discrete DDPM schedule, a view of VPPath.
_SCHEDULE_SAMPLERS = ("ddim", "ddpm")
# The adaptive ode sampler's first step is (t_max - t_min) / this.
_ADAPTIVE_FIRST_STEPS = 50


class _Settings(NamedTuple):
    """What `get_sampler` resolved, handed to the builder of one entry."""

    path: AbstractGaussianPath
    num_steps: int
    parameterisation: AbstractParameterisation
    t_min: float
    t_max: float
    axis_name: str | None
    adaptive: bool  # the ode entry: no `num_steps` given
    data_std: float | None

    @property
    def ranged(self) -> dict[str, Any]:
        """The keyword arguments every sampler on a continuous path takes."""
        return {
            "parameterisation": self.parameterisation,
            "t_min": self.t_min,
            "t_max": self.t_max,
        }


def _sde(s: _Settings) -> Sampler:
    def sampler(model, x, key):
        return reverse_sde_sample(
            model, s.path, x, key=key, num_steps=s.num_steps, **s.ranged
        )

    return sampler


def _ode(s: _Settings) -> Sampler:
    if s.adaptive:
        controller = dfx.PIDController(rtol=1e-4, atol=1e-4)
    else:
        controller = dfx.ConstantStepSize()

    def sampler(model, x, key):
        return probability_flow_sample(
            model,
            s.path,
            x,
            stepsize_controller=controller,
            num_steps=s.num_steps,
            **s.ranged,
        )

    return sampler


def _pc(s: _Settings) -> Sampler:
    def sampler(model, x, key):
        return predictor_corrector_sample(
            model,
            s.path,
            x,
            key=key,
            num_steps=s.num_steps,
            axis_name=s.axis_name,
            **s.ranged,
        )

    return sampler


def _edm(s: _Settings) -> Sampler:
    def sampler(model, x, key):
        return edm_sample(model, s.path, x, num_steps=s.num_steps, **s.ranged)

    return sampler


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


def _ddim(s: _Settings) -> Sampler:
    schedule = _schedule(s, "ddim", 1000)
    if s.num_steps > schedule.num_steps:
        raise ValueError(
            f"`num_steps`: ddim takes at most the {schedule.num_steps} steps of the "
            f"DDPM schedule, got {s.num_steps}."
        )

    def sampler(model, x, key):
        return ddim_sample(
            model,
            schedule,
            x,
            num_steps=s.num_steps,
            parameterisation=s.parameterisation,
        )

    return sampler


def _ddpm(s: _Settings) -> Sampler:
    schedule = _schedule(s, "ddpm", s.num_steps)

    def sampler(model, x, key):
        return ddpm_sample(
            model, schedule, x, key=key, parameterisation=s.parameterisation
        )

    return sampler


def _dpm(order: int) -> Callable[[_Settings], Sampler]:
    """DPM-Solver of this order."""

    def build(s: _Settings) -> Sampler:
        def sampler(model, x, key):
            return dpm_solver_sample(
                model, s.path, x, num_steps=s.num_steps, order=order, **s.ranged
            )

        return sampler

    return build


def _dpm_pp(
    *, data_std: bool = False, **options: Any
) -> Callable[[_Settings], Sampler]:
    """DPM-Solver++ with these options (and `get_sampler`'s `data_std`, if
    `data_std`)."""

    def build(s: _Settings) -> Sampler:
        residual = {"data_std": s.data_std} if data_std else {}

        def sampler(model, x, key):
            return dpm_solver_pp_sample(
                model,
                s.path,
                x,
                num_steps=s.num_steps,
                key=key,
                **options,
                **residual,
                **s.ranged,
            )

        return sampler

    return build


class _Entry(NamedTuple):
    description: str
    num_steps: int | None  # the default; None: adaptive steps
    build: Callable[[_Settings], Sampler]


# The samplers by name: what each runs and its default number of steps. The table
# in the docstring of `get_sampler` shows the same (a test checks that it does).
SAMPLERS: dict[str, _Entry] = {
    "sde": _Entry("reverse SDE, Euler-Maruyama (reverse_sde_sample)", 500, _sde),
    "ode": _Entry(
        "probability-flow ODE, adaptive Tsit5 (probability_flow_sample)", None, _ode
    ),
    "pc": _Entry("predictor-corrector (predictor_corrector_sample)", 250, _pc),
    "edm": _Entry("Heun, Karras et al. (edm_sample)", 40, _edm),
    "ddim": _Entry("DDIM, eta = 0 (ddim_sample; VPPath only)", 100, _ddim),
    "ddpm": _Entry("ancestral DDPM (ddpm_sample; VPPath only)", 1000, _ddpm),
    "dpm1": _Entry("DPM-Solver-1, DDIM on any path (dpm_solver_sample)", 20, _dpm(1)),
    "dpm2": _Entry(
        "DPM-Solver-2, 2 evaluations a step (dpm_solver_sample)", 10, _dpm(2)
    ),
    "dpm3": _Entry(
        "DPM-Solver-3, 3 evaluations a step (dpm_solver_sample)", 7, _dpm(3)
    ),
    "dpm2m": _Entry("DPM-Solver++(2M) (dpm_solver_pp_sample)", 20, _dpm_pp(order=2)),
    "dpm3m": _Entry("DPM-Solver++(3M) (dpm_solver_pp_sample)", 20, _dpm_pp(order=3)),
    "dpm3m-unic": _Entry(
        "DPM-Solver++(3M) with UniC (dpm_solver_pp_sample)",
        20,
        _dpm_pp(order=3, corrector=True),
    ),
    "dpm3m-time": _Entry(
        "DPM-Solver++(3M) with UniC, interpolated in time on the quadratic time "
        "grid, with data_std (dpm_solver_pp_sample)",
        20,
        _dpm_pp(
            order=3,
            corrector=True,
            spacing="time_quadratic",
            interpolation="time",
            data_std=True,
        ),
    ),
    "dpm2m-sde": _Entry(
        "DPM-Solver++(2M) SDE (dpm_solver_pp_sample)",
        50,
        _dpm_pp(order=2, stochastic=True),
    ),
}


def get_sampler(
    name: str,
    path: AbstractGaussianPath,
    *,
    num_steps: int | None = None,
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

    Every other setting is the sampler function's default. `ode` takes adaptive
    steps (tolerances $10^{-4}$, first step $(t_\text{max} - t_\text{min})/50$)
    unless `num_steps` is given, and then exactly that many constant steps.
    `ddim` and `ddpm` run on the discrete [`DDPMSchedule`][scorax.DDPMSchedule]
    of the `VPPath` (its `beta_min` and `beta_max`): `ddim` on `num_steps` of its
    1000 steps, `ddpm` on all the steps of a schedule with `num_steps` steps
    (more than `beta_max`). The others run on any path.

    **Arguments:**

    - `name`: a name from the table.
    - `path`: the Gaussian path the model was trained on; start the sampler from
      its [`prior_sample`][scorax.AbstractGaussianPath.prior_sample].
    - `num_steps`: the number of steps, $\ge 1$; default: the table's.
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `t_min`, `t_max`: the time interval of the samplers on a continuous path,
      $0 < t_\text{min} < t_\text{max} \le 1$. The default `t_max` is 1, or 0.99
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
    check_choice(name, "name", tuple(SAMPLERS))
    entry = SAMPLERS[name]
    if num_steps is not None:
        check_count(num_steps, "num_steps")
    if name in _SCHEDULE_SAMPLERS and (t_min, t_max) != (1e-3, None):
        raise ValueError(
            f"`t_min`, `t_max`: the {name} sampler runs over the DDPM schedule's own "
            f"times; leave them at their defaults, got t_min={t_min}, t_max={t_max}."
        )
    if t_max is None:
        alpha_one = path.alpha(1.0)
        vanishes = is_concrete(alpha_one) and not float(alpha_one) > 0
        t_max = T_MAX_ALPHA_ZERO if vanishes else 1.0
    check_time_range(t_min, t_max)
    steps = num_steps or entry.num_steps or _ADAPTIVE_FIRST_STEPS
    settings = _Settings(
        path,
        steps,
        parameterisation,
        t_min,
        t_max,
        axis_name,
        adaptive=num_steps is None and entry.num_steps is None,
        data_std=data_std,
    )
    return entry.build(settings)
