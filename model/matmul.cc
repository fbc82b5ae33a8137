// y = x W^T for one weight matrix in its storage type, the way ggml's CPU backend computes
// ggml_mul_mat: activations converted to the weight type's vec_dot_type (kernels/dot.h), then
// one dot product per (row, token).
#include <vector>

#include "kernels/dot.h"
#include "kernels/kernels.h"
#include "model/llama_model.h"

namespace shrink {

void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y) {
  const int64_t n = w.n_cols, m = w.n_rows;
  if (w.type == TypeId::F32) {
    // Float weights and activations: no conversion; ggml differs only in summation order.
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < m; ++r) {
      const float* wr = reinterpret_cast<const float*>(w.row(r));
      for (int64_t t = 0; t < n_tokens; ++t) y[t * m + r] = kernels::dot_f32(n, wr, x + t * n);
    }
    return;
  }
  if (kernels::has_vec_dot(w.type)) {
    const TypeId at = kernels::vec_dot_type(w.type);
    const size_t arow = row_size(at, n);
    std::vector<uint8_t> act(arow * static_cast<size_t>(n_tokens));
#pragma omp parallel for schedule(static) if (n_tokens > 1)
    for (int64_t t = 0; t < n_tokens; ++t)
      kernels::quantize_activation(at, x + t * n, act.data() + static_cast<size_t>(t) * arow, n);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < m; ++r) {
      const uint8_t* wr = w.row(r);
      for (int64_t t = 0; t < n_tokens; ++t)
        y[t * m + r] = kernels::vec_dot(w.type, n, wr, act.data() + static_cast<size_t>(t) * arow);
    }
    return;
  }
  // No integer dot product for this type yet: dequantize each weight row and use float
  // activations (llama.cpp would quantize the activations to Q8_K here).
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
