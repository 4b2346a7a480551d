"""The exponential integrators (DPM-Solver, DPM-Solver++, UniC) against exact
answers: DDIM step for step, the exact Gaussian transport map, and their order of
convergence on Gaussian mixtures against a tight reference solve.

Their evaluation counts, trajectories, bad arguments and the distribution of the
SDE variant's samples are checked with the other samplers in test_sampler.py."""

import functools

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import scorax
import scorax.testing

from .helpers import (
    assert_allclose,
    assert_rate,
    Gaussian,
    PATHS_TO_T_MAX as PATHS,
    random_gaussian,
    random_mixture,
    relative_tolerance,
    seeds,
    T_MIN,
)


SCORE = scorax.ScorePrediction()

# Each method with the order it claims. In the order tests the multistep methods
# run with `lower_order_final=False`: a first-order last step has a local error
# O(h^2) |d x0_hat / d ell|, small near the data (where the data prediction has
# settled) but of order 2, which would cap the asymptotic order of 3M at 2. The
# first-order warm-up step of 3M is corrected (UniC, no extra evaluation), so it
# keeps order 3 with the warm-up included.
METHODS = {
    "dpm_solver_1": (1, scorax.dpm_solver_sample, {"order": 1}),
    "dpm_solver_2": (2, scorax.dpm_solver_sample, {"order": 2}),
    "dpm_solver_3": (3, scorax.dpm_solver_sample, {"order": 3}),
    "dpm_solver_pp_2m": (
        2,
        scorax.dpm_solver_pp_sample,
        {"order": 2, "lower_order_final": False},
    ),
    "dpm_solver_pp_3m": (
        3,
        scorax.dpm_solver_pp_sample,
        {"order": 3, "lower_order_final": False},
    ),
    # UniC raises each corrected step by one order: 2M becomes third order. (3M
    # with UniC is fourth order on its interior steps, but its corrected warm-up
    # step, with a local error O(h^3), caps it at 3. Its error terms of orders 3
    # and 4 can cancel at particular step counts, so that its plain rate between
    # two step counts is irregular: it is tested on Gaussians only, where the
    # next-order term is eliminated first.)
    "dpm_solver_pp_2m_unic": (
        3,
        scorax.dpm_solver_pp_sample,
        {"order": 2, "corrector": True, "lower_order_final": False},
    ),
    "dpm_solver_pp_3m_unic": (
        3,
        scorax.dpm_solver_pp_sample,
        {"order": 3, "corrector": True, "lower_order_final": False},
    ),
    # The residual after N(0, 1)'s linear part, interpolated in ell: on data
    # that is not N(0, I) the residual is not zero, so the quadrature weights
    # carry the whole order (the isotropic test below only shows the linear part
    # exact).
    "dpm_solver_pp_3m_data_std": (
        3,
        scorax.dpm_solver_pp_sample,
        {"order": 3, "lower_order_final": False, "data_std": 1.0},
    ),
    # The residual after the linear part of N(0, data_std^2 I) data, interpolated
    # in time, on the quadratic time grid: the same orders. (Its error is far smaller
    # than 2M + UniC's at these step counts and still falls faster than h^3 on
    # mixtures, so it is not in EXACT_ORDER.)
    "dpm_solver_pp_2m_unic_time": (
        3,
        scorax.dpm_solver_pp_sample,
        {
            "order": 2,
            "corrector": True,
            "lower_order_final": False,
            "interpolation": "time",
            "data_std": 1.5,
            "spacing": "time_quadratic",
        },
    ),
}
# Methods whose error falls at order k and not faster on mixtures at these step
# counts, so that the order check with k + 1 must fail there: the check tells
# orders apart. (The third-order methods' next-order term is still comparable
# here; on Gaussian data the leading term of 3M nearly vanishes.)
EXACT_ORDER = (
    "dpm_solver_1",
    "dpm_solver_2",
    "dpm_solver_pp_2m",
    "dpm_solver_pp_2m_unic",
)


def solve(name, model, path, x, num_steps, t_max):
    """Method `name` from `x` at t_max to t_min, without the denoising step."""
    _, sampler, options = METHODS[name]
    return sampler(
        model,
        path,
        x,
        num_steps=num_steps,
        t_max=t_max,
        parameterisation=SCORE,
        denoise=False,
        **options,
    ).sample


@eqx.filter_jit
def pathwise_errors(name, model, path, x, reference, steps, t_max):
    """Mean Euclidean distance to `reference` over the starting points `x`, for
    each number of steps."""
    return jnp.stack(
        [
            jnp.mean(
                jnp.linalg.norm(
                    jax.vmap(lambda x, n=n: solve(name, model, path, x, n, t_max))(x)
                    - reference,
                    axis=-1,
                )
            )
            for n in steps
        ]
    )


def fitted_order(steps, errors) -> float:
    """The least-squares slope of -log2(error) against log2(steps)."""
    slope, _ = np.polyfit(np.log2(steps), -np.log2(np.asarray(errors)), 1)
    return float(slope)


def assert_order(steps, errors, order):
    """The error falls at least as fast as `steps^-order`, to within half an order.

    Adjacent orders differ by 1 in slope, so half an order below `order` is the
    widest band that still rejects order `order - 1`; within it, the next-order
    term may still shift the slope at these step counts (observed up to 0.4).
    The check is one-sided: an error that falls faster than claimed (the next
    term still comparable, or a leading constant that vanishes, as for 3M on
    Gaussian data, which falls as h^4 here) is no defect.
    """
    slope = fitted_order(steps, errors)
    assert slope >= order - 0.5, ("order", slope, "claimed", order, errors)


def gaussian_model(seed, path):
    """The exact score of a random two-dimensional Gaussian on `path` (the
    oracle's closed form, linear), and the Gaussian."""
    gaussian = random_gaussian(seed, 2)
    return gaussian.score_model(path), gaussian


# --- DDIM is DPM-Solver-1 ----------------------------------------------------------


def test_dpm_solver_1_is_ddim_step_for_step_on_the_ddpm_schedule():
    """On the DDPM schedule, with the grid on DDIM's steps (spacing="time"),
    DPM-Solver-1 and DPM-Solver++ of order 1 are DDIM with eta = 0: the same
    states at every step, and with the final denoising step the same sample and
    the same number of evaluations. The formulas differ only in rounding
    (sigma' (e^h - 1) for alpha' sigma / alpha - sigma'): relative_tolerance,
    1000 ulps, covers the few roundings per step over these 9 steps."""
    schedule = scorax.DDPMSchedule(num_steps=50)
    model, _ = gaussian_model(0, schedule.path)
    x = jr.normal(jr.key(1), (2,))
    ddim = eqx.filter_jit(scorax.ddim_sample)(
        model,
        schedule,
        x,
        num_steps=10,
        parameterisation=SCORE,
        trajectory=True,
    )
    assert ddim.trajectory is not None and ddim.times is not None
    scale = float(jnp.max(jnp.abs(ddim.trajectory)))
    for sampler in (scorax.dpm_solver_sample, scorax.dpm_solver_pp_sample):
        dpm = eqx.filter_jit(sampler)(
            model,
            schedule,
            x,
            num_steps=9,
            order=1,
            spacing="time",
            parameterisation=SCORE,
            trajectory=True,
        )
        assert dpm.trajectory is not None and dpm.times is not None
        tolerance = relative_tolerance(jnp.float64) * scale
        assert_allclose(dpm.trajectory, ddim.trajectory[:-1], rtol=0, atol=tolerance)
        assert_allclose(
            dpm.times, ddim.times[:-1], rtol=relative_tolerance(jnp.float64)
        )
        assert_allclose(dpm.sample, ddim.sample, rtol=0, atol=tolerance)
        assert int(dpm.num_evaluations) == int(ddim.num_evaluations) == 10


def test_first_order_sde_step_is_ddim_with_eta_one():
    """The SDE variant's first-order step, sigma_t/sigma_s e^{-h} x + alpha_t
    (1 - e^{-2h}) x0 + sigma_t (1 - e^{-2h})^{1/2} z, is the DDPM posterior, DDIM
    with eta = 1: with the same key (one key per step, split the same way; split
    keys are prefixes of each other under JAX's partitionable Threefry, the
    default) the two samplers agree to rounding."""
    schedule = scorax.DDPMSchedule(num_steps=50)
    model, _ = gaussian_model(2, schedule.path)
    x = jr.normal(jr.key(3), (2,))
    ddim = eqx.filter_jit(scorax.ddim_sample)(
        model, schedule, x, num_steps=10, eta=1.0, key=jr.key(4), parameterisation=SCORE
    )
    dpm = eqx.filter_jit(scorax.dpm_solver_pp_sample)(
        model,
        schedule,
        x,
        num_steps=9,
        order=1,
        stochastic=True,
        key=jr.key(4),
        spacing="time",
        parameterisation=SCORE,
    )
    scale = float(jnp.max(jnp.abs(ddim.sample))) + 1
    assert_allclose(
        dpm.sample, ddim.sample, rtol=0, atol=relative_tolerance(jnp.float64) * scale
    )


# --- The exact Gaussian transport map ----------------------------------------------


GAUSSIAN_STEPS = (16, 32, 64)
# Compilation dominates these tests: each method runs on one path (a compilation
# for each), the paths rotating so that every path is used, and Hypothesis draws
# the data and the starting points, which are traced and cost no compilation.
GAUSSIAN_PATHS = {
    "dpm_solver_1": "subvp",
    "dpm_solver_2": "edm",
    "dpm_solver_3": "linear",
    "dpm_solver_pp_2m": "cosine",
    "dpm_solver_pp_3m": "ve",
    "dpm_solver_pp_2m_unic": "vp",
    "dpm_solver_pp_2m_unic_time": "subvp",
    "dpm_solver_pp_3m_unic": "ve",
    "dpm_solver_pp_3m_data_std": "edm",
}


@eqx.filter_jit
def pathwise_differences(name, model, path, x, reference, steps, t_max):
    """Each method's sample minus `reference`, for each number of steps:
    (steps, points, dimension)."""
    return jnp.stack(
        [
            jax.vmap(lambda x, n=n: solve(name, model, path, x, n, t_max))(x)
            - reference
            for n in steps
        ]
    )


@pytest.mark.parametrize("name", list(METHODS))
@settings(max_examples=3)
@given(seed=seeds)
def test_each_solver_converges_to_the_exact_gaussian_transport_map(name, seed):
    """For Gaussian data the probability-flow map is alpha mu + C_min C_max^{-1}
    (x - alpha mu) exactly; each solver's distance to it falls at the solver's
    order from 16 to 64 steps, once the next-order term is eliminated
    (`helpers.assert_rate`).

    The solves start at t = 1/2, not at the noise end: there the data
    prediction hardly moves with the log-SNR (its derivative is of the order of
    the signal-to-noise ratio, below 1e-4 at t = 1 on VP), so an error of low
    order in the first steps (a warm-up step left uncorrected, which makes 3M
    with UniC second order) would stay below the higher-order error of the
    later steps at these step counts. The mixture tests below start at the
    noise end."""
    path, _ = PATHS[GAUSSIAN_PATHS[name]]
    t_max = 0.5
    model, gaussian = gaussian_model(seed, path)
    x = path.sigma(t_max) * jr.normal(jr.key(seed), (4, 2))
    exact = jax.vmap(lambda x: gaussian.flow_map(path, x, t_max, T_MIN))(x)
    differences = pathwise_differences(
        name, model, path, x, exact, GAUSSIAN_STEPS, t_max
    )
    # Far above rounding (~1e-13 here): the rate measured is the method's.
    assert float(jnp.max(jnp.abs(differences[-1]))) > 1e-10
    assert_rate(differences, METHODS[name][0])


# --- The order of convergence on mixtures ------------------------------------------

MIXTURE_STEPS = (16, 32, 64)
REFERENCE_TOLERANCE = 1e-10
# One path per method, as for the Gaussian, from three kinds of path (one
# reference solve to compile for each). Orders 1, 2 and 3 of both families, and
# UniC; DPM-Solver-2 (three model evaluations per step to compile for each of
# the three step counts) only on the Gaussian, to keep the test short.
MIXTURE_PATHS = {
    "dpm_solver_1": "ve",
    "dpm_solver_3": "vp",
    "dpm_solver_pp_2m": "cosine",
    "dpm_solver_pp_3m": "vp",
    "dpm_solver_pp_2m_unic": "ve",
    "dpm_solver_pp_2m_unic_time": "vp",
    "dpm_solver_pp_3m_data_std": "cosine",
}


@eqx.filter_jit
def reference_solve(model, path, x, t_max):
    """Tsit5 at rtol = atol = 1e-10 from each starting point to t_min."""
    return jax.vmap(
        lambda x: (
            scorax.probability_flow_sample(
                model,
                path,
                x,
                stepsize_controller=dfx.PIDController(
                    rtol=REFERENCE_TOLERANCE, atol=REFERENCE_TOLERANCE
                ),
                max_steps=100_000,
                t_max=t_max,
                parameterisation=SCORE,
                denoise=False,
            ).sample
        )
    )(x)


@pytest.mark.parametrize("name", list(MIXTURE_PATHS))
@settings(max_examples=3)  # mixtures are traced: one compilation per method
@given(seed=seeds)
def test_order_of_convergence_on_mixtures(name, seed):
    """On the exact score of a random three-component mixture, the pathwise error
    against a tight Tsit5 solve from the same starting points falls as
    steps^-k: the fitted slope over 16, 32 and 64 steps is at least k - 1/2 (see
    `assert_order`), and for the methods of exactly order k it is below
    k + 1/2, so the same check with k + 1 fails."""
    order = METHODS[name][0]
    path, t_max = PATHS[MIXTURE_PATHS[name]]
    model = scorax.testing.ExactModel(
        random_mixture(seed, 3, 2, jnp.float64), path, SCORE
    )
    x = path.sigma(t_max) * jr.normal(jr.key(seed), (4, 2))
    reference = reference_solve(model, path, x, t_max)
    errors = pathwise_errors(name, model, path, x, reference, MIXTURE_STEPS, t_max)
    # Far above the reference's own error (~1e-9): the rate measured is the method's.
    assert float(errors[-1]) > 100 * REFERENCE_TOLERANCE
    assert_order(MIXTURE_STEPS, errors, order)
    if name in EXACT_ORDER:
        with pytest.raises(AssertionError, match="order"):
            assert_order(MIXTURE_STEPS, errors, order + 1)


# --- The residual rule: data standard deviation, interpolation in time ------------


# The stated edge pinned for each rate: h = 8 with the farthest past nodes.
@example(h=8.0, gaps=[3.0, 3.0, 3.0], count=4, rate=1)
@example(h=8.0, gaps=[3.0, 3.0, 3.0], count=4, rate=2)
@settings(max_examples=10)
@given(
    h=st.floats(0.05, 8.0),
    gaps=st.lists(st.floats(0.1, 3.0), min_size=3, max_size=3),
    count=st.integers(1, 4),
    rate=st.sampled_from([1, 2]),
)
def test_quadrature_weights_equal_the_closed_form(h, gaps, count, rate):
    """The weights that have no closed form are Gauss-Legendre quadratures in
    ell; with the closed form's own integrand (data prediction, interpolated in
    ell) they equal it, on steps up to h = 8 and past nodes up to 9 behind, to
    1e-12 relative."""
    from scorax._sampler._grid import Node, PathNodes
    from scorax._sampler._multistep import Rule

    path = scorax.VPPath()
    ell_s = jnp.asarray(-1.0, jnp.float64)
    ells = jnp.concatenate([ell_s[None], ell_s - jnp.cumsum(jnp.asarray(gaps))])

    def node(ell):
        return Node(
            path.inverse_log_snr(2 * ell), jnp.ones_like(ell), jnp.ones_like(ell), ell
        )

    nodes = jax.vmap(node)(ells)
    s, t = node(ell_s), node(ell_s + h)
    count = jnp.asarray(count)
    closed = Rule(PathNodes(path), None, "log_snr", rate)
    quadrature = Rule(PathNodes(path), jnp.asarray(-jnp.inf), "log_snr", rate)
    exact = closed.weights(s, t, nodes, count, midpoint=False)
    assert_allclose(
        quadrature.weights(s, t, nodes, count, midpoint=False),
        exact,
        rtol=0,
        atol=1e-12 * float(jnp.max(jnp.abs(exact))),
    )


# Every path, the two interpolations alternating (each on three paths).
ISOTROPIC_CASES = [(name, ("log_snr", "time")[i % 2]) for i, name in enumerate(PATHS)]


@pytest.mark.parametrize(
    "name, interpolation",
    ISOTROPIC_CASES,
    ids=[f"{name}-{interpolation}" for name, interpolation in ISOTROPIC_CASES],
)
@settings(max_examples=5)
@given(data_std=st.floats(0.1, 10.0), seed=seeds)
def test_data_std_makes_isotropic_gaussian_data_exact(
    name, interpolation, data_std, seed
):
    """For data N(0, s^2 I) the probability-flow map is x S(t_min) / S(t_max),
    S = (alpha^2 s^2 + sigma^2)^{1/2}, and the residual after the linear part
    with `data_std` = s is zero: two steps of 3M with UniC are exact to
    rounding, on every path, each interpolation on three of them."""
    path, t_max = PATHS[name]
    x = jr.normal(jr.key(seed), (3,), jnp.float64)
    run = _isotropic_run(path, t_max, interpolation)
    sample, expected = run(jnp.asarray(data_std), x)
    assert_allclose(
        sample, expected, rtol=1e3 * relative_tolerance(jnp.float64), atol=0
    )


@functools.cache
def _isotropic_run(path, t_max, interpolation):
    @eqx.filter_jit
    def run(std, x):
        gaussian = Gaussian(jnp.zeros_like(x), std**2 * jnp.eye(x.shape[0]))
        sample = scorax.dpm_solver_pp_sample(
            gaussian.score_model(path),
            path,
            x,
            num_steps=2,
            order=3,
            corrector=True,
            interpolation=interpolation,
            data_std=std,
            t_max=t_max,
            parameterisation=SCORE,
            denoise=False,
        ).sample
        return sample, gaussian.flow_map(path, x, t_max, T_MIN)

    return run


# --- Other properties ---------------------------------------------------------------


def test_the_model_is_read_the_same_in_any_parameterisation():
    """Conversions are exact, so a model predicting the velocity (the farthest
    from the data prediction the multistep solver reads) gives the score model's
    sample, to rounding amplified by the conversions (1/alpha(t_max) ~ 150 on the
    VP path): 1000 x relative_tolerance."""
    path = scorax.VPPath()
    score, _ = gaussian_model(5, path)
    velocity = scorax.VelocityPrediction()

    def velocity_model(x, t):
        return scorax.convert(path, score(x, t), x, t, source=SCORE, target=velocity)

    x = jr.normal(jr.key(6), (2,))

    @eqx.filter_jit
    def run(model, parameterisation):
        return scorax.dpm_solver_pp_sample(
            model,
            path,
            x,
            num_steps=8,
            order=3,
            corrector=True,
            parameterisation=parameterisation,
        ).sample

    expected = run(score, SCORE)
    scale = float(jnp.max(jnp.abs(expected)))
    assert_allclose(
        run(velocity_model, velocity),
        expected,
        rtol=0,
        atol=1000 * relative_tolerance(jnp.float64) * scale,
    )


@pytest.mark.parametrize("spacing", ["log_snr", "time", "time_quadratic", "edm"])
def test_grids_run_from_t_max_to_t_min_as_asked(spacing):
    """The grid starts at t_max and ends at t_min; uniform in log-SNR, in time,
    or with the noise levels sigma/alpha rho-spaced."""
    path = scorax.VPPath()
    result = scorax.dpm_solver_sample(
        lambda x, t: -x,
        path,
        jnp.ones(2),
        num_steps=6,
        order=1,
        spacing=spacing,
        rho=3.0,
        t_max=0.9,
        t_min=0.01,
        trajectory=True,
    )
    assert result.times is not None
    times = np.asarray(result.times)
    assert_allclose(times[[0, -1]], [0.9, 0.01], rtol=relative_tolerance(jnp.float64))
    half_log_snr = np.asarray(jax.vmap(path.log_snr)(result.times)) / 2
    if spacing == "time":
        spaced = times
    elif spacing == "time_quadratic":
        spaced = np.sqrt(times)
    elif spacing == "log_snr":
        spaced = half_log_snr
    else:  # (sigma/alpha)^(1/rho) = e^{-ell/rho} is uniform
        spaced = np.exp(-half_log_snr / 3.0)
    steps = np.diff(spaced)
    assert_allclose(steps, np.full_like(steps, steps.mean()), rtol=1e-9)


def test_float32_in_float32_out():
    path = scorax.CosinePath()
    x = jnp.ones(2, jnp.float32)
    for sampler, options in (
        (scorax.dpm_solver_sample, {}),
        (scorax.dpm_solver_pp_sample, {"stochastic": True, "key": jr.key(0)}),
    ):
        result = eqx.filter_jit(sampler)(
            lambda x, t: -x, path, x, num_steps=3, t_max=0.99, **options
        )
        assert result.sample.dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(result.sample)))
