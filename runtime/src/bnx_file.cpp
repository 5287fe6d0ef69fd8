// The .bnx container reader (bnx_file.h). The bytes are untrusted: each field is checked against the file
// before it is used, with overflow-safe arithmetic on the 64-bit sizes the file states.
#include "bnx_file.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string_view>
#include <utility>

#include "error.h"

namespace bnext {

namespace {

constexpr uint8_t kMagic[8] = {'B', 'N', 'X', 'P', 'A', 'C', 'K', 0};
constexpr std::size_t kPrefixBytes = 20;  // magic, uint32 version, uint64 header length
constexpr std::size_t kDigestBytes = 32;
constexpr uint64_t kAlign = 64;
constexpr std::size_t kMaxTensors = 1000000;
constexpr std::size_t kMaxNameBytes = 256;
constexpr std::size_t kMaxRank = 8;
constexpr double kMaxDim = 1099511627776.0;            // 2^40
constexpr double kMaxWhole = 9007199254740992.0;       // 2^53: every whole double up to it is exact
constexpr uint64_t kMaxFileBytes = uint64_t{1} << 31;  // 2 GiB

// Little-endian fields, byte by byte (any host byte order, no unaligned loads).
uint32_t load_le32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint64_t load_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// The file name to suggest for a re-export: the source itself when it is a .bnx path.
std::string output_name(const std::string& source) {
  const std::string_view ext = ".bnx";
  if (source.size() > ext.size() && source.compare(source.size() - ext.size(), ext.size(), ext) == 0) return source;
  return "FILE.bnx";
}

std::string export_again(const std::string& source) {
  return "export it again with `bnext export CHECKPOINT --output " + output_name(source) + "`";
}

// A JSON number for messages: whole numbers without a fraction, others with full precision.
std::string format_number(double v) {
  char buffer[40];
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e18) {
    std::snprintf(buffer, sizeof(buffer), "%.0f", v);
  } else {
    std::snprintf(buffer, sizeof(buffer), "%.17g", v);
  }
  return buffer;
}

// A name for messages: at most 64 bytes of it, quoted.
std::string quoted(const std::string& name) {
  return "\"" + (name.size() > 64 ? name.substr(0, 64) + "..." : name) + "\"";
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

// Checks of the JSON header; every failure names the file and the entry.
class HeaderChecker {
 public:
  explicit HeaderChecker(const std::string& source) : source_(source) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(source_ + " has a malformed header (" + what + "); " + export_again(source_));
  }

  // A member that is a whole number in [0, max]: shape dims, offset, nbytes.
  uint64_t whole(const json::Value& entry, const std::string& where, const char* key, double max) const {
    const json::Value* value = entry.find(key);
    if (!value) fail(where + " has no \"" + key + "\"");
    if (!value->is_number()) {
      fail(where + " \"" + key + "\" is " + json::Value::kind_name(value->kind()) + ", not a number");
    }
    return whole_number(value->number(), where + " \"" + key + "\"", max);
  }

  uint64_t whole_number(double v, const std::string& what, double max) const {
    if (!(v >= 0.0 && v <= max && v == std::floor(v))) {
      fail(what + " is " + format_number(v) + ", not a whole number from 0 to " + format_number(max));
    }
    return static_cast<uint64_t>(v);
  }

 private:
  const std::string& source_;
};

}  // namespace

int64_t TensorView::numel() const {
  // A zero dim first: the product of the others may not fit in 64 bits. Otherwise parse_bnx has checked
  // that the product times the item size is nbytes, so it cannot overflow.
  for (int64_t d : shape) {
    if (d == 0) return 0;
  }
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::unique_ptr<BnxFile> parse_bnx(std::vector<uint8_t> bytes, const std::string& source) {
  const std::size_t size = bytes.size();
  const std::string size_text = std::to_string(size) + " bytes";

  // Prefix: magic, version, header length.
  if (size < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    throw Error(source + " is not a bnext packed model (.bnx): it does not start with the .bnx magic (" + size_text +
                "); export one with `bnext export CHECKPOINT --output " + output_name(source) + "`");
  }
  if (size < kPrefixBytes + kDigestBytes) {
    throw Error(source + " is damaged or truncated (" + size_text + ", shorter than the " +
                std::to_string(kPrefixBytes + kDigestBytes) + " bytes of an empty .bnx); " + export_again(source));
  }
  const uint32_t version = load_le32(bytes.data() + 8);
  if (version == 0) {
    throw Error(source + " is damaged (format version 0, which no bnext writes); " + export_again(source));
  }
  if (version == 1) {
    throw Error(source +
                " was written by bnext < 0.2 (format v1); this runtime reads format v2, which describes its "
                "own graph: re-export it with `bnext export CHECKPOINT --output " +
                output_name(source) + "`");
  }
  if (version > kBnxVersion) {
    throw Error(source + " has format version " + std::to_string(version) + ", written by a newer bnext; this " +
                "bnext-runtime reads format " + std::to_string(kBnxVersion) + ": upgrade bnext-runtime");
  }
  const uint64_t header_bytes = load_le64(bytes.data() + 12);
  const uint64_t after_prefix = size - kPrefixBytes - kDigestBytes;  // >= 0, checked above
  if (header_bytes > after_prefix) {
    throw Error(source + " is damaged or truncated (its header length, " + std::to_string(header_bytes) +
                " bytes, runs past the end of the " + size_text + "); " + export_again(source));
  }

  // Checksum of everything before the last 32 bytes.
  uint8_t digest[32];
  sha256(bytes.data(), size - kDigestBytes, digest);
  if (std::memcmp(digest, bytes.data() + size - kDigestBytes, kDigestBytes) != 0) {
    throw Error(source + " is damaged or truncated (checksum mismatch, " + size_text + "); " + export_again(source));
  }

  auto file = std::make_unique<BnxFile>();
  file->bytes = std::move(bytes);  // the buffer moves, its address stays: views below point into it
  file->version = version;
  const uint8_t* header_start = file->bytes.data() + kPrefixBytes;
  const uint8_t* payload = header_start + header_bytes;
  const uint64_t payload_bytes = after_prefix - header_bytes;
  const HeaderChecker check(source);

  // Header: a JSON object (UTF-8 checked by the parser) with a "tensors" array.
  try {
    file->header = json::parse(std::string_view(reinterpret_cast<const char*>(header_start), header_bytes));
  } catch (const Error& error) {
    check.fail(std::string(error.what()) + "; header offsets count from file byte " + std::to_string(kPrefixBytes));
  }
  const json::Value& header = file->header;
  if (!header.is_object()) {
    check.fail(std::string("the header is ") + json::Value::kind_name(header.kind()) + ", not an object");
  }
  const json::Value* tensors = header.find("tensors");
  if (!tensors) check.fail("no \"tensors\" table");
  if (!tensors->is_array()) {
    check.fail(std::string("\"tensors\" is ") + json::Value::kind_name(tensors->kind()) + ", not an array");
  }
  const auto& entries = tensors->array();
  if (entries.size() > kMaxTensors) {
    check.fail(std::to_string(entries.size()) + " tensors; a .bnx holds at most " + std::to_string(kMaxTensors));
  }

  for (std::size_t i = 0; i < entries.size(); ++i) {
    const json::Value& entry = entries[i];
    std::string where = "tensors[" + std::to_string(i) + "]";
    if (!entry.is_object()) check.fail(where + " is " + json::Value::kind_name(entry.kind()) + ", not an object");

    // name: a non-empty string of at most 256 bytes, unique.
    const json::Value* name_value = entry.find("name");
    if (!name_value) check.fail(where + " has no \"name\"");
    if (!name_value->is_string()) {
      check.fail(where + " \"name\" is " + json::Value::kind_name(name_value->kind()) + ", not a string");
    }
    const std::string& name = name_value->string();
    if (name.empty()) check.fail(where + " has an empty name");
    if (name.size() > kMaxNameBytes) {
      check.fail(where + " has a name of " + std::to_string(name.size()) + " bytes; at most " +
                 std::to_string(kMaxNameBytes));
    }
    if (file->tensors.count(name)) {
      check.fail("two tensors are named " + quoted(name) + " (the second is " + where + ")");
    }
    where = "tensor " + quoted(name);

    // dtype: "<f4" or "|u1" only.
    TensorView view;
    view.name = name;
    const json::Value* dtype = entry.find("dtype");
    if (!dtype) check.fail(where + " has no \"dtype\"");
    if (!dtype->is_string()) {
      check.fail(where + " \"dtype\" is " + json::Value::kind_name(dtype->kind()) + ", not a string");
    }
    uint64_t item_bytes = 0;
    if (dtype->string() == "<f4") {
      view.dtype = DType::kFloat32;
      item_bytes = 4;
    } else if (dtype->string() == "|u1") {
      view.dtype = DType::kUInt8;
      item_bytes = 1;
    } else {
      check.fail(where + " has dtype " + quoted(dtype->string()) +
                 "; this runtime reads \"<f4\" (float32) and \"|u1\" (uint8)");
    }

    // shape: at most 8 whole dims in [0, 2^40].
    const json::Value* shape = entry.find("shape");
    if (!shape) check.fail(where + " has no \"shape\"");
    if (!shape->is_array()) {
      check.fail(where + " \"shape\" is " + json::Value::kind_name(shape->kind()) + ", not an array");
    }
    if (shape->array().size() > kMaxRank) {
      check.fail(where + " has " + std::to_string(shape->array().size()) + " dims; at most " +
                 std::to_string(kMaxRank));
    }
    for (std::size_t d = 0; d < shape->array().size(); ++d) {
      const json::Value& dim = shape->array()[d];
      const std::string what = where + " shape[" + std::to_string(d) + "]";
      if (!dim.is_number()) check.fail(what + " is " + json::Value::kind_name(dim.kind()) + ", not a number");
      view.shape.push_back(static_cast<int64_t>(check.whole_number(dim.number(), what, kMaxDim)));
    }

    // offset, nbytes: whole, nbytes == product of the shape * item size, offset 64-aligned, inside the payload.
    const uint64_t offset = check.whole(entry, where, "offset", kMaxWhole);
    const uint64_t nbytes = check.whole(entry, where, "nbytes", kMaxWhole);
    bool overflow = false;
    uint64_t expected = item_bytes;
    if (std::find(view.shape.begin(), view.shape.end(), 0) != view.shape.end()) {
      expected = 0;  // whatever the other dims (numel() is only safe once the product is checked)
    } else {
      for (int64_t d : view.shape) {
        const uint64_t dim = static_cast<uint64_t>(d);  // > 0 here
        if (expected > std::numeric_limits<uint64_t>::max() / dim) {
          overflow = true;
          break;
        }
        expected *= dim;
      }
    }
    if (overflow || expected != nbytes) {
      check.fail(where + " has shape " + shape_text(view.shape) + " of " + dtype->string() + ", which is " +
                 (overflow ? std::string("more than 2^64") : std::to_string(expected)) + " bytes, but \"nbytes\" is " +
                 std::to_string(nbytes));
    }
    if (offset % kAlign != 0) {
      check.fail(where + " has offset " + std::to_string(offset) + ", not a multiple of " + std::to_string(kAlign));
    }
    if (offset > payload_bytes || nbytes > payload_bytes - offset) {
      check.fail(where + " has bytes [" + std::to_string(offset) + ", " + std::to_string(offset) + " + " +
                 std::to_string(nbytes) + ") past the end of the " + std::to_string(payload_bytes) +
                 "-byte payload (damaged or truncated)");
    }
    view.data = payload + offset;
    view.nbytes = static_cast<std::size_t>(nbytes);
    file->tensors.emplace(name, std::move(view));
  }
  return file;
}

std::unique_ptr<BnxFile> read_bnx(const std::string& path) {
  namespace fs = std::filesystem;
  const std::string create = "create one with `bnext export CHECKPOINT --output " + output_name(path) + "`";
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (status.type() == fs::file_type::not_found) throw Error("packed model " + path + " not found; " + create);
  if (ec) throw Error("cannot read packed model " + path + ": " + ec.message());
  if (fs::is_directory(status)) throw Error("packed model " + path + " is a directory, not a .bnx file; " + create);
  if (!fs::is_regular_file(status)) throw Error("packed model " + path + " is not a regular file; " + create);
  const uint64_t stated = fs::file_size(path, ec);
  if (!ec && stated > kMaxFileBytes) {
    throw Error("packed model " + path + " is " + std::to_string(stated) + " bytes; bnext-runtime reads .bnx files " +
                "of at most 2 GiB (" + std::to_string(kMaxFileBytes) + " bytes)");
  }

  // The handle closes on every path, an allocation failure included.
  struct Close {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Close> handle(std::fopen(path.c_str(), "rb"));
  if (!handle) throw Error("cannot open packed model " + path + ": " + std::strerror(errno));
  // Read to the end rather than trust the stated size (the file may change meanwhile), never far past the
  // limit: one read of the stated size plus a byte, then chunks only if the file grew.
  std::vector<uint8_t> bytes(static_cast<std::size_t>(ec ? 0 : stated) + 1);
  std::size_t have = std::fread(bytes.data(), 1, bytes.size(), handle.get());
  if (have == bytes.size()) {
    constexpr std::size_t kChunk = 1 << 20;
    while (have <= kMaxFileBytes) {
      bytes.resize(have + kChunk);
      const std::size_t got = std::fread(bytes.data() + have, 1, kChunk, handle.get());
      have += got;
      if (got < kChunk) break;
    }
  }
  const bool failed = std::ferror(handle.get()) != 0;
  const bool too_big = have > kMaxFileBytes;
  bytes.resize(have);
  handle.reset();
  if (failed)
    throw Error("cannot read packed model " + path + " (read error after " + std::to_string(bytes.size()) + " bytes)");
  if (too_big) throw Error("packed model " + path + " is over 2 GiB; bnext-runtime reads .bnx files of at most 2 GiB");
  return parse_bnx(std::move(bytes), path);
}

}  // namespace bnext
