// AVX2 (+FMA, F16C) row kernels: one 32-weight block per iteration in four 8-float registers.
// Every result must equal kernels/ref/quant_ref.cc byte for byte; the comments there list the
// ggml facts, the ones here say how each is kept in vector form:
//  - reductions (max |x|, min, max) are order-free for finite values except for the sign of a
//    zero and for which of +a/-a wins; both are settled by looking up the FIRST element equal
//    to the reduced value, as the sequential loop would find it;
//  - d and 1/d are computed with scalar IEEE division, exactly as the reference;
//  - float -> int uses cvttps2dq (truncation, INT32_MIN when out of range) and keeps the low
//    byte (and 0xFF + unsigned packs), which is what the reference's cvtt_i32() spells out;
//  - roundf (ties away from zero) = truncate(v + copysign(0.5 - 2^-25, v)): adding the float
//    just below 0.5 never rounds up a value below a tie and always carries a tie over it;
//  - fp16 of d uses F16C's vcvtps2ph with round-to-nearest-even, identical to ggml's conversion
//    for every non-NaN float (tests/test_kernels_fp16.cc), with the NaN case done in scalar;
//  - no FMA: the project builds with -ffp-contract=off, so mul then add round twice as in ggml.
// Nothing here uses templates or inline functions with external linkage, so no AVX2 code can be
// merged by the linker into the scalar path.
#include "kernels/x86/quant_avx2.h"

#include <immintrin.h>

#include <cstring>

#include "kernels/fp16.h"
#include "kernels/quant_types.h"

namespace shrink::kernels::avx2 {
namespace {

constexpr float kBelowHalf = 0x1.fffffep-2f;  // 0.5 - 2^-25, the float just below 0.5

struct Block32 {
  __m256 v[4];  // weights 0-7, 8-15, 16-23, 24-31
};

inline Block32 load32(const float* x) {
  return {{_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8), _mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24)}};
}

inline __m256 abs_ps(__m256 x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline float hmin(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// Bit i set where lane i of the four vectors equals `value` (32 lanes, block order).
inline uint32_t eq_mask(const __m256 (&v)[4], float value) {
  const __m256 t = _mm256_set1_ps(value);
  uint32_t m = 0;
  for (int k = 0; k < 4; ++k)
    m |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(v[k], t, _CMP_EQ_OQ))) << (8 * k);
  return m;
}

// The first element of x equal to `value` (only differs from `value` for a zero's sign).
inline float first_equal(const float* x, const __m256 (&v)[4], float value) {
  const uint32_t m = eq_mask(v, value);
  return m ? x[__builtin_ctz(m)] : value;
}

inline uint16_t to_fp16(float f) {
  if (f != f) return fp32_to_fp16(f);  // NaN: ggml's sign|0x7E00 rather than F16C's payload
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}

inline float from_fp16(uint16_t h) { return _cvtsh_ss(h); }

// Low bytes of 32 int32 lanes, in lane order.
inline __m256i pack_low_bytes(__m256i t0, __m256i t1, __m256i t2, __m256i t3) {
  const __m256i ff = _mm256_set1_epi32(0xFF);
  const __m256i a = _mm256_packus_epi32(_mm256_and_si256(t0, ff), _mm256_and_si256(t1, ff));
  const __m256i b = _mm256_packus_epi32(_mm256_and_si256(t2, ff), _mm256_and_si256(t3, ff));
  // packs interleave the two 128-bit lanes: dwords come out as 0,2,4,6,1,3,5,7 groups of four.
  return _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// Bytes q = low_byte(trunc(x * id + add)) for the 32 weights.
inline __m256i scaled_trunc_bytes(const Block32& b, float id, float add) {
  const __m256 vi = _mm256_set1_ps(id), va = _mm256_set1_ps(add);
  __m256i t[4];
  for (int k = 0; k < 4; ++k) t[k] = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(b.v[k], vi), va));
  return pack_low_bytes(t[0], t[1], t[2], t[3]);
}

// Nibble packing: byte j = q[j] | (q[j + 16] << 4), keeping the bytes the reference keeps.
inline __m128i nibbles_or(__m256i q) {
  const __m128i lo = _mm256_castsi256_si128(q);
  const __m128i hi = _mm256_extracti128_si256(q, 1);
  return _mm_or_si128(lo, _mm_and_si128(_mm_slli_epi16(hi, 4), _mm_set1_epi8(static_cast<char>(0xF0))));
}
inline __m128i nibbles_masked(__m256i q) {
  const __m128i lo = _mm256_castsi256_si128(q);
  return nibbles_or(_mm256_set_m128i(_mm256_extracti128_si256(q, 1), _mm_and_si128(lo, _mm_set1_epi8(0x0F))));
}
// Bit 4 of each of the 32 bytes, weight j in bit j.
inline uint32_t fifth_bits(__m256i q) {
  return static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(q, 3)));
}

inline float signed_absmax(const float* x, const Block32& b) {
  const __m256 a[4] = {abs_ps(b.v[0]), abs_ps(b.v[1]), abs_ps(b.v[2]), abs_ps(b.v[3])};
  const float amax = hmax(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));
  if (amax == 0.0f) return 0.0f;  // the reference's starting value, +0.0f
  const uint32_t m = eq_mask(a, amax);
  return m ? x[__builtin_ctz(m)] : 0.0f;
}

inline void min_max(const float* x, const Block32& b, float* min_out, float* max_out) {
  float mn = hmin(_mm256_min_ps(_mm256_min_ps(b.v[0], b.v[1]), _mm256_min_ps(b.v[2], b.v[3])));
  float mx = hmax(_mm256_max_ps(_mm256_max_ps(b.v[0], b.v[1]), _mm256_max_ps(b.v[2], b.v[3])));
  if (mn == 0.0f) mn = first_equal(x, b.v, mn);
  if (mx == 0.0f) mx = first_equal(x, b.v, mx);
  *min_out = mn;
  *max_out = mx;
}

// 32 bytes -> 32 floats q*d (+ m when add_m), in block order.
inline void store_scaled(const __m256i q, float d, float m, bool add_m, float* y) {
  const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
  for (int k = 0; k < 4; ++k) {
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[k])), vd);
    if (add_m) f = _mm256_add_ps(f, vm);
    _mm256_storeu_ps(y + 8 * k, f);
  }
}

// 16 bytes of nibbles -> 32 bytes: low nibbles (weights 0-15) then high nibbles (16-31).
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

// qh bit j -> 0x10 in byte j.
inline __m256i expand_fifth_bits(const uint8_t* qh_bytes) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(qh)), shuf);
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

}  // namespace

void quantize_row_f16(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint16_t*>(y);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0) {
      for (int k = 0; k < 8; ++k) {
        const uint16_t h = fp32_to_fp16(x[i + k]);
        std::memcpy(out + i + k, &h, 2);
      }
      continue;
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) {
    const uint16_t h = fp32_to_fp16(x[i]);
    std::memcpy(out + i, &h, 2);
  }
}

void dequantize_row_f16(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint16_t*>(x);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, in + i, 2);
    y[i] = fp16_to_fp32(h);
  }
}

namespace {
// Eight fp32 bit patterns -> bf16 in the low 16 bits of each lane (see fp32_to_bf16).
inline __m256i bf16_lanes(__m256i u) {
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF)),
                                         _mm256_set1_epi32(0x7F800000));
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  return _mm256_blendv_epi8(rounded, quiet, nan);
}
}  // namespace

void quantize_row_bf16(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint16_t*>(y);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i a = bf16_lanes(_mm256_castps_si256(_mm256_loadu_ps(x + i)));
    const __m256i b = bf16_lanes(_mm256_castps_si256(_mm256_loadu_ps(x + i + 8)));
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);  // undo lane interleave
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), p);
  }
  for (; i < n; ++i) {
    const uint16_t h = fp32_to_bf16(x[i]);
    std::memcpy(out + i, &h, 2);
  }
}

void dequantize_row_bf16(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint16_t*>(x);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i)));
    _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
  }
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, in + i, 2);
    y[i] = bf16_to_fp32(h);
  }
}

void quantize_row_q8_0(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  const int64_t nb = n / QK8_0;
  const __m256 sign = _mm256_set1_ps(-0.0f), below_half = _mm256_set1_ps(kBelowHalf);
  for (int64_t i = 0; i < nb; ++i, x += QK8_0, out += sizeof(block_q8_0)) {
    const Block32 b = load32(x);
    const __m256 m01 = _mm256_max_ps(abs_ps(b.v[0]), abs_ps(b.v[1]));
    const __m256 m23 = _mm256_max_ps(abs_ps(b.v[2]), abs_ps(b.v[3]));
    const float amax = hmax(_mm256_max_ps(m01, m23));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = to_fp16(d);
    std::memcpy(out, &dh, 2);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i t[4];
    for (int k = 0; k < 4; ++k) {
      const __m256 v = _mm256_mul_ps(b.v[k], vid);
      const __m256 r = _mm256_add_ps(v, _mm256_or_ps(_mm256_and_ps(v, sign), below_half));
      t[k] = _mm256_cvttps_epi32(r);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2), pack_low_bytes(t[0], t[1], t[2], t[3]));
  }
}

void quantize_row_q4_0(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  const int64_t nb = n / QK4_0;
  for (int64_t i = 0; i < nb; ++i, x += QK4_0, out += sizeof(block_q4_0)) {
    const Block32 b = load32(x);
    const float max = signed_absmax(x, b);
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = to_fp16(d);
    std::memcpy(out, &dh, 2);
    const __m256i q = _mm256_min_epi8(scaled_trunc_bytes(b, id, 8.5f), _mm256_set1_epi8(15));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2), nibbles_or(q));
  }
}

void quantize_row_q4_1(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  const int64_t nb = n / QK4_1;
  for (int64_t i = 0; i < nb; ++i, x += QK4_1, out += sizeof(block_q4_1)) {
    const Block32 b = load32(x);
    float min, max;
    min_max(x, b, &min, &max);
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t h[2] = {to_fp16(d), to_fp16(min)};
    std::memcpy(out, h, 4);
    // (x - min) even when min == 0: x - (-0.0) and x - 0.0 can differ in a zero's sign.
    __m256i t[4];
    const __m256 vmin = _mm256_set1_ps(min), vid = _mm256_set1_ps(id), half = _mm256_set1_ps(0.5f);
    for (int k = 0; k < 4; ++k)
      t[k] = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(b.v[k], vmin), vid), half));
    const __m256i q = _mm256_min_epi8(pack_low_bytes(t[0], t[1], t[2], t[3]), _mm256_set1_epi8(15));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 4), nibbles_or(q));
  }
}

void quantize_row_q5_0(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  const int64_t nb = n / QK5_0;
  for (int64_t i = 0; i < nb; ++i, x += QK5_0, out += sizeof(block_q5_0)) {
    const Block32 b = load32(x);
    const float max = signed_absmax(x, b);
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = to_fp16(d);
    std::memcpy(out, &dh, 2);
    const __m256i q = _mm256_min_epi8(scaled_trunc_bytes(b, id, 16.5f), _mm256_set1_epi8(31));
    const uint32_t qh = fifth_bits(q);
    std::memcpy(out + 2, &qh, 4);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 6), nibbles_masked(q));
  }
}

void quantize_row_q5_1(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  const int64_t nb = n / QK5_1;
  for (int64_t i = 0; i < nb; ++i, x += QK5_1, out += sizeof(block_q5_1)) {
    const Block32 b = load32(x);
    float min, max;
    min_max(x, b, &min, &max);
    const float d = (max - min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t h[2] = {to_fp16(d), to_fp16(min)};
    std::memcpy(out, h, 4);
    __m256i t[4];
    const __m256 vmin = _mm256_set1_ps(min), vid = _mm256_set1_ps(id), half = _mm256_set1_ps(0.5f);
    for (int k = 0; k < 4; ++k)
      t[k] = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(b.v[k], vmin), vid), half));
    const __m256i q = pack_low_bytes(t[0], t[1], t[2], t[3]);  // no clamp, as ggml
    const uint32_t qh = fifth_bits(q);
    std::memcpy(out + 4, &qh, 4);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 8), nibbles_masked(q));
  }
}

void dequantize_row_q8_0(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK8_0;
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q8_0), y += QK8_0) {
    uint16_t dh;
    std::memcpy(&dh, in, 2);
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 2));
    store_scaled(q, from_fp16(dh), 0.0f, false, y);
  }
}

void dequantize_row_q4_0(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK4_0;
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q4_0), y += QK4_0) {
    uint16_t dh;
    std::memcpy(&dh, in, 2);
    const __m256i q = _mm256_sub_epi8(unpack_nibbles(in + 2), _mm256_set1_epi8(8));
    store_scaled(q, from_fp16(dh), 0.0f, false, y);
  }
}

void dequantize_row_q4_1(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK4_1;
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q4_1), y += QK4_1) {
    uint16_t h[2];
    std::memcpy(h, in, 4);
    store_scaled(unpack_nibbles(in + 4), from_fp16(h[0]), from_fp16(h[1]), true, y);
  }
}

void dequantize_row_q5_0(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK5_0;
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q5_0), y += QK5_0) {
    uint16_t dh;
    std::memcpy(&dh, in, 2);
    const __m256i q = _mm256_or_si256(unpack_nibbles(in + 6), expand_fifth_bits(in + 2));
    store_scaled(_mm256_sub_epi8(q, _mm256_set1_epi8(16)), from_fp16(dh), 0.0f, false, y);
  }
}

void dequantize_row_q5_1(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK5_1;
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q5_1), y += QK5_1) {
    uint16_t h[2];
    std::memcpy(h, in, 4);
    const __m256i q = _mm256_or_si256(unpack_nibbles(in + 8), expand_fifth_bits(in + 4));
    store_scaled(q, from_fp16(h[0]), from_fp16(h[1]), true, y);
  }
}

}  // namespace shrink::kernels::avx2
