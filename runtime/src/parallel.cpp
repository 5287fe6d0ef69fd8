// The thread pool behind parallel_for (parallel.h): one per process, its workers started on first use (as many
// as the largest thread count asked for, minus the caller) and kept; between loops they spin briefly, then sleep.
#include "parallel.h"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace bnext::detail {
namespace {

// How long an idle worker polls for the next loop before it sleeps: a model's loops follow each other within
// microseconds, and a woken worker arrives late (hundreds of microseconds in a VM) and then holds the chunk it
// claims. 200 us let the worker sleep between the back-to-back calls of a benchmark (a 1x1 conv at 56 px ran no
// faster at 2 threads than at 1); OpenMP (libgomp) spins for milliseconds too.
constexpr std::chrono::microseconds kSpin{2000};

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

struct Job {
  ChunkFn fn;
  const void* context;
  int64_t chunks;
  int helpers;                       // workers 0 .. helpers - 1 may take part
  std::atomic<int64_t> next{0};      // the next unclaimed chunk
  std::atomic<int64_t> finished{0};  // chunks done
};

// The chunks of `job` not yet claimed, claimed one at a time and run.
void claim(Job& job) {
  for (int64_t chunk; (chunk = job.next.fetch_add(1, std::memory_order_relaxed)) < job.chunks;) {
    job.fn(job.context, chunk);
    job.finished.fetch_add(1, std::memory_order_release);
  }
}

class Pool {
 public:
  void run(Job& job) {
    if (busy_.exchange(true, std::memory_order_acquire)) {  // a loop inside a loop, or a second caller: alone
      claim(job);
      return;
    }
    grow(job.helpers);
    current_.store(&job, std::memory_order_seq_cst);
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      wake_.notify_all();
    }
    claim(job);
    // Only chunks a worker claimed can be unfinished: those workers are running them.
    while (job.finished.load(std::memory_order_acquire) < job.chunks) relax();
    current_.store(nullptr, std::memory_order_seq_cst);
    // A worker between reading current_ and finding no chunk left may still touch the job: wait for it.
    while (entering_.load(std::memory_order_seq_cst) != 0) relax();
    busy_.store(false, std::memory_order_release);
  }

 private:
  void grow(int workers) {
    std::lock_guard<std::mutex> lock(mutex_);
    while (static_cast<int>(workers_.size()) < workers) {
      const int index = static_cast<int>(workers_.size());
      workers_.emplace_back([this, index] { work(index); });
      workers_.back().detach();  // the pool lives as long as the process
    }
  }

  void work(int index) {
    uint64_t seen = epoch_.load(std::memory_order_acquire);
    for (;;) {
      uint64_t now = epoch_.load(std::memory_order_acquire);
      const auto give_up = std::chrono::steady_clock::now() + kSpin;
      while (now == seen && std::chrono::steady_clock::now() < give_up) {
        relax();
        now = epoch_.load(std::memory_order_acquire);
      }
      if (now == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, [&] { return (now = epoch_.load(std::memory_order_seq_cst)) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      }
      seen = now;
      entering_.fetch_add(1, std::memory_order_seq_cst);
      Job* job = current_.load(std::memory_order_seq_cst);
      if (job != nullptr && index < job->helpers) claim(*job);
      entering_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }

  std::mutex mutex_;  // the workers list, and sleeping / waking
  std::condition_variable wake_;
  std::vector<std::thread> workers_;
  std::atomic<bool> busy_{false};  // a loop is running on the pool
  std::atomic<Job*> current_{nullptr};
  std::atomic<uint64_t> epoch_{0};  // bumped for every loop
  std::atomic<int> entering_{0};    // workers looking at current_
  std::atomic<int> sleepers_{0};
};

// The process's pool. A forked child gets a fresh one (the parent's workers do not exist in the child, and its
// pool may have been mid-loop at the fork): the old one is left as it is.
Pool* g_pool = nullptr;

Pool& pool() {
  static const bool started = [] {
    g_pool = new Pool();
    pthread_atfork(nullptr, nullptr, [] { g_pool = new Pool(); });
    return true;
  }();
  (void)started;
  return *g_pool;
}

}  // namespace

void run_chunks(int64_t chunks, int threads, ChunkFn fn, const void* context) {
  Job job;
  job.fn = fn;
  job.context = context;
  job.chunks = chunks;
  job.helpers = std::max(0, threads - 1);
  if (job.helpers == 0) {
    claim(job);
    return;
  }
  pool().run(job);
}

}  // namespace bnext::detail
