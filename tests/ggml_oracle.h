// ggml's own quantizer and dequantizer, loaded at run time from libggml-base.so (shipped in the
// npm package @node-llama-cpp/linux-x64), used as the oracle for byte-exactness in tests and as
// the anchor in benchmarks. No Catch2 here: benches link it too. The caller passes the path
// (tests: shrink::test::ggml_base_library()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace shrink::test {

class GgmlOracle {
 public:
  // Loads the library; ok() tells whether it and both symbols were found, error() why not.
  explicit GgmlOracle(const std::string& library_path);
  ~GgmlOracle();
  GgmlOracle(const GgmlOracle&) = delete;
  GgmlOracle& operator=(const GgmlOracle&) = delete;

  bool ok() const { return quantize_chunk_ != nullptr && get_type_traits_ != nullptr; }
  const std::string& error() const { return error_; }

  // ggml_quantize_chunk(type, src, dst, start, nrows, n_per_row, imatrix): quantizes rows
  // [start/n_per_row, +nrows) of src into the matching rows of dst. Single-threaded. `type` is
  // ggml's enum ggml_type, which shrink::TypeId mirrors. imatrix: nullptr or n_per_row weights,
  // one per column. Returns the bytes written.
  size_t quantize_chunk(uint32_t type, const float* src, void* dst, int64_t start, int64_t nrows,
                        int64_t n_per_row, const float* imatrix = nullptr) const;

  // ggml_get_type_traits(type)->to_float(src, dst, n): ggml's row dequantizer. False if ggml has
  // none for this type (F32 has none: it is already float).
  bool dequantize_row(uint32_t type, const void* src, float* dst, int64_t n) const;

 private:
  using QuantizeChunkFn = size_t (*)(int, const float*, void*, int64_t, int64_t, int64_t, const float*);
  using GetTypeTraitsFn = const void* (*)(int);
  void* handle_ = nullptr;
  QuantizeChunkFn quantize_chunk_ = nullptr;
  GetTypeTraitsFn get_type_traits_ = nullptr;
  std::string error_;
};

}  // namespace shrink::test
