// AVX2 (gemv_avx2.cc) and AVX-512 (gemv_avx512.cc) GEMV kernels, listed in gemv_variants()
// (kernels/gemv.cc). Same contract as the scalar references there: identical bits.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shrink::kernels {

#define SHRINK_GEMV_DECL(NAME)                                                                      \
  size_t NAME##_scratch(int64_t n_cols);                                                            \
  void NAME##_prepare(const void* act, int64_t n_cols, void* scratch);                              \
  void NAME##_rows(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void* act, \
                   const void* scratch, float* y);

namespace avx512 {
SHRINK_GEMV_DECL(gemv_q8_0_vecdot)
SHRINK_GEMV_DECL(gemv_f16_vecdot)
SHRINK_GEMV_DECL(gemv_q4_0_repack8)
SHRINK_GEMV_DECL(gemv_q4_K_repack8)
}  // namespace avx512

namespace avx2 {
SHRINK_GEMV_DECL(gemv_q8_0_vecdot)
SHRINK_GEMV_DECL(gemv_q4_0_repack8)
SHRINK_GEMV_DECL(gemv_q4_K_repack8)
}  // namespace avx2

#undef SHRINK_GEMV_DECL

}  // namespace shrink::kernels
