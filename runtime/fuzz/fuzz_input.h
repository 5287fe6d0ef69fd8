// How the fuzz target turns its input into .bnx bytes, shared with the regression test (tests/test_bnx_file.cpp)
// so that a saved crashing input replays exactly.
//
// Random mutations almost never keep a SHA-256 right, nor the header length H in step with the JSON, so
// most inputs would stop at the checksum. Two forms get past it:
//  - input starting with the .bnx magic: taken as a container; its last 32 bytes are replaced by the right
//    checksum (when it is long enough to have one), everything else is left as it is;
//  - any other input: "HEADER JSON \0 PAYLOAD" (no NUL: all header), wrapped into a version-2 container
//    with the right H and checksum, so the mutations exercise the JSON and tensor-table checks.
// The checksum test itself is covered by the unit tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "bnx_file.h"

namespace bnext::fuzz {

inline std::vector<uint8_t> container_from_input(const uint8_t* data, std::size_t size) {
  static const uint8_t kMagic[8] = {'B', 'N', 'X', 'P', 'A', 'C', 'K', 0};
  std::vector<uint8_t> out;
  if (size >= 8 && std::memcmp(data, kMagic, 8) == 0) {
    out.assign(data, data + size);
    if (out.size() >= 20 + 32) sha256(out.data(), out.size() - 32, out.data() + out.size() - 32);
    return out;
  }
  const uint8_t* nul = size ? static_cast<const uint8_t*>(std::memchr(data, 0, size)) : nullptr;
  const std::size_t header = nul ? static_cast<std::size_t>(nul - data) : size;
  out.assign(kMagic, kMagic + 8);
  const uint32_t version = 2;
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(version >> (8 * i)));
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(header) >> (8 * i)));
  out.insert(out.end(), data, data + header);
  if (nul) out.insert(out.end(), nul + 1, data + size);
  out.resize(out.size() + 32);
  sha256(out.data(), out.size() - 32, out.data() + out.size() - 32);
  return out;
}

}  // namespace bnext::fuzz
