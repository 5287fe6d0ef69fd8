// What the x86 kernel files (x86_avx2.cpp, x86_avx512.cpp) share: the intrinsics headers, the target macros and
// the vectorized epilogues (8 and 16 lanes), so that every x86 path computes the same floats. Included by x86
// files only.
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

// GCC 12's AVX-512 headers seed some intrinsics (_mm512_castsi512_si256, _mm512_extracti64x4_epi64,
// _mm512_broadcast_i32x4) with a self-initialized "undefined" vector, which -Wall reports once they are inlined
// (GCC bug 105593, fixed in GCC 13). Popped at the end of this file; x86_avx512.cpp does the same for its own.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// The AVX-512 paths' features (VPOPCNTDQ is named by the tiles that use it, in x86_avx512.cpp).
#define BNEXT_AVX512BW BNEXT_TARGET("avx2,fma,avx512f,avx512dq,avx512vl,avx512bw")

// int32 -> float at 16 lanes (exact conversions of the same values either way). SIMDe 0.7.4 has no
// _mm512_cvtepi32_ps: the emulated build converts the two 256-bit halves.
BNEXT_AVX512BW inline __m512 cvtepi32_ps_512(__m512i v) {
#ifdef BNEXT_EMULATE_X86
  const __m256 low = _mm256_cvtepi32_ps(_mm512_castsi512_si256(v));
  return _mm512_insertf32x8(_mm512_castps256_ps512(low), _mm256_cvtepi32_ps(_mm512_extracti64x4_epi64(v, 1)), 1);
#else
  return _mm512_cvtepi32_ps(v);
#endif
}

// finish_avx2 at 16 lanes: the same float operations (the dot exact in int32, one FMA, the PReLU product where
// y is not > 0), so that the AVX-512 paths compute the same floats as the AVX2 one. counts: the 16 channels'
// counts in channel order, all 16 real (o + 16 <= out_channels; fewer go through finish_avx512_tail); border:
// the row's border term at channel o, or nullptr (no out-of-image taps in the row).
template <bool kPrelu>
BNEXT_AVX512BW inline void finish_avx512(const Gemm& g, int64_t m, int64_t o, __m512i counts, const int32_t* border) {
  __m512i dot = _mm512_sub_epi32(_mm512_set1_epi32(g.k_bits), _mm512_slli_epi32(counts, 1));
  if (border != nullptr) dot = _mm512_sub_epi32(dot, _mm512_loadu_si512(border));
  __m512 y = _mm512_fmadd_ps(_mm512_loadu_ps(g.scale + o), cvtepi32_ps_512(dot), _mm512_loadu_ps(g.shift + o));
  if constexpr (kPrelu) {
    const auto negative = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_NGT_UQ);
    y = _mm512_mask_mul_ps(y, negative, y, _mm512_loadu_ps(g.slope + o));
  }
  _mm512_storeu_ps(g.out + m * g.out_channels + o, y);
}

// The last 1..15 real channels from o (the end of the output row): by halves through finish_avx2 and its
// masked store (SIMDe 0.7.4, the emulated build, has no 512-bit masked store). Out of line: once per row of
// the last panel, where out_channels is not a multiple of 16.
template <bool kPrelu>
BNEXT_AVX512BW __attribute__((noinline)) void finish_avx512_tail(const Gemm& g, int64_t m, int64_t o, __m512i counts) {
  finish_avx2<kPrelu>(g, m, o, _mm512_castsi512_si256(counts), load_affine(g, o));
  finish_avx2<kPrelu>(g, m, o + 8, _mm512_extracti64x4_epi64(counts, 1), load_affine(g, o + 8));
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace bnext::kernels::x86
