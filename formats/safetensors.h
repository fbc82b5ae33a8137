// safetensors reader (single file and sharded via model.safetensors.index.json) and writer.
//
// Layout: u64 little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"k": "v"}}, then the data buffer; offsets are relative to the buffer's
// start, must lie inside it, must not overlap, and end-begin must equal the shape product
// times the dtype size. As in the reference reader (safetensors tensor.rs), the tensors must
// also cover the buffer exactly: no holes, the last one ending at the end of the file.
// Shapes are row-major as in the file (last dimension fastest).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "formats/mapped_file.h"

namespace shrink {

enum class StDtype { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2 };
const char* st_dtype_name(StDtype d);
size_t st_dtype_size(StDtype d);

struct StTensor {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;  // row-major, as in the file
  const uint8_t* data = nullptr;
  uint64_t n_bytes = 0;
  std::string file;            // the shard it lives in
  int64_t n_elements() const;
};

class SafetensorsFile {
 public:
  static Result<SafetensorsFile> open(const std::string& path);
  const std::string& path() const { return path_; }
  const std::vector<StTensor>& tensors() const { return tensors_; }  // sorted by data offset
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const StTensor* find(const std::string& name) const;

 private:
  std::string path_;
  std::vector<StTensor> tensors_;
  std::map<std::string, std::string> metadata_;
  std::unordered_map<std::string, size_t> index_;  // name -> index in tensors_
  std::shared_ptr<MappedFile> file_;
};

// All tensors of a model: one .safetensors file, or the shards listed by an index.json
// (`weight_map`: tensor name -> shard file, relative to the index's folder). Every tensor of
// a shard must be listed in the index and every listed tensor must exist in its shard.
class SafetensorsModel {
 public:
  // `path`: a .safetensors file, a model.safetensors.index.json, or a folder holding either.
  static Result<SafetensorsModel> open(const std::string& path);
  const std::vector<StTensor>& tensors() const { return tensors_; }  // shard order, then offset
  const StTensor* find(const std::string& name) const;
  const std::vector<std::string>& files() const { return files_; }

 private:
  static Result<SafetensorsModel> open_index(const std::string& index_path);
  std::vector<SafetensorsFile> shards_;
  std::vector<StTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> index in tensors_
  std::vector<std::string> files_;
};

struct StWriteTensor {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;  // row-major
  const void* data = nullptr;  // shape product * dtype size bytes
};

// Writes one file atomically (temp + rename). Tensors keep the given order; the header is
// padded with spaces to a multiple of 8 bytes as the reference implementation does.
Status write_safetensors(const std::string& path, const std::vector<StWriteTensor>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

// Writes shards of at most max_shard_bytes of data named model-0000i-of-0000n.safetensors into
// `dir`, plus model.safetensors.index.json ({"metadata": {"total_size": N}, "weight_map": {...}}).
// With a single shard it writes model.safetensors and no index.
Status write_safetensors_sharded(const std::string& dir, const std::vector<StWriteTensor>& tensors,
                                 uint64_t max_shard_bytes,
                                 const std::map<std::string, std::string>& metadata = {});

}  // namespace shrink
