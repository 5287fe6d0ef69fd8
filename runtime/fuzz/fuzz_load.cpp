// libFuzzer target: a .bnx loaded from arbitrary bytes is refused or loaded, never a crash, a hang, an
// out-of-bounds access or undefined behaviour (built with -fsanitize=fuzzer,address,undefined; see
// run_fuzz.sh). The input becomes container bytes as fuzz_input.h says (checksum fixed, or header wrapped).
//
// Default: the whole load through the C API (bnext_model_load_buffer: container, graph, weights). With
// BNEXT_FUZZ_CONTAINER_ONLY: the container layer alone (bnext::parse_bnx), which any Error may end.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz_input.h"

#ifdef BNEXT_FUZZ_CONTAINER_ONLY
#include "bnx_file.h"
#include "error.h"
#else
#include "bnext_runtime.h"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes = bnext::fuzz::container_from_input(data, size);
#ifdef BNEXT_FUZZ_CONTAINER_ONLY
  try {
    const auto file = bnext::parse_bnx(bytes, "fuzz input");
    // Touch every view: an out-of-range one is caught by ASan here.
    volatile uint8_t sink = 0;
    for (const auto& item : file->tensors) {
      const bnext::TensorView& view = item.second;
      if (view.nbytes) sink = sink ^ view.data[0] ^ view.data[view.nbytes - 1];
      (void)view.numel();
    }
  } catch (const bnext::Error&) {
    // A refusal is the expected outcome for most inputs; any other exception escapes and is a finding.
  }
#else
  bnext_model* model = bnext_model_load_buffer(bytes.data(), bytes.size(), NULL);
  if (model) bnext_model_free(model);
#endif
  return 0;
}
