"""Run a ``.bnx`` packed model: ``bnext.deploy.load(path)(images) -> logits``.

The work is done by the C++ runtime (the ``bnext_runtime`` package, built from ``runtime/``): one call per
forward, no PyTorch inside. Where it is not installed (no compiler was at hand), the same graph runs with
float torch ops (``bnext.deploy.reference``): same results, slower, with a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bnext.card import ModelCard, card_from_payload
from bnext.deploy.fileformat import encode_bnx, parse_bnx
from bnext.deploy.reference import run_graph
from bnext.errors import UserError

REFERENCE = "torch-reference"


def native_runtime() -> Any | None:
    """The ``bnext_runtime`` module, or None when it is not installed."""
    try:
        import bnext_runtime
    except ImportError:
        return None
    return bnext_runtime


class PackedModel(torch.nn.Module):
    """NCHW float images in (any batch size), logits out, as a torch module (for ``bnext.train.evaluate``).

    ``kernel_path`` names the runtime's kernel path ("avx2", ...) or ``"torch-reference"``.
    """

    def __init__(self, raw: bytes, source: str, kernel_path: str | None = None, threads: int | None = None) -> None:
        super().__init__()
        self.header, self.arrays = parse_bnx(raw, source)
        self.card: ModelCard = card_from_payload(self.header)
        runtime = native_runtime()
        self.native = None
        if runtime is not None:
            try:
                self.native = runtime.load(raw, kernel_path, threads or torch.get_num_threads())
            except runtime.ModelError as error:
                raise UserError(f"{source}: {error}") from error
        elif kernel_path not in (None, REFERENCE):
            raise UserError(f"kernel path {kernel_path!r} needs the C++ runtime: `pip install ./runtime`")
        else:
            warnings.warn(
                "bnext: the C++ runtime (bnext_runtime) is not installed; running the .bnx with the slower torch "
                "reference ops. Install it with `pip install ./runtime` (needs a C++ compiler).",
                RuntimeWarning,
                stacklevel=2,
            )

    @property
    def kernel_path(self) -> str:
        return self.native.kernel_path if self.native is not None else REFERENCE

    def set_threads(self, threads: int) -> None:
        if self.native is not None:
            self.native.threads = threads

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            raise UserError(
                f"images are {images.dtype}, not float: convert to float in [0, 1] and normalize with the card's "
                f"mean {list(self.card.mean)} and std {list(self.card.std)} first"
            )
        if self.native is None:
            return run_graph(self.header["graph"], self.arrays, images.cpu().float())
        try:
            logits = self.native(images.detach().cpu().float().numpy())
        except Exception as error:  # the runtime's ModelError: a clear message already
            raise UserError(str(error)) from error
        return torch.from_numpy(logits).to(images.device)


def load(path: str | Path, kernel_path: str | None = None, threads: int | None = None) -> PackedModel:
    """The callable packed model of a ``.bnx`` file.

    ``kernel_path`` forces one of :func:`supported_paths` ("portable", "avx2", "avx512bw", "avx512", ...);
    None takes the fastest this CPU runs. ``threads`` defaults to torch's thread count.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"packed model {path} not found; create one with `bnext export CHECKPOINT --output {path}`")
    return PackedModel(path.read_bytes(), str(path), kernel_path, threads)


def load_packed(
    header: dict[str, Any], arrays: dict[str, np.ndarray], kernel_path: str | None = None, threads: int | None = None
) -> PackedModel:
    """A :class:`PackedModel` from a header and arrays made in memory (e.g. ``export.packed_model``)."""
    return PackedModel(encode_bnx(header, arrays), "the packed model", kernel_path, threads)


def supported_paths() -> list[str]:
    """Kernel paths this CPU runs with the installed runtime, slowest first; empty without it."""
    runtime = native_runtime()
    return runtime.supported_kernel_paths() if runtime is not None else []


def resolved_path(name: str | None = None) -> str:
    """The kernel path a load with ``kernel_path=name`` runs."""
    paths = supported_paths()
    if not paths:
        return REFERENCE
    return name if name is not None else paths[-1]
