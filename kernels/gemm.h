// Matrix products of a weight matrix in its storage type with float activations, as ggml's CPU
// backend computes ggml_mul_mat: y(n_tokens, n_rows) = x(n_tokens, n_cols) W^T, where W is
// (n_rows, n_cols) in `type`, row r at w + r * row_bytes. The activations are converted once
// per call to vec_dot_type(type) (kernels/dot.h).
//
// On x86 CPUs with AVX-512 (F, BW, VL, DQ, VNNI) the F32, F16, Q8_0, Q4_0 and Q4_K products
// repeat the float operations of the kernel llama.cpp itself picks for that type and shape on
// such a CPU (tinyBLAS, the CPU_REPACK GEMM/GEMV, or vec_dot), so every output is bit-identical
// to ggml_mul_mat there, for any token count: register-tiled kernels (kernels/gemm_kernels.h),
// kernels::gemv for one token (kernels/gemv.h; F32 excepted, which stays here), and for Q4_K
// with n_rows % 8 != 0 ggml's own vec_dot per output (kernels/x86/dot_avx512.cc). Everything
// else (other types, other CPUs, SHRINK_FORCE_REF=1) takes one dispatched vec_dot per
// (token, row) pair: equal to ggml within float-summation bounds, not to the bit. OpenMP
// threads split the work; the result does not depend on the thread count.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/quant_types.h"

namespace shrink::kernels {

// True if gemm() takes weights of `type` (the types with a vec_dot: has_vec_dot()).
bool can_gemm(TypeId type);

// True if gemm() on this CPU computes bit-for-bit what ggml_mul_mat computes for `type` and
// n_rows (see above); false means "within float-summation bounds".
bool gemm_matches_ggml(TypeId type, int64_t n_rows);

// y[t * n_rows + r] = sum_i W[r][i] * x[t * n_cols + i]. n_cols a multiple of the type's block
// size. x and y must not overlap.
void gemm(TypeId type, const void* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const float* x,
          int64_t n_tokens, float* y);

}  // namespace shrink::kernels
