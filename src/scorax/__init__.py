"""scorax: score matching and score-based generative models in JAX.

Conventions: time $t \\in [0, 1]$ with $t = 0$ data and $t = 1$ noise; every
function acts on one sample (batch with `jax.vmap`); PRNG keys and
hyperparameters are keyword-only.
"""

from . import datasets as datasets
from ._bound import BoundResult as BoundResult, nll_bound as nll_bound
from ._fit import fit as fit, FitResult as FitResult
from ._guidance import (
    classifier_free_guidance as classifier_free_guidance,
    classifier_guidance as classifier_guidance,
    inpaint as inpaint,
    posterior_guidance as posterior_guidance,
)
from ._likelihood import (
    bits_per_dim as bits_per_dim,
    LikelihoodResult as LikelihoodResult,
    log_likelihood as log_likelihood,
)
from ._metric import (
    fisher_divergence as fisher_divergence,
    fisher_divergence_by_time as fisher_divergence_by_time,
    frechet_distance as frechet_distance,
    mmd as mmd,
    sliced_wasserstein as sliced_wasserstein,
)
from ._mixture import GaussianMixture as GaussianMixture
from ._model import (
    ConsistencyModel as ConsistencyModel,
    conv_nhwc as conv_nhwc,
    EnergyMLP as EnergyMLP,
    GaussianFourierFeatures as GaussianFourierFeatures,
    Preconditioned as Preconditioned,
    ScoreMLP as ScoreMLP,
    UNet as UNet,
)
from ._objective import (
    AbstractDiscretisation as AbstractDiscretisation,
    AbstractTimeDistribution as AbstractTimeDistribution,
    AbstractTimeSampling as AbstractTimeSampling,
    consistency_distillation_loss as consistency_distillation_loss,
    consistency_recipe as consistency_recipe,
    consistency_training_loss as consistency_training_loss,
    ConsistencyRecipe as ConsistencyRecipe,
    denoising_score_matching as denoising_score_matching,
    diffusion_loss as diffusion_loss,
    DoublingCurriculum as DoublingCurriculum,
    explicit_score_matching as explicit_score_matching,
    FixedDiscretisation as FixedDiscretisation,
    implicit_score_matching as implicit_score_matching,
    ImportanceTime as ImportanceTime,
    kde_score as kde_score,
    LikelihoodProposal as LikelihoodProposal,
    LogitNormalTime as LogitNormalTime,
    LogNormalNoise as LogNormalNoise,
    ncsn_loss as ncsn_loss,
    score_from_energy as score_from_energy,
    sliced_score_matching as sliced_score_matching,
    SquareRootCurriculum as SquareRootCurriculum,
    UniformTime as UniformTime,
)
from ._parameterisation import (
    AbstractParameterisation as AbstractParameterisation,
    convert as convert,
    DataPrediction as DataPrediction,
    EDMPrediction as EDMPrediction,
    NoisePrediction as NoisePrediction,
    ScorePrediction as ScorePrediction,
    VelocityPrediction as VelocityPrediction,
)
from ._path import (
    AbstractGaussianPath as AbstractGaussianPath,
    CosinePath as CosinePath,
    DDPMSchedule as DDPMSchedule,
    EDMPath as EDMPath,
    geometric_sigmas as geometric_sigmas,
    LinearPath as LinearPath,
    SubVPPath as SubVPPath,
    VEPath as VEPath,
    VPPath as VPPath,
)
from ._sampler import (
    annealed_langevin as annealed_langevin,
    consistency_sample as consistency_sample,
    ddim_sample as ddim_sample,
    ddpm_sample as ddpm_sample,
    dpm_solver_pp_sample as dpm_solver_pp_sample,
    dpm_solver_sample as dpm_solver_sample,
    edm_sample as edm_sample,
    get_sampler as get_sampler,
    langevin as langevin,
    predictor_corrector_sample as predictor_corrector_sample,
    probability_flow_sample as probability_flow_sample,
    reverse_sde_sample as reverse_sde_sample,
    sampler_table as sampler_table,
    SamplerEntry as SamplerEntry,
    SampleResult as SampleResult,
)
from ._sharded import map_sharded as map_sharded
from ._trace import (
    divergence as divergence,
    exact_trace as exact_trace,
    hutchinson_trace as hutchinson_trace,
)


# The public names, each rendered on an API page with `::: scorax.NAME`
# (tests/test_public_api.py checks both ways). One name per line, in ruff's order
# (RUF022: classes, then functions), so that branches adding names merge cleanly.
# Submodules (`scorax.datasets`, `scorax.testing`) have pages of their own.
__all__ = [
    "AbstractDiscretisation",
    "AbstractGaussianPath",
    "AbstractParameterisation",
    "AbstractTimeDistribution",
    "AbstractTimeSampling",
    "BoundResult",
    "ConsistencyModel",
    "ConsistencyRecipe",
    "CosinePath",
    "DDPMSchedule",
    "DataPrediction",
    "DoublingCurriculum",
    "EDMPath",
    "EDMPrediction",
    "EnergyMLP",
    "FitResult",
    "FixedDiscretisation",
    "GaussianFourierFeatures",
    "GaussianMixture",
    "ImportanceTime",
    "LikelihoodProposal",
    "LikelihoodResult",
    "LinearPath",
    "LogNormalNoise",
    "LogitNormalTime",
    "NoisePrediction",
    "Preconditioned",
    "SampleResult",
    "SamplerEntry",
    "ScoreMLP",
    "ScorePrediction",
    "SquareRootCurriculum",
    "SubVPPath",
    "UNet",
    "UniformTime",
    "VEPath",
    "VPPath",
    "VelocityPrediction",
    "annealed_langevin",
    "bits_per_dim",
    "classifier_free_guidance",
    "classifier_guidance",
    "consistency_distillation_loss",
    "consistency_recipe",
    "consistency_sample",
    "consistency_training_loss",
    "conv_nhwc",
    "convert",
    "ddim_sample",
    "ddpm_sample",
    "denoising_score_matching",
    "diffusion_loss",
    "divergence",
    "dpm_solver_pp_sample",
    "dpm_solver_sample",
    "edm_sample",
    "exact_trace",
    "explicit_score_matching",
    "fisher_divergence",
    "fisher_divergence_by_time",
    "fit",
    "frechet_distance",
    "geometric_sigmas",
    "get_sampler",
    "hutchinson_trace",
    "implicit_score_matching",
    "inpaint",
    "kde_score",
    "langevin",
    "log_likelihood",
    "map_sharded",
    "mmd",
    "ncsn_loss",
    "nll_bound",
    "posterior_guidance",
    "predictor_corrector_sample",
    "probability_flow_sample",
    "reverse_sde_sample",
    "sampler_table",
    "score_from_energy",
    "sliced_score_matching",
    "sliced_wasserstein",
]


__version__ = "0.1.0"
