// The portable path: plain C++ on every CPU (the reference the vector paths match, and the fallback).
#include <algorithm>
#include <cstdint>

#include "kernels/kernels.h"

namespace bnext::kernels {
namespace {

void pack_pixels_portable(const float* x, const float* bias, int64_t channels, int64_t pixels, uint64_t* words) {
  const int64_t word_count = (channels + 63) / 64;
  for (int64_t p = 0; p < pixels; ++p, x += channels, words += word_count) {
    for (int64_t w = 0; w * 64 < channels; ++w) {
      uint64_t bits = 0;
      const int64_t end = std::min<int64_t>(64, channels - w * 64);
      for (int64_t i = 0; i < end; ++i) bits |= static_cast<uint64_t>(x[w * 64 + i] + bias[w * 64 + i] < 0.0f) << i;
      words[w] = bits;
    }
  }
}

// One row at a time: the 32 counts of the panel, then finish_one per real channel.
void tile_portable(const Gemm& g, int64_t panel, int64_t m_begin, int64_t m_end, const uint64_t* rows) {
  const uint64_t* b = g.b + panel * g.kw * kPanel;
  const int64_t o_end = std::min(kPanel, g.out_channels - panel * kPanel);
  for (int64_t m = m_begin; m < m_end; ++m) {
    const uint64_t* a = rows + (m - m_begin) * g.kw;
    int64_t count[kPanel] = {0};
    for (int64_t k = 0; k < g.kw; ++k) {
      const uint64_t av = a[k];
      for (int64_t j = 0; j < kPanel; ++j) count[j] += __builtin_popcountll(av ^ b[k * kPanel + j]);
    }
    for (int64_t j = 0; j < o_end; ++j) {
      const int64_t o = panel * kPanel + j;
      g.out[m * g.out_channels + o] = finish_one(g, m, o, count[j]);
    }
  }
}

}  // namespace

const PathKernels& portable_kernels() {
  static const PathKernels kernels{pack_pixels_portable,    tile_portable,          /*tile_rows=*/1,
                                   /*nibble_planes=*/false, /*runs_by_rows=*/false, /*layout_weights=*/nullptr};
  return kernels;
}

}  // namespace bnext::kernels
