// binary_conv: PReLU(scale * conv(sign(x + input_shift), sign(w)) + shift) on packed bits
// (kernels/binary_conv.h; the kernel path is chosen once per model).
#include "ops/ops.h"

namespace bnext {
namespace {

class BinaryConvOp : public Op {
 public:
  BinaryConvOp(const OpReader& reader, KernelPath path) : conv_(build(reader, path)) {}

  Shape infer(const std::vector<Shape>& in) const override {
    const BinaryConvSpec& spec = conv_.spec();
    require(in[0].c == spec.channels,
            "binary_conv expects " + std::to_string(spec.channels) + " input channels, got " + std::to_string(in[0].c));
    return {in[0].n, conv_.out_height(in[0].h), conv_.out_width(in[0].w), spec.out_channels};
  }

  void run(const std::vector<View>& in, const View& out, RunContext& context) const override {
    const Shape& s = in[0].shape;
    if (context.packed_input != nullptr) {
      conv_.run_packed(context.packed_input, s.n, s.h, s.w, out.data, *context.scratch, context.threads);
    } else {
      conv_.run(in[0].data, s.n, s.h, s.w, out.data, *context.scratch, context.threads);
    }
  }

  const BinaryConv* sign_reader() const override { return &conv_; }

 private:
  static BinaryConv build(const OpReader& reader, KernelPath path) {
    BinaryConvSpec spec;
    spec.channels = reader.integer("in_channels", 1, 1 << 16);
    spec.out_channels = reader.integer("out_channels", 1, 1 << 16);
    spec.kernel_h = spec.kernel_w = reader.integer("kernel", 1, 15);
    spec.stride = reader.integer("stride", 1, 8);
    spec.padding = reader.integer("padding", 0, spec.kernel_h - 1);
    const int64_t taps = spec.kernel_h * spec.kernel_w, row_bytes = (spec.channels + 31) / 32 * 4;
    const auto bits = reader.bytes("bits", spec.out_channels * taps * row_bytes);
    const auto input_shift = reader.floats("input_shift", spec.channels);
    const auto scale = reader.floats("scale", spec.out_channels), shift = reader.floats("shift", spec.out_channels);
    std::vector<float> slope;
    if (reader.has_param("slope")) slope = reader.floats("slope", spec.out_channels);
    return BinaryConv(spec, bits.data(), input_shift.data(), scale.data(), shift.data(),
                      slope.empty() ? nullptr : slope.data(), path);
  }

  BinaryConv conv_;
};

}  // namespace

std::unique_ptr<Op> make_binary_conv(const OpReader& reader, KernelPath path) {
  return std::make_unique<BinaryConvOp>(reader, path);
}

}  // namespace bnext
