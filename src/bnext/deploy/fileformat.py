"""The ``.bnx`` packed-model file (docs/bnx-format.md): a versioned header, raw tensor bytes, a SHA-256.

Layout::

    b"BNXPACK\\0"   8-byte magic
    uint32         format version (little-endian): 2
    uint64         header length H
    H bytes        UTF-8 JSON header: model card, PTQ config, the graph (ops over named activations),
                   and one entry per stored tensor (name, dtype, shape, offset, nbytes)
    ...            tensor bytes, each at a 64-byte aligned offset from the payload start
    32 bytes       SHA-256 of everything before it

Version 1 files (bnext < 0.2) held no graph; they are refused with how to re-export them. A
truncated, damaged or foreign file is refused with the reason, never half-loaded. The C++ runtime
(``runtime/src/bnx_file.cpp``) reads the same container with the same checks.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from bnext.atomic import atomic_write
from bnext.errors import UserError

MAGIC = b"BNXPACK\0"
VERSION = 2
_ALIGN = 64
_PREFIX = struct.Struct("<8sIQ")
_DTYPES = {"<f4": np.float32, "|u1": np.uint8}


def write_bnx(path: str | Path, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` (float32 / uint8) and ``header`` to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    data = encode_bnx(header, arrays)
    atomic_write(path, lambda handle: handle.write(data))
    return path


def encode_bnx(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of a ``.bnx`` file holding ``header`` and ``arrays``."""
    table, blobs, offset = [], [], 0
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        if array.dtype.str not in _DTYPES:
            raise ValueError(f"tensor {name}: dtype {array.dtype} cannot be stored (float32 or uint8)")
        data = array.tobytes()
        pad = -offset % _ALIGN
        blobs.append(b"\0" * pad + data)
        offset += pad
        table.append(
            {"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset, "nbytes": len(data)}
        )
        offset += len(data)
    head = json.dumps({**header, "tensors": table}, allow_nan=False).encode()
    body = _PREFIX.pack(MAGIC, VERSION, len(head)) + head + b"".join(blobs)
    return body + hashlib.sha256(body).digest()


def read_bnx(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of a ``.bnx`` file, after checking magic, version, lengths, checksum and table."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"packed model {path} not found; create one with `bnext export CHECKPOINT --output {path}`")
    return parse_bnx(path.read_bytes(), str(path))


def parse_bnx(raw: bytes, source: str = "the packed model") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """:func:`read_bnx` on bytes in memory."""
    if len(raw) < _PREFIX.size + 32 or raw[:8] != MAGIC:
        raise UserError(f"{source} is not a bnext packed model (.bnx); export one with `bnext export CHECKPOINT`")
    _, version, head_len = _PREFIX.unpack_from(raw)
    if version == 1:
        raise UserError(
            f"{source} is a format v1 .bnx from bnext < 0.2, which holds no graph; re-export it from its checkpoint: "
            "`bnext export CHECKPOINT --output MODEL.bnx`"
        )
    if version != VERSION:
        raise UserError(f"{source} has format version {version}; this bnext reads {VERSION}: upgrade bnext")
    body, digest = raw[:-32], raw[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise UserError(f"{source} is damaged or truncated (checksum mismatch, {len(raw)} bytes); export it again")
    if head_len > len(body) - _PREFIX.size:
        raise UserError(f"{source} has a header length past its end; export it again")
    try:
        header = json.loads(body[_PREFIX.size : _PREFIX.size + head_len])
        payload = memoryview(body)[_PREFIX.size + head_len :]
        arrays = {}
        for item in header.pop("tensors"):
            start, size, dtype = int(item["offset"]), int(item["nbytes"]), np.dtype(_DTYPES[item["dtype"]])
            shape = tuple(int(d) for d in item["shape"])
            if start < 0 or size != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize or start + size > len(payload):
                raise ValueError(f"tensor {item['name']!r} does not fit the file")
            arrays[item["name"]] = np.frombuffer(payload[start : start + size], dtype=dtype).reshape(shape).copy()
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        raise UserError(f"{source} has a malformed header ({error}); export it again") from error
    if not isinstance(header.get("graph"), dict):
        raise UserError(f"{source} has no graph; export it again with `bnext export`")
    return header, arrays
