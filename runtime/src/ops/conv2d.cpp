// conv2d: a float convolution (the stem, the fp downsample shortcuts), fp32 or PTQ weights, with an
// optional per-channel output affine map (a BatchNorm kept apart from quantized weights).
#include <algorithm>

#include "ops/dense.h"
#include "ops/ops.h"
#include "ops/vectorize.h"
#include "parallel.h"

namespace bnext {
namespace {

// out[o] += sum over the window's taps of x[tap][c] * w[(tap, c)][o]: taps outside the image add nothing
// (zero padding). Loops over contiguous outputs, so that they vectorize.
BNEXT_CLONES void conv_pixel(const float* x, int64_t h, int64_t w, int64_t c, int64_t top, int64_t left,
                             int64_t kernel, const float* weight_t, int64_t out_channels, float* sums) {
  for (int64_t ky = 0; ky < kernel; ++ky) {
    const int64_t iy = top + ky;
    if (iy < 0 || iy >= h) continue;
    for (int64_t kx = 0; kx < kernel; ++kx) {
      const int64_t ix = left + kx;
      if (ix < 0 || ix >= w) continue;
      const float* pixel = x + (iy * w + ix) * c;
      const float* rows = weight_t + (ky * kernel + kx) * c * out_channels;
      for (int64_t ci = 0; ci < c; ++ci) {
        const float v = pixel[ci];
        const float* row = rows + ci * out_channels;
        for (int64_t o = 0; o < out_channels; ++o) sums[o] += row[o] * v;
      }
    }
  }
}

class Conv2d : public Op {
 public:
  explicit Conv2d(const OpReader& reader) : dense_(read_dense(reader)) {
    kernel_ = reader.integer("kernel", 1, 15);
    stride_ = reader.integer("stride", 1, 8);
    padding_ = reader.integer("padding", 0, kernel_ - 1);
    if (dense_.in % (kernel_ * kernel_) != 0) reader.fail("in_features is not channels x kernel x kernel");
    channels_ = dense_.in / (kernel_ * kernel_);
    // PyTorch's (c, ky, kx) order of a filter's inputs -> (ky, kx, c), which NHWC windows read in order.
    std::vector<float> reordered(dense_.weight_t.size());
    for (int64_t ci = 0; ci < channels_; ++ci)
      for (int64_t t = 0; t < kernel_ * kernel_; ++t)
        std::copy_n(dense_.weight_t.begin() + (ci * kernel_ * kernel_ + t) * dense_.out, dense_.out,
                    reordered.begin() + (t * channels_ + ci) * dense_.out);
    dense_.weight_t.swap(reordered);
    if (reader.has_param("out_scale")) {
      out_scale_ = reader.floats("out_scale", dense_.out);
      out_shift_ = reader.floats("out_shift", dense_.out);
    }
  }

  Shape infer(const std::vector<Shape>& in) const override {
    require(in[0].c == channels_, "conv2d expects " + std::to_string(channels_) + " input channels, got " +
                                      std::to_string(in[0].c));
    const int64_t oh = (in[0].h + 2 * padding_ - kernel_) / stride_ + 1, ow = (in[0].w + 2 * padding_ - kernel_) / stride_ + 1;
    require(in[0].h + 2 * padding_ >= kernel_ && in[0].w + 2 * padding_ >= kernel_,
            "the input is smaller than a " + std::to_string(kernel_) + "x" + std::to_string(kernel_) + " conv");
    return {in[0].n, oh, ow, dense_.out};
  }

  void run(const std::vector<View>& in, const View& out, RunContext& context) const override {
    const Shape& s = in[0].shape;
    const int64_t out_pixels = out.shape.h * out.shape.w;
    const bool quantized = dense_.quant.bits != 0;
    std::vector<float> quantized_input;
    const float* x = in[0].data;
    if (quantized) {  // the calibrated fake quantization of the input, once per value
      quantized_input.resize(s.numel());
      parallel_for(0, s.numel(), 4096, context.threads, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) quantized_input[i] = dense_.quant.apply(x[i]);
      });
      x = quantized_input.data();
    }
    parallel_for(0, out.shape.pixels(), 16, context.threads, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t sample = p / out_pixels, oy = p % out_pixels / out.shape.w, ox = p % out.shape.w;
        float* sums = out.data + p * out.pixel_stride;
        std::fill(sums, sums + dense_.out, 0.0f);
        conv_pixel(x + sample * s.h * s.w * s.c, s.h, s.w, s.c, oy * stride_ - padding_, ox * stride_ - padding_,
                   kernel_, dense_.weight_t.data(), dense_.out, sums);
        for (int64_t o = 0; o < dense_.out; ++o) sums[o] += dense_.bias[o];
        if (!out_scale_.empty())
          for (int64_t o = 0; o < dense_.out; ++o) sums[o] = sums[o] * out_scale_[o] + out_shift_[o];
      }
    });
  }

 private:
  DenseWeights dense_;
  int64_t kernel_ = 1, stride_ = 1, padding_ = 0, channels_ = 1;
  std::vector<float> out_scale_, out_shift_;
};

}  // namespace

std::unique_ptr<Op> make_conv2d(const OpReader& reader) { return std::make_unique<Conv2d>(reader); }

}  // namespace bnext
