"""Convolution on tiny feature maps (1x1, 2x2) as one dense matrix product.

On the last stages of a network fed small images (Fashion-MNIST, CIFAR) the maps
are 2x2 or 1x1 pixels: a 3x3 conv there mostly multiplies zero padding, and the
CPU's conv backward runs several times slower than a plain GEMM of the same work.
``conv2d`` then gathers the kernel taps into the dense linear operator the conv
applies to the whole (H, W, C) input, ``W_dense[(p_in, c), (p_out, o)]``, and computes
``x @ W_dense``: the same sums, with no multiply by padding and one well-shaped GEMM
forward and backward. Larger maps go to ``torch.nn.functional.conv2d``.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

DENSE_MAX_PIXELS = 4
"""Maps of at most this many input pixels use the dense product (2x2 and smaller)."""


def _output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@lru_cache(maxsize=256)
def _tap_table(
    height: int, width: int, kernel: int, stride: int, padding: int
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The taps that ever touch the input; ``table[p_in, p_out]``, the position in that list of the tap
    joining input pixel ``p_in`` to output pixel ``p_out`` (``len(taps)`` where the pair only meets through
    padding); and whether any pair does."""
    out_h = _output_size(height, kernel, stride, padding)
    out_w = _output_size(width, kernel, stride, padding)
    pairs = {}
    for oy in range(out_h):
        for ox in range(out_w):
            for ky in range(kernel):
                for kx in range(kernel):
                    iy, ix = oy * stride - padding + ky, ox * stride - padding + kx
                    if 0 <= iy < height and 0 <= ix < width:
                        pairs[iy * width + ix, oy * out_w + ox] = ky * kernel + kx
    taps = sorted(set(pairs.values()))
    with torch.inference_mode(False):  # cached: must also serve autograd when first built under inference mode
        table = torch.full((height * width, out_h * out_w), len(taps), dtype=torch.long)
        for (p_in, p_out), tap in pairs.items():
            table[p_in, p_out] = taps.index(tap)
        return torch.tensor(taps), table, len(pairs) < table.numel()


def uses_dense(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True when ``conv2d`` computes this conv as a matrix product: a tiny map on the CPU in eager mode (GPU
    convs are left to cuDNN; traced, compiled and exported graphs keep a plain Conv op)."""
    square = weight.shape[-1] == weight.shape[-2]
    tiny = x.dim() == 4 and x.shape[-1] * x.shape[-2] <= DENSE_MAX_PIXELS
    eager = not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export())
    return tiny and square and x.device.type == "cpu" and eager


def dense_operator(weight: torch.Tensor, height: int, width: int, stride: int, padding: int) -> torch.Tensor:
    """The conv's dense matrix ``[H*W*C_in, H_out*W_out*C_out]`` (rows and columns in (pixel, channel) order)."""
    out_channels, in_channels, kernel, _ = weight.shape
    used, table, has_unlinked_pairs = _tap_table(height, width, kernel, stride, padding)
    taps = weight.flatten(2).index_select(2, used).permute(2, 1, 0)  # [taps, C_in, C_out]
    if has_unlinked_pairs:
        taps = torch.cat([taps, taps.new_zeros(1, in_channels, out_channels)])
    blocks = taps.index_select(0, table.flatten())  # backward: one index_add
    blocks = blocks.view(height * width, -1, in_channels, out_channels)  # [p_in, p_out, C_in, C_out]
    return blocks.permute(0, 2, 1, 3).reshape(height * width * in_channels, -1)


def conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """``F.conv2d(x, weight, stride=stride, padding=padding)`` (no groups, dilation or bias), through a dense
    product on maps of at most ``DENSE_MAX_PIXELS`` pixels; the output keeps the input's memory format."""
    if not uses_dense(x, weight):
        return F.conv2d(x, weight, stride=stride, padding=padding)
    batch, _, height, width = x.shape
    kernel = weight.shape[-1]
    out_h = _output_size(height, kernel, stride, padding)
    out_w = _output_size(width, kernel, stride, padding)
    if kernel == 1 and stride == 1 and padding == 0:  # a pointwise conv: one GEMM over all pixels
        out = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]) @ weight.flatten(1).t()
    else:  # rows of (pixel, channel): free for channels_last input
        out = x.permute(0, 2, 3, 1).reshape(batch, -1) @ dense_operator(weight, height, width, stride, padding)
    out = out.view(batch, out_h, out_w, -1).permute(0, 3, 1, 2)
    return out if x.is_contiguous(memory_format=torch.channels_last) else out.contiguous()


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` that runs through ``conv2d``'s matrix product on tiny maps (e.g. a gate's pooled 1x1 input).

    Same parameters and state-dict keys as ``nn.Conv2d``; only plain convs (no groups, dilation or
    asymmetric / non-zero padding) take the fast path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = (
            self.groups == 1
            and self.dilation == (1, 1)
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)
            and self.padding[0] == self.padding[1]
            and self.stride[0] == self.stride[1]
        )
        if not (plain and uses_dense(x, self.weight)):
            return super().forward(x)
        out = conv2d(x, self.weight, self.stride[0], self.padding[0])
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)
