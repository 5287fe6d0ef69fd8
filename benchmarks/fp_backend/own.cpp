// The runtime's own fp code, compiled from its sources as they are
// (runtime/src/ops/conv2d.cpp and dense.cpp, target_clones avx2 / default,
// -ffp-contract=off): conv_pixels and accumulate_rows live in anonymous
// namespaces, so this file includes the two sources and wraps them. Everything
// else in them (the Conv2d op, read_dense) is unreferenced here and dropped by
// --gc-sections.
#include "ops/conv2d.cpp"
#include "ops/dense.cpp"

#include "api.h"

FPB_API void own_conv(const FpbConv *a) {
  const int64_t out_h = fpb_out_size(a->h, a->kernel, a->stride, a->padding);
  const int64_t out_w = fpb_out_size(a->w, a->kernel, a->stride, a->padding);
  const bnext::ConvArgs args{a->x,     a->weight_t, a->bias,   a->scale,
                             a->shift, a->out,      a->h,      a->w,
                             a->c,     a->kernel,   a->stride, a->padding,
                             out_w,    a->out_c,    a->out_c};
  bnext::conv_pixels(
      args, 0,
      out_h * out_w); // Conv2d::run on one thread: one call over all pixels
}

namespace {
struct OwnDense {
  bnext::DenseWeights dense;
  mutable std::vector<float> quantized;
};
} // namespace

FPB_API void *own_dense_new(const float *weight_t, const float *bias,
                            int64_t in, int64_t out) {
  auto *handle = new OwnDense;
  handle->dense.in = in;
  handle->dense.out = out;
  handle->dense.weight_t.assign(weight_t, weight_t + in * out);
  handle->dense.bias.assign(bias, bias + out);
  return handle;
}

FPB_API void own_dense_run(const void *handle, const float *x, float *y,
                           int64_t batch) {
  const auto *h = static_cast<const OwnDense *>(handle);
  for (int64_t sample = 0; sample < batch; ++sample) // the Linear op's loop
    bnext::dense_row(h->dense, x + sample * h->dense.in,
                     y + sample * h->dense.out, h->quantized);
}

FPB_API void own_dense_free(void *handle) {
  delete static_cast<OwnDense *>(handle);
}
