// y = x W^T for one weight matrix in its storage type, the way ggml's CPU backend computes
// ggml_mul_mat: kernels::gemm converts the activations to the weight type's vec_dot_type once
// (kernels/dot.h) and runs the dispatched dot product for every (token, row) pair, tiled and
// spread over OpenMP threads. One-token products of packable matrices read a packed copy.
#include <vector>

#include "kernels/dot.h"
#include "kernels/gemm.h"
#include "kernels/gemv_packed.h"
#include "kernels/kernels.h"
#include "model/llama_model.h"

namespace shrink {

void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y) {
  const int64_t n = w.n_cols, m = w.n_rows;
  // One token (a generation step): the packed copy, made on first use. Same bits as gemm's
  // one-token path (kernels/gemv_packed.h), read at close to memory bandwidth.
  if (n_tokens == 1 && w.packed_matches() && kernels::gemv_packed_preferred()) {
    PackedWeights& p = *w.packed;
    std::call_once(p.once, [&] { p.matrix = kernels::pack_matrix(w.type, w.data, w.row_bytes, m, n); });
    const TypeId at = kernels::vec_dot_type(w.type);
    thread_local std::vector<uint8_t> act;
    act.resize(row_size(at, n));
    kernels::quantize_activation(at, x, act.data(), n);
    kernels::gemv_packed(p.matrix, act.data(), y);
    return;
  }
  if (kernels::can_gemm(w.type)) {
    kernels::gemm(w.type, w.data, w.row_bytes, m, n, x, n_tokens, y);
    return;
  }
  // A type without a dot product (none of the types shrink writes): dequantize each weight row
  // and use float activations.
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(n));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < m; ++r) {
      kernels::dequantize_rows(w.type, w.row(r), row.data(), 1, n);
      for (int64_t t = 0; t < n_tokens; ++t) {
        const float* xt = x + t * n;
        double s = 0;
        for (int64_t i = 0; i < n; ++i) s += static_cast<double>(row[static_cast<size_t>(i)] * xt[i]);
        y[t * m + r] = static_cast<float>(s);
      }
    }
  }
}

}  // namespace shrink
