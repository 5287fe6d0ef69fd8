// conv2d: a float convolution (the stem, the fp downsample shortcuts), fp32 or PTQ weights, with an
// optional per-channel output affine map (a BatchNorm kept apart from quantized weights).
#include <algorithm>
#include <vector>

#include "ops/dense.h"
#include "ops/ops.h"
#include "ops/vectorize.h"
#include "parallel.h"

namespace bnext {
namespace {

using vec::load8;
using vec::splat8;
using vec::store8;
using vec::V8;

// What conv_pixels reads and writes (x: one sample, NHWC; weight_t: [(ky, kx, c)][out]).
struct ConvArgs {
  const float *x, *weight_t, *bias, *out_scale, *out_shift;  // out_scale / out_shift: nullptr when absent
  float* out;
  int64_t h, w, channels, kernel, stride, padding, out_w, out_channels, out_stride;
};

// Channels [o, o + 8 V) of P output pixels side by side in one row (out: the first one's channels at o, the next
// pixel's `out_stride` further): V x P vectors of sums in registers. For each tap inside the image (zero padding:
// the others add nothing), each input channel, sum += w * x, in the order the scalar loop of the previous
// version took (taps, then channels), so that the floats are the same. kInside: every tap of the P pixels is
// inside the image (no checks). With P = 2 the sums of two pixels are independent chains of adds (one pixel's
// chain of 27 dependent adds, the 3x3 stem on 3 channels, left the FP adders waiting): bnext_tiny's stem
// 0.93 -> 0.78 ms (interleaved A/B in one process, 224 px, 1 thread, AVX2 EPYC, medians of 3 runs).
template <int V, int P, bool kInside>
BNEXT_VEC_INLINE void conv_block(const ConvArgs& a, int64_t top, int64_t left, int64_t o, float* out) {
  V8 acc[P][V];
  for (int q = 0; q < P; ++q)
    for (int v = 0; v < V; ++v) acc[q][v] = splat8(0.0f);
  const int64_t c = a.channels, n = a.out_channels;
  for (int64_t ky = 0; ky < a.kernel; ++ky) {
    const int64_t iy = top + ky;
    if (!kInside && (iy < 0 || iy >= a.h)) continue;
    for (int64_t kx = 0; kx < a.kernel; ++kx) {
      const int64_t ix = left + kx;
      if (!kInside && (ix < 0 || ix >= a.w)) continue;
      const float* pixel = a.x + (iy * a.w + ix) * c;
      const float* rows = a.weight_t + (ky * a.kernel + kx) * c * n + o;
      for (int64_t ci = 0; ci < c; ++ci) {
        const float* row = rows + ci * n;
#pragma GCC unroll 2
        for (int q = 0; q < P; ++q) {
          const float value = pixel[q * a.stride * c + ci];
#pragma GCC unroll 8
          for (int v = 0; v < V; ++v) acc[q][v] += load8(row + 8 * v) * value;
        }
      }
    }
  }
#pragma GCC unroll 2
  for (int q = 0; q < P; ++q)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) {
      V8 y = acc[q][v] + load8(a.bias + o + 8 * v);
      if (a.out_scale != nullptr) y = y * load8(a.out_scale + o + 8 * v) + load8(a.out_shift + o + 8 * v);
      store8(out + q * a.out_stride + 8 * v, y);
    }
}

// conv_block for the pixels p and, when P = 2 and it is in the same row, p + 1 (pairs only where both pixels'
// windows are inside the image); returns how many pixels it did.
template <int V>
BNEXT_VEC_INLINE int64_t conv_vectors(const ConvArgs& a, int64_t p, int64_t p_end, int64_t o, float* out) {
  const int64_t oy = p / a.out_w, ox = p % a.out_w;
  const int64_t top = oy * a.stride - a.padding, left = ox * a.stride - a.padding;
  const bool rows_inside = top >= 0 && top + a.kernel <= a.h;
  constexpr bool kPairs = V <= 4;  // 2 x V vectors of sums and V of weights fit the 16 AVX2 registers
  if (kPairs && rows_inside && p + 1 < p_end && ox + 1 < a.out_w && left >= 0 && left + a.stride + a.kernel <= a.w) {
    conv_block<V, kPairs ? 2 : 1, true>(a, top, left, o, out);
    return kPairs ? 2 : 1;
  }
  if (rows_inside && left >= 0 && left + a.kernel <= a.w) {
    conv_block<V, 1, true>(a, top, left, o, out);
  } else {
    conv_block<V, 1, false>(a, top, left, o, out);
  }
  return 1;
}

// The last out_channels % 8 channels of one output pixel, one by one (same order of operations).
BNEXT_VEC_INLINE void conv_tail(const ConvArgs& a, int64_t top, int64_t left, int64_t o, float* out) {
  for (; o < a.out_channels; ++o) {
    float sum = 0.0f;
    for (int64_t ky = 0; ky < a.kernel; ++ky) {
      const int64_t iy = top + ky;
      if (iy < 0 || iy >= a.h) continue;
      for (int64_t kx = 0; kx < a.kernel; ++kx) {
        const int64_t ix = left + kx;
        if (ix < 0 || ix >= a.w) continue;
        const float* pixel = a.x + (iy * a.w + ix) * a.channels;
        const float* rows = a.weight_t + (ky * a.kernel + kx) * a.channels * a.out_channels + o;
        for (int64_t ci = 0; ci < a.channels; ++ci) sum += rows[ci * a.out_channels] * pixel[ci];
      }
    }
    float y = sum + a.bias[o];
    if (a.out_scale != nullptr) y = y * a.out_scale[o] + a.out_shift[o];
    out[o] = y;
  }
}

// Output pixels [p0, p1) of one sample: each pixel's channels in blocks of up to 64 (8 vectors of sums in
// registers), instead of the previous version's loop that added each tap into the output row in memory (a load
// and a store per tap and vector, each waiting for the last): bnext_tiny's stem (3 -> 32 channels, 3x3, stride 2,
// 224 px) 1.96 -> 0.67 ms with the pairs above, the same floats (interleaved A/B in one process, 1 thread, AVX2
// EPYC with other work on its 2 cores, medians of 5 runs).
template <int V>
BNEXT_VEC_INLINE void conv_range(const ConvArgs& a, int64_t p0, int64_t p1, int64_t o) {
  for (int64_t p = p0; p < p1;) p += conv_vectors<V>(a, p, p1, o, a.out + p * a.out_stride + o);
}

BNEXT_CLONES void conv_pixels(const ConvArgs& a, int64_t p0, int64_t p1) {
  int64_t o = 0;
  for (; o + 64 <= a.out_channels; o += 64) conv_range<8>(a, p0, p1, o);
  switch ((a.out_channels - o) / 8) {
    case 7: conv_range<7>(a, p0, p1, o); break;
    case 6: conv_range<6>(a, p0, p1, o); break;
    case 5: conv_range<5>(a, p0, p1, o); break;
    case 4: conv_range<4>(a, p0, p1, o); break;
    case 3: conv_range<3>(a, p0, p1, o); break;
    case 2: conv_range<2>(a, p0, p1, o); break;
    case 1: conv_range<1>(a, p0, p1, o); break;
    default: break;
  }
  if (a.out_channels % 8 != 0)
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t top = p / a.out_w * a.stride - a.padding, left = p % a.out_w * a.stride - a.padding;
      conv_tail(a, top, left, a.out_channels / 8 * 8, a.out + p * a.out_stride);
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
    require(in[0].c == channels_,
            "conv2d expects " + std::to_string(channels_) + " input channels, got " + std::to_string(in[0].c));
    const int64_t oh = (in[0].h + 2 * padding_ - kernel_) / stride_ + 1,
                  ow = (in[0].w + 2 * padding_ - kernel_) / stride_ + 1;
    require(in[0].h + 2 * padding_ >= kernel_ && in[0].w + 2 * padding_ >= kernel_,
            "the input is smaller than a " + std::to_string(kernel_) + "x" + std::to_string(kernel_) + " conv");
    return {in[0].n, oh, ow, dense_.out};
  }

  void run(const std::vector<View>& in, const View& out, RunContext& context) const override {
    const Shape& s = in[0].shape;
    const int64_t out_pixels = out.shape.h * out.shape.w;
    const float* x = in[0].data;
    if (dense_.quant.bits != 0) {  // the calibrated fake quantization of the input, once per value
      quantized_input_.resize(s.numel());
      parallel_for(0, s.numel(), 4096, context.threads, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) quantized_input_[i] = dense_.quant.apply(x[i]);
      });
      x = quantized_input_.data();
    }
    ConvArgs args{nullptr,
                  dense_.weight_t.data(),
                  dense_.bias.data(),
                  out_scale_.empty() ? nullptr : out_scale_.data(),
                  out_shift_.empty() ? nullptr : out_shift_.data(),
                  nullptr,
                  s.h,
                  s.w,
                  s.c,
                  kernel_,
                  stride_,
                  padding_,
                  out.shape.w,
                  dense_.out,
                  out.pixel_stride};
    parallel_for(0, out.shape.pixels(), 16, context.threads, [&](int64_t begin, int64_t end) {
      ConvArgs part = args;
      for (int64_t p = begin; p < end;) {  // one sample at a time
        const int64_t sample = p / out_pixels, stop = std::min(end, (sample + 1) * out_pixels);
        part.x = x + sample * s.h * s.w * s.c;
        part.out = out.data + sample * out_pixels * out.pixel_stride;
        conv_pixels(part, p - sample * out_pixels, stop - sample * out_pixels);
        p = stop;
      }
    });
  }

 private:
  DenseWeights dense_;
  int64_t kernel_ = 1, stride_ = 1, padding_ = 0, channels_ = 1;
  std::vector<float> out_scale_, out_shift_;
  mutable std::vector<float> quantized_input_;  // reused across calls (a model runs on one thread at a time)
};

}  // namespace

std::unique_ptr<Op> make_conv2d(const OpReader& reader) { return std::make_unique<Conv2d>(reader); }

}  // namespace bnext
