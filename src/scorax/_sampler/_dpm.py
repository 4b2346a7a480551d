r"""DPM-Solver (Lu et al. 2022a): single-step exponential integrators of order 1,
2 or 3 for the probability-flow ODE, with the model read as noise."""

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_count, to_count
from .._custom_types import IntScalarLike, RealScalarLike
from .._parameterisation import AbstractParameterisation, NoisePrediction
from .._path import AbstractGaussianPath, DDPMSchedule
from .._predict import Model
from ._abstract import AbstractMarkovSampler, Problem
from ._exponential import AbstractExponentialSampler
from ._grid import Node, Spacing
from ._loop import run
from ._result import SampleResult


class DPMSolver(AbstractExponentialSampler[Array], AbstractMarkovSampler):
    """DPM-Solver of order 1, 2 or 3; the state is the sample."""

    name: ClassVar[str] = "dpm_solver_sample"

    order: int = eqx.field(default=3, converter=to_count)
    spacing: Spacing = "log_snr"
    rho: RealScalarLike = 7.0

    def __check_init__(self):
        check_count(self.order, "order", maximum=3)

    def evaluations(self, num_steps: int) -> int:
        return self.order * num_steps

    def needs_key(self) -> bool:
        return False

    def step(
        self,
        problem: Problem,
        state: Array,
        s: Node,
        t: Node,
        key: PRNGKeyArray | Array,
        index: Array,
    ) -> tuple[Array, Array]:
        """One step from node s to node t, with intermediate nodes at ell_s + h/2
        (order 2) or ell_s + h/3, + 2h/3 (order 3), Lu et al. (2022a),
        Algorithms 1 and 2."""
        x = state
        h = t.ell - s.ell
        eps = self.noise(problem, x, s)
        nodes = self.nodes(problem)

        def first_order(node: Node) -> Array:
            return (
                node.alpha / s.alpha * x
                - node.sigma * jnp.expm1(node.ell - s.ell) * eps
            )

        phi = t.sigma * jnp.expm1(h)
        if self.order == 1:
            return first_order(t), x
        if self.order == 2:
            mid = nodes.at(s.ell + h / 2)
            r1 = (mid.ell - s.ell) / h
            eps1 = self.noise(problem, first_order(mid), mid)
            return first_order(t) - phi / (2 * r1) * (eps1 - eps), x
        one, two = nodes.at(s.ell + h / 3), nodes.at(s.ell + 2 * h / 3)
        r1, r2 = (one.ell - s.ell) / h, (two.ell - s.ell) / h
        eps1 = self.noise(problem, first_order(one), one)
        phi_22 = jnp.expm1(r2 * h) / (r2 * h) - 1
        u2 = first_order(two) - two.sigma * r2 / r1 * phi_22 * (eps1 - eps)
        eps2 = self.noise(problem, u2, two)
        correction = t.sigma * (jnp.expm1(h) / h - 1) / r2 * (eps2 - eps)
        return first_order(t) - correction, x


def dpm_solver_sample(
    model: Model,
    path: AbstractGaussianPath | DDPMSchedule,
    x: Float[Array, "*shape"],
    *,
    num_steps: IntScalarLike = 10,
    order: IntScalarLike = 3,
    spacing: Spacing = "log_snr",
    rho: RealScalarLike = 7.0,
    t_min: float = 1e-3,
    t_max: float = 1.0,
    parameterisation: AbstractParameterisation = NoisePrediction(),
    denoise: bool = True,
    trajectory: bool = False,
) -> SampleResult:
    r"""DPM-Solver (Lu et al. 2022a, "DPM-Solver: a fast ODE solver for diffusion
    probabilistic model sampling in around 10 steps"): single-step exponential
    integrators of order 1, 2 or 3 for the probability-flow ODE, with the model
    read as noise, on any Gaussian path or on the DDPM schedule.

    With $\ell = \log(\alpha/\sigma)$ the half log-SNR (half of
    [`log_snr`][scorax.AbstractGaussianPath.log_snr]), $h = \ell_t - \ell_s$ and
    $\hat\varepsilon_s = \hat\varepsilon(x_s, s)$, DPM-Solver-1 is

    $$x_t = \frac{\alpha_t}{\alpha_s} x_s - \sigma_t (e^h - 1)\,\hat\varepsilon_s,$$

    which is DDIM with $\eta = 0$. DPM-Solver-2 first takes that step to the node
    $u$ at $\ell_s + h/2$ and then

    $$x_t = \frac{\alpha_t}{\alpha_s} x_s - \sigma_t (e^h - 1)\,\hat\varepsilon_u;$$

    DPM-Solver-3 evaluates at $\ell_s + h/3$ and $\ell_s + 2h/3$ (Algorithm 2 of
    the paper, with $r_1 = 1/3$, $r_2 = 2/3$):

    $$x_t = \frac{\alpha_t}{\alpha_s} x_s - \sigma_t (e^h - 1)\,\hat\varepsilon_s
    - \frac{\sigma_t}{r_2}\left(\frac{e^h - 1}{h} - 1\right)
    (\hat\varepsilon_{s_2} - \hat\varepsilon_s).$$

    Order $k$ has local error $O(h^{k+1})$ and global error $O(h^k)$. The
    intermediate times come from
    [`inverse_log_snr`][scorax.AbstractGaussianPath.inverse_log_snr].

    **The grid** of `num_steps + 1` nodes runs from $t_\text{max}$ to
    $t_\text{min}$, uniform in $\ell$ (`spacing="log_snr"`, the paper's choice),
    uniform in $t$ (`"time"`), uniform in $\sqrt t$ (`"time_quadratic"`, the
    authors' code's option after DDIM's quadratic steps), or with the noise
    levels $e^{-\ell} = \sigma/\alpha$ $\rho$-spaced as in
    [`edm_sample`][scorax.edm_sample] (`"edm"`).

    **On a [`DDPMSchedule`][scorax.DDPMSchedule]** the grid runs from step $N$
    to step 1 with the discrete $\bar\alpha$; with `spacing="time"` its nodes are
    the steps $\tau_k$ of [`ddim_sample`][scorax.ddim_sample] with `num_steps + 1`
    steps, the model is called at $\tau_k / N$ and its output converted to noise on
    [`schedule.path`][scorax.DDPMSchedule.path], so that DPM-Solver-1 with the
    final denoising step is `ddim_sample(..., num_steps=num_steps + 1)` step for
    step (and so is DPM-Solver++ of order 1). Between steps (intermediate stages, other spacings) $\ell$ is
    interpolated linearly in $t$ and $\alpha^2 = 1 - \sigma^2 =
    \operatorname{sigmoid}(2\ell)$.

    **Arguments:**

    - `model`: called as `model(x_t, t)`, predicting `parameterisation`.
    - `path`: the Gaussian path the model was trained on, or a `DDPMSchedule`.
    - `x`: the starting point, a draw from
      [`prior_sample`][scorax.AbstractGaussianPath.prior_sample].
    - `num_steps`: the number of steps, $\ge 1$; default 10.
    - `order`: 1, 2 or 3; default 3.
    - `spacing`: `"log_snr"` (default), `"time"`, `"time_quadratic"` or `"edm"`.
    - `rho`: $\rho > 0$ for `spacing="edm"`; default 7.
    - `t_min`, `t_max`: the time interval, $0 \le t_\text{min} < t_\text{max} \le 1$ ($t_\text{min} = 0$ only on paths with $\sigma(0) > 0$),
      with $\alpha(t_\text{max}) > 0$ (paths with $\alpha(1) = 0$, `CosinePath` and
      `LinearPath`, need $t_\text{max} < 1$). With a `DDPMSchedule`, leave them
      at their defaults: the grid runs over the schedule's own steps.
    - `parameterisation`: what the model predicts; default `NoisePrediction()`.
    - `denoise`: finish with Tweedie's posterior mean $\hat x_0 = (x - \sigma
      \hat\varepsilon)/\alpha$ at the last node (one more evaluation).
    - `trajectory`: also return the `num_steps + 1` states on the grid, with
      their times (before the denoising step).

    **Returns:**

    A [`SampleResult`][scorax.SampleResult]; `num_evaluations` $=$ `order`
    $\times$ `num_steps` (+1 with `denoise`).
    """
    num_steps = check_count(num_steps, "num_steps")
    sampler = DPMSolver(order=order, spacing=spacing, rho=rho)
    problem = Problem(model, path, parameterisation, t_min, t_max)
    return run(
        sampler,
        problem,
        x,
        num_steps=num_steps,
        key=None,
        denoise=denoise,
        trajectory=trajectory,
    )
