// The AVX2 path (with FMA): nibble-table popcount on nibble planes, byte counts summed before vpsadbw, the
// vectorized epilogue of x86_common.h, and the conv run by runs of output pixels (PathKernels::runs_by_rows).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/x86_common.h"

namespace bnext::kernels::x86 {
namespace {

constexpr int64_t kRowsAvx2 = 16;  // rows per AVX2 call: the panel's epilogue vectors load once per run

// ---------------------------------------------------------------- packing
// _mm256_maskload_ps; in the emulated build the kept lanes one by one, as SIMDe 0.7.4 emulates the instruction
// with a whole 32-byte load (past the end of the array, which the instruction itself never touches).
BNEXT_TARGET("avx2") inline __m256 maskload_ps(const float* values, __m256i keep) {
#ifdef BNEXT_EMULATE_X86
  int32_t lanes[8];
  float kept[8];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes), keep);
  for (int i = 0; i < 8; ++i) kept[i] = lanes[i] < 0 ? values[i] : 0.0f;
  return _mm256_loadu_ps(kept);
#else
  return _mm256_maskload_ps(values, keep);
#endif
}

// The sign bits (x + bias < 0) of 32 channels: the 4 compare masks narrowed to bytes by two packs (which
// interleave the 128-bit lanes), put back in channel order by one dword permute, then one byte movemask.
// 4.5x faster than a movemask per 8 channels and shifts (0.55 -> 0.12 cycles per value from L1 at 64 channels,
// AVX2 EPYC): the per-8 form cost as much as reading the activation from memory, so packing an op's output
// while in cache (the graph executor's packed edges) gained nothing with it.
BNEXT_TARGET("avx2") inline uint32_t signs32_avx2(const float* x, const float* bias) {
  __m256i masks[4];
  for (int q = 0; q < 4; ++q) {
    const __m256 v = _mm256_add_ps(_mm256_loadu_ps(x + 8 * q), _mm256_loadu_ps(bias + 8 * q));
    masks[q] = _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
  }
  const __m256i bytes =
      _mm256_packs_epi16(_mm256_packs_epi32(masks[0], masks[1]), _mm256_packs_epi32(masks[2], masks[3]));
  const __m256i ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  return static_cast<uint32_t>(_mm256_movemask_epi8(ordered));
}

// The sign bits of the last 1..31 channels from c: 8 per compare, masked loads for the last few (0 beyond).
BNEXT_TARGET("avx2") inline uint32_t signs_tail_avx2(const float* x, const float* bias, int64_t left) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  uint32_t bits = 0;
  for (int64_t q = 0; q * 8 < left; ++q) {
    const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left - 8 * q)), lane);
    const __m256 v = _mm256_add_ps(maskload_ps(x + 8 * q, keep), maskload_ps(bias + 8 * q, keep));
    bits |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ))) << (8 * q);
  }
  return bits;
}

// The sign bits of the 1..32 channels from x (left of them): whole 32 at once, fewer 8 at a time.
BNEXT_TARGET("avx2") inline uint32_t signs_upto32_avx2(const float* x, const float* bias, int64_t left) {
  return left >= 32 ? signs32_avx2(x, bias) : signs_tail_avx2(x, bias, left);
}

BNEXT_TARGET("avx2")
void pack_pixels_avx2(const float* x, const float* bias, int64_t channels, int64_t pixels, uint64_t* words) {
  const int64_t word_count = (channels + 63) / 64;
  if (channels % 32 == 0) {  // the usual case: whole 32s, no tests per word
    const int64_t whole = channels / 64;
    for (int64_t p = 0; p < pixels; ++p, x += channels, words += word_count) {
      for (int64_t w = 0; w < whole; ++w)
        words[w] = signs32_avx2(x + 64 * w, bias + 64 * w) |
                   static_cast<uint64_t>(signs32_avx2(x + 64 * w + 32, bias + 64 * w + 32)) << 32;
      if (whole < word_count) words[whole] = signs32_avx2(x + 64 * whole, bias + 64 * whole);
    }
    return;
  }
  for (int64_t p = 0; p < pixels; ++p, x += channels, words += word_count) {
    for (int64_t w = 0, c = 0; w < word_count; ++w, c += 64) {
      const uint64_t low = signs_upto32_avx2(x + c, bias + c, channels - c);
      const uint64_t high = c + 32 < channels ? signs_upto32_avx2(x + c + 32, bias + c + 32, channels - c - 32) : 0;
      words[w] = low | high << 32;
    }
  }
}

// ---------------------------------------------------------------- GEMM
// Popcount by nibble table (pshufb) with byte counts summed over up to 31 k steps before one
// vpsadbw per vector (Mula et al.'s scheme: a byte holds at most 8 per step, so 31 steps fit
// in 255), on operands stored as nibble planes (see half_rows_nibbles_avx2); the 32-channel panel
// is done as two halves of 16 channels so that byte and 64-bit accumulators stay in the 16 ymm
// registers. The epilogue is vectorized, 8 channels at a time, with the same float operations as
// finish_one (finish_avx2, x86_common.h).

// The AVX2 weight planes hold each 8 channels in the order 0 1 4 5 | 2 3 6 7 (kStoredChannel), so that
// the 64-bit lane counts of their two vectors, (0 1 4 5) and (2 3 6 7), narrow to int32 in channel order
// with one in-lane shuffle: without the cross-lane vpermq that natural order needs (5.6% less time on
// the 1x1 convs, 1.9% on the 3x3 convs, interleaved A/B in one process, AVX2 EPYC, 1 thread).
constexpr int kStoredChannel[8] = {0, 1, 4, 5, 2, 3, 6, 7};  // its own inverse

// 8 int32 counts, in channel order, from the 64-bit lanes of two vectors (counts are far below 2^31).
BNEXT_TARGET("avx2") inline __m256i narrow_counts(__m256i first, __m256i second) {
  return _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(first), _mm256_castsi256_ps(second), 0x88));
}

// The AVX2 kernel works on nibble planes (see Gemm): both operands are stored split into
// their low and high nibbles (each byte & 0x0f, and >> 4), so that the nibbles of A ^ B are the
// XOR of stored nibbles and a vector of 4 words costs 6 instructions (2 xor with the weights'
// load folded in, 2 pshufb, 2 add) instead of 8 for plain words (the shift and two masks go).
// Measured on an AVX2 EPYC at 1 thread, interleaved in one process against the plain-word kernel
// it replaced, at 224 px on bnext_tiny, bnext18 and bnext_small, identical outputs: 1x1 convs 11%
// less time in all (up to 24% at 384-1536 channels), 3x3 convs up to 220 channels 12-19% less,
// the deeper 3x3 convs 8% less in all (k in blocks, below).

// The mismatches of one row's k step (its nibble words broadcast in low, high) with 4 channels' (their nibble
// words at b and b + kPanel), per byte.
BNEXT_TARGET("avx2")
inline __m256i nibble_counts(__m256i table, __m256i low, __m256i high, const uint64_t* b) {
  const __m256i b_low = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
  const __m256i b_high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kPanel));
  return _mm256_add_epi8(_mm256_shuffle_epi8(table, _mm256_xor_si256(low, b_low)),
                         _mm256_shuffle_epi8(table, _mm256_xor_si256(high, b_high)));
}

// Byte counts of `steps` k steps of one row (its nibble words from `a`) against one 16-channel half
// of a panel (its nibble words from `bk`), added to `bytes` (4 vectors of 4 channels).
BNEXT_TARGET("avx2")
inline void count_nibbles(const uint64_t* a, const uint64_t* bk, int64_t steps, __m256i table, __m256i* bytes) {
  // Opaque to the optimizer: with KW fixed, GCC would hoist all of the panel's loads out of the
  // row loop and spill them (measured 24% slower at kw = 6 than reloading them, folded into the xors).
  asm volatile("" : "+r"(bk));
  // GCC added into a fresh register and copied it back to the accumulator (4 vmovdqa per k step: 36 uops
  // instead of 32, dispatch-bound at 9.6 cycles per step on Zen 2 by llvm-mca, which matched the measured 110
  // binary MACs per cycle of the deep 3x3 convs). With the accumulators as locals pinned by an empty asm at the
  // end of each step: 7.7 cycles by llvm-mca; measured 122-126 MACs per cycle, bnext_tiny 7% less time.
  __m256i b0 = bytes[0], b1 = bytes[1], b2 = bytes[2], b3 = bytes[3];
  for (int64_t k = 0; k < steps; ++k, bk += 2 * kPanel) {
    const __m256i low = _mm256_set1_epi64x(static_cast<long long>(a[2 * k]));
    const __m256i high = _mm256_set1_epi64x(static_cast<long long>(a[2 * k + 1]));
    b0 = _mm256_add_epi8(b0, nibble_counts(table, low, high, bk));
    b1 = _mm256_add_epi8(b1, nibble_counts(table, low, high, bk + 4));
    b2 = _mm256_add_epi8(b2, nibble_counts(table, low, high, bk + 8));
    b3 = _mm256_add_epi8(b3, nibble_counts(table, low, high, bk + 12));
#ifndef BNEXT_EMULATE_X86                              // (SIMDe's vectors are not registers)
    asm("" : "+x"(b0), "+x"(b1), "+x"(b2), "+x"(b3));  // each accumulator stays in its register: no copies
#endif
  }
  bytes[0] = b0, bytes[1] = b1, bytes[2] = b2, bytes[3] = b3;
}

// Finishes the 16 channels from o of row m from their 64-bit counts (4 vectors of 4 channels each).
template <bool kPrelu>
BNEXT_TARGET("avx2,fma")
inline void finish_half(const Gemm& g, int64_t m, int64_t o, const __m256i* counts, const Affine8& first,
                        const Affine8& second) {
  finish_avx2<kPrelu>(g, m, o, narrow_counts(counts[0], counts[1]), first);
  finish_avx2<kPrelu>(g, m, o + 8, narrow_counts(counts[2], counts[3]), second);
}

// The Gemm is copied in: through the reference, GCC reloaded its fields (slope, row_pattern, out) for
// every row, as the output stores might change them; with the copy and kPrelu fixed the 1x1 convs took
// 8.6% less time (measured as above, on top of kStoredChannel; the two together, in a later and noisier
// hour against the build before both: 9%, identical outputs).
template <int KW, bool kPrelu>
BNEXT_TARGET("avx2,fma")
void half_rows_nibbles_avx2(const Gemm gemm_copy, const uint64_t* bh, int64_t o, int64_t m_begin, int64_t m_end,
                            const uint64_t* rows) {
  const Gemm& g = gemm_copy;
  const __m256i table =
      _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i zero = _mm256_setzero_si256();
  const int64_t kw = KW > 0 ? KW : g.kw;
  const Affine8 first = load_affine(g, o), second = load_affine(g, o + 8);
  if (kw <= kByteSteps) {  // one block of k steps: each row is finished as soon as it is counted
    for (int64_t m = m_begin; m < m_end; ++m) {
      __m256i bytes[4] = {zero, zero, zero, zero};
      count_nibbles(rows + (m - m_begin) * kw * 2, bh, kw, table, bytes);
      __m256i total[4];
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) total[j] = _mm256_sad_epu8(bytes[j], zero);
      finish_half<kPrelu>(g, m, o, total, first, second);
    }
    return;
  }
  // Deep layers: k in blocks of kByteSteps, all rows per block, so that the block's weights (8 KiB for
  // the half) stay in L1 across the rows; the rows' 64-bit counts wait in `total` (2 KiB).
  __m256i total[kRowsAvx2][4];
  for (int64_t k0 = 0; k0 < kw; k0 += kByteSteps) {
    const int64_t steps = std::min(kByteSteps, kw - k0);
    for (int64_t r = 0; r < m_end - m_begin; ++r) {
      __m256i bytes[4] = {zero, zero, zero, zero};
      count_nibbles(rows + (r * kw + k0) * 2, bh + k0 * 2 * kPanel, steps, table, bytes);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const __m256i sums = _mm256_sad_epu8(bytes[j], zero);
        total[r][j] = k0 == 0 ? sums : _mm256_add_epi64(total[r][j], sums);
      }
    }
  }
  for (int64_t m = m_begin; m < m_end; ++m) finish_half<kPrelu>(g, m, o, total[m - m_begin], first, second);
}

template <bool kPrelu>
void half_rows_avx2(const Gemm& g, const uint64_t* bh, int64_t o, int64_t m_begin, int64_t m_end,
                    const uint64_t* rows) {
  switch (g.kw) {
    case 1: half_rows_nibbles_avx2<1, kPrelu>(g, bh, o, m_begin, m_end, rows); break;
    case 2: half_rows_nibbles_avx2<2, kPrelu>(g, bh, o, m_begin, m_end, rows); break;
    case 3: half_rows_nibbles_avx2<3, kPrelu>(g, bh, o, m_begin, m_end, rows); break;
    case 4: half_rows_nibbles_avx2<4, kPrelu>(g, bh, o, m_begin, m_end, rows); break;
    default: half_rows_nibbles_avx2<0, kPrelu>(g, bh, o, m_begin, m_end, rows);
  }
}

// Rows [m_begin, m_end) (their nibble words start at ``rows``) against one weight panel, one
// 16-channel half at a time, so that the half's epilogue vectors and the popcount constants stay
// in registers across the rows. KW fixed at compile time for the 1x1 layers up to 256 channels.
void tile_avx2(const Gemm& g, int64_t panel, int64_t m_begin, int64_t m_end, const uint64_t* rows) {
  for (int half = 0; half < 2; ++half) {
    const int64_t o = panel * kPanel + 16 * half;
    if (o >= g.out_channels) break;
    const uint64_t* bh = g.b + panel * g.kw * 2 * kPanel + 16 * half;
    if (g.slope != nullptr) {
      half_rows_avx2<true>(g, bh, o, m_begin, m_end, rows);
    } else {
      half_rows_avx2<false>(g, bh, o, m_begin, m_end, rows);
    }
  }
}

// The weight panels as [panels][kw][2][kPanel] nibble planes in kStoredChannel order (see Gemm::b): each k step
// of a panel becomes its 32 low-nibble words, then its 32 high ones. Done once per layer when a model is loaded.
std::vector<uint64_t> layout_weights_avx2(const std::vector<uint64_t>& panels) {
  const int64_t steps = static_cast<int64_t>(panels.size()) / kPanel;
  std::vector<uint64_t> planes(2 * panels.size());
  for (int64_t row = 0; row < steps; ++row) {  // one k step of one panel
    const uint64_t* step = panels.data() + row * kPanel;
    uint64_t* out_step = planes.data() + row * 2 * kPanel;
    for (int64_t j = 0; j < kPanel; ++j) {
      const uint64_t word = step[j / 8 * 8 + kStoredChannel[j % 8]];
      out_step[j] = low_nibbles(word);
      out_step[kPanel + j] = high_nibbles(word);
    }
  }
  return planes;
}

}  // namespace
}  // namespace bnext::kernels::x86

namespace bnext::kernels {

const PathKernels& avx2_kernels() {
  static const PathKernels kernels{x86::pack_pixels_avx2,  x86::tile_avx2,        x86::kRowsAvx2,
                                   /*nibble_planes=*/true, /*runs_by_rows=*/true, x86::layout_weights_avx2};
  return kernels;
}

}  // namespace bnext::kernels
