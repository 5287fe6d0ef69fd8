// The same fp conv and dense with Eigen (core module, single thread: no OpenMP,
// EIGEN_DONT_PARALLELIZE). Conv: im2col into a reused buffer (a 1x1 stride-1
// conv reads x as it is) and one GEMM, patches [pixels][K] . weight_t
// [K][out_c], both row-major maps of the runtime's layouts (the result is
// NHWC), then the per-channel bias and affine in one pass. Dense: one GEMV
// (batch 1) or GEMM. Compiled once per ISA variant; FPB_PREFIX names the entry
// points, and -DEigen=<a name per variant> renames Eigen's namespace, so that
// the variants' inline functions and template instances (the same names, code
// for different ISAs) never merge at link time.
#include <algorithm>
#include <cstring>

#include <Eigen/Core>

#include "api.h"

#define FPB_CAT2(a, b) a##b
#define FPB_CAT(a, b) FPB_CAT2(a, b)

namespace {

using RowMajor =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowArray = Eigen::Array<float, 1, Eigen::Dynamic>;

// patches[(oy, ox)][(ky, kx, c)]: the conv's windows in the runtime's (ky, kx,
// c) order, zeros for padding.
void im2col(const FpbConv &a, int64_t out_h, int64_t out_w, float *patches) {
  const int64_t c = a.c, k = a.kernel, row = k * c;
  for (int64_t oy = 0; oy < out_h; ++oy)
    for (int64_t ox = 0; ox < out_w; ++ox) {
      float *dst = patches + (oy * out_w + ox) * k * row;
      const int64_t top = oy * a.stride - a.padding,
                    left = ox * a.stride - a.padding;
      for (int64_t ky = 0; ky < k; ++ky, dst += row) {
        const int64_t iy = top + ky;
        if (iy < 0 || iy >= a.h) {
          std::fill(dst, dst + row, 0.0f);
        } else if (left >= 0 && left + k <= a.w) { // the window's row is k * c
                                                   // contiguous floats of x
          std::memcpy(dst, a.x + (iy * a.w + left) * c, sizeof(float) * row);
        } else {
          for (int64_t kx = 0; kx < k; ++kx) {
            const int64_t ix = left + kx;
            if (ix < 0 || ix >= a.w)
              std::fill(dst + kx * c, dst + (kx + 1) * c, 0.0f);
            else
              std::memcpy(dst + kx * c, a.x + (iy * a.w + ix) * c,
                          sizeof(float) * c);
          }
        }
      }
    }
}

} // namespace

FPB_API void FPB_CAT(FPB_PREFIX, _conv)(const FpbConv *a) {
  const int64_t out_h = fpb_out_size(a->h, a->kernel, a->stride, a->padding);
  const int64_t out_w = fpb_out_size(a->w, a->kernel, a->stride, a->padding);
  const int64_t pixels = out_h * out_w, depth = a->kernel * a->kernel * a->c;
  const float *patches = a->x;
  if (a->kernel != 1 || a->stride != 1 || a->padding != 0) {
    im2col(*a, out_h, out_w, a->scratch);
    patches = a->scratch;
  }
  Eigen::Map<const RowMajor> p(patches, pixels, depth),
      w(a->weight_t, depth, a->out_c);
  Eigen::Map<RowMajor> y(a->out, pixels, a->out_c);
  y.noalias() = p * w;
  Eigen::Map<const RowArray> bias(a->bias, a->out_c);
  if (a->scale != nullptr) {
    Eigen::Map<const RowArray> scale(a->scale, a->out_c),
        shift(a->shift, a->out_c);
    y.array() =
        ((y.array().rowwise() + bias).rowwise() * scale).rowwise() + shift;
  } else {
    y.array().rowwise() += bias;
  }
}

FPB_API void FPB_CAT(FPB_PREFIX, _dense)(const float *weight_t,
                                         const float *bias, const float *x,
                                         float *y, int64_t in, int64_t out,
                                         int64_t batch) {
  Eigen::Map<const RowMajor> w(weight_t, in, out);
  Eigen::Map<const RowArray> b(bias, out);
  if (batch == 1) {
    Eigen::Map<const Eigen::RowVectorXf> xv(x, in);
    Eigen::Map<Eigen::RowVectorXf> yv(y, out);
    yv.noalias() = xv * w; // a GEMV: w^T (column-major) times x
    yv.array() += b;
  } else {
    Eigen::Map<const RowMajor> xm(x, batch, in);
    Eigen::Map<RowMajor> ym(y, batch, out);
    ym.noalias() = xm * w;
    ym.array().rowwise() += b;
  }
}

FPB_API int FPB_CAT(FPB_PREFIX, _threads)(void) {
  Eigen::setNbThreads(1);
  return Eigen::nbThreads();
}
