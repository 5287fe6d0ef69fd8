// The fp conv and dense entry points the bench times and the size check links:
// the runtime's own code (own.cpp) and the same functions written with Eigen
// (eigen.cpp, compiled once per ISA variant under a name prefix).
#pragma once

#include <cstdint>

#define FPB_API extern "C" __attribute__((visibility("default")))

// A conv as runtime/src/ops/conv2d.cpp computes it: x NHWC (one sample),
// weight_t [(ky, kx, c)][out_c], y = (sum + bias) * scale + shift per output
// channel (scale / shift: nullptr for none), zero padding.
struct FpbConv {
  const float *x, *weight_t, *bias, *scale, *shift;
  float *out;
  float *scratch; // out_h * out_w * kernel^2 * c floats (Eigen's im2col buffer;
                  // the own code ignores it)
  int64_t h, w, c, kernel, stride, padding, out_c;
};

inline int64_t fpb_out_size(int64_t size, int64_t kernel, int64_t stride,
                            int64_t padding) {
  return (size + 2 * padding - kernel) / stride + 1;
}

// The runtime's own code (own.cpp). The dense handle holds a
// bnext::DenseWeights, as the Linear op does.
FPB_API void own_conv(const FpbConv *a);
FPB_API void *own_dense_new(const float *weight_t, const float *bias,
                            int64_t in, int64_t out);
FPB_API void own_dense_run(const void *handle, const float *x, float *y,
                           int64_t batch);
FPB_API void own_dense_free(void *handle);

// Eigen, one set per compiled variant (the prefix: eigen_avx2fma, eigen_avx2,
// eigen_base). dense: y [batch][out] = x [batch][in] . weight_t [in][out] +
// bias; threads: Eigen::setNbThreads(1), then Eigen's thread count.
#define FPB_EIGEN_DECLARE(prefix)                                              \
  FPB_API void prefix##_conv(const FpbConv *a);                                \
  FPB_API void prefix##_dense(const float *weight_t, const float *bias,        \
                              const float *x, float *y, int64_t in,            \
                              int64_t out, int64_t batch);                     \
  FPB_API int prefix##_threads(void);
FPB_EIGEN_DECLARE(eigen_avx2fma)
FPB_EIGEN_DECLARE(eigen_avx2)
FPB_EIGEN_DECLARE(eigen_base)
