// The small ops: per-channel maps (PReLU, affine), add, concat, pooling, and the classifier.
#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/dense.h"
#include "ops/ops.h"
#include "ops/vectorize.h"
#include "parallel.h"

namespace bnext {
namespace {

std::string dims(const Shape& s) {
  return std::to_string(s.c) + " channels at " + std::to_string(s.h) + "x" + std::to_string(s.w);
}

// Ops that map each channel of each pixel on its own: out[p][c] = f(x[p][c], c).
class PerChannel : public Op {
 public:
  Shape infer(const std::vector<Shape>& in) const override {
    require(in[0].c == channels(),
            kind() + " expects " + std::to_string(channels()) + " channels, got " + std::to_string(in[0].c));
    return in[0];
  }
  void run(const std::vector<View>& in, const View& out, RunContext& context) const override {
    const int64_t c = in[0].shape.c;
    parallel_for(0, in[0].shape.pixels(), 256, context.threads, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) apply(in[0].data + p * c, out.data + p * out.pixel_stride, c);
    });
  }
  bool writes_slices() const override { return true; }

 protected:
  virtual int64_t channels() const = 0;
  virtual std::string kind() const = 0;
  virtual void apply(const float* x, float* out, int64_t c) const = 0;
};

// 8 channels per vector (V8), the rest one by one. The plain loop of the previous version stayed scalar with a
// branch per value (GCC did not if-convert it), mispredicted on a third of the values of bnext_tiny's last PReLU:
// 0.195 -> 0.009 ms there (interleaved A/B in one process, 224 px, 1 thread, AVX2 EPYC, medians of 5 runs).
BNEXT_CLONES void prelu_pixel(const float* x, const float* slope, float* out, int64_t c) {
  int64_t i = 0;
  for (; i + 8 <= c; i += 8) vec::store8(out + i, vec::prelu8(vec::load8(x + i), vec::load8(slope + i)));
  for (; i < c; ++i) out[i] = std::max(x[i], 0.0f) + slope[i] * std::min(x[i], 0.0f);  // no branch, same value
}

BNEXT_CLONES void affine_pixel(const float* x, const float* scale, const float* shift, float* out, int64_t c) {
  int64_t i = 0;
  for (; i + 8 <= c; i += 8) vec::store8(out + i, vec::load8(x + i) * vec::load8(scale + i) + vec::load8(shift + i));
  for (; i < c; ++i) out[i] = x[i] * scale[i] + shift[i];
}

class PRelu : public PerChannel {
 public:
  explicit PRelu(const OpReader& reader) {
    const int64_t c = reader.integer("channels", 1, 1 << 20);
    slope_ = reader.floats("slope", c);
  }

 protected:
  int64_t channels() const override { return static_cast<int64_t>(slope_.size()); }
  std::string kind() const override { return "prelu"; }
  void apply(const float* x, float* out, int64_t c) const override { prelu_pixel(x, slope_.data(), out, c); }

 private:
  std::vector<float> slope_;
};

class ChannelAffine : public PerChannel {
 public:
  explicit ChannelAffine(const OpReader& reader) {
    const int64_t c = reader.integer("channels", 1, 1 << 20);
    scale_ = reader.floats("scale", c);
    shift_ = reader.floats("shift", c);
  }

 protected:
  int64_t channels() const override { return static_cast<int64_t>(scale_.size()); }
  std::string kind() const override { return "channel_affine"; }
  void apply(const float* x, float* out, int64_t c) const override {
    affine_pixel(x, scale_.data(), shift_.data(), out, c);
  }

 private:
  std::vector<float> scale_, shift_;
};

class Add : public Op {
 public:
  Shape infer(const std::vector<Shape>& in) const override {
    require(in[0].n == in[1].n && in[0].h == in[1].h && in[0].w == in[1].w && in[0].c == in[1].c,
            "add: the two inputs differ (" + dims(in[0]) + " vs " + dims(in[1]) + ")");
    return in[0];
  }
  void run(const std::vector<View>& in, const View& out, RunContext& context) const override {
    const int64_t c = in[0].shape.c;
    parallel_for(0, in[0].shape.pixels(), 256, context.threads, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const float *a = in[0].data + p * c, *b = in[1].data + p * c;
        float* o = out.data + p * out.pixel_stride;
        for (int64_t i = 0; i < c; ++i) o[i] = a[i] + b[i];
      }
    });
  }
  bool writes_slices() const override { return true; }
};

// Channels of its inputs side by side. The executor usually makes the inputs' producers write their
// slices of this op's output directly; then run() finds each slice already in place and copies nothing.
class Concat : public Op {
 public:
  Shape infer(const std::vector<Shape>& in) const override {
    Shape out = in[0];
    out.c = 0;
    for (const Shape& s : in) {
      require(s.n == in[0].n && s.h == in[0].h && s.w == in[0].w, "concat: inputs of different sizes");
      out.c += s.c;
    }
    return out;
  }
  void run(const std::vector<View>& in, const View& out, RunContext& context) const override {
    int64_t offset = 0;
    for (const View& part : in) {
      if (part.data != out.data + offset) {
        parallel_for(0, part.shape.pixels(), 256, context.threads, [&](int64_t begin, int64_t end) {
          for (int64_t p = begin; p < end; ++p)
            std::copy_n(part.data + p * part.pixel_stride, part.shape.c, out.data + p * out.pixel_stride + offset);
        });
      }
      offset += part.shape.c;
    }
  }
};

// Max or average pooling, PyTorch's floor mode; average pooling counts only the window (no padding: export
// refuses none other).
class Pool : public Op {
 public:
  Pool(const OpReader& reader, bool max) : max_(max) {
    kernel_ = reader.integer("kernel", 1, 15);
    stride_ = reader.integer("stride", 1, 15);
    padding_ = reader.integer("padding", 0, max ? kernel_ / 2 : 0);
  }
  Shape infer(const std::vector<Shape>& in) const override {
    require(in[0].h + 2 * padding_ >= kernel_ && in[0].w + 2 * padding_ >= kernel_,
            "the input is smaller than a " + std::to_string(kernel_) + "x" + std::to_string(kernel_) + " pool");
    return {in[0].n, (in[0].h + 2 * padding_ - kernel_) / stride_ + 1, (in[0].w + 2 * padding_ - kernel_) / stride_ + 1,
            in[0].c};
  }
  void run(const std::vector<View>& in, const View& out, RunContext& context) const override {
    const Shape& s = in[0].shape;
    const int64_t per_sample = out.shape.h * out.shape.w;
    parallel_for(0, out.shape.pixels(), 64, context.threads, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t sample = p / per_sample, oy = p % per_sample / out.shape.w, ox = p % out.shape.w;
        float* o = out.data + p * out.pixel_stride;
        std::fill(o, o + s.c, max_ ? -std::numeric_limits<float>::infinity() : 0.0f);
        for (int64_t ky = 0; ky < kernel_; ++ky) {
          const int64_t iy = oy * stride_ - padding_ + ky;
          if (iy < 0 || iy >= s.h) continue;
          for (int64_t kx = 0; kx < kernel_; ++kx) {
            const int64_t ix = ox * stride_ - padding_ + kx;
            if (ix < 0 || ix >= s.w) continue;
            const float* v = in[0].data + ((sample * s.h + iy) * s.w + ix) * s.c;
            if (max_) {
              for (int64_t c = 0; c < s.c; ++c) o[c] = (v[c] > o[c] || std::isnan(v[c])) ? v[c] : o[c];
            } else {
              for (int64_t c = 0; c < s.c; ++c) o[c] += v[c];
            }
          }
        }
        if (!max_)
          for (int64_t c = 0; c < s.c; ++c) o[c] /= static_cast<float>(kernel_ * kernel_);
      }
    });
  }
  bool writes_slices() const override { return true; }

 private:
  bool max_;
  int64_t kernel_ = 1, stride_ = 1, padding_ = 0;
};

class GlobalAvgPool : public Op {
 public:
  Shape infer(const std::vector<Shape>& in) const override { return {in[0].n, 1, 1, in[0].c}; }
  void run(const std::vector<View>& in, const View& out, RunContext& context) const override {
    const Shape& s = in[0].shape;
    const int64_t pixels = s.h * s.w;
    parallel_for(0, s.n, 1, context.threads, [&](int64_t begin, int64_t end) {
      std::vector<double> sums(s.c);
      for (int64_t sample = begin; sample < end; ++sample) {
        std::fill(sums.begin(), sums.end(), 0.0);
        for (int64_t p = 0; p < pixels; ++p) {
          const float* v = in[0].data + (sample * pixels + p) * s.c;
          for (int64_t c = 0; c < s.c; ++c) sums[c] += v[c];
        }
        for (int64_t c = 0; c < s.c; ++c)
          out.data[sample * out.pixel_stride + c] = static_cast<float>(sums[c] / pixels);
      }
    });
  }
};

// The classifier: a dense layer on each sample's (1 x 1 x C) vector.
class Linear : public Op {
 public:
  explicit Linear(const OpReader& reader) : dense_(read_dense(reader)) {}
  Shape infer(const std::vector<Shape>& in) const override {
    require(in[0].h * in[0].w * in[0].c == dense_.in,
            "linear expects " + std::to_string(dense_.in) + " features per sample, got " + dims(in[0]));
    return {in[0].n, 1, 1, dense_.out};
  }
  void run(const std::vector<View>& in, const View& out, RunContext&) const override {
    for (int64_t sample = 0; sample < in[0].shape.n; ++sample)
      dense_row(dense_, in[0].data + sample * dense_.in, out.data + sample * out.pixel_stride, quantized_);
  }

 private:
  DenseWeights dense_;
  mutable std::vector<float> quantized_;  // reused across calls (a model runs on one thread at a time)
};

}  // namespace

std::unique_ptr<Op> make_linear(const OpReader& reader) { return std::make_unique<Linear>(reader); }
std::unique_ptr<Op> make_prelu(const OpReader& reader) { return std::make_unique<PRelu>(reader); }
std::unique_ptr<Op> make_channel_affine(const OpReader& reader) { return std::make_unique<ChannelAffine>(reader); }
std::unique_ptr<Op> make_add(const OpReader&) { return std::make_unique<Add>(); }
std::unique_ptr<Op> make_concat(const OpReader&, int) { return std::make_unique<Concat>(); }
std::unique_ptr<Op> make_pool(const OpReader& reader, bool max) { return std::make_unique<Pool>(reader, max); }
std::unique_ptr<Op> make_global_avg_pool(const OpReader&) { return std::make_unique<GlobalAvgPool>(); }

}  // namespace bnext
