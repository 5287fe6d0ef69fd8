// JSON text of a parsed value: the model card handed out by bnext_model_card_json.
#include <cmath>
#include <cstdio>

#include "json.h"

namespace bnext::json {
namespace {

void dump_string(const std::string& text, std::string& out) {
  out += '"';
  for (const char ch : text) {
    const auto byte = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (byte < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", byte);
      out += escaped;
    } else {
      out += ch;  // UTF-8 bytes pass through (the parser checked them)
    }
  }
  out += '"';
}

void dump_into(const Value& value, std::string& out) {
  switch (value.kind()) {
    case Value::Kind::kNull: out += "null"; break;
    case Value::Kind::kBool: out += value.boolean() ? "true" : "false"; break;
    case Value::Kind::kNumber: {
      char number[32];
      const double v = value.number();
      if (v == std::floor(v) && std::fabs(v) < 1e15) {
        std::snprintf(number, sizeof(number), "%.0f", v);
      } else {
        std::snprintf(number, sizeof(number), "%.17g", v);
      }
      out += number;
      break;
    }
    case Value::Kind::kString: dump_string(value.string(), out); break;
    case Value::Kind::kArray: {
      out += '[';
      bool first = true;
      for (const auto& item : value.array()) {
        if (!first) out += ',';
        first = false;
        dump_into(item, out);
      }
      out += ']';
      break;
    }
    case Value::Kind::kObject: {
      out += '{';
      bool first = true;
      for (const auto& [key, item] : value.object()) {
        if (!first) out += ',';
        first = false;
        dump_string(key, out);
        out += ':';
        dump_into(item, out);
      }
      out += '}';
      break;
    }
  }
}

}  // namespace

std::string dump(const Value& value) {
  std::string out;
  dump_into(value, out);
  return out;
}

}  // namespace bnext::json
