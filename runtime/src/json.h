// A strict JSON reader for the .bnx header (RFC 8259: objects, arrays, strings, numbers, true, false,
// null). The text comes from an untrusted file: nesting depth, string and container sizes are bounded,
// and every malformed input is an Error naming the byte offset, never a crash or a hang.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bnext::json {

class Value {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_number() const { return kind_ == Kind::kNumber; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_object() const { return kind_ == Kind::kObject; }

  // Accessors of the matching kind; the wrong kind throws Error (callers check the kind first to word
  // their own messages).
  bool boolean() const;
  double number() const;
  const std::string& string() const;
  const std::vector<Value>& array() const;
  const std::vector<std::pair<std::string, Value>>& object() const;  // in file order, keys unique

  // The member `key` of an object, or nullptr when absent (or when this is not an object).
  const Value* find(std::string_view key) const;

  // The name of a kind, for messages: "null", "a boolean", "a number", "a string", "an array", "an object".
  static const char* kind_name(Kind kind);

  // Builders, for the parser and for tests.
  static Value null();
  static Value from_bool(bool v);
  static Value from_number(double v);
  static Value from_string(std::string v);
  static Value from_array(std::vector<Value> v);
  static Value from_object(std::vector<std::pair<std::string, Value>> v);

 private:
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  double number_ = 0.0;
  std::string string_;
  std::vector<Value> array_;
  std::vector<std::pair<std::string, Value>> object_;
};

struct Limits {
  int max_depth = 64;                // nested arrays / objects
  std::size_t max_string = 1 << 20;  // bytes in one string
  std::size_t max_items = 1 << 20;   // members of one array or object
  std::size_t max_values = 1 << 24;  // values in the whole text (each costs ~100 bytes of memory)
};

// Parses the whole of `text` (whitespace around the value allowed, nothing else). Throws Error with the
// byte offset on malformed text, an exceeded limit, duplicate object keys, invalid UTF-8 escapes, or
// non-finite numbers.
Value parse(std::string_view text, const Limits& limits = Limits());

// Compact JSON text of a value (json_dump.cpp): what the C API hands out as the model card.
std::string dump(const Value& value);

}  // namespace bnext::json
