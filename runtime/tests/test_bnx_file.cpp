// The .bnx container (src/bnx_file.h) and SHA-256: a valid file parses with the right views; each damaged,
// truncated, foreign or crafted one is an Error saying what is wrong. Containers are built here in C++, so
// these tests need no Python.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../fuzz/fuzz_input.h"
#include "bnx_file.h"
#include "check.h"
#include "error.h"

using bnext::parse_bnx;

namespace {

std::string hex(const uint8_t* digest) {
  static const char* kHex = "0123456789abcdef";
  std::string text;
  for (int i = 0; i < 32; ++i) {
    text += kHex[digest[i] >> 4];
    text += kHex[digest[i] & 15];
  }
  return text;
}

std::string sha256_hex(const std::string& message) {
  uint8_t digest[32];
  bnext::sha256(reinterpret_cast<const uint8_t*>(message.data()), message.size(), digest);
  return hex(digest);
}

std::vector<uint8_t> bytes_of(const std::string& text) { return std::vector<uint8_t>(text.begin(), text.end()); }

// A container: prefix (magic, version, H), header text, payload, and the SHA-256 of all that (or not).
std::vector<uint8_t> container(const std::string& header, const std::vector<uint8_t>& payload, uint32_t version = 2,
                               uint64_t header_length = UINT64_MAX, bool checksum = true) {
  if (header_length == UINT64_MAX) header_length = header.size();
  std::vector<uint8_t> out = {'B', 'N', 'X', 'P', 'A', 'C', 'K', 0};
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(version >> (8 * i)));
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(header_length >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), payload.begin(), payload.end());
  out.resize(out.size() + 32);
  if (checksum) bnext::sha256(out.data(), out.size() - 32, out.data() + out.size() - 32);
  return out;
}

// Recomputes the checksum after a test edits the bytes.
void reseal(std::vector<uint8_t>& file) {
  bnext::sha256(file.data(), file.size() - 32, file.data() + file.size() - 32);
}

// One entry of the tensor table, as JSON text.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offset, const std::string& nbytes) {
  return "{\"name\": \"" + name + "\", \"dtype\": \"" + dtype + "\", \"shape\": " + shape + ", \"offset\": " + offset +
         ", \"nbytes\": " + nbytes + "}";
}

// A container with one tensor entry (given as JSON text) and `payload_bytes` zero bytes of payload.
std::vector<uint8_t> one_entry(const std::string& entry_text, std::size_t payload_bytes = 256) {
  return container("{\"tensors\": [" + entry_text + "]}", std::vector<uint8_t>(payload_bytes, 0));
}

// The valid model used below: "w" float32 [2, 3] at 0, "codes" uint8 [5] at 64, "empty" float32 [0, 4] at 128,
// "scale" float32 [] (a scalar) at 128; v1-style extra keys ("kind", "meta") that v2 ignores.
struct ValidModel {
  std::string header;
  std::vector<uint8_t> payload;
  std::vector<uint8_t> file;
};

ValidModel valid_model() {
  ValidModel m;
  m.header = "{\"format\": \"bnext\", \"model\": {\"name\": \"tiny\", \"classes\": 10}, \"tensors\": [" +
             entry("w", "<f4", "[2, 3]", "0", "24") + ", " + entry("codes", "|u1", "[5]", "64", "5") + ", " +
             entry("empty", "<f4", "[0, 4]", "128", "0") + ", " +
             "{\"name\": \"scale\", \"kind\": \"fp32\", \"dtype\": \"<f4\", \"shape\": [], \"offset\": 128.0, "
             "\"nbytes\": 4e0, \"meta\": {\"x\": [1, 2]}}]}";
  m.payload.assign(132, 0);
  const float w[6] = {1.5f, -2.0f, 0.25f, 3.0f, -0.5f, 7.0f};
  std::memcpy(m.payload.data(), w, sizeof(w));  // host order: the test reads it back the same way
  for (int i = 0; i < 5; ++i) m.payload[64 + i] = static_cast<uint8_t>(10 * i + 1);
  const float scale = 0.125f;
  std::memcpy(m.payload.data() + 128, &scale, 4);
  m.file = container(m.header, m.payload);
  return m;
}

// A fresh path in the temp directory (unique per run, so parallel test runs do not collide).
std::string temp_path(const std::string& name) {
  static const auto run = std::chrono::steady_clock::now().time_since_epoch().count();
  return (std::filesystem::temp_directory_path() / ("bnext_test_" + std::to_string(run) + "_" + name)).string();
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

// ---- SHA-256 --------------------------------------------------------------------------------------------

TEST(sha256_known_vectors) {
  // FIPS 180-4 examples (the NIST "SHA256.pdf" and "SHA2_Additional" vectors).
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
                   "mnopqrstnopqrstu") == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  CHECK(sha256_hex(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  uint8_t digest[32];
  bnext::sha256(nullptr, 0, digest);
  CHECK(hex(digest) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(sha256_every_padding_length) {
  // Messages of 0..199 bytes (byte j = 7j + 3) cross every padding case (55/56/63/64 bytes mod 64); the
  // digest of their concatenated digests was computed with Python's hashlib.
  std::string all;
  for (int n = 0; n < 200; ++n) {
    std::vector<uint8_t> message(n);
    for (int j = 0; j < n; ++j) message[j] = static_cast<uint8_t>(j * 7 + 3);
    uint8_t digest[32];
    bnext::sha256(message.data(), message.size(), digest);
    all.append(reinterpret_cast<const char*>(digest), 32);
  }
  CHECK(sha256_hex(all) == "615d67a99b8c846e1f0582dfe127019e93c33a66e89ced6a4f81f932c82ece87");
}

// ---- A valid file ---------------------------------------------------------------------------------------

TEST(bnx_valid_file_parses) {
  const ValidModel m = valid_model();
  const auto file = parse_bnx(m.file, "tiny.bnx");
  CHECK(file->version == 2);
  CHECK(file->bytes == m.file);
  CHECK(file->header.is_object());
  CHECK(file->header.find("model")->find("name")->string() == "tiny");
  CHECK(file->header.find("tensors")->array().size() == 4);
  CHECK(file->tensors.size() == 4);
  const uint8_t* payload = file->bytes.data() + 20 + m.header.size();

  const bnext::TensorView& w = file->tensors.at("w");
  CHECK(w.name == "w");
  CHECK(w.dtype == bnext::DType::kFloat32);
  CHECK((w.shape == std::vector<int64_t>{2, 3}));
  CHECK(w.numel() == 6 && w.nbytes == 24);
  CHECK(w.data == payload);
  float values[6];
  std::memcpy(values, w.data, sizeof(values));
  CHECK(values[0] == 1.5f && values[1] == -2.0f && values[5] == 7.0f);

  const bnext::TensorView& codes = file->tensors.at("codes");
  CHECK(codes.dtype == bnext::DType::kUInt8);
  CHECK((codes.shape == std::vector<int64_t>{5}));
  CHECK(codes.numel() == 5 && codes.nbytes == 5);
  CHECK(codes.data == payload + 64);
  CHECK(codes.data[0] == 1 && codes.data[4] == 41);

  const bnext::TensorView& empty = file->tensors.at("empty");
  CHECK((empty.shape == std::vector<int64_t>{0, 4}));
  CHECK(empty.numel() == 0 && empty.nbytes == 0);
  CHECK(empty.data == payload + 128);

  const bnext::TensorView& scale = file->tensors.at("scale");  // whole numbers written as 128.0 and 4e0
  CHECK(scale.shape.empty() && scale.numel() == 1 && scale.nbytes == 4);
  CHECK(scale.data == payload + 128);
  float s;
  std::memcpy(&s, scale.data, 4);
  CHECK(s == 0.125f);
}

TEST(bnx_edge_cases_that_are_valid) {
  // No tensors at all, an empty payload.
  CHECK(parse_bnx(container("{\"tensors\": []}", {}), "m.bnx")->tensors.empty());
  // A zero-size tensor at the very end of the payload; dims up to 2^40 when another is 0.
  CHECK(parse_bnx(one_entry(entry("z", "|u1", "[0]", "64", "0"), 64), "m.bnx")->tensors.at("z").nbytes == 0);
  const auto big = parse_bnx(one_entry(entry("z", "<f4", "[1099511627776, 0, 1099511627776]", "0", "0")), "m.bnx");
  CHECK(big->tensors.at("z").numel() == 0);
  // A tensor that ends exactly at the payload end; rank 8; a 256-byte name; unicode names.
  CHECK(parse_bnx(one_entry(entry("t", "|u1", "[1,1,1,1,2,1,1,32]", "192", "64")), "m.bnx")->tensors.size() == 1);
  const std::string long_name(256, 'n');
  CHECK(parse_bnx(one_entry(entry(long_name, "|u1", "[1]", "0", "1")), "m.bnx")->tensors.count(long_name) == 1);
  CHECK(parse_bnx(one_entry(entry("caf\\u00e9", "|u1", "[1]", "0", "1")), "m.bnx")->tensors.count("caf\xc3\xa9") == 1);
  // Unknown keys in entries and in the header are ignored; -0 is a whole number (0).
  CHECK(parse_bnx(one_entry("{\"name\": \"a\", \"dtype\": \"|u1\", \"shape\": [-0], \"offset\": 0, \"nbytes\": 0, "
                            "\"future\": {\"x\": null}}"),
                  "m.bnx")
            ->tensors.size() == 1);
  // Whitespace around the header JSON.
  CHECK(parse_bnx(container(" \n{\"tensors\": []}\n ", {}), "m.bnx")->tensors.empty());
}

// ---- Prefix: magic, version, header length, checksum -----------------------------------------------------

TEST(bnx_not_a_bnx) {
  CHECK_THROWS(parse_bnx({}, "m.bnx"), "m.bnx is not a bnext packed model (.bnx)");
  CHECK_THROWS(parse_bnx(bytes_of("BNXPAC"), "m.bnx"), "not a bnext packed model (.bnx)");
  CHECK_THROWS(parse_bnx(bytes_of("PK\x03\x04 this is a zip file, not a model at all, really...........!"), "m.bnx"),
               "not a bnext packed model (.bnx)");
  std::vector<uint8_t> file = valid_model().file;
  file[7] = '!';
  CHECK_THROWS(parse_bnx(file, "m.bnx"), "not a bnext packed model");
  CHECK_THROWS(parse_bnx(bytes_of("hello"), "the buffer"),
               "export one with `bnext export CHECKPOINT --output FILE.bnx`");
}

TEST(bnx_too_short) {
  const std::vector<uint8_t> file = container("", {});  // 52 bytes, header "" (not JSON)
  CHECK(file.size() == 52);
  for (std::size_t n : {8, 12, 20, 51}) {
    const std::vector<uint8_t> cut(file.begin(), file.begin() + n);
    CHECK_THROWS(parse_bnx(cut, "m.bnx"), "m.bnx is damaged or truncated (" + std::to_string(n) + " bytes");
  }
  CHECK_THROWS(parse_bnx(file, "m.bnx"), "malformed header");
}

TEST(bnx_versions) {
  const ValidModel m = valid_model();
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 1), "old.bnx"),
               "old.bnx was written by bnext < 0.2 (format v1)");
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 1), "old.bnx"), "describes its own graph");
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 1), "old.bnx"), "bnext export CHECKPOINT --output old.bnx");
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 3), "new.bnx"),
               "new.bnx has format version 3, written by a newer bnext");
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 3), "new.bnx"), "upgrade bnext-runtime");
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 0xffffffffu), "new.bnx"), "format version 4294967295");
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 0), "zero.bnx"), "format version 0");
  // The version is read little-endian whatever the host: 0x00000200 is 512, not 2.
  std::vector<uint8_t> file = m.file;
  file[8] = 0;
  file[9] = 2;
  reseal(file);
  CHECK_THROWS(parse_bnx(file, "m.bnx"), "format version 512");
  // A v1-style table (kind/meta in each entry): as version 1 the v1 message, as version 2 the extra keys are
  // ignored.
  const std::string v1_header =
      "{\"model\": \"x\", \"tensors\": [{\"name\": \"a\", \"kind\": \"fp32\", "
      "\"dtype\": \"<f4\", \"shape\": [1], \"offset\": 0, \"nbytes\": 4, \"meta\": {}}]}";
  CHECK_THROWS(parse_bnx(container(v1_header, std::vector<uint8_t>(4), 1), "m.bnx"), "(format v1)");
  CHECK(parse_bnx(container(v1_header, std::vector<uint8_t>(4)), "m.bnx")->tensors.count("a") == 1);
}

TEST(bnx_header_length_out_of_range) {
  const ValidModel m = valid_model();
  const uint64_t rest = m.header.size() + m.payload.size();  // what lies between prefix and checksum
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 2, rest + 1), "m.bnx"),
               "m.bnx is damaged or truncated (its header length, " + std::to_string(rest + 1) + " bytes, runs past");
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 2, UINT64_MAX - 1), "m.bnx"), "runs past the end");
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 2, uint64_t{1} << 63), "m.bnx"), "runs past the end");
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 2, UINT64_MAX - 19), "m.bnx"), "runs past the end");
  // In range but wrong: the JSON is cut short, or runs into the payload.
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 2, m.header.size() - 1), "m.bnx"), "malformed header");
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 2, m.header.size() + 1), "m.bnx"), "malformed header");
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 2, rest), "m.bnx"), "malformed header");
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 2, 0), "m.bnx"), "malformed header");
}

TEST(bnx_checksum) {
  const ValidModel m = valid_model();
  const std::string damaged = "m.bnx is damaged or truncated (checksum mismatch, " + std::to_string(m.file.size()) +
                              " bytes); export it again with `bnext export CHECKPOINT --output m.bnx`";
  std::vector<uint8_t> file = m.file;
  file[20 + m.header.size() + 3] ^= 1;  // a payload byte
  CHECK_THROWS(parse_bnx(file, "m.bnx"), damaged);
  file = m.file;
  file[25] ^= 0x20;  // a header byte
  CHECK_THROWS(parse_bnx(file, "m.bnx"), "checksum mismatch");
  file = m.file;
  file.back() ^= 0x80;  // the checksum itself
  CHECK_THROWS(parse_bnx(file, "m.bnx"), damaged);
  CHECK_THROWS(parse_bnx(container(m.header, m.payload, 2, UINT64_MAX, false), "m.bnx"), "checksum mismatch");
  // Truncated by one byte, or with one byte more.
  file = m.file;
  file.pop_back();
  CHECK_THROWS(parse_bnx(file, "m.bnx"), "damaged or truncated (checksum mismatch");
  file = m.file;
  file.push_back(0);
  CHECK_THROWS(parse_bnx(file, "m.bnx"), "checksum mismatch");
}

// ---- Header -------------------------------------------------------------------------------------------

TEST(bnx_header_not_json_object) {
  CHECK_THROWS(parse_bnx(container("{\"tensors\": [}", {}), "m.bnx"),
               "m.bnx has a malformed header (invalid JSON at byte 13");
  CHECK_THROWS(parse_bnx(container("{\"tensors\": [}", {}), "m.bnx"), "export it again with `bnext export");
  CHECK_THROWS(parse_bnx(container("{\"tensors\": [], \"x\": \"\xc3\x28\"}", {}), "m.bnx"), "invalid UTF-8");
  CHECK_THROWS(parse_bnx(container("{\"tensors\": [], \"tensors\": []}", {}), "m.bnx"), "duplicate object key");
  CHECK_THROWS(parse_bnx(container("{\"tensors\": [], \"x\": NaN}", {}), "m.bnx"), "invalid JSON");
  CHECK_THROWS(parse_bnx(container("{\"tensors\": [], \"x\": 1e400}", {}), "m.bnx"), "not a finite double");
  CHECK_THROWS(parse_bnx(container(std::string("{\"tensors\": []}\0", 16), {}), "m.bnx"), "unexpected text");
  CHECK_THROWS(parse_bnx(container(std::string(100000, '['), {}), "m.bnx"), "nested deeper");
  CHECK_THROWS(parse_bnx(container("[]", {}), "m.bnx"), "the header is an array, not an object");
  CHECK_THROWS(parse_bnx(container("\"tensors\"", {}), "m.bnx"), "the header is a string, not an object");
  CHECK_THROWS(parse_bnx(container("null", {}), "m.bnx"), "the header is null, not an object");
}

TEST(bnx_tensor_table_shape) {
  CHECK_THROWS(parse_bnx(container("{}", {}), "m.bnx"), "m.bnx has a malformed header (no \"tensors\" table)");
  CHECK_THROWS(parse_bnx(container("{\"Tensors\": []}", {}), "m.bnx"), "no \"tensors\" table");
  CHECK_THROWS(parse_bnx(container("{\"tensors\": {}}", {}), "m.bnx"), "\"tensors\" is an object, not an array");
  CHECK_THROWS(parse_bnx(container("{\"tensors\": null}", {}), "m.bnx"), "\"tensors\" is null, not an array");
  CHECK_THROWS(parse_bnx(container("{\"tensors\": [1]}", {}), "m.bnx"), "tensors[0] is a number, not an object");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1]", "0", "1") + ", []"), "m.bnx"),
               "tensors[1] is an array, not an object");
  // More than a million tensors is refused before any entry is looked at.
  std::string many = "{\"tensors\": [0";
  for (int i = 0; i < 1000000; ++i) many += ",0";
  CHECK_THROWS(parse_bnx(container(many + "]}", {}), "m.bnx"), "1000001 tensors; a .bnx holds at most 1000000");
}

TEST(bnx_tensor_names) {
  CHECK_THROWS(parse_bnx(one_entry("{\"dtype\": \"|u1\", \"shape\": [1], \"offset\": 0, \"nbytes\": 1}"), "m.bnx"),
               "tensors[0] has no \"name\"");
  CHECK_THROWS(
      parse_bnx(one_entry("{\"name\": 7, \"dtype\": \"|u1\", \"shape\": [1], \"offset\": 0, \"nbytes\": 1}"), "m.bnx"),
      "tensors[0] \"name\" is a number, not a string");
  CHECK_THROWS(parse_bnx(one_entry(entry("", "|u1", "[1]", "0", "1")), "m.bnx"), "tensors[0] has an empty name");
  CHECK_THROWS(parse_bnx(one_entry(entry(std::string(257, 'n'), "|u1", "[1]", "0", "1")), "m.bnx"),
               "tensors[0] has a name of 257 bytes; at most 256");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1]", "0", "1") + ", " + entry("b", "|u1", "[1]", "64", "1") +
                                   ", " + entry("a", "|u1", "[1]", "128", "1")),
                         "m.bnx"),
               "two tensors are named \"a\" (the second is tensors[2])");
}

TEST(bnx_tensor_dtypes) {
  for (const char* dtype : {"<f8", "<f2", ">f4", "=f4", "float32", "uint8", "<i4", "|b1", "<u1", "|u1 ", ""}) {
    CHECK_THROWS(parse_bnx(one_entry(entry("a", dtype, "[1]", "0", "1")), "m.bnx"),
                 std::string("tensor \"a\" has dtype \"") + dtype + "\"; this runtime reads \"<f4\" (float32)");
  }
  CHECK_THROWS(parse_bnx(one_entry("{\"name\": \"a\", \"shape\": [1], \"offset\": 0, \"nbytes\": 1}"), "m.bnx"),
               "tensor \"a\" has no \"dtype\"");
  CHECK_THROWS(
      parse_bnx(one_entry("{\"name\": \"a\", \"dtype\": 4, \"shape\": [1], \"offset\": 0, \"nbytes\": 1}"), "m.bnx"),
      "tensor \"a\" \"dtype\" is a number, not a string");
}

TEST(bnx_tensor_shapes) {
  CHECK_THROWS(parse_bnx(one_entry("{\"name\": \"a\", \"dtype\": \"|u1\", \"offset\": 0, \"nbytes\": 1}"), "m.bnx"),
               "tensor \"a\" has no \"shape\"");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "1", "0", "1")), "m.bnx"),
               "tensor \"a\" \"shape\" is a number, not an array");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "{}", "0", "1")), "m.bnx"), "not an array");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[\"1\"]", "0", "1")), "m.bnx"),
               "tensor \"a\" shape[0] is a string, not a number");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1, null]", "0", "1")), "m.bnx"), "shape[1] is null");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[[1]]", "0", "1")), "m.bnx"), "shape[0] is an array");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[-1]", "0", "1")), "m.bnx"),
               "tensor \"a\" shape[0] is -1, not a whole number from 0 to 1099511627776");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1.5]", "0", "1")), "m.bnx"), "shape[0] is 1.5, not a whole");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1099511627777]", "0", "1")), "m.bnx"),
               "shape[0] is 1099511627777, not a whole number");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1e300]", "0", "1")), "m.bnx"), "not a whole number");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1,1,1,1,1,1,1,1,1]", "0", "1")), "m.bnx"),
               "tensor \"a\" has 9 dims; at most 8");
  // The product against nbytes: too small, too big, overflowing 64 bits, item size counted.
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "<f4", "[2, 3]", "0", "23")), "m.bnx"),
               "tensor \"a\" has shape [2, 3] of <f4, which is 24 bytes, but \"nbytes\" is 23");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "<f4", "[2, 3]", "0", "6")), "m.bnx"), "which is 24 bytes");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[2, 3]", "0", "24")), "m.bnx"), "which is 6 bytes");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[]", "0", "0")), "m.bnx"), "which is 1 bytes");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1099511627776, 1099511627776]", "0", "0")), "m.bnx"),
               "which is more than 2^64 bytes");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "<f4", "[4294967296, 1073741824]", "0", "0")), "m.bnx"),
               "more than 2^64");  // 2^62 items * 4 bytes = 2^64 exactly
  CHECK_THROWS(
      parse_bnx(one_entry(entry("a", "<f4", "[1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024]", "0", "0")), "m.bnx"),
      "more than 2^64");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "<f4", "[1073741824, 4]", "0", "0")), "m.bnx"),
               "which is 17179869184 bytes");
}

TEST(bnx_tensor_offsets) {
  CHECK_THROWS(parse_bnx(one_entry("{\"name\": \"a\", \"dtype\": \"|u1\", \"shape\": [1], \"nbytes\": 1}"), "m.bnx"),
               "tensor \"a\" has no \"offset\"");
  CHECK_THROWS(parse_bnx(one_entry("{\"name\": \"a\", \"dtype\": \"|u1\", \"shape\": [1], \"offset\": 0}"), "m.bnx"),
               "tensor \"a\" has no \"nbytes\"");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1]", "\"0\"", "1")), "m.bnx"),
               "tensor \"a\" \"offset\" is a string, not a number");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1]", "0", "true")), "m.bnx"),
               "tensor \"a\" \"nbytes\" is a boolean, not a number");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1]", "-64", "1")), "m.bnx"),
               "tensor \"a\" \"offset\" is -64, not a whole number from 0 to 9007199254740992");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1]", "0.5", "1")), "m.bnx"), "\"offset\" is 0.5, not a whole");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1]", "0", "-1")), "m.bnx"), "\"nbytes\" is -1, not a whole");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1]", "0", "1.25")), "m.bnx"), "\"nbytes\" is 1.25");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1]", "1e300", "1")), "m.bnx"), "\"offset\" is 1.0000000000000");
  // Alignment.
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1]", "1", "1")), "m.bnx"),
               "tensor \"a\" has offset 1, not a multiple of 64");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1]", "96", "1")), "m.bnx"), "not a multiple of 64");
  // Past the payload (256 bytes here): the start, the end, and sums that overflow 64 bits.
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1]", "256", "1")), "m.bnx"),
               "tensor \"a\" has bytes [256, 256 + 1) past the end of the 256-byte payload");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[65]", "192", "65")), "m.bnx"), "past the end");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[257]", "0", "257")), "m.bnx"), "past the end");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[0]", "320", "0")), "m.bnx"), "past the end");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1]", "9007199254740992", "1")), "m.bnx"), "past the end");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1048576, 1048576, 8192]", "64", "9007199254740992")), "m.bnx"),
               "past the end");
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[1]", "9007199254741056", "1")), "m.bnx"),
               "not a whole number from 0 to 9007199254740992");
  // The tensor table refers to the payload, not to the header before it.
  CHECK_THROWS(parse_bnx(one_entry(entry("a", "|u1", "[64]", "0", "64"), 0), "m.bnx"),
               "past the end of the 0-byte payload");
}

// ---- Reading files ------------------------------------------------------------------------------------

TEST(bnx_read_file) {
  const ValidModel m = valid_model();
  const std::string path = temp_path("model.bnx");
  write_file(path, m.file);
  const auto file = bnext::read_bnx(path);
  CHECK(file->bytes == m.file && file->tensors.size() == 4);
  CHECK(file->tensors.at("w").data == file->bytes.data() + 20 + m.header.size());
  // A damaged file on disk is named by its path.
  std::vector<uint8_t> damaged = m.file;
  damaged[30] ^= 1;
  write_file(path, damaged);
  CHECK_THROWS(bnext::read_bnx(path), path + " is damaged or truncated (checksum mismatch");
  write_file(path, {});
  CHECK_THROWS(bnext::read_bnx(path), path + " is not a bnext packed model");
  std::filesystem::remove(path);

  CHECK_THROWS(bnext::read_bnx(path), "packed model " + path + " not found");
  CHECK_THROWS(bnext::read_bnx(path), "bnext export CHECKPOINT --output " + path);
  CHECK_THROWS(bnext::read_bnx(""), "not found");
  const std::string dir = temp_path("dir.bnx");
  std::filesystem::create_directory(dir);
  CHECK_THROWS(bnext::read_bnx(dir), "packed model " + dir + " is a directory");
  std::filesystem::remove(dir);
#ifdef __linux__
  CHECK_THROWS(bnext::read_bnx("/dev/null"), "/dev/null is not a regular file");
#endif
}

TEST(bnx_read_file_over_2gib) {
  // A sparse file of 2 GiB + 1 byte: refused from its size, before any of it is read.
  const std::string path = temp_path("huge.bnx");
  { std::ofstream out(path, std::ios::binary); }
  std::error_code ec;
  std::filesystem::resize_file(path, (uint64_t{1} << 31) + 1, ec);
  if (!ec) CHECK_THROWS(bnext::read_bnx(path), "is 2147483649 bytes; bnext-runtime reads .bnx files of at most 2 GiB");
  std::filesystem::remove(path);
}

// ---- Fuzzer inputs --------------------------------------------------------------------------------------

namespace {

// parse_bnx on these bytes returns or throws Error: anything else (another exception; a crash under the
// sanitizers) fails.
void parse_or_refuse(const std::vector<uint8_t>& bytes, const std::string& name) {
  try {
    parse_bnx(bytes, name);
  } catch (const bnext::Error&) {
  } catch (const std::exception& error) {
    CHECK_MSG(false, name << ": not a bnext::Error: " << error.what());
  }
}

}  // namespace

TEST(bnx_fuzz_input_forms) {
  // The fuzz target's two forms: a container whose checksum it fixes; "header \0 payload" it wraps.
  const ValidModel m = valid_model();
  std::vector<uint8_t> file = m.file;
  file.back() ^= 1;
  CHECK(bnext::fuzz::container_from_input(file.data(), file.size()) == m.file);
  std::vector<uint8_t> input = bytes_of(m.header);
  input.push_back(0);
  input.insert(input.end(), m.payload.begin(), m.payload.end());
  CHECK(bnext::fuzz::container_from_input(input.data(), input.size()) == m.file);
  const std::vector<uint8_t> bare = bytes_of("{\"tensors\": []}");
  CHECK(parse_bnx(bnext::fuzz::container_from_input(bare.data(), bare.size()), "fuzz")->tensors.empty());
  CHECK_THROWS(parse_bnx(bnext::fuzz::container_from_input(nullptr, 0), "fuzz"), "malformed header");
}

TEST(bnx_fuzz_regressions_and_seeds) {
  // Every saved crashing input (fuzz/regressions) and every seed (fuzz/corpus) is loaded or refused, as
  // given and as the fuzz target sees it.
#ifdef BNEXT_SOURCE_DIR
  namespace fs = std::filesystem;
  int files = 0;
  for (const char* dir : {"/fuzz/regressions", "/fuzz/corpus"}) {
    const fs::path root = fs::path(BNEXT_SOURCE_DIR + std::string(dir));
    if (!fs::is_directory(root)) continue;
    for (const auto& item : fs::directory_iterator(root)) {
      if (!item.is_regular_file() || item.path().filename() == ".gitkeep") continue;
      std::ifstream in(item.path(), std::ios::binary);
      const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      parse_or_refuse(bytes, item.path().string());
      parse_or_refuse(bnext::fuzz::container_from_input(bytes.data(), bytes.size()), item.path().string());
      ++files;
    }
  }
  CHECK_MSG(files > 0, "no seeds found under " << BNEXT_SOURCE_DIR << "/fuzz");
#else
  CHECK_MSG(false, "BNEXT_SOURCE_DIR is not defined (CMake defines it for runtime_tests)");
#endif
}
