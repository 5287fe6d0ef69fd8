// For the size check only: eigen_conv / eigen_dense pick the AVX2+FMA or the
// baseline Eigen build at run time, as the runtime's target_clones pick their
// avx2 or default clone (a library that assumes no ISA ships both).
#include "api.h"

FPB_API void eigen_conv(const FpbConv *a) {
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    eigen_avx2fma_conv(a);
  else
    eigen_base_conv(a);
}

FPB_API void eigen_dense(const float *weight_t, const float *bias,
                         const float *x, float *y, int64_t in, int64_t out,
                         int64_t batch) {
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    eigen_avx2fma_dense(weight_t, bias, x, y, in, out, batch);
  else
    eigen_base_dense(weight_t, bias, x, y, in, out, batch);
}
