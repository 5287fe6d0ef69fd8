#!/usr/bin/env python3
"""Writes the small synthetic seeds of runtime/fuzz/corpus/ (standard library only; deterministic output).

    python3 runtime/fuzz/make_seeds.py [OUT_DIR]

Two forms, as fuzz/fuzz_input.h reads them:
  *.bnx     whole containers (magic, version, H, header, payload, SHA-256);
  *.hdr     "HEADER JSON \\0 PAYLOAD", which the fuzz target wraps into a version-2 container.
The headers only hold the container's tensor table (plus keys the container layer ignores); seeds of real
exported models are added next to these by the runtime's tests.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

MAGIC = b"BNXPACK\0"
PREFIX = struct.Struct("<8sIQ")
ALIGN = 64


def table(tensors: list[tuple[str, str, list[int], bytes]], extra: dict | None = None) -> tuple[bytes, bytes]:
    """(header JSON, payload) for (name, dtype, shape, data) tensors at 64-aligned offsets."""
    entries, payload = [], b""
    for name, dtype, shape, data in tensors:
        payload += b"\0" * (-len(payload) % ALIGN)
        entries.append({"name": name, "dtype": dtype, "shape": shape, "offset": len(payload), "nbytes": len(data)})
        payload += data
    header = {**(extra or {}), "tensors": entries}
    return json.dumps(header, allow_nan=False).encode(), payload


def container(header: bytes, payload: bytes, version: int = 2) -> bytes:
    body = PREFIX.pack(MAGIC, version, len(header)) + header + payload
    return body + hashlib.sha256(body).digest()


def floats(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "corpus"
    out.mkdir(parents=True, exist_ok=True)
    small = [
        ("w", "<f4", [2, 3], floats(1.5, -2.0, 0.25, 3.0, -0.5, 7.0)),
        ("codes", "|u1", [5], bytes([1, 11, 21, 31, 41])),
        ("empty", "<f4", [0, 4], b""),
        ("scale", "<f4", [], floats(0.125)),
    ]
    seeds: dict[str, bytes] = {}
    header, payload = table(small, {"model": {"name": "tiny", "classes": 10}})
    seeds["valid_small.bnx"] = container(header, payload)
    seeds["valid_small.hdr"] = header + b"\0" + payload
    header, payload = table([])
    seeds["valid_empty.bnx"] = container(header, payload)
    # Many entries, varied ranks and both dtypes; binary-looking data.
    many = [
        (f"layer{i}.{kind}", dtype, shape, bytes((i * 37 + j) & 255 for j in range(n)))
        for i in range(12)
        for kind, dtype, shape, n in [("weight", "|u1", [2, 2, 1, 4], 16), ("scale", "<f4", [4], 16)]
    ]
    header, payload = table(many, {"card": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "size": [32, 32]}})
    seeds["valid_many.bnx"] = container(header, payload)
    # Edge forms of the JSON the reader accepts: escapes, unicode, exponents, whitespace, rank 8, unknown keys.
    edge = (
        b'{ "tensors" : [ {"name":"caf\\u00e9 \\ud83d\\ude00 \\"q\\"\\n","dtype":"|u1","shape":[1,1,1,1,2,1,1,2],'
        b'"offset":0e0,"nbytes":4.0,"kind":"codes","meta":{"bits":1,"a":[true,false,null,-0,1E-400]}},'
        b'{"nbytes":0,"offset":64,"shape":[1099511627776,0],"dtype":"<f4","name":"z"}],'
        b'"note":"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "n": -12.5e+3 }\n'
    )
    seeds["edge_json.hdr"] = edge + b"\0" + bytes([9, 8, 7, 6]) + b"\0" * 60
    # The v1 layout (refused with its own message).
    v1_header = json.dumps(
        {
            "model": "bnext_tiny",
            "tensors": [
                {"name": "a", "kind": "fp32", "dtype": "<f4", "shape": [1], "offset": 0, "nbytes": 4, "meta": {}}
            ],
        }
    ).encode()
    seeds["v1_small.bnx"] = container(v1_header, floats(1.0), version=1)
    for name, data in seeds.items():
        assert len(data) < 64 * 1024, name
        (out / name).write_bytes(data)
        print(f"{out / name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
