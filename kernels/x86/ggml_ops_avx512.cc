// AVX-512 form of kernels/ggml_ops.h: the same operations, lane for lane, as the scalar
// reference (kernels/ref/ggml_ops_ref.cc) and as ggml's AVX-512 CPU build, so the three agree to
// the bit (tests/test_kernels_ggml_ops.cc). Only speed differs: one instruction per 16 lanes
// instead of a libm fma call per element.
#include <immintrin.h>

#include <cmath>

#include "kernels/ggml_ops_impl.h"

namespace shrink::kernels::avx512 {
namespace {

// exp(x) in ggml_v_expf's steps: n = round(x log2 e) with the 1.5 * 2^23 shifter, b = x - n ln2
// in two fused steps (ln2 split into a 17-bit head and a tail), p(b) a degree-5 polynomial,
// then p * 2^n by vscalefps. |n| > 192 saturates: 0 below, +inf above.
inline __m512 exp16(__m512 x) {
  const __m512 shifter = _mm512_set1_ps(0x1.8p23f);
  const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), shifter);
  const __m512 n = _mm512_sub_ps(z, shifter);
  const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                    _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
  const __mmask16 saturate = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192.0f), _CMP_GT_OQ);
  const __m512 u = _mm512_mul_ps(b, b);
  const __m512 hi = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
                                    _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f)));
  const __m512 j = _mm512_fmadd_ps(hi, u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
  const __m512 r = _mm512_scalef_ps(j, n);
  if (saturate == 0) return r;
  const __mmask16 low = _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ);
  const __m512 limit = _mm512_mask_blend_ps(low, _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
  return _mm512_mask_blend_ps(saturate, r, limit);
}

// Four accumulators over 64-element steps, folded (0+2, 1+3, then 0+1).
inline __m512 four_accumulators(const float* a, const float* b, int64_t np) {
  __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int64_t i = 0; i < np; i += 64)
    for (int r = 0; r < 4; ++r)
      s[r] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16 * r), _mm512_loadu_ps(b + i + 16 * r), s[r]);
  s[0] = _mm512_add_ps(s[0], s[2]);
  s[1] = _mm512_add_ps(s[1], s[3]);
  return _mm512_add_ps(s[0], s[1]);
}

}  // namespace

float dot_tiled(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t c = 0; c < n; c += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + c), _mm512_loadu_ps(b + c), acc);
  return _mm512_reduce_add_ps(acc);
}

// reduce16 of 16 vectors at once, each in _mm512_reduce_add_ps's own tree (halves of 8, then 4,
// then lanes 0+2 and 1+3, then those two), so every result has the bits of one reduce per vector:
// the shuffles only move lanes, and each addition pairs the same two partial sums.
inline void reduce16_x16(const __m512 (&v)[16], float* out) {
  __m512 h8[8];  // vectors 2m and 2m+1: lanes 0-7 = v[2m][i] + v[2m][i+8], lanes 8-15 the same for v[2m+1]
  for (int m = 0; m < 8; ++m) {
    const __m512 lo = _mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 hi = _mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], _MM_SHUFFLE(3, 2, 3, 2));
    h8[m] = _mm512_add_ps(hi, lo);
  }
  __m512 h4[4];  // 128-bit lane g holds t4 of vector 4m + g: t8[i] + t8[i+4]
  for (int m = 0; m < 4; ++m) {
    const __m512 lo = _mm512_shuffle_f32x4(h8[2 * m], h8[2 * m + 1], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 hi = _mm512_shuffle_f32x4(h8[2 * m], h8[2 * m + 1], _MM_SHUFFLE(3, 1, 3, 1));
    h4[m] = _mm512_add_ps(hi, lo);
  }
  alignas(64) float lanes[64];
  for (int m = 0; m < 4; ++m) {
    const __m512 u = _mm512_add_ps(h4[m], _mm512_permute_ps(h4[m], _MM_SHUFFLE(1, 0, 3, 2)));  // t4[0]+t4[2], t4[1]+t4[3]
    const __m512 r = _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(2, 3, 0, 1)));          // lane 0: the two summed
    _mm512_store_ps(lanes + 16 * m, r);
  }
  for (int m = 0; m < 4; ++m)
    for (int g = 0; g < 4; ++g) out[4 * m + g] = lanes[16 * m + 4 * g];
}

// Sixteen keys per pass: one accumulator each (dot_tiled's order), q loaded once per chunk, and
// the sixteen reductions done together.
void scores_tiled(const float* k, int64_t k_stride, const float* q, int64_t hd, int64_t n, float* out) {
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const float* kj = k + j * k_stride;
    __m512 acc[16];
    for (int r = 0; r < 16; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t c = 0; c < hd; c += 16) {
      const __m512 qv = _mm512_loadu_ps(q + c);
      for (int r = 0; r < 16; ++r) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(kj + r * k_stride + c), qv, acc[r]);
    }
    reduce16_x16(acc, out + j);
  }
  for (; j < n; ++j) out[j] = dot_tiled(k + j * k_stride, q, hd);
}

// Four value rows per pass share each load of the weights; each output keeps dot_tiled's bits.
void weighted_tiled(const float* vt, int64_t vt_stride, const float* p, int64_t np, int64_t n_out, float* out) {
  int64_t i = 0;
  for (; i + 4 <= n_out; i += 4) {
    const float* v0 = vt + i * vt_stride;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    for (int64_t c = 0; c < np; c += 16) {
      const __m512 pv = _mm512_loadu_ps(p + c);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(v0 + c), pv, a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(v0 + vt_stride + c), pv, a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(v0 + 2 * vt_stride + c), pv, a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(v0 + 3 * vt_stride + c), pv, a3);
    }
    out[i] = _mm512_reduce_add_ps(a0);
    out[i + 1] = _mm512_reduce_add_ps(a1);
    out[i + 2] = _mm512_reduce_add_ps(a2);
    out[i + 3] = _mm512_reduce_add_ps(a3);
  }
  for (; i < n_out; ++i) out[i] = dot_tiled(vt + i * vt_stride, p, np);
}

float dot_vec_f16(const float* a, const float* b, int64_t n) {
  const int64_t np = n & ~int64_t{63};
  double sum = np > 0 ? static_cast<double>(_mm512_reduce_add_ps(four_accumulators(a, b, np))) : 0.0;
  for (int64_t i = np; i < n; ++i) sum += static_cast<double>(a[i] * b[i]);
  return static_cast<float>(sum);
}

float dot_vec_f32(const float* a, const float* b, int64_t n) {
  const int64_t np = n & ~int64_t{63};
  float sum = np > 0 ? _mm512_reduce_add_ps(four_accumulators(a, b, np)) : 0.0f;
  // Tail: rounded products added in order up to the last multiple of 8, then fused (see the
  // reference for why).
  const int64_t plain_end = n - (n - np) % 8;
  for (int64_t i = np; i < plain_end; ++i) sum += a[i] * b[i];
  for (int64_t i = plain_end; i < n; ++i) sum = std::fma(a[i], b[i], sum);
  return sum;
}

void softmax(float* p, int64_t n, float scale) {
  const __m512 vscale = _mm512_set1_ps(scale);
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - j)) - 1);
    const __m512 w = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p + j), vscale);
    _mm512_mask_storeu_ps(p + j, m, w);
    vmax = _mm512_mask_max_ps(vmax, m, vmax, w);
  }
  const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
  double sum = 0;
  for (int64_t j = 0; j < n; j += 16) {
    // Lanes past n are masked positions: exp(-inf) = 0, as in llama.cpp's padded rows.
    const __mmask16 m = n - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - j)) - 1);
    const __m512 w = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, p + j);
    const __m512 e = exp16(_mm512_sub_ps(w, max));
    _mm512_mask_storeu_ps(p + j, m, e);
    sum += static_cast<double>(_mm512_reduce_add_ps(e));
  }
  const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / sum));
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - j)) - 1);
    _mm512_mask_storeu_ps(p + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p + j), inv));
  }
}

// Through F16 and back with vcvtps2ph: round to nearest even, the reference's rounding. Only a
// NaN could come back with other bits (the hardware keeps its payload, ggml and the reference
// make it sign | 0x7E00), so a block holding one takes the reference.
void round_f16(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    if (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) != 0) {
      ref::round_f16(x + i, 16);
      continue;
    }
    _mm512_storeu_ps(x + i, _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
  }
  ref::round_f16(x + i, n - i);
}

void swiglu(float* gate, const float* up, int64_t n) {
  const int64_t n16 = n - n % 16;
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n16; i += 16) {
    const __m512 x = _mm512_loadu_ps(gate + i);
    const __m512 silu = _mm512_div_ps(x, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
    _mm512_storeu_ps(gate + i, _mm512_mul_ps(silu, _mm512_loadu_ps(up + i)));
  }
  for (int64_t i = n16; i < n; ++i) gate[i] = (gate[i] / (1.0f + std::exp(-gate[i]))) * up[i];
}

}  // namespace shrink::kernels::avx512
