"""What this machine runs natively: CPU model and ISA flags, bf16 support, and the autocast dtype to use.

Nothing here assumes an ISA: every answer is read from ``/proc/cpuinfo`` or torch's
own capability queries at run time, so the same code picks bf16 on a CPU with
AVX512_BF16 / AMX or a bf16-capable GPU, and fp32 on a plain AVX2 CPU (where torch
emulates bf16 at a fraction of fp32's speed).
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

import torch

from bnext.errors import UserError

ISA_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vpopcntdq", "avx512_bf16", "amx_bf16", "amx_tile")
"""The CPU flags that decide bnext's kernel paths and precision (recorded next to every benchmark)."""


@cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return model or platform.processor() or platform.machine(), flags


def cpu_model() -> str:
    """The CPU's model name (e.g. "AMD EPYC 9454")."""
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    """All flags the kernel reports for the first CPU (empty where /proc/cpuinfo is unreadable)."""
    return _cpuinfo()[1]


def isa_summary() -> dict[str, bool]:
    """``{flag: present}`` for the flags in ``ISA_FLAGS``: what a benchmark records beside its numbers."""
    flags = cpu_flags()
    return {flag: flag in flags for flag in ISA_FLAGS}


def cpu_has_native_bf16() -> bool:
    """True when this x86 CPU computes bf16 in hardware (AVX512_BF16 or AMX); otherwise torch emulates it."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cuda_has_bf16() -> bool:
    """True when the current CUDA device computes bf16 natively (Ampere and newer)."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def native_autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype ``auto`` means on ``device``: None is plain fp32.

    CUDA: bf16 where the GPU has it, fp16 (with a loss scaler) on older GPUs.
    CPU: bf16 only with AVX512_BF16 / AMX; on other CPUs bf16 is emulated and
    several times slower than fp32 (measured 8.7x for the demo's teacher on an AVX2 EPYC).
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if cuda_has_bf16() else torch.float16
    if kind == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return None


def choose_autocast(enabled: bool | str, dtype: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for a ``train.amp`` / ``amp_dtype`` pair on ``device`` (None = fp32).

    ``enabled``: ``"auto"`` turns autocast on for CUDA only (CPU gains are small for
    BNNs and a user opts in); ``True`` asks for it anywhere, ``False`` never.
    ``dtype``: ``"auto"`` is :func:`native_autocast_dtype` (so ``True`` on a CPU
    without native bf16 means fp32); ``"bf16"`` / ``"fp16"`` force that dtype.
    """
    kind = torch.device(device).type
    if enabled == "auto":
        enabled = kind == "cuda"
    if enabled not in (True, False):
        raise UserError(f"train.amp must be true, false or auto, got {enabled!r}")
    if not enabled:
        return None
    forced = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if dtype == "auto":
        return native_autocast_dtype(kind)
    if dtype not in forced:
        raise UserError(f"train.amp_dtype must be auto, bf16 or fp16, got {dtype!r}")
    return forced[dtype]


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")
