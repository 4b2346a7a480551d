r"""DPM-Solver++ (Lu et al. 2022b): multistep exponential integrators with the
model read as data, one evaluation per step, with an optional UniC corrector
(Zhao et al. 2023), and its SDE variant."""

from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._checks import check, check_choice, check_count, to_count
from .._custom_types import IntScalarLike, RealScalarLike
from .._parameterisation import AbstractParameterisation, NoisePrediction
from .._path import AbstractGaussianPath, DDPMSchedule
from .._predict import Model
from ._abstract import normal, Problem
from ._exponential import AbstractExponentialSampler
from ._grid import Node, Spacing
from ._loop import run
from ._multistep import (
    exponential_step,
    History,
    Interpolation,
    INTERPOLATIONS,
    join,
    Rule,
    step_orders,
)
from ._result import SampleResult


class _State(NamedTuple):
    """The sample, the interpolated values before it, and what UniC needs to take
    the last step again: its start, its node and its order; then each step's
    order and whether it corrects the step before."""

    x: Array
    history: History
    x_before: Array
    before: Node
    count_before: Int[Array, ""]
    orders: Int[Array, " num_steps"]
    corrections: Array


class DPMSolverPP(AbstractExponentialSampler[_State]):
    """DPM-Solver++ of order 1, 2 or 3 (one evaluation a step), its SDE variant
    (`stochastic`, order 1 or 2), UniC (`corrector`) and the residual after a
    Gaussian's linear part (`data_std`)."""

    name: ClassVar[str] = "dpm_solver_pp_sample"

    order: int = eqx.field(default=2, converter=to_count)
    stochastic: bool = False
    lower_order_final: bool = True
    corrector: bool = False
    spacing: Spacing = "log_snr"
    interpolation: Interpolation = "log_snr"
    data_std: RealScalarLike | None = None
    rho: RealScalarLike = 7.0

    def __check_init__(self):
        check_count(self.order, "order", maximum=3)
        check_choice(self.interpolation, "interpolation", INTERPOLATIONS)
        if self.stochastic and self.order == 3:
            raise ValueError(
                "`order` must be 1 or 2 with `stochastic=True` (DPM-Solver++(2M) "
                "SDE), got 3."
            )
        if self.stochastic and self.corrector:
            raise ValueError(
                "`corrector` must be False with `stochastic=True` (UniC corrects "
                "the deterministic steps only)."
            )
        if self.data_std is not None:
            if self.stochastic:
                raise ValueError(
                    "`data_std` must be None with `stochastic=True` (the SDE variant "
                    "integrates the data prediction's linear part only)."
                )
            self._data_std()

    def _data_std(self) -> Array:
        data_std = self.data_std
        assert data_std is not None
        return check(
            data_std,
            jnp.isfinite(data_std) & (jnp.asarray(data_std) >= 0),
            f"`data_std` must be finite and >= 0, got {data_std}.",
        )

    def evaluations(self, num_steps: int) -> int:
        return num_steps

    def needs_key(self) -> bool:
        return self.stochastic

    def rule(self, problem: Problem, dtype) -> Rule:
        log_data_std = None
        if self.data_std is not None:
            log_data_std = jnp.log(self._data_std().astype(dtype))
        rate = 2 if self.stochastic else 1
        return Rule(self.nodes(problem), log_data_std, self.interpolation, rate)

    def init(self, problem: Problem, x: Array, grid: Node) -> _State:
        num_steps = grid.t.shape[0] - 1
        orders, corrections = step_orders(
            self.order, num_steps, self.lower_order_final, self.corrector
        )
        # Before the first step: a history the warm-up never weighs (its order
        # ignores it), at distinct coordinates (before the grid's start) so that
        # every weight stays finite.
        first = jax.tree.map(lambda a: a[0], grid)
        offsets = jnp.arange(1, 4, dtype=x.dtype)
        history = History(
            jnp.stack([x, x, x]),
            jax.tree.map(lambda a: jnp.broadcast_to(a, (3,)), first)._replace(
                t=first.t + offsets, ell=first.ell - offsets
            ),
        )
        before = first._replace(t=first.t + 1, ell=first.ell - 1)
        return _State(
            x,
            history,
            x,
            before,
            jnp.asarray(0, jnp.int32),
            jnp.asarray(orders, jnp.int32),
            jnp.asarray(corrections),
        )

    def sample(self, state: _State, node: Node) -> Array:
        return state.x

    def step(
        self,
        problem: Problem,
        state: _State,
        s: Node,
        t: Node,
        key: PRNGKeyArray | Array,
        index: Array,
    ) -> tuple[_State, Array]:
        rule = self.rule(problem, state.x.dtype)
        x, history = state.x, state.history
        count = state.orders[index]
        m0 = self.data(problem, x, s)
        r0 = rule.residual(m0, x, s)
        if self.corrector or self.order == 3:
            # UniC: the step into s again, with the value at s (the model
            # evaluated at the predicted x) added to its interpolant, one order
            # higher.
            known = join(r0, s, history, 3)
            corrected = exponential_step(
                rule,
                state.x_before,
                state.before,
                s,
                known.values,
                known.nodes,
                state.count_before + 1,
                midpoint=False,
            )
            x = jnp.where(state.corrections[index], corrected, x)
        # The value at s stays the residual at the predicted state, where the
        # model was evaluated (not re-evaluated at the corrected state; moving
        # only its linear part there would leave the residual's own x-dependence
        # behind, which on near-Gaussian data is about -c dx and costs accuracy).
        history = join(r0, s, history, 2)
        x_t = exponential_step(
            rule, x, s, t, history.values, history.nodes, count, midpoint=True
        )
        if self.stochastic:
            z = normal(key, x)
            x_t = x_t + t.sigma * jnp.sqrt(-jnp.expm1(-2 * (t.ell - s.ell))) * z
        new = state._replace(
            x=x_t, history=history, x_before=x, before=s, count_before=count
        )
        return new, x


def dpm_solver_pp_sample(
    model: Model,
    path: AbstractGaussianPath | DDPMSchedule,
    x: Float[Array, "*shape"],
    *,
    num_steps: IntScalarLike = 20,
    order: IntScalarLike = 2,
    stochastic: bool = False,
    key: PRNGKeyArray | None = None,
    noise: Float[Array, " num_steps *shape"] | None = None,
    lower_order_final: bool = True,
    corrector: bool = False,
    spacing: Spacing = "log_snr",
    interpolation: Interpolation = "log_snr",
    data_std: RealScalarLike | None = None,
    rho: RealScalarLike = 7.0,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    parameterisation: AbstractParameterisation = NoisePrediction(),
    denoise: bool = True,
    trajectory: bool = False,
) -> SampleResult:
    r"""DPM-Solver++ (Lu et al. 2022b, "DPM-Solver++: fast solver for guided
    sampling of diffusion probabilistic models"): multistep exponential
    integrators with the model read as data, one model evaluation per step; its
    stochastic variant; and an optional UniC corrector (Zhao et al. 2023,
    "UniPC: a unified predictor-corrector framework for fast sampling of
    diffusion models"). On any Gaussian path or on the DDPM schedule.

    With $\ell = \log(\alpha/\sigma)$ the half log-SNR, $h_i = \ell_i -
    \ell_{i-1}$ and $\hat x_0^{(i)}$ the data prediction at node $i$, the
    first-order step is

    $$x_i = \frac{\sigma_i}{\sigma_{i-1}} x_{i-1} + \alpha_i (1 - e^{-h_i})\,
    \hat x_0^{(i-1)}$$

    (DDIM again). DPM-Solver++(2M) (Algorithm 2 of the paper) replaces
    $\hat x_0^{(i-1)}$ by $(1 + \tfrac{1}{2r_i})\hat x_0^{(i-1)} -
    \tfrac{1}{2r_i}\hat x_0^{(i-2)}$, $r_i = h_{i-1}/h_i$, reusing the previous
    step's evaluation. DPM-Solver++(3M) takes the quadratic through the last three
    data predictions, $\hat x_0^{(i-1)} + D_1 u + D_2 u^2$ in $u = (\ell -
    \ell_{i-1})/h_i$, and integrates it exactly:

    $$x_i = \frac{\sigma_i}{\sigma_{i-1}} x_{i-1} + \alpha_i\left[(1 -
    e^{-h_i})\, \hat x_0^{(i-1)} + I_1 D_1 + I_2 D_2\right], \qquad
    I_k = 1 - \frac{k}{h_i} I_{k-1}, \quad I_0 = 1 - e^{-h_i}.$$

    (Lu et al.'s reference code weighs $D_2$ by $I_2/2$, which makes 3M second
    order.) The first steps warm up with orders $1, 2, \dots$ as in the paper;
    scorax corrects the first-order warm-up step of 3M with UniC (below) at no
    extra evaluation, so that no step has a local error above $O(h^3)$ and 3M
    keeps order 3 globally. With `lower_order_final` (the default, as the
    authors recommend for few steps) the order comes down to 1 again over the
    last `order - 1` steps: steadier at very few steps, at the price of a local
    error $O(h^2)\,|\mathrm{d}\hat x_0/\mathrm{d}\ell|$ at the data end, small
    where the data prediction has settled but enough to cap the asymptotic order
    of 3M at 2; set it to `False` for the full order.

    With `corrector=True`, each step is followed by UniC: the evaluation at the
    new point, which the next step needs anyway, joins the interpolating
    polynomial and the step is taken again from the same starting point, one
    order higher at no extra evaluation (the new evaluation is not repeated at the
    corrected point; the last step is not corrected). scorax integrates the
    interpolant exactly rather than through UniC's $B(h)$ family.

    With `stochastic=True` this is DPM-Solver++(2M) SDE, which integrates the
    linear part of the reverse SDE and its Gaussian noise exactly,

    $$x_i = \frac{\sigma_i}{\sigma_{i-1}} e^{-h_i} x_{i-1} + \alpha_i (1 -
    e^{-2h_i})\, \bar x_0 + \sigma_i \sqrt{1 - e^{-2h_i}}\, z, \qquad
    z \sim \mathcal{N}(0, I),$$

    with $\bar x_0$ the same (midpoint) combination as in 2M; its first-order
    form is DDIM with $\eta = 1$.

    **The residual and its interpolation.** Two options change what the
    multistep steps interpolate, for data far from the regime the data prediction
    suits (it is exact only where $\hat x_0$ stays constant, that is near the
    data end of images). With `data_std` $= \sigma_d$, the data prediction is
    split as $\hat x_0 = c\, x + r$, where $c\, x$, $c = \alpha \sigma_d^2 / S^2$,
    $S^2 = \alpha^2\sigma_d^2 + \sigma^2$, is the posterior mean of $\mathcal{N}(0,
    \sigma_d^2 I)$ data (EDM's $c_\text{skip}$, Karras et al. 2022); that linear part
    is integrated exactly and only the residual $r$ is interpolated:

    $$x_i = \frac{S_i}{S_{i-1}} x_{i-1} + S_i \int_{\ell_{i-1}}^{\ell_i}
    \frac{e^{\ell}}{\sqrt{1 + \sigma_d^2 e^{2\ell}}}\, r\, \mathrm{d}\ell.$$

    It is exact for any step count on $\mathcal{N}(0, \sigma_d^2 I)$ data (where
    $r = 0$), and $\sigma_d = 0$ is DPM-Solver++; choosing the linear part to
    suit the data is the idea of DPM-Solver-v3 (Zheng et al. 2023, "DPM-Solver-v3:
    improved diffusion ODE solver with empirical model statistics"), here with
    the Gaussian's closed form instead of statistics estimated from the model.
    Set it to the data's standard deviation (the root mean square over
    coordinates, as EDM's $\sigma_\text{data}$). With `interpolation="time"`, the
    polynomial through the last values is one in $t$ rather than in $\ell$ (the
    $t$-AB of DEIS, Zhang & Chen 2023, "Fast sampling of diffusion models with
    exponential integrator"). Either way the weights are integrals of
    Lagrange polynomials against the kernel above, with no closed form; scorax
    takes them by 16-point Gauss-Legendre quadrature in $\ell$ (exact to rounding
    on the closed forms, tested), costing no model evaluation. In 2M these use
    the interpolant, not Lu et al.'s midpoint form. UniC adds its value at the
    new node to the same interpolant. How much these options gain at few steps
    on the seeds' mixture is measured by the `samplers` benchmark, whose
    figures are in `benchmarks/results/`.

    The grid (`spacing`, `rho`), the DDPM schedule and the model's
    parameterisation work as for [`dpm_solver_sample`][scorax.dpm_solver_sample].

    **Arguments:**

    - `model`, `path`, `x`, `spacing`, `rho`, `t_min`, `t_max`,
      `parameterisation`, `denoise`, `trajectory`: as for
      [`dpm_solver_sample`][scorax.dpm_solver_sample]; with `corrector=True` the
      trajectory holds the corrected states.
    - `num_steps`: the number of steps, $\ge 1$; default 20.
    - `order`: 1, 2 or 3 (1 or 2 with `stochastic=True`); default 2.
    - `stochastic`: the SDE variant; needs `key`.
    - `key`: a JAX PRNG key, for `stochastic=True` (or `noise`).
    - `noise`: the Gaussian draws, given instead of `key`: standard normal, of
      shape `(num_steps, *x.shape)`, `noise[k]` the draw of step $k$ (to couple
      runs with common random numbers, or to drive the sampler with a given
      path of Brownian increments).
    - `corrector`: apply UniC after each step (not with `stochastic=True`).
    - `interpolation`: `"log_snr"` (default, Lu et al.) or `"time"` (DEIS).
    - `data_std`: $\sigma_d \ge 0$, the data's standard deviation, whose
      Gaussian's linear part is integrated exactly; default `None`, the data
      prediction itself (DPM-Solver++). Not with `stochastic=True`.
    - `lower_order_final`: lower the order over the last `order - 1` steps;
      default `True`.

    **Returns:**

    A [`SampleResult`][scorax.SampleResult]; `num_evaluations` $=$ `num_steps`
    (+1 with `denoise`).
    """
    num_steps = check_count(num_steps, "num_steps")
    sampler = DPMSolverPP(
        order=order,
        stochastic=stochastic,
        lower_order_final=lower_order_final,
        corrector=corrector,
        spacing=spacing,
        interpolation=interpolation,
        data_std=data_std,
        rho=rho,
    )
    return run(
        sampler,
        Problem(model, path, parameterisation, t_min, t_max),
        x,
        num_steps=num_steps,
        key=key,
        noise=noise,
        denoise=denoise,
        trajectory=trajectory,
    )
