// ByteReader: a bounds- and overflow-checked little-endian cursor over a byte span.
// Every read of untrusted file bytes goes through it (DESIGN.md, convention 5). A failed
// read returns an Error naming the file, the field and the offset; the cursor never
// reads past `size`.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "common/result.h"

namespace shrink {

// a*b without overflow, or false.
inline bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
inline bool checked_add(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string file)
      : data_(data), size_(size), file_(std::move(file)) {}

  size_t offset() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }
  const std::string& file() const { return file_; }

  // Error text: "<file>: <field> at offset <pos>: <what>".
  Error error(const std::string& field, const std::string& what) const {
    return make_error(file_ + ": " + field + " at offset " + std::to_string(pos_) + ": " + what);
  }

  template <class T>
  Result<T> read(const char* field) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (remaining() < sizeof(T))
      return error(field, "file ends after " + std::to_string(remaining()) + " more bytes, need " +
                              std::to_string(sizeof(T)) + " (truncated file?)");
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));  // all supported hosts are little-endian
    pos_ += sizeof(T);
    return v;
  }

  // A pointer to the next n bytes, advancing past them.
  Result<const uint8_t*> bytes(uint64_t n, const char* field) {
    if (n > remaining())
      return error(field, "needs " + std::to_string(n) + " bytes but only " + std::to_string(remaining()) +
                              " remain (truncated file or corrupt length)");
    const uint8_t* p = data_ + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }

  // A length-prefixed string; `max_len` bounds lengths that would be absurd for the field.
  template <class LenT>
  Result<std::string> string(const char* field, uint64_t max_len = std::numeric_limits<uint32_t>::max()) {
    size_t start = pos_;
    auto len = read<LenT>(field);
    if (!len.ok()) return len.error();
    if (static_cast<uint64_t>(*len) > max_len) {
      pos_ = start;
      return error(field, "string length " + std::to_string(static_cast<uint64_t>(*len)) + " exceeds the limit " +
                              std::to_string(max_len));
    }
    auto p = bytes(static_cast<uint64_t>(*len), field);
    if (!p.ok()) return p.error();
    return std::string(reinterpret_cast<const char*>(*p), static_cast<size_t>(*len));
  }

  Status seek(uint64_t offset, const char* field) {
    if (offset > size_) return error(field, "offset " + std::to_string(offset) + " lies past the end of the file (" +
                                                std::to_string(size_) + " bytes)");
    pos_ = static_cast<size_t>(offset);
    return {};
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string file_;
};

}  // namespace shrink
