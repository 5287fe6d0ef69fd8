#include "ops/dense.h"

#include <algorithm>
#include <cmath>

#include "ops/vectorize.h"

namespace bnext {

float InputQuant::apply(float x) const {
  if (bits == 0) return x;
  const float levels = static_cast<float>((1 << bits) - 1);
  const float alpha = levels / std::max(high - low, 1e-8f);
  // std::max / std::min keep a NaN input NaN, as torch.clamp does.
  const float clamped = std::min(std::max(x, low), high);
  const float code = std::min(std::max(std::nearbyint((clamped - low) * alpha), 0.0f), levels);
  return code / alpha + low;
}

DenseWeights read_dense(const OpReader& reader) {
  DenseWeights dense;
  dense.out = reader.integer("out_features", 1, 1 << 20);
  dense.in = reader.integer("in_features", 1, 1 << 24);
  if (dense.out * dense.in > (int64_t{1} << 28)) reader.fail("the layer has more than 2^28 weights");
  std::vector<float> weight;  // [out][in]
  if (reader.has_param("weight")) {
    weight = reader.floats("weight", dense.out * dense.in);
  } else {
    const int bits = static_cast<int>(reader.integer("weight_bits", 2, 8));
    const int64_t count = dense.out * dense.in;
    const std::vector<uint8_t> codes = reader.bytes("codes", (count * bits + 7) / 8);
    const auto alpha = reader.floats("alpha", dense.out), beta = reader.floats("beta", dense.out);
    const auto scale = reader.floats("scale", dense.out);
    weight.resize(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      int code = 0;
      for (int b = 0; b < bits; ++b) {
        const int64_t bit = i * bits + b;  // little-endian bit order in a little-endian byte stream
        code |= ((codes[bit >> 3] >> (bit & 7)) & 1) << b;
      }
      const int64_t o = i / dense.in;
      weight[i] = (static_cast<float>(code) / alpha[o] + beta[o]) * scale[o];
    }
  }
  dense.weight_t.resize(weight.size());
  for (int64_t o = 0; o < dense.out; ++o)
    for (int64_t i = 0; i < dense.in; ++i) dense.weight_t[i * dense.out + o] = weight[o * dense.in + i];
  dense.bias = reader.has_param("bias") ? reader.floats("bias", dense.out) : std::vector<float>(dense.out, 0.0f);
  if (reader.has("input_quant")) {
    const OpReader quant = reader.nested("input_quant");
    dense.quant.bits = static_cast<int>(quant.integer("bits", 2, 8));
    dense.quant.low = static_cast<float>(quant.number("low"));
    dense.quant.high = static_cast<float>(quant.number("high"));
    if (!(dense.quant.low <= dense.quant.high)) reader.fail("input_quant needs low <= high");
  }
  return dense;
}

namespace {

BNEXT_CLONES void accumulate_rows(const float* weight_t, const float* x, int64_t in, int64_t out, float* sums) {
  for (int64_t i = 0; i < in; ++i) {
    const float v = x[i];
    const float* row = weight_t + i * out;
    for (int64_t o = 0; o < out; ++o) sums[o] += row[o] * v;
  }
}

}  // namespace

void dense_row(const DenseWeights& dense, const float* x, float* out, std::vector<float>& quantized) {
  quantized.resize(dense.in);
  for (int64_t i = 0; i < dense.in; ++i) quantized[i] = dense.quant.apply(x[i]);
  for (int64_t o = 0; o < dense.out; ++o) out[o] = 0.0f;
  accumulate_rows(dense.weight_t.data(), quantized.data(), dense.in, dense.out, out);
  for (int64_t o = 0; o < dense.out; ++o) out[o] += dense.bias[o];
}

}  // namespace bnext
