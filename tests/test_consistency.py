"""Consistency models against the exact consistency function of a Gaussian
mixture: the boundary condition of the parameterisation, the exact function's
constancy along the flow, one- and two-step sampling (check_sampler), the order of
the distillation loss in the teacher's step, the path's transition, the curricula,
the level draws, the recipes by name, `fit`'s target and step, and the errors."""

import dataclasses
import math

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.special as jss
import numpy as np
import optax
import pytest
from hypothesis import given, strategies as st

import scorax
import scorax.testing
from scorax._sampler import teacher_step

from .helpers import (
    assert_allclose,
    MIXTURE,
    random_array,
    VP,
    without_runtime_type_checking,
)


T_MIN = 1e-3
SCORE = scorax.ScorePrediction()
EXACT = scorax.testing.ExactConsistencyModel(MIXTURE, VP, t_min=T_MIN)
TEACHER = EXACT.score_model
NETWORK = scorax.ScoreMLP((2,), width=16, depth=2, key=jr.key(0))
DETECT = 0.03  # as in test_sampler: about 60,000 samples


@eqx.filter_jit
def _at(model, x, t, y=None):
    return model(x, t) if y is None else model(x, t, y)


@given(
    path=scorax.testing.gaussian_paths(),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    sigma_data=st.floats(0.05, 5.0),
    t_min=st.sampled_from([1e-4, 1e-3, 0.05, 0.5]),
    dtype=st.sampled_from([jnp.float32, jnp.float64]),
)
def test_the_boundary_condition_holds_exactly_for_any_network(
    path, seed, scale, sigma_data, t_min, dtype
):
    """f(x, t_min) = x bit for bit: c_skip = 1 and c_out = 0 there exactly, on
    every path, for any weights (scaled over six orders of magnitude), sigma_data,
    t_min and dtype. Away from t_min the network enters, so the check can fail."""
    network = jax.tree.map(
        lambda a: a * scale if eqx.is_inexact_array(a) else a, NETWORK
    )
    model = scorax.ConsistencyModel(network, path, sigma_data=sigma_data, t_min=t_min)
    x = random_array(seed, (2,), dtype, scale=3.0)
    assert np.array_equal(_at(model, x, jnp.asarray(t_min, dtype)), x)
    later = jnp.asarray((t_min + 0.9) / 2, dtype)
    assert not np.array_equal(_at(model, x, later), x)


def test_the_boundary_holds_for_a_conditional_unet():
    """The wrapper passes a label through to a class-conditional UNet, and its
    boundary condition holds there too."""
    unet = scorax.UNet((8, 8), channels=(8,), num_classes=3, key=jr.key(0))
    model = scorax.ConsistencyModel(unet, scorax.EDMPath(), t_min=1e-2)
    x = random_array(1, (8, 8), jnp.float32)
    boundary = eqx.filter_jit(lambda m, x, y: m(x, m.t_min, y))
    assert np.array_equal(boundary(model, x, 2), x)
    out = eqx.filter_jit(lambda m, x, y: m(x, 0.5, y))(model, x, 1)
    assert out.shape == x.shape and not np.array_equal(out, x)
    assert model.num_classes == 3


@pytest.mark.parametrize(("s", "t"), [(0.05, 1.0), (0.3, 0.7)])
@given(seed=st.integers(0, 2**16))
def test_the_exact_consistency_function_is_constant_along_the_flow(s, t, seed):
    """f*(x_t, t) = f*(x_s, s) where x_s is the probability-flow ODE's solution from
    (x_t, t) (the consistency function of boundary time s), and f*(x, t_min) = x.
    Both solves run at 1e-10: they agree to 1e-7, and a wrong flow (the reverse
    SDE's drift, or a sign) would be off by order one."""
    x = random_array(seed, (2,), jnp.float64, scale=2.0)
    to_s = scorax.testing.ExactConsistencyModel(MIXTURE, VP, t_min=s)
    x_s = _at(to_s, x, t)
    assert_allclose(_at(EXACT, x_s, s), _at(EXACT, x, t), rtol=1e-7, atol=1e-7)
    assert np.array_equal(_at(EXACT, x, T_MIN), x)


@pytest.mark.slow
def test_the_exact_consistency_function_is_differentiable():
    """Its Jacobian in x (reverse mode, through Diffrax's adjoint) equals central
    finite differences of step 1e-5, whose error is about 1e-10 here; a zero or
    wrong derivative would be off by order one (the flow contracts the prior onto
    the mixture)."""
    x, t = jnp.array([0.4, -0.3]), 0.8
    jacobian = jax.jit(jax.jacrev(EXACT), static_argnums=1)(x, t)
    step = 1e-5
    columns = [
        (_at(EXACT, x + step * e, t) - _at(EXACT, x - step * e, t)) / (2 * step)
        for e in jnp.eye(2)
    ]
    assert_allclose(jacobian, jnp.stack(columns, axis=1), rtol=1e-6, atol=1e-6)
    assert np.min(np.abs(np.linalg.eigvals(np.asarray(jacobian)))) > 1e-2


# 1e-6 is far below what 60,000 samples can detect (3%), and the solves are
# faster than at the default 1e-10.
SAMPLING_EXACT = dataclasses.replace(EXACT, rtol=1e-6, atol=1e-6)
SAMPLERS = {
    "one step": lambda model, x, key: scorax.consistency_sample(model, VP, x),
    "two given times": lambda model, x, key: scorax.consistency_sample(
        model, VP, x, times=(1.0, 0.3), key=key
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", SAMPLERS)
def test_consistency_sampling_with_the_exact_function_samples_the_data(name):
    """check_sampler against the mixture diffused to t_min: with the exact
    consistency function, one step from the prior and two given times each
    sample p_{t_min} (re-noising with the path's transition keeps the marginal
    of the path), and report one evaluation a step."""
    report = scorax.testing.check_sampler(
        SAMPLERS[name],
        SAMPLING_EXACT,
        lambda key, n: VP.prior_sample(key=key, shape=(n, 2)),
        MIXTURE.marginal(VP, T_MIN),
        detect=DETECT,
    )
    assert report.detectable <= DETECT


def test_consistency_sampling_by_name_and_by_count_of_times():
    """get_sampler("consistency", num_steps=2) is consistency_sample(times=2):
    the same samples from the same keys, on two rho-spaced times from 1 (their
    noise levels sigma/alpha rho-spaced with t_min's, as in edm_sample), two
    evaluations, and the trajectory start, re-noised point and sample at those
    times then t_min."""
    x = VP.prior_sample(key=jr.key(0), shape=(8, 2))
    keys = jr.split(jr.key(1), 8)
    by_name = scorax.get_sampler("consistency", VP, num_steps=2)
    named = jax.jit(jax.vmap(lambda x, k: by_name(SAMPLING_EXACT, x, k)))(x, keys)
    direct = jax.jit(
        jax.vmap(
            lambda x, k: scorax.consistency_sample(
                SAMPLING_EXACT, VP, x, times=2, key=k, trajectory=True
            )
        )
    )(x, keys)
    assert np.array_equal(named.sample, direct.sample)
    assert np.all(np.asarray(direct.num_evaluations) == 2)
    assert direct.times is not None and direct.trajectory is not None
    times = np.asarray(direct.times[0])
    level = lambda t: float(VP.noise_to_signal(t))  # noqa: E731
    middle = ((level(1.0) ** (1 / 7) + level(T_MIN) ** (1 / 7)) / 2) ** 7
    assert times[0] == 1.0 and times[-1] == T_MIN
    assert_allclose(level(times[1]), middle, rtol=1e-9)
    assert np.array_equal(direct.trajectory[:, 0], x)
    assert np.array_equal(direct.trajectory[:, -1], direct.sample)


def test_consistency_sampling_passes_the_label_to_a_conditional_model():
    """With `label`, the model is called as model(x, t, label): one step of the
    exact function of class 1 alone is that class's own map."""
    x = jnp.array([0.3, -1.2])
    sample = scorax.consistency_sample(SAMPLING_EXACT, VP, x, label=1).sample
    assert np.array_equal(sample, _at(SAMPLING_EXACT, x, 1.0, 1))
    assert not np.allclose(sample, _at(SAMPLING_EXACT, x, 1.0))


# The teacher's order p: the squared-distance loss is the step's local error,
# O(h^(p+1)), carried through f*, squared.
ORDERS = {"euler": 1, "heun": 2, "dpm1": 1, "dpm2": 2}


@pytest.mark.slow
def test_the_distillation_loss_vanishes_at_the_teacher_steps_order():
    """With the exact consistency function as model and target and the exact
    score as teacher, the CD loss of each sample falls as h^(2(p+1)) when the
    grid is refined from 33 to 65 levels (the same draws pick the same place on
    both, as DoublingCurriculum's steps 0 and 1): the median over 128 samples of
    log2 of the ratio is within 1/2 of 2(p+1), 4 for Euler and DPM-Solver-1 and 6
    for Heun and DPM-Solver-2, where the next lower order would give 2 less. (The
    median, as a few trajectories near the mixture's saddle make the mean
    pre-asymptotic.)"""
    recipe = scorax.ConsistencyRecipe(scorax.DoublingCurriculum(2, start=32, end=64))
    assert [int(recipe.discretisation.num_levels(k)) for k in (0, 1)] == [33, 65]
    x0 = MIXTURE.sample(key=jr.key(0), sample_shape=(128,))
    keys = jr.split(jr.key(1), 128)

    @jax.jit
    def rates(x0, keys):
        out = {}
        for method in ORDERS:

            def loss(x, key, step, method=method):
                return scorax.consistency_distillation_loss(
                    EXACT,
                    EXACT,
                    TEACHER,
                    VP,
                    x,
                    key=key,
                    step=step,
                    recipe=recipe,
                    method=method,
                    parameterisation=SCORE,
                )

            losses = jax.vmap(
                lambda step, loss=loss: jax.vmap(lambda x, k: loss(x, k, step))(
                    x0, keys
                )
            )(jnp.arange(2))
            out[method] = jnp.median(jnp.log2(losses[0] / losses[1]))
        return out

    for method, rate in rates(x0, keys).items():
        expected = 2 * (ORDERS[method] + 1)
        assert abs(float(rate) - expected) <= 0.5, (method, float(rate), expected)


@pytest.mark.parametrize("method", ["euler", "heun", "dpm1", "dpm2"])
def test_the_teacher_step_is_one_step_of_the_samplers(method):
    """`"euler"`/`"heun"` are one constant step of probability_flow_sample with
    diffrax.Euler/Heun, and `"dpm1"`/`"dpm2"` one step of dpm_solver_sample of
    that order, to rounding."""
    x = MIXTURE.sample(key=jr.key(2), sample_shape=(16,))
    s, t = 0.6, 0.45

    def ours(x):
        return teacher_step(
            TEACHER,
            VP,
            x,
            jnp.asarray(s),
            jnp.asarray(t),
            method=method,
            parameterisation=SCORE,
            t_min=T_MIN,
            t_max=1.0,
        )

    if method in ("euler", "heun"):

        def theirs(x):
            return scorax.probability_flow_sample(
                TEACHER,
                VP,
                x,
                solver=dfx.Euler() if method == "euler" else dfx.Heun(),
                stepsize_controller=dfx.ConstantStepSize(),
                num_steps=1,
                t_min=t,
                t_max=s,
                parameterisation=SCORE,
                denoise=False,
            ).sample
    else:

        def theirs(x):
            return scorax.dpm_solver_sample(
                TEACHER,
                VP,
                x,
                num_steps=1,
                order=int(method[-1]),
                t_min=t,
                t_max=s,
                parameterisation=SCORE,
                denoise=False,
            ).sample

    expected = jax.jit(jax.vmap(theirs))(x)
    assert_allclose(jax.jit(jax.vmap(ours))(x), expected, rtol=1e-12, atol=1e-12)
    assert not np.allclose(expected, x)


@given(
    path=scorax.testing.gaussian_paths(),
    fractions=st.tuples(*[st.floats(0.0, 1.0)] * 3),
)
def test_the_transition_composes_and_keeps_the_marginals(path, fractions):
    """Chapman-Kolmogorov: transition(s, u) then transition(u, t) is
    transition(s, t) (a_su a_ut = a_st, a_ut^2 b_su^2 + b_ut^2 = b_st^2), and it
    carries the marginal variance: a_st^2 sigma_s^2 + b_st^2 = sigma_t^2."""
    s, u, t = sorted(0.01 + 0.97 * f for f in fractions)
    a_su, b_su = path.transition(s, u)
    a_ut, b_ut = path.transition(u, t)
    a_st, b_st = path.transition(s, t)
    assert_allclose(a_su * a_ut, a_st, rtol=1e-9)
    assert_allclose(a_ut**2 * b_su**2 + b_ut**2, b_st**2, rtol=1e-9, atol=1e-15)
    assert_allclose(
        a_st**2 * path.sigma(s) ** 2 + b_st**2, path.sigma(t) ** 2, rtol=1e-9
    )


@given(
    num_steps=st.integers(1, 5000),
    start=st.integers(2, 40),
    span=st.integers(0, 300),
)
def test_the_curricula_follow_their_formulas(num_steps, start, span):
    """The square-root curriculum runs from N(0) = s0 to N(K) = s1 + 1, never
    decreasing; the doubling one from s0 + 1, doubling N - 1 every K' steps up to
    s1 + 1, and reaching it by step K when s1 / s0 is a power of two."""
    end = start + span
    k = jnp.arange(num_steps + 1)
    root = scorax.SquareRootCurriculum(num_steps, start, end).num_levels(k)
    assert int(root[0]) == start and int(root[-1]) == end + 1
    assert np.all(np.diff(np.asarray(root)) >= 0)
    inner = k / num_steps * ((end + 1) ** 2 - start**2) + start**2
    expected = np.ceil(np.sqrt(np.asarray(inner, np.float32)) - 1) + 1
    assert np.array_equal(root, np.clip(expected, start, end + 1))
    doubling = scorax.DoublingCurriculum(num_steps, start, end)
    levels = np.asarray(doubling.num_levels(k))
    interval = doubling.interval()
    assert levels[0] == start + 1 and np.all(levels <= end + 1)
    expected = np.minimum(start * 2 ** (np.asarray(k) // interval), end) + 1
    assert np.array_equal(levels, expected)
    power = math.log2(end // start)
    if end // start * start == end and power == int(power):
        assert levels[-1] == end + 1


def test_the_target_decay_follows_the_levels_in_the_original_recipe():
    """Original CT: mu(k) = exp(s0 log mu0 / N(k)), with mu(0) = mu0; the
    improved recipe's target is the model (mu = 0); original CD's is fixed."""
    recipe = scorax.consistency_recipe("original_ct", num_steps=1000)
    k = jnp.arange(0, 1001, 50)
    levels = recipe.discretisation.num_levels(k)
    expected = np.exp(2 * np.log(0.9) / np.asarray(levels))
    assert_allclose(recipe.decay(k), expected, rtol=1e-6)
    assert_allclose(recipe.decay(0), 0.9, rtol=1e-6)
    assert float(scorax.consistency_recipe("improved", num_steps=9).decay(5)) == 0
    assert float(scorax.consistency_recipe("original_cd", num_steps=9).decay(5)) == (
        np.float32(0.95)
    )


def test_the_recipes_by_name_are_the_papers():
    """The documented table: curriculum, draws, distance, weighting and target
    of each recipe."""
    improved = scorax.consistency_recipe("improved", num_steps=800)
    assert improved.discretisation == scorax.DoublingCurriculum(800, 10, 1280)
    assert (improved.level_sampling, improved.distance, improved.weighting) == (
        "lognormal",
        "pseudo_huber",
        "inverse_step",
    )
    assert (improved.lognormal_mean, improved.lognormal_std) == (-1.1, 2.0)
    assert improved.target_decay == 0
    ct = scorax.consistency_recipe("original_ct", num_steps=800)
    assert ct.discretisation == scorax.SquareRootCurriculum(800, 2, 150)
    assert (ct.level_sampling, ct.distance, ct.weighting) == (
        "uniform",
        "squared",
        "uniform",
    )
    assert ct.target_decay == 0.9 and ct.decay_follows_levels
    cd = scorax.consistency_recipe("original_cd", num_steps=800)
    assert cd.discretisation == scorax.FixedDiscretisation(18)
    assert cd.target_decay == 0.95 and not cd.decay_follows_levels


@pytest.mark.parametrize("distance", ["squared", "l1", "pseudo_huber"])
def test_the_distances_are_their_formulas(distance):
    """|a - b|^2, |a - b|_1 and sqrt(|a - b|^2 + c^2) - c with Song & Dhariwal's
    c = 0.00054 sqrt(d) by default, on data of d = 12 entries."""
    recipe = scorax.ConsistencyRecipe(scorax.FixedDiscretisation(4), distance=distance)
    a = random_array(0, (3, 4), jnp.float64)
    b = random_array(1, (3, 4), jnp.float64)
    diff = np.asarray(a - b).ravel()
    c = 0.00054 * math.sqrt(12)
    expected = {
        "squared": np.sum(diff**2),
        "l1": np.sum(np.abs(diff)),
        "pseudo_huber": np.sqrt(np.sum(diff**2) + c**2) - c,
    }[distance]
    assert_allclose(recipe.compare(a, b), expected, rtol=1e-12)


NUM_DRAWS = 20_000


@pytest.mark.parametrize("sampling", ["uniform", "lognormal"])
def test_the_level_pairs_follow_their_distribution(sampling):
    """Over 20,000 draws on EDMPath with 12 levels, the lower index n has
    frequencies within 5 standard errors (binomial) of the uniform law on
    {0, ..., 10} or of the discretised lognormal of improved training; the pair's
    times are those of the rho-spaced levels, t_min exactly at n = 0 and t_max
    exactly at the top; inverse_step weights are 1 / (sigma_{n+1} - sigma_n)."""
    path = scorax.EDMPath()
    recipe = scorax.ConsistencyRecipe(
        scorax.FixedDiscretisation(12),
        level_sampling=sampling,
        weighting="inverse_step",
    )
    draw = jax.jit(
        jax.vmap(lambda k: recipe.draw_pair(path, T_MIN, 0, key=k, dtype=jnp.float64))
    )
    pairs = draw(jr.split(jr.key(3), NUM_DRAWS))
    levels, _ = recipe.levels(path, T_MIN, 0, jnp.float64)
    levels = np.asarray(levels)
    if sampling == "uniform":
        probabilities = np.full(11, 1 / 11)
    else:
        cdf = np.asarray(jss.erf((np.log(levels) + 1.1) / (2**0.5 * 2.0)))
        probabilities = np.diff(cdf) / np.sum(np.diff(cdf))
    counts = np.bincount(np.asarray(pairs.n), minlength=11) / NUM_DRAWS
    error = np.sqrt(probabilities * (1 - probabilities) / NUM_DRAWS)
    assert np.all(np.abs(counts - probabilities) <= 5 * error), (counts, probabilities)
    n = np.asarray(pairs.n)
    assert np.all(np.asarray(pairs.t_low)[n == 0] == T_MIN)
    assert np.all(np.asarray(pairs.t_high)[n == 10] == 1.0)
    level_low = np.asarray(jax.vmap(path.noise_to_signal)(pairs.t_low))
    level_high = np.asarray(jax.vmap(path.noise_to_signal)(pairs.t_high))
    assert_allclose(level_low, levels[n], rtol=1e-9)
    assert_allclose(level_high, levels[n + 1], rtol=1e-9)
    assert_allclose(pairs.weight, 1 / (levels[n + 1] - levels[n]), rtol=1e-12)


def _cm():
    network = scorax.ScoreMLP((2,), width=16, depth=2, key=jr.key(4))
    return scorax.ConsistencyModel(network, VP)


DATA = MIXTURE.sample(key=jr.key(5), sample_shape=(512,))
RECIPE = scorax.consistency_recipe("original_ct", num_steps=12)


def _ct_loss(model, x, key, step, target):
    return scorax.consistency_training_loss(
        model, target, VP, x, key=key, step=step, recipe=RECIPE
    )


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def test_fit_keeps_the_target_by_its_rule_and_resumes_it_exactly(tmp_path):
    """fit's target follows theta- <- mu theta- + (1 - mu) theta with mu(k) a
    function of the step: at mu = 0.7 it is the EMA of decay 0.7, leaf for leaf
    (the recipes' mu(k) values are checked in
    test_the_target_decay_follows_the_levels_in_the_original_recipe). A run
    stopped at step 4 and resumed to 8 equals an uninterrupted run bit for bit,
    target included; a loss that takes `step` is given the step index. (One
    chunk length throughout, so the steps compile once.)"""
    common = dict(
        optimizer=optax.adam(1e-2),
        batch_size=16,
        key=jr.key(6),
        progress=False,
        steps_per_chunk=4,
        ema_decay=0.7,
    )

    def decay(step):
        return 0.7

    straight = scorax.fit(
        _cm(), _ct_loss, DATA, num_steps=8, target_decay=decay, **common
    )
    ema, target = _leaves(straight.ema_model), _leaves(straight.target_model)
    for a, b in zip(ema, target, strict=True):
        assert np.array_equal(a, b)
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(_leaves(straight.model), target, strict=True)
    )
    checkpoint = tmp_path / "ct.eqx"
    for num_steps in (4, 8):
        resumed = scorax.fit(
            _cm(),
            _ct_loss,
            DATA,
            num_steps=num_steps,
            target_decay=decay,
            checkpoint=checkpoint,
            **common,
        )
    for a, b in zip(_leaves(straight), _leaves(resumed), strict=True):
        assert np.array_equal(a, b)

    def steps(model, x, key, step):
        return 0 * jnp.sum(model.network(x, 0.0)) + step

    counted = scorax.fit(_cm(), steps, DATA, num_steps=8, **common)
    assert np.array_equal(counted.losses, np.arange(8))


def test_improved_training_runs_in_fit_without_a_target_copy():
    """The improved recipe's target is the model itself (target_model=None): fit
    passes the step alone, keeps no target, and trains through the doubling
    curriculum (N = 11 to 1281 levels over the run) with finite losses. (Its loss
    need not fall: the target moves, and the weights 1 / (sigma_{n+1} - sigma_n)
    grow as N doubles; sample quality is measured in the consistency
    benchmark.)"""
    recipe = scorax.consistency_recipe("improved", num_steps=300)

    def loss(model, x, key, step):
        return scorax.consistency_training_loss(
            model, None, VP, x, key=key, step=step, recipe=recipe
        )

    result = scorax.fit(
        _cm(),
        loss,
        DATA,
        optimizer=optax.adam(3e-3),
        num_steps=300,
        batch_size=64,
        key=jr.key(7),
        progress=False,
    )
    assert result.target_model is None
    assert np.all(np.isfinite(np.asarray(result.losses)))
    assert int(recipe.discretisation.num_levels(299)) == 1281
    moved = [
        np.max(np.abs(a - b))
        for a, b in zip(_leaves(result.model), _leaves(_cm()), strict=True)
    ]
    assert max(moved) > 1e-2


def _times(times, path=VP):
    return lambda: scorax.consistency_sample(
        EXACT, path, jnp.zeros(2), times=times, key=jr.key(0)
    )


ERRORS = [
    (_times((0.5, 0.7)), "`times` must be strictly decreasing"),
    (_times((1.0, 0.0005)), r"lie in \(t_min, t_max\]"),
    (_times((1.0,), scorax.CosinePath()), r"lie in \(t_min, t_max\]"),
    (_times(0), "`times` must be an integer >= 1"),
    (_times(()), "`times` must be a non-empty"),
    (
        lambda: scorax.consistency_sample(NETWORK, VP, jnp.zeros(2)),
        "`model` must be a consistency model",
    ),
    (lambda: scorax.FixedDiscretisation(1), "`levels` must be an integer >= 2"),
    (
        lambda: scorax.SquareRootCurriculum(10, start=1),
        "`start` must be an integer >= 2",
    ),
    (lambda: scorax.DoublingCurriculum(10, 20, 10), "`end` must be an integer >= 20"),
    (
        lambda: scorax.ConsistencyRecipe(
            scorax.FixedDiscretisation(4), distance="lpips"
        ),
        "`distance` must be one of",
    ),
    (
        lambda: scorax.ConsistencyRecipe(
            scorax.FixedDiscretisation(4), target_decay=1.0
        ),
        r"`target_decay` must lie in \[0, 1\)",
    ),
    (lambda: scorax.ConsistencyRecipe(18), "`discretisation` must be an"),
    (lambda: scorax.consistency_recipe("ict", num_steps=5), "`name` must be one of"),
    (
        lambda: scorax.consistency_distillation_loss(
            EXACT,
            None,
            lambda x, t: x[:1],
            VP,
            jnp.zeros(2),
            key=jr.key(0),
            step=0,
            recipe=RECIPE,
        ),
        "`teacher` must return an array shaped like its input",
    ),
    (
        lambda: scorax.consistency_distillation_loss(
            EXACT,
            None,
            TEACHER,
            VP,
            jnp.zeros(2),
            key=jr.key(0),
            step=0,
            recipe=RECIPE,
            method="rk4",
        ),
        "`method` must be one of",
    ),
    (
        lambda: scorax.consistency_training_loss(
            EXACT, None, VP, jnp.zeros(2), key=jr.key(0), step=-1, recipe=RECIPE
        ),
        "`step` must be >= 0",
    ),
    (
        lambda: scorax.ConsistencyModel(NETWORK, VP, t_min=0.0),
        r"`t_min` must lie in \(0, 1\)",
    ),
    (
        lambda: scorax.fit(
            _cm(),
            lambda m, x, k: jnp.sum(x),
            DATA,
            optimizer=optax.sgd(0.1),
            num_steps=1,
            batch_size=4,
            key=jr.key(0),
            target_decay=0.5,
        ),
        "`target_decay`: `loss_fn` must take the keyword `target`",
    ),
    (
        lambda: scorax.fit(
            _cm(),
            _ct_loss,
            DATA,
            optimizer=optax.sgd(0.1),
            num_steps=1,
            batch_size=4,
            key=jr.key(0),
            target_decay=lambda step: 1.5,
        ),
        r"`target_decay` must be a number in \[0, 1\)",
    ),
]


@pytest.mark.parametrize(("call", "match"), ERRORS)
def test_bad_input_is_an_error_naming_the_argument(call, match):
    with without_runtime_type_checking(), pytest.raises(ValueError, match=match):
        call()
