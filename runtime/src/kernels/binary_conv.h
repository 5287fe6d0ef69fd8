// The packed binary convolution: what the graph executor calls. The per-ISA inner loops live in one file per
// ISA under kernels/ (portable.cpp, x86_avx2.cpp, x86_avx512.cpp, ...), behind one selector (select.cpp);
// this interface is the same on every CPU.
//
// y[n][p][o] = PReLU_o(scale[o] * dot + shift[o]),  dot = conv(sign(x + input_shift), sign(w)) with zero
// padding, sign(0) = +1, computed exactly in integers (XNOR / popcount with a border correction).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace bnext {

// Kernel paths. The numeric codes are stable (results files name them).
enum class KernelPath : int { kPortable = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Bw = 3, kNeon = 4 };

const char* kernel_path_name(KernelPath path);  // "portable", "avx2", "avx512", "avx512bw", "neon"
// The path of a name; Error for an unknown name or one this build / CPU cannot run (the message lists
// the ones it can).
KernelPath kernel_path_from_name(const std::string& name);
std::vector<KernelPath> supported_kernel_paths();  // this build on this CPU, slowest first
KernelPath best_kernel_path();                     // the last of supported_kernel_paths()

struct BinaryConvSpec {
  int64_t channels = 0, out_channels = 0, kernel_h = 1, kernel_w = 1, stride = 1, padding = 0;
};

// Scratch memory reused by every binary conv of one model across calls (no allocation per call once a
// shape has been seen). Not shared between concurrent runs.
struct ConvScratch {
  struct Impl;
  ConvScratch();
  ~ConvScratch();
  ConvScratch(const ConvScratch&) = delete;
  ConvScratch& operator=(const ConvScratch&) = delete;
  std::unique_ptr<Impl> impl;
};

class BinaryConv {
 public:
  // bits: uint8 [out_channels][kernel_h * kernel_w][ceil(channels / 32) * 4], bit c % 8 of byte c / 8 of a
  // tap set where w[o][c][ky][kx] < 0 (little-endian bit order, channels padded with 0 bits), as
  // bnext.deploy.packing.pack_signs writes it. input_shift: [channels]. scale, shift: [out_channels].
  // slope: [out_channels] or nullptr (no PReLU). The arrays are copied; the spec is checked (positive
  // sizes, stride >= 1, 0 <= padding < kernel) and an Error thrown otherwise.
  BinaryConv(const BinaryConvSpec& spec, const uint8_t* bits, const float* input_shift, const float* scale,
             const float* shift, const float* slope, KernelPath path);
  ~BinaryConv();
  BinaryConv(BinaryConv&&) noexcept;

  const BinaryConvSpec& spec() const;
  KernelPath path() const;
  // Output side for an input side (floor((in + 2 padding - kernel) / stride) + 1); Error when < 1.
  int64_t out_height(int64_t in_height) const;
  int64_t out_width(int64_t in_width) const;

  // x: float NHWC [n][h][w][channels]; out: float NHWC [n][out_h][out_w][out_channels]. n may be 0 (nothing
  // written). threads >= 1.
  void run(const float* x, int64_t n, int64_t h, int64_t w, float* out, ConvScratch& scratch, int threads) const;

  // The input as packed signs, for an op that packs its output for this conv while the output is still in
  // cache (the graph executor's packed edges), instead of this conv reading it back from memory:
  // words per input pixel (ceil(channels / 64)),
  int64_t pixel_words() const;
  // the words a packed input of `pixels` pixels takes (zero words past the pixels included: whole register
  // tiles are readable; the caller zeroes them once),
  int64_t packed_words(int64_t pixels) const;
  // the signs of `pixels` dense pixels (x: channels floats each) into words, as run() packs them,
  void pack(const float* x, int64_t pixels, uint64_t* words) const;
  // and run() on such an input (packed_words(n * h * w) words, the words past the pixels zero).
  void run_packed(const uint64_t* packed, int64_t n, int64_t h, int64_t w, float* out, ConvScratch& scratch,
                  int threads) const;

 private:
  void check_run(int64_t n, int64_t h, int64_t w, const void* in, const float* out, const ConvScratch& scratch,
                 int threads) const;
  void run_checked(const uint64_t* packed, int64_t n, int64_t h, int64_t w, float* out, ConvScratch& scratch,
                   int threads) const;

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bnext
