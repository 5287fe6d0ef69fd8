// Whole exported models through the C API, on every kernel path this build and CPU run, against the logits
// PyTorch computed for them: the torch reference of the graph, the model's own eval, and (when present) the
// runtime on the machine that exported them (x86). The cases come from runtime/tests/make_model_cases.py, in
// the folder named by BNEXT_MODEL_CASES; without it the test passes with a note (the C++ tests need no Python).
//
// Tolerance: max |logits - expected| <= kTolerance * max |expected| (as tests/test_deploy.py). The achieved
// ratios are printed, so that an emulated AArch64 run reports how close it comes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "bnext_runtime.h"
#include "bnx_file.h"
#include "check.h"
#include "json.h"
#include "model.h"

namespace {

namespace fs = std::filesystem;

constexpr double kTolerance = 1e-4;

std::string read_text(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

// A file of little-endian float32 values (the machines this runs on are little-endian: see kernels.h).
std::vector<float> read_floats(const fs::path& path) {
  const std::string bytes = read_text(path);
  std::vector<float> values(bytes.size() / sizeof(float));
  std::copy(bytes.data(), bytes.data() + values.size() * sizeof(float), reinterpret_cast<char*>(values.data()));
  return values;
}

std::vector<std::string> split_paths(const std::string& text) {
  std::vector<std::string> names;
  std::stringstream stream(text);
  for (std::string name; std::getline(stream, name, ',');) names.push_back(name);
  return names;
}

// max |a - b| / max |b|.
double relative_gap(const std::vector<float>& a, const std::vector<float>& b) {
  double gap = 0.0, scale = 0.0;
  for (size_t i = 0; i < b.size(); ++i) {
    gap = std::max(gap, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return scale > 0.0 ? gap / scale : gap;
}

// The case folders under $BNEXT_MODEL_CASES, sorted; none (with a note) when it is not set.
std::vector<fs::path> model_cases() {
  const char* root = std::getenv("BNEXT_MODEL_CASES");
  if (root == nullptr || !fs::is_directory(root)) {
    std::fprintf(stderr,
                 "  note: BNEXT_MODEL_CASES is not a folder: the model cases are skipped "
                 "(make them with runtime/tests/make_model_cases.py)\n");
    return {};
  }
  std::vector<fs::path> cases;
  for (const auto& entry : fs::directory_iterator(root))
    if (fs::is_regular_file(entry.path() / "case.json")) cases.push_back(entry.path());
  std::sort(cases.begin(), cases.end());
  CHECK_MSG(!cases.empty(), "no case folders (with case.json) under " << root);
  return cases;
}

// Packed edges (an op packing its output for the binary convs that read it) give the same logits, bit for bit,
// as every binary conv packing its own input, on every path, at batch 1 and 3 (two runs each: the edges' words
// are reused across runs and sizes).
TEST(packed_edges_change_nothing) {
  for (const fs::path& folder : model_cases()) {
    for (const std::string& path : split_paths(bnext_supported_kernel_paths())) {
      bnext::Model model(bnext::read_bnx((folder / "model.bnx").string()), bnext::kernel_path_from_name(path));
      const int64_t c = model.in_channels(), h = model.height(), w = model.width(), classes = model.classes();
      for (const int64_t n : {3, 1, 3}) {
        std::vector<float> images(n * c * h * w);
        for (size_t i = 0; i < images.size(); ++i)
          images[i] = static_cast<float>((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
        std::vector<float> fused(n * classes), plain(n * classes);
        model.set_packed_edges(true);
        model.run(images.data(), n, c, h, w, fused.data());
        model.set_packed_edges(false);
        model.run(images.data(), n, c, h, w, plain.data());
        CHECK_MSG(fused == plain, folder.filename().string()
                                      << " (" << path << ", batch " << n << "): packed edges changed the logits");
      }
    }
  }
}

TEST(model_cases_match_pytorch) {
  const std::vector<fs::path> cases = model_cases();
  const std::vector<std::string> paths = split_paths(bnext_supported_kernel_paths());
  for (const fs::path& folder : cases) {
    const std::string name = folder.filename().string();
    const bnext::json::Value meta = bnext::json::parse(read_text(folder / "case.json"));
    const auto& shape = meta.find("input")->array();
    const int64_t n = static_cast<int64_t>(shape[0].number()), c = static_cast<int64_t>(shape[1].number());
    const int64_t h = static_cast<int64_t>(shape[2].number()), w = static_cast<int64_t>(shape[3].number());
    const std::vector<float> images = read_floats(folder / "input.bin");
    CHECK_MSG(static_cast<int64_t>(images.size()) == n * c * h * w, name << ": input.bin has the wrong size");
    if (static_cast<int64_t>(images.size()) != n * c * h * w) continue;
    for (const std::string& path : paths) {
      bnext_model* model = bnext_model_load_file((folder / "model.bnx").c_str(), path.c_str());
      CHECK_MSG(model != nullptr, name << " (" << path << "): " << bnext_last_error());
      if (model == nullptr) continue;
      const int64_t classes = bnext_model_num_classes(model);
      std::vector<float> logits(n * classes, std::nanf(""));
      const int status = bnext_model_run(model, images.data(), n, c, h, w, logits.data());
      CHECK_MSG(status == BNEXT_OK, name << " (" << path << "): " << bnext_last_error());
      bnext_model_free(model);
      for (const auto& key : meta.find("expected")->array()) {
        const std::vector<float> expected = read_floats(folder / (key.string() + ".bin"));
        CHECK_MSG(expected.size() == logits.size(), name << ": " << key.string() << ".bin has the wrong size");
        if (expected.size() != logits.size()) continue;
        const double gap = relative_gap(logits, expected);
        std::fprintf(stderr, "  %s %s vs %s: max |diff| = %.2e of the largest logit\n", name.c_str(), path.c_str(),
                     key.string().c_str(), gap);
        CHECK_MSG(gap <= kTolerance, name << " (" << path << "): logits off " << key.string() << " by " << gap
                                          << " of the largest, above " << kTolerance);
      }
    }
  }
}

}  // namespace
