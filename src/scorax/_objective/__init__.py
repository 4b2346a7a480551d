"""Score-matching objectives: pure functions of one sample, returning a scalar."""

from ._consistency import (
    AbstractDiscretisation as AbstractDiscretisation,
    consistency_distillation_loss as consistency_distillation_loss,
    consistency_recipe as consistency_recipe,
    consistency_training_loss as consistency_training_loss,
    ConsistencyRecipe as ConsistencyRecipe,
    DoublingCurriculum as DoublingCurriculum,
    FixedDiscretisation as FixedDiscretisation,
    SquareRootCurriculum as SquareRootCurriculum,
)
from ._denoising import (
    denoising_score_matching as denoising_score_matching,
    diffusion_loss as diffusion_loss,
    ncsn_loss as ncsn_loss,
    WEIGHTINGS as WEIGHTINGS,
)
from ._score_matching import (
    explicit_score_matching as explicit_score_matching,
    implicit_score_matching as implicit_score_matching,
    kde_score as kde_score,
    score_from_energy as score_from_energy,
    sliced_score_matching as sliced_score_matching,
)
from ._time import (
    AbstractTimeDistribution as AbstractTimeDistribution,
    AbstractTimeSampling as AbstractTimeSampling,
    ImportanceTime as ImportanceTime,
    LikelihoodProposal as LikelihoodProposal,
    LogitNormalTime as LogitNormalTime,
    LogNormalNoise as LogNormalNoise,
    UniformTime as UniformTime,
)
