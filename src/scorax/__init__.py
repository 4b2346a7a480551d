"""scorax: score matching and score-based generative models in JAX.

Conventions: time $t \\in [0, 1]$ with $t = 0$ data and $t = 1$ noise; every
function acts on one sample (batch with `jax.vmap`); PRNG keys and
hyperparameters are keyword-only.
"""

from ._mixture import GaussianMixture as GaussianMixture
from ._parameterisation import (
    AbstractParameterisation as AbstractParameterisation,
    convert as convert,
    DataPrediction as DataPrediction,
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


__version__ = "0.1.0"
