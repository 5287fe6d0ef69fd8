"""The fp ops around a packed binary conv, regrouped for inference (same math, fewer passes over memory).

A BNext unit in eval mode computes, after its main branch ``y`` (the packed conv, which
already applies BN1 and PReLU):

* Info-RCP gate: ``g = sigmoid(E(relu(S(mean(s * src + (1 - s) * y)))))``. The mean of the
  mix is ``s * mean(src) + (1 - s) * mean(y)``: two reductions instead of three full-size
  elementwise passes, and S / E act on a (N, C) vector, so they run as matrix products.
* Plain unit: ``BN2(g * y) + r = y * (a2 * g) + (b2 + r)`` with BN2 folded to ``a2``, ``b2``:
  one ``addcmul`` instead of a multiply, a BatchNorm and an add.
* ELM-Attention unit: ``BN2(y * r) + r`` with ``r = shortcut(PReLU(x))``.

Quantized S / E layers (PTQ) are called as they are, on the pooled vector. Otherwise, on the CPU
with the C++ kernels, the whole tail is one call (``unit_tail`` in ``csrc/unit_tail.cpp``: the two
means, then one pass writing the output; an identity or 2x2 average-pool shortcut and the ELM unit's
PReLU before it are computed there per pixel, not as torch ops), and a channel-doubling block's FFN units write their
channel ranges of the block output directly (:class:`FusedBlock`, no concatenation copy).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import nn

from bnext.deploy import kernels
from bnext.nn.blocks import BNextBlock, concat_outputs
from bnext.nn.folding import fold_batchnorm
from bnext.nn.info_rcp import BinaryUnit
from bnext.nn.small_map import SmallMapConv2d
from bnext.nn.switch import switched


class PooledPointwise(nn.Module):
    """A 1x1 conv on a globally pooled (N, C, 1, 1) tensor, run as a matrix product (~20 us less per call)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.register_buffer("weight", conv.weight.detach().flatten(1))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.flatten(1), self.weight, self.bias)[:, :, None, None]

    def matrix_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(out, in) weight and (out,) bias (zeros when the conv has none)."""
        bias = self.bias if self.bias is not None else self.weight.new_zeros(self.weight.shape[0])
        return self.weight, bias


def _pointwise(layer: nn.Module) -> nn.Module:
    plain = type(layer) in (nn.Conv2d, SmallMapConv2d)  # a quantized (PTQ) conv runs as it is
    return PooledPointwise(layer) if plain and layer.kernel_size == (1, 1) else layer


class FusedUnit(nn.Module):
    """Eval forward of a loaded :class:`BinaryUnit` whose main branch is already the packed op."""

    def __init__(self, unit: BinaryUnit) -> None:
        super().__init__()
        tail = unit.tail()
        conv = unit.replaced_main_branch()
        if conv is None:
            raise ValueError("FusedUnit needs a unit whose main branch was replaced by a packed op")
        self.conv = conv
        self.shortcut = tail.shortcut
        self.elm_attention = tail.elm_attention
        self.recoupling = tail.gate is not None
        self.mix_with_residual = tail.mix_with_residual
        self.activation1 = tail.input_activation
        if tail.gate is not None:
            self.squeeze, self.expand = _pointwise(tail.gate.squeeze_conv), _pointwise(tail.gate.expand_conv)
            self.register_buffer("mix", tail.mix)
        # The second BatchNorm folded to (C,) scale / shift; identity for a plain unit without Info-RCP,
        # which has none (its output is y + residual).
        scale, shift = fold_batchnorm(tail.norm)
        normalized = self.recoupling or self.elm_attention
        self.register_buffer("norm_scale", scale if normalized else torch.ones_like(scale))
        self.register_buffer("norm_shift", shift if normalized else torch.zeros_like(shift))
        # The same tail as one C++ call (unit_tail) when the gate's S / E are plain matrices; the shortcut
        # too when it is an identity or a 2x2 average pool and the input activation a PReLU.
        self.native_gate = self._native_gate()
        self.native_shortcut = self._native_shortcut()
        self._packed_unit = None  # the C++ PackedUnit, bound on first native forward
        self.one_call = True  # False: pack + conv and the tail as separate calls (see separate_kernel_calls)

    def _native_gate(self) -> list[torch.Tensor] | None:
        """{mix, S^T, bs, E^T, be} for ``unit_tail``; [] without a gate; None when S / E are quantized layers."""
        if not self.recoupling:
            return []
        if not (isinstance(self.squeeze, PooledPointwise) and isinstance(self.expand, PooledPointwise)):
            return None
        (squeeze, squeeze_bias), (expand, expand_bias) = self.squeeze.matrix_and_bias(), self.expand.matrix_and_bias()
        return [self.mix, squeeze.t().contiguous(), squeeze_bias, expand.t().contiguous(), expand_bias]

    def _native_shortcut(self) -> dict | None:
        """``unit_tail``'s {slope, pool, gate_before_act} for this unit's shortcut; None when torch computes it."""
        pool = isinstance(self.shortcut, nn.AvgPool2d) and _is_halving_pool(self.shortcut)
        if not (pool or isinstance(self.shortcut, nn.Identity)):
            return None
        if not self.elm_attention:
            return {"slope": None, "pool": pool, "gate_before_act": False}
        channels = self.conv.shape[1]
        if not (isinstance(self.activation1, nn.PReLU) and self.activation1.weight.numel() in (1, channels)):
            return None
        slope = self.activation1.weight.detach().float().expand(channels).contiguous()
        return {"slope": slope, "pool": pool, "gate_before_act": not self.mix_with_residual}

    def gate(self, source: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The Info-RCP gate from the means of ``source`` and ``y`` (shape N, C, 1, 1)."""
        pooled = self.mix * source.mean((2, 3)) + (1 - self.mix) * y.mean((2, 3))
        return torch.sigmoid(self.expand(F.relu(self.squeeze(pooled[:, :, None, None]))))

    def native(self, x: torch.Tensor) -> bool:
        """Whether the tail runs as the one C++ call for this input."""
        # With a shortcut torch computes, the C++ tail takes its result as the residual, which must then also
        # be the gate's source.
        residual_ready = self.native_shortcut is not None or not self.elm_attention or self.mix_with_residual
        return (
            self.native_gate is not None
            and residual_ready
            and x.device.type == "cpu"
            and kernels.extension() is not None
        )

    def forward(self, x: torch.Tensor, into: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
        """The unit's output; with ``into`` (native tail only) written to its channels ``offset:offset + C``."""
        if self.native(x):
            if self.runs_in_one_call:
                return self.packed_unit()(x.float(), into, offset)
            tail = {"gate": self.native_gate, "scale": self.norm_scale, "shift": self.norm_shift}
            tail |= {"elm": self.elm_attention, "into": into, "offset": offset}
            y = self.conv(x)
            if self.native_shortcut is not None:
                return kernels.extension().unit_tail(y.float(), x.float(), **self.native_shortcut, **tail)
            residual = self.shortcut(self.activation1(x) if self.elm_attention else x)
            return kernels.extension().unit_tail(
                y.float(), residual.float(), slope=None, pool=False, gate_before_act=False, **tail
            )
        if into is not None:
            raise ValueError("writing into a shared output needs the native tail (C++ kernels on the CPU)")
        y = self.conv(x)
        if self.elm_attention:
            residual = self.shortcut(self.activation1(x))
            if self.recoupling:
                y = y * self.gate(residual if self.mix_with_residual else self.shortcut(x), y)
            return torch.addcmul(
                residual + self._per_channel(self.norm_shift), y * residual, self._per_channel(self.norm_scale)
            )
        residual = self.shortcut(x)
        if not self.recoupling:
            return y + residual
        scale = self._per_channel(self.norm_scale) * self.gate(residual, y)
        return torch.addcmul(residual + self._per_channel(self.norm_shift), y, scale)

    @property
    def runs_in_one_call(self) -> bool:
        """Whether a native forward (see :meth:`native`) is one ``PackedUnit`` call: the shortcut is one
        ``unit_tail`` computes, and :func:`separate_kernel_calls` is not in effect."""
        return self.one_call and self.native_shortcut is not None and self.native_gate is not None

    def packed_unit(self) -> Callable[..., torch.Tensor]:
        """The whole unit as one C++ call (``PackedUnit``: pack, conv, tail), for a native shortcut; bound once
        with this unit's constants, and again after ``.to()`` / ``.float()``."""
        if self._packed_unit is None:
            shortcut = self.native_shortcut
            self._packed_unit = kernels.extension().PackedUnit(
                *self.conv.kernel_arguments(), residual_slope=shortcut["slope"], pool=shortcut["pool"],
                gate_before_act=shortcut["gate_before_act"], gate=self.native_gate, norm_scale=self.norm_scale,
                norm_shift=self.norm_shift, elm=self.elm_attention,
            )  # fmt: skip
        return self._packed_unit

    def _apply(self, fn, recurse: bool = True):
        module = super()._apply(fn, recurse)
        self._packed_unit = None  # bound to the replaced tensors
        return module

    @staticmethod
    def _per_channel(values: torch.Tensor) -> torch.Tensor:
        return values.view(1, -1, 1, 1)


def _is_halving_pool(pool: nn.AvgPool2d) -> bool:
    """Whether an AvgPool2d is the 2x2, stride-2, unpadded pool that ``unit_tail`` computes itself."""
    pairs = [v if isinstance(v, tuple) else (v, v) for v in (pool.kernel_size, pool.stride, pool.padding)]
    return pairs == [(2, 2), (2, 2), (0, 0)] and not pool.ceil_mode and pool.divisor_override is None


class FusedBlock(nn.Module):
    """Eval forward of a :class:`BNextBlock` whose FFN units write their channel ranges of the concatenated
    output themselves (no ``torch.cat`` copy) when their tails run natively."""

    def __init__(self, block: BNextBlock) -> None:
        super().__init__()
        self.mixer, self.ffn = block.mixer, block.ffn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mixer(x)
        if len(self.ffn) == 1 or not all(isinstance(unit, FusedUnit) and unit.native(x) for unit in self.ffn):
            return concat_outputs(self.ffn, x)
        channels = x.shape[1]
        shape = (x.shape[0], channels * len(self.ffn), *x.shape[2:])
        out = torch.empty(shape, dtype=torch.float32, device=x.device, memory_format=torch.channels_last)
        for index, unit in enumerate(self.ffn):
            unit(x, into=out, offset=index * channels)
        return out


def separate_kernel_calls(model: nn.Module) -> AbstractContextManager[None]:
    """Within the block, every fused unit calls its packed conv module and its tail apart (same results), so
    that hooks on the :class:`~bnext.deploy.runtime.PackedBinaryConv` modules see them: for benchmarks that
    time or shape the binary convs on their own."""
    return switched([m for m in model.modules() if isinstance(m, FusedUnit)], "one_call", False)


def fuse_units(model: nn.Module) -> None:
    """Replace every BinaryUnit of a loaded packed model (in place) by its :class:`FusedUnit`, then every
    BNextBlock (now holding fused units) by a :class:`FusedBlock`."""
    for kind, fused in ((BinaryUnit, FusedUnit), (BNextBlock, FusedBlock)):
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, kind):
                    setattr(module, name, fused(child))
