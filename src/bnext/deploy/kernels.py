"""The C++ bit kernels: built on first use with torch's extension tooling and cached; a torch fallback.

The extension is compiled with the system C++ compiler into
``$BNEXT_KERNEL_CACHE`` (default ``~/.cache/bnext/kernels``), keyed by a hash of
the source, so a second process loads it in milliseconds. Without a working
compiler the runtime uses :func:`reference_binary_conv` (same results, float
math) and warns once. :func:`emulated_extension` builds the same source with
every x86 intrinsic emulated (SIMDe), so that tests check the AVX-512 paths on
CPUs without AVX-512.
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

SOURCES = [
    Path(__file__).resolve().parent / "csrc" / name for name in ("bitkernels.cpp", "unit_tail.cpp", "packed_unit.cpp")
]
# "avx512" is the VPOPCNTDQ path; "avx512bw" serves AVX-512 CPUs without VPOPCNTDQ (Skylake-X, Cascade Lake).
PATH_NAMES = {0: "portable", 1: "avx2", 2: "avx512", 3: "avx512bw"}
AUTO = -1
# SIMDe, the portable implementation of x86 intrinsics the emulated build uses (Debian: libsimde-dev).
SIMDE_HEADER = Path(os.environ.get("BNEXT_SIMDE_INCLUDE", "/usr/include")) / "simde" / "x86" / "avx512.h"


def _cache_dir(variant: str) -> Path:
    root = Path(os.environ.get("BNEXT_KERNEL_CACHE", Path.home() / ".cache" / "bnext" / "kernels"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES) + torch.__version__.encode()).hexdigest()[:16]
    folder = root / variant / digest
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _build(name: str, defines: list[str]) -> ModuleType:
    # Importing torch's extension tooling on a machine without CUDA logs "No CUDA runtime is
    # found": true and irrelevant for CPU kernels, so keep it out of the user's output.
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load

        return load(
            name=name,
            sources=[str(p) for p in SOURCES],
            build_directory=str(_cache_dir(name)),
            extra_cflags=["-O3", "-fopenmp", *defines],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    finally:
        quiet.setLevel(level)


@cache
def extension() -> ModuleType | None:
    """The compiled kernels, or None (with a warning) when they cannot be built here."""
    try:
        return _build("bnext_bitkernels", [])
    except Exception as error:  # any build failure means: use the fallback
        warnings.warn(
            f"bnext: the packed C++ kernels could not be built ({type(error).__name__}: {str(error)[:300]}); "
            "using the slower torch reference path. Install a C++ compiler (g++) and ninja to get them.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


@cache
def emulated_extension() -> ModuleType | None:
    """The kernels built with every x86 intrinsic emulated in portable C (SIMDe): all paths run on any CPU.

    Slow, and for tests only: it checks the logic of the AVX-512 paths where the CPU lacks them (not their
    speed, nor the compiler's native code for them). None when the SIMDe headers are not installed; a build
    error with them installed is raised, not hidden.
    """
    if not SIMDE_HEADER.exists():
        return None
    return _build("bnext_bitkernels_emulated", ["-DBNEXT_EMULATE_X86", f"-I{SIMDE_HEADER.parents[2]}"])


def supported_paths() -> list[str]:
    """Kernel paths this CPU can run, slowest first (e.g. ["portable", "avx2", "avx512bw", "avx512"]).

    Empty without the extension.
    """
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


def runnable_path_code(name: str | None) -> int:
    """:func:`path_code` for a path this CPU must run: a path it lacks is refused, naming the ones it has."""
    code = path_code(name)
    paths = supported_paths()
    if name is not None and paths and name not in paths:
        raise ValueError(
            f"this CPU cannot run the {name!r} kernels; it runs {', '.join(paths)}: pass one of those, "
            "or None for the fastest"
        )
    return code


def kernel_weights(panels: torch.Tensor, code: int) -> torch.Tensor:
    """Packed weight panels (``packing.kernel_panels``) in the layout the kernels read on path ``code`` (the
    AVX2 kernel reads them split into nibble planes); unchanged without the extension."""
    ext = extension()
    return panels if ext is None else ext.kernel_weights(panels, code)


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
