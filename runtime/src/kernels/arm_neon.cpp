// The AArch64 path: NEON activation packing, an XNOR / popcount GEMM tile of 4 rows x 8 output channels in
// registers (vcntq_u8 byte counts, summed over up to kByteSteps k steps before they are widened with vpadalq,
// one horizontal reduction per tile at the end), and the epilogue of finish_one vectorized with NEON. NEON is
// part of the AArch64 base ISA: no detection, no target attributes; CMakeLists.txt compiles this file only for
// AArch64 (and an x86 build never sees it).
//
// The GEMM (see kernels.h): each step k of a tile broadcasts one 64-bit word of each of its 4 A rows and XORs
// it with 4 vectors of weights, each holding the word k of 2 output channels; vcntq_u8 counts the mismatches
// per byte and vaddq_u8 adds them to the tile's 16 byte accumulators (a byte gains at most 8 per step, so
// kByteSteps = 31 steps fit in 255). That is eor + cnt + add per 128 bit-products: 3 NEON instructions, the
// floor for a popcount GEMM on NEON, plus one broadcast per row and step (4 per 48), with the loads on the load
// pipe: llvm-mca reads the loop at 26 cycles per step on a Cortex-A72, 92% of the 24 that 2 NEON pipes allow.
// Layers with kw > kByteSteps widen the byte counts every kByteSteps steps into uint32 lanes (vpaddlq_u8, then
// vpadalq_u16); the counts are reduced to one per channel by pairwise adds only once, when the tile is done,
// on bytes as far as the counts allow (reduce_block).
#ifndef __aarch64__
#error "arm_neon.cpp is the AArch64 kernel file: CMakeLists.txt compiles it for AArch64 only"
#endif

#include <arm_neon.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/kernels.h"

namespace bnext::kernels::neon {
namespace {

constexpr int kTileRows = 4;                  // A rows of the register tile
constexpr int kTileVectors = 4;               // weight vectors of the register tile, 2 channels each
constexpr int kGroup = 2 * kTileVectors;      // output channels of the register tile (8)
constexpr int kGroups = kPanel / kGroup;      // channel groups per weight panel (4)
constexpr int64_t kRowsNeon = 4 * kTileRows;  // rows per tile call: one run of rows (see tile_neon)
static_assert(kGroup == 8 && kPanel % kGroup == 0 && kRowsNeon % kTileRows == 0,
              "the register tile (8 channels, finished by finish8) must divide the panel and the call's rows");

// ---------------------------------------------------------------- packing
// The sign bits of up to 64 channels as one word: bit i set where v[i] + bias[i] < 0, for i < count (the bits
// from count on are 0). Four compares give the masks of 16 channels, narrowed to one byte per channel (uzp1:
// each mask is all ones or all zeros, so its low half is as good as the whole), ANDed with each byte's bit
// weight (1, 2, .. 128 per 8 channels) and added up pairwise three times: the 8 bytes of the word, each the sum
// (= OR) of its 8 channels' bits. Groups of 4 channels past `count` are not read (their masks are 0); a group
// that `count` cuts is read from a copy padded with +0.0 (bit clear).
inline uint64_t pack64(const float* v, const float* bias, int64_t count) {
  static const uint8_t kBitWeights[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t weights = vld1q_u8(kBitWeights);
  uint8x16_t bytes[4];
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    uint32x4_t masks[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const int64_t c = 16 * q + 4 * i;
      if (c + 4 <= count) {
        masks[i] = vcltzq_f32(vaddq_f32(vld1q_f32(v + c), vld1q_f32(bias + c)));  // false for NaN and -0.0
      } else if (c < count) {
        float sums[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int64_t j = c; j < count; ++j) sums[j - c] = v[j] + bias[j];  // x + bias as portable.cpp adds them
        masks[i] = vcltzq_f32(vld1q_f32(sums));
      } else {
        masks[i] = vdupq_n_u32(0);
      }
    }
    const uint16x8_t low = vuzp1q_u16(vreinterpretq_u16_u32(masks[0]), vreinterpretq_u16_u32(masks[1]));
    const uint16x8_t high = vuzp1q_u16(vreinterpretq_u16_u32(masks[2]), vreinterpretq_u16_u32(masks[3]));
    bytes[q] = vandq_u8(vuzp1q_u8(vreinterpretq_u8_u16(low), vreinterpretq_u8_u16(high)), weights);
  }
  uint8x16_t sums = vpaddq_u8(vpaddq_u8(bytes[0], bytes[1]), vpaddq_u8(bytes[2], bytes[3]));
  sums = vpaddq_u8(sums, sums);  // byte b (b < 8): channels 8b .. 8b + 7
  return vgetq_lane_u64(vreinterpretq_u64_u8(sums), 0);
}

void pack_pixels_neon(const float* x, const float* bias, int64_t channels, int64_t pixels, uint64_t* words) {
  const int64_t word_count = (channels + 63) / 64, whole = channels / 64, left = channels % 64;
  for (int64_t p = 0; p < pixels; ++p, x += channels, words += word_count) {
    for (int64_t w = 0; w < whole; ++w) words[w] = pack64(x + 64 * w, bias + 64 * w, 64);
    if (left > 0) words[whole] = pack64(x + 64 * whole, bias + 64 * whole, left);
  }
}

// ---------------------------------------------------------------- GEMM
// The weights are the panels as the driver lays them out ([panels][kw][kPanel] words): a register tile reads
// the 64 bytes of its 8 channels at each k step, kPanel words apart. (A [kGroups][kw][kGroup] layout per panel
// would need kw, which layout_weights is not given; the strided lines are in L1 across the call's rows anyway.)
constexpr int64_t kStepWords = kPanel;

inline const uint64_t* group_weights(const Gemm& g, int64_t panel, int group) {
  return g.b + panel * g.kw * kPanel + group * kGroup;
}

// One k step of the tile: the rows' words at ak[r] broadcast and XORed with the 4 weight vectors at bk, their
// byte counts set into acc (kFirst: the first step of a block, so that the 16 accumulators need no zeroing) or
// added to it.
template <bool kFirst>
inline void count_step(const uint64_t* const (&ak)[kTileRows], const uint64_t* bk,
                       uint8x16_t (&acc)[kTileRows][kTileVectors]) {
  uint64x2_t bv[kTileVectors];
#pragma GCC unroll 16
  for (int j = 0; j < kTileVectors; ++j) bv[j] = vld1q_u64(bk + 2 * j);
#pragma GCC unroll 8
  for (int r = 0; r < kTileRows; ++r) {
    const uint64x2_t av = vld1q_dup_u64(ak[r]);
#pragma GCC unroll 16
    for (int j = 0; j < kTileVectors; ++j) {
      const uint8x16_t counts = vcntq_u8(vreinterpretq_u8_u64(veorq_u64(av, bv[j])));
      acc[r][j] = kFirst ? counts : vaddq_u8(acc[r][j], counts);
    }
  }
}

// The byte counts of k steps [k0, k0 + steps) of the tile's rows `a` (kw words each) against its weights `b`, in
// acc[r][j] (bytes 0-7: channel 2j, 8-15: channel 2j + 1 of the group). 1 <= steps <= kByteSteps.
template <int KW>
inline void count_bytes(const uint64_t* a, int64_t kw, const uint64_t* b, int64_t k0, int64_t steps,
                        uint8x16_t (&acc)[kTileRows][kTileVectors]) {
  const uint64_t* bk = b + k0 * kStepWords;
  const uint64_t* ak[kTileRows];
#pragma GCC unroll 8
  for (int r = 0; r < kTileRows; ++r) ak[r] = a + r * kw + k0;
  count_step<true>(ak, bk, acc);
  auto next = [&] {
    bk += kStepWords;
#pragma GCC unroll 8
    for (int r = 0; r < kTileRows; ++r) ++ak[r];
    count_step<false>(ak, bk, acc);
  };
  if constexpr (KW > 0) {
#pragma GCC unroll 16
    for (int k = 1; k < KW; ++k) next();
  } else {
    for (int64_t k = 1; k < steps; ++k) next();
  }
}

// The counts of one block of k steps (kw <= kByteSteps) from its byte accumulators: each channel's 8 bytes added
// up by pairwise adds, as many of them on bytes as the counts allow. A byte of acc holds at most 8 kw, and a
// byte after L pairwise adds at most 8 kw 2^L: all three levels fit in a byte up to kw = 3 (the 1x1 convs up to
// 192 channels, where the reduction costs as much as the k loop: 26 instructions per tile instead of 40), two
// up to kw = 7, none beyond (then 16-bit lanes). With KW fixed the branches fold away.
inline void reduce_block(const uint8x16_t (&acc)[kTileRows][kTileVectors], int64_t kw,
                         uint32x4_t (&counts)[kTileRows][kTileVectors / 2]) {
  static_assert(kTileRows % 2 == 0 && kTileVectors == 4, "the reduction is written for 8 channels and row pairs");
  uint8x16_t halves[kTileRows];    // kw <= 7: [c0 c0 c1 c1 .. c7 c7], two bytes per channel
  uint16x8_t channels[kTileRows];  // [c0 .. c7]
  if (kw <= 7) {
#pragma GCC unroll 8
    for (int r = 0; r < kTileRows; ++r)
      halves[r] = vpaddq_u8(vpaddq_u8(acc[r][0], acc[r][1]), vpaddq_u8(acc[r][2], acc[r][3]));
    if (kw <= 3) {
#pragma GCC unroll 4
      for (int r = 0; r < kTileRows; r += 2) {
        const uint8x16_t both = vpaddq_u8(halves[r], halves[r + 1]);  // [row r: c0 .. c7, row r + 1: c0 .. c7]
        channels[r] = vmovl_u8(vget_low_u8(both));
        channels[r + 1] = vmovl_high_u8(both);
      }
    } else {
#pragma GCC unroll 8
      for (int r = 0; r < kTileRows; ++r) channels[r] = vpaddlq_u8(halves[r]);
    }
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < kTileRows; ++r) {  // at most 64 kw = 1984 per channel: 16-bit lanes
      const uint16x8_t low = vpaddq_u16(vpaddlq_u8(acc[r][0]), vpaddlq_u8(acc[r][1]));
      const uint16x8_t high = vpaddq_u16(vpaddlq_u8(acc[r][2]), vpaddlq_u8(acc[r][3]));
      channels[r] = vpaddq_u16(low, high);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < kTileRows; ++r) {
    counts[r][0] = vmovl_u16(vget_low_u16(channels[r]));
    counts[r][1] = vmovl_high_u16(channels[r]);
  }
}

// The mismatch counts of the tile, 4 channels per vector: counts[r][q] holds channels 4q .. 4q + 3 of the group.
// KW > 0: kw fixed at compile time (the short 1x1 convs, the 3x3 convs on 32 channels), the loop unrolled.
template <int KW>
inline void count_tile(const uint64_t* a, int64_t kw, const uint64_t* b,
                       uint32x4_t (&counts)[kTileRows][kTileVectors / 2]) {
  if constexpr (KW > 0) kw = KW;
  uint8x16_t acc[kTileRows][kTileVectors];
  if (KW > 0 || kw <= kByteSteps) {  // one block of k steps: the byte counts are the whole counts
    count_bytes<KW>(a, kw, b, 0, kw, acc);
    reduce_block(acc, kw, counts);
    return;
  }
  // Deep layers: blocks of kByteSteps k steps, each block's byte counts widened into uint32 lanes.
  uint32x4_t lanes[kTileRows][kTileVectors];
#pragma GCC unroll 8
  for (int r = 0; r < kTileRows; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < kTileVectors; ++j) lanes[r][j] = vdupq_n_u32(0);
  for (int64_t k0 = 0; k0 < kw; k0 += kByteSteps) {
    count_bytes<0>(a, kw, b, k0, std::min(kByteSteps, kw - k0), acc);
#pragma GCC unroll 8
    for (int r = 0; r < kTileRows; ++r)
#pragma GCC unroll 16
      for (int j = 0; j < kTileVectors; ++j) lanes[r][j] = vpadalq_u16(lanes[r][j], vpaddlq_u8(acc[r][j]));
  }
#pragma GCC unroll 8
  for (int r = 0; r < kTileRows; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < kTileVectors / 2; ++q) counts[r][q] = vpaddq_u32(lanes[r][2 * q], lanes[r][2 * q + 1]);
}

// ---------------------------------------------------------------- epilogue
// The per-channel vectors of one group of 8 channels, loaded once per tile call (the arrays are padded to
// whole panels: 8 channels are always readable).
struct Affine8 {
  float32x4_t scale[2], shift[2], slope[2];
};

inline Affine8 load_affine(const Gemm& g, int64_t o) {
  Affine8 affine;
  for (int h = 0; h < 2; ++h) {
    affine.scale[h] = vld1q_f32(g.scale + o + 4 * h);
    affine.shift[h] = vld1q_f32(g.shift + o + 4 * h);
    affine.slope[h] = g.slope != nullptr ? vld1q_f32(g.slope + o + 4 * h) : vdupq_n_f32(1.0f);
  }
  return affine;
}

// finish_one for the 8 channels from o of row m: dot = K - 2 count - border exactly in int32, then
// y = fma(scale, dot, shift) (one rounding, as the x86 paths' _mm256_fmadd_ps: the NEON and x86 outputs are the
// same floats), PReLU where !(y > 0) (NaN included); only the real channels are stored.
template <bool kPrelu>
inline void finish8(const Gemm& g, int64_t m, int64_t o, const uint32x4_t (&counts)[2], const Affine8& affine) {
  const int32x4_t k_bits = vdupq_n_s32(g.k_bits);
  int32x4_t dot[2];
  for (int h = 0; h < 2; ++h) dot[h] = vsubq_s32(k_bits, vreinterpretq_s32_u32(vshlq_n_u32(counts[h], 1)));
  if (g.row_pattern != nullptr && g.row_pattern[m] >= 0) {
    const int32_t* border = g.border + g.row_pattern[m] * g.padded_channels + o;
    for (int h = 0; h < 2; ++h) dot[h] = vsubq_s32(dot[h], vld1q_s32(border + 4 * h));
  }
  float32x4_t y[2];
  for (int h = 0; h < 2; ++h) {
    y[h] = vfmaq_f32(affine.shift[h], affine.scale[h], vcvtq_f32_s32(dot[h]));
    if constexpr (kPrelu) y[h] = vbslq_f32(vcgtzq_f32(y[h]), y[h], vmulq_f32(y[h], affine.slope[h]));
  }
  float* out = g.out + m * g.out_channels + o;
  const int64_t left = g.out_channels - o;
  if (left >= 8) {
    vst1q_f32(out, y[0]);
    vst1q_f32(out + 4, y[1]);
  } else {
    float values[8];
    vst1q_f32(values, y[0]);
    vst1q_f32(values + 4, y[1]);
    std::memcpy(out, values, left * sizeof(float));
  }
}

// Rows [m_begin, m_end) (their words from `rows`, kw each; whole register tiles readable) against one channel
// group, register tile by register tile. The Gemm is a copy (as in x86_avx2.cpp): with a reference GCC reloads
// its fields after every output store.
template <int KW, bool kPrelu>
void group_rows(const Gemm g, const uint64_t* b, int64_t o, int64_t m_begin, int64_t m_end, const uint64_t* rows) {
  const Affine8 affine = load_affine(g, o);
  const int64_t kw = KW > 0 ? KW : g.kw;
  for (int64_t m0 = m_begin; m0 < m_end; m0 += kTileRows) {
    // Opaque to the optimizer: with KW fixed, GCC would otherwise keep all the group's weights in registers
    // across tiles and spill the accumulators (as x86_avx2.cpp notes for its kernel).
    asm volatile("" : "+r"(b));
    uint32x4_t counts[kTileRows][kTileVectors / 2];
    count_tile<KW>(rows + (m0 - m_begin) * kw, kw, b, counts);
    const int64_t tile_end = std::min<int64_t>(m_end - m0, kTileRows);
    for (int64_t r = 0; r < tile_end; ++r) finish8<kPrelu>(g, m0 + r, o, counts[r], affine);
  }
}

template <bool kPrelu>
void group_rows_any(const Gemm& g, const uint64_t* b, int64_t o, int64_t m_begin, int64_t m_end, const uint64_t* rows) {
  switch (g.kw) {
    case 1: group_rows<1, kPrelu>(g, b, o, m_begin, m_end, rows); break;
    case 2: group_rows<2, kPrelu>(g, b, o, m_begin, m_end, rows); break;
    case 3: group_rows<3, kPrelu>(g, b, o, m_begin, m_end, rows); break;
    case 4: group_rows<4, kPrelu>(g, b, o, m_begin, m_end, rows); break;
    case 5: group_rows<5, kPrelu>(g, b, o, m_begin, m_end, rows); break;  // 3x3, 32 channels
    default: group_rows<0, kPrelu>(g, b, o, m_begin, m_end, rows);
  }
}

// Rows [m_begin, m_end) against weight panel `panel`, one group of 8 channels at a time (its weights, kw * 64
// bytes, stay in L1 across the rows of the call; its epilogue vectors in registers). The driver guarantees
// kRowsNeon rows readable from `rows`, a multiple of the register tile's rows.
void tile_neon(const Gemm& g, int64_t panel, int64_t m_begin, int64_t m_end, const uint64_t* rows) {
  for (int group = 0; group < kGroups; ++group) {
    const int64_t o = panel * kPanel + group * kGroup;
    if (o >= g.out_channels) break;
    const uint64_t* b = group_weights(g, panel, group);
    if (g.slope != nullptr) {
      group_rows_any<true>(g, b, o, m_begin, m_end, rows);
    } else {
      group_rows_any<false>(g, b, o, m_begin, m_end, rows);
    }
  }
}

}  // namespace
}  // namespace bnext::kernels::neon

namespace bnext::kernels {

const PathKernels& neon_kernels() {
  static const PathKernels kernels{neon::pack_pixels_neon,  neon::tile_neon,       neon::kRowsNeon,
                                   /*nibble_planes=*/false, /*runs_by_rows=*/true, /*layout_weights=*/nullptr};
  return kernels;
}

}  // namespace bnext::kernels
