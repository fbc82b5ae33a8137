// Scalar reference of kernels/ggml_ops.h: the executable statement of ggml's AVX-512 float order,
// one lane at a time (std::fma where ggml fuses, plain float operations where it does not).
#include <algorithm>
#include <cmath>

#include "kernels/ggml_ops.h"
#include "kernels/ggml_ops_impl.h"
#include "kernels/fp16.h"

namespace shrink::kernels {


void rms_norm_ggml(const float* x, const float* w, int64_t n, float eps, float* y) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

void rope_cache_ggml(float pos, int64_t n_dims, float freq_base, float freq_scale, const float* factors, float* cs) {
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_dims));
  float theta = pos;
  for (int64_t i0 = 0; i0 < n_dims; i0 += 2) {
    const float ff = factors == nullptr ? 1.0f : factors[i0 / 2];
    const float t = freq_scale * (theta / ff);
    cs[i0] = std::cos(t);
    cs[i0 + 1] = std::sin(t);
    theta *= theta_scale;
  }
}

void rope_ggml(float* x, int64_t n_dims, const float* cs, bool neox) {
  for (int64_t i0 = 0; i0 < n_dims; i0 += 2) {
    const float c = cs[i0], s = cs[i0 + 1];
    const int64_t a = neox ? i0 / 2 : i0;
    const int64_t b = neox ? i0 / 2 + n_dims / 2 : i0 + 1;
    const float x0 = x[a], x1 = x[b];
    x[a] = std::fma(x0, c, -(x1 * s));
    x[b] = std::fma(x0, s, x1 * c);
  }
}

float expf_ggml(float x) {
  // Constants of ggml_v_expf: 1.5 * 2^23 (round-to-integer shifter), log2(e), ln2 split in a
  // high part exact in 17 bits and a low correction, polynomial coefficients c1..c5.
  const float r = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, r);
  const float n = z - r;
  if (std::fabs(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;  // exp underflows / overflows
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                           u, std::fma(0x1.ffffecp-1f, b, 1.0f));
  // vscalefps: j * 2^n, rounded once (n is an integer here, |n| <= 192).
  return std::ldexp(j, static_cast<int>(n));
}

float reduce16(const float* v) {
  float t8[8], t4[4];
  for (int i = 0; i < 8; ++i) t8[i] = v[i + 8] + v[i];
  for (int i = 0; i < 4; ++i) t4[i] = t8[i + 4] + t8[i];
  const float a = t4[0] + t4[2], b = t4[1] + t4[3];
  return a + b;
}

namespace ref {

float dot_tiled(const float* a, const float* b, int64_t n) {
  float acc[16] = {};
  for (int64_t c = 0; c < n; c += 16)
    for (int l = 0; l < 16; ++l) acc[l] = std::fma(a[c + l], b[c + l], acc[l]);
  return reduce16(acc);
}

void scores_tiled(const float* k, int64_t k_stride, const float* q, int64_t hd, int64_t n, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = dot_tiled(k + j * k_stride, q, hd);
}

// ggml's four 16-lane accumulators over the first np (a multiple of 64) elements, folded
// (0+2, 1+3, then 0+1) and reduced by reduce16; 0 when np is 0.
float four_accumulators(const float* a, const float* b, int64_t np) {
  if (np == 0) return 0.0f;
  float acc[4][16] = {};
  for (int64_t i = 0; i < np; i += 64)
    for (int r = 0; r < 4; ++r)
      for (int l = 0; l < 16; ++l) acc[r][l] = std::fma(a[i + 16 * r + l], b[i + 16 * r + l], acc[r][l]);
  for (int l = 0; l < 16; ++l) {
    acc[0][l] += acc[2][l];
    acc[1][l] += acc[3][l];
  }
  for (int l = 0; l < 16; ++l) acc[0][l] += acc[1][l];
  return reduce16(acc[0]);
}

void weighted_tiled(const float* vt, int64_t vt_stride, const float* p, int64_t np, int64_t n_out, float* out) {
  for (int64_t i = 0; i < n_out; ++i) out[i] = dot_tiled(vt + i * vt_stride, p, np);
}

float dot_vec_f16(const float* a, const float* b, int64_t n) {
  const int64_t np = n & ~int64_t{63};
  double sum = static_cast<double>(four_accumulators(a, b, np));
  for (int64_t i = np; i < n; ++i) sum += static_cast<double>(a[i] * b[i]);
  return static_cast<float>(sum);
}

float dot_vec_f32(const float* a, const float* b, int64_t n) {
  const int64_t np = n & ~int64_t{63};
  float sum = four_accumulators(a, b, np);
  // The tail as the shipped build compiled `sumf += x[i]*y[i]`: vectorized 16 and then 8 at a
  // time (products rounded, then added in order), and the last n % 8 elements in the scalar
  // epilogue, where the compiler contracted to a fused multiply-add.
  int64_t i = np;
  for (; n - i >= 16; i += 16)
    for (int l = 0; l < 16; ++l) sum += a[i + l] * b[i + l];
  if (n - i >= 8)
    for (int l = 0; l < 8; ++l, ++i) sum += a[i] * b[i];
  for (; i < n; ++i) sum = std::fma(a[i], b[i], sum);
  return sum;
}


void softmax(float* p, int64_t n, float scale) {
  float max = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    p[j] *= scale;
    max = std::max(max, p[j]);
  }
  double sum = 0;
  float group[16];
  for (int64_t g = 0; g < n; g += 16) {
    for (int l = 0; l < 16; ++l) {
      const int64_t j = g + l;
      group[l] = j < n ? expf_ggml(p[j] - max) : 0.0f;  // masked positions: exp(-inf) = 0
      if (j < n) p[j] = group[l];
    }
    sum += static_cast<double>(reduce16(group));
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) p[j] *= inv;
}

void swiglu(float* gate, const float* up, int64_t n) {
  const int64_t n16 = n - n % 16;  // the 16-wide groups take ggml_v_silu, the tail libm's expf
  for (int64_t i = 0; i < n16; ++i) {
    const float x = gate[i];
    gate[i] = (x / (1.0f + expf_ggml(0.0f - x))) * up[i];
  }
  for (int64_t i = n16; i < n; ++i) gate[i] = (gate[i] / (1.0f + std::exp(-gate[i]))) * up[i];
}


void round_f16(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = fp16_to_fp32(fp32_to_fp16(x[i]));
}

}  // namespace ref
}  // namespace shrink::kernels
