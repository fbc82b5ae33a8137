// AtomicOutput: a file written under a temporary name in the destination's folder and
// renamed over the destination only by commit(). Until then the user's existing file is
// untouched; if the writer fails or is destroyed without commit, the temp file is removed.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "common/result.h"

namespace shrink {

class AtomicOutput {
 public:
  static Result<AtomicOutput> create(const std::string& path);
  AtomicOutput(AtomicOutput&& other) noexcept;
  AtomicOutput& operator=(AtomicOutput&&) = delete;
  AtomicOutput(const AtomicOutput&) = delete;
  ~AtomicOutput();

  Status write(const void* data, size_t n);
  // Zero bytes up to the next multiple of `alignment` of the current offset.
  Status pad_to(uint64_t alignment);
  uint64_t offset() const { return offset_; }
  // Flush, fsync and rename onto the destination.
  Status commit();
  const std::string& path() const { return path_; }

 private:
  AtomicOutput() = default;
  std::string path_, temp_path_;
  std::FILE* f_ = nullptr;
  uint64_t offset_ = 0;
  bool committed_ = false;
};

}  // namespace shrink
