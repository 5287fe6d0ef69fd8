// OpReader: typed, checked access to an op's attrs and params.
#include <cmath>
#include <cstring>

#include "ops/op.h"

namespace bnext {
namespace {

const json::Value& member_object(const json::Value& entry, const char* key, const std::string& where) {
  const json::Value* value = entry.find(key);
  static const json::Value empty = json::Value::from_object({});
  if (value == nullptr) return empty;
  require(value->is_object(), where + ": \"" + key + "\" must be an object");
  return *value;
}

}  // namespace

OpReader::OpReader(const json::Value& entry, const BnxFile& file, std::string where)
    : attrs_(nullptr), params_(nullptr), file_(&file), where_(std::move(where)) {
  require(entry.is_object(), where_ + " is not an object");
  const json::Value* kind = entry.find("op");
  require(kind != nullptr && kind->is_string(), where_ + " has no \"op\" kind");
  kind_ = kind->string();
  attrs_ = &member_object(entry, "attrs", where_);
  params_ = &member_object(entry, "params", where_);
}

OpReader::OpReader(const json::Value& attrs, const json::Value* params, const BnxFile& file, std::string kind,
                   std::string where, std::string prefix)
    : attrs_(&attrs),
      params_(params),
      file_(&file),
      kind_(std::move(kind)),
      where_(std::move(where)),
      prefix_(std::move(prefix)) {}

void OpReader::fail(const std::string& message) const {
  throw Error(where_ + " (" + kind_ + "): " + message + "; the file is damaged or was not written by bnext export");
}

bool OpReader::has(const std::string& key) const { return attrs_->find(key) != nullptr; }

int64_t OpReader::integer(const std::string& key, int64_t min, int64_t max) const {
  const json::Value* value = attrs_->find(key);
  if (value == nullptr) fail("attribute \"" + key + "\" is missing");
  if (!value->is_number() || value->number() != std::floor(value->number()) || value->number() < double(min) ||
      value->number() > double(max)) {
    fail("attribute \"" + key + "\" must be a whole number in [" + std::to_string(min) + ", " + std::to_string(max) +
         "]");
  }
  return static_cast<int64_t>(value->number());
}

bool OpReader::boolean(const std::string& key, bool fallback) const {
  const json::Value* value = attrs_->find(key);
  if (value == nullptr) return fallback;
  if (!value->is_bool()) fail("attribute \"" + key + "\" must be true or false");
  return value->boolean();
}

double OpReader::number(const std::string& key) const {
  const json::Value* value = attrs_->find(key);
  if (value == nullptr || !value->is_number()) fail("attribute \"" + key + "\" must be a number");
  return value->number();
}

std::string OpReader::text(const std::string& key, const std::string& fallback) const {
  const json::Value* value = attrs_->find(key);
  if (value == nullptr) return fallback;
  if (!value->is_string()) fail("attribute \"" + key + "\" must be a string");
  return value->string();
}

OpReader OpReader::nested(const std::string& key) const {
  const json::Value* value = attrs_->find(key);
  if (value == nullptr || !value->is_object()) fail("attribute \"" + key + "\" must be an object");
  return OpReader(*value, params_, *file_, kind_, where_ + "." + key, prefix_ + key + ".");
}

bool OpReader::has_param(const std::string& role) const { return params_->find(prefix_ + role) != nullptr; }

const TensorView& OpReader::tensor(const std::string& role) const {
  const json::Value* name = params_->find(prefix_ + role);
  if (name == nullptr) fail("param \"" + prefix_ + role + "\" is missing");
  if (!name->is_string()) fail("param \"" + prefix_ + role + "\" must name a tensor");
  const auto found = file_->tensors.find(name->string());
  if (found == file_->tensors.end()) fail("param \"" + prefix_ + role + "\" names a tensor the file lacks");
  return found->second;
}

std::vector<float> OpReader::floats(const std::string& role, int64_t count) const {
  const TensorView& view = tensor(role);
  if (view.dtype != DType::kFloat32 || view.numel() != count) {
    fail("param \"" + prefix_ + role + "\" must hold " + std::to_string(count) + " float32 values, it holds " +
         std::to_string(view.numel()) + (view.dtype == DType::kFloat32 ? "" : " bytes"));
  }
  std::vector<float> values(static_cast<size_t>(count));
  if (count > 0) std::memcpy(values.data(), view.data, view.nbytes);  // the payload need not be float-aligned
  return values;
}

std::vector<uint8_t> OpReader::bytes(const std::string& role, int64_t count) const {
  const TensorView& view = tensor(role);
  if (view.dtype != DType::kUInt8 || static_cast<int64_t>(view.nbytes) != count) {
    fail("param \"" + prefix_ + role + "\" must hold " + std::to_string(count) + " uint8 bytes, it holds " +
         std::to_string(view.nbytes) + (view.dtype == DType::kUInt8 ? "" : " float32 bytes"));
  }
  return std::vector<uint8_t>(view.data, view.data + view.nbytes);
}

}  // namespace bnext
