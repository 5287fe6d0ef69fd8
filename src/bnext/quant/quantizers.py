"""Asymmetric uniform fake quantization (paper section 7.5, SPEC section 8).

Activations: ``alpha = (2^n - 1) / (max - min)``, ``beta = min``,
``q = round((x - beta) * alpha)`` clamped to ``[0, 2^n - 1]``, ``x_hat = q / alpha + beta``.
Weights: divided by their per-output-channel mean |w|, quantized the same way
per output channel, and multiplied back. Rounding passes gradients straight
through, so quantized layers can be fine-tuned.
"""

from __future__ import annotations

import torch


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return (torch.round(x) - x).detach() + x


def quantize_asymmetric(
    x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, bits: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer codes ``q`` in [0, 2^bits - 1], scale ``alpha`` and offset ``beta`` for range [low, high]."""
    levels = 2**bits - 1
    alpha = levels / (high - low).clamp(min=1e-8)
    codes = _round_ste((x.clamp(low, high) - low) * alpha).clamp(0, levels)
    return codes, alpha, low


def fake_quantize(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, bits: int) -> torch.Tensor:
    """``x`` rounded to the ``2^bits`` levels of [low, high] (values outside are clipped)."""
    codes, alpha, beta = quantize_asymmetric(x, low, high, bits)
    return codes / alpha + beta


def quantize_weight(weight: torch.Tensor, bits: int) -> dict[str, torch.Tensor]:
    """Per-output-channel integer form of ``weight``: codes, alpha, beta and the mean-|w| scale.

    ``weight ~= (codes / alpha + beta) * scale`` with every factor per output channel.
    """
    flat = weight.reshape(weight.shape[0], -1)
    scale = flat.abs().mean(dim=1, keepdim=True).clamp(min=1e-12)
    normalized = flat / scale
    low = normalized.min(dim=1, keepdim=True).values.detach()
    high = normalized.max(dim=1, keepdim=True).values.detach()
    codes, alpha, beta = quantize_asymmetric(normalized, low, high, bits)
    return {"codes": codes, "alpha": alpha, "beta": beta, "scale": scale}


def fake_quantize_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """``weight`` after per-channel mean-|w| normalization, asymmetric quantization, and rescaling."""
    parts = quantize_weight(weight, bits)
    restored = (parts["codes"] / parts["alpha"] + parts["beta"]) * parts["scale"]
    return restored.reshape(weight.shape)
