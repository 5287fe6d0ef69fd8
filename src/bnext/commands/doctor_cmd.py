"""``bnext doctor``: what a bug report needs, in one go: versions, CPU and kernel path, the C++ runtime, GPUs, data.

Each section is gathered on its own, so that one that fails (a runtime whose library does not load, a driver
that does not answer) is printed as such and the others still are.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

Rows = list[tuple[str, str]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: ``bnext doctor`` always prints every section."""


def versions() -> Rows:
    """Python, torch and bnext: which interpreter, and where bnext is imported from."""
    import torch

    import bnext

    return [
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("torch", torch.__version__),
        ("bnext", f"{bnext.__version__} ({Path(bnext.__file__).parent})"),
        ("platform", f"{platform.system()} {platform.release()} {platform.machine()}"),
    ]


def cpu() -> Rows:
    """CPU model, cores, the ISA flags that decide bnext's kernel paths and precision, torch's thread count."""
    import torch

    from bnext.hardware import cpu_has_native_bf16, cpu_model, isa_summary

    flags = isa_summary()
    present = [flag for flag, on in flags.items() if on]
    absent = [flag for flag, on in flags.items() if not on]
    return [
        ("model", cpu_model()),
        ("cores", f"{os.cpu_count()} (torch uses {torch.get_num_threads()} threads)"),
        ("isa flags", (", ".join(present) or "none of bnext's") + (f" (not: {', '.join(absent)})" if absent else "")),
        ("native bf16", "yes" if cpu_has_native_bf16() else "no (fp32 training on this CPU; bf16 would be emulated)"),
    ]


def runtime() -> Rows:
    """The C++ runtime of ``.bnx`` files: installed or not, its version and library, the kernel paths."""
    from bnext.deploy.runtime import native_runtime, resolved_path, supported_paths

    module = native_runtime()
    if module is None:
        return [
            ("bnext_runtime", "not installed: `pip install ./runtime` (CMake and a C++17 compiler)"),
            ("kernel path", f"{resolved_path()} (.bnx files run on torch ops: same results, slower)"),
        ]
    try:
        info = module.build_info()
        paths = supported_paths()
    except (ImportError, OSError) as error:
        return [("bnext_runtime", f"{module.__version__} installed, but its library does not load: {error}")]
    return [
        ("bnext_runtime", f"{module.__version__} (C library {info['version']})"),
        ("library", info["library"]),
        (".bnx format", str(info["format_version"])),
        ("kernel paths", f"{', '.join(paths)} (this CPU, slowest first)"),
        ("kernel path", f"{resolved_path()} (what `bnext.deploy.load` and `bnext_runtime.load` choose)"),
    ]


def gpus() -> Rows:
    """CUDA devices torch sees, with memory and bf16; the CUDA build of torch and NCCL for DDP."""
    import torch

    from bnext.hardware import cuda_has_bf16

    if not torch.cuda.is_available():
        build = f"torch built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only torch"
        return [("cuda", f"no GPU available ({build})")]
    rows = [("cuda", f"{torch.cuda.device_count()} GPU(s), torch built for CUDA {torch.version.cuda}")]
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        with torch.cuda.device(index):
            bf16 = "bf16" if cuda_has_bf16() else "no bf16 (fp16 autocast)"
        memory = f"{props.total_memory / 2**30:.0f} GiB"
        rows.append((f"gpu {index}", f"{props.name}, {memory}, sm_{props.major}{props.minor}, {bf16}"))
    nccl = torch.distributed.is_available() and torch.distributed.is_nccl_available()
    rows.append(("nccl", "yes (multi-GPU DDP)" if nccl else "no (DDP falls back to gloo)"))
    return rows


def datasets() -> Rows:
    """Where the datasets are found: Fashion-MNIST's default place; the others take ``--data-dir``."""
    import torch

    from bnext.data.memory import DEBIAN_FASHION_MNIST, find_idx

    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    missing = [stem for stem in stems if find_idx(DEBIAN_FASHION_MNIST, stem) is None]
    offline = os.environ.get("HF_HUB_OFFLINE", "unset")
    if missing:
        found = f"not at {DEBIAN_FASHION_MNIST} (`apt-get install dataset-fashion-mnist`, or --data-dir)"
    else:
        found = f"{DEBIAN_FASHION_MNIST} (train and test files)"
    return [
        ("fashion-mnist", found),
        ("cifar10, cifar100", "--data-dir (torchvision's layout; --set data.download=true when online)"),
        ("imagenet, folder", "--data-dir (train/ and val/ class folders)"),
        ("synthetic", "generated, always available"),
        ("pretrained teachers", f"torch hub cache {torch.hub.get_dir()}; HF_HUB_OFFLINE={offline}"),
    ]


SECTIONS: dict[str, Callable[[], Rows]] = {
    "versions": versions,
    "cpu": cpu,
    "packed runtime": runtime,
    "gpu": gpus,
    "datasets": datasets,
}


def run(args: argparse.Namespace) -> int:
    """Print each section as ``title`` then ``  key  value`` rows; always 0 (a failing section is printed)."""
    for title, gather in SECTIONS.items():
        try:
            rows = gather()
        except Exception as error:  # a doctor reports what fails instead of failing
            rows = [("error", f"{type(error).__name__}: {error}")]
        print(title)
        width = max(len(key) for key, _ in rows)
        for key, value in rows:
            print(f"  {key:<{width}}  {value}")
    return 0
