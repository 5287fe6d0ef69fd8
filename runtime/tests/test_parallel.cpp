// The thread pool behind parallel_for: every item exactly once, the same chunks at any thread count, loops
// inside loops, two callers at once, many loops in a row (workers waking and sleeping), and a forked child.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "check.h"
#include "parallel.h"

namespace {

// How many times each item of [0, items) was visited by parallel_for(.., grain, threads).
std::vector<int> visits(int64_t items, int64_t grain, int threads) {
  std::vector<std::atomic<int>> counts(items);
  bnext::parallel_for(0, items, grain, threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) counts[i].fetch_add(1);
  });
  std::vector<int> out;
  for (auto& c : counts) out.push_back(c.load());
  return out;
}

TEST(parallel_for_visits_every_item_once) {
  for (const int64_t items : {1, 2, 3, 7, 64, 1000, 4099})
    for (const int64_t grain : {1, 5, 256})
      for (const int threads : {1, 2, 3, 8}) {
        const std::vector<int> counts = visits(items, grain, threads);
        bool once = true;
        for (const int c : counts) once = once && c == 1;
        CHECK_MSG(once, items << " items, grain " << grain << ", " << threads << " threads: not each once");
      }
}

TEST(parallel_for_chunks_do_not_depend_on_who_runs_them) {
  for (const int threads : {2, 3, 5}) {
    std::set<std::pair<int64_t, int64_t>> first, again;
    std::atomic<int> guard{0};
    auto record = [&](std::set<std::pair<int64_t, int64_t>>& into) {
      bnext::parallel_for(10, 1010, 7, threads, [&](int64_t begin, int64_t end) {
        while (guard.exchange(1)) {
        }
        into.insert({begin, end});
        guard.store(0);
      });
    };
    record(first);
    record(again);
    CHECK_MSG(first == again && static_cast<int>(first.size()) == threads,
              threads << " threads: the chunks differ between runs or are not one per thread");
  }
}

TEST(parallel_for_nested_and_concurrent_callers) {
  std::atomic<int64_t> sum{0};
  bnext::parallel_for(0, 8, 1, 4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)  // a loop inside a loop runs on its caller
      bnext::parallel_for(0, 100, 1, 4, [&](int64_t b, int64_t e) { sum.fetch_add(e - b); });
  });
  CHECK(sum.load() == 800);
  std::atomic<int64_t> a{0}, b{0};
  auto caller = [](std::atomic<int64_t>& total) {
    for (int round = 0; round < 200; ++round)
      bnext::parallel_for(0, 1000, 1, 2, [&](int64_t begin, int64_t end) { total.fetch_add(end - begin); });
  };
  std::thread first(caller, std::ref(a)), second(caller, std::ref(b));
  first.join();
  second.join();
  CHECK_MSG(a.load() == 200000 && b.load() == 200000, "two callers at once lost items: " << a << ", " << b);
}

TEST(parallel_for_many_loops_with_sleeping_workers) {
  int64_t total = 0;
  for (int round = 0; round < 2000; ++round) {
    std::atomic<int64_t> sum{0};
    bnext::parallel_for(0, 64, 1, 2, [&](int64_t begin, int64_t end) { sum.fetch_add(end - begin); });
    total += sum.load();
    if (round % 500 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));  // workers go to sleep
  }
  CHECK(total == 2000 * 64);
}

TEST(parallel_for_in_a_forked_child) {
  if (std::getenv("BNEXT_TESTS_UNDER_QEMU") != nullptr) {  // set by run_aarch64.sh
    std::fprintf(stderr, "  note: skipped under qemu-user, which cannot fork a process that has threads\n");
    return;
  }
  bnext::parallel_for(0, 100, 1, 2, [](int64_t, int64_t) {});  // the parent's pool has a worker
  const pid_t child = fork();
  if (child == 0) {
    std::atomic<int64_t> sum{0};
    bnext::parallel_for(0, 1000, 1, 2, [&](int64_t begin, int64_t end) { sum.fetch_add(end - begin); });
    _exit(sum.load() == 1000 ? 0 : 1);
  }
  CHECK_MSG(child > 0, "fork failed");
  if (child <= 0) return;
  int status = 0;
  waitpid(child, &status, 0);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the forked child's parallel_for failed");
}

}  // namespace
