// `--algo best`: shrink's own search for the scales, mins and sub-block scales of every block,
// written in ggml's block layouts (the bytes are ordinary Q4_0 ... IQ4_XS blocks that llama.cpp
// reads unchanged), chosen to lower the importance-weighted squared error below ggml's choice.
//
// Objective (what "better" means here, and what the tests assert):
//   E = sum_i w_i (x_i - dequant_i)^2, summed over every weight of every row, with
//   w_i = imatrix[column of i] when an importance matrix is given, and w_i = 1 (the plain squared
//   error) when it is not.
// ggml optimizes other objectives: without an imatrix its k-quant and Q6_K searches weight each
// weight by x^2 (or |x|), and with one by imatrix * sqrt(sigma2 + x^2) for the legacy types.
// The claim shrink makes is only about E as defined above: per block, the stored block is ggml's
// own when the search finds nothing better, so E(best) <= E(ggml) block by block, and in practice
// strictly lower in total (tests/test_best_quant.cc).
//
// Every error in the search is measured AFTER the scales are rounded to fp16 and the sub-block
// scales/mins to their stored integers, with the same float products dequantization uses.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/quant_types.h"

namespace shrink {

// True for the types quantize_rows_best() searches (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K,
// IQ4_NL, IQ4_XS).
bool best_supports(TypeId type);

// Quantize n_rows rows of n_per_row floats (row-major) into dst, row_size(type, n_per_row) bytes
// per row, same layout as kernels::quantize_rows. imatrix: nullptr or n_per_row non-negative
// weights, one per column. Rows are spread over OpenMP threads. Returns the bytes written, 0 if
// the type is not supported or n_per_row is not a multiple of the block size.
size_t quantize_rows_best(TypeId type, const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                          const float* imatrix /*nullable*/);

// E above for already-quantized rows: dequantizes with kernels::dequantize_rows and sums
// w_i (x_i - dequant_i)^2 in double. imatrix nullptr -> w_i = 1.
double weighted_sq_error(TypeId type, const float* src, const void* quantized, int64_t n_rows, int64_t n_per_row,
                         const float* imatrix /*nullable*/);

}  // namespace shrink
