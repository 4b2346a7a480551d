"""Samplers against the Gaussian-mixture oracle: exact flow maps, statistical
agreement with fresh data, Langevin invariance and exact evaluation counts."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given

import scorax
import scorax.testing

from .helpers import (
    assert_allclose,
    blurred,
    Gaussian,
    MIXTURE,
    PATHS_TO_T_MAX as FLOW_PATHS,
    random_mixture,
    RUNTIME_ERRORS,
    seeds,
    T_MIN,
    VP,
    without_runtime_type_checking,
)


VE = scorax.VEPath(sigma_min=0.01, sigma_max=20.0)
COSINE = scorax.CosinePath()
SCHEDULE = scorax.DDPMSchedule(num_steps=1000)
# The relative moment error the statistical sampler tests detect (power 0.99).
DETECT = 0.03


def exact(path, parameterisation=None, mixture=MIXTURE):
    return scorax.testing.ExactModel(
        mixture, path, parameterisation or scorax.ScorePrediction()
    )


def ncsn_model(x, sigma):
    """The exact noise-conditional score of the mixture blurred by N(0, sigma^2)."""
    return blurred(MIXTURE, sigma).score(x)


SIGMAS = scorax.geometric_sigmas(sigma_min=0.01, sigma_max=20.0, num_levels=10)

# Each sampler as (start kind, exact model, (model, start, key) -> SampleResult),
# with the exact model in a different parameterisation each, so that conversions
# are exercised too. The
# step counts are ones where the discretisation error is far below DETECT.
SAMPLERS = {
    "langevin": (
        "data",
        MIXTURE.score,
        lambda m, x, key: scorax.langevin(m, x, key=key, step_size=1e-3, num_steps=200),
    ),
    "annealed_langevin": (
        "uniform",
        ncsn_model,
        lambda m, x, key: scorax.annealed_langevin(
            m, SIGMAS, x, key=key, step_size=1e-4, steps_per_level=100
        ),
    ),
    "ddpm_beta": (
        "normal",
        exact(SCHEDULE.path, scorax.NoisePrediction()),
        lambda m, x, key: scorax.ddpm_sample(m, SCHEDULE, x, key=key),
    ),
    "ddpm_posterior": (
        "normal",
        exact(SCHEDULE.path, scorax.DataPrediction()),
        lambda m, x, key: scorax.ddpm_sample(
            m,
            SCHEDULE,
            x,
            key=key,
            parameterisation=scorax.DataPrediction(),
            variance="posterior",
        ),
    ),
    "ddim": (
        "normal",
        exact(SCHEDULE.path, scorax.NoisePrediction()),
        lambda m, x, key: scorax.ddim_sample(m, SCHEDULE, x, num_steps=200),
    ),
    "ddim_eta": (
        "normal",
        exact(SCHEDULE.path, scorax.NoisePrediction()),
        lambda m, x, key: scorax.ddim_sample(
            m,
            SCHEDULE,
            x,
            num_steps=500,
            eta=0.5,
            key=key,
        ),
    ),
    "reverse_sde_euler": (
        "prior",
        exact(VP, scorax.NoisePrediction()),
        lambda m, x, key: scorax.reverse_sde_sample(m, VP, x, key=key),
    ),
    "reverse_sde_shark": (
        "prior",
        exact(VP, scorax.VelocityPrediction()),
        lambda m, x, key: scorax.reverse_sde_sample(
            m,
            VP,
            x,
            key=key,
            solver=dfx.ShARK(),
            num_steps=100,
            parameterisation=scorax.VelocityPrediction(),
        ),
    ),
    "reverse_sde_adaptive": (
        "prior",
        exact(VP),
        lambda m, x, key: scorax.reverse_sde_sample(
            m,
            VP,
            x,
            key=key,
            solver=dfx.Heun(),
            stepsize_controller=dfx.PIDController(rtol=1e-2, atol=1e-2),
            num_steps=100,
            parameterisation=scorax.ScorePrediction(),
        ),
    ),
    "probability_flow": (
        "prior",
        exact(VP, scorax.VelocityPrediction()),
        lambda m, x, key: scorax.probability_flow_sample(
            m,
            VP,
            x,
            parameterisation=scorax.VelocityPrediction(),
        ),
    ),
    "predictor_corrector": (
        "prior",
        exact(VP, scorax.DataPrediction()),
        lambda m, x, key: scorax.predictor_corrector_sample(
            m,
            VP,
            x,
            key=key,
            num_steps=500,
            parameterisation=scorax.DataPrediction(),
            axis_name="batch",
        ),
    ),
    "predictor_corrector_ve": (
        "prior_ve",
        exact(VE, scorax.NoisePrediction()),
        lambda m, x, key: scorax.predictor_corrector_sample(
            m,
            VE,
            x,
            key=key,
            num_steps=500,
            axis_name="batch",
        ),
    ),
    "edm": (
        "prior_edm",
        exact(scorax.EDMPath(), scorax.DataPrediction()),
        lambda m, x, key: scorax.edm_sample(
            m,
            scorax.EDMPath(),
            x,
            num_steps=40,
            parameterisation=scorax.DataPrediction(),
        ),
    ),
    "edm_churn_vp": (
        "prior",
        exact(VP, scorax.NoisePrediction()),
        lambda m, x, key: scorax.edm_sample(
            m,
            VP,
            x,
            # 40 steps (gamma = 0.41) leave an error of about 5% in E[x^2];
            # the weak error falls as n^-2 (test_order), so 100 is far below.
            num_steps=100,
            churn=20.0,
            key=key,
        ),
    ),
    "dpm_solver_3_cosine": (
        "prior_cosine",
        exact(COSINE, scorax.VelocityPrediction()),
        lambda m, x, key: scorax.dpm_solver_sample(
            m,
            COSINE,
            x,
            num_steps=10,
            order=3,
            t_max=0.99,
            parameterisation=scorax.VelocityPrediction(),
        ),
    ),
    "dpm_solver_pp_3m_unic_ddpm": (
        "normal",
        exact(SCHEDULE.path, scorax.DataPrediction()),
        lambda m, x, key: scorax.dpm_solver_pp_sample(
            m,
            SCHEDULE,
            x,
            num_steps=25,
            order=3,
            corrector=True,
            spacing="time_quadratic",
            interpolation="time",
            parameterisation=scorax.DataPrediction(),
        ),
    ),
    "dpm_solver_pp_2m_sde": (
        "prior",
        exact(VP, scorax.NoisePrediction()),
        lambda m, x, key: scorax.dpm_solver_pp_sample(
            m,
            VP,
            x,
            num_steps=100,
            stochastic=True,
            key=key,
        ),
    ),
    "dpm_solver_pp_2m_sde_ddpm": (
        "normal",
        exact(SCHEDULE.path, scorax.DataPrediction()),
        lambda m, x, key: scorax.dpm_solver_pp_sample(
            m,
            SCHEDULE,
            x,
            num_steps=100,
            stochastic=True,
            key=key,
            spacing="time",
            interpolation="time",
            parameterisation=scorax.DataPrediction(),
        ),
    ),
}


def starts(kind: str, num: int):
    key = jr.key(11)
    if kind == "data":
        return MIXTURE.sample(key=key, sample_shape=(num,))
    if kind == "uniform":  # annealed Langevin starts from uniform noise
        return jr.uniform(key, (num, 2), minval=-8.0, maxval=8.0)
    if kind == "normal":
        return jr.normal(key, (num, 2))
    path = {
        "prior": VP,
        "prior_ve": VE,
        "prior_edm": scorax.EDMPath(),
        "prior_cosine": COSINE,
    }[kind]
    return jax.vmap(lambda k: path.prior_sample(key=k, shape=(2,)))(jr.split(key, num))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_with_exact_score_reaches_the_data(name):
    """scorax.testing.check_sampler at a stated power: fed the exact score, each
    sampler's samples are statistically indistinguishable from the data, with as
    many samples as it takes to detect any first or second moment off by 3% of
    its scale with probability 0.99 (about 60,000; every moment within 5
    standard errors of its exact value, the sliced Wasserstein distance within 5
    standard deviations of its two-sample noise floor), under `jit(vmap(...))`."""
    kind, model, sampler = SAMPLERS[name]
    # Every sampler here has its count checked below (the solver and loop count
    # tests), so the statistical check skips the second, counting compilation.
    report = scorax.testing.check_sampler(
        sampler,
        model,
        lambda key, n: starts(kind, n),
        MIXTURE,
        key=jr.key(12),
        detect=DETECT,
        num_counted=0,
    )
    assert report.detectable <= DETECT


def test_langevin_leaves_its_discrete_stationary_law_invariant():
    """For p = N(mu, Sigma) the unadjusted chain with step eps has the stationary
    law N(mu, V), V = Sigma (I - eps Sigma^{-1} / 2)^{-1}, exactly: started there,
    50 steps later mean and covariance are unchanged, each entry within 5 standard
    errors (estimated from the samples)."""
    mu = jnp.array([1.0, -2.0])
    sigma = jnp.array([[1.0, 0.6], [0.6, 2.0]])
    eps = 0.2  # large, so the O(eps) bias of the chain would show
    v = sigma @ jnp.linalg.inv(jnp.eye(2) - eps / 2 * jnp.linalg.inv(sigma))
    num = 20_000
    x = jr.multivariate_normal(jr.key(0), mu, v, (num,))
    precision = jnp.linalg.inv(sigma)

    def score(x):
        return -precision @ (x - mu)

    out = jax.jit(
        jax.vmap(
            lambda x, k: scorax.langevin(score, x, key=k, step_size=eps, num_steps=50)
        )
    )(x, jr.split(jr.key(1), num)).sample
    centred = out - mu[None]
    assert np.all(np.abs(jnp.mean(out, 0) - mu) <= 5 * jnp.std(out, 0) / num**0.5)
    products = centred[:, :, None] * centred[:, None, :]
    error = jnp.abs(jnp.mean(products, 0) - v)
    assert np.all(error <= 5 * jnp.std(products, 0) / num**0.5)
    # The invariance is specific: the continuous-time law N(mu, Sigma) is not kept.
    assert not np.all(
        jnp.abs(jnp.mean(products, 0) - sigma) <= 5 * jnp.std(products, 0) / num**0.5
    )


TIGHT = dfx.PIDController(rtol=1e-9, atol=1e-9)


@eqx.filter_jit
def flow(model, x, t_max):
    return scorax.probability_flow_sample(
        model,
        model.path,
        x,
        stepsize_controller=TIGHT,
        t_max=t_max,
        parameterisation=model.parameterisation,
        denoise=False,
    )


# Each path with a parameterisation, rotating so that every parameterisation
# runs (on one or two paths): the conversions themselves are exact on every
# path (test_parameterisation.py), what this checks is the flow.
_FLOW_PARAMETERISATIONS = [
    scorax.ScorePrediction(),
    scorax.NoisePrediction(),
    scorax.VelocityPrediction(),
    scorax.DataPrediction(),
]
FLOW_CASES = [
    (name, _FLOW_PARAMETERISATIONS[i % 4]) for i, name in enumerate(FLOW_PATHS)
]


@pytest.mark.parametrize(
    "name, parameterisation",
    FLOW_CASES,
    ids=[f"{name}-{type(p).__name__}" for name, p in FLOW_CASES],
)
@given(seed=seeds)
def test_probability_flow_is_the_exact_gaussian_transport_map(
    name, parameterisation, seed
):
    """For Gaussian data the probability-flow ODE is linear, and the sampler maps
    each prior point to exactly alpha mu + C_min C_max^{-1} (x - alpha mu) up to the
    solver tolerance (1e-9), on every path, each parameterisation on at least one."""
    path, t_max = FLOW_PATHS[name]
    mixture = random_mixture(seed, 1, 3, jnp.float64)
    x = path.sigma(t_max) * jr.normal(jr.key(seed + 1), (3,))
    result = flow(scorax.testing.ExactModel(mixture, path, parameterisation), x, t_max)
    expected = Gaussian.of(mixture).flow_map(path, x, t_max, T_MIN)
    scale = float(jnp.max(jnp.abs(expected))) + 1
    assert_allclose(result.sample, expected, rtol=0, atol=1e-6 * scale)


def test_ddim_with_eta_one_on_every_step_is_ddpm_with_posterior_variance():
    """sigma(eta = 1) is the posterior standard deviation and the DDIM mean is the
    DDPM mean, so given the same key the two samplers agree."""
    schedule = scorax.DDPMSchedule(num_steps=50)
    model = exact(schedule.path, scorax.NoisePrediction())
    x = jr.normal(jr.key(0), (2,))
    ddpm = scorax.ddpm_sample(model, schedule, x, key=jr.key(1), variance="posterior")
    ddim = scorax.ddim_sample(model, schedule, x, eta=1.0, key=jr.key(1))
    assert_allclose(ddim.sample, ddpm.sample, rtol=1e-10, atol=1e-10)


def test_edm_ends_on_the_denoiser():
    """The last EDM step is Euler to noise level 0, which is the denoiser's output
    at the last level: with one step the sampler returns D(x; sigma_max)."""
    path = scorax.EDMPath()
    model = exact(path, scorax.DataPrediction())
    x = 80.0 * jr.normal(jr.key(0), (2,))
    result = scorax.edm_sample(
        model, path, x, num_steps=1, parameterisation=scorax.DataPrediction()
    )
    assert_allclose(result.sample, MIXTURE.posterior_mean(path, x, 1.0), rtol=1e-10)
    assert int(result.num_evaluations) == 1


# --- Evaluation counts: every sampler reports the calls it made. ---------------

ODE_SOLVERS = [
    (dfx.Euler(), dfx.ConstantStepSize()),
    (dfx.Heun(), dfx.ConstantStepSize()),
    (dfx.Bosh3(), dfx.ConstantStepSize()),
    (dfx.Tsit5(), dfx.ConstantStepSize()),
    (dfx.Dopri8(), dfx.ConstantStepSize()),
    (dfx.Heun(), dfx.PIDController(rtol=1e-4, atol=1e-4)),
    (dfx.Bosh3(), dfx.PIDController(rtol=1e-6, atol=1e-6)),
    (dfx.Tsit5(), dfx.PIDController(rtol=1e-7, atol=1e-7)),
]
SDE_SOLVERS = [
    (dfx.Euler(), dfx.ConstantStepSize()),
    (dfx.EulerHeun(), dfx.ConstantStepSize()),
    (dfx.Heun(), dfx.ConstantStepSize()),
    (dfx.SEA(), dfx.ConstantStepSize()),
    (dfx.ShARK(), dfx.ConstantStepSize()),
    (dfx.GeneralShARK(), dfx.ConstantStepSize()),
    (dfx.ShARK(), dfx.PIDController(rtol=1e-2, atol=1e-2)),
]


def solver_id(pair):
    return f"{type(pair[0]).__name__}-{type(pair[1]).__name__}"


def check_count(run, model, x):
    """scorax.testing.check_evaluation_count: `run(model, x)` under jit reports
    the model evaluations it made, counted as they run."""
    scorax.testing.check_evaluation_count(
        lambda m, x, key: run(m, x), model, x[None], num_counted=1
    )


@pytest.mark.parametrize(
    "solver, controller", ODE_SOLVERS, ids=[solver_id(p) for p in ODE_SOLVERS]
)
def test_probability_flow_counts_its_evaluations(solver, controller):
    check_count(
        lambda model, x: scorax.probability_flow_sample(
            model,
            VP,
            x,
            solver=solver,
            stepsize_controller=controller,
            num_steps=20,
            parameterisation=scorax.ScorePrediction(),
        ),
        exact(VP),
        VP.prior_sample(key=jr.key(0), shape=(2,)),
    )


@pytest.mark.parametrize(
    "solver, controller", SDE_SOLVERS, ids=[solver_id(p) for p in SDE_SOLVERS]
)
def test_reverse_sde_counts_its_evaluations(solver, controller):
    check_count(
        lambda model, x: scorax.reverse_sde_sample(
            model,
            VP,
            x,
            key=jr.key(1),
            solver=solver,
            stepsize_controller=controller,
            num_steps=20,
            parameterisation=scorax.ScorePrediction(),
        ),
        exact(VP),
        VP.prior_sample(key=jr.key(0), shape=(2,)),
    )


LOOP_SAMPLERS = {
    "langevin": lambda m: scorax.langevin(
        lambda x: m(x, 0.5), jnp.zeros(2), key=jr.key(0), step_size=0.1, num_steps=7
    ),
    "annealed_langevin": lambda m: scorax.annealed_langevin(
        lambda x, sigma: m(x, 0.5),
        SIGMAS[:3],
        jnp.zeros(2),
        key=jr.key(0),
        steps_per_level=4,
    ),
    "ddpm": lambda m: scorax.ddpm_sample(
        m, scorax.DDPMSchedule(num_steps=9, beta_max=5.0), jnp.zeros(2), key=jr.key(0)
    ),
    "ddim": lambda m: scorax.ddim_sample(
        m, scorax.DDPMSchedule(num_steps=9, beta_max=5.0), jnp.zeros(2), num_steps=4
    ),
    "predictor_corrector": lambda m: scorax.predictor_corrector_sample(
        m, VP, jnp.zeros(2), key=jr.key(0), num_steps=5, corrector_steps=2
    ),
    "edm": lambda m: scorax.edm_sample(m, VP, jnp.ones(2), num_steps=6),
    "dpm_solver_3": lambda m: scorax.dpm_solver_sample(
        m, VP, jnp.ones(2), num_steps=3, order=3
    ),
    "dpm_solver_2_ddpm": lambda m: scorax.dpm_solver_sample(
        m,
        scorax.DDPMSchedule(num_steps=9, beta_max=5.0),
        jnp.ones(2),
        num_steps=4,
        order=2,
    ),
    "dpm_solver_pp_3m_unic": lambda m: scorax.dpm_solver_pp_sample(
        m,
        VP,
        jnp.ones(2),
        num_steps=5,
        order=3,
        corrector=True,
        interpolation="time",
        data_std=1.0,
    ),
    "dpm_solver_pp_2m_sde": lambda m: scorax.dpm_solver_pp_sample(
        m, VP, jnp.ones(2), num_steps=5, stochastic=True, key=jr.key(0), denoise=False
    ),
}


@pytest.mark.parametrize("name", list(LOOP_SAMPLERS))
def test_loop_samplers_count_their_evaluations(name):
    check_count(
        lambda model, x: LOOP_SAMPLERS[name](model),
        exact(VP, scorax.NoisePrediction()),
        jnp.zeros(2),
    )


# --- Trajectories. ---------------------------------------------------------------

TRAJECTORIES = {
    "langevin": lambda: scorax.langevin(
        MIXTURE.score,
        jnp.zeros(2),
        key=jr.key(0),
        step_size=0.1,
        num_steps=5,
        trajectory=True,
    ),
    "annealed_langevin": lambda: scorax.annealed_langevin(
        ncsn_model,
        SIGMAS[:3],
        jnp.zeros(2),
        key=jr.key(0),
        steps_per_level=2,
        trajectory=True,
        denoise=False,
    ),
    "ddpm": lambda: scorax.ddpm_sample(
        exact(SCHEDULE.path, scorax.NoisePrediction()),
        scorax.DDPMSchedule(num_steps=5, beta_max=4.0),
        jnp.ones(2),
        key=jr.key(0),
        trajectory=True,
    ),
    "ddim": lambda: scorax.ddim_sample(
        exact(SCHEDULE.path, scorax.NoisePrediction()),
        scorax.DDPMSchedule(num_steps=5, beta_max=4.0),
        jnp.ones(2),
        num_steps=3,
        trajectory=True,
    ),
    "reverse_sde": lambda: scorax.reverse_sde_sample(
        exact(VP, scorax.NoisePrediction()),
        VP,
        jnp.ones(2),
        key=jr.key(0),
        num_steps=5,
        trajectory=True,
        denoise=False,
    ),
    "probability_flow": lambda: scorax.probability_flow_sample(
        exact(VP, scorax.NoisePrediction()),
        VP,
        jnp.ones(2),
        num_steps=5,
        trajectory=True,
        denoise=False,
    ),
    "predictor_corrector": lambda: scorax.predictor_corrector_sample(
        exact(VP, scorax.NoisePrediction()),
        VP,
        jnp.ones(2),
        key=jr.key(0),
        num_steps=5,
        trajectory=True,
        denoise=False,
    ),
    "edm": lambda: scorax.edm_sample(
        exact(VP, scorax.NoisePrediction()),
        VP,
        jnp.ones(2),
        num_steps=5,
        trajectory=True,
    ),
    "dpm_solver": lambda: scorax.dpm_solver_sample(
        exact(VP, scorax.NoisePrediction()),
        VP,
        jnp.ones(2),
        num_steps=4,
        order=2,
        trajectory=True,
        denoise=False,
    ),
    "dpm_solver_pp": lambda: scorax.dpm_solver_pp_sample(
        exact(VP, scorax.NoisePrediction()),
        VP,
        jnp.ones(2),
        num_steps=5,
        order=3,
        corrector=True,
        trajectory=True,
        denoise=False,
    ),
}


@pytest.mark.parametrize("name", list(TRAJECTORIES))
def test_trajectory_runs_from_the_start_to_the_sample(name):
    result = TRAJECTORIES[name]()
    assert result.trajectory is not None and result.times is not None
    assert result.trajectory.shape[1:] == (2,)
    assert result.times.shape == result.trajectory.shape[:1]
    start = (
        jnp.ones(2) if name not in ("langevin", "annealed_langevin") else jnp.zeros(2)
    )
    assert_allclose(result.trajectory[0], start, rtol=1e-12)
    assert_allclose(result.trajectory[-1], result.sample, rtol=1e-9, atol=1e-12)
    steps = jnp.diff(result.times)
    assert bool(jnp.all(steps > 0)) or bool(jnp.all(steps <= 0))


# --- Bad input. --------------------------------------------------------------------


def bad_model(x, t):
    return jnp.zeros(x.shape[0] + 1)


BAD_CALLS = [
    (
        lambda: scorax.langevin(
            MIXTURE.score, jnp.zeros(2), key=jr.key(0), step_size=0.0, num_steps=3
        ),
        "step_size",
    ),
    (
        lambda: scorax.langevin(
            MIXTURE.score, jnp.zeros(2), key=jr.key(0), step_size=0.1, num_steps=0
        ),
        "num_steps",
    ),
    (
        lambda: scorax.langevin(
            lambda x: x[:1], jnp.zeros(2), key=jr.key(0), step_size=0.1, num_steps=3
        ),
        "model",
    ),
    (
        lambda: scorax.annealed_langevin(
            ncsn_model, SIGMAS[::-1], jnp.zeros(2), key=jr.key(0)
        ),
        "sigmas",
    ),
    (
        lambda: scorax.annealed_langevin(
            ncsn_model, SIGMAS, jnp.zeros(2), key=jr.key(0), step_size=-1.0
        ),
        "step_size",
    ),
    (
        lambda: scorax.annealed_langevin(
            ncsn_model, SIGMAS, jnp.zeros(2), key=jr.key(0), steps_per_level=0
        ),
        "steps_per_level",
    ),
    (
        lambda: scorax.ddpm_sample(bad_model, SCHEDULE, jnp.zeros(2), key=jr.key(0)),
        "model",
    ),
    (
        lambda: scorax.ddim_sample(exact(VP), SCHEDULE, jnp.zeros(2), num_steps=1001),
        "num_steps",
    ),
    (
        lambda: scorax.ddim_sample(
            exact(VP), SCHEDULE, jnp.zeros(2), eta=1.5, key=jr.key(0)
        ),
        "eta",
    ),
    (lambda: scorax.ddim_sample(exact(VP), SCHEDULE, jnp.zeros(2), eta=0.5), "key"),
    (
        lambda: scorax.reverse_sde_sample(
            exact(VP), VP, jnp.zeros(2), key=jr.key(0), t_min=0.0
        ),
        "t_min",
    ),
    (
        lambda: scorax.reverse_sde_sample(
            exact(VP), VP, jnp.zeros(2), key=jr.key(0), t_min=1.5
        ),
        "t_min",
    ),
    (
        lambda: scorax.reverse_sde_sample(
            exact(VP), VP, jnp.zeros(2), key=jr.key(0), t_max=1.2
        ),
        "t_max",
    ),
    (
        lambda: scorax.reverse_sde_sample(
            exact(VP), VP, jnp.zeros(2), key=jr.key(0), num_steps=0
        ),
        "num_steps",
    ),
    (
        lambda: scorax.reverse_sde_sample(
            exact(VP), VP, jnp.zeros(2), key=jr.key(0), solver=dfx.ImplicitEuler()
        ),
        "solver",
    ),
    (lambda: scorax.probability_flow_sample(bad_model, VP, jnp.zeros(2)), "model"),
    (
        lambda: scorax.probability_flow_sample(
            exact(VP), VP, jnp.zeros(2), t_min=0.5, t_max=0.4
        ),
        "t_max",
    ),
    (
        lambda: scorax.predictor_corrector_sample(
            exact(VP), VP, jnp.zeros(2), key=jr.key(0), snr=0.0
        ),
        "snr",
    ),
    (
        lambda: scorax.predictor_corrector_sample(
            exact(VP), VP, jnp.zeros(2), key=jr.key(0), corrector_steps=-1
        ),
        "corrector_steps",
    ),
    (lambda: scorax.edm_sample(exact(VP), VP, jnp.zeros(2), churn=1.0), "key"),
    (
        lambda: scorax.edm_sample(
            exact(VP), VP, jnp.zeros(2), churn=-1.0, key=jr.key(0)
        ),
        "churn",
    ),
    (lambda: scorax.edm_sample(exact(VP), VP, jnp.zeros(2), rho=0.0), "rho"),
    (lambda: scorax.edm_sample(exact(VP), scorax.CosinePath(), jnp.zeros(2)), "t_max"),
    (lambda: scorax.dpm_solver_sample(exact(VP), VP, jnp.zeros(2), order=4), "order"),
    (
        lambda: scorax.dpm_solver_sample(exact(VP), VP, jnp.zeros(2), num_steps=0),
        "num_steps",
    ),
    (lambda: scorax.dpm_solver_sample(bad_model, VP, jnp.zeros(2)), "model"),
    (
        lambda: scorax.dpm_solver_sample(exact(VP), VP, jnp.zeros(2), spacing="cosine"),
        "spacing",
    ),
    (
        lambda: scorax.dpm_solver_sample(
            exact(VP), VP, jnp.zeros(2), spacing="edm", rho=0.0
        ),
        "rho",
    ),
    (
        lambda: scorax.dpm_solver_sample(exact(VP), scorax.CosinePath(), jnp.zeros(2)),
        "t_max",
    ),
    (
        lambda: scorax.dpm_solver_sample(exact(VP), VP, jnp.zeros(2), t_min=0.0),
        "t_min",
    ),
    (
        lambda: scorax.dpm_solver_sample(exact(VP), SCHEDULE, jnp.zeros(2), t_min=0.01),
        "t_min",
    ),
    (
        lambda: scorax.dpm_solver_pp_sample(
            exact(VP), SCHEDULE, jnp.zeros(2), num_steps=1000, spacing="time"
        ),
        "num_steps",
    ),
    (
        lambda: scorax.dpm_solver_pp_sample(exact(VP), VP, jnp.zeros(2), order=0),
        "order",
    ),
    (
        lambda: scorax.dpm_solver_pp_sample(
            exact(VP), VP, jnp.zeros(2), stochastic=True
        ),
        "key",
    ),
    (
        lambda: scorax.dpm_solver_pp_sample(
            exact(VP), VP, jnp.zeros(2), order=3, stochastic=True, key=jr.key(0)
        ),
        "order",
    ),
    (
        lambda: scorax.dpm_solver_pp_sample(
            exact(VP), VP, jnp.zeros(2), corrector=True, stochastic=True, key=jr.key(0)
        ),
        "corrector",
    ),
    (
        lambda: scorax.dpm_solver_pp_sample(
            exact(VP), VP, jnp.zeros(2), interpolation="lambda"
        ),
        "interpolation",
    ),
    (
        lambda: scorax.dpm_solver_pp_sample(exact(VP), VP, jnp.zeros(2), data_std=-1.0),
        "data_std",
    ),
    (
        lambda: scorax.dpm_solver_pp_sample(
            exact(VP), VP, jnp.zeros(2), data_std=1.0, stochastic=True, key=jr.key(0)
        ),
        "data_std",
    ),
]


@pytest.mark.parametrize("call, name", BAD_CALLS)
def test_bad_sampler_arguments_name_the_argument(call, name):
    with without_runtime_type_checking(), pytest.raises(ValueError, match=f"`{name}`"):
        call()


def nan_below_half(x, t):
    return jnp.where(t < 0.5, jnp.nan, -x)


@pytest.mark.parametrize(
    "sampler",
    [
        lambda: scorax.reverse_sde_sample(
            nan_below_half, VP, jnp.ones(2), key=jr.key(0), num_steps=10
        ),
        lambda: scorax.probability_flow_sample(
            nan_below_half,
            VP,
            jnp.ones(2),
            stepsize_controller=dfx.ConstantStepSize(),
            num_steps=10,
        ),
        lambda: scorax.ddpm_sample(
            nan_below_half,
            scorax.DDPMSchedule(num_steps=10, beta_max=5.0),
            jnp.ones(2),
            key=jr.key(0),
        ),
        lambda: scorax.predictor_corrector_sample(
            nan_below_half, VP, jnp.ones(2), key=jr.key(0), num_steps=10
        ),
        lambda: scorax.edm_sample(nan_below_half, VP, jnp.ones(2), num_steps=4),
        lambda: scorax.dpm_solver_sample(nan_below_half, VP, jnp.ones(2), num_steps=4),
        lambda: scorax.dpm_solver_pp_sample(
            nan_below_half, VP, jnp.ones(2), num_steps=4, corrector=True
        ),
    ],
)
def test_a_nan_mid_solve_is_reported(sampler):
    with pytest.raises(RUNTIME_ERRORS, match="non-finite"):
        jax.block_until_ready(sampler())
    with pytest.raises(RUNTIME_ERRORS, match="non-finite"):
        jax.block_until_ready(jax.jit(sampler)())


def test_an_adaptive_solve_that_runs_out_of_steps_is_an_error():
    with pytest.raises(RUNTIME_ERRORS, match="max"):
        scorax.probability_flow_sample(
            exact(VP),
            VP,
            jnp.ones(2),
            max_steps=2,
            stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-10),
        )
