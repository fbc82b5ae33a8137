// AArch64 NEON row kernels: one 32-weight block per iteration in eight 4-float registers.
// Same arithmetic as kernels/ref/quant_ref.cc, operation for operation (see the list at the top
// of kernels/x86/quant_avx2.cc for how each ggml fact is kept in vector form). ARM specifics:
//  - FCVTZS saturates (+inf -> INT32_MAX, NaN -> 0) where x86 returns INT32_MIN; the reference
//    follows x86 (cvtt_i32), so out-of-range lanes are replaced by INT32_MIN explicitly.
//  - FCVTAS rounds to nearest with ties away from zero: exactly roundf, so Q8_0 needs no trick.
//  - XTN (vmovn) narrows by truncation: the low byte, as the reference keeps.
//  - FCVT to half rounds per FPCR (round-to-nearest-even by default on Linux); NaN scales go
//    through the scalar conversion so the payload rule is ggml's, not the hardware's.
#include "kernels/arm/quant_neon.h"

#include <arm_neon.h>

#include <cstring>

#include "kernels/fp16.h"
#include "kernels/quant_types.h"

namespace shrink::kernels::neon {
namespace {

struct Block32 {
  float32x4_t v[8];
};

inline Block32 load32(const float* x) {
  Block32 b;
  for (int k = 0; k < 8; ++k) b.v[k] = vld1q_f32(x + 4 * k);
  return b;
}

// x86 cvttps2dq semantics: truncation, INT32_MIN for NaN and out-of-range lanes.
inline int32x4_t cvtt_x86(float32x4_t v) {
  const uint32x4_t in_range =
      vandq_u32(vcgeq_f32(v, vdupq_n_f32(-2147483648.0f)), vcltq_f32(v, vdupq_n_f32(2147483648.0f)));
  return vbslq_s32(in_range, vcvtq_s32_f32(v), vdupq_n_s32(INT32_MIN));
}

// roundf then the x86 conversion.
inline int32x4_t round_x86(float32x4_t v) {
  const uint32x4_t in_range =
      vandq_u32(vcgeq_f32(v, vdupq_n_f32(-2147483648.0f)), vcltq_f32(v, vdupq_n_f32(2147483648.0f)));
  return vbslq_s32(in_range, vcvtaq_s32_f32(v), vdupq_n_s32(INT32_MIN));
}

// Low bytes of 32 int32 lanes (8 vectors), in order.
inline uint8x16x2_t low_bytes(const int32x4_t (&t)[8]) {
  int16x8_t h[4];
  for (int k = 0; k < 4; ++k) h[k] = vcombine_s16(vmovn_s32(t[2 * k]), vmovn_s32(t[2 * k + 1]));
  uint8x16x2_t r;
  r.val[0] = vreinterpretq_u8_s8(vcombine_s8(vmovn_s16(h[0]), vmovn_s16(h[1])));
  r.val[1] = vreinterpretq_u8_s8(vcombine_s8(vmovn_s16(h[2]), vmovn_s16(h[3])));
  return r;
}

inline uint16_t to_fp16(float f) {
  if (f != f) return fp32_to_fp16(f);
  return vget_lane_u16(vreinterpret_u16_f16(vcvt_f16_f32(vdupq_n_f32(f))), 0);
}

inline float from_fp16(uint16_t h) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0); }

// Bit i set where lane i of the block equals `value`.
inline uint32_t eq_mask(const float32x4_t (&v)[8], float value) {
  static const uint32_t kBits[4] = {1, 2, 4, 8};
  const uint32x4_t bits = vld1q_u32(kBits);
  const float32x4_t t = vdupq_n_f32(value);
  uint32_t m = 0;
  for (int k = 0; k < 8; ++k) m |= vaddvq_u32(vandq_u32(vceqq_f32(v[k], t), bits)) << (4 * k);
  return m;
}

inline float signed_absmax(const float* x, const Block32& b) {
  float32x4_t a[8];
  float32x4_t m = vabsq_f32(b.v[0]);
  for (int k = 0; k < 8; ++k) {
    a[k] = vabsq_f32(b.v[k]);
    m = vmaxq_f32(m, a[k]);
  }
  const float amax = vmaxvq_f32(m);
  if (amax == 0.0f) return 0.0f;  // the reference's starting value, +0.0f
  const uint32_t mask = eq_mask(a, amax);
  return mask ? x[__builtin_ctz(mask)] : 0.0f;
}

inline void min_max(const float* x, const Block32& b, float* min_out, float* max_out) {
  float32x4_t mn = b.v[0], mx = b.v[0];
  for (int k = 1; k < 8; ++k) {
    mn = vminq_f32(mn, b.v[k]);
    mx = vmaxq_f32(mx, b.v[k]);
  }
  float lo = vminvq_f32(mn), hi = vmaxvq_f32(mx);
  if (lo == 0.0f) {
    const uint32_t m = eq_mask(b.v, lo);
    if (m) lo = x[__builtin_ctz(m)];
  }
  if (hi == 0.0f) {
    const uint32_t m = eq_mask(b.v, hi);
    if (m) hi = x[__builtin_ctz(m)];
  }
  *min_out = lo;
  *max_out = hi;
}

// Low bytes of trunc((x - sub) * id + add).
inline uint8x16x2_t trunc_bytes(const Block32& b, bool subtract, float sub, float id, float add) {
  const float32x4_t vs = vdupq_n_f32(sub), vi = vdupq_n_f32(id), va = vdupq_n_f32(add);
  int32x4_t t[8];
  for (int k = 0; k < 8; ++k) {
    const float32x4_t s = subtract ? vsubq_f32(b.v[k], vs) : b.v[k];
    t[k] = cvtt_x86(vaddq_f32(vmulq_f32(s, vi), va));
  }
  return low_bytes(t);
}

// byte j = q[j] | (q[j + 16] << 4)
inline uint8x16_t nibbles(uint8x16_t lo, uint8x16_t hi) { return vorrq_u8(lo, vshlq_n_u8(hi, 4)); }

// Bit 4 of each byte, weight j -> bit j.
inline uint32_t fifth_bits(uint8x16_t lo, uint8x16_t hi) {
  static const uint8_t kBits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t bits = vld1q_u8(kBits);
  const uint8x16_t l = vandq_u8(vtstq_u8(lo, vdupq_n_u8(0x10)), bits);
  const uint8x16_t h = vandq_u8(vtstq_u8(hi, vdupq_n_u8(0x10)), bits);
  const uint32_t l0 = vaddv_u8(vget_low_u8(l)), l1 = vaddv_u8(vget_high_u8(l));
  const uint32_t h0 = vaddv_u8(vget_low_u8(h)), h1 = vaddv_u8(vget_high_u8(h));
  return l0 | (l1 << 8) | (h0 << 16) | (h1 << 24);
}

// 16 bytes (int8 when is_signed) -> 16 floats q*d (+m).
inline void store16(int16x8_t q0, int16x8_t q1, float d, float m, bool add_m, float* y) {
  const float32x4_t vd = vdupq_n_f32(d), vm = vdupq_n_f32(m);
  const int32x4_t parts[4] = {vmovl_s16(vget_low_s16(q0)), vmovl_s16(vget_high_s16(q0)),
                              vmovl_s16(vget_low_s16(q1)), vmovl_s16(vget_high_s16(q1))};
  for (int k = 0; k < 4; ++k) {
    float32x4_t f = vmulq_f32(vcvtq_f32_s32(parts[k]), vd);
    if (add_m) f = vaddq_f32(f, vm);
    vst1q_f32(y + 4 * k, f);
  }
}
inline void store16_s8(int8x16_t q, float d, float m, bool add_m, float* y) {
  store16(vmovl_s8(vget_low_s8(q)), vmovl_s8(vget_high_s8(q)), d, m, add_m, y);
}

// qh bit j -> 0x10 in byte j, for weights 0-15 (lo) and 16-31 (hi).
inline void expand_fifth_bits(const uint8_t* qh_bytes, uint8x16_t* lo, uint8x16_t* hi) {
  static const uint8_t kBits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t bits = vld1q_u8(kBits);
  const uint8x16_t v0 = vcombine_u8(vdup_n_u8(qh_bytes[0]), vdup_n_u8(qh_bytes[1]));
  const uint8x16_t v1 = vcombine_u8(vdup_n_u8(qh_bytes[2]), vdup_n_u8(qh_bytes[3]));
  *lo = vandq_u8(vtstq_u8(v0, bits), vdupq_n_u8(0x10));
  *hi = vandq_u8(vtstq_u8(v1, bits), vdupq_n_u8(0x10));
}

}  // namespace

void quantize_row_f16(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint16_t*>(y);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t v = vld1q_f32(x + i);
    if (vminvq_u32(vceqq_f32(v, v)) == 0) {  // a NaN lane: ggml's NaN rule, in scalar
      for (int k = 0; k < 4; ++k) {
        const uint16_t h = fp32_to_fp16(x[i + k]);
        std::memcpy(out + i + k, &h, 2);
      }
      continue;
    }
    vst1_u16(out + i, vreinterpret_u16_f16(vcvt_f16_f32(v)));
  }
  for (; i < n; ++i) {
    const uint16_t h = fp32_to_fp16(x[i]);
    std::memcpy(out + i, &h, 2);
  }
}

void dequantize_row_f16(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint16_t*>(x);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(in + i))));
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, in + i, 2);
    y[i] = fp16_to_fp32(h);
  }
}

void quantize_row_bf16(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint16_t*>(y);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint32x4_t u = vreinterpretq_u32_f32(vld1q_f32(x + i));
    const uint32x4_t hi = vshrq_n_u32(u, 16);
    const uint32x4_t r =
        vshrq_n_u32(vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7FFF)), vandq_u32(hi, vdupq_n_u32(1))), 16);
    const uint32x4_t nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7FFFFFFF)), vdupq_n_u32(0x7F800000));
    const uint32x4_t res = vbslq_u32(nan, vorrq_u32(hi, vdupq_n_u32(0x40)), r);
    vst1_u16(out + i, vmovn_u32(res));
  }
  for (; i < n; ++i) {
    const uint16_t h = fp32_to_bf16(x[i]);
    std::memcpy(out + i, &h, 2);
  }
}

void dequantize_row_bf16(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint16_t*>(x);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(in + i), 16)));
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, in + i, 2);
    y[i] = bf16_to_fp32(h);
  }
}

void quantize_row_q8_0(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  const int64_t nb = n / QK8_0;
  for (int64_t i = 0; i < nb; ++i, x += QK8_0, out += sizeof(block_q8_0)) {
    const Block32 b = load32(x);
    float32x4_t m = vabsq_f32(b.v[0]);
    for (int k = 1; k < 8; ++k) m = vmaxq_f32(m, vabsq_f32(b.v[k]));
    const float amax = vmaxvq_f32(m);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = to_fp16(d);
    std::memcpy(out, &dh, 2);
    const float32x4_t vid = vdupq_n_f32(id);
    int32x4_t t[8];
    for (int k = 0; k < 8; ++k) t[k] = round_x86(vmulq_f32(b.v[k], vid));
    const uint8x16x2_t q = low_bytes(t);
    vst1q_u8(out + 2, q.val[0]);
    vst1q_u8(out + 18, q.val[1]);
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
    const uint8x16x2_t q = trunc_bytes(b, false, 0.0f, id, 8.5f);
    const int8x16_t fifteen = vdupq_n_s8(15);
    const uint8x16_t lo = vreinterpretq_u8_s8(vminq_s8(vreinterpretq_s8_u8(q.val[0]), fifteen));
    const uint8x16_t hi = vreinterpretq_u8_s8(vminq_s8(vreinterpretq_s8_u8(q.val[1]), fifteen));
    vst1q_u8(out + 2, nibbles(lo, hi));
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
    const uint8x16x2_t q = trunc_bytes(b, true, min, id, 0.5f);
    const int8x16_t fifteen = vdupq_n_s8(15);
    const uint8x16_t lo = vreinterpretq_u8_s8(vminq_s8(vreinterpretq_s8_u8(q.val[0]), fifteen));
    const uint8x16_t hi = vreinterpretq_u8_s8(vminq_s8(vreinterpretq_s8_u8(q.val[1]), fifteen));
    vst1q_u8(out + 4, nibbles(lo, hi));
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
    const uint8x16x2_t q = trunc_bytes(b, false, 0.0f, id, 16.5f);
    const int8x16_t thirty_one = vdupq_n_s8(31);
    const uint8x16_t lo = vreinterpretq_u8_s8(vminq_s8(vreinterpretq_s8_u8(q.val[0]), thirty_one));
    const uint8x16_t hi = vreinterpretq_u8_s8(vminq_s8(vreinterpretq_s8_u8(q.val[1]), thirty_one));
    const uint32_t qh = fifth_bits(lo, hi);
    std::memcpy(out + 2, &qh, 4);
    vst1q_u8(out + 6, nibbles(vandq_u8(lo, vdupq_n_u8(0x0F)), hi));
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
    const uint8x16x2_t q = trunc_bytes(b, true, min, id, 0.5f);  // no clamp, as ggml
    const uint32_t qh = fifth_bits(q.val[0], q.val[1]);
    std::memcpy(out + 4, &qh, 4);
    vst1q_u8(out + 8, nibbles(vandq_u8(q.val[0], vdupq_n_u8(0x0F)), q.val[1]));
  }
}

void dequantize_row_q8_0(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK8_0;
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q8_0), y += QK8_0) {
    uint16_t dh;
    std::memcpy(&dh, in, 2);
    const float d = from_fp16(dh);
    store16_s8(vld1q_s8(reinterpret_cast<const int8_t*>(in + 2)), d, 0.0f, false, y);
    store16_s8(vld1q_s8(reinterpret_cast<const int8_t*>(in + 18)), d, 0.0f, false, y + 16);
  }
}

void dequantize_row_q4_0(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK4_0;
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q4_0), y += QK4_0) {
    uint16_t dh;
    std::memcpy(&dh, in, 2);
    const float d = from_fp16(dh);
    const uint8x16_t b = vld1q_u8(in + 2);
    const int8x16_t eight = vdupq_n_s8(8);
    store16_s8(vsubq_s8(vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0F))), eight), d, 0.0f, false, y);
    store16_s8(vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(b, 4)), eight), d, 0.0f, false, y + 16);
  }
}

void dequantize_row_q4_1(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK4_1;
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q4_1), y += QK4_1) {
    uint16_t h[2];
    std::memcpy(h, in, 4);
    const float d = from_fp16(h[0]), m = from_fp16(h[1]);
    const uint8x16_t b = vld1q_u8(in + 4);
    store16_s8(vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0F))), d, m, true, y);
    store16_s8(vreinterpretq_s8_u8(vshrq_n_u8(b, 4)), d, m, true, y + 16);
  }
}

void dequantize_row_q5_0(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK5_0;
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q5_0), y += QK5_0) {
    uint16_t dh;
    std::memcpy(&dh, in, 2);
    const float d = from_fp16(dh);
    uint8x16_t h0, h1;
    expand_fifth_bits(in + 2, &h0, &h1);
    const uint8x16_t b = vld1q_u8(in + 6);
    const int8x16_t sixteen = vdupq_n_s8(16);
    const uint8x16_t lo = vorrq_u8(vandq_u8(b, vdupq_n_u8(0x0F)), h0);
    const uint8x16_t hi = vorrq_u8(vshrq_n_u8(b, 4), h1);
    store16_s8(vsubq_s8(vreinterpretq_s8_u8(lo), sixteen), d, 0.0f, false, y);
    store16_s8(vsubq_s8(vreinterpretq_s8_u8(hi), sixteen), d, 0.0f, false, y + 16);
  }
}

void dequantize_row_q5_1(const void* x, float* y, int64_t n) {
  const auto* in = static_cast<const uint8_t*>(x);
  const int64_t nb = n / QK5_1;
  for (int64_t i = 0; i < nb; ++i, in += sizeof(block_q5_1), y += QK5_1) {
    uint16_t h[2];
    std::memcpy(h, in, 4);
    const float d = from_fp16(h[0]), m = from_fp16(h[1]);
    uint8x16_t h0, h1;
    expand_fifth_bits(in + 4, &h0, &h1);
    const uint8x16_t b = vld1q_u8(in + 8);
    store16_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b, vdupq_n_u8(0x0F)), h0)), d, m, true, y);
    store16_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(b, 4), h1)), d, m, true, y + 16);
  }
}

}  // namespace shrink::kernels::neon
