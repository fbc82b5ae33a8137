// GGUF reader and streaming writer. Sources for every rule checked here:
//   gguf.md   = ggml/docs/gguf.md (the format specification, v3)
//   gguf.cpp  = ggml/src/gguf.cpp (gguf_init_from_file_impl, gguf_write_out: what llama.cpp accepts and writes)
#include "formats/gguf.h"
#include "formats/error_text.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "formats/byte_reader.h"

namespace shrink {
namespace {

// gguf.md: the file starts with the bytes 'G' 'G' 'U' 'F'.
constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
// gguf.md: version 3 is current; 2 differs only in not announcing big-endian support, so it
// reads the same way. Version 1 (u32 counts) was dropped by llama.cpp and is refused.
constexpr uint32_t kWriteVersion = 3;
// gguf.md `general.alignment`: "If the alignment is not specified, assume it is 32".
constexpr uint64_t kDefaultAlignment = 32;
constexpr const char* kAlignmentKey = "general.alignment";
// gguf.md tensor info: "n_dimensions: Currently at most 4" (GGML_MAX_DIMS in ggml.h).
constexpr uint32_t kMaxDims = 4;
// gguf.md metadata key: "It must be at most 2^16-1/65535 bytes long".
constexpr uint64_t kMaxKeyLength = 65535;
// gguf.md tensor name: "must be at most 64 bytes long" (what the reader accepts) ...
constexpr uint64_t kMaxTensorNameRead = 64;
// ... while llama.cpp stores names in char[GGML_MAX_NAME = 64] with the NUL and refuses names
// of 64 bytes or more (gguf.cpp), so the writer stays below that.
constexpr size_t kMaxTensorNameWrite = 63;
// The smallest encodings, used to refuse absurd counts before anything is allocated:
// a key/value pair is a u64 key length, a u32 value type and at least a 1-byte value; a tensor
// info is a u64 name length, u32 n_dims, u32 type and u64 offset; an array header is a u32 type
// and a u64 count.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;
constexpr uint64_t kArrayHeaderBytes = 4 + 8;
// Not format limits but hostile-input guards. Nesting: the parser recurses once per level,
// and no real file nests at all (llama.cpp cannot even read nested arrays). Values: each one
// costs ~48 bytes in memory against 1 byte on disk; the largest real vocabularies hold ~260k
// tokens in 3-4 arrays, so 2^24 values leaves ample room while bounding memory to ~1 GB.
constexpr int kMaxArrayDepth = 64;
constexpr uint64_t kMaxMetadataValues = uint64_t{1} << 24;

// "<file>: <what> (<field>, <value>, <rule>)"
Error err(const std::string& file, const std::string& what, const std::string& field, const std::string& value,
          const std::string& rule) {
  return make_error(file + ": " + what + " (" + field + ", " + value + ", " + rule + ")");
}

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::FLOAT64); }

// Bytes of one element of a fixed-size type; 0 for STRING and ARRAY.
uint64_t fixed_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    case GgufType::STRING: case GgufType::ARRAY: return 0;
  }
  return 0;
}

// The fewest bytes one element of type t can take on disk.
uint64_t min_encoded_size(GgufType t) {
  if (t == GgufType::STRING) return 8;  // the u64 length of an empty string
  if (t == GgufType::ARRAY) return kArrayHeaderBytes;
  return fixed_size(t);
}

bool is_power_of_two(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

// gguf.md: alignment "must be a multiple of 8"; gguf.cpp: "must be power of 2" (it pads with
// GGML_PAD, a bit mask). Both rules together.
bool valid_alignment(uint64_t a) { return is_power_of_two(a) && a % 8 == 0 && a <= UINT32_MAX; }
const char* kAlignmentRule = "must be a power of two and a multiple of 8 (gguf.md, gguf.cpp)";

std::string quoted_name(const std::string& s, size_t max_len = 64) {
  return quote_untrusted(s, max_len);
}

// Escapes control characters so a value prints on one line (chat templates hold newlines);
// inside arrays, where items are quoted, quotes too.
std::string escaped(const std::string& s, bool in_quotes = false) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (in_quotes && c == '"') {
      out += "\\\"";
      continue;
    }
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\\': out += "\\\\"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

template <class F>
std::string float_string(F x) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, x);  // shortest text that reads back exactly
  return std::string(buf, res.ptr);
}

// ---- Reading ----

class MetadataParser {
 public:
  explicit MetadataParser(ByteReader& r) : r_(r) {}

  // The payload of one value of type `type` (its type tag has already been read).
  Result<GgufValue> value(GgufType type, const std::string& where, int depth) {
    const char* field = where.c_str();
    if (++n_values_ > kMaxMetadataValues)
      return err(r_.file(), "metadata holds too many values", where, std::to_string(n_values_),
                 "at most " + std::to_string(kMaxMetadataValues) + " values in all, a guard against hostile files");
    switch (type) {
      case GgufType::UINT8: { SHRINK_ASSIGN(auto x, r_.read<uint8_t>(field)); return GgufValue::u8(x); }
      case GgufType::INT8: { SHRINK_ASSIGN(auto x, r_.read<int8_t>(field)); return GgufValue::i8(x); }
      case GgufType::UINT16: { SHRINK_ASSIGN(auto x, r_.read<uint16_t>(field)); return GgufValue::u16(x); }
      case GgufType::INT16: { SHRINK_ASSIGN(auto x, r_.read<int16_t>(field)); return GgufValue::i16(x); }
      case GgufType::UINT32: { SHRINK_ASSIGN(auto x, r_.read<uint32_t>(field)); return GgufValue::u32(x); }
      case GgufType::INT32: { SHRINK_ASSIGN(auto x, r_.read<int32_t>(field)); return GgufValue::i32(x); }
      case GgufType::UINT64: { SHRINK_ASSIGN(auto x, r_.read<uint64_t>(field)); return GgufValue::u64(x); }
      case GgufType::INT64: { SHRINK_ASSIGN(auto x, r_.read<int64_t>(field)); return GgufValue::i64(x); }
      case GgufType::FLOAT32: { SHRINK_ASSIGN(auto x, r_.read<float>(field)); return GgufValue::f32(x); }
      case GgufType::FLOAT64: { SHRINK_ASSIGN(auto x, r_.read<double>(field)); return GgufValue::f64(x); }
      case GgufType::BOOL: {
        size_t at = r_.offset();
        SHRINK_ASSIGN(auto x, r_.read<uint8_t>(field));
        // gguf.md: "1-byte value where 0 is false and 1 is true. Anything else is invalid".
        if (x > 1)
          return err(r_.file(), "invalid bool at offset " + std::to_string(at), where, std::to_string(x),
                     "must be 0 or 1 (gguf.md)");
        return GgufValue::boolean(x == 1);
      }
      case GgufType::STRING: {
        // No length cap of our own: ByteReader refuses any length beyond the bytes left
        // before it allocates.
        SHRINK_ASSIGN(auto s, r_.string<uint64_t>(field, std::numeric_limits<uint64_t>::max()));
        return GgufValue::str(std::move(s));
      }
      case GgufType::ARRAY: return array(where, depth);
    }
    return err(r_.file(), "invalid metadata value type", where, std::to_string(static_cast<uint32_t>(type)),
               "must be 0..12 (gguf.md gguf_metadata_value_type)");
  }

 private:
  Result<GgufValue> array(const std::string& where, int depth) {
    size_t at = r_.offset();
    if (depth >= kMaxArrayDepth)
      return err(r_.file(), "arrays nested too deeply at offset " + std::to_string(at), where,
                 std::to_string(depth + 1), "at most " + std::to_string(kMaxArrayDepth) + " levels");
    std::string type_field = where + " array element type";
    SHRINK_ASSIGN(uint32_t elem, r_.read<uint32_t>(type_field.c_str()));
    if (!valid_type(elem))
      return err(r_.file(), "invalid array element type at offset " + std::to_string(at), where,
                 std::to_string(elem), "must be 0..12 (gguf.md gguf_metadata_value_type)");
    std::string count_field = where + " array count";
    SHRINK_ASSIGN(uint64_t count, r_.read<uint64_t>(count_field.c_str()));
    GgufType elem_type = static_cast<GgufType>(elem);
    // Refuse a count the bytes left cannot hold before reserving anything.
    uint64_t min_size = min_encoded_size(elem_type);
    if (count > r_.remaining() / min_size)
      return err(r_.file(), "array count exceeds the bytes left at offset " + std::to_string(at), where,
                 std::to_string(count),
                 "each " + std::string(gguf_type_name(elem_type)) + " element needs at least " +
                     std::to_string(min_size) + " bytes and only " + std::to_string(r_.remaining()) + " remain");
    if (count > kMaxMetadataValues - std::min(n_values_, kMaxMetadataValues))
      return err(r_.file(), "metadata holds too many values", where, std::to_string(count),
                 "at most " + std::to_string(kMaxMetadataValues) + " values in all, a guard against hostile files");
    GgufArray a;
    a.elem_type = elem_type;
    a.items.reserve(static_cast<size_t>(count));
    for (uint64_t i = 0; i < count; ++i) {
      SHRINK_ASSIGN(GgufValue v, value(elem_type, where, depth + 1));
      a.items.push_back(std::move(v));
    }
    return GgufValue::array(std::move(a));
  }

  ByteReader& r_;
  uint64_t n_values_ = 0;
};

// ---- Writing ----

class HeaderBuffer {
 public:
  template <class T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    size_t n = bytes_.size();
    bytes_.resize(n + sizeof(T));
    std::memcpy(bytes_.data() + n, &v, sizeof(T));  // hosts are little-endian, as GGUF
  }
  void put_bytes(const void* p, size_t n) {
    if (n == 0) return;
    size_t at = bytes_.size();
    bytes_.resize(at + n);
    std::memcpy(bytes_.data() + at, p, n);
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    put_bytes(s.data(), s.size());
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

// The payload of v (no type tag), mirroring MetadataParser::value. v was checked by check_value.
void put_value(HeaderBuffer& b, const GgufValue& v) {
  switch (v.type) {
    case GgufType::UINT8: b.put(static_cast<uint8_t>(std::get<uint64_t>(v.v))); break;
    case GgufType::UINT16: b.put(static_cast<uint16_t>(std::get<uint64_t>(v.v))); break;
    case GgufType::UINT32: b.put(static_cast<uint32_t>(std::get<uint64_t>(v.v))); break;
    case GgufType::UINT64: b.put(std::get<uint64_t>(v.v)); break;
    case GgufType::INT8: b.put(static_cast<int8_t>(std::get<int64_t>(v.v))); break;
    case GgufType::INT16: b.put(static_cast<int16_t>(std::get<int64_t>(v.v))); break;
    case GgufType::INT32: b.put(static_cast<int32_t>(std::get<int64_t>(v.v))); break;
    case GgufType::INT64: b.put(std::get<int64_t>(v.v)); break;
    case GgufType::FLOAT32: b.put(static_cast<float>(std::get<double>(v.v))); break;
    case GgufType::FLOAT64: b.put(std::get<double>(v.v)); break;
    case GgufType::BOOL: b.put(static_cast<uint8_t>(std::get<bool>(v.v) ? 1 : 0)); break;
    case GgufType::STRING: b.put_string(std::get<std::string>(v.v)); break;
    case GgufType::ARRAY: {
      const GgufArray& a = *std::get<std::shared_ptr<GgufArray>>(v.v);
      b.put(static_cast<uint32_t>(a.elem_type));
      b.put(static_cast<uint64_t>(a.items.size()));
      for (const GgufValue& item : a.items) put_value(b, item);
      break;
    }
  }
}

// Checks that a value built by hand is well formed: its variant holds the alternative its type
// says, integers fit their width, and array items all have the array's element type.
Status check_value(const std::string& file, const GgufValue& v, const std::string& where, int depth) {
  auto bad = [&](const std::string& rule) {
    return err(file, "malformed metadata value", where, gguf_type_name(v.type), rule);
  };
  if (!valid_type(static_cast<uint32_t>(v.type))) return bad("type must be 0..12");
  switch (v.type) {
    case GgufType::UINT8: case GgufType::UINT16: case GgufType::UINT32: case GgufType::UINT64: {
      if (!std::holds_alternative<uint64_t>(v.v)) return bad("an unsigned type must hold a uint64_t");
      uint64_t x = std::get<uint64_t>(v.v);
      uint64_t max = v.type == GgufType::UINT8 ? 0xff : v.type == GgufType::UINT16 ? 0xffff
                   : v.type == GgufType::UINT32 ? 0xffffffffu : std::numeric_limits<uint64_t>::max();
      if (x > max) return bad("value " + std::to_string(x) + " does not fit the type");
      return {};
    }
    case GgufType::INT8: case GgufType::INT16: case GgufType::INT32: case GgufType::INT64: {
      if (!std::holds_alternative<int64_t>(v.v)) return bad("a signed type must hold an int64_t");
      int64_t x = std::get<int64_t>(v.v);
      int64_t lim = v.type == GgufType::INT8 ? 0x7f : v.type == GgufType::INT16 ? 0x7fff
                  : v.type == GgufType::INT32 ? 0x7fffffff : std::numeric_limits<int64_t>::max();
      if (x > lim || x < -lim - 1) return bad("value " + std::to_string(x) + " does not fit the type");
      return {};
    }
    case GgufType::FLOAT32: case GgufType::FLOAT64:
      if (!std::holds_alternative<double>(v.v)) return bad("a float type must hold a double");
      return {};
    case GgufType::BOOL:
      if (!std::holds_alternative<bool>(v.v)) return bad("a bool must hold a bool");
      return {};
    case GgufType::STRING:
      if (!std::holds_alternative<std::string>(v.v)) return bad("a string must hold a std::string");
      return {};
    case GgufType::ARRAY: {
      if (!std::holds_alternative<std::shared_ptr<GgufArray>>(v.v) || !std::get<std::shared_ptr<GgufArray>>(v.v))
        return bad("an array must hold a non-null GgufArray");
      if (depth >= kMaxArrayDepth) return bad("arrays nest at most " + std::to_string(kMaxArrayDepth) + " levels");
      const GgufArray& a = *std::get<std::shared_ptr<GgufArray>>(v.v);
      if (!valid_type(static_cast<uint32_t>(a.elem_type))) return bad("array element type must be 0..12");
      for (size_t i = 0; i < a.items.size(); ++i) {
        if (a.items[i].type != a.elem_type)
          return err(file, "array item type differs from the array's element type", where + "[" + std::to_string(i) + "]",
                     gguf_type_name(a.items[i].type), std::string("must be ") + gguf_type_name(a.elem_type));
        SHRINK_CHECK(check_value(file, a.items[i], where + "[" + std::to_string(i) + "]", depth + 1));
      }
      return {};
    }
  }
  return bad("unknown type");
}

// Shape rules shared by the reader and the writer (gguf.cpp): at most 4 dims, each >= 0, an
// element count representable in int64, rows a whole number of blocks, and a byte size that
// fits in uint64. Returns the byte size.
Result<uint64_t> check_shape(const std::string& file, const std::string& tensor, const std::vector<int64_t>& shape,
                             const TypeTraits& tt) {
  const std::string field = "tensor " + quoted_name(tensor) + " shape";
  if (shape.size() > kMaxDims)
    return err(file, "too many dimensions", field, std::to_string(shape.size()),
               "at most " + std::to_string(kMaxDims) + " (gguf.md, GGML_MAX_DIMS)");
  int64_t n = 1;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 0)
      return err(file, "negative dimension", field + "[" + std::to_string(d) + "]",
                 std::to_string(shape[d]), "must be >= 0 (gguf.cpp; on disk a u64 above INT64_MAX)");
    if (__builtin_mul_overflow(n, shape[d], &n))
      return err(file, "element count overflows", field, shape_string(shape),
                 "the product of the dimensions must fit in int64 (gguf.cpp)");
  }
  int64_t ne0 = shape.empty() ? 1 : shape[0];
  if (ne0 % tt.block_size != 0)
    return err(file, "row length is not a whole number of blocks", field + "[0]", std::to_string(ne0),
               "must be a multiple of " + std::to_string(tt.block_size) + " for " + std::string(tt.name));
  uint64_t bytes = static_cast<uint64_t>(ne0 / tt.block_size);
  bool ok = checked_mul(bytes, tt.type_size, &bytes);
  for (size_t d = 1; d < shape.size() && ok; ++d) ok = checked_mul(bytes, static_cast<uint64_t>(shape[d]), &bytes);
  if (!ok)
    return err(file, "byte size overflows", field, shape_string(shape), "the byte size must fit in uint64");
  return bytes;
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

// ---- GgufValue ----

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UINT8: return "u8";
    case GgufType::INT8: return "i8";
    case GgufType::UINT16: return "u16";
    case GgufType::INT16: return "i16";
    case GgufType::UINT32: return "u32";
    case GgufType::INT32: return "i32";
    case GgufType::FLOAT32: return "f32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "str";
    case GgufType::ARRAY: return "arr";
    case GgufType::UINT64: return "u64";
    case GgufType::INT64: return "i64";
    case GgufType::FLOAT64: return "f64";
  }
  return "invalid";
}

namespace {
template <class T>
GgufValue make_value(GgufType type, T x) {
  GgufValue v;
  v.type = type;
  v.v = std::move(x);
  return v;
}
}  // namespace

GgufValue GgufValue::u8(uint8_t x) { return make_value(GgufType::UINT8, uint64_t{x}); }
GgufValue GgufValue::i8(int8_t x) { return make_value(GgufType::INT8, int64_t{x}); }
GgufValue GgufValue::u16(uint16_t x) { return make_value(GgufType::UINT16, uint64_t{x}); }
GgufValue GgufValue::i16(int16_t x) { return make_value(GgufType::INT16, int64_t{x}); }
GgufValue GgufValue::u32(uint32_t x) { return make_value(GgufType::UINT32, uint64_t{x}); }
GgufValue GgufValue::i32(int32_t x) { return make_value(GgufType::INT32, int64_t{x}); }
GgufValue GgufValue::u64(uint64_t x) { return make_value(GgufType::UINT64, x); }
GgufValue GgufValue::i64(int64_t x) { return make_value(GgufType::INT64, x); }
// A float widens to double exactly; narrowing back restores the same bits (signalling NaNs
// come back quieted, which no real file holds).
GgufValue GgufValue::f32(float x) { return make_value(GgufType::FLOAT32, static_cast<double>(x)); }
GgufValue GgufValue::f64(double x) { return make_value(GgufType::FLOAT64, x); }
GgufValue GgufValue::boolean(bool x) { return make_value(GgufType::BOOL, x); }
GgufValue GgufValue::str(std::string x) { return make_value(GgufType::STRING, std::move(x)); }
GgufValue GgufValue::array(GgufArray a) {
  return make_value(GgufType::ARRAY, std::make_shared<GgufArray>(std::move(a)));
}
GgufValue GgufValue::array_str(const std::vector<std::string>& xs) {
  GgufArray a;
  a.elem_type = GgufType::STRING;
  a.items.reserve(xs.size());
  for (const auto& x : xs) a.items.push_back(str(x));
  return array(std::move(a));
}
GgufValue GgufValue::array_f32(const std::vector<float>& xs) {
  GgufArray a;
  a.elem_type = GgufType::FLOAT32;
  a.items.reserve(xs.size());
  for (float x : xs) a.items.push_back(f32(x));
  return array(std::move(a));
}
GgufValue GgufValue::array_i32(const std::vector<int32_t>& xs) {
  GgufArray a;
  a.elem_type = GgufType::INT32;
  a.items.reserve(xs.size());
  for (int32_t x : xs) a.items.push_back(i32(x));
  return array(std::move(a));
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::UINT16: case GgufType::INT16:
    case GgufType::UINT32: case GgufType::INT32: case GgufType::UINT64: case GgufType::INT64: return true;
    default: return false;
  }
}
bool GgufValue::is_float() const { return type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }

std::optional<int64_t> GgufValue::as_int() const {
  if (!is_integer()) return std::nullopt;
  if (const auto* u = std::get_if<uint64_t>(&v)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  return std::nullopt;
}

std::optional<double> GgufValue::as_float() const {
  if (is_float()) {
    if (const auto* d = std::get_if<double>(&v)) return *d;
    return std::nullopt;
  }
  if (const auto* u = std::get_if<uint64_t>(&v); u && is_integer()) return static_cast<double>(*u);
  if (const auto* i = std::get_if<int64_t>(&v); i && is_integer()) return static_cast<double>(*i);
  return std::nullopt;
}

std::optional<bool> GgufValue::as_bool() const {
  if (type != GgufType::BOOL) return std::nullopt;
  if (const auto* b = std::get_if<bool>(&v)) return *b;
  return std::nullopt;
}

const std::string* GgufValue::as_string() const {
  return type == GgufType::STRING ? std::get_if<std::string>(&v) : nullptr;
}

const GgufArray* GgufValue::as_array() const {
  if (type != GgufType::ARRAY) return nullptr;
  const auto* p = std::get_if<std::shared_ptr<GgufArray>>(&v);
  return p ? p->get() : nullptr;
}

std::string GgufValue::to_display(size_t max_items) const {
  if (const GgufArray* a = as_array()) {
    std::string s = "[" + std::string(gguf_type_name(a->elem_type)) + " x " + std::to_string(a->items.size()) + "]";
    if (a->items.empty()) return s;
    s += " [";
    size_t n = std::min(max_items, a->items.size());
    for (size_t i = 0; i < n; ++i) {
      if (i) s += ", ";
      const GgufValue& item = a->items[i];
      if (const std::string* str = item.as_string()) s += "\"" + escaped(*str, true) + "\"";
      else s += item.to_display(max_items);
    }
    if (n < a->items.size()) s += ", ...";
    return s + "]";
  }
  if (const std::string* str = as_string()) return escaped(*str);
  if (auto b = as_bool()) return *b ? "true" : "false";
  if (type == GgufType::FLOAT32) return float_string(static_cast<float>(*as_float()));
  if (type == GgufType::FLOAT64) return float_string(*as_float());
  if (const auto* u = std::get_if<uint64_t>(&v)) return std::to_string(*u);
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  return "?";
}

bool GgufValue::operator==(const GgufValue& o) const {
  if (type != o.type || v.index() != o.v.index()) return false;
  if (const auto* d = std::get_if<double>(&v)) {
    // Identity, not arithmetic: NaN equals the same NaN, and -0 differs from +0.
    return std::memcmp(d, &std::get<double>(o.v), sizeof(double)) == 0;
  }
  if (const auto* p = std::get_if<std::shared_ptr<GgufArray>>(&v)) {
    const auto& q = std::get<std::shared_ptr<GgufArray>>(o.v);
    if (!*p || !q) return !*p && !q;
    return (*p)->elem_type == q->elem_type && (*p)->items == q->items;
  }
  return v == o.v;
}

int64_t GgufTensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // the reader and the writer both checked this fits
  return n;
}

// ---- GgufFile ----

Result<GgufFile> GgufFile::open(const std::string& path) {
  SHRINK_ASSIGN(std::shared_ptr<MappedFile> mapping, MappedFile::open(path));
  GgufFile g;
  g.path_ = path;
  g.file_ = mapping;
  ByteReader r(mapping->data(), mapping->size(), path);

  SHRINK_ASSIGN(const uint8_t* magic, r.bytes(4, "magic"));
  if (std::memcmp(magic, kMagic, 4) != 0)
    return err(path, "not a GGUF file", "magic", quoted_name(std::string(reinterpret_cast<const char*>(magic), 4)),
               "must be the bytes 'GGUF' (gguf.md)");

  SHRINK_ASSIGN(g.version_, r.read<uint32_t>("version"));
  if (g.version_ == 1)
    return err(path, "unsupported GGUF version", "version", "1", "GGUF v1 is no longer read by llama.cpp; need 2 or 3");
  if (g.version_ != 2 && g.version_ != 3) {
    // gguf.cpp: a byte-swapped small version (0x03000000) means a big-endian file.
    bool swapped = g.version_ != 0 && (g.version_ & 0xFFFF) == 0;
    return err(path, swapped ? "unsupported GGUF version (a big-endian file?)" : "unsupported GGUF version",
               "version", std::to_string(g.version_), "must be 2 or 3");
  }

  SHRINK_ASSIGN(uint64_t n_tensors, r.read<uint64_t>("tensor count"));
  SHRINK_ASSIGN(uint64_t n_kv, r.read<uint64_t>("metadata key/value count"));
  // Counts against the bytes left, before any allocation: a hostile 2^63 fails here.
  if (n_kv > r.remaining() / kMinKvBytes)
    return err(path, "metadata count exceeds the file", "n_kv", std::to_string(n_kv),
               "each key/value pair needs at least " + std::to_string(kMinKvBytes) + " bytes and only " +
                   std::to_string(r.remaining()) + " remain");
  uint64_t left_for_tensors = r.remaining() - n_kv * kMinKvBytes;
  if (n_tensors > left_for_tensors / kMinTensorInfoBytes)
    return err(path, "tensor count exceeds the file", "n_tensors", std::to_string(n_tensors),
               "each tensor info needs at least " + std::to_string(kMinTensorInfoBytes) + " bytes and only " +
                   std::to_string(left_for_tensors) + " remain after the metadata");

  // Metadata.
  MetadataParser parser(r);
  std::unordered_set<std::string> keys;
  for (uint64_t i = 0; i < n_kv; ++i) {
    size_t at = r.offset();
    std::string key_field = "metadata key #" + std::to_string(i);
    SHRINK_ASSIGN(std::string key, r.string<uint64_t>(key_field.c_str(), kMaxKeyLength));
    if (key.empty())
      return err(path, "empty metadata key at offset " + std::to_string(at), key_field, "''",
                 "keys must be non-empty (gguf.md hierarchical keys)");
    if (!keys.insert(key).second)
      return err(path, "duplicate metadata key at offset " + std::to_string(at), key_field, quoted_name(key),
                 "keys must be unique (gguf.cpp)");
    std::string where = "metadata " + quoted_name(key);
    size_t type_at = r.offset();
    std::string type_field = where + " value type";
    SHRINK_ASSIGN(uint32_t type, r.read<uint32_t>(type_field.c_str()));
    if (!valid_type(type))
      return err(path, "invalid metadata value type at offset " + std::to_string(type_at), where,
                 std::to_string(type), "must be 0..12 (gguf.md gguf_metadata_value_type)");
    SHRINK_ASSIGN(GgufValue value, parser.value(static_cast<GgufType>(type), where, 0));
    g.metadata_.push_back(GgufKV{std::move(key), std::move(value)});
  }

  g.alignment_ = kDefaultAlignment;
  if (const GgufValue* a = g.find(kAlignmentKey)) {
    // gguf.md: `general.alignment: uint32`; gguf.cpp reads it with gguf_get_val_u32, which
    // aborts on any other type.
    if (a->type != GgufType::UINT32)
      return err(path, "general.alignment has the wrong type", kAlignmentKey, gguf_type_name(a->type),
                 "must be u32 (gguf.md)");
    g.alignment_ = static_cast<uint64_t>(*a->as_int());
    if (!valid_alignment(g.alignment_))
      return err(path, "invalid alignment", kAlignmentKey, std::to_string(g.alignment_), kAlignmentRule);
  }

  // Tensor infos.
  g.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    size_t at = r.offset();
    std::string name_field = "tensor info #" + std::to_string(i) + " name";
    SHRINK_ASSIGN(std::string name, r.string<uint64_t>(name_field.c_str(), kMaxTensorNameRead));
    if (g.tensor_index_.count(name))
      return err(path, "duplicate tensor name at offset " + std::to_string(at), name_field, quoted_name(name),
                 "tensor names must be unique (gguf.cpp)");
    GgufTensorInfo t;
    t.name = std::move(name);
    std::string field = "tensor " + quoted_name(t.name);
    std::string dims_field = field + " n_dims";
    SHRINK_ASSIGN(uint32_t n_dims, r.read<uint32_t>(dims_field.c_str()));
    if (n_dims > kMaxDims)
      return err(path, "too many dimensions", dims_field, std::to_string(n_dims),
                 "at most " + std::to_string(kMaxDims) + " (gguf.md, GGML_MAX_DIMS)");
    std::string ne_field = field + " ne";
    for (uint32_t d = 0; d < n_dims; ++d) {
      SHRINK_ASSIGN(uint64_t ne, r.read<uint64_t>(ne_field.c_str()));
      t.shape.push_back(static_cast<int64_t>(ne));  // > INT64_MAX turns negative: refused below
    }
    std::string type_field = field + " type";
    SHRINK_ASSIGN(uint32_t type_id, r.read<uint32_t>(type_field.c_str()));
    const TypeTraits* tt = type_traits(type_id);
    if (tt == nullptr)
      return err(path, "unknown tensor type id", type_field, std::to_string(type_id),
                 "must be a ggml_type this build knows (removed ids 4, 5, 31-33, 36-38 are refused)");
    t.type = tt->id;
    SHRINK_ASSIGN(t.n_bytes, check_shape(path, t.name, t.shape, *tt));
    std::string offset_field = field + " offset";
    SHRINK_ASSIGN(t.offset, r.read<uint64_t>(offset_field.c_str()));
    g.tensor_index_.emplace(t.name, g.tensors_.size());
    g.tensors_.push_back(std::move(t));
  }

  // gguf.md: the data section starts at the end of the tensor infos padded to the alignment.
  const uint64_t size = mapping->size();
  g.data_offset_ = align_up(r.offset(), g.alignment_);
  if (g.data_offset_ > size && !g.tensors_.empty())
    return err(path, "data section starts past the end of the file", "data offset", std::to_string(g.data_offset_),
               "must be at most the file size " + std::to_string(size) + " (truncated file?)");
  const uint64_t data_size = g.data_offset_ <= size ? size - g.data_offset_ : 0;

  for (GgufTensorInfo& t : g.tensors_) {
    std::string field = "tensor " + quoted_name(t.name) + " offset";
    if (t.offset % g.alignment_ != 0)
      return err(path, "misaligned tensor data", field, std::to_string(t.offset),
                 "must be a multiple of the alignment " + std::to_string(g.alignment_) + " (gguf.md)");
    if (t.offset > data_size || t.n_bytes > data_size - t.offset)
      return err(path, "tensor data lies outside the file", field,
                 std::to_string(t.offset) + " + " + std::to_string(t.n_bytes) + " bytes",
                 "must end within the " + std::to_string(data_size) + "-byte data section (truncated file?)");
    t.data = mapping->data() + g.data_offset_ + t.offset;
  }

  // No two tensors may share bytes (empty tensors occupy none).
  std::vector<const GgufTensorInfo*> by_offset;
  for (const GgufTensorInfo& t : g.tensors_)
    if (t.n_bytes > 0) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& prev = *by_offset[i - 1];
    const GgufTensorInfo& cur = *by_offset[i];
    if (cur.offset < prev.offset + prev.n_bytes)
      return err(path, "tensors overlap", "tensor " + quoted_name(cur.name) + " offset", std::to_string(cur.offset),
                 "must not start before " + quoted_name(prev.name) + " ends at " +
                     std::to_string(prev.offset + prev.n_bytes));
  }
  return g;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  for (const GgufKV& kv : metadata_)
    if (kv.key == key) return &kv.value;
  return nullptr;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

// ---- GgufWriter ----

GgufWriter::GgufWriter(std::string path, uint64_t alignment) : path_(std::move(path)), alignment_(alignment) {}

void GgufWriter::set(const std::string& key, GgufValue value) {
  for (GgufKV& kv : metadata_) {
    if (kv.key == key) {
      kv.value = std::move(value);
      return;
    }
  }
  metadata_.push_back(GgufKV{key, std::move(value)});
}

size_t GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& shape, TypeId type) {
  GgufTensorInfo t;
  t.name = name;
  t.shape = shape;
  t.type = type;
  if (declaration_error_.empty()) {
    const TypeTraits* tt = type_traits(static_cast<uint32_t>(type));
    auto name_taken = [&] {
      for (const GgufTensorInfo& o : tensors_)
        if (o.name == name) return true;
      return false;
    };
    if (state_ != State::kDeclaring) {
      declaration_error_ = path_ + ": tensor " + quoted_name(name) + " declared after begin()";
    } else if (name.empty() || name.size() > kMaxTensorNameWrite) {
      declaration_error_ = err(path_, "invalid tensor name", "tensor name", quoted_name(name),
                               "must be 1.." + std::to_string(kMaxTensorNameWrite) +
                                   " bytes (llama.cpp GGML_MAX_NAME)").message;
    } else if (name_taken()) {
      declaration_error_ = err(path_, "duplicate tensor name", "tensor name", quoted_name(name), "must be unique").message;
    } else if (tt == nullptr) {
      declaration_error_ = err(path_, "unknown tensor type id", "tensor " + quoted_name(name) + " type",
                               std::to_string(static_cast<uint32_t>(type)), "must be a known ggml_type").message;
    } else {
      auto bytes = check_shape(path_, name, shape, *tt);
      if (bytes.ok()) t.n_bytes = *bytes;
      else declaration_error_ = bytes.error().message;
    }
  }
  tensors_.push_back(std::move(t));
  return tensors_.size() - 1;
}

Status GgufWriter::fail(Error e) {
  out_.reset();  // AtomicOutput removes its temp file when dropped uncommitted
  state_ = State::kFailed;
  return e;
}

Status GgufWriter::begin() {
  if (state_ != State::kDeclaring)
    return make_error(path_ + ": begin() called twice or after a failure");
  if (!declaration_error_.empty()) return fail(make_error(declaration_error_));
  if (!valid_alignment(alignment_))
    return fail(err(path_, "invalid alignment", kAlignmentKey, std::to_string(alignment_), kAlignmentRule));

  std::vector<GgufKV> kvs = metadata_;
  bool has_alignment = false;
  std::unordered_set<std::string> keys;
  for (const GgufKV& kv : kvs) {
    if (kv.key.empty() || kv.key.size() > kMaxKeyLength)
      return fail(err(path_, "invalid metadata key", "metadata key", quoted_name(kv.key),
                      "must be 1..65535 bytes (gguf.md)"));
    if (!keys.insert(kv.key).second)
      return fail(err(path_, "duplicate metadata key", "metadata key", quoted_name(kv.key), "keys must be unique"));
    Status s = check_value(path_, kv.value, "metadata " + quoted_name(kv.key), 0);
    if (!s.ok()) return fail(s.error());
    if (kv.key == kAlignmentKey) {
      // One alignment only: a caller copying a file's metadata brings its general.alignment
      // along, and it must agree with the alignment the writer pads to.
      has_alignment = true;
      if (kv.value.type != GgufType::UINT32 || static_cast<uint64_t>(*kv.value.as_int()) != alignment_)
        return fail(err(path_, "general.alignment disagrees with the writer's alignment", kAlignmentKey,
                        kv.value.to_display(), "must be u32 " + std::to_string(alignment_)));
    }
  }
  // The writer states a non-default alignment itself, as the header comment promises.
  if (!has_alignment && alignment_ != kDefaultAlignment)
    kvs.push_back(GgufKV{kAlignmentKey, GgufValue::u32(static_cast<uint32_t>(alignment_))});
  metadata_ = kvs;

  // Offsets as llama.cpp lays them out (gguf.cpp gguf_add_tensor): back to back, each tensor
  // padded to the alignment.
  uint64_t offset = 0;
  for (GgufTensorInfo& t : tensors_) {
    t.offset = offset;
    uint64_t padded = align_up(t.n_bytes, alignment_);
    if (padded < t.n_bytes || !checked_add(offset, padded, &offset))
      return fail(err(path_, "data section size overflows", "tensor " + quoted_name(t.name), std::to_string(t.n_bytes),
                      "the total must fit in uint64"));
  }

  HeaderBuffer h;
  h.put_bytes(kMagic, sizeof kMagic);
  h.put(kWriteVersion);
  h.put(static_cast<uint64_t>(tensors_.size()));
  h.put(static_cast<uint64_t>(metadata_.size()));
  for (const GgufKV& kv : metadata_) {
    h.put_string(kv.key);
    h.put(static_cast<uint32_t>(kv.value.type));
    put_value(h, kv.value);
  }
  for (const GgufTensorInfo& t : tensors_) {
    h.put_string(t.name);
    h.put(static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) h.put(d);
    h.put(static_cast<uint32_t>(t.type));
    h.put(t.offset);
  }

  auto out = AtomicOutput::create(path_);
  if (!out.ok()) return fail(out.error());
  out_.emplace(std::move(out).value());
  Status s = out_->write(h.bytes().data(), h.bytes().size());
  if (s.ok()) s = out_->pad_to(alignment_);
  if (!s.ok()) return fail(s.error());
  data_start_ = out_->offset();
  next_tensor_ = 0;
  state_ = State::kWriting;
  return {};
}

Status GgufWriter::write_tensor_data(size_t index, const void* data, size_t n_bytes) {
  if (state_ != State::kWriting)
    return make_error(path_ + ": write_tensor_data() needs begin() first and no earlier failure");
  if (index >= tensors_.size() || index != next_tensor_) {
    std::string expected = next_tensor_ < tensors_.size()
                               ? std::to_string(next_tensor_) + " (" + quoted_name(tensors_[next_tensor_].name) + ")"
                               : "none: all tensors are written";
    return fail(err(path_, "tensor data out of order", "tensor index", std::to_string(index),
                    "next expected is " + expected));
  }
  const GgufTensorInfo& t = tensors_[index];
  if (n_bytes != t.n_bytes)
    return fail(err(path_, "tensor data has the wrong size", "tensor " + quoted_name(t.name) + " bytes",
                    std::to_string(n_bytes),
                    "must be " + std::to_string(t.n_bytes) + " for " + std::string(type_name(t.type)) + " " +
                        shape_string(t.shape)));
  if (n_bytes > 0 && data == nullptr)
    return fail(err(path_, "tensor data is null", "tensor " + quoted_name(t.name), "nullptr", "must point to the bytes"));
  if (out_->offset() - data_start_ != t.offset)
    return fail(err(path_, "internal offset mismatch", "tensor " + quoted_name(t.name) + " offset",
                    std::to_string(out_->offset() - data_start_), "must be " + std::to_string(t.offset)));
  Status s = out_->write(data, n_bytes);
  if (s.ok()) s = out_->pad_to(alignment_);  // gguf.cpp pads after every tensor, the last one too
  if (!s.ok()) return fail(s.error());
  ++next_tensor_;
  return {};
}

Status GgufWriter::finish() {
  if (state_ != State::kWriting)
    return make_error(path_ + ": finish() needs begin() first and no earlier failure");
  if (next_tensor_ != tensors_.size())
    return fail(err(path_, "not every tensor was written", "tensors written", std::to_string(next_tensor_),
                    "must be " + std::to_string(tensors_.size()) + "; next missing is " +
                        quoted_name(tensors_[next_tensor_].name)));
  Status s = out_->commit();
  if (!s.ok()) return fail(s.error());
  state_ = State::kFinished;
  return {};
}

uint64_t GgufWriter::bytes_written() const { return out_ ? out_->offset() : 0; }

}  // namespace shrink
