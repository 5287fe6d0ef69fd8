"""Checkpoint -> ``.bnx``: binary weights as bits, folded per-channel transforms, fp or PTQ-integer rest.

Per BNext unit (``BinaryUnit``) the main branch move -> sign -> binary conv -> BN -> PReLU
becomes one packed op: the learnable shift is applied while packing (``input_shift``),
the conv weights are stored as sign bits, and the eval BatchNorm is folded into a
per-channel ``scale`` / ``shift`` applied to the integer conv output together with the
PReLU ``slope``. Everything else (stem, Info-RCP gates and their mixing scale, the
ELM-Attention product, second BatchNorm, residuals, classifier) is stored as fp32, or
for a PTQ checkpoint as the integer codes of its quantized layers. Parameters that the
forward never reads (frozen, kept only for the authors' checkpoints) are dropped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bnext import __version__
from bnext.card import ModelCard, card_from_payload
from bnext.deploy.fileformat import Entry, write_bnx
from bnext.deploy.packing import pack_codes, pack_signs
from bnext.errors import UserError
from bnext.loading import model_from_checkpoint
from bnext.nn.binary_conv import BinaryConv2d
from bnext.nn.folding import fold_batchnorm
from bnext.nn.info_rcp import BinaryUnit
from bnext.quant.layers import QuantizedMixin


@dataclass
class ExportReport:
    """What ``export_checkpoint`` wrote."""

    path: Path
    bytes: int
    checkpoint_bytes: int  # the source file (a training checkpoint also holds optimizer state)
    fp32_weights_bytes: int  # the model's parameters and buffers as fp32: the fair size to compare with
    binary_layers: int
    binary_weights: int
    not_binarized: int  # units whose temperature had not yet reached exact sign (exported as sign(w))


def unused_state(model: nn.Module) -> set[str]:
    """State keys of modules whose parameters are all frozen by construction (never read by forward)."""
    unused = set()
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params) and not isinstance(module, BinaryConv2d):
            prefix = f"{name}." if name else ""
            unused.update(prefix + key for key in module.state_dict())
    return unused


def _fp32(tensor: torch.Tensor) -> Entry:
    return Entry("fp32", tensor.detach().cpu().float().numpy())


def packed_entries(model: nn.Module) -> tuple[dict[str, Entry], int]:
    """The stored tensors of ``model`` (eval mode) and the number of units not yet fully binarized."""
    units = {name: m for name, m in model.named_modules() if isinstance(m, BinaryUnit)}
    names = {id(module): name for name, module in model.named_modules()}
    branches = {name: unit.main_branch_modules() for name, unit in units.items()}
    inside = {id(branch.conv) for branch in branches.values()}
    stray = [name for name, m in model.named_modules() if isinstance(m, BinaryConv2d) and id(m) not in inside]
    if stray or not units:
        raise UserError(
            f"{type(model).__name__} cannot be packed: export supports the BNext family and bnext18 "
            f"(binary convs inside BNext units){'; stray binary convs: ' + ', '.join(stray[:3]) if stray else ''}"
        )
    entries: dict[str, Entry] = {}
    skip = unused_state(model)
    not_binarized = 0
    for branch in branches.values():
        conv = branch.conv
        prefix = names[id(conv)]
        not_binarized += not conv.is_binary()
        scale, shift = fold_batchnorm(branch.norm)
        slope = branch.activation.weight.detach().expand(conv.out_channels)
        entries[f"{prefix}.weight"] = Entry(
            "bits",
            pack_signs(conv.weight),
            {"shape": list(conv.weight.shape), "stride": conv.stride, "padding": conv.padding},
        )
        entries[f"{prefix}.input_shift"] = _fp32(branch.move.bias.flatten())
        entries[f"{prefix}.scale"] = _fp32(scale)
        entries[f"{prefix}.shift"] = _fp32(shift)
        entries[f"{prefix}.slope"] = _fp32(slope)
        for module in branch.modules():  # folded into the packed op
            skip.update(f"{names[id(module)]}.{key}" for key in module.state_dict())
    for name, module in model.named_modules():
        if isinstance(module, QuantizedMixin) and module.weight_bits is not None:
            parts = module.integer_weight()
            bits = module.weight_bits
            meta = {"bits": bits, "shape": list(module.weight.shape)}
            entries[f"{name}.weight"] = Entry("codes", pack_codes(parts["codes"], bits), meta)
            for key in ("alpha", "beta", "scale"):
                entries[f"{name}.weight_{key}"] = _fp32(parts[key])
            skip.add(f"{name}.weight")
    for key, value in model.state_dict().items():
        if key in skip or key.endswith(("num_batches_tracked", "temperature")):
            continue
        entries[key] = _fp32(value)
    return entries, not_binarized


def packed_header(
    model: nn.Module,
    entries: dict[str, Entry],
    card: ModelCard,
    quant_config: str | None = None,
) -> dict[str, Any]:
    """The ``.bnx`` header: the model card (how to rebuild the model, its classes and input),
    the PTQ config, and which of its state keys are folded or dropped."""
    return {
        "format": "bnext-packed",
        "bnext_version": __version__,
        "card": card.as_dict(),
        "quant_config": quant_config,
        "dropped_state": sorted(set(model.state_dict()) - set(entries)),
    }


def export_checkpoint(checkpoint: str | Path, output: str | Path) -> ExportReport:
    """Write the packed ``.bnx`` of a bnext checkpoint (trained or PTQ) to ``output``."""
    model, payload = model_from_checkpoint(checkpoint)
    model.eval()
    entries, not_binarized = packed_entries(model)
    if not_binarized:
        warnings.warn(
            f"{not_binarized} binary layers had not reached exact sign(w) (temperature above their threshold): "
            "the packed model uses sign(w) and will differ from the checkpoint's own eval",
            RuntimeWarning,
            stacklevel=2,
        )
    header = packed_header(model, entries, card_from_payload(payload), payload.get("quant_config"))
    header["source_sha256"] = payload.get("model_sha256")
    path = write_bnx(output, header, entries)
    bits = [e for e in entries.values() if e.kind == "bits"]
    return ExportReport(
        path=path,
        bytes=path.stat().st_size,
        checkpoint_bytes=Path(checkpoint).stat().st_size,
        fp32_weights_bytes=sum(4 * t.numel() for t in model.state_dict().values() if t.is_floating_point()),
        binary_layers=len(bits),
        binary_weights=int(sum(np.prod(e.meta["shape"]) for e in bits)),
        not_binarized=not_binarized,
    )
