// A read-only memory mapping of a whole file. Readers hand out views into it; the mapping
// lives as long as the MappedFile (share it with std::shared_ptr when views outlive the reader).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"

namespace shrink {

class MappedFile {
 public:
  // Maps `path` read-only. An empty file maps to size 0 with a null data pointer.
  static Result<std::shared_ptr<MappedFile>> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace shrink
