"""Binary layers and blocks."""

from bnext.nn.binary_conv import LATENT_CLIP, BinaryConv2d
from bnext.nn.blocks import BNext18Block, BNextBlock
from bnext.nn.info_rcp import BinaryUnit, SqueezeExpand
from bnext.nn.sign import ApproxSign, HardSign, LearnableBias, approx_sign_ste, sign_ste
from bnext.nn.temperature import decay_temperature, get_temperature, has_temperature, set_temperature

__all__ = [
    "LATENT_CLIP",
    "ApproxSign",
    "BNext18Block",
    "BNextBlock",
    "BinaryConv2d",
    "BinaryUnit",
    "HardSign",
    "LearnableBias",
    "SqueezeExpand",
    "approx_sign_ste",
    "decay_temperature",
    "get_temperature",
    "has_temperature",
    "set_temperature",
    "sign_ste",
]
