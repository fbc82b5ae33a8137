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

// ggml's CPU-backend kernels, loaded from one libggml-cpu-<variant>.so of the same package
// (libggml-cpu-x64.so is built without AVX, so it runs ggml's *_generic code; the others run
// ggml's SIMD code for that CPU family). The oracle for activation quantization (from_float)
// and dot products (vec_dot). The library loads libggml-base.so from its own folder.
class GgmlCpuOracle {
 public:
  explicit GgmlCpuOracle(const std::string& library_path);
  ~GgmlCpuOracle();
  GgmlCpuOracle(const GgmlCpuOracle&) = delete;
  GgmlCpuOracle& operator=(const GgmlCpuOracle&) = delete;

  bool ok() const { return get_traits_ != nullptr; }
  const std::string& error() const { return error_; }

  // type_traits_cpu[type].from_float(x, y, n): the row converter the CPU backend applies to
  // activations (e.g. quantize_row_q8_K for GGML_TYPE_Q8_K). False if ggml has none.
  bool from_float(uint32_t type, const float* x, void* y, int64_t n) const;
  // type_traits_cpu[weight_type].vec_dot(n, &s, 0, w, 0, a, 0, 1); `a` in its vec_dot_type.
  // False if ggml has none.
  bool vec_dot(uint32_t weight_type, int64_t n, const void* w, const void* a, float* s) const;
  // type_traits_cpu[weight_type].vec_dot_type.
  uint32_t vec_dot_type(uint32_t weight_type) const;

 private:
  using GetTraitsFn = const void* (*)(int);
  void* handle_ = nullptr;
  GetTraitsFn get_traits_ = nullptr;
  std::string error_;
};

}  // namespace shrink::test
