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
// r is computed per pixel where it is read, never stored. Both passes work on 8 channels per vector (V8,
// vectorize.h), the channel sums with float partial sums in registers (the previous version added every pixel
// into double sums in memory, a chain of loads and stores per pixel), and the op allocates nothing per call
// once it has seen a size. bnext_tiny at 224 px, batch 1, 1 thread, AVX2 EPYC with other work on its 2 cores,
// against the previous version interleaved in one process (medians of 5 runs of 100 calls): the 31 unit tails
// 4.91 -> 3.70 ms, logits within 2e-7 of the largest. What is left is memory traffic (three passes over
// tensors of up to 1.6 MB). See docs/bnx-format.md.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/dense.h"
#include "ops/ops.h"
#include "ops/vectorize.h"
#include "parallel.h"

namespace bnext {
namespace {

using vec::load8;
using vec::prelu8;
using vec::splat8;
using vec::store8;
using vec::V8;

// v > 0 ? v : s * v without a branch (the same value: one of the terms is 0). GCC made the conditional
// form a mispredicted branch per value in the fused tail (16x slower, measured in the torch extension).
inline float prelu(float v, float s) { return std::max(v, 0.0f) + s * std::min(v, 0.0f); }

// ---------------------------------------------------------------- channel sums
// A sample's pixels whose channel sums the gate needs: `rows` rows of `row_pixels` pixels, pixel p of row i at
// x + i * row_stride + p * channels (a whole image: rows = h; the 2x2-pooled source: the 2 oh x 2 ow input
// pixels the pools read, whose sum over all of them is 4x the sum of the pooled pixels).
struct SumSource {
  const float* x = nullptr;
  int64_t sample_stride = 0, rows = 0, row_pixels = 0, row_stride = 0, channels = 0;
  const float* slope = nullptr;  // a PReLU before summing, or nullptr
};

// Pixels per float partial sum: kept in registers, then added into the double sums (a float sum of at most 64
// values is exact to a few 1e-6 relative, well inside the tolerance of the float means the gate uses).
constexpr int64_t kPartialPixels = 64;

// sums[c] += the sum over `count` pixels (from x, `channels` floats each, dense) of act?(x[p][c]).
template <bool kAct>
BNEXT_VEC_INLINE void add_pixels_body(const float* x, int64_t count, int64_t channels, const float* slope,
                                      double* sums) {
  int64_t c = 0;
  for (; c + 32 <= channels; c += 32) {  // 4 vectors of accumulators
    V8 s0 = splat8(1.0f), s1 = s0, s2 = s0, s3 = s0;
    if (kAct) s0 = load8(slope + c), s1 = load8(slope + c + 8), s2 = load8(slope + c + 16), s3 = load8(slope + c + 24);
    for (int64_t p0 = 0; p0 < count; p0 += kPartialPixels) {
      const int64_t p1 = std::min(count, p0 + kPartialPixels);
      V8 a0 = splat8(0.0f), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t p = p0; p < p1; ++p) {
        const float* v = x + p * channels + c;
        V8 v0 = load8(v), v1 = load8(v + 8), v2 = load8(v + 16), v3 = load8(v + 24);
        if (kAct) v0 = prelu8(v0, s0), v1 = prelu8(v1, s1), v2 = prelu8(v2, s2), v3 = prelu8(v3, s3);
        a0 += v0, a1 += v1, a2 += v2, a3 += v3;
      }
      float part[32];
      store8(part, a0), store8(part + 8, a1), store8(part + 16, a2), store8(part + 24, a3);
      for (int k = 0; k < 32; ++k) sums[c + k] += part[k];
    }
  }
  for (; c + 8 <= channels; c += 8) {
    const V8 s0 = kAct ? load8(slope + c) : splat8(1.0f);
    for (int64_t p0 = 0; p0 < count; p0 += kPartialPixels) {
      const int64_t p1 = std::min(count, p0 + kPartialPixels);
      V8 a0 = splat8(0.0f);
      for (int64_t p = p0; p < p1; ++p) {
        V8 v0 = load8(x + p * channels + c);
        if (kAct) v0 = prelu8(v0, s0);
        a0 += v0;
      }
      float part[8];
      store8(part, a0);
      for (int k = 0; k < 8; ++k) sums[c + k] += part[k];
    }
  }
  for (; c < channels; ++c) {
    for (int64_t p0 = 0; p0 < count; p0 += kPartialPixels) {
      float a = 0.0f;
      for (int64_t p = p0; p < std::min(count, p0 + kPartialPixels); ++p)
        a += kAct ? prelu(x[p * channels + c], slope[c]) : x[p * channels + c];
      sums[c] += a;
    }
  }
}

// sums (channels doubles, zeroed here) = the channel sums of rows [row_begin, row_end) of one sample.
BNEXT_CLONES void sum_rows(const SumSource& s, const float* sample, int64_t row_begin, int64_t row_end, double* sums) {
  std::fill(sums, sums + s.channels, 0.0);
  for (int64_t row = row_begin; row < row_end; ++row) {
    const float* x = sample + row * s.row_stride;
    if (s.slope != nullptr) {
      add_pixels_body<true>(x, s.row_pixels, s.channels, s.slope, sums);
    } else {
      add_pixels_body<false>(x, s.row_pixels, s.channels, nullptr, sums);
    }
  }
}

// Floats per chunk of the output pass: a fixed 256 pixels made the 14x14 maps of 512 channels one chunk, run on
// one thread (bnext_tiny at 2 threads: 3.4% less time, interleaved A/B, AVX2 EPYC; 1 thread unchanged). The
// channel sums keep their tasks of about 2048 pixels: tasks of 16K values there cost 3% at 1 thread.
constexpr int64_t kChunkFloats = 16384;

// means[sample][c] = the channel sums of each of n samples / divisor. The rows are split in fixed tasks of about
// 2048 pixels, independent of the thread count, and their sums added in task order: the same floats at any
// thread count. partial: scratch.
void channel_means(const SumSource& s, int64_t n, double divisor, int threads, std::vector<double>& partial,
                   float* means) {
  const int64_t rows_per_task = std::max<int64_t>(1, 2048 / std::max<int64_t>(1, s.row_pixels));
  const int64_t tasks_per_sample = (s.rows + rows_per_task - 1) / rows_per_task;
  const int64_t tasks = n * tasks_per_sample, channels = s.channels;
  partial.resize(tasks * channels);
  parallel_for(0, tasks, 1, threads, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t sample = t / tasks_per_sample, first = t % tasks_per_sample * rows_per_task;
      sum_rows(s, s.x + sample * s.sample_stride, first, std::min(s.rows, first + rows_per_task),
               partial.data() + t * channels);
    }
  });
  for (int64_t sample = 0; sample < n; ++sample)
    for (int64_t c = 0; c < channels; ++c) {
      double sum = 0.0;
      for (int64_t t = 0; t < tasks_per_sample; ++t) sum += partial[(sample * tasks_per_sample + t) * channels + c];
      means[sample * channels + c] = static_cast<float>(sum / divisor);
    }
}

// ---------------------------------------------------------------- the output pass
struct Post {
  std::vector<float> shift_in, slope, shift_out;  // empty: absent
};

// What the output pass reads: y, the residual's source x (read through act? and the 2x2 pool?), the per-sample
// coefficients k, and the per-channel shift and post.
struct TailArgs {
  const float *y, *x, *k, *shift, *act_slope, *shift_in, *post_slope, *shift_out;
  float* out;
  int64_t out_stride, channels, pixels, out_w, in_h, in_w;
};

// out[p] = post(r[p] + shift + k * y[p] (* r[p] with elm)) for pixels [p0, p1) (all samples' pixels in order),
// r = pool?(act?(x)) computed where it is read: output pixel (i, j) of the pool averages input pixels (2i..2i+1,
// 2j..2j+1) in the order torch's AvgPool2d(2) sums them (odd last rows / columns dropped). 8 channels per vector
// with the scalar form's order of operations, the rest one by one: the same floats either way ((a + b + c + d)
// / 4 as * 0.25f is exact).
template <bool kPool, bool kAct, bool kElm>
BNEXT_VEC_INLINE void tail_body(const TailArgs& a, int64_t p0, int64_t p1) {
  const int64_t channels = a.channels, vectors_end = channels / 8 * 8;
  const bool post = a.post_slope != nullptr;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t sample = p / a.pixels;
    const float* kv = a.k + sample * channels;
    const float* yv = a.y + p * channels;
    float* ov = a.out + p * a.out_stride;
    const float *r0 = a.x + p * channels, *r1 = nullptr, *r2 = nullptr, *r3 = nullptr;
    if (kPool) {
      const int64_t q = p % a.pixels, i = q / a.out_w, j = q % a.out_w;
      r0 = a.x + ((sample * a.in_h + 2 * i) * a.in_w + 2 * j) * channels;
      r1 = r0 + channels;
      r2 = r0 + a.in_w * channels;
      r3 = r2 + channels;
    }
    int64_t c = 0;
    for (; c < vectors_end; c += 8) {
      V8 r;
      if (kPool) {
        V8 t0 = load8(r0 + c), t1 = load8(r1 + c), t2 = load8(r2 + c), t3 = load8(r3 + c);
        if (kAct) {
          const V8 s = load8(a.act_slope + c);
          t0 = prelu8(t0, s), t1 = prelu8(t1, s), t2 = prelu8(t2, s), t3 = prelu8(t3, s);
        }
        r = (((t0 + t1) + t2) + t3) * 0.25f;
      } else {
        r = load8(r0 + c);
        if (kAct) r = prelu8(r, load8(a.act_slope + c));
      }
      const V8 y = load8(yv + c), k = load8(kv + c), base = r + load8(a.shift + c);
      V8 o = kElm ? base + k * (y * r) : base + k * y;
      if (post) {
        if (a.shift_in != nullptr) o += load8(a.shift_in + c);
        o = prelu8(o, load8(a.post_slope + c));
        if (a.shift_out != nullptr) o += load8(a.shift_out + c);
      }
      store8(ov + c, o);
    }
    for (; c < channels; ++c) {
      float r;
      if (kPool) {
        float t0 = r0[c], t1 = r1[c], t2 = r2[c], t3 = r3[c];
        if (kAct) {
          const float s = a.act_slope[c];
          t0 = prelu(t0, s), t1 = prelu(t1, s), t2 = prelu(t2, s), t3 = prelu(t3, s);
        }
        r = (((t0 + t1) + t2) + t3) * 0.25f;
      } else {
        r = kAct ? prelu(r0[c], a.act_slope[c]) : r0[c];
      }
      float o = kElm ? r + a.shift[c] + kv[c] * (yv[c] * r) : r + a.shift[c] + kv[c] * yv[c];
      if (post) {
        if (a.shift_in != nullptr) o += a.shift_in[c];
        o = o > 0.0f ? o : o * a.post_slope[c];
        if (a.shift_out != nullptr) o += a.shift_out[c];
      }
      ov[c] = o;
    }
  }
}

BNEXT_CLONES void tail_pixels(const TailArgs& a, bool pool, bool act, bool elm, int64_t p0, int64_t p1) {
  const int variant = (pool ? 4 : 0) + (act ? 2 : 0) + (elm ? 1 : 0);
  switch (variant) {
    case 0: tail_body<false, false, false>(a, p0, p1); break;
    case 1: tail_body<false, false, true>(a, p0, p1); break;
    case 2: tail_body<false, true, false>(a, p0, p1); break;
    case 3: tail_body<false, true, true>(a, p0, p1); break;
    case 4: tail_body<true, false, false>(a, p0, p1); break;
    case 5: tail_body<true, false, true>(a, p0, p1); break;
    case 6: tail_body<true, true, false>(a, p0, p1); break;
    default: tail_body<true, true, true>(a, p0, p1);
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
    if (reader.has("squeeze"))
      read_gate(reader);
    else if (has_gate_input)
      reader.fail("has a gate_input but no gate");
    if (reader.has_param("post_slope")) {
      post_.slope = reader.floats("post_slope", channels_);
      if (reader.has_param("post_shift_in")) post_.shift_in = reader.floats("post_shift_in", channels_);
      if (reader.has_param("post_shift_out")) post_.shift_out = reader.floats("post_shift_out", channels_);
    }
  }

  Shape infer(const std::vector<Shape>& in) const override {
    const Shape &y = in[0], &x = in[1];
    require(y.c == channels_,
            "unit_tail expects " + std::to_string(channels_) + " channels, got " + std::to_string(y.c));
    const bool fits = x.n == y.n && x.c == y.c && (pool_ ? x.h / 2 == y.h && x.w / 2 == y.w : x.h == y.h && x.w == y.w);
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
    Scratch& s = scratch_;
    s.coefficient.resize(n * c);
    for (int64_t sample = 0; sample < n; ++sample)
      std::copy_n(norm_scale_.data(), c, s.coefficient.data() + sample * c);
    if (gated_) gate(in, context.threads);
    const TailArgs args{in[0].data,
                        x.data,
                        s.coefficient.data(),
                        norm_shift_.data(),
                        act_slope_.empty() ? nullptr : act_slope_.data(),
                        post_.shift_in.empty() ? nullptr : post_.shift_in.data(),
                        post_.slope.empty() ? nullptr : post_.slope.data(),
                        post_.shift_out.empty() ? nullptr : post_.shift_out.data(),
                        out.data,
                        out.pixel_stride,
                        c,
                        pixels,
                        y.w,
                        x.shape.h,
                        x.shape.w};
    const bool act = !act_slope_.empty();
    // With sinks, by blocks of about 16 KB of output, each packed while it is in L1.
    const int64_t block = context.sinks.empty() ? n * pixels : std::max<int64_t>(8, 4096 / c);
    const int64_t grain = std::max<int64_t>(8, kChunkFloats / c);
    parallel_for(0, n * pixels, grain, context.threads, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; p += block) {
        const int64_t stop = std::min(end, p + block);
        tail_pixels(args, pool_, act, elm_, p, stop);
        emit_signs(context, out, p, stop);
      }
    });
  }

  bool writes_slices() const override { return true; }
  bool emits_signs() const override { return true; }

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
    if (!has_gate_input_ && squeeze_.in != channels_)
      reader.fail("the gate's squeeze does not read the unit's channels");
    if (reader.has_param("mix")) {
      if (squeeze_.in != channels_) reader.fail("mix needs a gate source of the unit's channels");
      mix_ = reader.floats("mix", channels_);
    }
  }

  // The sums of a dense activation's whole images.
  static SumSource whole(const View& v) {
    return {v.data, v.shape.h * v.shape.w * v.shape.c, v.shape.h, v.shape.w, v.shape.w * v.shape.c, v.shape.c, nullptr};
  }

  // coefficient[n][c] *= sigmoid(E relu(S pooled[n]))[c].
  void gate(const std::vector<View>& in, int threads) const {
    const Shape& y = in[0].shape;
    const int64_t n = y.n, width = squeeze_.in;
    Scratch& s = scratch_;
    s.source_means.resize(n * width);
    if (has_gate_input_) {
      const View& g = in[2];
      channel_means(whole(g), n, static_cast<double>(g.shape.h * g.shape.w), threads, s.partial, s.source_means.data());
    } else {
      // The residual (pool?(act?(x))) or the shortcut (pool?(x)): a 2x2 average pool's channel means are those of
      // the input pixels it reads (each read once), over 4x as many pixels.
      const View& x = in[1];
      SumSource source = whole(x);
      if (pool_) source.rows = 2 * y.h, source.row_pixels = 2 * y.w;
      if (!gate_from_shortcut_ && !act_slope_.empty()) source.slope = act_slope_.data();
      channel_means(source, n, static_cast<double>((pool_ ? 4 : 1) * y.h * y.w), threads, s.partial,
                    s.source_means.data());
    }
    if (!mix_.empty()) {
      s.y_means.resize(n * channels_);
      channel_means(whole(in[0]), n, static_cast<double>(y.h * y.w), threads, s.partial, s.y_means.data());
    }
    s.pooled.resize(width);
    s.hidden.resize(squeeze_.out);
    s.logit.resize(channels_);
    for (int64_t sample = 0; sample < n; ++sample) {
      for (int64_t c = 0; c < width; ++c) {
        const float mean = s.source_means[sample * width + c];
        s.pooled[c] = mix_.empty() ? mean : mix_[c] * mean + (1.0f - mix_[c]) * s.y_means[sample * width + c];
      }
      dense_row(squeeze_, s.pooled.data(), s.hidden.data(), s.quantized);
      for (auto& v : s.hidden) v = std::max(v, 0.0f);
      dense_row(expand_, s.hidden.data(), s.logit.data(), s.quantized);
      for (int64_t c = 0; c < channels_; ++c) s.coefficient[sample * channels_ + c] /= 1.0f + std::exp(-s.logit[c]);
    }
  }

  // Per-call buffers, grown to the largest size seen and reused (a model runs on one thread at a time).
  struct Scratch {
    std::vector<float> coefficient, source_means, y_means, pooled, hidden, logit, quantized;
    std::vector<double> partial;
  };

  bool has_residual_, has_gate_input_, gated_ = false, gate_from_shortcut_ = false, pool_ = false, elm_ = false;
  int64_t channels_ = 0;
  std::vector<float> norm_scale_, norm_shift_, act_slope_, mix_;
  DenseWeights squeeze_, expand_;
  Post post_;
  mutable Scratch scratch_;
};

}  // namespace

std::unique_ptr<Op> make_unit_tail(const OpReader& reader, bool has_x, bool has_residual, bool has_gate_input) {
  return std::make_unique<UnitTail>(reader, has_x, has_residual, has_gate_input);
}

}  // namespace bnext
