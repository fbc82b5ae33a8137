// Scalar conversions between fp32 and the two 16-bit float formats GGUF stores:
// IEEE binary16 ("f16": 1 sign, 5 exponent, 10 mantissa bits) and bfloat16 ("bf16": 1, 8, 7).
//
// Bit-exact with ggml's CPU-agnostic conversions (ggml-impl.h: ggml_compute_fp32_to_fp16,
// ggml_compute_fp16_to_fp32, ggml_compute_fp32_to_bf16, ggml_compute_bf16_to_fp32), which every
// block scale of Q4_0..Q8_0 goes through, so a scale that rounds differently changes the file.
// Written as plain integer code (no float tricks), so the result does not depend on the FPU's
// rounding mode or flush-to-zero flags. tests/test_kernels_fp16.cc checks all 2^16 halves and
// all (or a strided sample of all) 2^32 floats against libggml-base.
//
// The functions are `static inline` on purpose: this header is included by files compiled with
// -mavx2/-mavx512f, and an external-linkage inline function would be emitted there as a COMDAT
// copy that the linker may pick for the scalar path too (AVX code on a CPU without AVX).
#pragma once

#include <cstdint>
#include <cstring>

namespace shrink::kernels {

static inline uint32_t fp32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

static inline float fp32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// fp32 -> fp16, round to nearest, ties to even; overflow (|f| >= 65520) gives +-inf.
// NaN gives sign | 0x7E00: ggml drops the payload and keeps the sign.
static inline uint16_t fp32_to_fp16(float f) {
  const uint32_t w = fp32_bits(f);
  const uint32_t sign = (w >> 16) & 0x8000u;
  const uint32_t a = w & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);  // NaN
  if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520: inf
  if (a >= 0x38800000u) {
    // Normal half (|f| >= 2^-14): rebias the exponent (127 - 15 = 112) and round the 13
    // dropped mantissa bits to nearest even; a carry into the exponent is the right answer.
    const uint32_t r = a - (112u << 23);
    return static_cast<uint16_t>(sign | ((r + 0x0FFFu + ((r >> 13) & 1u)) >> 13));
  }
  // Subnormal half: the value in units of 2^-24 is m * 2^(e - 126) with the implicit bit.
  const uint32_t e = a >> 23;
  if (e < 102) return static_cast<uint16_t>(sign);  // < 2^-25: rounds to (signed) zero
  const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126u - e;                   // 14..24
  const uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  const uint32_t up = (rem > half || (rem == half && (q & 1u))) ? 1u : 0u;
  return static_cast<uint16_t>(sign | (q + up));  // q + up may reach 0x400: the smallest normal
}

// fp16 -> fp32, exact. A signalling NaN comes back quiet (bit 22 set), as in ggml, whose
// conversion passes NaNs through a float multiply.
static inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1Fu;
  const uint32_t m = h & 0x3FFu;
  if (e == 0x1F) return fp32_from_bits(sign | 0x7F800000u | (m ? (0x400000u | (m << 13)) : 0u));
  if (e != 0) return fp32_from_bits(sign | ((e + 112u) << 23) | (m << 13));
  if (m == 0) return fp32_from_bits(sign);
  // Subnormal half m * 2^-24: normalise so the leading bit becomes the implicit one.
  uint32_t shift = 0;
  uint32_t mm = m;
  while ((mm & 0x400u) == 0) {
    mm <<= 1;
    ++shift;
  }
  return fp32_from_bits(sign | ((113u - shift) << 23) | ((mm & 0x3FFu) << 13));
}

// fp32 -> bf16: round to nearest even on the 16 dropped bits; NaN keeps its top bits and is
// forced quiet (| 0x40), as ggml does. Subnormals are rounded, not flushed.
static inline uint16_t fp32_to_bf16(float f) {
  const uint32_t u = fp32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// bf16 -> fp32: exact (bf16 is the top half of an fp32).
static inline float bf16_to_fp32(uint16_t h) { return fp32_from_bits(static_cast<uint32_t>(h) << 16); }

}  // namespace shrink::kernels
