// The op makers, one per kind (ops/*.cpp); ops/registry.cpp maps kinds and input roles to them.
#pragma once

#include <memory>

#include "ops/op.h"

namespace bnext {

std::unique_ptr<Op> make_conv2d(const OpReader& reader);
std::unique_ptr<Op> make_linear(const OpReader& reader);
std::unique_ptr<Op> make_binary_conv(const OpReader& reader, KernelPath path);
std::unique_ptr<Op> make_unit_tail(const OpReader& reader, bool has_x, bool has_residual, bool has_gate_input);
std::unique_ptr<Op> make_prelu(const OpReader& reader);
std::unique_ptr<Op> make_channel_affine(const OpReader& reader);
std::unique_ptr<Op> make_add(const OpReader& reader);
std::unique_ptr<Op> make_concat(const OpReader& reader, int inputs);
std::unique_ptr<Op> make_pool(const OpReader& reader, bool max);
std::unique_ptr<Op> make_global_avg_pool(const OpReader& reader);

}  // namespace bnext
