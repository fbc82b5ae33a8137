// Scalar reference kernels: the executable spec of every block format shrink writes.
// Never tuned; every SIMD variant is tested byte for byte against these, and these are
// tested byte for byte against ggml's own reference (ggml-quants.c, quantize_row_*_ref).
//
// All row functions take n weights (a multiple of the type's block size; 1 for F32/F16/BF16)
// and read/write unaligned memory.
#pragma once

#include <cstdint>

namespace shrink::kernels::ref {

void quantize_row_f32(const float* x, void* y, int64_t n);
void quantize_row_f16(const float* x, void* y, int64_t n);
void quantize_row_bf16(const float* x, void* y, int64_t n);
void quantize_row_q8_0(const float* x, void* y, int64_t n);
void quantize_row_q4_0(const float* x, void* y, int64_t n);
void quantize_row_q4_1(const float* x, void* y, int64_t n);
void quantize_row_q5_0(const float* x, void* y, int64_t n);
void quantize_row_q5_1(const float* x, void* y, int64_t n);

void dequantize_row_f32(const void* x, float* y, int64_t n);
void dequantize_row_f16(const void* x, float* y, int64_t n);
void dequantize_row_bf16(const void* x, float* y, int64_t n);
void dequantize_row_q8_0(const void* x, float* y, int64_t n);
void dequantize_row_q4_0(const void* x, float* y, int64_t n);
void dequantize_row_q4_1(const void* x, float* y, int64_t n);
void dequantize_row_q5_0(const void* x, float* y, int64_t n);
void dequantize_row_q5_1(const void* x, float* y, int64_t n);

}  // namespace shrink::kernels::ref
