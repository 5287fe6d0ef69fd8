"""A PyTorch model in eval mode -> the ops of a ``.bnx`` v2 graph (``bnext.deploy.graph``).

Per binary conv the sign of the (shifted) input, the XNOR/popcount conv with sign(w), a per-channel
weight scale (mean |w| for ``scaled_sign``), an eval BatchNorm and a PReLU become one ``binary_conv``
op: weights as sign bits, the rest folded into its ``scale`` / ``shift`` / ``slope``. The fp layers
(stem, downsample convs, gates, classifier) are stored as fp32, or after PTQ as integer codes with
their calibrated input ranges. Families: BNext (all sizes), BNext-18, ReActNet-A and the binary
ResNet-18 baselines (BinaryNet, Bi-Real, Real-to-Binary). BNext units are read through their public
interface (``main_branch_modules``, ``tail``), never their attribute names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from bnext.deploy.graph import INPUT, GraphBuilder
from bnext.deploy.packing import pack_codes, pack_signs
from bnext.errors import UserError
from bnext.models.bnext import BNext
from bnext.models.reactnet import ReActNetA
from bnext.models.resnet18_layout import ResNet18Layout
from bnext.nn.baseline_blocks import BinaryNetBlock, BiRealUnit, ReActBlock, ReActUnit
from bnext.nn.binary_conv import BinaryConv2d
from bnext.nn.blocks import BNext18Block, BNextBlock
from bnext.nn.folding import fold_batchnorm
from bnext.nn.info_rcp import BinaryUnit
from bnext.quant.layers import QuantizedMixin

EXPORTABLE = "the BNext family (bnext_*), bnext18, reactnet_a, birealnet18, real2binary18 and binarynet18"


class Lowering:
    """Writes one model's ops into a :class:`GraphBuilder`; counts binary layers not yet at sign(w)."""

    def __init__(self, in_channels: int) -> None:
        self.graph = GraphBuilder(in_channels)
        self.not_binarized = 0
        self.logits = INPUT  # the classifier's output, once lowered

    # ------------------------------------------------------------------ fp layers
    def dense(self, name: str, layer: nn.Module, x: str, **extra: Any) -> str:
        """A conv or linear layer (fp32 or PTQ codes), with ``extra`` params (e.g. a folded BatchNorm)."""
        params, attrs = dense_parts(layer)
        out = layer.weight.shape[0]
        if isinstance(layer, nn.Linear):
            return self.graph.add("linear", name, {"x": x}, channels=out, attrs=attrs, params=params)
        stride = layer.stride[0]
        attrs.update(kernel=layer.kernel_size[0], stride=stride, padding=layer.padding[0])
        if layer.kernel_size[0] != layer.kernel_size[1] or layer.stride[0] != layer.stride[1] or layer.groups != 1:
            raise UserError(f"{name}: only square, ungrouped fp convs can be exported")
        return self.graph.add(
            "conv2d", name, {"x": x}, channels=out, stride=stride, attrs=attrs, params={**params, **extra}
        )

    def conv_norm(self, name: str, conv: nn.Module, norm: nn.Module | None, x: str) -> str:
        """conv -> BatchNorm as one conv2d op (the BatchNorm as the op's output affine map)."""
        extra = {}
        if isinstance(norm, nn.BatchNorm2d):
            extra["out_scale"], extra["out_shift"] = fold_batchnorm(norm)
        return self.dense(name, conv, x, **extra)

    def chain(self, name: str, module: nn.Module, x: str) -> str:
        """An fp shortcut: Identity, AvgPool2d, conv (+ BatchNorm), in a Sequential or alone."""
        layers = list(module) if isinstance(module, nn.Sequential) else [module]
        index = 0
        while index < len(layers):
            layer = layers[index]
            here = f"{name}.{index}" if isinstance(module, nn.Sequential) else name
            if isinstance(layer, nn.Identity):
                pass
            elif isinstance(layer, nn.AvgPool2d):
                x = self.pool("avg_pool", here, layer, x)
            elif isinstance(layer, nn.Conv2d):
                following = layers[index + 1] if index + 1 < len(layers) else None
                norm = following if isinstance(following, nn.BatchNorm2d) else None
                x = self.conv_norm(here, layer, norm, x)
                index += norm is not None
            elif isinstance(layer, nn.BatchNorm2d):
                scale, shift = fold_batchnorm(layer)
                params = {"scale": scale, "shift": shift}
                channels = self.graph.channels(x)
                attrs = {"channels": channels}
                x = self.graph.add("channel_affine", here, {"x": x}, channels=channels, attrs=attrs, params=params)
            else:
                raise UserError(f"{here}: {type(layer).__name__} cannot be exported; supported: {EXPORTABLE}")
            index += 1
        return x

    def pool(self, kind: str, name: str, layer: nn.Module, x: str) -> str:
        kernel, stride, padding = (_single(getattr(layer, key)) for key in ("kernel_size", "stride", "padding"))
        if getattr(layer, "ceil_mode", False) or (kind == "max_pool" and _single(layer.dilation) != 1):
            raise UserError(f"{name}: pooling with ceil_mode or dilation cannot be exported")
        attrs = {"kernel": kernel, "stride": stride, "padding": padding}
        return self.graph.add(kind, name, {"x": x}, channels=self.graph.channels(x), stride=stride, attrs=attrs)

    def prelu(self, name: str, prelu: nn.PReLU, x: str) -> str:
        channels = self.graph.channels(x)
        slope = _per_channel(prelu.weight, channels)
        attrs = {"channels": channels}
        return self.graph.add("prelu", name, {"x": x}, channels=channels, attrs=attrs, params={"slope": slope})

    def head(self, prelu: nn.Module, fc: nn.Linear, x: str) -> str:
        """(PReLU) -> global average pool -> classifier."""
        if isinstance(prelu, nn.PReLU):
            x = self.prelu("prelu", prelu, x)
        x = self.graph.add("global_avg_pool", "pool", {"x": x}, channels=self.graph.channels(x))
        return self.dense("fc", fc, x)

    # ------------------------------------------------------------------ binary layers
    def binary_conv(
        self,
        name: str,
        conv: BinaryConv2d,
        x: str,
        *,
        input_shift: torch.Tensor | None = None,
        norm: nn.BatchNorm2d | None = None,
        slope: torch.Tensor | None = None,
    ) -> str:
        """PReLU(norm(alpha * conv(sign(x + shift), sign(w)))) as one binary_conv op."""
        self.not_binarized += not conv.is_binary()
        alpha = _weight_scale(conv)
        scale, shift = fold_batchnorm(norm) if norm is not None else (torch.ones_like(alpha), torch.zeros_like(alpha))
        params = {
            "bits": pack_signs(conv.weight),
            "input_shift": torch.zeros(conv.in_channels) if input_shift is None else input_shift.flatten(),
            "scale": scale * alpha,
            "shift": shift,
            "slope": None if slope is None else _per_channel(slope, conv.out_channels),
        }
        attrs = {
            "in_channels": conv.in_channels,
            "out_channels": conv.out_channels,
            "kernel": conv.kernel_size,
            "stride": conv.stride,
            "padding": conv.padding,
        }
        return self.graph.add(
            "binary_conv", name, {"x": x}, channels=conv.out_channels, stride=conv.stride, attrs=attrs, params=params
        )

    def tail(
        self,
        name: str,
        y: str,
        *,
        x: str | None = None,
        residual: str | None = None,
        pool: bool = False,
        act_slope: torch.Tensor | None = None,
        gate: nn.Module | None = None,
        gate_source: str = "residual",
        gate_input: str | None = None,
        mix: torch.Tensor | None = None,
        elm: bool = False,
        norm: nn.BatchNorm2d | None = None,
        post: dict[str, torch.Tensor] | None = None,
    ) -> str:
        """A ``unit_tail`` op (see docs/bnx-format.md): residual, gate, BatchNorm, ELM product, activation."""
        channels = self.graph.channels(y)
        inputs = {"y": y} | ({"x": x} if x is not None else {}) | ({"residual": residual} if residual else {})
        if gate_input is not None:
            inputs["gate_input"] = gate_input
        scale, shift = fold_batchnorm(norm) if norm is not None else (torch.ones(channels), torch.zeros(channels))
        params: dict[str, Any] = {"norm_scale": scale, "norm_shift": shift, "mix": mix}
        params["act_slope"] = None if act_slope is None else _per_channel(act_slope, channels)
        attrs: dict[str, Any] = {"channels": channels, "pool": pool, "elm": elm}
        if gate is not None:
            attrs["gate_source"] = gate_source
            for role, layer in (("squeeze", gate.squeeze_conv), ("expand", gate.expand_conv)):
                parts, layer_attrs = dense_parts(layer)
                params.update({f"{role}.{key}": value for key, value in parts.items()})
                attrs[role] = layer_attrs
        for key, value in (post or {}).items():
            params[f"post_{key}"] = _per_channel(value, channels)
        return self.graph.add("unit_tail", name, inputs, channels=channels, attrs=attrs, params=params)

    def concat(self, name: str, parts: list[str]) -> str:
        if len(parts) == 1:
            return parts[0]
        channels = sum(self.graph.channels(p) for p in parts)
        return self.graph.add("concat", name, {f"x{i}": p for i, p in enumerate(parts)}, channels=channels)

    # ------------------------------------------------------------------ units and blocks
    def bnext_unit(self, name: str, unit: BinaryUnit, x: str) -> str:
        """A BNext unit: packed main branch, then its tail (identity / 2x2-pool / fp downsample shortcut)."""
        branch = unit.main_branch_modules()
        y = self.binary_conv(
            f"{name}.conv", branch.conv, x, input_shift=branch.move.bias, norm=branch.norm,
            slope=branch.activation.weight,
        )  # fmt: skip
        tail = unit.tail()
        act = tail.input_activation.weight if tail.input_activation is not None else None
        options: dict[str, Any] = {"gate": tail.gate, "mix": tail.mix, "elm": tail.elm_attention}
        options["norm"] = tail.norm if (tail.gate is not None or tail.elm_attention) else None
        shortcut = tail.shortcut
        if isinstance(shortcut, nn.Identity | nn.AvgPool2d):
            pool = isinstance(shortcut, nn.AvgPool2d)
            if pool and (_single(shortcut.kernel_size), _single(shortcut.stride)) != (2, 2):
                raise UserError(f"{name}: only 2x2 average-pool shortcuts can be fused")
            source = "residual" if tail.mix_with_residual or not tail.elm_attention else "shortcut"
            return self.tail(name, y, x=x, pool=pool, act_slope=act, gate_source=source, **options)
        # An fp downsample (BNext-18): the residual, and the gate's input where it differs, as ops of their own.
        activated = self.prelu(f"{name}.act", tail.input_activation, x) if act is not None else x
        residual = self.chain(f"{name}.shortcut", shortcut, activated)
        gate_input = None
        if tail.gate is not None and tail.elm_attention and not tail.mix_with_residual:
            gate_input = self.chain(f"{name}.gate_shortcut", shortcut, x)
        source = "input" if gate_input is not None else "residual"
        return self.tail(name, y, residual=residual, gate_source=source, gate_input=gate_input, **options)

    def bnext_block(self, name: str, block: BNextBlock, x: str) -> str:
        y = self.bnext_unit(f"{name}.mixer", block.mixer, x)
        return self.concat(name, [self.bnext_unit(f"{name}.ffn.{i}", u, y) for i, u in enumerate(block.ffn)])

    def bnext18_block(self, name: str, block: BNext18Block, x: str) -> str:
        return self.bnext_unit(f"{name}.ffn", block.ffn, self.bnext_unit(f"{name}.mixer", block.mixer, x))

    def binarynet_block(self, name: str, block: BinaryNetBlock, x: str) -> str:
        y = self.binary_conv(f"{name}.conv1", block.conv1, x, norm=block.bn1)
        y = self.binary_conv(f"{name}.conv2", block.conv2, y, norm=block.bn2)
        residual = self.chain(f"{name}.downsample", block.downsample, x)
        return self.graph.add("add", name, {"a": y, "b": residual}, channels=self.graph.channels(y))

    def bireal_unit(self, name: str, unit: BiRealUnit, x: str) -> str:
        residual = self.chain(f"{name}.downsample", unit.downsample, x)
        if unit.gate is None:
            y = self.binary_conv(f"{name}.conv", unit.conv, x, norm=unit.bn)
            return self.graph.add("add", name, {"a": y, "b": residual}, channels=self.graph.channels(y))
        y = self.binary_conv(f"{name}.conv", unit.conv, x)
        return self.tail(
            name, y, residual=residual, gate=unit.gate, gate_source="input", gate_input=x, norm=unit.bn,
            post={"slope": unit.act.weight},
        )  # fmt: skip

    def react_unit(self, name: str, unit: ReActUnit, x: str) -> str:
        y = self.binary_conv(f"{name}.conv", unit.conv, x, input_shift=unit.move.bias, norm=unit.bn)
        act = unit.act
        post = {"shift_in": act.shift_in.bias, "slope": act.prelu.weight, "shift_out": act.shift_out.bias}
        return self.tail(name, y, x=x, pool=isinstance(unit.shortcut, nn.AvgPool2d), post=post)

    def react_block(self, name: str, block: ReActBlock, x: str) -> str:
        y = self.react_unit(f"{name}.mixer", block.mixer, x)
        return self.concat(name, [self.react_unit(f"{name}.ffn.{i}", u, y) for i, u in enumerate(block.ffn)])

    def block(self, name: str, block: nn.Module, x: str) -> str:
        """Any supported block or unit, by type."""
        if isinstance(block, nn.Sequential):  # Bi-Real / Real-to-Binary blocks: units in sequence
            for index, unit in enumerate(block):
                x = self.block(f"{name}.{index}", unit, x)
            return x
        lowerings: dict[type, Callable[[str, Any, str], str]] = {
            BNextBlock: self.bnext_block,
            BNext18Block: self.bnext18_block,
            BinaryNetBlock: self.binarynet_block,
            BiRealUnit: self.bireal_unit,
            ReActBlock: self.react_block,
        }
        for kind, lower in lowerings.items():
            if isinstance(block, kind):
                return lower(name, block, x)
        raise UserError(f"{name}: {type(block).__name__} cannot be exported; export supports {EXPORTABLE}")


def lower_model(model: nn.Module) -> Lowering:
    """The ops of ``model`` (eval mode); a UserError naming the supported families for any other model."""
    if isinstance(model, BNext):
        lowering = Lowering(model.stem.conv1.in_channels)
        x = lowering.conv_norm("stem", model.stem.conv1, model.stem.bn1, INPUT)
        for index, block in enumerate(model.blocks):
            x = lowering.block(f"blocks.{index}", block, x)
        logits = lowering.head(model.prelu, model.fc, x)
    elif isinstance(model, ResNet18Layout):
        lowering = Lowering(model.conv1.in_channels)
        x = lowering.conv_norm("conv1", model.conv1, model.bn1, INPUT)
        if isinstance(model.maxpool, nn.MaxPool2d):
            x = lowering.pool("max_pool", "maxpool", model.maxpool, x)
        for index in range(4):
            x = lowering.block(f"layer{index}", getattr(model, f"layer{index}"), x)
        logits = lowering.head(model.prelu, model.fc, x)
    elif isinstance(model, ReActNetA):
        lowering = Lowering(model.conv1.in_channels)
        x = lowering.conv_norm("conv1", model.conv1, model.bn1, INPUT)
        for index, block in enumerate(model.blocks):
            x = lowering.block(f"blocks.{index}", block, x)
        logits = lowering.head(nn.Identity(), model.fc, x)
    else:
        raise UserError(f"{type(model).__name__} cannot be exported: export supports {EXPORTABLE}")
    lowering.logits = logits
    return lowering


def dense_parts(layer: nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    """The params and attrs of an fp layer: fp32 weight, or PTQ codes + alpha / beta / scale and its
    calibrated input range; the bias when it has one."""
    params: dict[str, Any] = {"bias": layer.bias}
    attrs: dict[str, Any] = {"out_features": layer.weight.shape[0], "in_features": int(layer.weight[0].numel())}
    if isinstance(layer, QuantizedMixin) and layer.weight_bits is not None:
        parts = layer.integer_weight()
        params["codes"] = pack_codes(parts["codes"], layer.weight_bits)
        params.update({key: parts[key].flatten() for key in ("alpha", "beta", "scale")})
        attrs["weight_bits"] = layer.weight_bits
    else:
        params["weight"] = layer.weight
    if isinstance(layer, QuantizedMixin) and layer.activation_bits is not None:
        low, high = float(layer.input_min), float(layer.input_max)
        if not np.isfinite([low, high]).all():
            raise UserError("a quantized layer has no calibrated input range: run PTQ calibration before export")
        attrs["input_quant"] = {"bits": layer.activation_bits, "low": low, "high": high}
    return params, attrs


def _weight_scale(conv: BinaryConv2d) -> torch.Tensor:
    """Per output channel |binary weight| (1 for sign(w), mean |w| for ``scaled_sign``); the packed conv
    stores only the signs, so that scale moves into the epilogue."""
    with torch.no_grad():
        weight = conv.binary_weight().flatten(1).abs()
    return weight.amax(dim=1)


def _per_channel(values: torch.Tensor, channels: int) -> torch.Tensor:
    """A per-channel vector; a single shared value (nn.PReLU(1)) repeated."""
    values = values.detach().flatten()
    return values.expand(channels) if values.numel() == 1 else values


def _single(value: Any) -> int:
    return int(value[0] if isinstance(value, tuple | list) else value)
