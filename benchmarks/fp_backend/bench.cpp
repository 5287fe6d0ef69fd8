// Times the runtime's own fp conv / dense code against Eigen, one thread,
// interleaved rep by rep in one process (each rep runs every variant once, in
// an order rotated rep by rep), and checks Eigen's outputs against the own
// ones. Prints one JSON object. Usage: fp_backend_bench [seconds per case]
#include <Eigen/Core> // the version macros only (the variants' Eigen lives in renamed namespaces)

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "api.h"

namespace {

struct Variant {
  std::string name;
  std::function<void()> run;
  const std::vector<float> *out;
  std::vector<double> ms; // per call, one entry per rep
};

struct Case {
  std::string name, shape;
  std::vector<Variant> variants; // variants[0]: the runtime's own code, the
                                 // reference for the diffs
};

std::vector<float> random_floats(size_t n, float scale, std::mt19937 &rng) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float &f : v)
    f = dist(rng);
  return v;
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double at = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(at),
               hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (at - static_cast<double>(lo));
}

// Warm up, size the inner loop to ~5 ms per timed block, then reps until the
// time budget (21..1001 reps).
void time_case(Case &c, double budget_ms, int *reps_out, int *inner_out) {
  double slowest = 0.0;
  for (Variant &v : c.variants) {
    for (int i = 0; i < 3; ++i)
      v.run();
    std::vector<double> t;
    for (int i = 0; i < 3; ++i) {
      const double t0 = now_ms();
      v.run();
      t.push_back(now_ms() - t0);
    }
    slowest = std::max(slowest, quantile(t, 0.5));
  }
  const int inner =
      std::max(1, static_cast<int>(5.0 / std::max(slowest, 1e-3)));
  const double per_rep =
      slowest * inner * static_cast<double>(c.variants.size());
  const int reps = std::clamp(
      static_cast<int>(budget_ms / std::max(per_rep, 1e-3)), 21, 1001);
  const size_t n = c.variants.size();
  for (int r = 0; r < reps; ++r)
    for (size_t k = 0; k < n; ++k) {
      Variant &v = c.variants[(k + static_cast<size_t>(r)) % n];
      const double t0 = now_ms();
      for (int i = 0; i < inner; ++i)
        v.run();
      v.ms.push_back((now_ms() - t0) / inner);
    }
  *reps_out = reps;
  *inner_out = inner;
}

std::string report(Case &c, double budget_ms) {
  for (Variant &v : c.variants)
    v.run(); // the outputs compared below, from one more call each
  int reps = 0, inner = 0;
  time_case(c, budget_ms, &reps, &inner);
  const std::vector<float> &ref = *c.variants[0].out;
  double max_y = 0.0;
  for (float f : ref)
    max_y = std::max(max_y, static_cast<double>(std::fabs(f)));
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "\"%s\": {\"shape\": \"%s\", \"reps\": %d, \"inner\": %d, "
                "\"max_abs_y\": %.9g, \"variants\": {",
                c.name.c_str(), c.shape.c_str(), reps, inner, max_y);
  std::string s = buf;
  for (size_t k = 0; k < c.variants.size(); ++k) {
    const Variant &v = c.variants[k];
    double diff = 0.0;
    for (size_t i = 0; i < ref.size(); ++i)
      diff =
          std::max(diff, static_cast<double>(std::fabs((*v.out)[i] - ref[i])));
    std::snprintf(buf, sizeof buf,
                  "%s\"%s\": {\"median_ms\": %.6f, \"p25_ms\": %.6f, "
                  "\"p75_ms\": %.6f, \"max_abs_diff\": %.9g, "
                  "\"rel_diff\": %.9g}",
                  k ? ", " : "", v.name.c_str(), quantile(v.ms, 0.5),
                  quantile(v.ms, 0.25), quantile(v.ms, 0.75), diff,
                  max_y > 0 ? diff / max_y : diff);
    s += buf;
  }
  return s + "}}";
}

struct ConvData {
  std::vector<float> x, weight_t, bias, scale, shift, scratch;
  std::vector<std::vector<float>> outs;
  FpbConv args(size_t variant) {
    FpbConv a = base;
    a.out = outs[variant].data();
    return a;
  }
  FpbConv base;
};

using ConvFn = void (*)(const FpbConv *);
using DenseFn = void (*)(const float *, const float *, const float *, float *,
                         int64_t, int64_t, int64_t);

struct EigenVariant {
  const char *name;
  ConvFn conv;
  DenseFn dense;
  int (*threads)();
};

Case conv_case(const std::string &name, int64_t hw, int64_t c, int64_t n,
               int64_t k, int64_t stride, int64_t pad,
               const std::vector<EigenVariant> &eigen, ConvData &d,
               std::mt19937 &rng) {
  const int64_t out_hw = fpb_out_size(hw, k, stride, pad), depth = k * k * c,
                pixels = out_hw * out_hw;
  d.x = random_floats(hw * hw * c, 1.0f, rng);
  d.weight_t = random_floats(depth * n,
                             1.0f / std::sqrt(static_cast<float>(depth)), rng);
  d.bias = random_floats(n, 0.1f, rng);
  d.scale = random_floats(n, 1.0f, rng);
  d.shift = random_floats(n, 0.1f, rng);
  d.scratch.assign(pixels * depth, 0.0f);
  d.base = FpbConv{d.x.data(),
                   d.weight_t.data(),
                   d.bias.data(),
                   d.scale.data(),
                   d.shift.data(),
                   nullptr,
                   d.scratch.data(),
                   hw,
                   hw,
                   c,
                   k,
                   stride,
                   pad,
                   n};
  d.outs.assign(eigen.size() + 1, std::vector<float>(pixels * n, 0.0f));
  Case cs{name,
          std::to_string(hw) + "x" + std::to_string(hw) + "x" +
              std::to_string(c) + " -> " + std::to_string(out_hw) + "x" +
              std::to_string(out_hw) + "x" + std::to_string(n) + ", " +
              std::to_string(k) + "x" + std::to_string(k) + " stride " +
              std::to_string(stride) + " pad " + std::to_string(pad) +
              ", bias + affine",
          {}};
  cs.variants.push_back({"own",
                         [&d] {
                           FpbConv a = d.args(0);
                           own_conv(&a);
                         },
                         &d.outs[0],
                         {}});
  for (size_t i = 0; i < eigen.size(); ++i) {
    const ConvFn fn = eigen[i].conv;
    cs.variants.push_back({eigen[i].name,
                           [&d, fn, i] {
                             FpbConv a = d.args(i + 1);
                             fn(&a);
                           },
                           &d.outs[i + 1],
                           {}});
  }
  return cs;
}

struct DenseData {
  std::vector<float> weight_t, bias, x;
  std::vector<std::vector<float>> outs;
  void *own = nullptr;
};

Case dense_case(const std::string &name, int64_t in, int64_t out, int64_t batch,
                const std::vector<EigenVariant> &eigen, DenseData &d,
                std::mt19937 &rng) {
  d.weight_t =
      random_floats(in * out, 1.0f / std::sqrt(static_cast<float>(in)), rng);
  d.bias = random_floats(out, 0.1f, rng);
  d.x = random_floats(batch * in, 1.0f, rng);
  d.outs.assign(eigen.size() + 1, std::vector<float>(batch * out, 0.0f));
  d.own = own_dense_new(d.weight_t.data(), d.bias.data(), in, out);
  Case cs{name,
          std::to_string(in) + " -> " + std::to_string(out) + ", batch " +
              std::to_string(batch) + ", bias",
          {}};
  cs.variants.push_back({"own",
                         [&d, batch] {
                           own_dense_run(d.own, d.x.data(), d.outs[0].data(),
                                         batch);
                         },
                         &d.outs[0],
                         {}});
  for (size_t i = 0; i < eigen.size(); ++i) {
    const DenseFn fn = eigen[i].dense;
    cs.variants.push_back({eigen[i].name,
                           [&d, fn, i, in, out, batch] {
                             fn(d.weight_t.data(), d.bias.data(), d.x.data(),
                                d.outs[i + 1].data(), in, out, batch);
                           },
                           &d.outs[i + 1],
                           {}});
  }
  return cs;
}

} // namespace

int main(int argc, char **argv) {
  const double budget_ms = 1000.0 * (argc > 1 ? std::atof(argv[1]) : 4.0);
  std::vector<EigenVariant> eigen;
  const bool avx2 = __builtin_cpu_supports("avx2"),
             fma = __builtin_cpu_supports("fma");
  if (avx2 && fma)
    eigen.push_back({"eigen_avx2fma", eigen_avx2fma_conv, eigen_avx2fma_dense,
                     eigen_avx2fma_threads});
  if (avx2)
    eigen.push_back(
        {"eigen_avx2", eigen_avx2_conv, eigen_avx2_dense, eigen_avx2_threads});
  eigen.push_back(
      {"eigen_base", eigen_base_conv, eigen_base_dense, eigen_base_threads});
  int threads = 0;
  for (const EigenVariant &v : eigen)
    threads = std::max(threads, v.threads());
  std::mt19937 rng(2024);
  ConvData stem, shortcut;
  DenseData gemv1, gemv8;
  std::vector<Case> cases;
  cases.push_back(
      conv_case("stem_3x3s2", 224, 3, 32, 3, 2, 1, eigen, stem, rng));
  cases.push_back(
      conv_case("shortcut_1x1", 56, 64, 128, 1, 1, 0, eigen, shortcut, rng));
  cases.push_back(
      dense_case("classifier_b1", 1024, 1000, 1, eigen, gemv1, rng));
  cases.push_back(
      dense_case("classifier_b8", 1024, 1000, 8, eigen, gemv8, rng));
  std::printf("{\"eigen_version\": \"%d.%d.%d\", \"eigen_threads\": %d, "
              "\"seconds_per_case\": %.3f, \"cases\": {",
              EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION,
              threads, budget_ms / 1000.0);
  for (size_t i = 0; i < cases.size(); ++i)
    std::printf("%s%s", i ? ", " : "", report(cases[i], budget_ms).c_str());
  std::printf("}}\n");
  own_dense_free(gemv1.own);
  own_dense_free(gemv8.own);
  return 0;
}
