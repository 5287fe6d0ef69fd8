"""Checkpoint -> ``.bnx`` v2: the model's graph (``bnext.deploy.lowering``) with 1-bit weights, folded
per-channel maps, and fp32 or PTQ-integer rest; the model card; nothing a runtime would need model code for.
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
from bnext.atomic import check_output_path
from bnext.card import ModelCard, card_from_payload
from bnext.deploy.fileformat import write_bnx
from bnext.deploy.lowering import lower_model
from bnext.loading import model_from_checkpoint

DEFAULT_INPUT_SIZE = 224


@dataclass
class ExportReport:
    """What ``export_checkpoint`` wrote."""

    path: Path
    bytes: int
    checkpoint_bytes: int  # the source file (a training checkpoint also holds optimizer state)
    fp32_weights_bytes: int  # the model's parameters and buffers as fp32: the fair size to compare with
    binary_layers: int
    binary_weights: int
    not_binarized: int  # binary layers whose temperature had not yet reached exact sign (exported as sign(w))


def packed_model(
    model: nn.Module, card: ModelCard, quant_config: str | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray], int]:
    """(header, arrays, layers not yet at exact sign) of ``model`` in eval mode: what a ``.bnx`` stores."""
    model.eval()
    with torch.no_grad():
        lowering = lower_model(model)
    size = card.input_size or DEFAULT_INPUT_SIZE
    header = {
        "format": "bnext-packed",
        "bnext_version": __version__,
        "card": card.as_dict(),
        "quant_config": quant_config,
        "graph": lowering.graph.graph(lowering.logits, size, size),
    }
    return header, lowering.graph.arrays, lowering.not_binarized


def export_checkpoint(checkpoint: str | Path, output: str | Path) -> ExportReport:
    """Write the packed ``.bnx`` of a bnext checkpoint (trained or PTQ) to ``output``."""
    checkpoint, output = Path(checkpoint), check_output_path(output, checkpoint)
    model, payload = model_from_checkpoint(checkpoint)
    header, arrays, not_binarized = packed_model(model, card_from_payload(payload), payload.get("quant_config"))
    if not_binarized:
        warnings.warn(
            f"{not_binarized} binary layers had not reached exact sign(w) (temperature above their threshold): "
            "the packed model uses sign(w) and will differ from the checkpoint's own eval",
            RuntimeWarning,
            stacklevel=2,
        )
    header["source_sha256"] = payload.get("model_sha256")
    path = write_bnx(output, header, arrays)
    convs = [op for op in header["graph"]["ops"] if op["op"] == "binary_conv"]
    return ExportReport(
        path=path,
        bytes=path.stat().st_size,
        checkpoint_bytes=checkpoint.stat().st_size,
        fp32_weights_bytes=sum(4 * t.numel() for t in model.state_dict().values() if t.is_floating_point()),
        binary_layers=len(convs),
        binary_weights=sum(
            a["out_channels"] * a["in_channels"] * a["kernel"] ** 2 for a in (op["attrs"] for op in convs)
        ),
        not_binarized=not_binarized,
    )
