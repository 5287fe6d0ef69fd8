// The binary conv at the extremes of its counts, on every kernel path: all signs mismatched (dot = -K) and all
// matched (dot = +K), with K at the boundaries where the kernels' narrow counters would overflow (byte counts
// summed over up to 31 k steps, the NEON reduction's pairwise byte adds up to kw = 3 and 7, 16-bit lanes).
// Random signs (test_kernels.cpp) stay far from those bounds.
#include <cstdint>
#include <string>
#include <vector>

#include "check.h"
#include "kernels/binary_conv.h"

namespace {

using bnext::BinaryConv;
using bnext::BinaryConvSpec;
using bnext::KernelPath;

// 1x1 (or k x k without padding) conv of an input of one sign against weights of one sign: every output is
// +-C k^2.
void check_uniform(int64_t channels, int64_t kernel, bool mismatched) {
  BinaryConvSpec spec;
  spec.channels = channels;
  spec.out_channels = 40;  // a whole panel and a part of another
  spec.kernel_h = spec.kernel_w = kernel;
  const int64_t taps = kernel * kernel, row_bytes = (channels + 31) / 32 * 4;
  // Weights +1 (bits 0) everywhere; the padding bits of each tap set too (the driver must clear them).
  std::vector<uint8_t> bits(spec.out_channels * taps * row_bytes, 0);
  for (int64_t o = 0; o < spec.out_channels; ++o)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t c = channels; c < row_bytes * 8; ++c) bits[(o * taps + t) * row_bytes + c / 8] |= 1u << (c % 8);
  const std::vector<float> shift(channels, 0.0f), scale(spec.out_channels, 1.0f), zero(spec.out_channels, 0.0f);
  const int64_t side = kernel + 5;  // 6 x 6 output pixels: a whole register tile of rows and a part of one
  const std::vector<float> x(side * side * channels, mismatched ? -1.0f : 1.0f);
  const float expected = static_cast<float>((mismatched ? -1 : 1) * channels * taps);
  for (KernelPath path : bnext::supported_kernel_paths()) {
    const BinaryConv conv(spec, bits.data(), shift.data(), scale.data(), zero.data(), nullptr, path);
    const int64_t out_side = conv.out_height(side);
    std::vector<float> out(out_side * out_side * spec.out_channels, 0.0f);
    bnext::ConvScratch scratch;
    conv.run(x.data(), 1, side, side, out.data(), scratch, 1);
    int64_t wrong = 0;
    for (float value : out) wrong += !(value == expected);
    CHECK_MSG(wrong == 0, bnext::kernel_path_name(path)
                              << " " << kernel << "x" << kernel << " " << channels << " channels, "
                              << (mismatched ? "all mismatched" : "all matched") << ": " << wrong
                              << " outputs differ from " << expected);
  }
}

TEST(kernel_binary_conv_extreme_counts) {
  // kw (64-bit words per row) 1, 2, 3, 4, 7, 8, 31, 32, 62, 63, 64 for 1x1; 3x3 rows of 9 and 32 words.
  for (int64_t channels : {64, 128, 190, 192, 256, 448, 512, 1984, 2048, 3968, 4032, 4096})
    for (bool mismatched : {true, false}) check_uniform(channels, 1, mismatched);
  for (int64_t channels : {64, 224})
    for (bool mismatched : {true, false}) check_uniform(channels, 3, mismatched);
}

}  // namespace
