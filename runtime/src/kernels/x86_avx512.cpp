// The two AVX-512 paths: "avx512" (VPOPCNTDQ: popcount per 64-bit lane) and "avx512bw" for AVX-512 CPUs without
// VPOPCNTDQ (Skylake-X, Cascade Lake: nibble-table popcount on nibble planes, as the AVX2 path). Both run the
// conv by runs of output pixels (PathKernels::runs_by_rows: each run's A rows made in L1 and counted against
// every weight panel in turn), count register blocks of rows x output channels with the counts kept wide until
// the epilogue (64-bit lanes; byte counts widened by vpsadbw every kByteSteps k steps on avx512bw), and finish
// 16 channels per vector (finish_avx512, x86_common.h).
//
// The tile of one call: a run of up to kRunAvx512 rows against one 32-channel weight panel, as register blocks
// of R rows x J vectors of 8 channels: J = 4, the whole panel, or J = 2, a last panel of at most 16 real
// channels (bnext_small's 48 and 96), so that no work is spent on channels that do not exist (kBlockRows).
//   avx512:   per k step the J weight vectors are loaded once and one word of each row broadcast; per vector
//             xor, vpopcntq, add: 3 instructions per 512 bit-products (the previous 6 x 32 tile's inner loop).
//   avx512bw: 2 xor (the weights' loads folded in), 2 vpshufb, 2 add per vector on nibble planes (the previous
//             tile split the nibbles per vector: and, shift, and more per vector).
// The previous kernel ran 6 x 32 tiles panel by panel over the whole image (A as one im2col buffer), stored its
// counts and finished them 8 channels at a time with the per-channel vectors reloaded per tile and row.
//
// No AVX-512 CPU was at hand when this was written: it is tested exactly under emulation (runtime_tests, the
// BNEXT_EMULATE_X86 build), and its speed is an ESTIMATE, not a measurement (benchmarks/avx512_estimate.py:
// llvm-mca 19 on this file's code regions, calibrated per shape against the previous kernel measured on a Zen 4
// EPYC; results/avx512_estimate.json). The inner loop is the previous one (1.73 vs 1.75 cycles per vector and
// row on llvm-mca's znver4 model): what the estimate credits is the epilogue (old: 24 8-channel finishes per
// tile with their per-channel vectors reloaded; new: 12 16-lane ones per block) and the set-up per tile. The
// estimated bnext_tiny binary convs at 1 thread: 8.6 to 9.3 ms (measured before: 10.4; OpenVINO 7.6), bnext <=
// OpenVINO on 9 to 15 of the 43 shapes of bnext_tiny, bnext18 and bnext_small at 1 thread (before: 1), 33 to 41
// at 2 (before: 28), the range over three readings of the calibration. None of the choices here rests on an
// AVX-512 measurement.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/x86_common.h"

namespace bnext::kernels::x86 {
namespace {

// Rows per tile call: a multiple of every register block's rows (kBlockRows: 6, 12, 4, 8), so that a call's
// blocks never read past the kRunAvx512 rows the driver makes readable. 24 rows of A take 10 KiB at kw = 54,
// the largest kw run by rows at 256 KiB of weights (3x3 convs of 384 channels); 20 KiB as nibble planes.
constexpr int64_t kRunAvx512 = 24;

#define BNEXT_AVX512_VPOPCNT BNEXT_TARGET("avx2,fma,avx512f,avx512dq,avx512vl,avx512bw,avx512vpopcntdq")

// ---------------------------------------------------------------- packing
// 16 channels per compare; the tail of a pixel that is not a multiple of 16 channels is done one by one.
BNEXT_AVX512BW void pack_pixels_avx512(const float* x, const float* bias, int64_t channels, int64_t pixels,
                                       uint64_t* words) {
  const int64_t word_count = (channels + 63) / 64;
  for (int64_t p = 0; p < pixels; ++p, x += channels, words += word_count) {
    BNEXT_MCA_BEGIN("pack_pixel");
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
    BNEXT_MCA_END("pack_pixel");
  }
}

// ---------------------------------------------------------------- weights
// Both paths store each 16 channels of a panel in the order of kStoredChannel16: the 64-bit lane counts of
// the two vectors, channels (0 1 4 5 8 9 12 13) and (2 3 6 7 10 11 14 15), then narrow to 16 int32 in channel
// order with one in-lane vshufps (narrow_counts_512), as the AVX2 path's kStoredChannel does for 8: no
// cross-lane permute (vpermt2d) and no vpmovqd (2 uops each on Ice Lake and Zen 4) in the epilogue.
constexpr int kStoredChannel16[16] = {0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15};

// 16 int32 counts in channel order from the 64-bit lane counts of two vectors in kStoredChannel16 order
// (counts are far below 2^31: the low 32 bits of each lane are the count).
BNEXT_AVX512BW inline __m512i narrow_counts_512(__m512i first, __m512i second) {
  return _mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(first), _mm512_castsi512_ps(second), 0x88));
}

// The panels ([panels][kw][kPanel] words) with each k step's 32 words in kStoredChannel16 order; with
// `nibbles`, as [panels][kw][2][kPanel] nibble planes (the step's low nibbles, then its high ones), the
// layout the avx512bw tile reads.
std::vector<uint64_t> stored_order(const std::vector<uint64_t>& panels, bool nibbles) {
  const int64_t steps = static_cast<int64_t>(panels.size()) / kPanel;
  std::vector<uint64_t> out(nibbles ? 2 * panels.size() : panels.size());
  for (int64_t row = 0; row < steps; ++row) {  // one k step of one panel
    const uint64_t* step = panels.data() + row * kPanel;
    for (int64_t j = 0; j < kPanel; ++j) {
      const uint64_t word = step[j / 16 * 16 + kStoredChannel16[j % 16]];
      if (nibbles) {
        out[row * 2 * kPanel + j] = low_nibbles(word);
        out[row * 2 * kPanel + kPanel + j] = high_nibbles(word);
      } else {
        out[row * kPanel + j] = word;
      }
    }
  }
  return out;
}

std::vector<uint64_t> layout_weights_avx512(const std::vector<uint64_t>& panels) { return stored_order(panels, false); }
std::vector<uint64_t> layout_weights_avx512bw(const std::vector<uint64_t>& panels) {
  return stored_order(panels, true);
}

// ---------------------------------------------------------------- GEMM
// GCC 12's AVX-512 headers seed _mm512_broadcast_i32x4 with a self-initialized "undefined" vector, which -Wall
// reports once it is inlined here (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// Rows of one register block. avx512: 6 for a whole panel, 12 for a half panel (24 accumulators either way, of
// the 32 zmm registers). avx512bw: 4 and 8 (16 byte accumulators): with 24 of them, beside the nibble table, the
// two broadcast nibble words and the temporaries, GCC 12 kept 23 of them on the stack (a load and a store per
// vector per k step); with 16 it keeps 13 in registers (seen in the assembly; not measured).
template <bool kVpopcnt, int J>
constexpr int kBlockRows = (kVpopcnt ? 6 : 4) * (J == 4 ? 1 : 2);
// Rows of the blocks that finish a call whose rows are not a whole number of blocks (2 for a whole panel, 4 for
// a half): a block of R rows costs the same for 1 row as for R, and the runs by rows hand out calls of 17 to 23
// rows on the small maps (196 rows at 14 px: 9 calls of 22 rows, each 4 blocks of 6 = 24 rows counted).
template <bool kVpopcnt, int J>
constexpr int kSmallRows = J == 4 ? 2 : 4;
static_assert(kRunAvx512 % kBlockRows<true, 4> == 0 && kRunAvx512 % kBlockRows<true, 2> == 0 &&
                  kRunAvx512 % kBlockRows<false, 4> == 0 && kRunAvx512 % kBlockRows<false, 2> == 0,
              "a call's register blocks must not read past its kRunAvx512 rows");

// One k step of count_block_vpopcnt.
template <int J, int R>
BNEXT_AVX512_VPOPCNT inline void count_step_vpopcnt(const uint64_t* a, const uint64_t* b, int64_t kw, int64_t k,
                                                    __m512i (&acc)[R][J]) {
  __m512i bv[J];
#pragma GCC unroll 4
  for (int j = 0; j < J; ++j) bv[j] = _mm512_loadu_si512(b + k * kPanel + 8 * j);
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    const __m512i av = _mm512_set1_epi64(static_cast<long long>(a[r * kw + k]));
#pragma GCC unroll 4
    for (int j = 0; j < J; ++j)
      acc[r][j] = _mm512_add_epi64(acc[r][j], _mm512_popcnt_epi64(_mm512_xor_si512(av, bv[j])));
  }
}

// The mismatch counts of R rows (kw words each from `a`) against J vectors of the panel's weights (from `b`,
// [kw][kPanel]), in 64-bit lanes: VPOPCNTDQ. KW > 0: kw == KW, the k loop unrolled.
template <int KW, int J, int R>
BNEXT_AVX512_VPOPCNT inline void count_block_vpopcnt(const uint64_t* a, const uint64_t* b, int64_t kw,
                                                     __m512i (&acc)[R][J]) {
  // Opaque to the optimizer: with KW fixed GCC would hoist the panel's loads out of the loop over blocks and
  // spill them (as on the AVX2 path, see count_nibbles there); reloading them from L1 costs no ALU slot.
  asm volatile("" : "+r"(b));
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < J; ++j) acc[r][j] = _mm512_setzero_si512();
  if constexpr (KW > 0) {
#pragma GCC unroll 4
    for (int k = 0; k < KW; ++k) count_step_vpopcnt<J, R>(a, b, KW, k, acc);
  } else {
    for (int64_t k = 0; k < kw; ++k) {
      BNEXT_MCA_BEGIN("k_step");
      count_step_vpopcnt<J, R>(a, b, kw, k, acc);
      BNEXT_MCA_END("k_step");
    }
  }
}

// The byte counts of `steps` k steps of R rows (nibble planes, 2 kw words per row from `a`: the step's low
// nibbles, then its high ones) against J vectors of the panel's nibble planes (from `b`, [kw][2][kPanel]), added
// to `bytes`: AVX-512BW, no VPOPCNTDQ. A byte gains at most 8 per step: steps <= kByteSteps.
template <int J, int R>
BNEXT_AVX512BW inline void count_block_nibbles(const uint64_t* a, const uint64_t* b, int64_t kw, int64_t steps,
                                               __m512i table, __m512i (&bytes)[R][J]) {
  asm volatile("" : "+r"(b));  // the weights' loads stay folded into the xors (see count_block_vpopcnt)
  for (int64_t k = 0; k < steps; ++k) {
    BNEXT_MCA_BEGIN("k_step_bw");
    const uint64_t* bk = b + k * 2 * kPanel;
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512i low = _mm512_set1_epi64(static_cast<long long>(a[2 * (r * kw + k)]));
      const __m512i high = _mm512_set1_epi64(static_cast<long long>(a[2 * (r * kw + k) + 1]));
#pragma GCC unroll 4
      for (int j = 0; j < J; ++j) {
        const __m512i b_low = _mm512_loadu_si512(bk + 8 * j), b_high = _mm512_loadu_si512(bk + kPanel + 8 * j);
        const __m512i counts = _mm512_add_epi8(_mm512_shuffle_epi8(table, _mm512_xor_si512(low, b_low)),
                                               _mm512_shuffle_epi8(table, _mm512_xor_si512(high, b_high)));
        bytes[r][j] = _mm512_add_epi8(bytes[r][j], counts);
      }
    }
    BNEXT_MCA_END("k_step_bw");
  }
}

// Finishes row m of a block from its 64-bit lane counts (J vectors, kStoredChannel16 order) for the channels
// from o. kTail: the last 16 channels are not all real (the end of the output row).
template <int J, bool kPrelu, bool kTail>
BNEXT_AVX512BW inline void finish_row(const Gemm& g, int64_t o, int64_t m, const __m512i* total) {
  BNEXT_MCA_BEGIN("epi_row");
  const int32_t* border = nullptr;
  if (g.row_pattern != nullptr && g.row_pattern[m] >= 0) border = g.border + g.row_pattern[m] * g.padded_channels + o;
#pragma GCC unroll 2
  for (int h = 0; h < J / 2; ++h) {
    const __m512i counts = narrow_counts_512(total[2 * h], total[2 * h + 1]);
    if (kTail && h == J / 2 - 1) {
      finish_avx512_tail<kPrelu>(g, m, o + 16 * h, counts);
    } else {
      finish_avx512<kPrelu>(g, m, o + 16 * h, counts, border != nullptr ? border + 16 * h : nullptr);
    }
  }
  BNEXT_MCA_END("epi_row");
}

// One register block: rows [m, m + rows) of R (their words from `a`: R rows readable) against the first J
// vectors of one panel's weights (`b`), channels from o, finished. Always inlined: GCC otherwise made it a
// call per block, with the counts passed through memory.
template <bool kVpopcnt, int KW, int J, int R, bool kPrelu, bool kTail>
BNEXT_AVX512_VPOPCNT inline __attribute__((always_inline)) void block_avx512(const Gemm& g, const uint64_t* a,
                                                                             const uint64_t* b, int64_t kw, int64_t o,
                                                                             int64_t m, int64_t rows, __m512i table) {
  const __m512i zero = _mm512_setzero_si512();
  __m512i total[R][J];
  if constexpr (kVpopcnt) {
    count_block_vpopcnt<KW, J, R>(a, b, kw, total);
  } else if (kw <= kByteSteps) {  // one block of k steps: byte counts widened once
    __m512i bytes[R][J];
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < J; ++j) bytes[r][j] = zero;
    count_block_nibbles<J, R>(a, b, kw, kw, table, bytes);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < J; ++j) total[r][j] = _mm512_sad_epu8(bytes[r][j], zero);
  } else {  // deep layers: k in blocks of kByteSteps, the 64-bit counts summed in memory between blocks
    alignas(64) uint64_t sums[R][J][8] = {};
    for (int64_t k0 = 0; k0 < kw; k0 += kByteSteps) {
      __m512i bytes[R][J];
#pragma GCC unroll 12
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < J; ++j) bytes[r][j] = zero;
      count_block_nibbles<J, R>(a + 2 * k0, b + k0 * 2 * kPanel, kw, std::min(kByteSteps, kw - k0), table, bytes);
#pragma GCC unroll 12
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < J; ++j)
          _mm512_store_si512(sums[r][j],
                             _mm512_add_epi64(_mm512_load_si512(sums[r][j]), _mm512_sad_epu8(bytes[r][j], zero)));
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < J; ++j) total[r][j] = _mm512_load_si512(sums[r][j]);
  }
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r)
    if (r < rows) finish_row<J, kPrelu, kTail>(g, o, m + r, total[r]);
}

// Rows [m_begin, m_end) (their words from `rows`: the call's kRunAvx512 rows readable) against the first J vectors
// of one panel's weights (`b`), channels from o: blocks of kBlockRows, the rest in blocks of kSmallRows. KW > 0
// fixes the k steps at compile time (the 1x1 convs up to 256 channels): the k loop unrolls. The Gemm is copied
// in, as on the AVX2 path: through a reference GCC reloads its fields after every output store.
template <bool kVpopcnt, int KW, int J, bool kPrelu, bool kTail>
BNEXT_AVX512_VPOPCNT void rows_avx512(const Gemm gemm_copy, const uint64_t* b, int64_t o, int64_t m_begin,
                                      int64_t m_end, const uint64_t* rows) {
  BNEXT_MCA_BEGIN("rows_entry");
  const Gemm& g = gemm_copy;
  constexpr int R = kBlockRows<kVpopcnt, J>, kSmall = kSmallRows<kVpopcnt, J>;
  const int64_t kw = KW > 0 ? KW : g.kw;
  const int64_t row_words = kVpopcnt ? kw : 2 * kw;  // avx512bw: nibble planes
  const __m512i table = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4));
  BNEXT_MCA_END("rows_entry");
  int64_t m = m_begin;
  for (; m_end - m >= R; m += R, rows += R * row_words)
    block_avx512<kVpopcnt, KW, J, R, kPrelu, kTail>(g, rows, b, kw, o, m, R, table);
  for (; m < m_end; m += kSmall, rows += kSmall * row_words)
    block_avx512<kVpopcnt, KW, J, kSmall, kPrelu, kTail>(g, rows, b, kw, o, m, std::min<int64_t>(kSmall, m_end - m),
                                                         table);
}

// The instantiation for the panel: KW fixed for kw = 1..4 (the tail case, a last panel of a layer whose
// channels are not a multiple of 16, is rare enough for the generic k loop).
template <bool kVpopcnt, int J, bool kPrelu>
void rows_for(const Gemm& g, const uint64_t* b, int64_t o, int64_t m_begin, int64_t m_end, const uint64_t* rows) {
  if ((g.out_channels - o) % 16 != 0 && g.out_channels - o < 16 * (J / 2)) {
    rows_avx512<kVpopcnt, 0, J, kPrelu, true>(g, b, o, m_begin, m_end, rows);
    return;
  }
  switch (g.kw) {
    case 1: rows_avx512<kVpopcnt, 1, J, kPrelu, false>(g, b, o, m_begin, m_end, rows); break;
    case 2: rows_avx512<kVpopcnt, 2, J, kPrelu, false>(g, b, o, m_begin, m_end, rows); break;
    case 3: rows_avx512<kVpopcnt, 3, J, kPrelu, false>(g, b, o, m_begin, m_end, rows); break;
    case 4: rows_avx512<kVpopcnt, 4, J, kPrelu, false>(g, b, o, m_begin, m_end, rows); break;
    default: rows_avx512<kVpopcnt, 0, J, kPrelu, false>(g, b, o, m_begin, m_end, rows);
  }
}

// One tile call (see TileFn): rows [m_begin, m_end) against panel `panel`, the whole panel (J = 4) or, when at
// most 16 of its channels are real, its first half (J = 2).
template <bool kVpopcnt>
void tile_avx512(const Gemm& g, int64_t panel, int64_t m_begin, int64_t m_end, const uint64_t* rows) {
  const int64_t o = panel * kPanel;
  const uint64_t* b = g.b + panel * g.kw * (kVpopcnt ? 1 : 2) * kPanel;
  const bool half = g.out_channels - o <= 16, prelu = g.slope != nullptr;
  if (half) {
    prelu ? rows_for<kVpopcnt, 2, true>(g, b, o, m_begin, m_end, rows)
          : rows_for<kVpopcnt, 2, false>(g, b, o, m_begin, m_end, rows);
  } else {
    prelu ? rows_for<kVpopcnt, 4, true>(g, b, o, m_begin, m_end, rows)
          : rows_for<kVpopcnt, 4, false>(g, b, o, m_begin, m_end, rows);
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace
}  // namespace bnext::kernels::x86

namespace bnext::kernels {

const PathKernels& avx512_kernels() {
  static const PathKernels kernels{x86::pack_pixels_avx512, x86::tile_avx512<true>, x86::kRunAvx512,
                                   /*nibble_planes=*/false, /*runs_by_rows=*/true,  x86::layout_weights_avx512};
  return kernels;
}

const PathKernels& avx512bw_kernels() {
  static const PathKernels kernels{x86::pack_pixels_avx512, x86::tile_avx512<false>, x86::kRunAvx512,
                                   /*nibble_planes=*/true,  /*runs_by_rows=*/true,   x86::layout_weights_avx512bw};
  return kernels;
}

}  // namespace bnext::kernels
