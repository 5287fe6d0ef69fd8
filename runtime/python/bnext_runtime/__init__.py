"""bnext-runtime: run a ``.bnx`` packed 1-bit model (``bnext export``) with numpy only.

    import bnext_runtime
    model = bnext_runtime.load("model.bnx")
    logits = model(images)          # float32 NCHW, normalized with model.card["mean"] / ["std"]
    model.card["classes"], model.kernel_path, model.threads

The work happens in C++ (libbnext_runtime.so, its C API in include/bnext_runtime.h); no PyTorch and
no compiler are needed at run time.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any

import numpy as np

from bnext_runtime._native import last_error, library, library_path, open_library

__all__ = ["Model", "ModelError", "__version__", "build_info", "load", "open_library", "supported_kernel_paths"]
__version__ = "0.2.0"


class ModelError(ValueError):
    """A model that cannot be loaded or run; the message names the problem and the fix."""


def build_info() -> dict[str, Any]:
    """The C library's version, the .bnx format version it reads, and its file (for bug reports)."""
    lib = library()
    return {
        "version": lib.bnext_version().decode(),
        "format_version": int(lib.bnext_format_version()),
        "library": str(library_path()),
    }


def supported_kernel_paths() -> list[str]:
    """Kernel paths this CPU runs, slowest first (e.g. ["portable", "avx2"])."""
    return library().bnext_supported_kernel_paths().decode().split(",")


def load(
    source: str | Path | bytes, kernel_path: str | None = None, threads: int = 1, lib: ctypes.CDLL | None = None
) -> Model:
    """A model from a ``.bnx`` path or its bytes; ``kernel_path`` None takes the fastest this CPU runs. ``lib``: a
    library from :func:`open_library` (another build, e.g. for an A/B in one process); None: the installed one."""
    lib = lib or library()
    path_arg = kernel_path.encode() if kernel_path else None
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        handle = lib.bnext_model_load_buffer(data, len(data), path_arg)
    else:
        handle = lib.bnext_model_load_file(str(source).encode(), path_arg)
    if not handle:
        raise ModelError(last_error(lib))
    model = Model(handle, lib)
    model.threads = threads
    return model


class Model:
    """A loaded model: ``model(images) -> logits``. Use one per thread (a run reuses the model's memory)."""

    def __init__(self, handle: int, lib: ctypes.CDLL | None = None) -> None:
        self._lib = lib or library()
        self._handle = ctypes.c_void_p(handle)
        dims = [ctypes.c_int64() for _ in range(3)]
        self._lib.bnext_model_input_shape(self._handle, *(ctypes.byref(d) for d in dims))
        self.input_shape: tuple[int, int, int] = tuple(int(d.value) for d in dims)  # channels, height, width
        self.input_multiple = int(self._lib.bnext_model_input_multiple(self._handle))
        self.num_classes = int(self._lib.bnext_model_num_classes(self._handle))
        self.kernel_path: str = self._lib.bnext_model_kernel_path(self._handle).decode()
        self.card: dict[str, Any] = json.loads(self._lib.bnext_model_card_json(self._handle).decode())

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value:
            self._lib.bnext_model_free(handle)
            self._handle = None

    @property
    def threads(self) -> int:
        return int(self._lib.bnext_model_threads(self._handle))

    @threads.setter
    def threads(self, count: int) -> None:
        self._check(self._lib.bnext_model_set_threads(self._handle, int(count)))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Logits (N, classes) of float32 NCHW images (N may be 0; a NaN pixel gives NaN logits)."""
        images = self._images(images)
        logits = np.empty((images.shape[0], self.num_classes), dtype=np.float32)
        self._check(self._lib.bnext_model_run(self._handle, _floats(images), *images.shape, _floats(logits)))
        return logits

    def run_any(self, images: np.ndarray) -> np.ndarray:
        """The graph's output for any graph (e.g. one layer), as (N, values per image), NHWC per image."""
        images = self._images(images)
        size = ctypes.c_int64()
        self._check(
            self._lib.bnext_model_output_size(self._handle, images.shape[2], images.shape[3], ctypes.byref(size))
        )
        out = np.empty((images.shape[0], size.value), dtype=np.float32)
        self._check(self._lib.bnext_model_run_any(self._handle, _floats(images), *images.shape, _floats(out)))
        return out

    def profile(self, images: np.ndarray) -> list[tuple[str, str, float]]:
        """(op name, op kind, seconds) of each op in one run on ``images``."""
        self._check(self._lib.bnext_model_set_profiling(self._handle, 1))
        try:
            self.run_any(images)
        finally:
            self._lib.bnext_model_set_profiling(self._handle, 0)
        rows = []
        for index in range(int(self._lib.bnext_model_num_ops(self._handle))):
            name, kind, seconds = ctypes.c_char_p(), ctypes.c_char_p(), ctypes.c_double()
            self._check(
                self._lib.bnext_model_op_time(
                    self._handle, index, ctypes.byref(name), ctypes.byref(kind), ctypes.byref(seconds)
                )
            )
            rows.append((name.value.decode(), kind.value.decode(), seconds.value))
        return rows

    def _images(self, images: Any) -> np.ndarray:
        array = np.asarray(images)
        if array.dtype != np.float32:
            if array.dtype.kind in "ui" or array.dtype == np.bool_:
                raise ModelError(
                    f"images are {array.dtype}, not float32: convert to float in [0, 1] and normalize with the card's "
                    f"mean {self.card.get('mean')} and std {self.card.get('std')} first"
                )
            array = array.astype(np.float32)
        if array.ndim != 4:
            expected = f"(batch, {self.input_shape[0]}, height, width)"
            raise ModelError(f"images must be a 4-D NCHW array {expected}, got shape {array.shape}")
        return np.ascontiguousarray(array)

    def _check(self, status: int) -> None:
        if status != 0:
            raise ModelError(last_error(self._lib))


def _floats(array: np.ndarray) -> Any:
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
