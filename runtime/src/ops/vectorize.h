// BNEXT_CLONES: a per-pixel loop compiled twice on x86-64, for AVX2 and for any x86-64 CPU, the loader
// picking the clone the CPU runs (GCC function multiversioning). The library itself assumes no ISA. No
// FMA in the clones: they compute the same floats as the default code. Elsewhere (AArch64: NEON is
// baseline) it is empty.
//
// V8: 8 floats as one GCC vector (one ymm register in the AVX2 clone, two xmm / NEON registers elsewhere), for
// loops that keep accumulators in registers, which the auto-vectorizer does not do across a loop over pixels.
// Element-wise +, *, comparisons and ?: on V8 are the scalar float operations lane by lane (no FMA: the build
// has -ffp-contract=off), so code written with V8 rounds exactly as its scalar form.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(BNEXT_EMULATE_X86)
#define BNEXT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define BNEXT_CLONES
#endif

// V8 values pass by value between the always-inlined helpers below and the code using them; GCC notes at each
// such place that the ABI of 32-byte vectors differs with and without AVX (-Wpsabi). No call crosses that
// boundary (nothing taking or returning a V8 is ever called out of line), so the note is off in every file
// that includes this header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace bnext::vec {

typedef float V8 __attribute__((vector_size(32)));
typedef int32_t I8 __attribute__((vector_size(32)));

#define BNEXT_VEC_INLINE inline __attribute__((always_inline))

BNEXT_VEC_INLINE V8 load8(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

BNEXT_VEC_INLINE void store8(float* p, const V8& v) { std::memcpy(p, &v, sizeof v); }

// s in every lane (s - 0 is s for every float, -0 and NaN included; written so, GCC emits one broadcast, where
// the initializer list {s, s, ...} became eight lane inserts).
BNEXT_VEC_INLINE V8 splat8(float s) { return s - V8{}; }

// v > 0 ? v : v * s, lane by lane (NaN stays NaN).
BNEXT_VEC_INLINE V8 prelu8(const V8& v, const V8& s) { return v > 0.0f ? v : v * s; }

}  // namespace bnext::vec
