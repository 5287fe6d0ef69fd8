// The .bnx container (docs/bnx-format.md, "Container"): what a reader checks before any byte of it is used.
//
//   b"BNXPACK\0"  8-byte magic
//   uint32        format version, little-endian (this runtime reads 2)
//   uint64        header length H, little-endian
//   H bytes       UTF-8 JSON header: an object with "tensors": [{name, dtype, shape, offset, nbytes}, ...]
//   payload       tensor bytes, each at a 64-byte aligned offset from the payload start
//   32 bytes      SHA-256 of everything before it
//
// Every size, offset and count is checked against the file before use; a damaged, truncated, foreign or
// crafted file is an Error that says so and how to get a good one, never an out-of-bounds read.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "json.h"

namespace bnext {

constexpr uint32_t kBnxVersion = 2;

enum class DType { kFloat32, kUInt8 };  // "<f4", "|u1" in the header

struct TensorView {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;     // each >= 0; product * item size == nbytes (checked)
  const uint8_t* data = nullptr;  // into BnxFile::bytes; nbytes readable; NOT aligned for float: memcpy out
  std::size_t nbytes = 0;
  int64_t numel() const;
};

struct BnxFile {
  std::vector<uint8_t> bytes;  // the whole file, owned (TensorView::data points into it)
  uint32_t version = 0;
  json::Value header;  // the header object, with "tensors" still in it
  std::map<std::string, TensorView> tensors;
};

// Parses and checks `bytes` (taken over). `source` names the file in messages ("model.bnx", "the buffer").
// Throws Error:
//  - too short / wrong magic: not a .bnx;
//  - version 1: "... was written by bnext < 0.2 (format v1); re-export it: bnext export CHECKPOINT --output ...";
//  - version > 2: written by a newer bnext, upgrade bnext-runtime;
//  - header length past the end, checksum mismatch (damaged or truncated: export it again);
//  - header not a JSON object, no "tensors" array, a malformed entry (name, dtype, shape, offset, nbytes),
//    a duplicate name, sizes that overflow or disagree, an offset not 64-aligned or past the payload.
std::unique_ptr<BnxFile> parse_bnx(std::vector<uint8_t> bytes, const std::string& source);

// Reads a file whole and parses it (a missing / unreadable path is an Error naming it).
std::unique_ptr<BnxFile> read_bnx(const std::string& path);

// SHA-256 of `size` bytes (32 bytes out); in sha256.cpp.
void sha256(const uint8_t* data, std::size_t size, uint8_t out[32]);

}  // namespace bnext
