// The internal contract between the binary conv driver (binary_conv.cpp) and the per-ISA kernel files
// (portable.cpp, x86_avx2.cpp, x86_avx512.cpp, arm_neon.cpp): the GEMM's arguments (Gemm), the constants both
// sides share, and the table of functions and facts each path provides (PathKernels). select.cpp is the one
// place that knows which paths this build and CPU run and hands out their tables.
//
// The conv as a GEMM. Activations are NHWC; a pixel's C channels are packed into ceil(C/64) uint64 words,
// bit c%64 of word c/64 set when the value is negative (-1), clear when >= 0 (+1). Rows m are output pixels
// (n, y, x), columns o output channels:
//   count[m][o] = sum_k popcount(A[m][k] ^ B[k][o])       (number of sign mismatches)
//   dot[m][o]   = K - 2 * count[m][o] - border[m][o]
// where A is the bit im2col of the input (taps concatenated at 32-bit granularity; for a 1x1 conv with
// stride 1 and no padding, the packed pixels themselves), B the packed weights (panels of kPanel output
// channels), and K = C * kh * kw. Zero padding cannot be stored in one bit: out-of-image taps are stored as
// +1 (bits 0) and their contribution, sum_c w[o][c][tap], is subtracted again (the "border" term), so dot
// equals conv(sign(x), sign(w)) with zero padding exactly. The epilogue applies y = scale[o] * dot + shift[o]
// and an optional PReLU (folded BatchNorm + activation) and writes float NHWC.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/binary_conv.h"

// Markers of the code regions benchmarks/avx512_estimate.py hands to llvm-mca: defined only when that script
// compiles a kernel file to assembly (-DBNEXT_MCA_MARKERS), no-ops in every real build.
#ifdef BNEXT_MCA_MARKERS
#define BNEXT_MCA_BEGIN(name) asm volatile("# LLVM-MCA-BEGIN " name ::: "memory")
#define BNEXT_MCA_END(name) asm volatile("# LLVM-MCA-END " name ::: "memory")
#else
#define BNEXT_MCA_BEGIN(name) ((void)0)
#define BNEXT_MCA_END(name) ((void)0)
#endif

namespace bnext::kernels {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the bit layouts read 64-bit words as pairs of 32-bit words (little-endian only)");

constexpr int64_t kPanel = 32;  // output channels per weight panel
// Byte counters summed over at most this many k steps before they are widened (a byte holds at most 8 per
// step, so 31 steps fit in 255): the nibble-table popcount paths.
constexpr int64_t kByteSteps = 31;
// The run-by-rows driver (see PathKernels::runs_by_rows) is used when all weight panels fit in this (L2).
constexpr int64_t kRowRunWeightBytes = 256 << 10;

// The arguments of one conv's GEMM, the same on every path. The A rows are not in here: each tile call gets
// a pointer to its own (see TileFn), as the driver makes them per call or per run of output pixels.
struct Gemm {
  // The weights, in the path's layout (PathKernels::layout_weights): [panels][kw][kPanel] words, channel
  // j of a panel in entry j; on nibble-plane paths [panels][kw][2][kPanel]: the low nibbles of each byte
  // (word & 0x0f..0f), then the high ones ((word >> 4) & 0x0f..0f), channels in the path's own order.
  const uint64_t* b;
  int64_t m_rows;              // rows of A (output pixels of the whole batch)
  int64_t kw;                  // 64-bit words per row of A and per k column of B
  int64_t out_channels;        // real output channels (the output's row length)
  int64_t padded_channels;     // out_channels rounded up to kPanel: the length of every per-channel array
  float* out;                  // [m_rows][out_channels]
  int32_t k_bits;              // K = C * kh * kw
  const int32_t* border;       // [patterns][padded_channels], or nullptr (no padding anywhere)
  const int32_t* row_pattern;  // [m_rows]: the row's pattern, -1 = no border term; or nullptr
  const float* scale;          // [padded_channels]
  const float* shift;          // [padded_channels]
  const float* slope;          // [padded_channels], or nullptr (no PReLU)
};

// The epilogue of one output, in plain C++: the reference the vector epilogues match.
inline float finish_one(const Gemm& g, int64_t m, int64_t o, int64_t count) {
  int32_t border = 0;
  if (g.row_pattern != nullptr && g.row_pattern[m] >= 0) border = g.border[g.row_pattern[m] * g.padded_channels + o];
  const float dot = static_cast<float>(g.k_bits - 2 * count - border);
  float y = g.scale[o] * dot + g.shift[o];
  if (g.slope != nullptr && !(y > 0.0f)) y *= g.slope[o];
  return y;
}

// Packs `pixels` pixels of `channels` floats each (x, NHWC) into ceil(channels / 64) words per pixel: bit set
// where x + bias < 0 (0 counted as +1), bits beyond the channels 0.
using PackPixelsFn = void (*)(const float* x, const float* bias, int64_t channels, int64_t pixels, uint64_t* words);

// One tile: rows [m_begin, m_end) of A, m_end - m_begin <= PathKernels::tile_rows, against weight panel
// `panel`; writes out[m][panel * kPanel ...] for the real channels of the panel. `rows` points at row
// m_begin in the path's row layout (kw words per row; 2 kw on nibble-plane paths: the row's words split as
// split_nibbles does). The driver guarantees tile_rows rows readable from `rows` (rows past m_end are
// zero padding), so a register tile may load whole tiles; only rows before m_end are written.
using TileFn = void (*)(const Gemm& g, int64_t panel, int64_t m_begin, int64_t m_end, const uint64_t* rows);

// The weight panels ([panels][kw][kPanel] words, kernel_panels' layout) in the layout the path's tile reads.
using LayoutWeightsFn = std::vector<uint64_t> (*)(const std::vector<uint64_t>& panels);

// What one kernel path provides; one table per path, from its own file.
struct PathKernels {
  PackPixelsFn pack_pixels;
  TileFn tile;
  int64_t tile_rows;  // rows per tile call: the register tile (AVX-512), a run of rows (AVX2), 1 (portable)
  // A rows and weights are nibble planes (see Gemm::b and split_nibbles): the driver splits A rows.
  bool nibble_planes;
  // Whether the path runs the conv by runs of output pixels (at most tile_rows each) when all weight panels
  // fit in kRowRunWeightBytes: each run's A rows are made (and split) in a small per-thread buffer that
  // stays in L1, then counted against every weight panel in turn (see binary_conv.cpp).
  bool runs_by_rows;
  LayoutWeightsFn layout_weights;  // nullptr: the panels as they are
};

// The low and the high nibble of each byte of a word, each in the low half of its byte.
constexpr uint64_t kLowNibbles = 0x0f0f0f0f0f0f0f0fULL;
inline uint64_t low_nibbles(uint64_t word) { return word & kLowNibbles; }
inline uint64_t high_nibbles(uint64_t word) { return (word >> 4) & kLowNibbles; }

// words[i] split into its nibble planes (the A rows): out[2 i] = low nibbles, out[2 i + 1] = high nibbles.
inline void split_nibbles(const uint64_t* words, int64_t count, uint64_t* out) {
  for (int64_t i = 0; i < count; ++i) {
    out[2 * i] = low_nibbles(words[i]);
    out[2 * i + 1] = high_nibbles(words[i]);
  }
}

// The table of a path this build and CPU run (select.cpp); Error otherwise.
const PathKernels& path_kernels(KernelPath path);

// The per-path tables, each defined in its own file (only compiled where the architecture has it).
const PathKernels& portable_kernels();  // portable.cpp
#ifdef BNEXT_HAVE_X86
const PathKernels& avx2_kernels();      // x86_avx2.cpp
const PathKernels& avx512_kernels();    // x86_avx512.cpp: AVX-512 with VPOPCNTDQ
const PathKernels& avx512bw_kernels();  // x86_avx512.cpp: AVX-512BW without VPOPCNTDQ
#endif
#ifdef BNEXT_HAVE_NEON
const PathKernels& neon_kernels();  // arm_neon.cpp
#endif

}  // namespace bnext::kernels
