// A minimal test registry for the runtime's C++ tests (no test framework to install): TEST(name) { ... }
// registers a test; CHECK(cond) / CHECK_THROWS(expr, fragment) record failures. tests/main.cpp runs them all
// (or those whose name contains argv[1]) and ends with "N passed, N failed".
#pragma once

#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace bnext::testing {

struct Case {
  std::string name;
  std::function<void()> body;
};

std::vector<Case>& registry();
void fail(const char* file, int line, const std::string& message);

struct Register {
  Register(const char* name, std::function<void()> body) { registry().push_back({name, std::move(body)}); }
};

}  // namespace bnext::testing

#define BNEXT_CONCAT2(a, b) a##b
#define BNEXT_CONCAT(a, b) BNEXT_CONCAT2(a, b)
#define TEST(name)                                                               \
  static void name();                                                            \
  static ::bnext::testing::Register BNEXT_CONCAT(register_, name)(#name, &name); \
  static void name()

#define CHECK(cond)                                                                     \
  do {                                                                                  \
    if (!(cond)) ::bnext::testing::fail(__FILE__, __LINE__, "CHECK(" #cond ") failed"); \
  } while (0)

#define CHECK_MSG(cond, msg)                                           \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::ostringstream check_stream_;                                \
      check_stream_ << "CHECK(" #cond ") failed: " << msg;             \
      ::bnext::testing::fail(__FILE__, __LINE__, check_stream_.str()); \
    }                                                                  \
  } while (0)

// expr must throw bnext::Error whose message contains `fragment`.
#define CHECK_THROWS(expr, fragment)                                                                             \
  do {                                                                                                           \
    bool thrown_ = false;                                                                                        \
    try {                                                                                                        \
      expr;                                                                                                      \
    } catch (const ::bnext::Error& error_) {                                                                     \
      thrown_ = true;                                                                                            \
      const std::string what_ = error_.what();                                                                   \
      if (what_.find(fragment) == std::string::npos)                                                             \
        ::bnext::testing::fail(__FILE__, __LINE__, std::string("error lacks \"") + (fragment) + "\": " + what_); \
    }                                                                                                            \
    if (!thrown_) ::bnext::testing::fail(__FILE__, __LINE__, "no Error from " #expr);                            \
  } while (0)
