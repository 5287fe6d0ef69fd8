// Work split over threads. Every parallel loop in the runtime goes through parallel_for, so that the model's
// thread count (bnext_model_set_threads) is the only knob.
//
// The threads are the runtime's own pool (parallel.cpp), not OpenMP: a loop's chunks are claimed one at a time
// by the calling thread and the pool's workers, and the caller waits only for chunks a worker has claimed. A
// worker whose core is taken by another process claims nothing and is not waited for; with OpenMP every
// parallel region waited for all its threads, i.e. for the scheduler to give a busy core back. bnext_tiny at
// 224 px, batch 1, 2 threads, 2-core AVX2 EPYC, one process per run, medians of 40 calls: quiet, OpenMP 16.4 /
// 16.1 ms, the pool 16.5 / 16.4; one core busy with a shell loop, OpenMP 26.4 / 28.7, the pool 25.5 / 22.5 (1
// thread: 19.3); both cores busy, OpenMP 37 and 580 (one run in two stalled), the pool 33.5 / 33.5.
#pragma once

#include <algorithm>
#include <cstdint>

namespace bnext {

namespace detail {

using ChunkFn = void (*)(const void* context, int64_t chunk);
// fn(context, c) for every c in [0, chunks), on the calling thread and at most threads - 1 pool workers.
void run_chunks(int64_t chunks, int threads, ChunkFn fn, const void* context);

}  // namespace detail

// fn(begin, end) over [begin, end) in chunks of at least `grain` items, on at most `threads` threads. The
// chunks are contiguous and the same for the same arguments (whichever thread runs each), so that results do
// not depend on which thread ran what. Called inside another parallel_for, it runs on the calling thread.
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
  struct Loop {
    const F* fn;
    int64_t begin, items, chunks;
  };
  const Loop loop{&fn, begin, items, chunks};
  detail::run_chunks(
      chunks, static_cast<int>(chunks),
      [](const void* context, int64_t chunk) {
        const Loop& l = *static_cast<const Loop*>(context);
        (*l.fn)(l.begin + l.items * chunk / l.chunks, l.begin + l.items * (chunk + 1) / l.chunks);
      },
      &loop);
}

}  // namespace bnext
