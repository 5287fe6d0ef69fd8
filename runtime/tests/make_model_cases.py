"""Whole-model cases for the runtime's C++ model test (runtime/tests/test_models.cpp), made with PyTorch.

    python runtime/tests/make_model_cases.py OUT_DIR
    BNEXT_MODEL_CASES=OUT_DIR runtime_tests model_

Each case is a folder: ``model.bnx`` (``bnext.deploy.export.packed_model``, written with ``write_bnx``),
``input.bin`` (float32 NCHW images), and the logits three ways, float32 [n][classes]:
``reference.bin`` (the torch reference of the graph, ``bnext.deploy.reference.run_graph``), ``eval.bin``
(the model's own PyTorch eval) and, when the ``bnext_runtime`` package is installed, ``runtime.bin`` (the
runtime on this machine, e.g. x86 AVX2: what an emulated AArch64 run must reproduce); ``case.json`` holds
the shapes. The models are small (width and input size) so that a run under qemu stays short, with
exact-sign binarizers (temperature 0) and BatchNorm statistics set by one train-mode forward over the
images (random-init statistics would make the deep activations blow up or vanish, and the logits with them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

from bnext import create_model
from bnext.card import ModelCard
from bnext.deploy.export import packed_model
from bnext.deploy.fileformat import write_bnx
from bnext.deploy.reference import run_graph
from bnext.nn import set_temperature
from bnext.quant import calibrate, quantize_model

PTQ = "8/8-4/8-4/8-8/8"  # I-S-E-O bits, as the deploy tests quantize
# name, model, create kwargs, PTQ config, input (n, c, h, w): channel counts from 16 to 768 and a
# non-square input reach the kernels' channel tails, row tails and every kw class (1 .. 4 and deeper).
CASES = [
    ("bnext_tiny", "bnext_tiny", {"num_classes": 10, "width_multiplier": 0.5, "stem_stride": 2}, None, (2, 3, 64, 32)),
    ("bnext18", "bnext18", {"num_classes": 10, "width_multiplier": 0.5}, None, (2, 3, 64, 64)),
    ("bnext_small_ptq", "bnext_small", {"num_classes": 10, "width_multiplier": 0.5, "stem_stride": 2}, PTQ,
     (2, 3, 32, 32)),
]  # fmt: skip


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, images: torch.Tensor) -> None:
    """Running statistics = the statistics of ``images`` (one train-mode forward, cumulative averages)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative: after one batch, exactly its statistics
    model.train()
    model(images)
    model.eval()


def make_case(folder: Path, model_name: str, kwargs: dict, quant: str | None, shape: tuple[int, ...]) -> dict:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(shape, generator=generator)
    model = create_model(model_name, **kwargs)
    set_temperature(model, 0.0)
    calibrate_batchnorm(model, torch.randn(shape, generator=generator))
    if quant is not None:
        quantize_model(model, quant)
        calibrate(model, [images])
    model.eval()
    card = ModelCard.from_create_kwargs(model_name, kwargs, kwargs["num_classes"])
    header, arrays, not_binarized = packed_model(model, card, quant)
    if not_binarized:
        raise RuntimeError(f"{model_name}: {not_binarized} binary layers are not at exact sign")
    folder.mkdir(parents=True, exist_ok=True)
    write_bnx(folder / "model.bnx", header, arrays)
    with torch.no_grad():
        expected = {"reference": run_graph(header["graph"], arrays, images), "eval": model(images)}
    try:
        import bnext_runtime

        native = bnext_runtime.load((folder / "model.bnx").read_bytes(), None, 1)
        expected["runtime"] = torch.from_numpy(native(images.numpy()))
        runtime_path = native.kernel_path
    except ImportError:
        runtime_path = None
    images.numpy().astype("<f4").tofile(folder / "input.bin")
    for key, logits in expected.items():
        logits.numpy().astype("<f4").tofile(folder / f"{key}.bin")
    meta = {
        "model": model_name,
        "kwargs": kwargs,
        "quant_config": quant,
        "input": list(shape),
        "classes": int(expected["eval"].shape[1]),
        "expected": sorted(expected),
        "runtime_path": runtime_path,  # the kernel path that wrote runtime.bin
    }
    (folder / "case.json").write_text(json.dumps(meta, indent=1) + "\n")
    scale = float(expected["eval"].abs().max())
    gap = float((expected["reference"] - expected["eval"]).abs().max()) / scale
    print(f"{folder.name}: {model_name} {shape}, reference vs eval {gap:.2e} of the largest logit")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the cases (one subfolder each)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name, model_name, kwargs, quant, shape in CASES:
        make_case(args.out / name, model_name, kwargs, quant, shape)
    return 0


if __name__ == "__main__":
    sys.exit(main())
