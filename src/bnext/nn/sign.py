"""Activation binarization: learnable shift ("move") and hard sign with a clipped STE."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class _SignWithSurrogateGradient(torch.autograd.Function):
    """Forward exactly ``sign(x)``; backward ``grad * derivative(x)``.

    One pass over ``x`` forward (the ``(sign(x) - s(x)).detach() + s(x)`` idiom takes four,
    and rounds its +-1 by an ulp now and then) and a mask-and-multiply backward.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, derivative: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.derivative = derivative
        return torch.sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * ctx.derivative(x), None


def _sign_with_gradient(x: torch.Tensor, derivative: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    if torch.is_grad_enabled() and x.requires_grad:
        return _SignWithSurrogateGradient.apply(x, derivative)
    return torch.sign(x)  # inference and export: a plain Sign op


def sign_ste(x: torch.Tensor, clip: float = 1.5) -> torch.Tensor:
    """Forward ``sign(x)``; backward the gradient of ``clamp(x, -clip, clip)`` (1 inside, 0 outside).

    ``torch.sign`` maps 0 to 0, as the authors' training code does. The packed
    runtime maps 0 to +1 (a bit has two states); with float inputs an exact zero
    after the learnable shift has probability ~0, and zero *padding* is corrected
    exactly in the runtime, so the two agree on real data.
    """
    return _sign_with_gradient(x, lambda v: v.abs() <= clip)


def approx_sign_ste(x: torch.Tensor) -> torch.Tensor:
    """Forward ``sign(x)``; backward the piecewise-quadratic ApproxSign of Bi-Real Net (slope ``2 - 2|x|``)."""
    return _sign_with_gradient(x, lambda v: (2 - 2 * v.abs()).clamp(min=0))


class LearnableBias(nn.Module):
    """Per-channel learnable shift added before the sign (ReActNet's RSign threshold)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class HardSign(nn.Module):
    """Hard sign with the STE clipped to ``|x| <= clip``.

    The ``temperature`` buffer mirrors the binary conv's so that checkpoints carry
    it and ``decay_temperature`` treats all binarizers alike. With the default
    ``progressive=False`` it does not change the forward (sign(x / T) = sign(x));
    ``progressive=True`` uses ``clamp(x / T, -1, 1)`` instead of the sign.
    """

    def __init__(self, clip: float = 1.5, progressive: bool = False) -> None:
        super().__init__()
        self.clip = clip
        self.progressive = progressive
        self.register_buffer("temperature", torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.progressive:
            return sign_ste(x, self.clip)
        surrogate = x.clamp(-self.clip, self.clip)
        soft = (x / self.temperature.clamp(min=1e-8)).clamp(-1, 1)
        return (soft - surrogate).detach() + surrogate

    def extra_repr(self) -> str:
        return f"clip={self.clip}, progressive={self.progressive}"


class ApproxSign(nn.Module):
    """Sign with Bi-Real Net's ApproxSign gradient (used by the Bi-Real and Real2Binary baselines)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return approx_sign_ste(x)
