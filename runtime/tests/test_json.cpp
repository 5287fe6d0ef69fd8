// The strict JSON reader (src/json.h): what it accepts, what it refuses and where it says the fault is.
#include <cmath>
#include <string>

#include "check.h"
#include "error.h"
#include "json.h"

using bnext::json::Limits;
using bnext::json::parse;
using bnext::json::Value;

TEST(json_literals_and_whitespace) {
  CHECK(parse("null").is_null());
  CHECK(parse(" \t\r\ntrue \n").boolean() == true);
  CHECK(parse("false").boolean() == false);
  CHECK_THROWS(parse("tru"), "byte 0");
  CHECK_THROWS(parse("nul"), "expected 'null'");
  CHECK_THROWS(parse("True"), "expected a value");
  CHECK_THROWS(parse("NaN"), "expected a value");
  CHECK_THROWS(parse("Infinity"), "expected a value");
  CHECK_THROWS(parse("-Infinity"), "expected a digit");
  CHECK_THROWS(parse(""), "end of the text");
  CHECK_THROWS(parse("   "), "byte 3");
  CHECK_THROWS(parse("\xef\xbb\xbfnull"), "byte 0xef");  // no byte-order mark
  CHECK_THROWS(parse("\vnull"), "byte 0x0b");            // only the four JSON whitespace characters
  CHECK_THROWS(parse("null null"), "unexpected text after the JSON value");
  CHECK_THROWS(parse("truex"), "byte 4");
  CHECK_THROWS(parse(std::string("null\0", 5)), "byte 4");
}

TEST(json_numbers) {
  CHECK(parse("0").number() == 0.0);
  CHECK(parse("-0").number() == 0.0 && std::signbit(parse("-0").number()));
  CHECK(parse("42").number() == 42.0);
  CHECK(parse("-17").number() == -17.0);
  CHECK(parse("3.25").number() == 3.25);
  CHECK(parse("1e3").number() == 1000.0);
  CHECK(parse("1E+3").number() == 1000.0);
  CHECK(parse("25e-2").number() == 0.25);
  CHECK(parse("0.1").number() == 0.1);
  CHECK(parse("1.7976931348623157e308").number() == 1.7976931348623157e308);
  CHECK(parse("9007199254740993").number() == 9007199254740992.0);  // correctly rounded
  CHECK(parse("1099511627776").number() == 1099511627776.0);
  CHECK(parse("4.9e-324").number() > 0.0);
  // Below the smallest subnormal: a (signed) zero, as any correctly rounded reader gives.
  CHECK(parse("1e-400").number() == 0.0);
  CHECK(std::signbit(parse("-1e-400").number()));
  CHECK(parse("0.0000000000000000000000000000000000000000001e-300").number() == 0.0);
  CHECK(parse("1e-99999999999999999999").number() == 0.0);
  // Grammar.
  CHECK_THROWS(parse("01"), "leading zero");
  CHECK_THROWS(parse("-01"), "leading zero");
  CHECK_THROWS(parse("+1"), "expected a value");
  CHECK_THROWS(parse(".5"), "expected a value");
  CHECK_THROWS(parse("1."), "after the decimal point");
  CHECK_THROWS(parse("1.e3"), "after the decimal point");
  CHECK_THROWS(parse("1e"), "exponent");
  CHECK_THROWS(parse("1e+"), "exponent");
  CHECK_THROWS(parse("-"), "expected a digit");
  CHECK_THROWS(parse("- 1"), "expected a digit");
  CHECK_THROWS(parse("0x10"), "unexpected text");
  CHECK_THROWS(parse("1_000"), "unexpected text");
  // Not finite.
  CHECK_THROWS(parse("1e309"), "not a finite double");
  CHECK_THROWS(parse("-1e309"), "not a finite double");
  CHECK_THROWS(parse("1.7976931348623159e308"), "not a finite double");
  CHECK_THROWS(parse("[1, 1e99999999999999999999]"), "byte 4: number out of range");
  CHECK_THROWS(parse("0.000001e315"), "not a finite double");
  CHECK(parse("0.000001e310").number() == 1e304);
  // A long number is read whole and rounded right.
  const double long_number = parse(std::string(300, '1') + "e-299").number();
  CHECK(long_number > 1.11 && long_number < 1.12);
}

TEST(json_strings_and_escapes) {
  CHECK(parse("\"\"").string().empty());
  CHECK(parse("\"abc\"").string() == "abc");
  CHECK(parse(R"("a\"b\\c\/d\b\f\n\r\t")").string() == "a\"b\\c/d\b\f\n\r\t");
  CHECK(parse(R"("\u0041\u00e9\u20AC")").string() == "A\xc3\xa9\xe2\x82\xac");
  CHECK(parse(R"("\u0000")").string() == std::string("\0", 1));
  CHECK(parse(R"("\ud83d\ude00")").string() == "\xf0\x9f\x98\x80");      // U+1F600, a surrogate pair
  CHECK(parse(R"("\uDBFF\uDFFF")").string() == "\xf4\x8f\xbf\xbf");      // U+10FFFF
  const std::string raw = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80";  // raw UTF-8 passes through
  CHECK(parse("\"" + raw + "\"").string() == raw);
  CHECK_THROWS(parse(R"("\ud83d")"), "high surrogate not followed");
  CHECK_THROWS(parse(R"("\ud83dx")"), "high surrogate not followed");
  CHECK_THROWS(parse(R"("\ud83d\u0041")"), "high surrogate not followed by a low surrogate");
  CHECK_THROWS(parse(R"("\ud83d\ud83d")"), "high surrogate not followed by a low surrogate");
  CHECK_THROWS(parse(R"("\ude00")"), "lone low surrogate");
  CHECK_THROWS(parse(R"("ab\ude00")"), "byte 3");
  CHECK_THROWS(parse(R"("\u12")"), "hex digit");
  CHECK_THROWS(parse(R"("\u12G4")"), "hex digit");
  CHECK_THROWS(parse("\"\\u12"), "truncated \\u escape");
  CHECK_THROWS(parse(R"("\x41")"), "invalid escape");
  CHECK_THROWS(parse(R"("\U0041")"), "invalid escape");
  CHECK_THROWS(parse("\"\\"), "unterminated string");
  CHECK_THROWS(parse("\"abc"), "byte 0: unterminated string");
  CHECK_THROWS(parse("\"a\nb\""), "control character byte 0x0a");
  CHECK_THROWS(parse("\"a\tb\""), "control character");
  CHECK_THROWS(parse(std::string("\"a\0b\"", 5)), "control character byte 0x00");
  CHECK(parse("\"a\x7f"
              "b\"")
            .string() ==
        "a\x7f"
        "b");  // DEL is not a control character in JSON
}

TEST(json_raw_utf8_is_checked) {
  const char* bad[] = {
      "\"\x80\"",              // a stray continuation byte
      "\"\xc3\"",              // truncated two-byte sequence
      "\"\xc3x\"",             // continuation missing
      "\"\xc0\xaf\"",          // overlong '/'
      "\"\xc1\xbf\"",          // overlong
      "\"\xe0\x80\xaf\"",      // overlong three-byte
      "\"\xe0\x9f\xbf\"",      // overlong three-byte (U+07FF)
      "\"\xed\xa0\x80\"",      // an encoded surrogate U+D800
      "\"\xed\xbf\xbf\"",      // an encoded surrogate U+DFFF
      "\"\xf0\x80\x80\xaf\"",  // overlong four-byte
      "\"\xf0\x8f\xbf\xbf\"",  // overlong four-byte (U+FFFF)
      "\"\xf4\x90\x80\x80\"",  // above U+10FFFF
      "\"\xf5\x80\x80\x80\"",  // lead byte never valid
      "\"\xff\"",
      "\"\xfe\"",
      "\"\xe2\x82\"",      // truncated three-byte
      "\"\xf0\x9f\x98\"",  // truncated four-byte
  };
  for (const char* text : bad) CHECK_THROWS(parse(text), "invalid UTF-8 in a string");
  CHECK_THROWS(parse("\"\xe2\x82"), "invalid UTF-8");  // truncated at the very end of the text
  CHECK_THROWS(parse("[\xc3\xa9]"), "expected a value, found byte 0xc3");
  // The edges that are valid.
  CHECK(parse("\"\xc2\x80\"").string() == "\xc2\x80");
  CHECK(parse("\"\xdf\xbf\"").string() == "\xdf\xbf");
  CHECK(parse("\"\xe0\xa0\x80\"").string() == "\xe0\xa0\x80");
  CHECK(parse("\"\xed\x9f\xbf\"").string() == "\xed\x9f\xbf");          // U+D7FF
  CHECK(parse("\"\xee\x80\x80\"").string() == "\xee\x80\x80");          // U+E000
  CHECK(parse("\"\xef\xbf\xbf\"").string() == "\xef\xbf\xbf");          // U+FFFF
  CHECK(parse("\"\xf0\x90\x80\x80\"").string() == "\xf0\x90\x80\x80");  // U+10000
  CHECK(parse("\"\xf4\x8f\xbf\xbf\"").string() == "\xf4\x8f\xbf\xbf");  // U+10FFFF
}

TEST(json_arrays_and_objects) {
  const Value v = parse(R"( {"a": [1, 2.5, "x", true, null, {"b": []}], "c": {}, "": 0} )");
  CHECK(v.is_object());
  CHECK(v.object().size() == 3);
  CHECK(v.object()[0].first == "a" && v.object()[1].first == "c" && v.object()[2].first == "");  // file order
  const Value* a = v.find("a");
  CHECK(a && a->is_array() && a->array().size() == 6);
  CHECK(a->array()[0].number() == 1.0);
  CHECK(a->array()[2].string() == "x");
  CHECK(a->array()[4].is_null());
  CHECK(a->array()[5].find("b") && a->array()[5].find("b")->array().empty());
  CHECK(v.find("c")->object().empty());
  CHECK(v.find("") && v.find("")->number() == 0.0);
  CHECK(v.find("missing") == nullptr);
  CHECK(a->find("a") == nullptr);  // not an object
  CHECK(parse("[]").array().empty());
  CHECK(parse("[ ]").array().empty());
  CHECK(parse("{ }").object().empty());
  CHECK(parse("[[[]]]").array()[0].array()[0].array().empty());

  CHECK_THROWS(parse("[1,]"), "byte 3: expected a value");
  CHECK_THROWS(parse("[,1]"), "expected a value");
  CHECK_THROWS(parse("[1 2]"), "byte 3: expected ',' or ']'");
  CHECK_THROWS(parse("[1"), "unterminated array (opened at byte 0)");
  CHECK_THROWS(parse("["), "expected a value");
  CHECK_THROWS(parse("]"), "expected a value");
  CHECK_THROWS(parse("{\"a\":1,}"), "expected a string key");
  CHECK_THROWS(parse("{,}"), "expected a string key");
  CHECK_THROWS(parse("{a:1}"), "expected a string key");
  CHECK_THROWS(parse("{1:1}"), "expected a string key");
  CHECK_THROWS(parse("{\"a\" 1}"), "expected ':'");
  CHECK_THROWS(parse("{\"a\":}"), "expected a value");
  CHECK_THROWS(parse("{\"a\":1 \"b\":2}"), "expected ',' or '}'");
  CHECK_THROWS(parse("{\"a\":1"), "unterminated object");
  CHECK_THROWS(parse("{\"a\""), "expected ':'");
  CHECK_THROWS(parse("{"), "expected a string key");
  CHECK_THROWS(parse("[1]]"), "unexpected text");
}

TEST(json_duplicate_keys_refused) {
  CHECK_THROWS(parse(R"({"a":1,"a":2})"), "byte 7: duplicate object key \"a\"");
  CHECK_THROWS(parse(R"({"b":1,"a":2,"c":3,"a":4})"), "byte 19: duplicate object key \"a\"");
  // The same key after unescaping is the same key.
  CHECK_THROWS(parse(R"({"ab":1,"a\u0062":2})"), "duplicate object key \"ab\"");
  // Keys that only differ are fine; so are equal keys in different objects.
  CHECK(parse(R"({"a":1,"A":2,"a ":3})").object().size() == 3);
  CHECK(parse(R"([{"a":1},{"a":2}])").array().size() == 2);
  CHECK(parse(R"({"a":{"a":{"a":1}}})").find("a")->find("a")->find("a")->number() == 1.0);
  // The first repeat in the file is named, whatever the key order.
  CHECK_THROWS(parse(R"({"z":1,"y":1,"z":2,"y":2})"), "duplicate object key \"z\"");
  // A large object is checked quickly (sorting, not pairwise).
  std::string big = "{";
  for (int i = 0; i < 200000; ++i) big += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":0";
  CHECK(parse(big + "}").object().size() == 200000);
  CHECK_THROWS(parse(big + ",\"k123\":1}"), "duplicate object key \"k123\"");
}

TEST(json_depth_limit) {
  Limits limits;
  limits.max_depth = 5;
  CHECK(parse("[[[[[]]]]]", limits).is_array());
  CHECK(parse("{\"a\":[{\"b\":[{}]}]}", limits).is_object());
  CHECK_THROWS(parse("[[[[[[]]]]]]", limits), "byte 5: arrays and objects nested deeper than 5 levels");
  CHECK_THROWS(parse("{\"a\":[{\"b\":[{\"c\":{}}]}]}", limits), "nested deeper than 5");
  limits.max_depth = 0;
  CHECK(parse("1", limits).number() == 1.0);
  CHECK_THROWS(parse("[]", limits), "nested deeper than 0");
  // The default: 64 levels fine, 65 refused; a million '[' is refused at the limit, not a stack overflow.
  CHECK(parse(std::string(64, '[') + std::string(64, ']')).is_array());
  CHECK_THROWS(parse(std::string(65, '[') + std::string(65, ']')), "byte 64: arrays and objects nested deeper");
  CHECK_THROWS(parse(std::string(1000000, '[')), "nested deeper than 64 levels");
  std::string objects;
  for (int i = 0; i < 1000000; ++i) objects += "{\"a\":";
  CHECK_THROWS(parse(objects), "nested deeper than 64 levels");
}

TEST(json_size_limits) {
  Limits limits;
  limits.max_string = 4;
  CHECK(parse("\"abcd\"", limits).string() == "abcd");
  CHECK_THROWS(parse("\"abcde\"", limits), "byte 0: a string longer than 4 bytes");
  CHECK(parse("\"\\u20ac\"", limits).string().size() == 3);
  CHECK_THROWS(parse("\"a\\u20ac\\u20ac\"", limits), "longer than 4 bytes");  // counted after unescaping
  CHECK_THROWS(parse("{\"abcde\":1}", limits), "longer than 4 bytes");        // keys too

  limits = Limits();
  limits.max_items = 3;
  CHECK(parse("[1,2,3]", limits).array().size() == 3);
  CHECK_THROWS(parse("[1,2,3,4]", limits), "byte 0: an array or object with more than 3 members");
  CHECK(parse("{\"a\":1,\"b\":2,\"c\":3}", limits).object().size() == 3);
  CHECK_THROWS(parse("{\"a\":1,\"b\":2,\"c\":3,\"d\":4}", limits), "more than 3 members");
  CHECK(parse("[[1,2,3],[1,2,3],[1,2,3]]", limits).is_array());  // per container, not in total

  limits = Limits();
  limits.max_values = 4;
  CHECK_THROWS(parse("[1,[2],3]", Limits{64, 1 << 20, 1 << 20, 4}), "more than 4 values");
  CHECK(parse("[1,[2]]", Limits{64, 1 << 20, 1 << 20, 4}).is_array());
}

TEST(json_accessors_and_builders) {
  const Value n = Value::from_number(2.5);
  CHECK(n.kind() == Value::Kind::kNumber && n.number() == 2.5);
  CHECK_THROWS(n.string(), "JSON value is a number, not a string");
  CHECK_THROWS(n.boolean(), "not a boolean");
  CHECK_THROWS(n.array(), "not an array");
  CHECK_THROWS(n.object(), "not an object");
  CHECK_THROWS(Value::null().number(), "JSON value is null, not a number");
  CHECK(Value::from_bool(true).boolean());
  CHECK(Value::from_string("s").string() == "s");
  CHECK(Value::from_array({Value::null(), Value::from_number(1)}).array().size() == 2);
  const Value o = Value::from_object({{"k", Value::from_string("v")}});
  CHECK(o.find("k") && o.find("k")->string() == "v");
  CHECK(std::string(Value::kind_name(Value::Kind::kNull)) == "null");
  CHECK(std::string(Value::kind_name(Value::Kind::kBool)) == "a boolean");
  CHECK(std::string(Value::kind_name(Value::Kind::kNumber)) == "a number");
  CHECK(std::string(Value::kind_name(Value::Kind::kString)) == "a string");
  CHECK(std::string(Value::kind_name(Value::Kind::kArray)) == "an array");
  CHECK(std::string(Value::kind_name(Value::Kind::kObject)) == "an object");
  CHECK(Value().is_null());
}
