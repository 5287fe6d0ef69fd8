// Runs the registered tests (check.h); argv[1], when given, keeps those whose name contains it.
#include <cstdio>
#include <exception>
#include <string>

#include "check.h"

namespace bnext::testing {

std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

namespace {
int failures_in_case = 0;
}

void fail(const char* file, int line, const std::string& message) {
  ++failures_in_case;
  std::fprintf(stderr, "  %s:%d: %s\n", file, line, message.c_str());
}

}  // namespace bnext::testing

int main(int argc, char** argv) {
  using namespace bnext::testing;
  const std::string filter = argc > 1 ? argv[1] : "";
  int passed = 0, failed = 0;
  for (const auto& test : registry()) {
    if (!filter.empty() && test.name.find(filter) == std::string::npos) continue;
    failures_in_case = 0;
    try {
      test.body();
    } catch (const std::exception& error) {
      fail(__FILE__, __LINE__, std::string("uncaught exception: ") + error.what());
    }
    std::fprintf(stderr, "%s %s\n", failures_in_case ? "FAIL" : "ok  ", test.name.c_str());
    (failures_in_case ? failed : passed) += 1;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
