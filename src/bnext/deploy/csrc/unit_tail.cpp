// The fp tail of a BNext unit in one call: residual shortcut, Info-RCP gate, second BatchNorm, ELM product.
//
// After the packed conv gives y (BN1 + PReLU applied), a unit with input x computes
//   r        = shortcut(act(x))  (act: the ELM unit's PReLU or none; shortcut: identity or 2x2 average pool)
//   g[n][c]  = sigmoid(E relu(S pooled[n] + bs) + be)[c],  pooled = s * mean_hw(source) + (1 - s) * mean_hw(y)
//   out      = r + shift + scale * g * y * (elm ? r : 1)
// with source = r, or shortcut(x) without the activation (g = 1 without a gate; scale = 1, shift = 0 for a
// plain unit without Info-RCP). Done as two passes over memory (the means, then the output), r computed
// per pixel where it is read, instead of about a dozen torch ops, each a pass and a dispatch. A shortcut of
// another kind (BNext-18's fp downsample) is computed by the caller and passed as x with no act and no pool.
// All activations are float NHWC (channels_last); the gate's S / E come as plain matrices, transposed.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

// The per-pixel loops are compiled twice, for AVX2 and for any x86-64, and the loader picks the clone
// the CPU runs (GCC function multiversioning): the extension's flags themselves assume no ISA.
#define BNEXT_CLONES __attribute__((target_clones("avx2", "default")))

// A float NHWC tensor read per output pixel, optionally through a PReLU (``slope``) and a 2x2 average pool
// (``pool``: output pixel (i, j) averages input pixels (2i..2i+1, 2j..2j+1), as torch's AvgPool2d(2) sums
// them in that order and divides by 4; odd last rows / columns are dropped).
struct PixelSource {
  const float* x;
  int64_t in_h, in_w, out_h, out_w, channels;
  const float* slope;  // nullptr: no activation
  bool pool;

  // The values of output pixel p (all samples' pixels numbered in order): x's own row, or ``buffer`` filled.
  // One branch-free loop per case, so that each vectorizes.
  inline const float* at(int64_t p, float* __restrict buffer) const {
    if (!pool && slope == nullptr) return x + p * channels;
    if (!pool) {
      const float* v = x + p * channels;
      for (int64_t c = 0; c < channels; ++c) buffer[c] = prelu(v[c], slope[c]);
      return buffer;
    }
    const int64_t per_sample = out_h * out_w, sample = p / per_sample, i = p % per_sample / out_w, j = p % out_w;
    const float* top = x + ((sample * in_h + 2 * i) * in_w + 2 * j) * channels;
    const float *top_right = top + channels, *bottom = top + in_w * channels, *bottom_right = bottom + channels;
    if (slope == nullptr) {
      for (int64_t c = 0; c < channels; ++c) buffer[c] = (top[c] + top_right[c] + bottom[c] + bottom_right[c]) / 4.0f;
    } else {
      for (int64_t c = 0; c < channels; ++c) {
        const float s = slope[c];
        buffer[c] = (prelu(top[c], s) + prelu(top_right[c], s) + prelu(bottom[c], s) + prelu(bottom_right[c], s)) / 4.0f;
      }
    }
    return buffer;
  }

  // v > 0 ? v : s * v, written without a branch (same value: one of the two terms is 0): GCC turned the
  // conditional form into a mispredicted branch per value here (16x slower, measured), not a blend.
  static inline float prelu(float v, float s) { return std::max(v, 0.0f) + s * std::min(v, 0.0f); }
};

BNEXT_CLONES void add_pixels(const PixelSource& source, int64_t p0, int64_t p1, float* sums, float* buffer) {
  for (int64_t p = p0; p < p1; ++p) {
    const float* pixel = source.at(p, buffer);
    for (int64_t c = 0; c < source.channels; ++c) sums[c] += pixel[c];
  }
}

// out[p] = r[p] + shift + k * y[p] (* r[p] with elm) for pixels [p0, p1); k is per sample of ``pixels`` pixels.
BNEXT_CLONES void tail_pixels(const float* y, const PixelSource& residual, const float* k, const float* shift,
                              float* out, int64_t p0, int64_t p1, int64_t pixels, int64_t out_channels, bool elm,
                              float* buffer) {
  const int64_t channels = residual.channels;
  for (int64_t p = p0; p < p1; ++p) {
    const float* kv = k + (p / pixels) * channels;
    const float *yv = y + p * channels, *rv = residual.at(p, buffer);
    float* ov = out + p * out_channels;
    if (elm) {
      for (int64_t c = 0; c < channels; ++c) ov[c] = rv[c] + shift[c] + kv[c] * (yv[c] * rv[c]);
    } else {
      for (int64_t c = 0; c < channels; ++c) ov[c] = rv[c] + shift[c] + kv[c] * yv[c];
    }
  }
}

// out[j] = bias[j] + sum_i in[i] * matrix_t[i][j] with the matrix stored transposed ([inputs][outputs]):
// the inner loop runs along contiguous outputs, so it vectorizes without reordering any float sum.
BNEXT_CLONES void affine_t(const float* in, const float* matrix_t, const float* bias, int64_t inputs, int64_t outputs,
                           float* out) {
  for (int64_t j = 0; j < outputs; ++j) out[j] = bias[j];
  for (int64_t i = 0; i < inputs; ++i) {
    const float v = in[i];
    const float* row = matrix_t + i * outputs;
    for (int64_t j = 0; j < outputs; ++j) out[j] += row[j] * v;
  }
}

// Per-sample channel means of a source of N x P pixels, summed over pixel blocks in parallel.
std::vector<float> channel_means(const PixelSource& source, int64_t n, int64_t pixels) {
  const int64_t channels = source.channels;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), pixels / 16));
  std::vector<double> partial(n * blocks * channels, 0.0);
  at::parallel_for(0, n * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> sums(channels), buffer(channels);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t sample = t / blocks, block = t % blocks;
      const int64_t p0 = pixels * block / blocks, p1 = pixels * (block + 1) / blocks;
      std::fill(sums.begin(), sums.end(), 0.0f);
      add_pixels(source, sample * pixels + p0, sample * pixels + p1, sums.data(), buffer.data());
      std::copy(sums.begin(), sums.end(), partial.begin() + t * channels);
    }
  });
  std::vector<float> means(n * channels, 0.0f);
  for (int64_t sample = 0; sample < n; ++sample)
    for (int64_t c = 0; c < channels; ++c) {
      double total = 0.0;
      for (int64_t block = 0; block < blocks; ++block) total += partial[(sample * blocks + block) * channels + c];
      means[sample * channels + c] = static_cast<float>(total / pixels);
    }
  return means;
}

const float* nhwc(const torch::Tensor& t) { return t.data_ptr<float>(); }

PixelSource plain(const torch::Tensor& t) {
  return {nhwc(t), t.size(2), t.size(3), t.size(2), t.size(3), t.size(1), nullptr, false};
}

}  // namespace

// y: float [N, C, H, W] and x: float [N, C, H', W'] in channels_last memory, x the residual's input (H' = H,
// or 2H..2H+1 with ``pool``). slope: the PReLU applied to x before the shortcut, or None. gate_before_act: the
// gate's source is shortcut(x) rather than r. gate: {mix [C], S^T [C, Cr], bs [Cr], E^T [Cr, C], be [C]} (the
// 1x1 convs' matrices transposed) or empty (no Info-RCP). scale, shift: [C]. Returns float [N, C, H, W]
// channels_last, or, given ``into`` (float [N, C', H, W] channels_last), writes channels [offset, offset + C)
// of it and returns it: a block's concatenation of unit outputs without a copy.
torch::Tensor unit_tail(torch::Tensor y, torch::Tensor x, c10::optional<torch::Tensor> slope, bool pool,
                        bool gate_before_act, std::vector<torch::Tensor> gate, torch::Tensor scale,
                        torch::Tensor shift, bool elm, c10::optional<torch::Tensor> into, int64_t offset) {
  TORCH_CHECK(y.dim() == 4 && x.dim() == 4 && y.scalar_type() == torch::kFloat && x.scalar_type() == torch::kFloat,
              "unit_tail expects float NCHW tensors");
  const bool same = x.size(2) == y.size(2) && x.size(3) == y.size(3);
  const bool halved = x.size(2) / 2 == y.size(2) && x.size(3) / 2 == y.size(3);
  TORCH_CHECK(x.size(0) == y.size(0) && x.size(1) == y.size(1) && (pool ? halved : same),
              "x and y differ in shape (x must be y's size, or twice it with pool)");
  TORCH_CHECK(gate.empty() || gate.size() == 5, "gate is {mix, S^T, bs, E^T, be} or empty");
  const auto layout = at::MemoryFormat::ChannelsLast;
  y = y.contiguous(layout);
  x = x.contiguous(layout);
  const int64_t n = y.size(0), channels = y.size(1), pixels = y.size(2) * y.size(3);
  torch::Tensor slope_c;
  if (slope.has_value()) {
    slope_c = slope->contiguous().to(torch::kFloat);
    TORCH_CHECK(slope_c.numel() == channels, "slope has ", slope_c.numel(), " entries for ", channels, " channels");
  }
  const PixelSource residual{nhwc(x), x.size(2), x.size(3), y.size(2), y.size(3), channels,
                             slope.has_value() ? slope_c.data_ptr<float>() : nullptr, pool};
  std::vector<float> coefficient(n * channels);
  const auto scale_c = scale.contiguous(), shift_c = shift.contiguous();
  const float* a = scale_c.data_ptr<float>();
  if (gate.empty()) {
    for (int64_t i = 0; i < n * channels; ++i) coefficient[i] = a[i % channels];
  } else {
    for (auto& t : gate) t = t.contiguous();
    const float* mix = gate[0].data_ptr<float>();
    const float *squeeze_t = gate[1].data_ptr<float>(), *squeeze_bias = gate[2].data_ptr<float>();
    const float *expand_t = gate[3].data_ptr<float>(), *expand_bias = gate[4].data_ptr<float>();
    const int64_t hidden = gate[1].size(1);
    TORCH_CHECK(gate[1].size(0) == channels && gate[3].size(1) == channels && gate[3].size(0) == hidden,
                "gate matrices (transposed: S^T [C, Cr], E^T [Cr, C]) do not match the channel count");
    PixelSource source = residual;
    if (gate_before_act) source.slope = nullptr;
    const auto mean_y = channel_means(plain(y), n, pixels);
    const auto mean_s = channel_means(source, n, pixels);
    std::vector<float> pooled(channels), inner(hidden), logit(channels);
    for (int64_t sample = 0; sample < n; ++sample) {
      for (int64_t c = 0; c < channels; ++c)
        pooled[c] = mix[c] * mean_s[sample * channels + c] + (1.0f - mix[c]) * mean_y[sample * channels + c];
      affine_t(pooled.data(), squeeze_t, squeeze_bias, channels, hidden, inner.data());
      for (auto& v : inner) v = std::max(v, 0.0f);
      affine_t(inner.data(), expand_t, expand_bias, hidden, channels, logit.data());
      for (int64_t c = 0; c < channels; ++c)
        coefficient[sample * channels + c] = a[c] / (1.0f + std::exp(-logit[c]));
    }
  }
  torch::Tensor out;
  int64_t out_channels = channels;
  if (into.has_value()) {
    out = *into;
    TORCH_CHECK(out.dim() == 4 && out.scalar_type() == torch::kFloat && out.is_contiguous(layout),
                "into must be a float channels_last tensor");
    TORCH_CHECK(out.size(0) == n && out.size(2) == y.size(2) && out.size(3) == y.size(3) && offset >= 0 &&
                    offset + channels <= out.size(1),
                "into has no room for channels [", offset, ", ", offset + channels, ") of this shape");
    out_channels = out.size(1);
  } else {
    out = torch::empty_like(y, y.options().memory_format(layout));
    offset = 0;
  }
  const float *yp = nhwc(y), *b = shift_c.data_ptr<float>();
  float* op = out.data_ptr<float>() + offset;
  at::parallel_for(0, n * pixels, 256, [&](int64_t begin, int64_t end) {
    std::vector<float> buffer(channels);
    tail_pixels(yp, residual, coefficient.data(), b, op, begin, end, pixels, out_channels, elm, buffer.data());
  });
  return out;
}
