"""Samplers by name (`scorax.get_sampler`): every name builds a sampler of the
common protocol `sampler(model, x, key) -> SampleResult` that spends and reports
the evaluations its settings say, runs on the paths it claims, reaches the data
with the exact model, and refuses bad settings naming the argument."""

import re

import jax
import jax.numpy as jnp
import jax.random as jr
import pytest

import scorax
import scorax.testing

from .helpers import EXACT_NOISE, MIXTURE, VP, without_runtime_type_checking


SAMPLERS = scorax.sampler_table()
NAMES = tuple(SAMPLERS)
CONTINUOUS = tuple(name for name in NAMES if name not in ("ddim", "ddpm"))

# The model evaluations each name spends with `num_steps = 2` (ddpm: a schedule
# of 25 steps, as it needs more than beta_max = 20), by the documented count of
# its sampler function: the final denoising step included where there is one,
# Tsit5 at 6 evaluations a step plus one first-same-as-last stage.
EVALUATIONS = {
    "sde": 2 + 1,
    "ode": 2 * 6 + 1 + 1,
    "pc": 2 * 2 + 1,
    "edm": 2 * 2 - 1,
    "ddim": 2,
    "ddpm": 25,
    "dpm1": 2 + 1,
    "dpm2": 2 * 2 + 1,
    "dpm3": 2 * 3 + 1,
    "dpm2m": 2 + 1,
    "dpm3m": 2 + 1,
    "dpm3m-unic": 2 + 1,
    "dpm3m-time": 2 + 1,
    "dpm2m-sde": 2 + 1,
    "consistency": 2,
}
# The consistency sampler takes a consistency model, here the exact one.
EXACT_CONSISTENCY = scorax.testing.ExactConsistencyModel(
    MIXTURE, VP, rtol=1e-6, atol=1e-6
)


def _recording(sampler, reported):
    """The sampler, recording the `num_evaluations` it reports as it runs."""

    def run(model, x, key):
        result = sampler(model, x, key)
        jax.debug.callback(lambda n: reported.append(int(n)), result.num_evaluations)
        return result

    return run


@pytest.mark.parametrize("name", NAMES)
def test_every_name_spends_and_reports_the_evaluations_of_its_steps(name):
    """On the exact model: the reported count equals the calls made
    (check_evaluation_count), and `num_steps` sets that count as documented."""
    reported: list[int] = []
    sampler = scorax.get_sampler(name, VP, num_steps=25 if name == "ddpm" else 2)
    model = EXACT_CONSISTENCY if name == "consistency" else EXACT_NOISE
    start = VP.prior_sample(key=jr.key(0), shape=(1, 2))
    scorax.testing.check_evaluation_count(
        _recording(sampler, reported), model, start, num_counted=1
    )
    jax.effects_barrier()
    assert reported == [EVALUATIONS[name]]


@pytest.mark.parametrize(
    ("name", "path"),
    [(name, scorax.LinearPath()) for name in ("sde", "ode", "pc", "edm", "dpm2")]
    + [("dpm2m-sde", scorax.CosinePath())],
    ids=str,
)
def test_paths_with_alpha_zero_at_the_noise_end_are_sampled_by_default(name, path):
    """alpha(1) = 0, so the SDE and the log-SNR diverge at t = 1: from the default
    t_max (0.99 there) every sampler function runs with its default steps, finite
    (each raises on a non-finite value) and counting honestly."""
    model = scorax.testing.ExactModel(MIXTURE, path, scorax.NoisePrediction())
    start = path.prior_sample(key=jr.key(0), shape=(1, 2))
    scorax.testing.check_evaluation_count(
        scorax.get_sampler(name, path), model, start, num_counted=1
    )


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        pytest.param(
            "dpm3m-time",
            {
                "data_std": float(
                    jnp.std(MIXTURE.sample(key=jr.key(9), sample_shape=(10_000,)))
                )
            },
            marks=pytest.mark.slow,
        ),
        ("pc", {"axis_name": "batch"}),
    ],
)
def test_a_sampler_chosen_by_name_reaches_the_data(name, settings):
    """check_sampler with the exact model: the samples follow the mixture. pc in
    two dimensions needs its step-size norms averaged over the batch axis that
    check_sampler names "batch"; dpm3m-time takes the data's standard deviation
    as a user would, from a sample. (dpm2m converges to the exact ODE solution
    in test_dpm.)"""
    sampler = scorax.get_sampler(name, VP, **settings)
    model = EXACT_NOISE
    start = VP.prior_sample(key=jr.key(0), shape=(1000, 2))
    scorax.testing.check_sampler(sampler, model, start, MIXTURE)


def test_ddim_and_ddpm_read_the_schedule_of_the_vp_path():
    """On a VPPath with other betas, ddim samples the DDPM schedule with those
    betas: with all 1000 steps it is ddim_sample on that schedule."""
    path = scorax.VPPath(beta_min=0.5, beta_max=5.0)
    schedule = scorax.DDPMSchedule(beta_min=0.5, beta_max=5.0)
    model = scorax.testing.ExactModel(MIXTURE, path, scorax.NoisePrediction())
    x = path.prior_sample(key=jr.key(0), shape=(2,))
    by_name = scorax.get_sampler("ddim", path, num_steps=10)(model, x, jr.key(1))
    direct = scorax.ddim_sample(model, schedule, x, num_steps=10)
    assert jnp.array_equal(by_name.sample, direct.sample)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: scorax.get_sampler("euler", VP), "`name`"),
        (lambda: scorax.get_sampler("ddim", scorax.VEPath()), "`path`"),
        (lambda: scorax.get_sampler("ddpm", scorax.SubVPPath()), "`path`"),
        (lambda: scorax.get_sampler("sde", VP, num_steps=0), "`num_steps`"),
        (lambda: scorax.get_sampler("ddpm", VP, num_steps=20), "`num_steps`"),
        (lambda: scorax.get_sampler("ddim", VP, num_steps=1001), "`num_steps`"),
        (lambda: scorax.get_sampler("ddim", VP, t_max=0.5), "`t_min`, `t_max`"),
        (lambda: scorax.get_sampler("ode", VP, t_min=0.0), "`t_min`"),
        (lambda: scorax.get_sampler("edm", VP, t_min=0.5, t_max=0.4), "`t_max`"),
    ],
)
def test_bad_settings_are_errors_naming_the_argument(call, named):
    with without_runtime_type_checking(), pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(named)


def test_an_unknown_name_lists_the_names():
    with pytest.raises(ValueError) as info:
        scorax.get_sampler("euler", VP)
    for name in NAMES:
        assert repr(name) in str(info.value)


def test_the_documented_table_is_the_table():
    """The table in the docstring of get_sampler shows each entry of the table the
    code reads (and the demo's --help prints): name, description, default steps."""
    doc = scorax.get_sampler.__doc__
    assert doc is not None
    rows = {}
    for name, text, steps in re.findall(
        r"^\s*\| `([\w-]+)` \| (.*) \| (\w+) \|$", doc, re.M
    ):
        # Links to the sampler functions read as their plain names.
        rows[name] = (re.sub(r"\[`(\w+)`\]\[[\w.]+\]", r"\1", text), steps)
    assert rows == {
        name: (entry.description, str(entry.num_steps or "adaptive"))
        for name, entry in SAMPLERS.items()
    }
    assert set(CONTINUOUS) | {"ddim", "ddpm"} == set(NAMES)
