"""Neural networks for scores and energies."""

from ._consistency import ConsistencyModel as ConsistencyModel
from ._conv import conv_nhwc as conv_nhwc
from ._mlp import (
    EnergyMLP as EnergyMLP,
    GaussianFourierFeatures as GaussianFourierFeatures,
    ScoreMLP as ScoreMLP,
)
from ._preconditioned import Preconditioned as Preconditioned
from ._unet import UNet as UNet
