// The one place that knows which kernel paths exist in this build, detects what the CPU runs, and hands out
// each path's table (kernels.h). A build compiles only its architecture's kernel files (CMakeLists.txt
// defines BNEXT_HAVE_X86 / BNEXT_HAVE_NEON accordingly), and only those are named here.
#include <string>
#include <vector>

#include "error.h"
#include "kernels/binary_conv.h"
#include "kernels/kernels.h"

namespace bnext {
namespace {

bool always() { return true; }

#ifdef BNEXT_HAVE_X86
#ifdef BNEXT_EMULATE_X86
// Every x86 intrinsic comes from SIMDe: every x86 path runs on any CPU (the test build).
bool cpu_has_avx2() { return true; }
bool cpu_has_avx512bw() { return true; }
bool cpu_has_avx512() { return true; }
#else
bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool cpu_has_avx512bw() {
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
}

bool cpu_has_avx512() { return cpu_has_avx512bw() && __builtin_cpu_supports("avx512vpopcntdq"); }
#endif
#endif

struct Entry {
  KernelPath path;
  bool (*cpu_runs)();
  const kernels::PathKernels& (*kernels)();
};

// The paths of this build, slowest first: one line per path.
const Entry kEntries[] = {
    {KernelPath::kPortable, always, kernels::portable_kernels},
#ifdef BNEXT_HAVE_X86
    {KernelPath::kAvx2, cpu_has_avx2, kernels::avx2_kernels},
    {KernelPath::kAvx512Bw, cpu_has_avx512bw, kernels::avx512bw_kernels},
    {KernelPath::kAvx512, cpu_has_avx512, kernels::avx512_kernels},
#endif
#ifdef BNEXT_HAVE_NEON
    {KernelPath::kNeon, always, kernels::neon_kernels},  // AArch64: NEON is part of the base ISA
#endif
};

constexpr KernelPath kAllPaths[] = {KernelPath::kPortable, KernelPath::kAvx2, KernelPath::kAvx512,
                                    KernelPath::kAvx512Bw, KernelPath::kNeon};

// The supported entries, detected once.
const std::vector<const Entry*>& runnable_entries() {
  static const std::vector<const Entry*> entries = [] {
    std::vector<const Entry*> found;
    for (const Entry& entry : kEntries)
      if (entry.cpu_runs()) found.push_back(&entry);
    return found;
  }();
  return entries;
}

std::string runnable_names() {
  std::string names;
  for (const Entry* entry : runnable_entries()) {
    if (!names.empty()) names += ", ";
    names += kernel_path_name(entry->path);
  }
  return names;
}

}  // namespace

const char* kernel_path_name(KernelPath path) {
  switch (path) {
    case KernelPath::kPortable: return "portable";
    case KernelPath::kAvx2: return "avx2";
    case KernelPath::kAvx512: return "avx512";
    case KernelPath::kAvx512Bw: return "avx512bw";
    case KernelPath::kNeon: return "neon";
  }
  return "unknown";
}

std::vector<KernelPath> supported_kernel_paths() {
  std::vector<KernelPath> paths;
  for (const Entry* entry : runnable_entries()) paths.push_back(entry->path);
  return paths;
}

KernelPath best_kernel_path() { return runnable_entries().back()->path; }

KernelPath kernel_path_from_name(const std::string& name) {
  for (KernelPath path : kAllPaths) {
    if (name != kernel_path_name(path)) continue;
    for (const Entry* entry : runnable_entries())
      if (entry->path == path) return path;
    throw Error("kernel path \"" + name + "\" cannot run in this build on this CPU; it runs: " + runnable_names());
  }
  throw Error("unknown kernel path \"" + name + "\"; this build on this CPU runs: " + runnable_names());
}

namespace kernels {

const PathKernels& path_kernels(KernelPath path) {
  for (const Entry* entry : runnable_entries())
    if (entry->path == path) return entry->kernels();
  throw Error("kernel path \"" + std::string(kernel_path_name(path)) +
              "\" cannot run in this build on this CPU; it runs: " + runnable_names());
}

}  // namespace kernels
}  // namespace bnext
