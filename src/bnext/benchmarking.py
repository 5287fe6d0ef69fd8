"""Result files of benchmarks and the demo: the exact command, the machine and the date beside the numbers."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from bnext.hardware import cpu_model, isa_summary


def machine() -> dict[str, Any]:
    """CPU model and ISA flags, core count, Python / torch versions and GPU (if any) of this machine."""
    return {
        "cpu": cpu_model(),
        "isa": isa_summary(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def command_line() -> str:
    """This process's command line as typed (``python -m module`` for modules)."""
    argv = list(sys.argv)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        argv[0:1] = ["-m", spec.name.removesuffix(".__main__")]
    return " ".join(shlex.quote(a) for a in ["python", *argv])


def write_result(path: str | Path, results: dict[str, Any]) -> Path:
    """Write ``results`` as JSON with the command line, machine and UTC date."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": command_line(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        **results,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
