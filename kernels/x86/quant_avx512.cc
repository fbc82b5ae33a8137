// AVX-512 (F+BW+VL+DQ) row kernels: one 32-weight block in two 16-float registers, vpmovdb for
// the int32 -> byte truncation, mask registers for the first-occurrence lookups and for the
// F16/BF16 tails. The arithmetic, and why it equals the reference byte for byte, is the same as
// in quant_avx2.cc (see the list at the top there); the only differences are the instructions.
// No templates or external-linkage inline functions (see quant_avx2.cc).
#include "kernels/x86/quant_avx512.h"

#include <immintrin.h>

// GCC 12 warns inside its own _mm512_reduce_{max,min}_ps (a false positive on __Y).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <cstring>

#include "kernels/fp16.h"
#include "kernels/quant_types.h"

namespace shrink::kernels::avx512 {
namespace {

constexpr float kBelowHalf = 0x1.fffffep-2f;  // 0.5 - 2^-25, the float just below 0.5

struct Block32 {
  __m512 lo, hi;  // weights 0-15, 16-31
};

inline Block32 load32(const float* x) { return {_mm512_loadu_ps(x), _mm512_loadu_ps(x + 16)}; }

inline uint32_t eq_mask(__m512 lo, __m512 hi, float value) {
  const __m512 t = _mm512_set1_ps(value);
  return static_cast<uint32_t>(_mm512_cmp_ps_mask(lo, t, _CMP_EQ_OQ)) |
         (static_cast<uint32_t>(_mm512_cmp_ps_mask(hi, t, _CMP_EQ_OQ)) << 16);
}

inline uint16_t to_fp16(float f) {
  if (f != f) return fp32_to_fp16(f);  // NaN: ggml's sign|0x7E00 rather than F16C's payload
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}

inline float from_fp16(uint16_t h) { return _cvtsh_ss(h); }

inline float signed_absmax(const float* x, const Block32& b) {
  const __m512 alo = _mm512_abs_ps(b.lo), ahi = _mm512_abs_ps(b.hi);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(alo, ahi));
  if (amax == 0.0f) return 0.0f;  // the reference's starting value, +0.0f
  const uint32_t m = eq_mask(alo, ahi, amax);
  return m ? x[__builtin_ctz(m)] : 0.0f;
}

inline void min_max(const float* x, const Block32& b, float* min_out, float* max_out) {
  float mn = _mm512_reduce_min_ps(_mm512_min_ps(b.lo, b.hi));
  float mx = _mm512_reduce_max_ps(_mm512_max_ps(b.lo, b.hi));
  if (mn == 0.0f) {
    const uint32_t m = eq_mask(b.lo, b.hi, mn);
    if (m) mn = x[__builtin_ctz(m)];
  }
  if (mx == 0.0f) {
    const uint32_t m = eq_mask(b.lo, b.hi, mx);
    if (m) mx = x[__builtin_ctz(m)];
  }
  *min_out = mn;
  *max_out = mx;
}

// Low bytes of trunc((x - sub) * id + add): weights 0-15 in *lo, 16-31 in *hi.
inline void trunc_bytes(const Block32& b, bool subtract, float sub, float id, float add, __m128i* lo,
                        __m128i* hi) {
  const __m512 vs = _mm512_set1_ps(sub), vi = _mm512_set1_ps(id), va = _mm512_set1_ps(add);
  const __m512 s0 = subtract ? _mm512_sub_ps(b.lo, vs) : b.lo;
  const __m512 s1 = subtract ? _mm512_sub_ps(b.hi, vs) : b.hi;
  *lo = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(s0, vi), va)));
  *hi = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(s1, vi), va)));
}

inline __m128i nibbles(__m128i lo, __m128i hi) {
  return _mm_or_si128(lo, _mm_and_si128(_mm_slli_epi16(hi, 4), _mm_set1_epi8(static_cast<char>(0xF0))));
}

inline uint32_t fifth_bits(__m128i lo, __m128i hi) {
  const __m128i bit4 = _mm_set1_epi8(0x10);
  return static_cast<uint32_t>(_mm_test_epi8_mask(lo, bit4)) |
         (static_cast<uint32_t>(_mm_test_epi8_mask(hi, bit4)) << 16);
}

// 16 signed/unsigned bytes -> 16 floats q*d (+m).
inline void store16(__m512i q32, float d, float m, bool add_m, float* y) {
  __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(q32), _mm512_set1_ps(d));
  if (add_m) f = _mm512_add_ps(f, _mm512_set1_ps(m));
  _mm512_storeu_ps(y, f);
}

}  // namespace

namespace {
// Masked loads and stores only for the tail: on some AVX-512 CPUs (Zen 4) a masked store costs
// several times a plain one even with a full mask.
inline __mmask16 tail_mask(int64_t left) { return static_cast<__mmask16>((1u << left) - 1u); }

inline __m256i f16_lanes(__m512 v) {
  __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  if (nan) {  // ggml's NaN: sign | 0x7E00
    const __m512i u = _mm512_castps_si512(v);
    const __m512i fix = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x8000)),
                                        _mm512_set1_epi32(0x7E00));
    h = _mm256_mask_blend_epi16(nan, h, _mm512_cvtepi32_epi16(fix));
  }
  return h;
}

// See fp32_to_bf16: round to nearest even, NaN forced quiet.
inline __m256i bf16_lanes(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i hi = _mm512_srli_epi32(u, 16);
  const __m512i r = _mm512_srli_epi32(
      _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), _mm512_and_si512(hi, _mm512_set1_epi32(1))),
      16);
  const __mmask16 nan =
      _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
  return _mm512_cvtepi32_epi16(_mm512_mask_or_epi32(r, nan, hi, _mm512_set1_epi32(0x40)));
}
}  // namespace

void quantize_row_f16(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint16_t*>(y);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), f16_lanes(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 k = tail_mask(n - i);
    _mm256_mask_storeu_epi16(out + i, k, f16_lanes(_mm512_maskz_loadu_ps(k, x + i)));
  }
}

void dequantize_row_f16(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint16_t*>(x);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i))));
  if (i < n) {
    const __mmask16 k = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, k, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, in + i)));
  }
}

void quantize_row_bf16(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint16_t*>(y);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), bf16_lanes(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 k = tail_mask(n - i);
    _mm256_mask_storeu_epi16(out + i, k, bf16_lanes(_mm512_maskz_loadu_ps(k, x + i)));
  }
}

void dequantize_row_bf16(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint16_t*>(x);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i)));
    _mm512_storeu_ps(y + i, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
  }
  if (i < n) {
    const __mmask16 k = tail_mask(n - i);
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, in + i));
    _mm512_mask_storeu_ps(y + i, k, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
  }
}

void quantize_row_q8_0(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  const int64_t nb = n / QK8_0;
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  const __m512 below_half = _mm512_set1_ps(kBelowHalf);
  for (int64_t i = 0; i < nb; ++i, x += QK8_0, out += sizeof(block_q8_0)) {
    const Block32 b = load32(x);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(b.lo), _mm512_abs_ps(b.hi)));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = to_fp16(d);
    std::memcpy(out, &dh, 2);
    const __m512 vid = _mm512_set1_ps(id);
    const __m512 v0 = _mm512_mul_ps(b.lo, vid), v1 = _mm512_mul_ps(b.hi, vid);
    // v + copysign(0.5 - 2^-25, v), then truncate: roundf.
    const __m512 h0 = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(v0), sign), _mm512_castps_si512(below_half)));
    const __m512 h1 = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(v1), sign), _mm512_castps_si512(below_half)));
    const __m128i q0 = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(_mm512_add_ps(v0, h0)));
    const __m128i q1 = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(_mm512_add_ps(v1, h1)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2), q0);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 18), q1);
  }
}

void quantize_row_q4_0(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  const int64_t nb = n / QK4_0;
  const __m128i fifteen = _mm_set1_epi8(15);
  for (int64_t i = 0; i < nb; ++i, x += QK4_0, out += sizeof(block_q4_0)) {
    const Block32 b = load32(x);
    const float max = signed_absmax(x, b);
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = to_fp16(d);
    std::memcpy(out, &dh, 2);
    __m128i lo, hi;
    trunc_bytes(b, false, 0.0f, id, 8.5f, &lo, &hi);
    lo = _mm_min_epi8(lo, fifteen);
    hi = _mm_min_epi8(hi, fifteen);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2), nibbles(lo, hi));
  }
}

void quantize_row_q4_1(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  const int64_t nb = n / QK4_1;
  const __m128i fifteen = _mm_set1_epi8(15);
  for (int64_t i = 0; i < nb; ++i, x += QK4_1, out += sizeof(block_q4_1)) {
    const Block32 b = load32(x);
    float min, max;
    min_max(x, b, &min, &max);
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t h[2] = {to_fp16(d), to_fp16(min)};
    std::memcpy(out, h, 4);
    __m128i lo, hi;
    trunc_bytes(b, true, min, id, 0.5f, &lo, &hi);
    lo = _mm_min_epi8(lo, fifteen);
    hi = _mm_min_epi8(hi, fifteen);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 4), nibbles(lo, hi));
  }
}

void quantize_row_q5_0(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  const int64_t nb = n / QK5_0;
  const __m128i thirty_one = _mm_set1_epi8(31), low4 = _mm_set1_epi8(0x0F);
  for (int64_t i = 0; i < nb; ++i, x += QK5_0, out += sizeof(block_q5_0)) {
    const Block32 b = load32(x);
    const float max = signed_absmax(x, b);
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = to_fp16(d);
    std::memcpy(out, &dh, 2);
    __m128i lo, hi;
    trunc_bytes(b, false, 0.0f, id, 16.5f, &lo, &hi);
    lo = _mm_min_epi8(lo, thirty_one);
    hi = _mm_min_epi8(hi, thirty_one);
    const uint32_t qh = fifth_bits(lo, hi);
    std::memcpy(out + 2, &qh, 4);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 6), nibbles(_mm_and_si128(lo, low4), hi));
  }
}

void quantize_row_q5_1(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  const int64_t nb = n / QK5_1;
  const __m128i low4 = _mm_set1_epi8(0x0F);
  for (int64_t i = 0; i < nb; ++i, x += QK5_1, out += sizeof(block_q5_1)) {
    const Block32 b = load32(x);
    float min, max;
    min_max(x, b, &min, &max);
    const float d = (max - min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t h[2] = {to_fp16(d), to_fp16(min)};
    std::memcpy(out, h, 4);
    __m128i lo, hi;
    trunc_bytes(b, true, min, id, 0.5f, &lo, &hi);  // no clamp, as ggml
    const uint32_t qh = fifth_bits(lo, hi);
    std::memcpy(out + 4, &qh, 4);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 8), nibbles(_mm_and_si128(lo, low4), hi));
  }
}

void dequantize_row_q8_0(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK8_0;
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q8_0), y += QK8_0) {
    uint16_t dh;
    std::memcpy(&dh, in, 2);
    const float d = from_fp16(dh);
    store16(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2))), d, 0.0f, false, y);
    store16(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 18))), d, 0.0f, false,
            y + 16);
  }
}

namespace {
// Q4/Q5 payload: low nibbles are weights 0-15, high nibbles 16-31, as int32 lanes.
inline void nibble_lanes(const uint8_t* qs, __m512i* lo, __m512i* hi) {
  const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  const __m512i m = _mm512_set1_epi32(0x0F);
  *lo = _mm512_and_si512(b, m);
  *hi = _mm512_srli_epi32(b, 4);
}
// qh bit j -> +16 on weight j.
inline void add_fifth_bits(const uint8_t* qh_bytes, __m512i* lo, __m512i* hi) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  const __m512i sixteen = _mm512_set1_epi32(16);
  *lo = _mm512_mask_or_epi32(*lo, static_cast<__mmask16>(qh & 0xFFFFu), *lo, sixteen);
  *hi = _mm512_mask_or_epi32(*hi, static_cast<__mmask16>(qh >> 16), *hi, sixteen);
}
}  // namespace

void dequantize_row_q4_0(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK4_0;
  const __m512i eight = _mm512_set1_epi32(8);
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q4_0), y += QK4_0) {
    uint16_t dh;
    std::memcpy(&dh, in, 2);
    const float d = from_fp16(dh);
    __m512i lo, hi;
    nibble_lanes(in + 2, &lo, &hi);
    store16(_mm512_sub_epi32(lo, eight), d, 0.0f, false, y);
    store16(_mm512_sub_epi32(hi, eight), d, 0.0f, false, y + 16);
  }
}

void dequantize_row_q4_1(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK4_1;
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q4_1), y += QK4_1) {
    uint16_t h[2];
    std::memcpy(h, in, 4);
    const float d = from_fp16(h[0]), m = from_fp16(h[1]);
    __m512i lo, hi;
    nibble_lanes(in + 4, &lo, &hi);
    store16(lo, d, m, true, y);
    store16(hi, d, m, true, y + 16);
  }
}

void dequantize_row_q5_0(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK5_0;
  const __m512i sixteen = _mm512_set1_epi32(16);
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q5_0), y += QK5_0) {
    uint16_t dh;
    std::memcpy(&dh, in, 2);
    const float d = from_fp16(dh);
    __m512i lo, hi;
    nibble_lanes(in + 6, &lo, &hi);
    add_fifth_bits(in + 2, &lo, &hi);
    store16(_mm512_sub_epi32(lo, sixteen), d, 0.0f, false, y);
    store16(_mm512_sub_epi32(hi, sixteen), d, 0.0f, false, y + 16);
  }
}

void dequantize_row_q5_1(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK5_1;
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q5_1), y += QK5_1) {
    uint16_t h[2];
    std::memcpy(h, in, 4);
    const float d = from_fp16(h[0]), m = from_fp16(h[1]);
    __m512i lo, hi;
    nibble_lanes(in + 8, &lo, &hi);
    add_fifth_bits(in + 4, &lo, &hi);
    store16(lo, d, m, true, y);
    store16(hi, d, m, true, y + 16);
  }
}

}  // namespace shrink::kernels::avx512
