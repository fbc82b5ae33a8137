// GGUF v3 reader and streaming writer (spec: ggml/docs/gguf.md).
//
// Layout: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv key/value pairs,
// then n_tensors tensor infos (name, n_dims, ne[n_dims] as u64, u32 type, u64 offset), padding
// to `general.alignment` (default 32), then the data section. Tensor offsets are relative to
// the data section and each is a multiple of the alignment.
//
// Shapes here are in ggml order: shape[0] = ne[0] is the row length (fastest-varying).
// The reader maps the file and hands out views; it never copies tensor data.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/result.h"
#include "formats/atomic_output.h"
#include "formats/mapped_file.h"
#include "kernels/quant_types.h"

namespace shrink {

// GGUF metadata value types (gguf.md `gguf_metadata_value_type`).
enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_type_name(GgufType t);

struct GgufValue;
struct GgufArray {
  GgufType elem_type = GgufType::UINT8;
  std::vector<GgufValue> items;  // nested arrays allowed (elem_type == ARRAY)
};

// One metadata value with its exact on-disk type (so write(read(x)) == x).
struct GgufValue {
  GgufType type = GgufType::UINT8;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<GgufArray>> v;

  static GgufValue u8(uint8_t x);
  static GgufValue i8(int8_t x);
  static GgufValue u16(uint16_t x);
  static GgufValue i16(int16_t x);
  static GgufValue u32(uint32_t x);
  static GgufValue i32(int32_t x);
  static GgufValue u64(uint64_t x);
  static GgufValue i64(int64_t x);
  static GgufValue f32(float x);
  static GgufValue f64(double x);
  static GgufValue boolean(bool x);
  static GgufValue str(std::string x);
  static GgufValue array(GgufArray a);
  static GgufValue array_str(const std::vector<std::string>& xs);
  static GgufValue array_f32(const std::vector<float>& xs);
  static GgufValue array_i32(const std::vector<int32_t>& xs);

  bool is_integer() const;  // any of the 8 integer types
  bool is_float() const;    // FLOAT32 or FLOAT64
  // Converting accessors; nullopt when the type does not fit the request.
  std::optional<int64_t> as_int() const;
  std::optional<double> as_float() const;  // floats and integers
  std::optional<bool> as_bool() const;
  const std::string* as_string() const;
  const GgufArray* as_array() const;
  // Short human form for `inspect`: scalars in full, arrays as "[type x N]" plus a prefix.
  std::string to_display(size_t max_items = 4) const;

  bool operator==(const GgufValue& o) const;
};

struct GgufKV {
  std::string key;
  GgufValue value;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // ggml order: shape[0] is the row length
  TypeId type = TypeId::F32;
  uint64_t offset = 0;         // relative to the data section
  uint64_t n_bytes = 0;        // computed from type and shape
  const uint8_t* data = nullptr;  // view into the mapping (reader only)

  int64_t n_elements() const;
};

class GgufFile {
 public:
  // Maps and validates the whole header: magic, version 2 or 3, every length and count
  // against the bytes left, known type ids, shape products without overflow, rows that
  // fit the block size, offsets aligned, inside the file and not overlapping.
  static Result<GgufFile> open(const std::string& path);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  // Absolute offset of the data section. It can exceed file_size() in a file with no tensors:
  // gguf-py does not pad the header when no tensor data follows.
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return file_->size(); }
  const std::vector<GgufKV>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufValue* find(const std::string& key) const;
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  std::shared_ptr<MappedFile> mapping() const { return file_; }

 private:
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<GgufKV> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;  // name -> index in tensors_
  std::shared_ptr<MappedFile> file_;
};

// Streaming writer: declare metadata and tensor infos, begin() writes the header to a temp
// file, then write_tensor_data() once per tensor in declaration order, then finish() renames
// the file into place. Peak memory is the header plus whatever one tensor the caller holds.
class GgufWriter {
 public:
  explicit GgufWriter(std::string path, uint64_t alignment = 32);

  // Adds or replaces a key (insertion order is kept). general.alignment is written by the
  // writer itself when the alignment is not 32.
  void set(const std::string& key, GgufValue value);
  // Declares a tensor; shape in ggml order. Returns its index.
  size_t add_tensor(const std::string& name, const std::vector<int64_t>& shape, TypeId type);

  Status begin();
  Status write_tensor_data(size_t index, const void* data, size_t n_bytes);
  Status finish();

  const std::vector<GgufKV>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  uint64_t bytes_written() const;

 private:
  std::string path_;
  uint64_t alignment_;
  std::vector<GgufKV> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::optional<AtomicOutput> out_;
  size_t next_tensor_ = 0;
  uint64_t data_start_ = 0;
  // add_tensor() cannot fail in its signature: the first bad declaration is kept here and
  // returned by begin().
  std::string declaration_error_;
  enum class State { kDeclaring, kWriting, kFinished, kFailed } state_ = State::kDeclaring;
  Status fail(Error e);  // drops the temp file and refuses any further call
};

}  // namespace shrink
