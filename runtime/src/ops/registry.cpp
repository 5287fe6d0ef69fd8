// make_op: an op kind and its input roles -> the op. The one list of kinds the runtime runs.
#include <set>

#include "ops/ops.h"

namespace bnext {
namespace {

// The name of role `role` in the op's "inputs" object, or "" when absent (an Error when it is not a string).
std::string input_of(const OpReader& reader, const json::Value& inputs, const std::string& role) {
  const json::Value* name = inputs.find(role);
  if (name == nullptr) return "";
  if (!name->is_string() || name->string().empty()) reader.fail("input \"" + role + "\" must name an activation");
  return name->string();
}

}  // namespace

std::unique_ptr<Op> make_op(const OpReader& reader, const json::Value& inputs, std::vector<std::string>& names,
                            KernelPath path) {
  if (!inputs.is_object()) reader.fail("\"inputs\" must be an object of role -> activation");
  const std::string& kind = reader.kind();
  std::set<std::string> roles;
  auto take = [&](const std::string& role, bool required) {
    const std::string name = input_of(reader, inputs, role);
    if (name.empty() && required) reader.fail("input \"" + role + "\" is missing");
    if (!name.empty()) names.push_back(name);
    roles.insert(role);
    return !name.empty();
  };
  std::unique_ptr<Op> op;
  if (kind == "unit_tail") {
    take("y", true);
    const bool has_x = take("x", false), has_residual = take("residual", false);
    const bool has_gate_input = take("gate_input", false);
    op = make_unit_tail(reader, has_x, has_residual, has_gate_input);
  } else if (kind == "add") {
    take("a", true);
    take("b", true);
    op = make_add(reader);
  } else if (kind == "concat") {
    int count = 0;
    while (count < 16 && take("x" + std::to_string(count), count == 0)) ++count;
    if (count < 2) reader.fail("concat needs at least two inputs x0, x1, ...");
    op = make_concat(reader, count);
  } else {
    take("x", true);
    if (kind == "conv2d")
      op = make_conv2d(reader);
    else if (kind == "linear")
      op = make_linear(reader);
    else if (kind == "binary_conv")
      op = make_binary_conv(reader, path);
    else if (kind == "prelu")
      op = make_prelu(reader);
    else if (kind == "channel_affine")
      op = make_channel_affine(reader);
    else if (kind == "max_pool")
      op = make_pool(reader, true);
    else if (kind == "avg_pool")
      op = make_pool(reader, false);
    else if (kind == "global_avg_pool")
      op = make_global_avg_pool(reader);
    else
      reader.fail("unknown op kind \"" + kind + "\": the file needs a newer bnext-runtime");
  }
  for (const auto& [role, value] : inputs.object()) {
    (void)value;
    if (!roles.count(role)) reader.fail("unknown input role \"" + role + "\"");
  }
  return op;
}

}  // namespace bnext
