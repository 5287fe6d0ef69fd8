// The binary conv on every kernel path this build and CPU run (with BNEXT_EMULATE_X86: every x86 path), against
// a naive float conv of the signs written here, independent of the kernels' bit layouts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "check.h"
#include "error.h"
#include "kernels/binary_conv.h"

namespace {

using bnext::BinaryConv;
using bnext::BinaryConvSpec;
using bnext::ConvScratch;
using bnext::KernelPath;

struct Case {
  int64_t channels, out_channels, kernel, stride, padding, h, w, n;
};

std::string describe(const Case& c) {
  std::ostringstream text;
  text << c.channels << "->" << c.out_channels << " k" << c.kernel << " s" << c.stride << " p" << c.padding << " "
       << c.n << "x" << c.h << "x" << c.w;
  return text.str();
}

// A layer's random inputs: sign bits (with garbage in the channels' padding bits, which the kernels must
// ignore), per-channel input shifts, and an input batch in which about 1 value in 16 is exactly -input_shift
// (x + shift == 0 counts as +1).
struct Layer {
  BinaryConvSpec spec;
  std::vector<uint8_t> bits;  // [out][taps][ceil(C/32) * 4]
  std::vector<float> input_shift, x;
};

Layer make_layer(const Case& c, std::mt19937_64& rng) {
  Layer layer;
  layer.spec.channels = c.channels;
  layer.spec.out_channels = c.out_channels;
  layer.spec.kernel_h = layer.spec.kernel_w = c.kernel;
  layer.spec.stride = c.stride;
  layer.spec.padding = c.padding;
  const int64_t tap_bytes = (c.channels + 31) / 32 * 4;
  layer.bits.resize(c.out_channels * c.kernel * c.kernel * tap_bytes);
  for (auto& byte : layer.bits) byte = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  layer.input_shift.resize(c.channels);
  for (auto& value : layer.input_shift) value = 0.5f * uniform(rng);
  layer.x.resize(c.n * c.h * c.w * c.channels);
  for (size_t i = 0; i < layer.x.size(); ++i)
    layer.x[i] = rng() % 16 == 0 ? -layer.input_shift[i % c.channels] : uniform(rng);
  return layer;
}

// The dots conv(sign(x + shift), sign(w)) with zero padding, sign(0) = +1: [n][oh][ow][out] integers.
std::vector<int64_t> reference_dots(const Case& c, const Layer& layer, int64_t oh, int64_t ow) {
  const int64_t tap_bytes = (c.channels + 31) / 32 * 4, taps = c.kernel * c.kernel;
  std::vector<int8_t> xs(layer.x.size());
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = layer.x[i] + layer.input_shift[i % c.channels] < 0.0f ? -1 : 1;
  std::vector<int8_t> ws(c.out_channels * taps * c.channels);  // [o][ky][kx][c]
  for (int64_t o = 0; o < c.out_channels; ++o)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t ch = 0; ch < c.channels; ++ch) {
        const uint8_t byte = layer.bits[(o * taps + t) * tap_bytes + ch / 8];
        ws[(o * taps + t) * c.channels + ch] = (byte >> (ch % 8) & 1) ? -1 : 1;
      }
  std::vector<int64_t> dots(c.n * oh * ow * c.out_channels, 0);
  for (int64_t b = 0; b < c.n; ++b)
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t x = 0; x < ow; ++x)
        for (int64_t o = 0; o < c.out_channels; ++o) {
          int64_t dot = 0;
          for (int64_t ky = 0; ky < c.kernel; ++ky)
            for (int64_t kx = 0; kx < c.kernel; ++kx) {
              const int64_t iy = y * c.stride - c.padding + ky, ix = x * c.stride - c.padding + kx;
              if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;  // zero padding
              const int8_t* in = &xs[((b * c.h + iy) * c.w + ix) * c.channels];
              const int8_t* wt = &ws[((o * c.kernel + ky) * c.kernel + kx) * c.channels];
              for (int64_t ch = 0; ch < c.channels; ++ch) dot += in[ch] * wt[ch];
            }
          dots[((b * oh + y) * ow + x) * c.out_channels + o] = dot;
        }
  return dots;
}

std::vector<Case> exact_cases() {
  std::vector<Case> cases = {
      {1, 1, 1, 1, 0, 1, 1, 1},
      {3, 7, 3, 1, 1, 5, 7, 1},
      {31, 32, 3, 2, 1, 9, 9, 3},
      {32, 33, 3, 1, 1, 9, 9, 1},
      {33, 70, 1, 1, 0, 5, 7, 3},
      {63, 7, 1, 2, 0, 9, 9, 1},
      {64, 32, 3, 1, 0, 5, 7, 3},
      {65, 33, 3, 2, 1, 5, 7, 1},
      {100, 70, 1, 1, 0, 9, 9, 1},
      {130, 1, 3, 1, 1, 5, 7, 1},
      {257, 33, 1, 1, 0, 5, 7, 3},
      {257, 7, 3, 2, 1, 5, 7, 1},
      {16, 33, 5, 1, 2, 9, 9, 1},
      {3, 32, 7, 2, 3, 9, 9, 1},
      {32, 7, 3, 1, 0, 3, 3, 1},
      {64, 33, 3, 1, 1, 1, 1, 3},
      {32, 70, 1, 2, 0, 9, 9, 1},
      {257, 1001, 3, 2, 1, 5, 5, 1},
      {200, 33, 1, 1, 0, 5, 7, 1},
      // Weights over kRowRunWeightBytes: not run by rows, A split into nibble planes per call on AVX2.
      {2100, 1001, 1, 1, 0, 2, 3, 1},
      // Maps of hundreds of output pixels: many runs of rows per thread and partial register blocks; the
      // 1x1 convs of kw = 1..4 words (compile-time k steps on the AVX-512 paths), last panels of exactly 16
      // channels (the AVX-512 half-panel blocks) and of 17..31, 3x3 convs of kw = 5, 14, 41 (k in blocks of
      // kByteSteps on the byte-count paths).
      {64, 48, 1, 1, 0, 13, 11, 2},
      {128, 80, 1, 1, 0, 17, 9, 1},
      {160, 16, 1, 1, 0, 11, 13, 1},
      {256, 57, 1, 1, 0, 9, 15, 1},
      {32, 48, 3, 1, 1, 19, 17, 1},
      {96, 64, 3, 2, 1, 23, 21, 1},
      {257, 40, 3, 1, 1, 9, 11, 1},
  };
  // Random shapes from the same lists (a fixed seed: the same cases every run).
  std::mt19937_64 rng(20240611);
  const int64_t channels[] = {1, 3, 31, 32, 33, 63, 64, 65, 100, 130, 257};
  const int64_t outs[] = {1, 7, 32, 33, 70};
  const int64_t sides[][2] = {{1, 1}, {5, 7}, {9, 9}};
  while (cases.size() < 60) {
    Case c;
    c.channels = channels[rng() % 11];
    c.out_channels = outs[rng() % 5];
    c.kernel = rng() % 2 ? 3 : 1;
    c.stride = 1 + static_cast<int64_t>(rng() % 2);
    c.padding = rng() % 2 ? c.kernel / 2 : 0;
    const auto& side = sides[rng() % 3];
    c.h = side[0];
    c.w = side[1];
    c.n = rng() % 2 ? 3 : 1;
    if (c.h + 2 * c.padding < c.kernel || c.w + 2 * c.padding < c.kernel) continue;
    cases.push_back(c);
  }
  return cases;
}

int64_t out_side(const Case& c, int64_t in) { return (in + 2 * c.padding - c.kernel) / c.stride + 1; }

// Runs the layer with threads = 1, 2 and 3 (bit-identical outputs) into outputs prefilled with NaN (every output
// written); returns the 1-thread output.
std::vector<float> run_both(const BinaryConv& conv, const Case& c, const Layer& layer, ConvScratch& scratch,
                            const std::string& where) {
  const size_t size = c.n * out_side(c, c.h) * out_side(c, c.w) * c.out_channels;
  std::vector<float> one(size, std::numeric_limits<float>::quiet_NaN()), two(one), three(one);
  conv.run(layer.x.data(), c.n, c.h, c.w, one.data(), scratch, 1);
  conv.run(layer.x.data(), c.n, c.h, c.w, two.data(), scratch, 2);
  conv.run(layer.x.data(), c.n, c.h, c.w, three.data(), scratch, 3);
  CHECK_MSG(std::memcmp(one.data(), two.data(), size * sizeof(float)) == 0, where << ": 1 and 2 threads differ");
  CHECK_MSG(std::memcmp(one.data(), three.data(), size * sizeof(float)) == 0, where << ": 1 and 3 threads differ");
  return one;
}

TEST(kernel_paths_names) {
  const std::vector<KernelPath> paths = bnext::supported_kernel_paths();
  CHECK(!paths.empty() && paths.front() == KernelPath::kPortable);
  CHECK(bnext::best_kernel_path() == paths.back());
  for (KernelPath path : paths) CHECK(bnext::kernel_path_from_name(bnext::kernel_path_name(path)) == path);
  CHECK(std::string(bnext::kernel_path_name(KernelPath::kAvx512Bw)) == "avx512bw");
  CHECK(std::string(bnext::kernel_path_name(KernelPath::kNeon)) == "neon");
  CHECK_THROWS(bnext::kernel_path_from_name("avx1024"), "unknown kernel path \"avx1024\"");
  CHECK_THROWS(bnext::kernel_path_from_name("avx1024"), "portable");
#if defined(BNEXT_HAVE_X86) && !defined(BNEXT_HAVE_NEON)
  CHECK_THROWS(bnext::kernel_path_from_name("neon"), "cannot run");
#endif
#ifdef BNEXT_EMULATE_X86
  CHECK(paths.size() == 4);  // every x86 path, emulated
#endif
}

// scale 1, shift 0, no PReLU: the outputs are the dots, small integers, exactly.
TEST(kernel_binary_conv_exact) {
  ConvScratch scratch;  // one scratch for every layer, path and shape: buffers reused across shapes
  std::mt19937_64 rng(7);
  for (const Case& c : exact_cases()) {
    const Layer layer = make_layer(c, rng);
    const int64_t oh = out_side(c, c.h), ow = out_side(c, c.w);
    const std::vector<int64_t> dots = reference_dots(c, layer, oh, ow);
    const std::vector<float> scale(c.out_channels, 1.0f), shift(c.out_channels, 0.0f);
    for (KernelPath path : bnext::supported_kernel_paths()) {
      const std::string where = std::string(bnext::kernel_path_name(path)) + " " + describe(c);
      const BinaryConv conv(layer.spec, layer.bits.data(), layer.input_shift.data(), scale.data(), shift.data(),
                            nullptr, path);
      CHECK(conv.out_height(c.h) == oh && conv.out_width(c.w) == ow);
      const std::vector<float> out = run_both(conv, c, layer, scratch, where);
      int64_t wrong = 0, first = -1;
      for (size_t i = 0; i < out.size(); ++i)
        if (!(out[i] == static_cast<float>(dots[i])) && wrong++ == 0) first = static_cast<int64_t>(i);
      CHECK_MSG(wrong == 0, where << ": " << wrong << " of " << out.size() << " outputs wrong, first at " << first
                                  << ": " << out[first] << " instead of " << dots[first]);
    }
  }
}

// Random scale, shift and PReLU slope: y = PReLU(scale * dot + shift) within 1e-5 of the outputs' magnitude.
TEST(kernel_binary_conv_epilogue) {
  ConvScratch scratch;
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const Case cases[] = {{33, 70, 1, 1, 0, 5, 7, 3},
                        {64, 33, 3, 1, 1, 5, 7, 1},
                        {257, 7, 3, 2, 1, 9, 9, 1},
                        {3, 32, 7, 2, 3, 9, 9, 1},
                        {2100, 1001, 1, 1, 0, 2, 3, 1}};
  for (const Case& c : cases) {
    const Layer layer = make_layer(c, rng);
    const int64_t oh = out_side(c, c.h), ow = out_side(c, c.w);
    const std::vector<int64_t> dots = reference_dots(c, layer, oh, ow);
    std::vector<float> scale(c.out_channels), shift(c.out_channels), slope(c.out_channels);
    for (int64_t o = 0; o < c.out_channels; ++o) {
      scale[o] = 0.05f * uniform(rng);
      shift[o] = 2.0f * uniform(rng);
      slope[o] = o % 5 == 0 ? 1.0f : uniform(rng);
    }
    for (KernelPath path : bnext::supported_kernel_paths()) {
      const std::string where = std::string(bnext::kernel_path_name(path)) + " " + describe(c);
      const BinaryConv conv(layer.spec, layer.bits.data(), layer.input_shift.data(), scale.data(), shift.data(),
                            slope.data(), path);
      const std::vector<float> out = run_both(conv, c, layer, scratch, where);
      int64_t wrong = 0;
      for (size_t i = 0; i < out.size(); ++i) {
        const int64_t o = static_cast<int64_t>(i) % c.out_channels;
        const double product = static_cast<double>(scale[o]) * static_cast<double>(dots[i]);
        double y = product + shift[o];
        if (!(y > 0.0)) y *= slope[o];
        const double magnitude = (std::fabs(product) + std::fabs(shift[o])) * std::max(1.0f, std::fabs(slope[o]));
        const double tolerance = 1e-5 * magnitude;
        if (!(std::fabs(out[i] - y) <= tolerance) && wrong++ == 0)
          CHECK_MSG(false, where << ": output " << i << " is " << out[i] << " instead of " << y);
      }
      CHECK_MSG(wrong == 0, where << ": " << wrong << " outputs off");
    }
  }
}

// A slope of all 1 is no PReLU: the same outputs as without a slope.
TEST(kernel_binary_conv_unit_slope) {
  ConvScratch scratch;
  std::mt19937_64 rng(5);
  const Case c{65, 33, 3, 1, 1, 5, 7, 1};
  const Layer layer = make_layer(c, rng);
  std::vector<float> scale(c.out_channels), shift(c.out_channels), ones(c.out_channels, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (int64_t o = 0; o < c.out_channels; ++o) scale[o] = uniform(rng), shift[o] = uniform(rng);
  for (KernelPath path : bnext::supported_kernel_paths()) {
    const std::string where = bnext::kernel_path_name(path);
    const BinaryConv plain(layer.spec, layer.bits.data(), layer.input_shift.data(), scale.data(), shift.data(), nullptr,
                           path);
    const BinaryConv unit(layer.spec, layer.bits.data(), layer.input_shift.data(), scale.data(), shift.data(),
                          ones.data(), path);
    CHECK_MSG(run_both(plain, c, layer, scratch, where) == run_both(unit, c, layer, scratch, where), where);
  }
}

TEST(kernel_binary_conv_empty_batch) {
  ConvScratch scratch;
  std::mt19937_64 rng(3);
  for (const Case& c : {Case{32, 33, 3, 1, 1, 5, 7, 0}, Case{64, 70, 1, 1, 0, 5, 7, 0}}) {
    const Layer layer = make_layer(c, rng);
    const std::vector<float> scale(c.out_channels, 1.0f), shift(c.out_channels, 0.0f);
    for (KernelPath path : bnext::supported_kernel_paths()) {
      const BinaryConv conv(layer.spec, layer.bits.data(), layer.input_shift.data(), scale.data(), shift.data(),
                            nullptr, path);
      std::vector<float> out(16, -7.0f);
      conv.run(nullptr, 0, c.h, c.w, out.data(), scratch, 2);
      conv.run(layer.x.data(), 0, c.h, c.w, out.data(), scratch, 1);
      CHECK_MSG(out == std::vector<float>(16, -7.0f), bnext::kernel_path_name(path) << ": an empty batch wrote");
    }
  }
}

TEST(kernel_binary_conv_errors) {
  const std::vector<uint8_t> bits(64 * 9 * 4, 0);
  const std::vector<float> ones(64, 1.0f);
  const KernelPath path = bnext::best_kernel_path();
  auto make = [&](int64_t channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t padding) {
    BinaryConvSpec spec;
    spec.channels = channels;
    spec.out_channels = out_channels;
    spec.kernel_h = spec.kernel_w = kernel;
    spec.stride = stride;
    spec.padding = padding;
    return BinaryConv(spec, bits.data(), ones.data(), ones.data(), ones.data(), nullptr, path);
  };
  CHECK_THROWS(make(32, 32, 3, 0, 1), "stride 0 is outside 1..8");
  CHECK_THROWS(make(32, 32, 3, 9, 1), "stride 9");
  CHECK_THROWS(make(32, 32, 3, 1, 3), "padding 3 must be at least 0 and below the kernel size");
  CHECK_THROWS(make(32, 32, 1, 1, 1), "padding 1");
  CHECK_THROWS(make(32, 32, 3, 1, -1), "padding -1");
  CHECK_THROWS(make(0, 32, 3, 1, 1), "channels must be in 1..");
  CHECK_THROWS(make(32, 0, 3, 1, 1), "output channels must be in 1..");
  CHECK_THROWS(make(32, 32, 0, 1, 0), "kernel size");
  CHECK_THROWS(make(32, 32, 16, 1, 0), "kernel size");
  CHECK_THROWS(make(1 << 24, 32, 7, 1, 0), "channels x kernel taps");
  CHECK_THROWS(BinaryConv(BinaryConvSpec{32, 32, 3, 3, 1, 1}, bits.data(), ones.data(), ones.data(), ones.data(),
                          nullptr, static_cast<KernelPath>(99)),
               "cannot run");

  const BinaryConv conv = make(32, 32, 3, 2, 0);
  CHECK(conv.out_height(3) == 1 && conv.out_width(8) == 3);
  CHECK_THROWS(conv.out_height(2), "input height 2 is smaller than the kernel (3 with padding 0)");
  CHECK_THROWS(conv.out_width(0), "input width 0 is outside");
  ConvScratch scratch;
  std::vector<float> x(2 * 5 * 32, 0.0f), out(64, -7.0f);
  CHECK_THROWS(conv.run(x.data(), 1, 2, 5, out.data(), scratch, 1), "smaller than the kernel");
  CHECK_THROWS(conv.run(x.data(), 0, 2, 5, out.data(), scratch, 1), "smaller than the kernel");
  CHECK_THROWS(conv.run(x.data(), 1, 5, 2, out.data(), scratch, 1), "input width 2 is smaller");
  CHECK_THROWS(conv.run(x.data(), 1, 3, 3, out.data(), scratch, 0), "threads must be at least 1");
  CHECK_THROWS(conv.run(x.data(), -1, 3, 3, out.data(), scratch, 1), "negative batch size");
  CHECK(out == std::vector<float>(64, -7.0f));
}

}  // namespace
