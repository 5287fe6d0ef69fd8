// Strict RFC 8259 reader (json.h). Recursive descent; the depth limit is checked before each nested
// container is entered, so the recursion is at most Limits::max_depth frames deep whatever the text.
#include "json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>
#include <system_error>

#include "error.h"

namespace bnext::json {

// ---- Value ----------------------------------------------------------------------------------------------

namespace {

[[noreturn]] void wrong_kind(Value::Kind want, Value::Kind have) {
  throw Error(std::string("JSON value is ") + Value::kind_name(have) + ", not " + Value::kind_name(want));
}

}  // namespace

bool Value::boolean() const {
  if (kind_ != Kind::kBool) wrong_kind(Kind::kBool, kind_);
  return bool_;
}

double Value::number() const {
  if (kind_ != Kind::kNumber) wrong_kind(Kind::kNumber, kind_);
  return number_;
}

const std::string& Value::string() const {
  if (kind_ != Kind::kString) wrong_kind(Kind::kString, kind_);
  return string_;
}

const std::vector<Value>& Value::array() const {
  if (kind_ != Kind::kArray) wrong_kind(Kind::kArray, kind_);
  return array_;
}

const std::vector<std::pair<std::string, Value>>& Value::object() const {
  if (kind_ != Kind::kObject) wrong_kind(Kind::kObject, kind_);
  return object_;
}

const Value* Value::find(std::string_view key) const {
  if (kind_ != Kind::kObject) return nullptr;
  for (const auto& member : object_) {
    if (member.first == key) return &member.second;
  }
  return nullptr;
}

const char* Value::kind_name(Kind kind) {
  switch (kind) {
    case Kind::kNull: return "null";
    case Kind::kBool: return "a boolean";
    case Kind::kNumber: return "a number";
    case Kind::kString: return "a string";
    case Kind::kArray: return "an array";
    case Kind::kObject: return "an object";
  }
  return "an unknown kind";
}

Value Value::null() { return Value(); }

Value Value::from_bool(bool v) {
  Value value;
  value.kind_ = Kind::kBool;
  value.bool_ = v;
  return value;
}

Value Value::from_number(double v) {
  Value value;
  value.kind_ = Kind::kNumber;
  value.number_ = v;
  return value;
}

Value Value::from_string(std::string v) {
  Value value;
  value.kind_ = Kind::kString;
  value.string_ = std::move(v);
  return value;
}

Value Value::from_array(std::vector<Value> v) {
  Value value;
  value.kind_ = Kind::kArray;
  value.array_ = std::move(v);
  return value;
}

Value Value::from_object(std::vector<std::pair<std::string, Value>> v) {
  Value value;
  value.kind_ = Kind::kObject;
  value.object_ = std::move(v);
  return value;
}

// ---- Parser ---------------------------------------------------------------------------------------------

namespace {

class Parser {
 public:
  Parser(std::string_view text, const Limits& limits) : text_(text), limits_(limits) {}

  Value document() {
    skip_space();
    Value value = parse_value(0);
    skip_space();
    if (pos_ != text_.size()) fail("unexpected text after the JSON value");
    return value;
  }

 private:
  [[noreturn]] void fail_at(std::size_t at, const std::string& what) const {
    throw Error("invalid JSON at byte " + std::to_string(at) + ": " + what);
  }
  [[noreturn]] void fail(const std::string& what) const { fail_at(pos_, what); }

  bool at_end() const { return pos_ >= text_.size(); }
  unsigned char peek() const { return static_cast<unsigned char>(text_[pos_]); }  // only when !at_end()

  // A character for messages: printable ASCII quoted, anything else as a hex byte.
  std::string describe(unsigned char c) const {
    if (c >= 0x20 && c < 0x7f) return std::string("'") + static_cast<char>(c) + "'";
    static const char* kHex = "0123456789abcdef";
    return std::string("byte 0x") + kHex[c >> 4] + kHex[c & 15];
  }
  std::string describe_here() const { return at_end() ? std::string("the end of the text") : describe(peek()); }

  void skip_space() {
    while (!at_end()) {
      const unsigned char c = peek();
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  // Counts one more value against max_values (bounds the memory a small text can make us allocate).
  void count_value() {
    if (++values_ > limits_.max_values) {
      fail("more than " + std::to_string(limits_.max_values) + " values in the text");
    }
  }

  Value parse_value(int depth) {
    if (at_end()) fail("expected a value, found the end of the text");
    count_value();
    const unsigned char c = peek();
    switch (c) {
      case '{': return parse_object(depth + 1);
      case '[': return parse_array(depth + 1);
      case '"': return Value::from_string(parse_string());
      case 't': expect_literal("true"); return Value::from_bool(true);
      case 'f': expect_literal("false"); return Value::from_bool(false);
      case 'n': expect_literal("null"); return Value::null();
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return Value::from_number(parse_number());
        fail("expected a value, found " + describe(c));
    }
  }

  void expect_literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) fail("expected '" + std::string(word) + "'");
    pos_ += word.size();
  }

  // Called on '[' or '{' at nesting level `depth` (1 for the outermost container): refuses it before any
  // recursion when that is too deep.
  void enter(int depth) {
    if (depth > limits_.max_depth) {
      fail("arrays and objects nested deeper than " + std::to_string(limits_.max_depth) + " levels");
    }
    ++pos_;
    skip_space();
  }

  void check_items(std::size_t count, std::size_t start) {
    if (count > limits_.max_items) {
      fail_at(start, "an array or object with more than " + std::to_string(limits_.max_items) + " members");
    }
  }

  Value parse_array(int depth) {
    const std::size_t start = pos_;
    enter(depth);
    std::vector<Value> items;
    if (!at_end() && peek() == ']') {
      ++pos_;
      return Value::from_array(std::move(items));
    }
    while (true) {
      check_items(items.size() + 1, start);
      items.push_back(parse_value(depth));
      skip_space();
      if (at_end()) fail("unterminated array (opened at byte " + std::to_string(start) + ")");
      const unsigned char c = peek();
      ++pos_;
      if (c == ']') break;
      if (c != ',') fail_at(pos_ - 1, "expected ',' or ']' in an array, found " + describe(c));
      skip_space();
    }
    return Value::from_array(std::move(items));
  }

  Value parse_object(int depth) {
    const std::size_t start = pos_;
    enter(depth);
    std::vector<std::pair<std::string, Value>> members;
    std::vector<std::size_t> key_offsets;  // byte offset of each key, for the duplicate message
    if (!at_end() && peek() == '}') {
      ++pos_;
      return Value::from_object(std::move(members));
    }
    while (true) {
      check_items(members.size() + 1, start);
      if (at_end() || peek() != '"') fail("expected a string key in an object, found " + describe_here());
      key_offsets.push_back(pos_);
      std::string key = parse_string();
      skip_space();
      if (at_end() || peek() != ':') fail("expected ':' after an object key, found " + describe_here());
      ++pos_;
      skip_space();
      Value value = parse_value(depth);
      members.emplace_back(std::move(key), std::move(value));
      skip_space();
      if (at_end()) fail("unterminated object (opened at byte " + std::to_string(start) + ")");
      const unsigned char c = peek();
      ++pos_;
      if (c == '}') break;
      if (c != ',') fail_at(pos_ - 1, "expected ',' or '}' in an object, found " + describe(c));
      skip_space();
    }
    check_duplicates(members, key_offsets);
    return Value::from_object(std::move(members));
  }

  // Sorting the keys (stable, so equal keys stay in file order) finds duplicates in O(n log n) even for
  // objects with a million members; the message names the first repeated key in the file.
  void check_duplicates(const std::vector<std::pair<std::string, Value>>& members,
                        const std::vector<std::size_t>& key_offsets) const {
    if (members.size() < 2) return;
    std::vector<std::size_t> order(members.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return members[a].first < members[b].first; });
    std::size_t repeat = members.size();
    for (std::size_t i = 1; i < order.size(); ++i) {
      if (members[order[i]].first == members[order[i - 1]].first) repeat = std::min(repeat, order[i]);
    }
    if (repeat < members.size()) {
      std::string key = members[repeat].first;
      if (key.size() > 64) key = key.substr(0, 64) + "...";
      fail_at(key_offsets[repeat], "duplicate object key \"" + key + "\"");
    }
  }

  static void append_utf8(std::string& out, uint32_t code) {
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xc0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      out += static_cast<char>(0xe0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (code >> 18));
      out += static_cast<char>(0x80 | ((code >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    }
  }

  // Four hex digits after "\u" (pos_ at the first digit).
  uint32_t parse_hex4() {
    uint32_t code = 0;
    for (int i = 0; i < 4; ++i) {
      if (at_end()) fail("truncated \\u escape");
      const unsigned char c = peek();
      uint32_t digit;
      if (c >= '0' && c <= '9') {
        digit = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        digit = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        digit = c - 'A' + 10;
      } else {
        fail("expected a hex digit in a \\u escape, found " + describe(c));
      }
      code = code * 16 + digit;
      ++pos_;
    }
    return code;
  }

  // One escape (pos_ at the backslash), appended to out as UTF-8. A high surrogate must be followed by an
  // escaped low surrogate; a lone surrogate of either kind is refused.
  void parse_escape(std::string& out) {
    const std::size_t start = pos_;
    ++pos_;
    if (at_end()) fail("unterminated string");
    const unsigned char c = peek();
    ++pos_;
    switch (c) {
      case '"': out += '"'; return;
      case '\\': out += '\\'; return;
      case '/': out += '/'; return;
      case 'b': out += '\b'; return;
      case 'f': out += '\f'; return;
      case 'n': out += '\n'; return;
      case 'r': out += '\r'; return;
      case 't': out += '\t'; return;
      case 'u': break;
      default: fail_at(pos_ - 1, "invalid escape \\" + describe(c));
    }
    uint32_t code = parse_hex4();
    if (code >= 0xdc00 && code <= 0xdfff) fail_at(start, "lone low surrogate in a \\u escape");
    if (code >= 0xd800 && code <= 0xdbff) {
      if (text_.substr(pos_, 2) != "\\u") fail_at(start, "high surrogate not followed by a \\u low surrogate");
      pos_ += 2;
      const uint32_t low = parse_hex4();
      if (low < 0xdc00 || low > 0xdfff) fail_at(start, "high surrogate not followed by a low surrogate");
      code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
    }
    append_utf8(out, code);
  }

  // The length of the well-formed UTF-8 sequence starting at pos_ (a byte >= 0x80), or 0 when ill-formed
  // (Unicode table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF).
  std::size_t utf8_length() const {
    const std::size_t left = text_.size() - pos_;
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text_[pos_ + i]); };
    const auto cont = [&](std::size_t i, unsigned char lo = 0x80, unsigned char hi = 0xbf) {
      return i < left && byte(i) >= lo && byte(i) <= hi;
    };
    const unsigned char b0 = byte(0);
    if (b0 >= 0xc2 && b0 <= 0xdf) return cont(1) ? 2 : 0;
    if (b0 == 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
    if ((b0 >= 0xe1 && b0 <= 0xec) || b0 == 0xee || b0 == 0xef) return cont(1) && cont(2) ? 3 : 0;
    if (b0 == 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
    if (b0 == 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
    if (b0 >= 0xf1 && b0 <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
    if (b0 == 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
    return 0;
  }

  // A string (pos_ at the opening quote); pos_ ends after the closing quote.
  std::string parse_string() {
    const std::size_t start = pos_;
    ++pos_;
    std::string out;
    while (true) {
      if (at_end()) fail_at(start, "unterminated string");
      const unsigned char c = peek();
      if (c == '"') {
        ++pos_;
        break;
      }
      if (c == '\\') {
        parse_escape(out);
      } else if (c < 0x20) {
        fail("control character " + describe(c) + " in a string (escape it)");
      } else if (c < 0x80) {
        // A run of plain ASCII at once.
        std::size_t end = pos_ + 1;
        while (end < text_.size()) {
          const unsigned char d = static_cast<unsigned char>(text_[end]);
          if (d == '"' || d == '\\' || d < 0x20 || d >= 0x80) break;
          ++end;
        }
        out.append(text_.data() + pos_, end - pos_);
        pos_ = end;
      } else {
        const std::size_t length = utf8_length();
        if (length == 0) fail("invalid UTF-8 in a string");
        out.append(text_.data() + pos_, length);
        pos_ += length;
      }
      if (out.size() > limits_.max_string) {
        fail_at(start, "a string longer than " + std::to_string(limits_.max_string) + " bytes");
      }
    }
    return out;
  }

  // A number per the RFC 8259 grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
  double parse_number() {
    const std::size_t start = pos_;
    const auto digit = [&]() { return !at_end() && peek() >= '0' && peek() <= '9'; };
    const bool negative = peek() == '-';
    if (negative) ++pos_;
    if (!digit()) fail("expected a digit in a number, found " + describe_here());
    // The decimal position of the first nonzero significand digit relative to the point: 3 for "123.4",
    // -2 for "0.004" (tells an overflow from an underflow below).
    long lead = 0;
    bool nonzero = false;
    if (peek() == '0') {
      ++pos_;
      if (digit()) fail("leading zero in a number");
    } else {
      nonzero = true;
      while (digit()) {
        ++pos_;
        if (lead < 1000000000L) ++lead;
      }
    }
    if (!at_end() && peek() == '.') {
      ++pos_;
      if (!digit()) fail("expected a digit after the decimal point, found " + describe_here());
      while (digit()) {
        if (!nonzero) {
          if (peek() != '0') {
            nonzero = true;
          } else if (lead > -1000000000L) {
            --lead;
          }
        }
        ++pos_;
      }
    }
    long exponent = 0;
    if (!at_end() && (peek() == 'e' || peek() == 'E')) {
      ++pos_;
      bool exponent_negative = false;
      if (!at_end() && (peek() == '+' || peek() == '-')) {
        exponent_negative = peek() == '-';
        ++pos_;
      }
      if (!digit()) fail("expected a digit in an exponent, found " + describe_here());
      while (digit()) {
        if (exponent < 1000000000L) exponent = exponent * 10 + (peek() - '0');
        ++pos_;
      }
      if (exponent_negative) exponent = -exponent;
    }
    // std::from_chars (libstdc++ >= 11) is locale-independent and correctly rounded; the text is already
    // known to match the JSON grammar, which it accepts.
    double value = 0.0;
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    const auto result = std::from_chars(first, last, value, std::chars_format::general);
    if (result.ec == std::errc::result_out_of_range) {
      // Out of range both ways: beyond DBL_MAX is refused, below the smallest subnormal is a signed zero.
      if (nonzero && lead + exponent > 0) fail_at(start, "number out of range (not a finite double)");
      value = negative ? -0.0 : 0.0;
    } else if (result.ec != std::errc() || result.ptr != last) {
      fail_at(start, "malformed number");
    }
    if (!std::isfinite(value)) fail_at(start, "number out of range (not a finite double)");
    return value;
  }

  std::string_view text_;
  const Limits& limits_;
  std::size_t pos_ = 0;
  std::size_t values_ = 0;
};

}  // namespace

Value parse(std::string_view text, const Limits& limits) { return Parser(text, limits).document(); }

}  // namespace bnext::json
