// Matrix products of a weight matrix in its storage type with float activations, as ggml's CPU
// backend computes ggml_mul_mat: y(n_tokens, n_rows) = x(n_tokens, n_cols) W^T, where W is
// (n_rows, n_cols) in `type`, row r at w + r * row_bytes. The activations are converted once
// per call to vec_dot_type(type) (kernels/dot.h), then every (token, row) pair is one dispatched
// vec_dot. OpenMP threads split the rows.
//
// n_tokens == 1 (GEMV, generation): memory-bound; each thread streams its share of the rows once.
// n_tokens > 1 (GEMM, prompt processing / perplexity): rows and tokens are tiled so a tile of
// weight rows (~16 KB) stays in L1/L2 while a tile of tokens' activations passes over it; every
// weight byte is read from memory once per token tile instead of once per token.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/quant_types.h"

namespace shrink::kernels {

// True if gemm() takes weights of `type` (the types with a vec_dot: has_vec_dot()).
bool can_gemm(TypeId type);

// y[t * n_rows + r] = sum_i W[r][i] * x[t * n_cols + i]. n_cols a multiple of the type's block
// size. x and y must not overlap.
void gemm(TypeId type, const void* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const float* x,
          int64_t n_tokens, float* y);

}  // namespace shrink::kernels
