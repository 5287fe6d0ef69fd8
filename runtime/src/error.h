// The one exception type inside the runtime. Its message names the problem and, where there is one, the fix;
// the C API turns it into error text (no C++ exception crosses the C boundary).
#pragma once

#include <stdexcept>
#include <string>

namespace bnext {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws Error(message) unless ok.
inline void require(bool ok, const std::string& message) {
  if (!ok) throw Error(message);
}

}  // namespace bnext
