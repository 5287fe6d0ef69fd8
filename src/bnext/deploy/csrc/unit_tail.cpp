// The fp tail of a BNext unit in one call: Info-RCP gate, second BatchNorm, ELM product and residual.
//
// After the packed conv gives y (BN1 + PReLU applied), a unit computes
//   g[n][c]  = sigmoid(E relu(S pooled[n] + bs) + be)[c],  pooled = s * mean_hw(source) + (1 - s) * mean_hw(y)
//   out      = residual + shift + scale * g * y * (elm ? residual : 1)
// (g = 1 without a gate; scale = 1, shift = 0 for a plain unit without Info-RCP). Done as two passes over
// memory (the means, then the output) instead of about a dozen torch ops, each a pass and a dispatch.
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

BNEXT_CLONES void add_pixels(const float* x, int64_t p0, int64_t p1, int64_t channels, float* sums) {
  for (int64_t p = p0; p < p1; ++p) {
    const float* pixel = x + p * channels;
    for (int64_t c = 0; c < channels; ++c) sums[c] += pixel[c];
  }
}

// out[p] = r[p] + shift + k * y[p] (* r[p] with elm) for pixels [p0, p1); k is per sample of ``pixels`` pixels.
BNEXT_CLONES void tail_pixels(const float* y, const float* r, const float* k, const float* shift, float* out,
                              int64_t p0, int64_t p1, int64_t pixels, int64_t channels, int64_t out_channels,
                              bool elm) {
  for (int64_t p = p0; p < p1; ++p) {
    const float* kv = k + (p / pixels) * channels;
    const float *yv = y + p * channels, *rv = r + p * channels;
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

// Per-sample channel means of a [N, P, C] tensor (P pixels), summed over pixel blocks in parallel.
std::vector<float> channel_means(const float* x, int64_t n, int64_t pixels, int64_t channels) {
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), pixels / 16));
  std::vector<double> partial(n * blocks * channels, 0.0);
  at::parallel_for(0, n * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> sums(channels);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t sample = t / blocks, block = t % blocks;
      const int64_t p0 = pixels * block / blocks, p1 = pixels * (block + 1) / blocks;
      std::fill(sums.begin(), sums.end(), 0.0f);
      add_pixels(x + sample * pixels * channels, p0, p1, channels, sums.data());
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

}  // namespace

// y, residual, source: float [N, C, H, W] in channels_last memory. gate: {mix [C], S^T [C, Cr], bs [Cr],
// E^T [Cr, C], be [C]} (the 1x1 convs' matrices transposed) or empty (no Info-RCP). scale, shift: [C].
// Returns float [N, C, H, W] channels_last, or, given ``into`` (float [N, C', H, W] channels_last), writes
// channels [offset, offset + C) of it and returns it: a block's concatenation of unit outputs without a copy.
torch::Tensor unit_tail(torch::Tensor y, torch::Tensor residual, torch::Tensor source, std::vector<torch::Tensor> gate,
                        torch::Tensor scale, torch::Tensor shift, bool elm, c10::optional<torch::Tensor> into,
                        int64_t offset) {
  TORCH_CHECK(y.dim() == 4 && y.scalar_type() == torch::kFloat, "unit_tail expects float NCHW tensors");
  TORCH_CHECK(y.sizes() == residual.sizes() && y.sizes() == source.sizes(), "y, residual and source differ in shape");
  TORCH_CHECK(gate.empty() || gate.size() == 5, "gate is {mix, S^T, bs, E^T, be} or empty");
  const auto layout = at::MemoryFormat::ChannelsLast;
  y = y.contiguous(layout);
  residual = residual.contiguous(layout);
  source = source.contiguous(layout);
  const int64_t n = y.size(0), channels = y.size(1), pixels = y.size(2) * y.size(3);
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
    const auto mean_y = channel_means(nhwc(y), n, pixels, channels);
    const auto mean_s = channel_means(nhwc(source), n, pixels, channels);
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
  const float *yp = nhwc(y), *rp = nhwc(residual), *b = shift_c.data_ptr<float>();
  float* op = out.data_ptr<float>() + offset;
  at::parallel_for(0, n * pixels, 256, [&](int64_t begin, int64_t end) {
    tail_pixels(yp, rp, coefficient.data(), b, op, begin, end, pixels, channels, out_channels, elm);
  });
  return out;
}
