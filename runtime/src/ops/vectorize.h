// BNEXT_CLONES: a per-pixel loop compiled twice on x86-64, for AVX2 and for any x86-64 CPU, the loader
// picking the clone the CPU runs (GCC function multiversioning). The library itself assumes no ISA. No
// FMA in the clones: they compute the same floats as the default code. Elsewhere (AArch64: NEON is
// baseline) it is empty.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(BNEXT_EMULATE_X86)
#define BNEXT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define BNEXT_CLONES
#endif
