"""The C++ bit kernels: built on first use with torch's extension tooling and cached; a torch fallback.

The extension is compiled with the system C++ compiler into
``$BNEXT_KERNEL_CACHE`` (default ``~/.cache/bnext/kernels``), keyed by a hash of
the source, so a second process loads it in milliseconds. Without a working
compiler the runtime uses :func:`reference_binary_conv` (same results, float
math) and warns once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from functools import cache
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F

SOURCES = [Path(__file__).resolve().parent / "csrc" / name for name in ("bitkernels.cpp", "unit_tail.cpp")]
PATH_NAMES = {0: "portable", 1: "avx2", 2: "avx512"}
AUTO = -1


def _cache_dir() -> Path:
    root = Path(os.environ.get("BNEXT_KERNEL_CACHE", Path.home() / ".cache" / "bnext" / "kernels"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES) + torch.__version__.encode()).hexdigest()[:16]
    folder = root / digest
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@cache
def extension() -> ModuleType | None:
    """The compiled kernels, or None (with a warning) when they cannot be built here."""
    # Importing torch's extension tooling on a machine without CUDA logs "No CUDA runtime is
    # found": true and irrelevant for CPU kernels, so keep it out of the user's output.
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load

        return load(
            name="bnext_bitkernels",
            sources=[str(p) for p in SOURCES],
            build_directory=str(_cache_dir()),
            extra_cflags=["-O3", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as error:  # any build failure means: use the fallback
        warnings.warn(
            f"bnext: the packed C++ kernels could not be built ({type(error).__name__}: {str(error)[:300]}); "
            "using the slower torch reference path. Install a C++ compiler (g++) and ninja to get them.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    finally:
        quiet.setLevel(level)


def supported_paths() -> list[str]:
    """Kernel paths this CPU can run (e.g. ["portable", "avx2", "avx512"]); empty without the extension."""
    ext = extension()
    return [PATH_NAMES[p] for p in ext.supported_paths()] if ext is not None else []


def resolved_path(name: str | None = None) -> str:
    """The kernel path a request runs: ``name``, or the fastest this CPU supports for None.

    ``"torch-reference"`` when the C++ extension is unavailable (float fallback).
    """
    paths = supported_paths()
    if not paths:
        return "torch-reference"
    return name if name is not None else paths[-1]


def path_code(name: str | None) -> int:
    """The integer code of a path name (None = the fastest the CPU supports)."""
    if name is None:
        return AUTO
    codes = {v: k for k, v in PATH_NAMES.items()}
    if name not in codes:
        raise ValueError(f"unknown kernel path {name!r}: choose one of {', '.join(codes)}")
    return codes[name]


def reference_binary_conv(
    x: torch.Tensor,
    shift_in: torch.Tensor,
    signs: torch.Tensor,
    stride: int,
    padding: int,
    scale: torch.Tensor,
    shift: torch.Tensor,
    slope: torch.Tensor | None,
) -> torch.Tensor:
    """The packed conv in float torch ops: sign(x + shift_in) (0 -> +1), conv with +-1 ``signs``, epilogue."""
    binary = torch.where(x + shift_in.view(1, -1, 1, 1) < 0, -1.0, 1.0)
    dot = F.conv2d(binary, signs, stride=stride, padding=padding)
    y = scale.view(1, -1, 1, 1) * dot + shift.view(1, -1, 1, 1)
    if slope is not None:
        y = torch.where(y > 0, y, y * slope.view(1, -1, 1, 1))
    return y
