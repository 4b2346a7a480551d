"""The curated mutants of the core formula modules, as data.

Each mutant replaces one exact snippet of one source file (a snippet that must
occur exactly once there, so that the list fails loudly when the code moves on)
by what a real bug would look like: a sign flipped, a factor 2 dropped or
doubled, a square root removed, alpha and sigma swapped, an index off by one, a
wrong ddof, a wrong weight, a missing term. `mutation/run.py` applies each one
to a copy of `src/` and runs the tests that cover its module; a mutant the tests
do not kill is a gap in the tests, unless it is equivalent (it computes the same
thing), which `equivalent` then explains.

Tests run in the order listed, with `-x`: list the tests that check a formula
before the recorded-output regression test (`CHANGE_DETECTORS`), so that the
report tells a mutant that a formula test kills from one that only the recorded
outputs notice.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One mutant: `original` (exactly once in `file`) becomes `replacement`."""

    name: str
    module: str
    file: str
    original: str
    replacement: str
    description: str
    tests: tuple[str, ...]
    equivalent: str | None = None


# Tests that compare outputs with recorded ones: they notice any change, right
# or wrong, so a mutant that only they kill is a gap in the formula tests.
CHANGE_DETECTORS = ("tests/test_sampler_regression.py",)

PATH = "src/scorax/_path.py"
PARAMETERISATION = "src/scorax/_parameterisation.py"
DENOISING = "src/scorax/_objective/_denoising.py"
SCORE_MATCHING = "src/scorax/_objective/_score_matching.py"
TRACE = "src/scorax/_trace.py"
LIKELIHOOD = "src/scorax/_likelihood.py"
GUIDANCE = "src/scorax/_guidance.py"
MULTISTEP = "src/scorax/_sampler/_multistep.py"
DPM_PP = "src/scorax/_sampler/_dpm_pp.py"
DPM = "src/scorax/_sampler/_dpm.py"
DDPM = "src/scorax/_sampler/_ddpm.py"
EDM = "src/scorax/_sampler/_edm.py"
LANGEVIN = "src/scorax/_sampler/_langevin.py"
PC = "src/scorax/_sampler/_pc.py"
SDE = "src/scorax/_sampler/_sde.py"
GRID = "src/scorax/_sampler/_grid.py"

PATH_TESTS = ("tests/test_path.py",)
PARAMETERISATION_TESTS = ("tests/test_parameterisation.py",)
OBJECTIVE_TESTS = ("tests/test_objective.py",)
TRACE_TESTS = ("tests/test_trace.py",)
LIKELIHOOD_TESTS = ("tests/test_likelihood.py",)
GUIDANCE_TESTS = ("tests/test_guidance.py",)
# The exponential integrators: their own tests first, then every sampler's, the
# order tests, and last the recorded outputs.
EXPONENTIAL_TESTS = (
    "tests/test_dpm.py",
    "tests/test_sampler.py",
    "tests/test_order.py",
    *CHANGE_DETECTORS,
)
SAMPLER_TESTS = ("tests/test_sampler.py", "tests/test_order.py", *CHANGE_DETECTORS)


def _path(name, original, replacement, description, equivalent=None):
    return Mutant(
        name, "paths", PATH, original, replacement, description, PATH_TESTS, equivalent
    )


PATH_MUTANTS = (
    _path(
        "log-prob-sigma-not-squared",
        "x.size * jnp.log(2 * jnp.pi * sigma**2)",
        "x.size * jnp.log(2 * jnp.pi * sigma)",
        "isotropic_gaussian_log_prob: the normalising constant uses sigma for sigma^2.",
    ),
    _path(
        "log-snr-factor-2-dropped",
        "return 2 * (jnp.log(self.alpha(t)) - jnp.log(self.sigma(t)))",
        "return jnp.log(self.alpha(t)) - jnp.log(self.sigma(t))",
        "log_snr returns log(alpha / sigma), the half log-SNR, for log(alpha^2 / sigma^2).",
    ),
    _path(
        "conditional-score-sigma-not-squared",
        "return (self.alpha(t) * x0 - x_t) / sigma**2",
        "return (self.alpha(t) * x0 - x_t) / sigma",
        "conditional_score divides by sigma instead of sigma^2 (-eps for -eps / sigma).",
    ),
    _path(
        "drift-alpha-sigma-swapped",
        "f = self.alpha_derivative(t) / self.alpha(t)",
        "f = self.sigma_derivative(t) / self.sigma(t)",
        "drift: f = sigma' / sigma instead of alpha' / alpha.",
    ),
    _path(
        "inverse-log-snr-unclipped",
        "return jnp.clip(self._inverse_log_snr(log_snr), 0, 1)",
        "return self._inverse_log_snr(log_snr)",
        "inverse_log_snr no longer clips to [0, 1]: log-SNRs beyond the path's range "
        "(or rounded past an end) map to times outside [0, 1].",
    ),
    _path(
        "integrated-beta-half-dropped",
        "return jnp.asarray(beta_min * t + 0.5 * (beta_max - beta_min) * t**2)",
        "return jnp.asarray(beta_min * t + (beta_max - beta_min) * t**2)",
        "B(t) = int_0^t beta: the factor 1/2 of the quadratic term dropped (VP, sub-VP).",
    ),
    _path(
        "inverse-beta-unstable-root",
        "return 2 * b / (beta_min + jnp.sqrt(beta_min**2 + 2 * (beta_max - beta_min) * b))",
        "return (jnp.sqrt(beta_min**2 + 2 * (beta_max - beta_min) * b) - beta_min) / (\n"
        "        beta_max - beta_min\n"
        "    )",
        "The time of an integrated beta by the textbook root of the quadratic, "
        "algebraically the same but cancelling catastrophically for small B (near "
        "the data end), instead of the stable form.",
    ),
    _path(
        "vp-sigma-sqrt-removed",
        "return jnp.sqrt(-jnp.expm1(-b))",
        "return -jnp.expm1(-b)",
        "VPPath.sigma returns sigma^2 = 1 - e^{-B} (the sub-VP formula) for its root.",
    ),
    _path(
        "ve-diffusion-factor-2-dropped",
        "return 2 * self.sigma(t) ** 2 * self._log_ratio()",
        "return self.sigma(t) ** 2 * self._log_ratio()",
        "VEPath g^2 = sigma^2 log(max/min), missing the factor 2 of d sigma^2 / dt.",
    ),
    _path(
        "ddpm-times-off-by-one",
        "return jnp.arange(1, self.num_steps + 1) / self.num_steps",
        "return jnp.arange(self.num_steps) / self.num_steps",
        "DDPMSchedule.times: step i at (i - 1) / N instead of i / N.",
    ),
    _path(
        "cosine-safe-sigma-placeholder",
        "safe_sigma = jnp.where(sigma > 0, sigma, 1)",
        "safe_sigma = jnp.where(sigma > 0, sigma, 2)",
        "CosinePath.sigma_derivative: the placeholder for sigma = 0 is 2 instead of 1.",
        equivalent=(
            "The placeholder only keeps the division finite where sigma = 0; there "
            "the result is taken from `limit` by the outer jnp.where, so any nonzero "
            "placeholder gives the same values and the same gradients."
        ),
    ),
)


def _parameterisation(name, original, replacement, description, equivalent=None):
    return Mutant(
        name,
        "parameterisations",
        PARAMETERISATION,
        original,
        replacement,
        description,
        PARAMETERISATION_TESTS,
        equivalent,
    )


PARAMETERISATION_MUTANTS = (
    _parameterisation(
        "score-sign-flipped",
        "return jnp.zeros_like(sigma), -sigma",
        "return jnp.zeros_like(sigma), sigma",
        "ScorePrediction: eps = sigma s instead of -sigma s.",
    ),
    _parameterisation(
        "data-alpha-sigma-swapped",
        "return 1 / sigma, -path.alpha(t) / sigma",
        "return 1 / path.alpha(t), -sigma / path.alpha(t)",
        "DataPrediction with alpha and sigma swapped.",
    ),
    _parameterisation(
        "velocity-c-sign-flipped",
        "c = path.sigma_derivative(t) - f * path.sigma(t)",
        "c = path.sigma_derivative(t) + f * path.sigma(t)",
        "VelocityPrediction: c = sigma' + f sigma instead of sigma' - f sigma.",
    ),
    _parameterisation(
        "velocity-f-alpha-sigma-swapped",
        "f = path.alpha_derivative(t) / path.alpha(t)",
        "f = path.sigma_derivative(t) / path.sigma(t)",
        "VelocityPrediction: f = sigma' / sigma instead of alpha' / alpha.",
    ),
    _parameterisation(
        "convert-a-difference-reversed",
        "((a_source - a_target) / b_target) * x_t",
        "((a_target - a_source) / b_target) * x_t",
        "convert: the x_t coefficient (a_t - a_s) / b_t instead of (a_s - a_t) / b_t.",
    ),
    _parameterisation(
        "convert-b-ratio-inverted",
        "(b_source / b_target) * value",
        "(b_target / b_source) * value",
        "convert: the value scaled by b_t / b_s instead of b_s / b_t.",
    ),
    _parameterisation(
        "convert-target-singularity-unchecked",
        "ok = jnp.all(jnp.isfinite(coefficients)) & (b_source != 0) & (b_target != 0)",
        "ok = jnp.all(jnp.isfinite(coefficients)) & (b_source != 0)",
        "convert no longer refuses a target with b = 0 (returns inf or NaN there).",
    ),
)


def _objective(name, file, original, replacement, description, tests=OBJECTIVE_TESTS):
    return Mutant(name, "objectives", file, original, replacement, description, tests)


OBJECTIVE_MUTANTS = (
    _objective(
        "dsm-score-form-sign-flipped",
        DENOISING,
        "return 0.5 * jnp.sum((prediction + eps / sigma) ** 2)",
        "return 0.5 * jnp.sum((prediction - eps / sigma) ** 2)",
        "denoising_score_matching regresses on +eps / sigma (the wrong sign).",
    ),
    _objective(
        "dsm-noise-form-half-dropped",
        DENOISING,
        "return 0.5 * jnp.sum((prediction - eps) ** 2)",
        "return jnp.sum((prediction - eps) ** 2)",
        "denoising_score_matching's noise form without its 1/2.",
    ),
    _objective(
        "dsm-perturbation-variance-for-std",
        DENOISING,
        "prediction = score_fn(x + sigma * eps)",
        "prediction = score_fn(x + sigma**2 * eps)",
        "denoising_score_matching perturbs by sigma^2 eps (variance for standard "
        "deviation).",
    ),
    _objective(
        "ncsn-level-off-by-one",
        DENOISING,
        "jr.randint(level_key, (), 0, sigmas.shape[0])",
        "jr.randint(level_key, (), 0, sigmas.shape[0] - 1)",
        "ncsn_loss never draws the last (smallest) level: randint's end is exclusive.",
    ),
    _objective(
        "label-dropout-inverted",
        DENOISING,
        "label = jnp.where(drop, -1, jnp.asarray(label))",
        "label = jnp.where(drop, jnp.asarray(label), -1)",
        "with_label keeps the label with probability label_dropout and drops it "
        "otherwise.",
        tests=(
            *OBJECTIVE_TESTS,
            "tests/test_guidance.py::"
            "test_label_dropout_replaces_the_label_by_the_null_label_at_its_rate",
        ),
    ),
    _objective(
        "likelihood-weight-not-squared",
        DENOISING,
        "return path.diffusion(t) ** 2",
        "return path.diffusion(t)",
        'diffusion_loss\'s "likelihood" weighting is g instead of g^2.',
    ),
    _objective(
        "min-snr-uses-maximum",
        DENOISING,
        "jnp.minimum(snr, MIN_SNR_GAMMA)",
        "jnp.maximum(snr, MIN_SNR_GAMMA)",
        "Min-SNR weighting clips the SNR from below instead of above.",
    ),
    _objective(
        "diffusion-loss-scale-not-squared",
        DENOISING,
        "scale = _weight(path, t, weighting, parameterisation) * (b / sigma) ** 2",
        "scale = _weight(path, t, weighting, parameterisation) * (b / sigma)",
        "diffusion_loss: the score error is |b| / sigma times the model error, but "
        "the square of that factor is lost.",
    ),
    _objective(
        "ism-half-dropped",
        SCORE_MATCHING,
        "return trace + 0.5 * jnp.sum(score**2)",
        "return trace + jnp.sum(score**2)",
        "implicit_score_matching without the 1/2 on ||s||^2.",
    ),
    _objective(
        "kde-rescale-sign-flipped",
        SCORE_MATCHING,
        "rescale = jnp.exp(running_max - new_max)",
        "rescale = jnp.exp(new_max - running_max)",
        "kde_score's online softmax rescales the running sums the wrong way when "
        "the maximum grows.",
    ),
    _objective(
        "kde-spread-ddof-1",
        SCORE_MATCHING,
        "spread = jnp.sqrt(jnp.mean(jnp.var(data, axis=0)))",
        "spread = jnp.sqrt(jnp.mean(jnp.var(data, axis=0, ddof=1)))",
        "The bandwidth rules' spread with ddof=1 instead of the documented ddof=0.",
    ),
)


def _trace(name, original, replacement, description, equivalent=None):
    return Mutant(
        name,
        "trace",
        TRACE,
        original,
        replacement,
        description,
        TRACE_TESTS,
        equivalent,
    )


TRACE_MUTANTS = (
    _trace(
        "standard-error-ddof-0",
        "variance = jnp.var(samples, ddof=1)",
        "variance = jnp.var(samples, ddof=0)",
        "standard_error from the biased variance (ddof=0).",
    ),
    _trace(
        "standard-error-divides-by-m-minus-1",
        "jnp.sqrt(jnp.where(spread, variance, 1) / samples.shape[0])",
        "jnp.sqrt(jnp.where(spread, variance, 1) / (samples.shape[0] - 1))",
        "standard_error = sqrt(var / (m - 1)) instead of sqrt(var / m).",
    ),
    _trace(
        "standard-error-placeholder",
        "jnp.where(spread, variance, 1)",
        "jnp.where(spread, variance, 2)",
        "standard_error: the placeholder variance under the zero-spread branch is 2.",
        equivalent=(
            "The placeholder is only read where the spread is zero, and there the "
            "outer jnp.where returns 0 whatever it is; any positive placeholder gives "
            "the same values and the same (zero) gradients."
        ),
    ),
    _trace(
        "single-probe-error-not-infinite",
        "if samples.shape[0] == 1:",
        "if samples.shape[0] == 0:",
        "standard_error of a single sample: no longer +inf (ddof=1 gives NaN, read "
        "as zero spread, so 0).",
    ),
    _trace(
        "sphere-probe-unit-radius",
        "return v * jnp.sqrt(dim / jnp.sum(v**2, axis=axes, keepdims=True))",
        "return v / jnp.sqrt(jnp.sum(v**2, axis=axes, keepdims=True))",
        "Sphere probes on the unit sphere instead of radius sqrt(d) (E[v v^T] = I / d).",
    ),
    _trace(
        "sphere-probe-dimension-counts-all-probes",
        "dim = max(1, v[0].size)",
        "dim = max(1, v.size)",
        "Sphere probes' radius from the size of all probes together (right only "
        "for one probe).",
    ),
    _trace(
        "exact-trace-column-sum",
        "return jvp(basis).reshape(-1)[i]",
        "return jnp.sum(jvp(basis))",
        "exact trace sums the whole Jacobian column instead of its diagonal entry.",
    ),
    _trace(
        "quadratic-form-without-left-probe",
        "return jax.vmap(lambda v: jnp.sum(v * jvp(v)))(probes)",
        "return jax.vmap(lambda v: jnp.sum(jvp(v)))(probes)",
        "Hutchinson terms 1^T J v instead of v^T J v.",
    ),
)


def _likelihood(name, original, replacement, description, equivalent=None):
    return Mutant(
        name,
        "likelihood",
        LIKELIHOOD,
        original,
        replacement,
        description,
        LIKELIHOOD_TESTS,
        equivalent,
    )


LIKELIHOOD_MUTANTS = (
    _likelihood(
        "divergence-sign-flipped",
        'value = check_finite(prior + estimate, "log_likelihood")',
        'value = check_finite(prior - estimate, "log_likelihood")',
        "log_likelihood subtracts the integrated divergence instead of adding it.",
    ),
    _likelihood(
        "velocity-time-not-shifted",
        "t_min + t,",
        "t,",
        "The ODE's vector field is read at solver time tau, not at t_min + tau.",
    ),
    _likelihood(
        "prior-at-t-equals-1",
        "prior = isotropic_gaussian_log_prob(latent, path.sigma(jnp.asarray(t_max, x.dtype)))",
        "prior = isotropic_gaussian_log_prob(latent, path.sigma(jnp.asarray(1.0, x.dtype)))",
        "The prior's scale is sigma(1) whatever t_max is (right only at t_max = 1).",
    ),
    _likelihood(
        "probe-sum-for-mean",
        "estimate, error = jnp.mean(deltas), standard_error(deltas)",
        "estimate, error = jnp.sum(deltas), standard_error(deltas)",
        "With Hutchinson probes, the probes' integrals are summed, not averaged.",
    ),
    _likelihood(
        "integration-span-t-max",
        "jnp.asarray(t_max - t_min, x.dtype),",
        "jnp.asarray(t_max, x.dtype),",
        "The solve spans t_max instead of t_max - t_min (it overruns the path's end).",
    ),
    _likelihood(
        "bits-per-dim-width-multiplied",
        "nats = nats + math.log(num_bins / data_width)",
        "nats = nats + math.log(num_bins * data_width)",
        "bits_per_dim's dequantisation term log(K w) instead of log(K / w).",
    ),
    _likelihood(
        "bits-per-dim-natural-log",
        "return nats / math.log(2)",
        "return nats",
        "bits_per_dim returns nats per dimension (the division by ln 2 lost).",
    ),
)


def _guidance(name, original, replacement, description, equivalent=None):
    return Mutant(
        name,
        "guidance",
        GUIDANCE,
        original,
        replacement,
        description,
        GUIDANCE_TESTS,
        equivalent,
    )


GUIDANCE_MUTANTS = (
    _guidance(
        "cfg-other-convention",
        "return (1 + weight) * conditional - weight * unconditional",
        "return weight * conditional + (1 - weight) * unconditional",
        "classifier-free guidance with the convention where w = 1 is the "
        "conditional model (documented: w = 0 is).",
    ),
    _guidance(
        "cfg-null-label-zero",
        "labels = jnp.stack([self.label, jnp.full_like(self.label, -1)])",
        "labels = jnp.stack([self.label, jnp.full_like(self.label, 0)])",
        "classifier-free guidance calls class 0 instead of the null label -1.",
    ),
    _guidance(
        "posterior-gradient-sign-flipped",
        "guided = score + self.scale.astype(x.dtype) * gradient",
        "guided = score - self.scale.astype(x.dtype) * gradient",
        "posterior_guidance subtracts the likelihood's gradient.",
    ),
    _guidance(
        "posterior-not-converted-back",
        "source=ScorePrediction(),\n            target=self.parameterisation,",
        "source=ScorePrediction(),\n            target=ScorePrediction(),",
        "posterior_guidance returns the guided score instead of converting it back "
        "to the model's parameterisation.",
    ),
    _guidance(
        "replacement-alpha-dropped",
        "noisy = self.path.alpha(t) * self.known + self.path.sigma(t) * noise",
        "noisy = self.known + self.path.sigma(t) * noise",
        "inpaint's replacement draws known + sigma eps (VE-style) on any path, "
        "without the signal scale alpha(t).",
    ),
    _guidance(
        "inpaint-known-not-restored",
        "lambda r: r.sample, result, jnp.where(mask, known, result.sample)",
        "lambda r: r.sample, result, result.sample",
        "inpaint no longer sets the known entries of the result exactly.",
    ),
    _guidance(
        "replacement-noise-same-at-every-time",
        "noise = jr.normal(_time_key(self.key, t), x.shape, x.dtype)",
        "noise = jr.normal(self.key, x.shape, x.dtype)",
        "inpaint's replacement noise is one draw reused at every time instead of "
        "a fresh draw per time.",
    ),
    _guidance(
        "classifier-guidance-scale-ignored",
        "        path=path,\n        scale=scale,\n",
        "        path=path,\n        scale=1.0,\n",
        "classifier_guidance ignores `scale` (always Bayes' rule, s = 1).",
    ),
)


def _sampler(
    name, file, original, replacement, description, tests=SAMPLER_TESTS, **kwargs
):
    return Mutant(
        name, "samplers", file, original, replacement, description, tests, **kwargs
    )


EXPONENTIAL_MUTANTS = (
    _sampler(
        "sde-2m-first-order",
        MULTISTEP,
        "half = moments[0] / (2 * us[1])",
        "half = moments[0] / (2 * self.rate * us[1])",
        "The SDE first-order mutant: DPM-Solver++(2M) SDE's second-order "
        "correction (the midpoint combination of the last two data predictions) "
        "is halved for rate 2 only, so the SDE sampler becomes first order while "
        "the ODE methods (rate 1) are unchanged.",
        tests=EXPONENTIAL_TESTS,
    ),
    _sampler(
        "3m-unic-warm-up-uncorrected",
        MULTISTEP,
        "corrections = (before > 0) & (corrector | (before < order - 1))",
        "corrections = (before > 0) & (corrector ^ (before < order - 1))",
        "3M + UniC drops to second order: with corrector=True the first-order "
        "warm-up step of 3M is no longer corrected (| became ^), so its local "
        "error O(h^2) caps the global order at 2; 2M + UniC, 3M and 2M are "
        "unchanged.",
        tests=EXPONENTIAL_TESTS,
    ),
    _sampler(
        "3m-warm-up-uncorrected",
        MULTISTEP,
        "corrections = (before > 0) & (corrector | (before < order - 1))",
        "corrections = (before > 0) & (corrector | (before < order - 2))",
        "3M without UniC no longer corrects its first-order warm-up step: second "
        "order.",
        tests=EXPONENTIAL_TESTS,
    ),
    _sampler(
        "lower-order-final-off-by-one",
        MULTISTEP,
        "orders = np.minimum(orders, num_steps - index)",
        "orders = np.minimum(orders, num_steps - index - 1)",
        "lower_order_final lowers one step too early (order 0 on the last step).",
        tests=EXPONENTIAL_TESTS,
    ),
    _sampler(
        "sde-moment-recursion-rate-dropped",
        MULTISTEP,
        "moments.append(1 - k / (rate * h) * moments[-1])",
        "moments.append(1 - k / h * moments[-1])",
        "The closed-form moments I_k (k >= 1) ignore the SDE's rate 2.",
        tests=EXPONENTIAL_TESTS,
    ),
    _sampler(
        "quadrature-half-interval-dropped",
        MULTISTEP,
        "kernel = kernel * jnp.asarray(_GAUSS_WEIGHTS, h.dtype) * h / 2",
        "kernel = kernel * jnp.asarray(_GAUSS_WEIGHTS, h.dtype) * h",
        "Gauss-Legendre weights on [s, t] without the Jacobian's 1/2.",
        tests=EXPONENTIAL_TESTS,
    ),
    _sampler(
        "sde-noise-variance-rate-1",
        DPM_PP,
        "jnp.sqrt(-jnp.expm1(-2 * (t.ell - s.ell)))",
        "jnp.sqrt(-jnp.expm1(-(t.ell - s.ell)))",
        "DPM-Solver++ SDE's noise sigma_t (1 - e^{-h})^{1/2} instead of "
        "(1 - e^{-2h})^{1/2}.",
        tests=EXPONENTIAL_TESTS,
    ),
    _sampler(
        "history-offsets-shifted",
        DPM_PP,
        "offsets = jnp.arange(1, 4, dtype=x.dtype)",
        "offsets = jnp.arange(2, 5, dtype=x.dtype)",
        "The placeholder history before the first step sits at other (still "
        "distinct) coordinates before the grid's start.",
        tests=EXPONENTIAL_TESTS,
        equivalent=(
            "The placeholder history is never weighed: the first step has order 1 "
            "and the first correction count 2, so the placeholders only enter "
            "Lagrange weights that are padded to zero or not selected; they need "
            "only be finite and distinct, which offsets 2, 3, 4 are too."
        ),
    ),
    _sampler(
        "dpm-solver-2-midpoint-doubled",
        DPM,
        "return first_order(t) - phi / (2 * r1) * (eps1 - eps), x",
        "return first_order(t) - phi / r1 * (eps1 - eps), x",
        "DPM-Solver-2's correction doubled (the 1/(2 r1) of Algorithm 1 as 1/r1).",
        tests=EXPONENTIAL_TESTS,
    ),
)

OTHER_SAMPLER_MUTANTS = (
    _sampler(
        "ddpm-noise-free-step-wrong-end",
        DDPM,
        "stds = stds.at[0].set(0)  # no noise on the last step, i = 1",
        "stds = stds.at[-1].set(0)  # no noise on the last step, i = 1",
        "DDPM adds no noise on its first step (i = N) and noise on its last (i = 1).",
    ),
    _sampler(
        "edm-heun-average-halving-dropped",
        EDM,
        "x_next = x_hat + (t.level - level_hat) * (slope + next_slope) / 2",
        "x_next = x_hat + (t.level - level_hat) * (slope + next_slope)",
        "Heun's step with the sum of the two slopes instead of their mean.",
    ),
    _sampler(
        "edm-churn-spread-not-root",
        EDM,
        "spread = jnp.sqrt(jnp.maximum(level_hat**2 - s.level**2, 0))",
        "spread = level_hat - s.level",
        "EDM's churn adds noise of scale sigma_hat - sigma instead of "
        "sqrt(sigma_hat^2 - sigma^2).",
    ),
    _sampler(
        "langevin-noise-factor-2-dropped",
        LANGEVIN,
        "return x + step_size * score + jnp.sqrt(2 * step_size) * z",
        "return x + step_size * score + jnp.sqrt(step_size) * z",
        "Langevin's noise sqrt(eps) z instead of sqrt(2 eps) z.",
    ),
    _sampler(
        "pc-corrector-step-factor-2-dropped",
        PC,
        "step_size = 2 * retention * ratio**2",
        "step_size = retention * ratio**2",
        "The Langevin corrector's step 2 alpha (r ||z|| / ||g||)^2 without its 2.",
        # The corrector's signal-to-noise test is in test_order.py; run it
        # first, as test_sampler.py's PC runs are slow under this mutant.
        tests=("tests/test_order.py", "tests/test_sampler.py", *CHANGE_DETECTORS),
    ),
    _sampler(
        "reverse-sde-probability-flow-half",
        SDE,
        "return path.diffusion_squared(t) * score - path.drift(y, t)",
        "return 0.5 * path.diffusion_squared(t) * score - path.drift(y, t)",
        "The reverse SDE's drift with the probability-flow ODE's 1/2 g^2.",
    ),
    _sampler(
        "quadratic-times-uniform",
        GRID,
        "times = jnp.linspace(jnp.sqrt(start), jnp.sqrt(end), num_steps + 1) ** 2",
        "times = jnp.linspace(start, end, num_steps + 1)",
        '"time_quadratic" spacing uniform in t instead of in sqrt(t).',
        # The grids' own test (test_grids_run_from_t_max_to_t_min_as_asked) is
        # with the exponential integrators', which use every spacing.
        tests=EXPONENTIAL_TESTS,
    ),
)

RECIPE_TESTS = ("tests/test_recipes.py",)
BOUND_TESTS = ("tests/test_bound.py",)
BOUND = "src/scorax/_bound.py"
PRECONDITIONED = "src/scorax/_model/_preconditioned.py"
TIME = "src/scorax/_objective/_time.py"
# The training recipes (EDM preconditioning, time distributions, importance
# sampling): each mutant of a formula their tests state.
RECIPE_MUTANTS = (
    Mutant(
        "edm-noise-coefficient-sign",
        "parameterisations",
        PARAMETERISATION,
        "return sigma / squared, -alpha * sigma_d / jnp.sqrt(squared)",
        "return sigma / squared, alpha * sigma_d / jnp.sqrt(squared)",
        "EDMPrediction: eps = (sigma / S^2) x + (alpha sd / S) F, the sign of c_out "
        "lost.",
        (*PARAMETERISATION_TESTS, *RECIPE_TESTS),
    ),
    Mutant(
        "edm-c-skip-not-squared",
        "parameterisations",
        PARAMETERISATION,
        "return (alpha * sigma_d) ** 2 / spread**2, sigma * sigma_d / spread",
        "return (alpha * sigma_d) / spread**2, sigma * sigma_d / spread",
        "EDMPrediction.scalings: c_skip with alpha sd instead of its square.",
        RECIPE_TESTS,
    ),
    Mutant(
        "preconditioned-noise-quarter-of-log-snr",
        "objectives",
        PRECONDITIONED,
        "(-self.path.log_snr(t) / 8).astype(x.dtype)",
        "(-self.path.log_snr(t) / 4).astype(x.dtype)",
        "Preconditioned: c_noise = -lambda / 4 = ln(sigma~) / 2, not EDM's ln / 4.",
        RECIPE_TESTS,
    ),
    Mutant(
        "edm-weight-sigma-data-once",
        "objectives",
        DENOISING,
        "sigma_d2 = jnp.asarray(parameterisation.sigma_data, sigma2.dtype) ** 2",
        "sigma_d2 = jnp.asarray(parameterisation.sigma_data, sigma2.dtype)",
        'diffusion_loss "edm" weighting with sigma_d for sigma_d^2.',
        RECIPE_TESTS,
    ),
    Mutant(
        "lognormal-jacobian-half-dropped",
        "objectives",
        TIME,
        "return jnp.log(path.diffusion_squared(t) / (2 * path.sigma(t) ** 2))",
        "return jnp.log(path.diffusion_squared(t) / path.sigma(t) ** 2)",
        "LogNormalNoise.log_density: d ln(sigma~)/dt = g^2 / sigma^2, without the 1/2.",
        RECIPE_TESTS,
    ),
    Mutant(
        "likelihood-proposal-sigma-not-squared",
        "objectives",
        TIME,
        "rate = path.diffusion_squared(t) / path.sigma(t) ** 2",
        "rate = path.diffusion_squared(t) / path.sigma(t)",
        "LikelihoodProposal.log_density: g^2 / sigma instead of g^2 / sigma^2.",
        RECIPE_TESTS,
    ),
    Mutant(
        "importance-ratio-inverted",
        "objectives",
        TIME,
        "return t, jnp.exp(self.target.log_density(path, t, t_min) - log_q)",
        "return t, jnp.exp(log_q - self.target.log_density(path, t, t_min))",
        "ImportanceTime weights by q / p instead of p / q.",
        RECIPE_TESTS,
    ),
    Mutant(
        "bound-drift-sign",
        "likelihood",
        BOUND,
        "drift = -d * (jnp.log(alpha_high) - jnp.log(path.alpha(low)))",
        "drift = d * (jnp.log(alpha_high) - jnp.log(path.alpha(low)))",
        "nll_bound: the divergence of the drift, -d log(alpha(t_max) / alpha(t_min)), "
        "with the wrong sign.",
        BOUND_TESTS,
    ),
    Mutant(
        "bound-cross-term-halved",
        "likelihood",
        BOUND,
        "cross = jnp.sum((plus - minus) * eps) / (2 * s)",
        "cross = jnp.sum((plus - minus) * eps) / (4 * s)",
        "nll_bound: the antithetic cross term g^2 s . eps / s_t at half its size.",
        BOUND_TESTS,
    ),
    Mutant(
        "bound-kernel-from-zero",
        "likelihood",
        BOUND,
        "s = path.sigma(t) * jnp.sqrt(-jnp.expm1(path.log_snr(t) - log_snr_low))",
        "s = path.sigma(t)",
        "nll_bound: the forward kernel's spread from t = 0 instead of from t_min.",
        BOUND_TESTS,
    ),
    Mutant(
        "bound-prior-without-spread",
        "likelihood",
        BOUND,
        "a**2 * jnp.sum(x**2) + d * s**2",
        "a**2 * jnp.sum(x**2)",
        "nll_bound: the Gaussian prior's expected term without the kernel's spread.",
        BOUND_TESTS,
    ),
    Mutant(
        "truncated-normal-mass-ignored",
        "objectives",
        TIME,
        "            - _log_normal_mass(low, high)\n",
        "",
        "The truncated normals' densities are not renormalised on [t_min, 1].",
        RECIPE_TESTS,
    ),
)

MUTANTS: tuple[Mutant, ...] = (
    *PATH_MUTANTS,
    *PARAMETERISATION_MUTANTS,
    *OBJECTIVE_MUTANTS,
    *TRACE_MUTANTS,
    *LIKELIHOOD_MUTANTS,
    *GUIDANCE_MUTANTS,
    *EXPONENTIAL_MUTANTS,
    *OTHER_SAMPLER_MUTANTS,
    *RECIPE_MUTANTS,
)
MODULES: tuple[str, ...] = (
    "paths",
    "parameterisations",
    "objectives",
    "trace",
    "likelihood",
    "guidance",
    "samplers",
)
