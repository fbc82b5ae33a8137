// Picks the implementation of the ggml-order ops once (AVX-512 F+DQ when the CPU has it and
// SHRINK_FORCE_REF is not set, else the scalar reference; both give the same bits).
#include "kernels/ggml_ops.h"

#include <algorithm>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/ggml_ops_impl.h"

namespace shrink::kernels {
namespace {

struct Impl {
  float (*dot_tiled)(const float*, const float*, int64_t);
  void (*scores_tiled)(const float*, int64_t, const float*, int64_t, int64_t, float*);
  void (*weighted_tiled)(const float*, int64_t, const float*, int64_t, int64_t, float*);
  float (*dot_vec_f16)(const float*, const float*, int64_t);
  float (*dot_vec_f32)(const float*, const float*, int64_t);
  void (*softmax)(float*, int64_t, float);
  void (*round_f16)(float*, int64_t);
  void (*swiglu)(float*, const float*, int64_t);
};

const Impl& impl() {
  static const Impl chosen = [] {
#if defined(SHRINK_HAVE_X86)
    const CpuFeatures& f = cpu_features();
    if (!force_reference() && f.avx512f && f.avx512dq)
      return Impl{avx512::dot_tiled, avx512::scores_tiled, avx512::weighted_tiled, avx512::dot_vec_f16, avx512::dot_vec_f32, avx512::softmax, avx512::round_f16, avx512::swiglu};
#endif
    return Impl{ref::dot_tiled, ref::scores_tiled, ref::weighted_tiled, ref::dot_vec_f16, ref::dot_vec_f32, ref::softmax, ref::round_f16, ref::swiglu};
  }();
  return chosen;
}

}  // namespace

float dot_ggml(DotOrder order, const float* a, const float* b, int64_t n) {
  switch (order) {
    case DotOrder::kTiled: return impl().dot_tiled(a, b, n);
    case DotOrder::kVecF16: return impl().dot_vec_f16(a, b, n);
    case DotOrder::kVecF32: return impl().dot_vec_f32(a, b, n);
  }
  return 0.0f;
}

void scores_ggml(DotOrder order, const float* k, int64_t k_stride, const float* q, int64_t hd, int64_t n, float* out) {
  if (order == DotOrder::kTiled) return impl().scores_tiled(k, k_stride, q, hd, n, out);
  for (int64_t j = 0; j < n; ++j) out[j] = dot_ggml(order, k + j * k_stride, q, hd);
}

int64_t padded_length(DotOrder order, int64_t n) {
  const int64_t step = order == DotOrder::kTiled ? 16 : 64;
  return (n + step - 1) / step * step;
}

void weighted_sum_ggml(const float* vt, int64_t vt_stride, const float* p, int64_t n, int64_t n_out, DotOrder order,
                       float* out) {
  const int64_t np = padded_length(order, n);
  const Impl& f = impl();
  if (order == DotOrder::kTiled) return f.weighted_tiled(vt, vt_stride, p, np, n_out, out);
  for (int64_t i = 0; i < n_out; ++i) {
    const float* row = vt + i * vt_stride;
    switch (order) {
      case DotOrder::kTiled: out[i] = f.dot_tiled(row, p, np); break;
      case DotOrder::kVecF16: out[i] = f.dot_vec_f16(row, p, np); break;
      case DotOrder::kVecF32: out[i] = f.dot_vec_f32(row, p, np); break;
    }
  }
}

void softmax_ggml(float* p, int64_t n, float scale) { impl().softmax(p, n, scale); }

void swiglu_ggml(float* gate, const float* up, int64_t n) { impl().swiglu(gate, up, n); }

void round_fp16_inplace(float* x, int64_t n) { impl().round_f16(x, n); }

}  // namespace shrink::kernels
