"""Neural networks for scores and energies."""

from ._mlp import (
    EnergyMLP as EnergyMLP,
    GaussianFourierFeatures as GaussianFourierFeatures,
    ScoreMLP as ScoreMLP,
)
from ._unet import UNet as UNet
