// Work split over threads: OpenMP when the build has it, else one thread. Every parallel loop in the
// runtime goes through parallel_for, so that the model's thread count (bnext_model_set_threads) is the
// only knob.
#pragma once

#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace bnext {

// fn(begin, end) over [begin, end) in chunks of at least `grain` items, on at most `threads` threads.
// Chunks are contiguous and handed out statically: the same split for the same arguments.
template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, int threads, const F& fn) {
  const int64_t items = end - begin;
  if (items <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = std::min<int64_t>(std::max(threads, 1), (items + grain - 1) / grain);
  if (chunks <= 1) {
    fn(begin, end);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel for num_threads(static_cast<int>(chunks)) schedule(static, 1)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    fn(begin + items * chunk / chunks, begin + items * (chunk + 1) / chunks);
  }
#else
  fn(begin, end);
#endif
}

// The index of the calling thread inside parallel_for (0 outside, or without OpenMP).
inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace bnext
