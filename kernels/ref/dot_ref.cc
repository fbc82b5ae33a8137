// Scalar reference dot products: ggml-cpu/quants.c ggml_vec_dot_*_generic and ggml-cpu/vec.cpp
// ggml_vec_dot_{f32,f16,bf16} (scalar paths), transcribed. Block sums are exact integers; the
// float accumulation over blocks is in float, as ggml's generic code does; the plain-float dots
// accumulate in double (ggml_float) like ggml's scalar fallback.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/act_quant.h"
#include "kernels/dot.h"
#include "kernels/dispatch.h"
#include "kernels/fp16.h"

namespace shrink::kernels {

namespace ref {

void quantize_row_q8_1(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q8_1*>(vy);
  const int64_t nb = n / QK8_1;
  for (int64_t i = 0; i < nb; ++i) {
    float amax = 0.0f;
    for (int j = 0; j < QK8_1; ++j) amax = std::max(amax, std::fabs(x[i * QK8_1 + j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    int sum = 0;
    for (int j = 0; j < QK8_1 / 2; ++j) {
      const float v0 = x[i * QK8_1 + j] * id;
      const float v1 = x[i * QK8_1 + QK8_1 / 2 + j] * id;
      y[i].qs[j] = static_cast<int8_t>(std::roundf(v0));
      y[i].qs[QK8_1 / 2 + j] = static_cast<int8_t>(std::roundf(v1));
      sum += y[i].qs[j] + y[i].qs[QK8_1 / 2 + j];
    }
    y[i].s = fp32_to_fp16(static_cast<float>(sum) * d);
  }
}

float vec_dot_f32(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const float*>(vw);
  const auto* a = static_cast<const float*>(va);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(w[i] * a[i]);
  return static_cast<float>(sum);
}

float vec_dot_f16(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const uint16_t*>(vw);
  const auto* a = static_cast<const uint16_t*>(va);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(fp16_to_fp32(w[i]) * fp16_to_fp32(a[i]));
  return static_cast<float>(sum);
}

float vec_dot_bf16(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const uint16_t*>(vw);
  const auto* a = static_cast<const uint16_t*>(va);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(bf16_to_fp32(w[i]) * bf16_to_fp32(a[i]));
  return static_cast<float>(sum);
}

float vec_dot_q4_0_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q4_0*>(vw);
  const auto* y = static_cast<const block_q8_0*>(va);
  float sumf = 0;
  for (int64_t ib = 0; ib < n / QK8_0; ++ib) {
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < QK8_0 / 2; ++j) {
      const int v0 = (x[ib].qs[j] & 0x0F) - 8;
      const int v1 = (x[ib].qs[j] >> 4) - 8;
      sumi0 += v0 * y[ib].qs[j];
      sumi1 += v1 * y[ib].qs[j + QK8_0 / 2];
    }
    sumf += static_cast<float>(sumi0 + sumi1) * fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d);
  }
  return sumf;
}

float vec_dot_q4_1_q8_1(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q4_1*>(vw);
  const auto* y = static_cast<const block_q8_1*>(va);
  float sumf = 0;
  for (int64_t ib = 0; ib < n / QK8_1; ++ib) {
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < QK8_1 / 2; ++j) {
      sumi0 += (x[ib].qs[j] & 0x0F) * y[ib].qs[j];
      sumi1 += (x[ib].qs[j] >> 4) * y[ib].qs[j + QK8_1 / 2];
    }
    sumf += (fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d)) * static_cast<float>(sumi0 + sumi1) +
            fp16_to_fp32(x[ib].m) * fp16_to_fp32(y[ib].s);
  }
  return sumf;
}

float vec_dot_q5_0_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q5_0*>(vw);
  const auto* y = static_cast<const block_q8_0*>(va);
  float sumf = 0;
  for (int64_t ib = 0; ib < n / QK8_0; ++ib) {
    uint32_t qh;
    std::memcpy(&qh, x[ib].qh, sizeof(qh));
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < QK8_0 / 2; ++j) {
      const int xh_0 = static_cast<int>(((qh >> j) & 1u) << 4);
      const int xh_1 = static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      const int x0 = ((x[ib].qs[j] & 0x0F) | xh_0) - 16;
      const int x1 = ((x[ib].qs[j] >> 4) | xh_1) - 16;
      sumi0 += x0 * y[ib].qs[j];
      sumi1 += x1 * y[ib].qs[j + QK8_0 / 2];
    }
    sumf += (fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d)) * static_cast<float>(sumi0 + sumi1);
  }
  return sumf;
}

float vec_dot_q5_1_q8_1(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q5_1*>(vw);
  const auto* y = static_cast<const block_q8_1*>(va);
  float sumf = 0;
  for (int64_t ib = 0; ib < n / QK8_1; ++ib) {
    uint32_t qh;
    std::memcpy(&qh, x[ib].qh, sizeof(qh));
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < QK8_1 / 2; ++j) {
      const int xh_0 = static_cast<int>(((qh >> j) & 1u) << 4);
      const int xh_1 = static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      const int x0 = (x[ib].qs[j] & 0x0F) | xh_0;
      const int x1 = (x[ib].qs[j] >> 4) | xh_1;
      sumi0 += x0 * y[ib].qs[j];
      sumi1 += x1 * y[ib].qs[j + QK8_1 / 2];
    }
    sumf += (fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d)) * static_cast<float>(sumi0 + sumi1) +
            fp16_to_fp32(x[ib].m) * fp16_to_fp32(y[ib].s);
  }
  return sumf;
}

float vec_dot_q8_0_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q8_0*>(vw);
  const auto* y = static_cast<const block_q8_0*>(va);
  float sumf = 0;
  for (int64_t ib = 0; ib < n / QK8_0; ++ib) {
    int sumi = 0;
    for (int j = 0; j < QK8_0; ++j) sumi += x[ib].qs[j] * y[ib].qs[j];
    sumf += static_cast<float>(sumi) * (fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d));
  }
  return sumf;
}

float vec_dot_iq4_nl_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_iq4_nl*>(vw);
  const auto* y = static_cast<const block_q8_0*>(va);
  float sumf = 0;
  for (int64_t ib = 0; ib < n / QK4_NL; ++ib) {
    const float d = fp16_to_fp32(y[ib].d) * fp16_to_fp32(x[ib].d);
    int sumi1 = 0, sumi2 = 0;
    for (int j = 0; j < QK4_NL / 2; ++j) {
      sumi1 += y[ib].qs[j] * kValuesIq4nl[x[ib].qs[j] & 0xf];
      sumi2 += y[ib].qs[j + QK4_NL / 2] * kValuesIq4nl[x[ib].qs[j] >> 4];
    }
    sumf += d * static_cast<float>(sumi1 + sumi2);
  }
  return sumf;
}

}  // namespace ref

float dot_f32(int64_t n, const float* a, const float* b) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

TypeId vec_dot_type(TypeId weight_type) {
  switch (weight_type) {
    case TypeId::F16: return TypeId::F16;
    case TypeId::BF16: return TypeId::BF16;
    case TypeId::Q4_0:
    case TypeId::Q5_0:
    case TypeId::Q8_0:
    case TypeId::IQ4_NL: return TypeId::Q8_0;
    case TypeId::Q4_1:
    case TypeId::Q5_1: return TypeId::Q8_1;
    case TypeId::Q2_K:
    case TypeId::Q3_K:
    case TypeId::Q4_K:
    case TypeId::Q5_K:
    case TypeId::Q6_K:
    case TypeId::IQ4_XS: return TypeId::Q8_K;
    default: return TypeId::F32;
  }
}

bool has_vec_dot(TypeId weight_type) {
  switch (weight_type) {
    case TypeId::F32:
    case TypeId::F16:
    case TypeId::BF16:
    case TypeId::Q4_0:
    case TypeId::Q4_1:
    case TypeId::Q5_0:
    case TypeId::Q5_1:
    case TypeId::Q8_0:
    case TypeId::IQ4_NL:
    case TypeId::Q2_K:
    case TypeId::Q3_K:
    case TypeId::Q4_K:
    case TypeId::Q5_K:
    case TypeId::Q6_K:
    case TypeId::IQ4_XS: return true;
    default: return false;
  }
}

namespace {

// llama.cpp quantizes activations with its CPU backend's own quantize_row_q8_0/q8_1, not with
// the _ref functions, and their rounding differs by target (ggml-cpu/arch/*/quants.c):
//  x86 (AVX/AVX2/AVX-512 builds): d = amax / 127, q = round-half-even(x * (127 / amax));
//  AArch64 (NEON):                d = amax / 127, q = round-half-even(x * (1 / d));
//  others (generic _ref):         d = amax / 127, q = roundf(x * (1 / d)) (ties away from zero).
// A quant that lands on the other side of a tie moves a logit by ~1e-4 in a small model; this
// follows the llama.cpp a user of this build would run on the same machine.
#if defined(__x86_64__) || defined(__i386__)
inline float act_inv_scale(float amax, float) { return amax != 0.0f ? 127.f / amax : 0.0f; }
inline int act_round(float v) { return static_cast<int>(std::nearbyint(v)); }
#elif defined(__aarch64__)
inline float act_inv_scale(float, float d) { return d != 0.0f ? 1.0f / d : 0.0f; }
inline int act_round(float v) { return static_cast<int>(std::nearbyint(v)); }
#else
inline float act_inv_scale(float, float d) { return d != 0.0f ? 1.0f / d : 0.0f; }
inline int act_round(float v) { return static_cast<int>(std::roundf(v)); }
#endif

// Q8_0 (with_sum false) or Q8_1 (true) activation blocks; the two layouts share d and qs offsets
// except for Q8_1's extra s field.
template <class Block, bool with_sum>
void quantize_act_q8(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<Block*>(vy);
  constexpr int qk = static_cast<int>(sizeof(y->qs));
  for (int64_t i = 0; i < n / qk; ++i, x += qk) {
    float amax = 0.0f;
    for (int j = 0; j < qk; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = act_inv_scale(amax, d);
    y[i].d = fp32_to_fp16(d);
    int sum = 0;
    for (int j = 0; j < qk; ++j) {
      y[i].qs[j] = static_cast<int8_t>(act_round(x[j] * id));
      sum += y[i].qs[j];
    }
    if constexpr (with_sum) y[i].s = fp32_to_fp16(d * static_cast<float>(sum));
  }
}

// Q8_0 activations run before every product of a Q8_0/Q4_0 model (8% of a 512-token eval in
// scalar form): the AVX-512 form when the CPU has it, same bytes (test_kernels_dot).
using ActQ8_0Fn = void (*)(const float*, void*, int64_t);
ActQ8_0Fn act_q8_0() {
  static const ActQ8_0Fn chosen = [] {
#if defined(SHRINK_HAVE_X86)
    if (!force_reference() && cpu_features().avx512f) return &avx512::quantize_act_q8_0;
#endif
    return &ref::quantize_act_q8_0;
  }();
  return chosen;
}

}  // namespace

void ref::quantize_act_q8_0(const float* x, void* dst, int64_t n) { quantize_act_q8<block_q8_0, false>(x, dst, n); }

void quantize_activation(TypeId act_type, const float* x, void* dst, int64_t n) {
  switch (act_type) {
    case TypeId::F16: {
      auto* y = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
      return;
    }
    case TypeId::BF16: {
      auto* y = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_bf16(x[i]);
      return;
    }
    case TypeId::Q8_0: act_q8_0()(x, dst, n); return;
    case TypeId::Q8_1: quantize_act_q8<block_q8_1, true>(x, dst, n); return;
    case TypeId::Q8_K: ref::quantize_row_q8_K(x, dst, n); return;
    default: std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float)); return;
  }
}

float vec_dot(TypeId weight_type, int64_t n, const void* w, const void* a) {
  const DotVariant* v = dispatched_dot(weight_type);
  return v != nullptr ? v->vec_dot(n, w, a) : 0.0f;  // callers check has_vec_dot() first
}

}  // namespace shrink::kernels
