"""Bit packing of binary weights and low-bit integer codes, and the kernels' weight panels.

Stored form of a binary conv weight ``w`` of shape (O, C, kh, kw): the signs,
channel-last, one bit each (set = negative), channels padded to a multiple of
32: ``uint8`` of shape (O, kh*kw, ceil(C/32)*4). This is also the order the
kernels read: each tap contributes ``ceil(C/32)`` 32-bit words to a GEMM row.
"""

from __future__ import annotations

import numpy as np
import torch

PANEL = 32  # output channels per kernel weight panel (bitkernels.cpp kPanel)


def pack_signs(weight: torch.Tensor) -> np.ndarray:
    """(O, kh*kw, ceil(C/32)*4) uint8: bit c of each tap's words set where weight[o, c, ky, kx] < 0."""
    out_channels, channels, kh, kw = weight.shape
    negative = (weight.detach().cpu() < 0).permute(0, 2, 3, 1).reshape(out_channels, kh * kw, channels).numpy()
    padded = -(-channels // 32) * 32
    bits = np.zeros((out_channels, kh * kw, padded), dtype=bool)
    bits[..., :channels] = negative
    return np.packbits(bits, axis=-1, bitorder="little")


def unpack_signs(packed: np.ndarray, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """The +-1 float weight (O, C, kh, kw) of :func:`pack_signs` output."""
    out_channels, channels, kh, kw = shape
    bits = np.unpackbits(packed, axis=-1, bitorder="little")[..., :channels]
    signs = 1.0 - 2.0 * bits.reshape(out_channels, kh, kw, channels).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(signs.transpose(0, 3, 1, 2)))


def kernel_panels(packed: np.ndarray) -> torch.Tensor:
    """The GEMM operand: int64 (panels, K words, 32) with rows of concatenated taps, channels padded to 32."""
    out_channels = packed.shape[0]
    rows = packed.reshape(out_channels, -1)  # taps * c32 * 4 bytes per output channel
    words = -(-rows.shape[1] // 8)
    padded_out = -(-out_channels // PANEL) * PANEL
    buffer = np.zeros((padded_out, words * 8), dtype=np.uint8)
    buffer[:out_channels, : rows.shape[1]] = rows
    panels = buffer.view(np.int64).reshape(padded_out // PANEL, PANEL, words).transpose(0, 2, 1)
    return torch.from_numpy(np.ascontiguousarray(panels))


def border_sums(packed: np.ndarray, channels: int) -> torch.Tensor:
    """int32 (padded O, taps): sum over channels of each tap's +-1 weights (C - 2 * negatives)."""
    negatives = np.unpackbits(packed, axis=-1, bitorder="little").sum(axis=-1, dtype=np.int32)
    sums = channels - 2 * negatives
    padded_out = -(-packed.shape[0] // PANEL) * PANEL
    out = np.zeros((padded_out, packed.shape[1]), dtype=np.int32)
    out[: packed.shape[0]] = sums
    return torch.from_numpy(out)


def pad_channels(values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """A per-channel float vector padded to a multiple of the panel width (the kernels read whole panels)."""
    values = values.detach().float().flatten().cpu()
    padded = -(-values.numel() // PANEL) * PANEL
    return torch.cat([values, values.new_full((padded - values.numel(),), fill)]).contiguous()


def pack_codes(codes: torch.Tensor, bits: int) -> np.ndarray:
    """Integer codes in [0, 2^bits) stored at ``bits`` bits each (uint8 bytes, little-endian bit order)."""
    flat = codes.detach().cpu().to(torch.uint8).flatten().numpy()
    planes = np.unpackbits(flat[:, None], axis=1, bitorder="little")[:, :bits]
    return np.packbits(planes.ravel(), bitorder="little")


def unpack_codes(packed: np.ndarray, bits: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The codes of :func:`pack_codes` as float32 of ``shape``."""
    count = int(np.prod(shape))
    planes = np.unpackbits(packed, bitorder="little")[: count * bits].reshape(count, bits)
    values = (planes.astype(np.int64) << np.arange(bits)).sum(axis=1)
    return torch.from_numpy(values.astype(np.float32)).reshape(shape)
