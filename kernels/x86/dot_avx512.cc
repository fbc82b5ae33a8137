// AVX-512 dot products (F, BW, VL, DQ, VNNI) for the types that dominate eval time: F32, F16,
// Q8_0, Q4_0, Q4_K, Q6_K (the Q4_K_M mixes keep some tensors in Q6_K). Two 32-weight blocks,
// or one 64-weight half-chunk of a super-block, per 512-bit register.
//
// vpdpbusd multiplies unsigned by signed bytes and adds groups of four straight into int32, with
// no 16-bit intermediate, so nothing saturates. Signed Q8_0 weights become unsigned by adding
// 128 (xor 0x80) and the 128 * sum(y) that adds is subtracted again: exact for every byte,
// -128 included. Unsigned quants with an offset (Q4_0: q - 8, Q6_K: q - 32) subtract the offset
// times the activation sum the same way, always the sum of the same four activations in the same
// int32 lane, so each lane stays a true partial sum of the products (zero weights give 0).
#include <immintrin.h>

// GCC 12 warns inside its own _mm512_cvtph_ps and _mm512_reduce_add_ps (the _mm512_undefined
// pass-through operand, __Y): false positives.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "kernels/dot.h"
#include "kernels/fp16.h"
#include "kernels/quant_types.h"
#include "kernels/x86/dot_x86.h"

namespace shrink::kernels::avx512 {
namespace {

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }
inline __m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1); }
inline __m512 two_floats(float lo, float hi) {
  return _mm512_insertf32x8(_mm512_zextps256_ps512(_mm256_set1_ps(lo)), _mm256_set1_ps(hi), 1);
}

// 16 bytes of packed nibbles -> 32 bytes, low nibbles (elements 0..15) first.
inline __m256i nibbles32(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0F));
}

// sum of u * s in groups of four (u unsigned, s signed bytes).
inline __m512i dp(__m512i u, __m512i s) { return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s); }

}  // namespace

float vec_dot_f32(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const float*>(vw);
  const auto* a = static_cast<const float*>(va);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(a + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(a + i + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(a + i + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(a + i + 48), s3);
  }
  for (; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, w + i), _mm512_maskz_loadu_ps(k, a + i), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

float vec_dot_f16(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const uint16_t*>(vw);
  const auto* a = static_cast<const uint16_t*>(va);
  auto ld = [](const uint16_t* p) { return _mm512_cvtph_ps(load256(p)); };
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(ld(w + i), ld(a + i), s0);
    s1 = _mm512_fmadd_ps(ld(w + i + 16), ld(a + i + 16), s1);
  }
  for (; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 wv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, w + i));
    const __m512 av = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, a + i));
    s0 = _mm512_fmadd_ps(wv, av, s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// Q8_0 and Q4_0: the integers of two blocks per 512-bit register, then one 8-lane FMA per block
// in block order and ggml's final reduction (hsum_float_8), which is exactly the float sequence
// of ggml's x86 kernels: results equal llama.cpp's bit for bit.
namespace {
inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline __m256 fma_block(float d, __m256i isum, __m256 acc) {
  return _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
}
}  // namespace

float vec_dot_q8_0_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q8_0*>(vw);
  const auto* y = static_cast<const block_q8_0*>(va);
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  __m256 acc = _mm256_setzero_ps();
  const int64_t nb = n / QK8_0;
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m512i xv = join(load256(x[i].qs), load256(x[i + 1].qs));
    const __m512i yv = join(load256(y[i].qs), load256(y[i + 1].qs));
    // (x + 128) * y - 128 * y, four consecutive bytes per int32 lane.
    const __m512i isum = _mm512_sub_epi32(dp(_mm512_xor_si512(xv, bias), yv), dp(bias, yv));
    acc = fma_block(h2f(x[i].d) * h2f(y[i].d), _mm512_castsi512_si256(isum), acc);
    acc = fma_block(h2f(x[i + 1].d) * h2f(y[i + 1].d), _mm512_extracti64x4_epi64(isum, 1), acc);
  }
  if (i < nb) {  // odd block count: the last block alone
    const __m512i xv = _mm512_zextsi256_si512(load256(x[i].qs));
    const __m512i yv = _mm512_zextsi256_si512(load256(y[i].qs));
    const __m512i isum = _mm512_sub_epi32(dp(_mm512_xor_si512(xv, bias), yv), dp(bias, yv));
    acc = fma_block(h2f(x[i].d) * h2f(y[i].d), _mm512_castsi512_si256(isum), acc);
  }
  return hsum8(acc);
}

float vec_dot_q4_0_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q4_0*>(vw);
  const auto* y = static_cast<const block_q8_0*>(va);
  const __m512i eight = _mm512_set1_epi8(8);
  __m256 acc = _mm256_setzero_ps();
  const int64_t nb = n / QK8_0;
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m512i q = join(nibbles32(x[i].qs), nibbles32(x[i + 1].qs));
    const __m512i yv = join(load256(y[i].qs), load256(y[i + 1].qs));
    const __m512i isum = _mm512_sub_epi32(dp(q, yv), dp(eight, yv));  // (q - 8) * y
    acc = fma_block(h2f(x[i].d) * h2f(y[i].d), _mm512_castsi512_si256(isum), acc);
    acc = fma_block(h2f(x[i + 1].d) * h2f(y[i + 1].d), _mm512_extracti64x4_epi64(isum, 1), acc);
  }
  if (i < nb) {
    const __m512i q = _mm512_zextsi256_si512(nibbles32(x[i].qs));
    const __m512i yv = _mm512_zextsi256_si512(load256(y[i].qs));
    const __m512i isum = _mm512_sub_epi32(dp(q, yv), dp(eight, yv));
    acc = fma_block(h2f(x[i].d) * h2f(y[i].d), _mm512_castsi512_si256(isum), acc);
  }
  return hsum8(acc);
}

// ggml's ggml_vec_dot_q4_K_q8_K as its AVX-512 (zen4) build runs it: the AVX2 code of
// arch/x86/quants.c. Per super-block, 8 int32 lanes (lane c = sum over sub-blocks j of
// scale_j * the products of elements 4c..4c+3 of sub-block j, exact) go into one 8-lane fma
// with d = d_x * d_w; the mins into 4 lanes (lane l = m_2l s_2l + m_2l+1 s_2l+1, s_j the sum of
// the sub-block's two 16-element bsums) with dmin = -d_x * dmin_w; then hsum_float_8 of the
// first plus ((a0 + a2) + (a1 + a3)) of the second. So this returns ggml's bits exactly.
float vec_dot_q4_K_q8_K(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q4_K*>(vw);
  const auto* y = static_cast<const block_q8_K*>(va);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  float acc_m[4] = {0, 0, 0, 0};
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float d = y[i].d * h2f(x[i].d);
    const float dmin = -y[i].d * h2f(x[i].dmin);
    // The eight 6-bit scales and mins (ggml's get_scale_min_k4 layout).
    const uint8_t* q = x[i].scales;
    int32_t sc[8], m[8];
    for (int j = 0; j < 4; ++j) {
      sc[j] = q[j] & 63;
      m[j] = q[j + 4] & 63;
      sc[j + 4] = (q[j + 8] & 0xF) | ((q[j] >> 6) << 4);
      m[j + 4] = (q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4);
    }
    for (int l = 0; l < 4; ++l) {
      const int32_t s0 = y[i].bsums[4 * l] + y[i].bsums[4 * l + 1], s1 = y[i].bsums[4 * l + 2] + y[i].bsums[4 * l + 3];
      acc_m[l] = __builtin_fmaf(dmin, static_cast<float>(m[2 * l] * s0 + m[2 * l + 1] * s1), acc_m[l]);
    }
    __m256i sumi = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      const __m256i qs = load256(x[i].qs + 32 * j);
      const __m256i lo = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_and_si256(qs, low4), load256(y[i].qs + 64 * j));
      const __m256i hi = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_and_si256(_mm256_srli_epi16(qs, 4), low4),
                                             load256(y[i].qs + 64 * j + 32));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_mullo_epi32(lo, _mm256_set1_epi32(sc[2 * j])),
                                                     _mm256_mullo_epi32(hi, _mm256_set1_epi32(sc[2 * j + 1]))));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  __m128 h = _mm_add_ps(_mm256_extractf128_ps(acc, 1), _mm256_castps256_ps128(acc));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h) + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]));
}

float vec_dot_q6_K_q8_K(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q6_K*>(vw);
  const auto* y = static_cast<const block_q8_K*>(va);
  const __m256i low4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n / QK_K; ++i) {
    // Weight quant = u - 32: dp(u, y) - dp(32, y) per lane of four activations. Subtracting
    // 32 * sc * bsum (16 activations) into other lanes instead left rounding residue where the
    // integers cancel: quants all at 32 (zero weights) gave dots like 2^-7.
    const __m512i thirty_two = _mm512_set1_epi8(32);
    __m512i isum = _mm512_setzero_si512();
    for (int c = 0; c < 2; ++c) {
      const __m256i a = load256(x[i].ql + 64 * c), b = load256(x[i].ql + 64 * c + 32);
      const __m256i h = load256(x[i].qh + 32 * c);
      const __m256i u0 = _mm256_or_si256(_mm256_and_si256(a, low4), _mm256_slli_epi16(_mm256_and_si256(h, three), 4));
      const __m256i u1 = _mm256_or_si256(_mm256_and_si256(b, low4),
                                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), three), 4));
      const __m256i u2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), low4),
                                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), three), 4));
      const __m256i u3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), low4),
                                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), three), 4));
      // 64 weights per register: four sub-blocks of 16, four int32 lanes each.
      const int8_t* s = x[i].scales + 8 * c;
      const __m512i sc_a = _mm512_set_epi32(s[3], s[3], s[3], s[3], s[2], s[2], s[2], s[2], s[1], s[1], s[1], s[1], s[0],
                                            s[0], s[0], s[0]);
      const __m512i sc_b = _mm512_set_epi32(s[7], s[7], s[7], s[7], s[6], s[6], s[6], s[6], s[5], s[5], s[5], s[5], s[4],
                                            s[4], s[4], s[4]);
      const __m512i ya = load512(y[i].qs + 128 * c), yb = load512(y[i].qs + 128 * c + 64);
      const __m512i pa = _mm512_sub_epi32(dp(join(u0, u1), ya), dp(thirty_two, ya));
      const __m512i pb = _mm512_sub_epi32(dp(join(u2, u3), yb), dp(thirty_two, yb));
      isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(pa, sc_a));
      isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(pb, sc_b));
    }
    acc = _mm512_fmadd_ps(_mm512_set1_ps(h2f(x[i].d) * y[i].d), _mm512_cvtepi32_ps(isum), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

}  // namespace shrink::kernels::avx512
