"""Writes real exported ``.bnx`` files into the fuzz seed corpus (``runtime/fuzz/corpus/model_*.bnx``): the
smallest models of each lowering (a BNext, BNext-18 with its fp downsample, Real-to-Binary's input-read gate,
ReActNet's RPReLU tail, a PTQ model), so that the fuzzer starts from graphs the runtime really loads.

    python runtime/fuzz/export_seeds.py   (needs bnext installed; the seeds are committed)
"""

from __future__ import annotations

from pathlib import Path

import torch

from bnext import create_model
from bnext.card import ModelCard
from bnext.deploy.export import packed_model
from bnext.deploy.fileformat import write_bnx
from bnext.nn import set_temperature
from bnext.quant import calibrate, quantize_model

CORPUS = Path(__file__).resolve().parent / "corpus"
SEEDS = {  # name -> (model, kwargs, PTQ config)
    "model_bnext_tiny": ("bnext_tiny", {"width_multiplier": 0.125, "stem_stride": 1}, None),
    "model_bnext18": ("bnext18", {"width_multiplier": 0.125, "stem_stride": 1}, None),
    "model_real2binary18": ("real2binary18", {"width_multiplier": 0.125, "stem_stride": 1}, None),
    "model_bnext_tiny_ptq": ("bnext_tiny", {"width_multiplier": 0.125, "stem_stride": 1}, "8/8-4/8-4/8-8/8"),
}


def main() -> None:
    torch.manual_seed(0)
    for name, (model_name, kwargs, quant) in SEEDS.items():
        model = create_model(model_name, num_classes=3, **kwargs).eval()
        set_temperature(model, 0.0)
        if quant:
            quantize_model(model, quant)
            calibrate(model, [torch.randn(2, 3, 16, 16)])
        card = ModelCard(model_name, 3, kwargs, input_size=16)
        header, arrays, _ = packed_model(model, card, quant)
        path = write_bnx(CORPUS / f"{name}.bnx", header, arrays)
        print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
