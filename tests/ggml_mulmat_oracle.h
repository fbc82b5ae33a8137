// ggml's real matrix product on this machine: a one-node graph y = ggml_mul_mat(W, x) computed by
// the CPU backend of the npm package @node-llama-cpp/linux-x64 (libggml-base.so plus one
// libggml-cpu-<variant>.so, both loaded at run time), with the weight placed the way llama.cpp
// places it: in the CPU_REPACK buffer type when that buffer supports the product (Q4_0 and Q4_K
// with rows % 8 == 0 on AVX2 machines, IQ4_NL likewise, Q2_K on AVX-512), else in the plain CPU
// buffer. So the result comes from whichever kernel llama.cpp would run for that type and shape:
// llamafile's tinyBLAS, the repack GEMM/GEMV, or the per-row vec_dot. One thread.
// No Catch2 here: benchmarks may link it too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace shrink::test {

class GgmlMulMatOracle {
 public:
  // base_library: libggml-base.so; cpu_library: the libggml-cpu-*.so beside it.
  GgmlMulMatOracle(const std::string& base_library, const std::string& cpu_library);
  ~GgmlMulMatOracle();
  GgmlMulMatOracle(const GgmlMulMatOracle&) = delete;
  GgmlMulMatOracle& operator=(const GgmlMulMatOracle&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  struct Output {
    std::vector<float> y;  // (n_tokens, n_rows), token-major as ggml's dst
    bool repacked = false;  // the weight went to the CPU_REPACK buffer
    std::string error;      // non-empty when ggml refused the product
  };
  // y(n_tokens, n_rows) = x(n_tokens, n_cols) W^T. `type` is ggml's enum ggml_type (shrink's
  // TypeId mirrors it); w holds n_rows rows of n_cols weights in that type, contiguous.
  Output mul_mat(uint32_t type, const void* w, int64_t n_rows, int64_t n_cols, const float* x,
                 int64_t n_tokens) const;

 private:
  struct Api;
  Api* api_ = nullptr;
  void* base_ = nullptr;
  void* cpu_ = nullptr;
  void* backend_ = nullptr;
  void* repack_buft_ = nullptr;
  std::string error_;
};

}  // namespace shrink::test
