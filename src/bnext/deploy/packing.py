"""Bit packing of binary weights and low-bit integer codes, as a ``.bnx`` stores them.

Stored form of a binary conv weight ``w`` of shape (O, C, kh, kw): the signs,
channel-last, one bit each (set = negative), channels padded to a multiple of
32: ``uint8`` of shape (O, kh*kw, ceil(C/32)*4). The C++ runtime builds its
kernels' weight layout from it at load (runtime/src/kernels/binary_conv.cpp).
"""

from __future__ import annotations

import numpy as np
import torch


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
