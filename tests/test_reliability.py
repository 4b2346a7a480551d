"""Bad and edge-case input to the samplers, guidance and the demo, by class: every
check runs before any work and names the argument; nothing is silently coerced;
valid input of any integer type or on any path that allows it is accepted."""

import subprocess
import sys

import diffrax as dfx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import scorax
import scorax.testing

from .helpers import EXACT_NOISE as EXACT, MIXTURE, VP, without_runtime_type_checking


SCHEDULE = scorax.DDPMSchedule(50)
X = jnp.ones(2)
KEY = jr.key(0)
CONSTANT = dfx.ConstantStepSize()


def _identity(x, t):
    return x


# --------------------------------------------------------------- counts


COUNTED = {
    "dpm_solver_sample": lambda n: scorax.dpm_solver_sample(
        _identity, VP, X, num_steps=n, order=n
    ),
    "dpm_solver_pp_sample": lambda n: scorax.dpm_solver_pp_sample(
        _identity, VP, X, num_steps=n, order=n
    ),
    "edm_sample": lambda n: scorax.edm_sample(_identity, VP, X, num_steps=n),
    "ddim_sample": lambda n: scorax.ddim_sample(_identity, SCHEDULE, X, num_steps=n),
    "annealed_langevin": lambda n: scorax.annealed_langevin(
        _identity, jnp.array([1.0, 0.5]), X, key=KEY, steps_per_level=n
    ),
    "predictor_corrector_sample": lambda n: scorax.predictor_corrector_sample(
        _identity, VP, X, key=KEY, num_steps=n, corrector_steps=n
    ),
    "langevin": lambda n: scorax.langevin(
        lambda x: -x, X, key=KEY, step_size=0.1, num_steps=n
    ),
    "get_sampler": lambda n: scorax.get_sampler("dpm2m", VP, num_steps=n)(
        _identity, X, KEY
    ),
    "geometric_sigmas": lambda n: scorax.geometric_sigmas(num_levels=n),
    "DDPMSchedule": lambda n: scorax.DDPMSchedule(n, beta_min=0.1, beta_max=1.0),
    "ScoreMLP": lambda n: scorax.ScoreMLP(
        (2,), width=n, depth=n, num_time_features=2 * n, num_classes=n, key=KEY
    ),
    "two_moons": lambda n: scorax.datasets.two_moons(n, key=KEY),
    "sliced_wasserstein": lambda n: scorax.sliced_wasserstein(
        jnp.ones((4, 2)), jnp.zeros((4, 2)), key=KEY, num_projections=n
    ),
    "reverse_sde_sample": lambda n: scorax.reverse_sde_sample(
        _identity, VP, X, key=KEY, num_steps=n, max_steps=n
    ),
    "hutchinson_trace": lambda n: scorax.hutchinson_trace(
        lambda x: -x, X, key=KEY, num_probes=n
    ),
    "fit": lambda n: scorax.fit(
        scorax.ScoreMLP((2,), width=4, depth=1, key=KEY),
        lambda m, x, k: scorax.diffusion_loss(m, VP, x, key=k),
        jnp.ones((4, 2)),
        optimizer=optax.sgd(1e-3),
        num_steps=n,
        batch_size=n,
        steps_per_chunk=n,
        key=KEY,
        progress=False,
    ),
    "probability_flow_sample": lambda n: scorax.probability_flow_sample(
        _identity, VP, X, num_steps=n, max_steps=n, stepsize_controller=CONSTANT
    ),
    "log_likelihood": lambda n: scorax.log_likelihood(
        _identity,
        VP,
        X,
        num_steps=n,
        max_steps=n,
        num_probes=n,
        key=KEY,
        stepsize_controller=CONSTANT,
    ),
}


@pytest.mark.parametrize("name", sorted(COUNTED))
def test_counts_of_any_integer_type_are_accepted(name):
    """A count may be a NumPy integer, as it would come from a configuration file
    or a NumPy computation, in every API that takes one (each API reads its
    counts through `check_count`, whose every integer type is tested below)."""
    COUNTED[name](np.int64(2))


@pytest.mark.parametrize(
    "value",
    [2, np.int64(2), np.int32(2), np.uint8(2), np.array(2), jnp.array(2, jnp.int32)],
    ids=lambda v: type(v).__name__,
)
def test_check_count_reads_every_integer_type_as_an_int(value):
    from scorax._checks import check_count, to_count

    assert check_count(value, "n") == 2 and type(check_count(value, "n")) is int
    assert to_count(value) == 2 and type(to_count(value)) is int


@pytest.mark.parametrize("name", sorted(COUNTED))
@pytest.mark.parametrize("bad", [2.0, True, np.float32(2.0)])
def test_counts_that_are_not_integers_are_refused(name, bad):
    """Floats and booleans are refused with the argument's name, never rounded."""
    with without_runtime_type_checking():
        with pytest.raises(ValueError, match="must be an integer"):
            COUNTED[name](bad)


def test_import_does_not_start_jax():
    """`import scorax` builds nothing that starts JAX's backend, so that
    `jax.distributed.initialize` can still run after it (docs/scaling.md)."""
    code = (
        "import scorax, scorax.testing\n"
        "from jax._src import xla_bridge\n"
        "assert not xla_bridge._backends, 'import scorax started JAX'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- keys


KEYED = {
    "ddpm_sample": lambda: scorax.ddpm_sample(EXACT, SCHEDULE, X, key=None),
    "ddim_sample": lambda: scorax.ddim_sample(EXACT, SCHEDULE, X, num_steps=3, eta=0.5),
    "edm_sample": lambda: scorax.edm_sample(EXACT, VP, X, num_steps=3, churn=1.0),
    "dpm_solver_pp_sample": lambda: scorax.dpm_solver_pp_sample(
        EXACT, VP, X, stochastic=True
    ),
    "langevin": lambda: scorax.langevin(
        MIXTURE.score, X, key=None, step_size=0.1, num_steps=3
    ),
    "annealed_langevin": lambda: scorax.annealed_langevin(
        _identity, jnp.array([1.0, 0.5]), X, key=None
    ),
    "predictor_corrector_sample": lambda: scorax.predictor_corrector_sample(
        EXACT, VP, X, key=None, num_steps=3
    ),
    "reverse_sde_sample": lambda: scorax.reverse_sde_sample(
        EXACT, VP, X, key=None, num_steps=3
    ),
    **{
        f"get_sampler-{name}": (
            lambda name=name: scorax.get_sampler(name, VP, num_steps=30)(EXACT, X, None)
        )
        for name in ("ddpm", "pc", "sde", "dpm2m-sde")
    },
}


@pytest.mark.parametrize("name", sorted(KEYED))
def test_a_sampler_that_draws_noise_needs_its_key(name):
    """Without a key a stochastic sampler raises, naming `key`: it never draws
    the same noise from a fixed key behind the user's back."""
    with without_runtime_type_checking():
        with pytest.raises(ValueError, match="`key` is required"):
            KEYED[name]()


def test_edm_churn_at_the_top_level_adds_no_noise_from_rounding():
    """Churned levels are capped at the grid's first level: churn applied only
    there raises it by nothing, so the sample is the deterministic one exactly
    (a cap an ulp above the first level used to add noise of its square root)."""
    edm = scorax.EDMPath()
    model = scorax.testing.ExactModel(
        MIXTURE, edm, parameterisation=scorax.NoisePrediction()
    )
    x = edm.prior_sample(key=KEY, shape=(2,))
    top = float(edm.noise_to_signal(1.0))
    churned = scorax.edm_sample(
        model, edm, x, num_steps=4, churn=10.0, churn_min=0.999 * top, key=KEY
    )
    plain = scorax.edm_sample(model, edm, x, num_steps=4)
    np.testing.assert_array_equal(churned.sample, plain.sample)


def test_traced_hyperparameters_are_checked_when_the_sampler_runs():
    """Checks of options hold under `jit` too: a traced DDIM `eta` above 1 fails
    when the program runs, naming `eta`."""
    import equinox as eqx
    import jax

    @jax.jit
    def ddim(eta):
        return scorax.ddim_sample(EXACT, SCHEDULE, X, num_steps=3, eta=eta, key=KEY)

    assert bool(jnp.all(jnp.isfinite(ddim(0.5).sample)))
    with pytest.raises(
        (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError, ValueError),
        match="`eta` must lie in",
    ):
        jax.block_until_ready(ddim(1.5))


def test_times_of_any_real_scalar_type_are_accepted():
    """`t_min` and `t_max` are Python floats in the signatures; NumPy or JAX
    scalars passed without runtime type checking work too, without warnings."""
    with without_runtime_type_checking():
        result = scorax.dpm_solver_pp_sample(
            EXACT, VP, X, num_steps=3, t_min=np.float32(1e-3), t_max=jnp.asarray(1.0)
        )
    assert bool(jnp.all(jnp.isfinite(result.sample)))


# ------------------------------------------------------- starting points


STARTED = {
    "dpm_solver_pp_sample": lambda x: scorax.dpm_solver_pp_sample(EXACT, VP, x),
    "dpm_solver_sample": lambda x: scorax.dpm_solver_sample(EXACT, VP, x),
    "edm_sample": lambda x: scorax.edm_sample(EXACT, VP, x, num_steps=3),
    "ddpm_sample": lambda x: scorax.ddpm_sample(EXACT, SCHEDULE, x, key=KEY),
    "ddim_sample": lambda x: scorax.ddim_sample(EXACT, SCHEDULE, x, num_steps=3),
    "predictor_corrector_sample": lambda x: scorax.predictor_corrector_sample(
        EXACT, VP, x, key=KEY, num_steps=3
    ),
    "langevin": lambda x: scorax.langevin(
        MIXTURE.score, x, key=KEY, step_size=0.1, num_steps=3
    ),
    "reverse_sde_sample": lambda x: scorax.reverse_sde_sample(
        EXACT, VP, x, key=KEY, num_steps=3
    ),
    "probability_flow_sample": lambda x: scorax.probability_flow_sample(
        EXACT, VP, x, num_steps=3
    ),
    "log_likelihood": lambda x: scorax.log_likelihood(EXACT, VP, x, num_steps=3),
    "get_sampler": lambda x: scorax.get_sampler("pc", VP, num_steps=3)(EXACT, x, KEY),
    "inpaint": lambda x: scorax.inpaint(
        scorax.get_sampler("dpm2m", VP, num_steps=3),
        EXACT,
        VP,
        x,
        known=jnp.zeros(2),
        mask=jnp.array([True, False]),
        key=KEY,
    ),
}


@pytest.mark.parametrize("name", sorted(STARTED))
@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_a_non_finite_start_is_named_before_any_work(name, bad):
    """A NaN or an infinity in `x` is reported as such, not blamed on the model
    or the step size after the whole solve."""
    with pytest.raises(ValueError, match="`x` must be finite"):
        STARTED[name](jnp.array([0.5, bad]))


@pytest.mark.parametrize("name", sorted(STARTED))
def test_an_integer_start_is_named(name):
    """Integer `x` is refused as not floating point, not blamed on `t_max`,
    Diffrax's `StepTo` or `jax.random.normal`'s dtype."""
    with without_runtime_type_checking():
        with pytest.raises(ValueError, match="`x` must be a floating-point array"):
            STARTED[name](jnp.array([1, 2]))


@pytest.mark.parametrize("sigmas", [[1.0, 1.0, 0.1], [1.0, 0.1, 0.1]])
def test_annealed_langevin_refuses_a_repeated_level(sigmas):
    """The levels must be strictly decreasing, as documented: a level repeated (a
    step of zero, where a check of order alone would pass) is refused like an
    increasing one (tests/test_sampler.py), naming `sigmas`."""
    with pytest.raises(ValueError, match="`sigmas` must be positive and strictly"):
        scorax.annealed_langevin(
            lambda x, sigma: -x, jnp.asarray(sigmas), jnp.zeros(2), key=jr.key(0)
        )


def test_inpaint_names_a_non_finite_known_entry():
    """A NaN where `mask` is true is an error; where it is false, `known` is not
    read."""
    sampler = scorax.get_sampler("dpm2m", VP, num_steps=3)
    mask = jnp.array([True, False])
    with pytest.raises(ValueError, match="`known` must be finite where `mask`"):
        scorax.inpaint(
            sampler, EXACT, VP, X, known=jnp.array([jnp.nan, 0.0]), mask=mask, key=KEY
        )
    result = scorax.inpaint(
        sampler, EXACT, VP, X, known=jnp.array([0.5, jnp.nan]), mask=mask, key=KEY
    )
    assert bool(jnp.all(jnp.isfinite(result.sample)))


# ------------------------------------------------------------ time ranges


@pytest.mark.parametrize("path", [scorax.VEPath(), scorax.EDMPath()], ids=repr)
@pytest.mark.parametrize(
    "sampler",
    [scorax.dpm_solver_pp_sample, scorax.dpm_solver_sample, scorax.edm_sample],
    ids=lambda f: f.__name__,
)
def test_t_min_zero_is_accepted_where_sigma_of_zero_is_positive(path, sampler):
    """On paths whose sigma(0) > 0 the data end itself is a finite noise level:
    t_min = 0 is valid there, and the sampler ends on the data."""
    model = scorax.testing.ExactModel(
        MIXTURE, path, parameterisation=scorax.NoisePrediction()
    )
    x = path.prior_sample(key=KEY, shape=(2,))
    result = sampler(model, path, x, num_steps=4, t_min=0.0)
    assert bool(jnp.all(jnp.isfinite(result.sample)))


@pytest.mark.parametrize(
    "call",
    [
        lambda: scorax.dpm_solver_pp_sample(EXACT, VP, X, t_min=0.0),
        lambda: scorax.edm_sample(EXACT, VP, X, t_min=0.0),
        lambda: scorax.predictor_corrector_sample(EXACT, VP, X, key=KEY, t_min=0.0),
        lambda: scorax.probability_flow_sample(EXACT, VP, X, t_min=0.0),
        lambda: scorax.log_likelihood(EXACT, VP, X, t_min=0.0),
        lambda: scorax.get_sampler("dpm2m", VP, t_min=0.0),
    ],
)
def test_t_min_zero_is_refused_where_sigma_of_zero_is_zero(call):
    with pytest.raises(ValueError, match="`t_min` must be > 0 on VPPath"):
        call()


def test_ddim_by_name_accepts_the_default_t_max_spelled_out():
    """`t_max=1.0` is the default's meaning on the DDPM schedule."""
    sampler = scorax.get_sampler("ddim", VP, num_steps=3, t_max=1.0)
    assert int(sampler(EXACT, X, KEY).num_evaluations) == 3
    with pytest.raises(ValueError, match="`t_min`, `t_max`"):
        scorax.get_sampler("ddim", VP, t_max=0.5)


# --------------------------------------------------------- sampler settings


def test_get_sampler_checks_the_sampler_settings_when_it_builds_it():
    with pytest.raises(ValueError, match="`data_std` must be finite and >= 0"):
        scorax.get_sampler("dpm3m-time", VP, data_std=-1.0)
    with pytest.raises(ValueError, match="`data_std` must be finite and >= 0"):
        scorax.get_sampler("dpm3m-time", VP, data_std=float("nan"))


@pytest.mark.parametrize(
    "options, match",
    [
        ({"stochastic": True, "order": 3}, "`order` must be 1 or 2"),
        ({"stochastic": True, "corrector": True}, "`corrector` must be False"),
        ({"stochastic": True, "data_std": 1.0}, "`data_std` must be None"),
        ({"order": 4}, r"`order` must be an integer in \[1, 3\]"),
        ({"interpolation": "cubic"}, "`interpolation` must be one of"),
        ({"spacing": "uniform"}, "`spacing` must be one of"),
        ({"rho": 0.0}, "`rho` must be finite and > 0"),
    ],
)
def test_invalid_solver_combinations_cannot_be_built(options, match):
    with without_runtime_type_checking():
        with pytest.raises(ValueError, match=match):
            scorax.dpm_solver_pp_sample(EXACT, VP, X, key=KEY, **options)


# ---------------------------------------------------------------- guidance


CONDITIONAL = scorax.ScoreMLP((2,), width=8, depth=1, num_classes=3, key=KEY)


@pytest.mark.parametrize(
    "label, match",
    [
        (1.7, "must be an integer class"),
        (True, "must be an integer class"),
        (3, r"in \[0, 3\)"),
        (-2, r"in \[0, 3\)"),
        (jnp.array(1.0), "must be an integer class"),
    ],
)
def test_classifier_free_guidance_refuses_a_label_that_is_not_a_class(label, match):
    """A label is an integer class of the model (or -1/None): never rounded from
    a float or a boolean, and checked against the model's classes when built."""
    with without_runtime_type_checking():
        with pytest.raises(ValueError, match=match):
            scorax.classifier_free_guidance(CONDITIONAL, label, weight=1.0)


@pytest.mark.parametrize("label", [0, 2, -1, None, np.int64(1), jnp.array(2)])
def test_classifier_free_guidance_accepts_every_class_and_the_null_label(label):
    guided = scorax.classifier_free_guidance(CONDITIONAL, label, weight=1.0)
    assert guided(X, 0.5).shape == X.shape


def test_exact_model_reports_its_classes_to_guidance():
    assert EXACT.num_classes == MIXTURE.weights.shape[0]
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        scorax.classifier_free_guidance(EXACT, 2, weight=1.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_guidance_weights_and_scales_must_be_finite(bad):
    def log_likelihood(x, t):
        return -jnp.sum(x**2)

    def log_classifier(x, t, y):
        return MIXTURE.marginal(VP, t).log_class_posterior(x)[y]

    with pytest.raises(ValueError, match="`weight` must be finite"):
        scorax.classifier_free_guidance(CONDITIONAL, 0, weight=bad)
    with pytest.raises(ValueError, match="`scale` must be finite"):
        scorax.posterior_guidance(EXACT, log_likelihood, path=VP, scale=bad)
    with pytest.raises(ValueError, match="`scale` must be finite"):
        scorax.classifier_guidance(EXACT, log_classifier, 0, path=VP, scale=bad)


def test_classifier_guidance_checks_the_label_against_the_classes():
    def log_classifier(x, t, y):
        return MIXTURE.marginal(VP, t).log_class_posterior(x)[y]

    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        scorax.classifier_guidance(EXACT, log_classifier, 2, path=VP, num_classes=2)
    with pytest.raises(ValueError, match=r"in \[0, K\)"):
        scorax.classifier_guidance(EXACT, log_classifier, -1, path=VP)
    guided = scorax.classifier_guidance(
        EXACT, log_classifier, 1, path=VP, num_classes=2
    )
    assert guided(X, 0.5).shape == X.shape


# -------------------------------------------------------------------- demo


@pytest.mark.parametrize(
    "output, status",
    [("", 2), ("{file}/below", 1)],
)
def test_demo_checks_its_output_folder_before_any_work(tmp_path, output, status):
    """An output folder that cannot be written is reported at once, before any
    training, naming `--output` (an empty name as a bad option, status 2; a
    folder under a file as a failed run, status 1)."""
    file = tmp_path / "a-file"
    file.write_text("")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scorax",
            "demo",
            "--steps",
            "1",
            "--output",
            output.format(file=file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == status
    assert "--output" in result.stderr
    assert "training" not in result.stderr + result.stdout


# ------------------------------------------------- the verification kit's reports


class _Broken(scorax.AbstractGaussianPath):
    """VPPath with one scale broken: negative, NaN or raising."""

    fault: str = "negative"

    def alpha(self, t):
        return VP.alpha(t) * (jnp.nan if self.fault == "nan" else 1.0)

    def sigma(self, t):
        if self.fault == "raises":
            raise ValueError("sigma is not implemented for this path")
        return -VP.sigma(t) if self.fault == "negative" else VP.sigma(t)

    def alpha_derivative(self, t):
        return VP.alpha_derivative(t)

    def sigma_derivative(self, t):
        return VP.sigma_derivative(t)

    def diffusion_squared(self, t):
        return VP.diffusion_squared(t)

    def _inverse_log_snr(self, log_snr):
        return VP._inverse_log_snr(log_snr)


@pytest.mark.parametrize(
    "check",
    [scorax.testing.check_path, scorax.testing.check_parameterisation_roundtrip],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize(
    "fault, identity, got",
    [
        ("negative", "sigma(t) is finite and > 0", "sigma(t) = -"),
        ("nan", "alpha(t) is finite and > 0", "alpha(t) = nan"),
        ("raises", "sigma(t) is defined", "sigma is not implemented"),
    ],
)
def test_a_broken_path_gets_one_readable_report(check, fault, identity, got):
    """A path whose scale is negative, NaN or raises is reported by the identity
    it breaks and the value (or the message) it gave, not by a traceback
    fragment or a NaN tolerance."""
    with pytest.raises(AssertionError) as failure:
        check(_Broken(fault), dtype=jnp.float64)
    report = str(failure.value)
    assert identity in report and got in report
    assert "Above is the stack" not in report and "tolerance nan" not in report


def test_a_non_finite_tolerance_counts_as_a_failure():
    """assert_close never passes, or reports "0 failing", where the tolerance is
    NaN: the case fails and the report says why."""
    from scorax.testing._report import assert_close

    with pytest.raises(AssertionError, match="worst of 1 failing of 2") as failure:
        assert_close(
            "check",
            "a = b",
            actual=np.array([1.0, 2.0]),
            expected=np.array([1.0, 2.0]),
            tolerance=np.array([1e-9, np.nan]),
            where=["first", "second"],
            tolerance_source="test",
        )
    assert "not finite here" in str(failure.value)


def test_runtime_messages_are_read_out_of_jax_errors():
    """The message of an `eqx.error_if` is found in what plain `jax.jit` and
    `eqx.filter_jit` raise around it."""
    import equinox as eqx
    import jax

    from scorax._checks import runtime_message

    def checked(x):
        return eqx.error_if(x, x < 0, "`x` went negative")

    for wrap in (jax.jit, eqx.filter_jit):
        with pytest.raises(Exception) as failure:
            wrap(checked)(-1.0)
        assert runtime_message(failure.value) == "`x` went negative"
