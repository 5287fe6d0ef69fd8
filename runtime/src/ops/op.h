// The op interface of the graph executor, and how an op reads its definition from the .bnx header.
//
// An activation is float NHWC. An op is built once at load from its header entry (attrs, params: every
// value and size checked there, so that run() needs no checks of its own), infers its output shape from
// its inputs' shapes for each new input size (an Error when they do not fit), and runs.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bnx_file.h"
#include "error.h"
#include "json.h"
#include "kernels/binary_conv.h"

namespace bnext {

struct Shape {
  int64_t n = 0, h = 0, w = 0, c = 0;
  int64_t pixels() const { return n * h * w; }
  int64_t numel() const { return n * h * w * c; }
};

// An activation in memory: pixel p's channel k is at data[p * pixel_stride + k]. Inputs are always
// dense (pixel_stride == c); an output may be a channel slice of a wider tensor (a concatenation).
struct View {
  float* data = nullptr;
  Shape shape;
  int64_t pixel_stride = 0;
};

// A packed edge (see Model): an op's output packed, as the binary conv `conv` reading it wants its input, into
// `words` (conv->packed_words(pixels) words, the words past the pixels zero).
struct SignSink {
  const BinaryConv* conv = nullptr;
  uint64_t* words = nullptr;
};

struct RunContext {
  int threads = 1;
  ConvScratch* scratch = nullptr;
  // For an op that emits_signs(): the sinks its output is packed into, pixel block by pixel block, while
  // the block is in cache (none: nothing to pack).
  std::vector<SignSink> sinks;
  // For an op with a sign_reader(): its input already packed (nullptr: read the floats).
  const uint64_t* packed_input = nullptr;
};

// Packs pixels [begin, end) of `out` into each sink (the emitting ops call it once per block they write).
void emit_signs(const RunContext& context, const View& out, int64_t begin, int64_t end);

class Op {
 public:
  virtual ~Op() = default;
  // Output shape for these input shapes (in the op's input order); Error when they do not fit.
  virtual Shape infer(const std::vector<Shape>& inputs) const = 0;
  virtual void run(const std::vector<View>& inputs, const View& out, RunContext& context) const = 0;
  // Whether run() can write a channel slice of a wider tensor (out.pixel_stride > out.shape.c).
  virtual bool writes_slices() const { return false; }
  // Whether run() packs its output into context.sinks (calling emit_signs for every pixel it writes).
  virtual bool emits_signs() const { return false; }
  // The binary conv whose packed input run() takes as context.packed_input instead of its input's floats,
  // or nullptr (the op reads floats only).
  virtual const BinaryConv* sign_reader() const { return nullptr; }
};

// An op's header entry, read with checks: every getter names the op and the field in its Error.
class OpReader {
 public:
  OpReader(const json::Value& entry, const BnxFile& file, std::string where);

  const std::string& kind() const { return kind_; }
  const std::string& where() const { return where_; }

  // attrs
  bool has(const std::string& key) const;
  int64_t integer(const std::string& key, int64_t min, int64_t max) const;
  bool boolean(const std::string& key, bool fallback) const;
  double number(const std::string& key) const;
  std::string text(const std::string& key, const std::string& fallback) const;
  // A nested attrs object (e.g. "squeeze"); Error when absent or not an object.
  OpReader nested(const std::string& key) const;

  // params
  bool has_param(const std::string& role) const;
  // A float32 param of exactly `count` values.
  std::vector<float> floats(const std::string& role, int64_t count) const;
  // A uint8 param of exactly `count` bytes.
  std::vector<uint8_t> bytes(const std::string& role, int64_t count) const;

  [[noreturn]] void fail(const std::string& message) const;

 private:
  OpReader(const json::Value& attrs, const json::Value* params, const BnxFile& file, std::string kind,
           std::string where, std::string prefix);
  const TensorView& tensor(const std::string& role) const;

  const json::Value* attrs_;
  const json::Value* params_;
  const BnxFile* file_;
  std::string kind_, where_, prefix_;
};

// The op of a header entry (its "op" kind); `inputs` receives the input roles in the order the op reads
// them. Error for an unknown kind or a bad field.
std::unique_ptr<Op> make_op(const OpReader& reader, const json::Value& inputs_object,
                            std::vector<std::string>& input_names, KernelPath path);

}  // namespace bnext
