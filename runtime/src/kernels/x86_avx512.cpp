// The two AVX-512 paths: "avx512" (VPOPCNTDQ: 6x32 tiles in 24 zmm accumulators, popcount per 64-bit lane) and
// "avx512bw" for AVX-512 CPUs without VPOPCNTDQ (Skylake-X, Cascade Lake: 4x32 tiles, nibble-table popcount).
// Both read the weight panels as they are ([panels][kw][kPanel] words) and share the AVX2 epilogue.
#include <algorithm>
#include <cstdint>

#include "kernels/x86_common.h"

namespace bnext::kernels::x86 {
namespace {

constexpr int64_t kRowsAvx512 = 6;
constexpr int64_t kRowsAvx512Bw = 4;  // 16 byte accumulators, near the 32 zmm registers (see tile_avx512)

#define BNEXT_AVX512BW BNEXT_TARGET("avx2,fma,avx512f,avx512dq,avx512vl,avx512bw")

// ---------------------------------------------------------------- packing
// 16 channels per compare; the tail of a pixel that is not a multiple of 16 channels is done one by one.
BNEXT_AVX512BW void pack_pixels_avx512(const float* x, const float* bias, int64_t channels, int64_t pixels,
                                       uint64_t* words) {
  const int64_t word_count = (channels + 63) / 64;
  for (int64_t p = 0; p < pixels; ++p, x += channels, words += word_count) {
    for (int64_t w = 0; w * 64 < channels; ++w) {
      uint64_t bits = 0;
      for (int q = 0; q < 4; ++q) {
        const int64_t c = w * 64 + q * 16;
        if (c + 16 <= channels) {
          const __m512 v = _mm512_add_ps(_mm512_loadu_ps(x + c), _mm512_loadu_ps(bias + c));
          bits |= static_cast<uint64_t>(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ)) << (16 * q);
        } else {
          for (int64_t i = c; i < channels; ++i) bits |= static_cast<uint64_t>(x[i] + bias[i] < 0.0f) << (i - w * 64);
          break;
        }
      }
      words[w] = bits;
    }
  }
}

// ---------------------------------------------------------------- GEMM
// One tile body for both AVX-512 paths: with VPOPCNTDQ each 64-bit lane is counted directly;
// without it (kVpopcnt false: Skylake-X, Cascade Lake) bytes are counted with the AVX2 path's
// nibble table on 64-byte vectors and summed per 64-bit lane by vpsadbw every kByteSteps k
// steps. The epilogue narrows the 64-bit lane counts and shares finish_avx2, so every x86 path
// computes the same floats. The target below names VPOPCNTDQ for both instantiations (one body
// needs one attribute); only the kVpopcnt one contains a popcount instruction, as the
// `if constexpr` keeps the other free of it (objdump of the build: no vpopcntq in
// tile_avx512<false>). kRowsAvx512Bw = 4 rows: GCC 12 keeps 13 of the 16 byte accumulators in
// registers and spills 3 in the k loop; 6 rows would spill most of them.
BNEXT_AVX512BW inline __m512i nibble_counts_512(__m512i x, __m512i table, __m512i low) {
  const __m512i lo = _mm512_shuffle_epi8(table, _mm512_and_si512(x, low));
  const __m512i hi = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(x, 4), low));
  return _mm512_add_epi8(lo, hi);  // popcount of each byte
}

// GCC 12's AVX-512 headers seed _mm512_broadcast_i32x4 and _mm512_cvtepi64_epi32 with a self-initialized
// "undefined" vector, which -Wall reports once they are inlined here (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// The tile reads all R rows from `a` (the driver pads A with zero rows past the end: see TileFn) and
// writes those before m_end.
template <bool kVpopcnt>
BNEXT_TARGET("avx2,fma,avx512f,avx512dq,avx512vl,avx512bw,avx512vpopcntdq")
void tile_avx512(const Gemm& g, int64_t panel, int64_t m_begin, int64_t m_end, const uint64_t* a) {
  constexpr int R = kVpopcnt ? kRowsAvx512 : kRowsAvx512Bw;
  const uint64_t* b = g.b + panel * g.kw * kPanel;
  const int64_t kw = g.kw;
  const __m512i zero = _mm512_setzero_si512();
  const __m512i table = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4));
  const __m512i low = _mm512_set1_epi8(0x0f);
  __m512i total[R][4];  // 64-bit counts, 8 channels each
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) total[r][j] = zero;
  // k steps per pass: all of K for 64-bit lane counts; 31 for byte counts (at most 8 per step, 255 per byte).
  const int64_t steps = kVpopcnt ? kw : kByteSteps;
  for (int64_t k0 = 0; k0 < kw; k0 += steps) {
    const int64_t k_end = std::min(kw, k0 + steps);
    __m512i acc[R][4];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc[r][j] = zero;
    for (int64_t k = k0; k < k_end; ++k) {
      const uint64_t* bk = b + k * kPanel;
      const __m512i bv[4] = {_mm512_loadu_si512(bk), _mm512_loadu_si512(bk + 8), _mm512_loadu_si512(bk + 16),
                             _mm512_loadu_si512(bk + 24)};
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        const __m512i av = _mm512_set1_epi64(static_cast<long long>(a[r * kw + k]));
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          const __m512i mismatches = _mm512_xor_si512(av, bv[j]);
          if constexpr (kVpopcnt) {
            acc[r][j] = _mm512_add_epi64(acc[r][j], _mm512_popcnt_epi64(mismatches));
          } else {
            acc[r][j] = _mm512_add_epi8(acc[r][j], nibble_counts_512(mismatches, table, low));
          }
        }
      }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        if constexpr (kVpopcnt) {
          total[r][j] = acc[r][j];  // one pass covers all of K
        } else {
          total[r][j] = _mm512_add_epi64(total[r][j], _mm512_sad_epu8(acc[r][j], zero));
        }
      }
  }
  for (int r = 0; r < R; ++r) {
    const int64_t m = m_begin + r;
    if (m >= m_end) break;
    for (int j = 0; j < 4; ++j) {
      const int64_t o = panel * kPanel + 8 * j;
      if (o >= g.out_channels) break;
      const __m256i counts = _mm512_cvtepi64_epi32(total[r][j]);
      if (g.slope != nullptr) {
        finish_avx2<true>(g, m, o, counts, load_affine(g, o));
      } else {
        finish_avx2<false>(g, m, o, counts, load_affine(g, o));
      }
    }
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace
}  // namespace bnext::kernels::x86

namespace bnext::kernels {

const PathKernels& avx512_kernels() {
  static const PathKernels kernels{x86::pack_pixels_avx512, x86::tile_avx512<true>, x86::kRowsAvx512,
                                   /*nibble_planes=*/false, /*runs_by_rows=*/false, /*layout_weights=*/nullptr};
  return kernels;
}

const PathKernels& avx512bw_kernels() {
  static const PathKernels kernels{x86::pack_pixels_avx512, x86::tile_avx512<false>, x86::kRowsAvx512Bw,
                                   /*nibble_planes=*/false, /*runs_by_rows=*/false, /*layout_weights=*/nullptr};
  return kernels;
}

}  // namespace bnext::kernels
