"""Binarizers passed to binary layers as arguments (as larq's ``input_quantizer`` / ``kernel_quantizer``).

Activation quantizers map a float tensor to +-1 in the forward pass and choose the
gradient of the backward pass (the straight-through estimator, STE). Weight
quantizers map latent fp weights (and the layer's binarization temperature) to the
binary weight the conv uses. Both are looked up by name or passed as modules:

    BinaryConv2d(64, 64, weight_quantizer="scaled_sign")
    BinaryUnit(64, 64, input_quantizer="approx_sign")
    register_activation_quantizer("my_sign")(MySign)

The defaults are BNext's: ``hard_sign`` (sign with an STE clipped at |x| <= 1.5) and
``temperature`` (progressive binarization ``clamp(w / T, -1, 1)``, exact sign(w) once
``T < EXACT_SIGN_BELOW``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bnext.errors import UserError
from bnext.nn.sign import ApproxSign, HardSign

EXACT_SIGN_BELOW = 1e-7
"""BNext's weight binarizer uses exact sign(w) once the temperature drops below this (authors' BNext code)."""

BNEXT18_EXACT_SIGN_BELOW = 1e-5
"""The authors' BNext-18 code (their ResNet-18 layout) switches to exact sign already at T < 1e-5."""


class SwishSign(nn.Module):
    """Sign whose backward is the gradient of BNN+'s SwishSign ``2 s(bx)(1 + bx(1 - s(bx))) - 1``, s = sigmoid."""

    def __init__(self, beta: float = 5.0) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sig = torch.sigmoid(self.beta * x)
        surrogate = 2 * sig * (1 + self.beta * x * (1 - sig)) - 1
        return (torch.sign(x) - surrogate).detach() + surrogate

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class _StraightThrough(torch.autograd.Function):
    """Forward ``binarize(latent)`` exactly; backward the gradient unchanged to ``latent``."""

    @staticmethod
    def forward(ctx: Any, latent: torch.Tensor, binarize: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return binarize(latent)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class TemperatureBinarizer(nn.Module):
    """Weight binarizer: ``clamp(w / T, -1, 1)``, exact ``sign(w)`` once ``T < sign_below``.

    ``T`` is the owning layer's ``temperature`` buffer (decayed by the trainer).
    ``sign_below=inf`` binarizes with sign(w) from the first step (the baselines).
    ``scale="mean_abs"`` multiplies by each output channel's mean |w| (XNOR / Bi-Real).
    In training the gradient goes straight through to the latent weight.
    """

    def __init__(self, sign_below: float = EXACT_SIGN_BELOW, scale: str = "none") -> None:
        super().__init__()
        if scale not in ("none", "mean_abs"):
            raise ValueError(f"scale must be 'none' or 'mean_abs', got {scale!r}")
        self.sign_below = sign_below
        self.scale = scale

    def binarize(self, latent: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        """The forward weight for ``latent`` at ``temperature`` (differentiable as written)."""
        # A tensor-valued choice (no Python branch on the buffer): no host sync per layer on
        # GPUs and no graph break under torch.compile.
        soft = (latent / temperature.clamp(min=1e-8)).clamp(-1, 1)
        binary = torch.where(temperature < self.sign_below, torch.sign(latent), soft)
        if self.scale == "mean_abs":
            binary = binary * latent.abs().mean(dim=(1, 2, 3), keepdim=True).detach()
        return binary

    def forward(self, latent: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        if self.training:
            return _StraightThrough.apply(latent, lambda w: self.binarize(w, temperature))
        return self.binarize(latent, temperature)

    def is_exact(self, temperature: torch.Tensor) -> bool:
        """True once the forward weight is exactly sign(w) (times the scale, if any)."""
        return float(temperature) < self.sign_below

    def extra_repr(self) -> str:
        return f"sign_below={self.sign_below}, scale={self.scale}"


_ACTIVATION: dict[str, Callable[[], nn.Module]] = {
    "hard_sign": lambda: HardSign(clip=1.5),  # BNext (paper and authors' code)
    "ste_sign": lambda: HardSign(clip=1.0),  # plain STE sign: BinaryNet, larq's ste_sign
    "approx_sign": ApproxSign,  # Bi-Real Net, Real-to-Binary, ReActNet
    "swish_sign": SwishSign,  # BNN+
}
_WEIGHT: dict[str, Callable[[], nn.Module]] = {
    "temperature": TemperatureBinarizer,  # BNext
    "temperature_bnext18": lambda: TemperatureBinarizer(BNEXT18_EXACT_SIGN_BELOW),  # BNext-18
    "sign": lambda: TemperatureBinarizer(math.inf),  # BinaryNet
    "scaled_sign": lambda: TemperatureBinarizer(math.inf, scale="mean_abs"),  # Bi-Real, ReActNet
}


def register_activation_quantizer(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator: make ``factory()`` available as ``input_quantizer=name``."""

    def add(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        _ACTIVATION[name] = factory
        return factory

    return add


def register_weight_quantizer(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator: make ``factory()`` available as ``weight_quantizer=name``."""

    def add(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        _WEIGHT[name] = factory
        return factory

    return add


def _build(kind: str, table: dict[str, Callable[[], nn.Module]], spec: str | nn.Module) -> nn.Module:
    if isinstance(spec, nn.Module):
        return spec
    if spec not in table:
        raise UserError(f"unknown {kind} quantizer {spec!r}: choose one of {', '.join(sorted(table))}")
    return table[spec]()


def activation_quantizer(spec: str | nn.Module = "hard_sign") -> nn.Module:
    """A new activation quantizer from its registered name (a module is returned as is)."""
    return _build("activation", _ACTIVATION, spec)


def weight_quantizer(spec: str | nn.Module = "temperature") -> nn.Module:
    """A new weight quantizer from its registered name (a module is returned as is)."""
    return _build("weight", _WEIGHT, spec)


def list_quantizers() -> dict[str, list[str]]:
    """Registered names: ``{"activation": [...], "weight": [...]}``."""
    return {"activation": sorted(_ACTIVATION), "weight": sorted(_WEIGHT)}
