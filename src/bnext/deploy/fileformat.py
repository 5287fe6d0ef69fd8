"""The ``.bnx`` packed-model file: a versioned header, raw tensor bytes, and a SHA-256 checksum.

Layout::

    b"BNXPACK\\0"   8-byte magic
    uint32         format version (little-endian)
    uint64         header length H
    H bytes        UTF-8 JSON header: model name/kwargs, quantization, and one entry per
                   tensor (name, kind, dtype, shape, offset, nbytes, meta)
    ...            tensor bytes, each at a 64-byte aligned offset from the payload start
    32 bytes       SHA-256 of everything before it

A truncated, damaged or foreign file is refused with the reason, never half-loaded.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from bnext.atomic import atomic_write
from bnext.errors import UserError

MAGIC = b"BNXPACK\0"
VERSION = 1
_ALIGN = 64
_PREFIX = struct.Struct("<8sIQ")


@dataclass
class Entry:
    """One stored tensor: ``kind`` is "fp32", "bits" (packed signs) or "codes" (packed integers)."""

    kind: str
    array: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def write_bnx(path: str | Path, header: dict[str, Any], entries: dict[str, Entry]) -> Path:
    """Write ``entries`` and ``header`` to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    table, blobs, offset = [], [], 0
    for name, entry in entries.items():
        data = np.ascontiguousarray(entry.array).tobytes()
        pad = -offset % _ALIGN
        blobs.append(b"\0" * pad + data)
        offset += pad
        table.append(
            {
                "name": name,
                "kind": entry.kind,
                "dtype": entry.array.dtype.str,
                "shape": list(entry.array.shape),
                "offset": offset,
                "nbytes": len(data),
                "meta": entry.meta,
            }
        )
        offset += len(data)
    head = json.dumps({**header, "tensors": table}).encode()
    body = _PREFIX.pack(MAGIC, VERSION, len(head)) + head + b"".join(blobs)

    def write(handle: BinaryIO) -> None:
        handle.write(body)
        handle.write(hashlib.sha256(body).digest())

    atomic_write(path, write)
    return path


def read_bnx(path: str | Path) -> tuple[dict[str, Any], dict[str, Entry]]:
    """(header, entries) of a ``.bnx`` file, after checking magic, version, length and checksum."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"packed model {path} not found; create one with `bnext export CHECKPOINT --output {path}`")
    raw = path.read_bytes()
    if len(raw) < _PREFIX.size + 32 or raw[:8] != MAGIC:
        raise UserError(f"{path} is not a bnext packed model (.bnx); export one with `bnext export CHECKPOINT`")
    _, version, head_len = _PREFIX.unpack_from(raw)
    if version > VERSION:
        raise UserError(f"{path} has format version {version}; this bnext reads up to {VERSION}: upgrade bnext")
    body, digest = raw[:-32], raw[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise UserError(f"{path} is damaged or truncated (checksum mismatch, {len(raw)} bytes); export it again")
    try:
        header = json.loads(body[_PREFIX.size : _PREFIX.size + head_len])
        payload = memoryview(body)[_PREFIX.size + head_len :]
        entries = {}
        for item in header.pop("tensors"):
            chunk = payload[item["offset"] : item["offset"] + item["nbytes"]]
            array = np.frombuffer(chunk, dtype=np.dtype(item["dtype"])).reshape(item["shape"]).copy()
            entries[item["name"]] = Entry(item["kind"], array, item["meta"])
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path} has a malformed header ({error}); export it again") from error
    return header, entries
