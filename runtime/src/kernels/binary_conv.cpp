// The binary conv driver: checks the spec, lays out the weights once per layer (panels, border sums, padded
// per-channel arrays, the path's weight layout), and per call packs the activations, makes the bit im2col with
// its border-correction patterns in the reusable scratch, and runs the path's tiles over the GEMM
// (see kernels.h for the GEMM and the contract with the per-ISA files).
#include "kernels/binary_conv.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "error.h"
#include "kernels/kernels.h"
#include "parallel.h"

namespace bnext {

using kernels::Gemm;
using kernels::kPanel;
using kernels::PathKernels;

namespace {

constexpr int64_t kMaxChannels = int64_t{1} << 24;
constexpr int64_t kMaxKernel = 15;
constexpr int64_t kMaxStride = 8;
constexpr int64_t kMaxRowBits = int64_t{1} << 29;      // K = C * kh * kw: dot and 2 * count stay in int32
constexpr int64_t kMaxWeightBytes = int64_t{1} << 34;  // the packed weights of one layer
constexpr int64_t kMaxSide = int64_t{1} << 24;         // input height and width
constexpr int64_t kMaxElements = int64_t{1} << 48;     // floats of one input or output

// 32-bit words of 64-bit buffers: the bit im2col copies taps at 32-bit granularity (may_alias: the same memory
// is read as uint64_t words by the tiles and split_nibbles, in the same function after inlining).
typedef uint32_t __attribute__((__may_alias__)) Word32;

std::string describe(const BinaryConvSpec& spec) {
  return "binary conv " + std::to_string(spec.kernel_h) + "x" + std::to_string(spec.kernel_w) + " " +
         std::to_string(spec.channels) + " -> " + std::to_string(spec.out_channels) + " channels";
}

// Output side for one input side; Error when the input (with padding) is smaller than the kernel. (The checks
// here and in run() build their messages only on failure: no allocation per call.)
int64_t out_side(const BinaryConvSpec& spec, int64_t in, int64_t kernel, const char* side) {
  if (in < 1 || in > kMaxSide)
    throw Error(describe(spec) + ": input " + side + " " + std::to_string(in) + " is outside 1.." +
                std::to_string(kMaxSide));
  if (in + 2 * spec.padding < kernel)
    throw Error(describe(spec) + ": input " + side + " " + std::to_string(in) + " is smaller than the kernel (" +
                std::to_string(kernel) + " with padding " + std::to_string(spec.padding) + ")");
  return (in + 2 * spec.padding - kernel) / spec.stride + 1;
}

// The bit im2col of a k x k conv (or a strided / padded 1x1 conv) at 32-bit granularity: each tap contributes
// ceil(C/32) words; out-of-image taps are 0 (+1), and the row's border pattern is recorded.
struct Im2col {
  const Word32* in32;  // the packed pixels, pixel32 words each
  int64_t h, w, oh, ow, kernel_h, kernel_w, stride, padding;
  int64_t c32, pixel32, used32, kw;
  bool thin_3x3;
  const int64_t* row_cls;
  const int64_t* col_cls;
  int64_t col_classes;
  const int32_t* pattern_id;
  int32_t* row_pattern;

  // Rows [m_begin, m_end) into out_rows (kw words each). Every slot of a row is written here (no separate
  // clearing pass), with plain word loops instead of a memcpy call per tap (c32 is 1 word for the thin
  // 32-channel layers).
  void operator()(int64_t m_begin, int64_t m_end, uint64_t* out_rows) const {
    int64_t b = m_begin / (oh * ow), y = m_begin / ow % oh, x = m_begin % ow;  // then stepped, not divided
    for (int64_t m = m_begin; m < m_end; ++m) {
      row_pattern[m] = pattern_id[row_cls[y] * col_classes + col_cls[x]];
      Word32* row = reinterpret_cast<Word32*>(out_rows + (m - m_begin) * kw);
      const int64_t top = y * stride - padding, left = x * stride - padding;
      if (thin_3x3 && top >= 0 && top + 3 <= h && left >= 0 && left + 3 <= w) {
        // The common case of the 32-channel layers: a 3x3 window inside the image, one word per tap
        // (constant trip counts: 27% faster than the general copy below on the 112 px layer, measured).
        BNEXT_MCA_BEGIN("im2col_thin");
        const Word32* src = in32 + ((b * h + top) * w + left) * pixel32;
        for (int64_t ky = 0; ky < 3; ++ky, src += w * pixel32) {
          row[3 * ky] = src[0];
          row[3 * ky + 1] = src[pixel32];
          row[3 * ky + 2] = src[2 * pixel32];
        }
        BNEXT_MCA_END("im2col_thin");
      } else if (top >= 0 && top + kernel_h <= h && left >= 0 && left + kernel_w <= w) {
        // A window inside the image: plain copies, no per-tap bounds checks.
        Word32* dst = row;
        for (int64_t ky = 0; ky < kernel_h; ++ky) {
          const Word32* src = in32 + ((b * h + top + ky) * w + left) * pixel32;
          for (int64_t kx = 0; kx < kernel_w; ++kx, src += pixel32, dst += c32) {
            BNEXT_MCA_BEGIN("im2col_tap");
            for (int64_t i = 0; i < c32; ++i) {
              BNEXT_MCA_BEGIN("im2col_word");
              dst[i] = src[i];
              BNEXT_MCA_END("im2col_word");
            }
            BNEXT_MCA_END("im2col_tap");
          }
        }
      } else {
        for (int64_t ky = 0; ky < kernel_h; ++ky) {
          const int64_t iy = top + ky;
          const bool row_inside = iy >= 0 && iy < h;
          for (int64_t kx = 0; kx < kernel_w; ++kx) {
            const int64_t ix = left + kx;
            Word32* dst = row + (ky * kernel_w + kx) * c32;
            if (row_inside && ix >= 0 && ix < w) {
              const Word32* src = in32 + ((b * h + iy) * w + ix) * pixel32;
              for (int64_t i = 0; i < c32; ++i) dst[i] = src[i];
            } else {
              for (int64_t i = 0; i < c32; ++i) dst[i] = 0;
            }
          }
        }
      }
      if (used32 < 2 * kw) row[used32] = 0;  // the half word that rounds K up to 64 bits
      if (++x == ow) {
        x = 0;
        if (++y == oh) {
          y = 0;
          ++b;
        }
      }
    }
  }
};

}  // namespace

// ---------------------------------------------------------------- scratch
// Buffers of every conv of one model, grown to the largest shape seen and reused: a fresh multi-MB buffer per
// call costs page faults comparable to the GEMM itself on the large early layers.
struct ConvScratch::Impl {
  std::vector<uint64_t> packed;    // [pixels + tile_rows][pixel words]: the packed activations (run())
  std::vector<uint64_t> columns;   // [m_rows + tile_rows][kw]: the bit im2col (not when run by rows)
  std::vector<uint64_t> planes;    // [m_rows + tile_rows][2 kw]: A as nibble planes (not when run by rows)
  std::vector<uint64_t> run_rows;  // per-thread buffers of the run by rows
  std::vector<int32_t> row_pattern, border_table, pattern_id;
  std::vector<int64_t> row_cls, col_cls;
  std::vector<uint32_t> row_masks, col_masks;
};

ConvScratch::ConvScratch() : impl(std::make_unique<Impl>()) {}
ConvScratch::~ConvScratch() = default;

// ---------------------------------------------------------------- layer
struct BinaryConv::Impl {
  BinaryConvSpec spec;
  KernelPath path;
  const PathKernels* kernels;
  int64_t taps, c32, pixel_words, kw, padded;
  bool direct;   // 1x1, stride 1, no padding: the packed pixels are the A rows
  bool by_rows;  // the path runs by rows and the weights fit kRowRunWeightBytes
  int32_t k_bits;
  std::vector<uint64_t> weights;     // the panels in the path's layout
  std::vector<int32_t> border_sums;  // [padded][taps]: sum over channels of each tap's +-1 weights
  std::vector<float> input_shift;    // [channels]
  std::vector<float> scale, shift;   // [padded]
  std::vector<float> slope;          // [padded], or empty: no PReLU
};

BinaryConv::BinaryConv(const BinaryConvSpec& spec, const uint8_t* bits, const float* input_shift, const float* scale,
                       const float* shift, const float* slope, KernelPath path)
    : impl_(std::make_unique<Impl>()) {
  const std::string name = describe(spec);
  require(spec.channels >= 1 && spec.channels <= kMaxChannels,
          name + ": channels must be in 1.." + std::to_string(kMaxChannels));
  require(spec.out_channels >= 1 && spec.out_channels <= kMaxChannels,
          name + ": output channels must be in 1.." + std::to_string(kMaxChannels));
  require(spec.kernel_h >= 1 && spec.kernel_h <= kMaxKernel && spec.kernel_w >= 1 && spec.kernel_w <= kMaxKernel,
          name + ": the kernel size must be in 1.." + std::to_string(kMaxKernel));
  require(spec.stride >= 1 && spec.stride <= kMaxStride,
          name + ": stride " + std::to_string(spec.stride) + " is outside 1.." + std::to_string(kMaxStride));
  require(spec.padding >= 0 && spec.padding < spec.kernel_h && spec.padding < spec.kernel_w,
          name + ": padding " + std::to_string(spec.padding) + " must be at least 0 and below the kernel size");
  require(bits != nullptr && input_shift != nullptr && scale != nullptr && shift != nullptr,
          name + ": missing weights, input shift, scale or shift");
  Impl& l = *impl_;
  l.spec = spec;
  l.path = path;
  l.kernels = &kernels::path_kernels(path);
  const int64_t channels = spec.channels, out_channels = spec.out_channels;
  l.taps = spec.kernel_h * spec.kernel_w;
  l.c32 = (channels + 31) / 32;
  l.pixel_words = (channels + 63) / 64;
  require(channels * l.taps <= kMaxRowBits, name + ": channels x kernel taps exceed " + std::to_string(kMaxRowBits));
  const int64_t tap_bytes = l.c32 * 4, row_bytes = l.taps * tap_bytes;
  require(out_channels * row_bytes <= kMaxWeightBytes, name + ": the packed weights are too large");
  l.kw = (l.taps * l.c32 + 1) / 2;  // the rows' 32-bit words rounded up to 64 bits (the pixel words when 1x1)
  l.padded = (out_channels + kPanel - 1) / kPanel * kPanel;
  l.direct = spec.kernel_h == 1 && spec.kernel_w == 1 && spec.stride == 1 && spec.padding == 0;
  l.k_bits = static_cast<int32_t>(channels * l.taps);

  // The panels ([panels][kw][kPanel] words, packing.kernel_panels) and border sums (packing.border_sums), from
  // the bits with the channels' padding bits cleared (they must not count as mismatches).
  std::vector<uint64_t> panels(l.padded * l.kw, 0);
  l.border_sums.assign(l.padded * l.taps, 0);
  std::vector<uint8_t> row(l.kw * 8);
  for (int64_t o = 0; o < out_channels; ++o) {
    std::fill(row.begin(), row.end(), uint8_t{0});
    std::memcpy(row.data(), bits + o * row_bytes, row_bytes);
    for (int64_t t = 0; t < l.taps; ++t) {
      uint8_t* tap = row.data() + t * tap_bytes;
      for (int64_t c = channels; c < l.c32 * 32; ++c) tap[c / 8] &= static_cast<uint8_t>(~(1u << (c % 8)));
      int64_t negatives = 0;
      for (int64_t i = 0; i < tap_bytes; ++i) negatives += __builtin_popcount(tap[i]);
      l.border_sums[o * l.taps + t] = static_cast<int32_t>(channels - 2 * negatives);
    }
    const int64_t panel = o / kPanel, j = o % kPanel;
    for (int64_t k = 0; k < l.kw; ++k) std::memcpy(&panels[(panel * l.kw + k) * kPanel + j], row.data() + 8 * k, 8);
  }
  l.weights = l.kernels->layout_weights != nullptr ? l.kernels->layout_weights(panels) : std::move(panels);

  // Per-channel arrays padded to whole panels (the vector epilogues read 8 channels at a time).
  l.input_shift.assign(input_shift, input_shift + channels);
  l.scale.assign(l.padded, 1.0f);
  l.shift.assign(l.padded, 0.0f);
  std::copy(scale, scale + out_channels, l.scale.begin());
  std::copy(shift, shift + out_channels, l.shift.begin());
  // A slope of all 1 is no PReLU (y * 1 = y): dropped, so the kernels take their loops without it.
  if (slope != nullptr && std::any_of(slope, slope + out_channels, [](float s) { return !(s == 1.0f); })) {
    l.slope.assign(l.padded, 1.0f);
    std::copy(slope, slope + out_channels, l.slope.begin());
  }
  l.by_rows = l.kernels->runs_by_rows &&
              l.kw * l.padded * static_cast<int64_t>(sizeof(uint64_t)) <= kernels::kRowRunWeightBytes;
}

BinaryConv::~BinaryConv() = default;
BinaryConv::BinaryConv(BinaryConv&&) noexcept = default;

const BinaryConvSpec& BinaryConv::spec() const { return impl_->spec; }
KernelPath BinaryConv::path() const { return impl_->path; }

int64_t BinaryConv::out_height(int64_t in_height) const {
  return out_side(impl_->spec, in_height, impl_->spec.kernel_h, "height");
}

int64_t BinaryConv::out_width(int64_t in_width) const {
  return out_side(impl_->spec, in_width, impl_->spec.kernel_w, "width");
}

namespace {

// The GEMM tile by tile: row tiles of the path's tile_rows against each panel. a: the A rows in the path's row
// layout (row_words each), readable for tile_rows rows past the last.
void run_gemm(const Gemm& g, const PathKernels& path, const uint64_t* a, int64_t row_words, int threads) {
  const int64_t rows = path.tile_rows;
  const int64_t panels = g.padded_channels / kPanel;
  const int64_t row_tiles = (g.m_rows + rows - 1) / rows;
  // Panel-major order: consecutive tiles of one thread reuse the same weight panel from L1/L2.
  parallel_for(0, panels * row_tiles, 1, threads, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t panel = t / row_tiles;
      const int64_t m0 = (t % row_tiles) * rows;
      path.tile(g, panel, m0, std::min(m0 + rows, g.m_rows), a + m0 * row_words);
    }
  });
}

// The conv by runs of output pixels: each run's A rows are made (the bit im2col, or for a 1x1 conv its packed
// pixels) and split into nibble planes in a small per-thread buffer that stays in L1, then counted against
// every weight panel in turn, so that the run's output pixels are written whole, one after the other. No
// image-sized column buffer is written and read back, and the output is one sequential stream instead of one
// strided pass per panel: on a 1x1 conv at 56 px with another process streaming memory on the other core, 15%
// less time at 192 channels (neutral on a quiet machine, interleaved A/B, AVX2 EPYC). Used when all weight
// panels fit in L2 (kRowRunWeightBytes). im2col: nullptr for a direct 1x1 conv, whose rows are `a`.
void run_gemm_by_rows(const Gemm& g, const PathKernels& path, const uint64_t* a, const Im2col* im2col,
                      std::vector<uint64_t>& buffers, int threads) {
  const int64_t run = path.tile_rows;
  const int64_t panels = g.padded_channels / kPanel;
  const int64_t row_words = path.nibble_planes ? 2 * g.kw : g.kw;
  // Runs of at most `run` rows, as many as a multiple of the thread count (even shares on small maps).
  const int64_t chunks = ((g.m_rows + run - 1) / run + threads - 1) / threads * threads;
  const int64_t chunk_rows = (g.m_rows + chunks - 1) / chunks;
  const int64_t buffer_rows = (chunk_rows + run - 1) / run * run;  // whole tiles readable
  const int64_t row_buffer = im2col != nullptr ? buffer_rows * g.kw : 0;
  const int64_t plane_buffer = path.nibble_planes ? buffer_rows * row_words : 0;
  const int64_t slots = std::min<int64_t>(threads, chunks);  // one buffer per slot, one slot per thread
  buffers.resize(slots * (row_buffer + plane_buffer));
  parallel_for(0, slots, 1, threads, [&](int64_t slot_begin, int64_t slot_end) {
    for (int64_t slot = slot_begin; slot < slot_end; ++slot) {
      uint64_t* rows = buffers.data() + slot * (row_buffer + plane_buffer);
      uint64_t* planes = rows + row_buffer;
      for (int64_t chunk = chunks * slot / slots; chunk < chunks * (slot + 1) / slots; ++chunk) {
        const int64_t m0 = chunk * chunk_rows, m1 = std::min(m0 + chunk_rows, g.m_rows);
        if (m0 >= m1) break;
        const int64_t count = m1 - m0;
        const uint64_t* words = a + m0 * g.kw;  // direct: the packed pixels, padded past the end
        if (im2col != nullptr) {
          (*im2col)(m0, m1, rows);
          std::fill(rows + count * g.kw, rows + buffer_rows * g.kw, uint64_t{0});
          words = rows;
        }
        const uint64_t* tile_input = words;
        if (path.nibble_planes) {
          kernels::split_nibbles(words, count * g.kw, planes);
          std::fill(planes + count * row_words, planes + buffer_rows * row_words, uint64_t{0});
          tile_input = planes;
        }
        for (int64_t panel = 0; panel < panels; ++panel)
          for (int64_t r0 = m0; r0 < m1; r0 += run)
            path.tile(g, panel, r0, std::min(r0 + run, m1), tile_input + (r0 - m0) * row_words);
      }
    }
  });
}

}  // namespace

// The checks of run() and run_packed(): the batch fits, the buffers are given; the output side.
void BinaryConv::check_run(int64_t n, int64_t h, int64_t w, const void* in, const float* out,
                           const ConvScratch& scratch, int threads) const {
  const BinaryConvSpec& spec = impl_->spec;
  if (n < 0) throw Error(describe(spec) + ": negative batch size " + std::to_string(n));
  if (threads < 1) throw Error(describe(spec) + ": threads must be at least 1");
  const int64_t oh = out_height(h), ow = out_width(w);
  if (n > kMaxElements / (h * w) / spec.channels || n > kMaxElements / (oh * ow) / spec.out_channels)
    throw Error(describe(spec) + ": a batch of " + std::to_string(n) + " " + std::to_string(h) + "x" +
                std::to_string(w) + " inputs is too large");
  if (n > 0 && (in == nullptr || out == nullptr)) throw Error(describe(spec) + ": missing input or output");
  if (scratch.impl == nullptr) throw Error(describe(spec) + ": the scratch was moved from");
}

int64_t BinaryConv::pixel_words() const { return impl_->pixel_words; }

int64_t BinaryConv::packed_words(int64_t pixels) const {
  return (pixels + impl_->kernels->tile_rows) * impl_->pixel_words;
}

void BinaryConv::pack(const float* x, int64_t pixels, uint64_t* words) const {
  const Impl& l = *impl_;
  l.kernels->pack_pixels(x, l.input_shift.data(), l.spec.channels, pixels, words);
}

void BinaryConv::run(const float* x, int64_t n, int64_t h, int64_t w, float* out, ConvScratch& scratch,
                     int threads) const {
  check_run(n, h, w, x, out, scratch, threads);
  if (n == 0) return;
  const Impl& l = *impl_;
  const int64_t pixels = n * h * w, channels = l.spec.channels, pixel_words = l.pixel_words;
  // The activations' signs, ceil(C/64) words per pixel, then zero words: whole tiles are readable.
  std::vector<uint64_t>& packed = scratch.impl->packed;
  packed.resize(packed_words(pixels));
  std::fill(packed.begin() + pixels * pixel_words, packed.end(), uint64_t{0});
  parallel_for(0, pixels, 256, threads, [&](int64_t begin, int64_t end) {
    pack(x + begin * channels, end - begin, packed.data() + begin * pixel_words);
  });
  run_checked(packed.data(), n, h, w, out, scratch, threads);
}

void BinaryConv::run_packed(const uint64_t* packed, int64_t n, int64_t h, int64_t w, float* out, ConvScratch& scratch,
                            int threads) const {
  check_run(n, h, w, packed, out, scratch, threads);
  if (n > 0) run_checked(packed, n, h, w, out, scratch, threads);
}

void BinaryConv::run_checked(const uint64_t* packed, int64_t n, int64_t h, int64_t w, float* out, ConvScratch& scratch,
                             int threads) const {
  const Impl& l = *impl_;
  const BinaryConvSpec& spec = l.spec;
  ConvScratch::Impl& s = *scratch.impl;
  const PathKernels& path = *l.kernels;
  const int64_t oh = out_height(h), ow = out_width(w), m_rows = n * oh * ow;
  const int64_t pad_rows = path.tile_rows;  // zero rows past the end of A: whole tiles are readable
  const int64_t kw = l.kw, pixel_words = l.pixel_words;

  Gemm g{};
  g.b = l.weights.data();
  g.m_rows = m_rows;
  g.kw = kw;
  g.out_channels = spec.out_channels;
  g.padded_channels = l.padded;
  g.out = out;
  g.k_bits = l.k_bits;
  g.border = nullptr;  // set below unless the conv is direct
  g.row_pattern = nullptr;
  g.scale = l.scale.data();
  g.shift = l.shift.data();
  g.slope = l.slope.empty() ? nullptr : l.slope.data();
  const uint64_t* a = packed;  // the A rows as words
  Im2col im2col{};
  if (!l.direct) {
    // Which taps fall outside the image depends on the output row (vertical) and column (horizontal)
    // separately; each distinct (row class, column class) pair is one pattern.
    auto classes = [&](int64_t out_size, int64_t in_size, int64_t kernel, std::vector<int64_t>& cls,
                       std::vector<uint32_t>& masks) {
      cls.resize(out_size);
      masks.clear();
      for (int64_t i = 0; i < out_size; ++i) {
        uint32_t mask = 0;
        for (int64_t t = 0; t < kernel; ++t) {
          const int64_t at = i * spec.stride - spec.padding + t;
          if (at < 0 || at >= in_size) mask |= 1u << t;
        }
        auto found = std::find(masks.begin(), masks.end(), mask);
        cls[i] = found - masks.begin();
        if (found == masks.end()) masks.push_back(mask);
      }
    };
    classes(oh, h, spec.kernel_h, s.row_cls, s.row_masks);
    classes(ow, w, spec.kernel_w, s.col_cls, s.col_masks);
    const int64_t row_classes = static_cast<int64_t>(s.row_masks.size());
    const int64_t col_classes = static_cast<int64_t>(s.col_masks.size());
    const int64_t patterns = row_classes * col_classes;
    s.border_table.assign(patterns * l.padded, 0);
    s.pattern_id.assign(patterns, -1);
    const int32_t* sums = l.border_sums.data();
    int32_t* table = s.border_table.data();
    for (int64_t rc = 0; rc < row_classes; ++rc) {
      for (int64_t cc = 0; cc < col_classes; ++cc) {
        const int64_t id = rc * col_classes + cc;
        if (s.row_masks[rc] == 0 && s.col_masks[cc] == 0) continue;
        s.pattern_id[id] = static_cast<int32_t>(id);
        for (int64_t ky = 0; ky < spec.kernel_h; ++ky)
          for (int64_t kx = 0; kx < spec.kernel_w; ++kx)
            if ((s.row_masks[rc] >> ky & 1) || (s.col_masks[cc] >> kx & 1))
              for (int64_t o = 0; o < l.padded; ++o)
                table[id * l.padded + o] += sums[o * l.taps + ky * spec.kernel_w + kx];
      }
    }
    s.row_pattern.resize(m_rows);
    im2col.in32 = reinterpret_cast<const Word32*>(packed);
    im2col.h = h;
    im2col.w = w;
    im2col.oh = oh;
    im2col.ow = ow;
    im2col.kernel_h = spec.kernel_h;
    im2col.kernel_w = spec.kernel_w;
    im2col.stride = spec.stride;
    im2col.padding = spec.padding;
    im2col.c32 = l.c32;
    im2col.pixel32 = 2 * pixel_words;
    im2col.used32 = l.taps * l.c32;
    im2col.kw = kw;
    im2col.thin_3x3 = spec.kernel_h == 3 && spec.kernel_w == 3 && l.c32 == 1;
    im2col.row_cls = s.row_cls.data();
    im2col.col_cls = s.col_cls.data();
    im2col.col_classes = col_classes;
    im2col.pattern_id = s.pattern_id.data();
    im2col.row_pattern = s.row_pattern.data();
    g.border = s.border_table.data();
    g.row_pattern = s.row_pattern.data();
    if (!l.by_rows) {
      s.columns.resize((m_rows + pad_rows) * kw);
      uint64_t* columns = s.columns.data();
      std::fill(columns + m_rows * kw, columns + (m_rows + pad_rows) * kw, uint64_t{0});
      parallel_for(0, m_rows, 64, threads,
                   [&](int64_t begin, int64_t end) { im2col(begin, end, columns + begin * kw); });
      a = columns;
    }
  }
  if (l.by_rows) {  // the runner by rows makes (and splits) its rows itself, per run of pixels
    run_gemm_by_rows(g, path, a, l.direct ? nullptr : &im2col, s.run_rows, threads);
    return;
  }
  if (path.nibble_planes) {  // A as nibble planes, the padding rows included (zero words split to zero planes)
    s.planes.resize(2 * (m_rows + pad_rows) * kw);
    uint64_t* planes = s.planes.data();
    parallel_for(0, m_rows + pad_rows, 256, threads, [&](int64_t begin, int64_t end) {
      kernels::split_nibbles(a + begin * kw, (end - begin) * kw, planes + 2 * begin * kw);
    });
    run_gemm(g, path, planes, 2 * kw, threads);
    return;
  }
  run_gemm(g, path, a, kw, threads);
}

}  // namespace bnext
