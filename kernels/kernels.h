// Public entry points of kernels/: quantize and dequantize whole rows of any type shrink
// writes. The variant (scalar reference, AVX2, AVX-512, NEON) is chosen once per process
// by dispatch (kernels/dispatch.h); SHRINK_FORCE_REF=1 in the environment forces the
// scalar reference for debugging.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/quant_types.h"

namespace shrink::kernels {

// True if quantize_rows() can produce `type` (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS).
bool can_quantize(TypeId type);
// True if dequantize_rows() can read `type`.
bool can_dequantize(TypeId type);
// True if quantize_rows() uses an importance matrix for `type` (Q4_0..Q5_1, the k-quants,
// IQ4_NL, IQ4_XS); for the others ggml ignores it, and so does shrink.
bool uses_imatrix(TypeId type);

// Quantize n_rows rows of n_per_row floats (row-major) into dst, row_size(type, n_per_row)
// bytes per row. n_per_row must be a multiple of the type's block size. Rows are spread
// over OpenMP threads. Returns the bytes written (0 if the type or shape is refused).
// Byte-identical to ggml_quantize_chunk(type, src, dst, 0, n_rows, n_per_row, imatrix).
// imatrix: nullptr, or n_per_row non-negative importance weights, one per column (the same
// for every row), e.g. the mean squared activation of that input channel.
size_t quantize_rows(TypeId type, const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                     const float* imatrix = nullptr);

// The inverse: n_rows rows of `type` back to floats.
void dequantize_rows(TypeId type, const void* src, float* dst, int64_t n_rows, int64_t n_per_row);

// Name of the instruction set the dispatched kernels use ("avx512", "avx2", "neon", "ref").
const char* active_isa();

}  // namespace shrink::kernels
