// Scalar reference kernels of the super-block ("k") quants Q2_K..Q6_K and the non-linear
// IQ4_NL / IQ4_XS, plus the importance-matrix quantizers of every type that has one (these
// and Q4_0/Q4_1/Q5_0/Q5_1). Byte-identical to ggml_quantize_chunk with and without an imatrix;
// checked by tests/test_kernels_kquants.cc.
//
// Two entry shapes:
//  - quantize_row_<type>(x, y, n): no importance matrix. n weights, a multiple of the block size;
//    every super-block is independent, so any run of whole blocks may be passed.
//  - quantize_row_<type>_imatrix(x, y, n_per_row, imatrix): ONE row of n_per_row weights with
//    imatrix[n_per_row] (one non-negative weight per column). Whole rows only: the legacy types
//    scale the importance by the row's mean square.
#pragma once

#include <cstdint>

namespace shrink::kernels::ref {

void quantize_row_q2_K(const float* x, void* y, int64_t n);
void quantize_row_q3_K(const float* x, void* y, int64_t n);
void quantize_row_q4_K(const float* x, void* y, int64_t n);
void quantize_row_q5_K(const float* x, void* y, int64_t n);
void quantize_row_q6_K(const float* x, void* y, int64_t n);
void quantize_row_iq4_nl(const float* x, void* y, int64_t n);
void quantize_row_iq4_xs(const float* x, void* y, int64_t n);

void dequantize_row_q2_K(const void* x, float* y, int64_t n);
void dequantize_row_q3_K(const void* x, float* y, int64_t n);
void dequantize_row_q4_K(const void* x, float* y, int64_t n);
void dequantize_row_q5_K(const void* x, float* y, int64_t n);
void dequantize_row_q6_K(const void* x, float* y, int64_t n);
void dequantize_row_iq4_nl(const void* x, float* y, int64_t n);
void dequantize_row_iq4_xs(const void* x, float* y, int64_t n);

void quantize_row_q2_K_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_q3_K_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_q4_K_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_q5_K_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_q6_K_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_iq4_nl_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_iq4_xs_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_q4_0_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_q4_1_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_q5_0_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_q5_1_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);

}  // namespace shrink::kernels::ref
