// k-quant (Q2_K..Q6_K) and IQ4_NL/IQ4_XS row kernels compiled with the avx512 flags (CMake sets
// them by file name). Call only when dispatch (kernels/dispatch.h) says the CPU has the
// features; same contract and the same bytes and float bits as kernels/ref/kquant_ref.h.
#pragma once

#include <cstdint>

namespace shrink::kernels::avx512 {

void quantize_row_q2_K(const float* x, void* y, int64_t n);
void quantize_row_q3_K(const float* x, void* y, int64_t n);
void quantize_row_q4_K(const float* x, void* y, int64_t n);
void quantize_row_q5_K(const float* x, void* y, int64_t n);
void quantize_row_q6_K(const float* x, void* y, int64_t n);
void quantize_row_iq4_nl(const float* x, void* y, int64_t n);
void quantize_row_iq4_xs(const float* x, void* y, int64_t n);

void quantize_row_q2_K_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_q3_K_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_q4_K_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_q5_K_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_q6_K_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_iq4_nl_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);
void quantize_row_iq4_xs_imatrix(const float* x, void* y, int64_t n_per_row, const float* imatrix);

void dequantize_row_q2_K(const void* x, float* y, int64_t n);
void dequantize_row_q3_K(const void* x, float* y, int64_t n);
void dequantize_row_q4_K(const void* x, float* y, int64_t n);
void dequantize_row_q5_K(const void* x, float* y, int64_t n);
void dequantize_row_q6_K(const void* x, float* y, int64_t n);
void dequantize_row_iq4_nl(const void* x, float* y, int64_t n);
void dequantize_row_iq4_xs(const void* x, float* y, int64_t n);

}  // namespace shrink::kernels::avx512
