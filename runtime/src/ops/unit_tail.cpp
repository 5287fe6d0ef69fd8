// unit_tail: everything a binary unit computes after its binary conv y, in two passes over memory (the
// channel means for the gate, then one pass writing the output), instead of a dozen elementwise ops:
//
//   r    = residual                       when given (an fp downsample computed by other ops), else
//        = pool?(act?(x))                 act: a PReLU (BNext's ELM unit); pool: 2x2 average
//   g    = sigmoid(E relu(S pooled))      per sample, with S, E dense (fp32 or PTQ) and
//          pooled = mix * mean(source) + (1 - mix) * mean(y)   (pooled = mean(source) without mix);
//          source = r, pool?(x) ("shortcut") or gate_input; g = 1 without a gate
//   out  = post(norm_scale * g * y * (elm ? r : 1) + norm_shift + r)
//          post: nothing, PReLU, or RPReLU (shift_in, PReLU, shift_out)
//
// r is computed per pixel where it is read, never stored. See docs/bnx-format.md.
#include <algorithm>
#include <cmath>

#include "ops/dense.h"
#include "ops/ops.h"
#include "ops/vectorize.h"
#include "parallel.h"

namespace bnext {
namespace {

// v > 0 ? v : s * v without a branch (the same value: one of the terms is 0). GCC made the conditional
// form a mispredicted branch per value in the fused tail (16x slower, measured in the torch extension).
inline float prelu(float v, float s) { return std::max(v, 0.0f) + s * std::min(v, 0.0f); }

// A float NHWC tensor read per output pixel through an optional PReLU and an optional 2x2 average pool
// (output pixel (i, j) averages input pixels (2i..2i+1, 2j..2j+1), as torch's AvgPool2d(2) sums them in
// that order and divides by 4; odd last rows / columns are dropped).
struct PixelSource {
  const float* x = nullptr;
  int64_t in_h = 0, in_w = 0, out_h = 0, out_w = 0, channels = 0;
  const float* slope = nullptr;  // nullptr: no activation
  bool pool = false;

  // The values of output pixel p (all samples' pixels in order): x's own row, or `buffer` filled.
  const float* at(int64_t p, float* buffer) const {
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
};

BNEXT_CLONES void add_pixels(const PixelSource& source, int64_t p0, int64_t p1, double* sums, float* buffer) {
  for (int64_t p = p0; p < p1; ++p) {
    const float* pixel = source.at(p, buffer);
    for (int64_t c = 0; c < source.channels; ++c) sums[c] += pixel[c];
  }
}

// Per-sample channel means of a source of n x pixels pixels.
std::vector<float> channel_means(const PixelSource& source, int64_t n, int64_t pixels, int threads) {
  const int64_t channels = source.channels;
  std::vector<float> means(n * channels, 0.0f);
  parallel_for(0, n, 1, threads, [&](int64_t begin, int64_t end) {
    std::vector<double> sums(channels);
    std::vector<float> buffer(channels);
    for (int64_t sample = begin; sample < end; ++sample) {
      std::fill(sums.begin(), sums.end(), 0.0);
      add_pixels(source, sample * pixels, (sample + 1) * pixels, sums.data(), buffer.data());
      for (int64_t c = 0; c < channels; ++c) means[sample * channels + c] = static_cast<float>(sums[c] / pixels);
    }
  });
  return means;
}

struct Post {
  std::vector<float> shift_in, slope, shift_out;  // empty: absent
};

// out[p] = post(r[p] + shift + k * y[p] (* r[p] with elm)) for pixels [p0, p1); k is per sample.
BNEXT_CLONES void tail_pixels(const float* y, const PixelSource& residual, const float* k, const float* shift,
                              const Post& post, float* out, int64_t out_stride, int64_t p0, int64_t p1,
                              int64_t pixels, bool elm, float* buffer) {
  const int64_t channels = residual.channels;
  const float *shift_in = post.shift_in.empty() ? nullptr : post.shift_in.data();
  const float *slope = post.slope.empty() ? nullptr : post.slope.data();
  const float *shift_out = post.shift_out.empty() ? nullptr : post.shift_out.data();
  for (int64_t p = p0; p < p1; ++p) {
    const float* kv = k + (p / pixels) * channels;
    const float *yv = y + p * channels, *rv = residual.at(p, buffer);
    float* ov = out + p * out_stride;
    if (elm) {
      for (int64_t c = 0; c < channels; ++c) ov[c] = rv[c] + shift[c] + kv[c] * (yv[c] * rv[c]);
    } else {
      for (int64_t c = 0; c < channels; ++c) ov[c] = rv[c] + shift[c] + kv[c] * yv[c];
    }
    if (slope == nullptr) continue;
    if (shift_in != nullptr)
      for (int64_t c = 0; c < channels; ++c) ov[c] += shift_in[c];
    for (int64_t c = 0; c < channels; ++c) ov[c] = ov[c] > 0.0f ? ov[c] : ov[c] * slope[c];
    if (shift_out != nullptr)
      for (int64_t c = 0; c < channels; ++c) ov[c] += shift_out[c];
  }
}

class UnitTail : public Op {
 public:
  UnitTail(const OpReader& reader, bool has_x, bool has_residual, bool has_gate_input)
      : has_residual_(has_residual), has_gate_input_(has_gate_input) {
    if (has_x == has_residual) reader.fail("needs exactly one of the inputs \"x\" and \"residual\"");
    channels_ = reader.integer("channels", 1, 1 << 20);
    pool_ = reader.boolean("pool", false);
    elm_ = reader.boolean("elm", false);
    if (has_residual && (pool_ || reader.has_param("act_slope"))) reader.fail("pool / act_slope apply to \"x\" only");
    norm_scale_ = reader.floats("norm_scale", channels_);
    norm_shift_ = reader.floats("norm_shift", channels_);
    if (reader.has_param("act_slope")) act_slope_ = reader.floats("act_slope", channels_);
    if (reader.has("squeeze")) read_gate(reader);
    else if (has_gate_input) reader.fail("has a gate_input but no gate");
    if (reader.has_param("post_slope")) {
      post_.slope = reader.floats("post_slope", channels_);
      if (reader.has_param("post_shift_in")) post_.shift_in = reader.floats("post_shift_in", channels_);
      if (reader.has_param("post_shift_out")) post_.shift_out = reader.floats("post_shift_out", channels_);
    }
  }

  Shape infer(const std::vector<Shape>& in) const override {
    const Shape &y = in[0], &x = in[1];
    require(y.c == channels_, "unit_tail expects " + std::to_string(channels_) + " channels, got " +
                                  std::to_string(y.c));
    const bool fits = x.n == y.n && x.c == y.c &&
                      (pool_ ? x.h / 2 == y.h && x.w / 2 == y.w : x.h == y.h && x.w == y.w);
    require(fits, "unit_tail: the shortcut input does not fit the conv output (" + std::to_string(x.h) + "x" +
                      std::to_string(x.w) + " vs " + std::to_string(y.h) + "x" + std::to_string(y.w) +
                      "): the input size must be a multiple of the model's total stride");
    if (has_gate_input_) {
      require(in[2].n == y.n && in[2].c == squeeze_.in, "unit_tail: gate_input has the wrong channel count");
    }
    return y;
  }

  void run(const std::vector<View>& in, const View& out, RunContext& context) const override {
    const Shape& y = in[0].shape;
    const int64_t n = y.n, pixels = y.h * y.w, c = channels_;
    const View& x = in[1];
    const PixelSource residual{x.data, x.shape.h, x.shape.w, y.h, y.w, c,
                               act_slope_.empty() ? nullptr : act_slope_.data(), pool_};
    std::vector<float> coefficient(n * c);
    for (int64_t i = 0; i < n * c; ++i) coefficient[i] = norm_scale_[i % c];
    if (gated_) gate(in, residual, coefficient, context.threads);
    parallel_for(0, n * pixels, 256, context.threads, [&](int64_t begin, int64_t end) {
      std::vector<float> buffer(c);
      tail_pixels(in[0].data, residual, coefficient.data(), norm_shift_.data(), post_, out.data, out.pixel_stride,
                  begin, end, pixels, elm_, buffer.data());
    });
  }

  bool writes_slices() const override { return true; }

 private:
  void read_gate(const OpReader& reader) {
    gated_ = true;
    const std::string source = reader.text("gate_source", "residual");
    if (source == "input") {
      if (!has_gate_input_) reader.fail("gate_source \"input\" needs the input \"gate_input\"");
    } else if (source == "residual" || source == "shortcut") {
      if (has_gate_input_) reader.fail("gate_input is given but gate_source is \"" + source + "\"");
      if (source == "shortcut" && has_residual_) reader.fail("gate_source \"shortcut\" needs \"x\"");
      gate_from_shortcut_ = source == "shortcut";
    } else {
      reader.fail("gate_source must be \"residual\", \"shortcut\" or \"input\"");
    }
    squeeze_ = read_dense(reader.nested("squeeze"));
    expand_ = read_dense(reader.nested("expand"));
    if (expand_.in != squeeze_.out || expand_.out != channels_) reader.fail("the gate's squeeze / expand sizes differ");
    if (!has_gate_input_ && squeeze_.in != channels_) reader.fail("the gate's squeeze does not read the unit's channels");
    if (reader.has_param("mix")) {
      if (squeeze_.in != channels_) reader.fail("mix needs a gate source of the unit's channels");
      mix_ = reader.floats("mix", channels_);
    }
  }

  // coefficient[n][c] *= sigmoid(E relu(S pooled[n]))[c].
  void gate(const std::vector<View>& in, const PixelSource& residual, std::vector<float>& coefficient,
            int threads) const {
    const Shape& y = in[0].shape;
    const int64_t n = y.n, pixels = y.h * y.w;
    std::vector<float> source_means;
    if (has_gate_input_) {
      const View& g = in[2];
      const PixelSource plain{g.data, g.shape.h, g.shape.w, g.shape.h, g.shape.w, g.shape.c, nullptr, false};
      source_means = channel_means(plain, n, g.shape.h * g.shape.w, threads);
    } else {
      PixelSource source = residual;
      if (gate_from_shortcut_) source.slope = nullptr;
      source_means = channel_means(source, n, pixels, threads);
    }
    std::vector<float> y_means;
    if (!mix_.empty()) {
      const PixelSource plain{in[0].data, y.h, y.w, y.h, y.w, y.c, nullptr, false};
      y_means = channel_means(plain, n, pixels, threads);
    }
    const int64_t width = squeeze_.in;
    std::vector<float> pooled(width), hidden(squeeze_.out), logit(channels_), scratch;
    for (int64_t sample = 0; sample < n; ++sample) {
      for (int64_t c = 0; c < width; ++c) {
        const float mean = source_means[sample * width + c];
        pooled[c] = mix_.empty() ? mean : mix_[c] * mean + (1.0f - mix_[c]) * y_means[sample * width + c];
      }
      dense_row(squeeze_, pooled.data(), hidden.data(), scratch);
      for (auto& v : hidden) v = std::max(v, 0.0f);
      dense_row(expand_, hidden.data(), logit.data(), scratch);
      for (int64_t c = 0; c < channels_; ++c) coefficient[sample * channels_ + c] /= 1.0f + std::exp(-logit[c]);
    }
  }

  bool has_residual_, has_gate_input_, gated_ = false, gate_from_shortcut_ = false, pool_ = false, elm_ = false;
  int64_t channels_ = 0;
  std::vector<float> norm_scale_, norm_shift_, act_slope_, mix_;
  DenseWeights squeeze_, expand_;
  Post post_;
};

}  // namespace

std::unique_ptr<Op> make_unit_tail(const OpReader& reader, bool has_x, bool has_residual, bool has_gate_input) {
  return std::make_unique<UnitTail>(reader, has_x, has_residual, has_gate_input);
}

}  // namespace bnext
