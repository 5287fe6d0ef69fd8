// A dense layer's weights as the .bnx stores them (fp32, or PTQ integer codes dequantized at load) and its
// optional input fake quantization (calibrated range), with the arithmetic of bnext.quant.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/op.h"

namespace bnext {

// x_hat = round((clamp(x, low, high) - low) * alpha) / alpha + low, alpha = (2^bits - 1) / max(high - low, 1e-8).
struct InputQuant {
  int bits = 0;  // 0: none
  float low = 0.0f, high = 0.0f;
  float apply(float x) const;
};

struct DenseWeights {
  int64_t out = 0, in = 0;
  std::vector<float> weight_t;  // [in][out]: PyTorch's [out][in] transposed, so that loops over outputs vectorize
  std::vector<float> bias;      // [out], zeros when the layer has none
  InputQuant quant;
};

// Reads "weight" (float32 [out * in]) or "codes" (uint8, weight_bits per value) with "alpha", "beta",
// "scale" ([out] each), the optional "bias", and attrs out_features, in_features, weight_bits,
// input_quant {bits, low, high}. Codes dequantize as (code / alpha + beta) * scale, in float32.
DenseWeights read_dense(const OpReader& reader);

// out[o] = bias[o] + sum_i w[o][i] * q(x[i]) for one input row (the gates' and the classifier's shapes).
void dense_row(const DenseWeights& dense, const float* x, float* out, std::vector<float>& quantized);

}  // namespace bnext
