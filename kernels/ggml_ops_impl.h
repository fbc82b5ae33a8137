// The per-ISA implementations behind kernels/ggml_ops.h, chosen once by kernels/ggml_ops.cc.
// Every variant computes the same bits (tests/test_kernels_ggml_ops.cc checks each against the
// reference and against ggml).
#pragma once

#include <cstdint>

namespace shrink::kernels {

#define SHRINK_GGML_OPS_DECLS                                       \
  float dot_tiled(const float* a, const float* b, int64_t n);      \
  void scores_tiled(const float* k, int64_t k_stride, const float* q, int64_t hd, int64_t n, float* out); \
  void weighted_tiled(const float* vt, int64_t vt_stride, const float* p, int64_t np, int64_t n_out, float* out); \
  float dot_vec_f16(const float* a, const float* b, int64_t n);    \
  float dot_vec_f32(const float* a, const float* b, int64_t n);    \
  void softmax(float* p, int64_t n, float scale);                  \
  void round_f16(float* x, int64_t n);                             \
  void swiglu(float* gate, const float* up, int64_t n);

namespace ref {
SHRINK_GGML_OPS_DECLS
}  // namespace ref
namespace avx512 {
SHRINK_GGML_OPS_DECLS
}  // namespace avx512

#undef SHRINK_GGML_OPS_DECLS

}  // namespace shrink::kernels
