"""Sampler configurations whose outputs are recorded in `samplers.npz`.

`python -m tests.regression.samplers` (from the repository root) records them
with the code of the day; `tests/test_sampler_regression.py` recomputes them
and compares. The file was written before the samplers became solver modules
(scorax 0.1.0 plus the UNet work), so the test shows that the refactor changed
no sampler's output beyond rounding. Rewrite it only for an intended change of
a sampler's output, and say so in the changelog.
"""

import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import scorax
import scorax.testing


# As in tests/conftest.py, before any constant below is built.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

HERE = pathlib.Path(__file__).parent
FILE = HERE / "samplers.npz"

MIXTURE = scorax.GaussianMixture(
    weights=np.array([0.3, 0.7]),
    means=np.array([[-1.0, 0.5], [1.5, -0.5]]),
    covs=np.stack([0.16 * np.eye(2), np.array([[0.36, 0.1], [0.1, 0.25]])]),
)
VP = scorax.VPPath()
SCHEDULE = scorax.DDPMSchedule(200)


def _exact(path, parameterisation=None):
    parameterisation = parameterisation or scorax.NoisePrediction()
    return scorax.testing.ExactModel(MIXTURE, path, parameterisation=parameterisation)


def _start(path):
    return path.prior_sample(key=jr.key(3), shape=(2,)).astype(jnp.float64)


def configurations() -> dict[str, Callable[[], scorax.SampleResult]]:
    """name: a thunk returning the sampler's result (float64, fixed keys)."""
    key = jr.key(7)
    edm = scorax.EDMPath()
    ve = scorax.VEPath(sigma_min=0.01, sigma_max=3.0)
    sigmas = scorax.geometric_sigmas(
        sigma_min=0.05, sigma_max=3.0, num_levels=5, dtype=jnp.float64
    )

    def ncsn(x, sigma):
        # the exact score of the mixture blurred by noise of scale sigma
        blurred = scorax.GaussianMixture(
            means=MIXTURE.means,
            covs=MIXTURE.covs + sigma**2 * jnp.eye(2)[None],
            weights=MIXTURE.weights,
        )
        return blurred.score(x)

    def score(x):
        return MIXTURE.score(x)

    return {
        "dpm1": lambda: scorax.dpm_solver_sample(
            _exact(VP), VP, _start(VP), num_steps=6, order=1, trajectory=True
        ),
        "dpm2_time": lambda: scorax.dpm_solver_sample(
            _exact(VP, scorax.DataPrediction()),
            VP,
            _start(VP),
            num_steps=5,
            order=2,
            spacing="time",
            parameterisation=scorax.DataPrediction(),
        ),
        "dpm3_edm_spacing": lambda: scorax.dpm_solver_sample(
            _exact(edm), edm, _start(edm), num_steps=4, order=3, spacing="edm"
        ),
        "dpm3_schedule": lambda: scorax.dpm_solver_sample(
            _exact(SCHEDULE.path), SCHEDULE, _start(VP), num_steps=4, order=3
        ),
        "dpm1_schedule_time": lambda: scorax.dpm_solver_sample(
            _exact(SCHEDULE.path),
            SCHEDULE,
            _start(VP),
            num_steps=5,
            order=1,
            spacing="time",
        ),
        "dpmpp_2m": lambda: scorax.dpm_solver_pp_sample(
            _exact(VP), VP, _start(VP), num_steps=8, order=2, trajectory=True
        ),
        "dpmpp_3m_no_lower_final": lambda: scorax.dpm_solver_pp_sample(
            _exact(VP), VP, _start(VP), num_steps=8, order=3, lower_order_final=False
        ),
        "dpmpp_3m_unic_data_std_time": lambda: scorax.dpm_solver_pp_sample(
            _exact(VP),
            VP,
            _start(VP),
            num_steps=7,
            order=3,
            corrector=True,
            spacing="time_quadratic",
            interpolation="time",
            data_std=0.9,
            trajectory=True,
        ),
        "dpmpp_3m_unic_cosine": lambda: scorax.dpm_solver_pp_sample(
            _exact(scorax.CosinePath(), scorax.VelocityPrediction()),
            scorax.CosinePath(),
            _start(VP),
            num_steps=6,
            order=3,
            corrector=True,
            t_max=0.99,
            parameterisation=scorax.VelocityPrediction(),
        ),
        "dpmpp_2m_sde": lambda: scorax.dpm_solver_pp_sample(
            _exact(VP),
            VP,
            _start(VP),
            num_steps=10,
            order=2,
            stochastic=True,
            key=key,
            trajectory=True,
        ),
        "dpmpp_2m_schedule": lambda: scorax.dpm_solver_pp_sample(
            _exact(SCHEDULE.path),
            SCHEDULE,
            _start(VP),
            num_steps=6,
            order=2,
            spacing="time_quadratic",
            denoise=False,
        ),
        "edm_heun": lambda: scorax.edm_sample(
            _exact(edm), edm, _start(edm), num_steps=6, trajectory=True
        ),
        "edm_heun_churn": lambda: scorax.edm_sample(
            _exact(VP),
            VP,
            _start(VP),
            num_steps=8,
            churn=10.0,
            churn_min=0.05,
            churn_max=5.0,
            churn_noise=1.003,
            key=key,
            trajectory=True,
        ),
        "ddpm_beta": lambda: scorax.ddpm_sample(
            _exact(SCHEDULE.path), SCHEDULE, _start(VP), key=key, trajectory=True
        ),
        "ddpm_posterior": lambda: scorax.ddpm_sample(
            _exact(SCHEDULE.path), SCHEDULE, _start(VP), key=key, variance="posterior"
        ),
        "ddim": lambda: scorax.ddim_sample(
            _exact(SCHEDULE.path), SCHEDULE, _start(VP), num_steps=10, trajectory=True
        ),
        "ddim_eta": lambda: scorax.ddim_sample(
            _exact(SCHEDULE.path), SCHEDULE, _start(VP), num_steps=10, eta=0.5, key=key
        ),
        "langevin": lambda: scorax.langevin(
            score, _start(VP), key=key, step_size=0.01, num_steps=50, trajectory=True
        ),
        "annealed_langevin": lambda: scorax.annealed_langevin(
            ncsn,
            sigmas,
            _start(ve),
            key=key,
            step_size=1e-3,
            steps_per_level=4,
            trajectory=True,
        ),
        "predictor_corrector": lambda: scorax.predictor_corrector_sample(
            _exact(ve), ve, _start(ve), key=key, num_steps=20, trajectory=True
        ),
        "reverse_sde": lambda: scorax.reverse_sde_sample(
            _exact(VP), VP, _start(VP), key=key, num_steps=20
        ),
        "probability_flow": lambda: scorax.probability_flow_sample(
            _exact(VP), VP, _start(VP), num_steps=20
        ),
    }


def flatten(result: scorax.SampleResult) -> dict[str, np.ndarray]:
    fields = {
        "sample": result.sample,
        "num_evaluations": result.num_evaluations,
        "trajectory": result.trajectory,
        "times": result.times,
    }
    return {k: np.asarray(v) for k, v in fields.items() if v is not None}


def record() -> None:
    arrays = {}
    for name, thunk in configurations().items():
        for field, value in flatten(thunk()).items():
            arrays[f"{name}/{field}"] = value
    np.savez(FILE, **arrays)


if __name__ == "__main__":
    record()
