// What the x86 kernel files (x86_avx2.cpp, x86_avx512.cpp) share: the intrinsics headers, the target macro and
// the vectorized epilogue, so that every x86 path computes the same floats. Included by x86 files only.
//
// Built with BNEXT_EMULATE_X86 (the test build), every x86 intrinsic comes from SIMDe's portable C
// implementation and every x86 path reports itself as supported (select.cpp), so the AVX-512 paths are
// checked on CPUs that cannot run them. The intrinsics used here are therefore limited to those SIMDe 0.7.4
// (Debian bookworm's libsimde-dev) has.
#pragma once

#ifndef BNEXT_HAVE_X86
#error "x86 kernel code in a build without BNEXT_HAVE_X86"
#endif

#ifdef BNEXT_EMULATE_X86
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/fma.h>
#define BNEXT_TARGET(features)
#else
#include <immintrin.h>
#define BNEXT_TARGET(features) __attribute__((target(features)))
#endif

#include <cstdint>

#include "kernels/kernels.h"

namespace bnext::kernels::x86 {

// The epilogue of 8 channels of one row, with the per-channel vectors of a tile loaded once
// (``Affine8``): the dot K - 2 count - border is formed exactly in int32, then
// y = fma(scale, dot, shift) rounds once (finish_one rounds the product and the sum apart).
struct Affine8 {
  __m256 scale, shift, slope;
};

BNEXT_TARGET("avx2") inline Affine8 load_affine(const Gemm& g, int64_t o) {
  return {_mm256_loadu_ps(g.scale + o), _mm256_loadu_ps(g.shift + o),
          g.slope != nullptr ? _mm256_loadu_ps(g.slope + o) : _mm256_set1_ps(1.0f)};
}

// kPrelu: the layer has a PReLU (g.slope), fixed at compile time so that the row loops carry no test of it.
// counts: the 8 channels' mismatch counts, in channel order.
template <bool kPrelu>
BNEXT_TARGET("avx2,fma")
inline void finish_avx2(const Gemm& g, int64_t m, int64_t o, __m256i counts, const Affine8& affine) {
  const int64_t left = g.out_channels - o;
  if (left <= 0) return;
  __m256i dot = _mm256_sub_epi32(_mm256_set1_epi32(g.k_bits), _mm256_slli_epi32(counts, 1));
  if (g.row_pattern != nullptr && g.row_pattern[m] >= 0) {
    const int32_t* row = g.border + g.row_pattern[m] * g.padded_channels + o;
    dot = _mm256_sub_epi32(dot, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row)));
  }
  __m256 y = _mm256_fmadd_ps(affine.scale, _mm256_cvtepi32_ps(dot), affine.shift);
  if constexpr (kPrelu) {
    const __m256 negative = _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_NGT_UQ);
    y = _mm256_blendv_ps(y, _mm256_mul_ps(y, affine.slope), negative);
  }
  float* out = g.out + m * g.out_channels + o;
  if (left >= 8) {
    _mm256_storeu_ps(out, y);
  } else {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(out, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)), lane), y);
  }
}

}  // namespace bnext::kernels::x86
