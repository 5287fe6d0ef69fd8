"""The shared library and the C API's signatures (include/bnext_runtime.h is their one owner)."""

from __future__ import annotations

import ctypes
import os
from functools import cache
from pathlib import Path

_MODEL = ctypes.c_void_p
_I64 = ctypes.c_int64
_FLOATS = ctypes.POINTER(ctypes.c_float)
_SIGNATURES = {
    "bnext_version": ([], ctypes.c_char_p),
    "bnext_format_version": ([], ctypes.c_int),
    "bnext_last_error": ([], ctypes.c_char_p),
    "bnext_supported_kernel_paths": ([], ctypes.c_char_p),
    "bnext_model_load_file": ([ctypes.c_char_p, ctypes.c_char_p], _MODEL),
    "bnext_model_load_buffer": ([ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p], _MODEL),
    "bnext_model_free": ([_MODEL], None),
    "bnext_model_input_shape": ([_MODEL, *[ctypes.POINTER(_I64)] * 3], ctypes.c_int),
    "bnext_model_input_multiple": ([_MODEL], _I64),
    "bnext_model_num_classes": ([_MODEL], _I64),
    "bnext_model_kernel_path": ([_MODEL], ctypes.c_char_p),
    "bnext_model_card_json": ([_MODEL], ctypes.c_char_p),
    "bnext_model_set_threads": ([_MODEL, ctypes.c_int], ctypes.c_int),
    "bnext_model_threads": ([_MODEL], ctypes.c_int),
    "bnext_model_run": ([_MODEL, _FLOATS, _I64, _I64, _I64, _I64, _FLOATS], ctypes.c_int),
    "bnext_model_output_size": ([_MODEL, _I64, _I64, ctypes.POINTER(_I64)], ctypes.c_int),
    "bnext_model_run_any": ([_MODEL, _FLOATS, _I64, _I64, _I64, _I64, _FLOATS], ctypes.c_int),
    "bnext_model_set_profiling": ([_MODEL, ctypes.c_int], ctypes.c_int),
    "bnext_model_num_ops": ([_MODEL], _I64),
    "bnext_model_op_time": (
        [
            _MODEL,
            _I64,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_double),
        ],
        ctypes.c_int,
    ),
}


def library_path() -> Path:
    """The installed library next to this file, or $BNEXT_RUNTIME_LIBRARY (a build tree, for development)."""
    override = os.environ.get("BNEXT_RUNTIME_LIBRARY")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "libbnext_runtime.so"


@cache
def library() -> ctypes.CDLL:
    """The loaded C library with typed entry points."""
    return open_library(library_path())


def open_library(path: str | Path) -> ctypes.CDLL:
    """The C library at ``path`` with typed entry points: any build of it, e.g. two builds side by side in one
    process for an interleaved A/B benchmark (benchmarks/runtime_ab.py)."""
    path = Path(path)
    if not path.is_file():
        raise ImportError(
            f"bnext_runtime's C library is missing ({path}): reinstall with `pip install ./runtime`, "
            "or point BNEXT_RUNTIME_LIBRARY at a built libbnext_runtime.so"
        )
    lib = ctypes.CDLL(str(path.resolve()))
    for name, (arguments, result) in _SIGNATURES.items():
        function = getattr(lib, name)
        function.argtypes = arguments
        function.restype = result
    return lib


def last_error(lib: ctypes.CDLL | None = None) -> str:
    """The C library's last error text (``lib``: a library from open_library; None: the installed one)."""
    return (lib or library()).bnext_last_error().decode("utf-8", "replace")
