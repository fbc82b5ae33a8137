// Scalar reference quantizers: a transcription of the arithmetic of ggml's
// quantize_row_{q4_0,q4_1,q5_0,q5_1,q8_0}_ref and dequantize_row_* (ggml-quants.c), operation
// for operation, because GGUF files must come out byte-identical to llama.cpp's own.
// The project compiles with -ffp-contract=off so x*id + 8.5f stays two roundings, as in ggml.
//
// Facts of ggml's reference that the bytes depend on (each one checked against libggml-base
// by tests/test_kernels_ggml.cc):
//  - Q8_0:  d = amax / 127, id = d ? 1/d : 0, q = roundf(x*id) (ties away from zero).
//  - Q4_0:  "max" is the signed value with the largest |x|, the FIRST one on ties (strict <),
//           starting from +0.0f; d = max / -8 (so an all-zero block stores d = -0.0, 0x8000);
//           q = min(15, (int8)(x*id + 8.5f)) with truncation; Q5_0 likewise with -16, 16.5f, 31.
//  - Q4_1:  min/max of the block (first occurrence, from +-FLT_MAX), d = (max - min) / 15,
//           q = min(15, (int8)((x - min)*id + 0.5f)); Q5_1 likewise with 31 and no clamp.
//  - id is computed from the float d, not from the fp16-rounded d that is stored.
//  - d and m are stored through ggml's fp32 -> fp16 conversion (kernels/fp16.h).
//
// NaN/Inf policy. shrink refuses tensors holding NaN or Inf before they reach the kernels,
// unless the user explicitly allows them. If they do reach the kernels: F32 copies them,
// F16/BF16 convert them exactly as ggml does (inf stays inf, NaN becomes ggml's quiet NaN), and
// the block types never crash but produce unspecified bytes for the affected block (it depends
// on reduction order; SIMD variants may differ from this reference there). Only finite inputs
// are tested for byte equality. Finite inputs can still make non-finite intermediates (a block
// whose |max| is below ~2^-125 gives 1/d = inf; max - min can overflow to inf); those cases are
// specified and tested, through cvtt_i32() below.
#include "kernels/ref/quant_ref.h"

#include <cfloat>
#include <cmath>
#include <cstring>

#include "kernels/fp16.h"
#include "kernels/quant_types.h"

namespace shrink::kernels::ref {
namespace {

// ggml casts floats to int8_t/uint8_t with plain C casts. In range that is truncation toward
// zero. Out of range (only reachable through an infinite 1/d, see above) C leaves it undefined;
// the x86 build of ggml -- our oracle, and where most GGUF files are made -- executes cvttss2si /
// cvttps2dq, which return INT32_MIN ("integer indefinite") for NaN and out-of-range inputs, and
// then keeps the low byte. Spelled out here so every ISA (and the compiler) agrees.
inline int32_t cvtt_i32(float v) {
  return (v >= -2147483648.0f && v < 2147483648.0f) ? static_cast<int32_t>(v) : INT32_MIN;
}
// The low byte of an int32, as C++20's modular conversion defines it.
inline int8_t low_i8(int32_t v) { return static_cast<int8_t>(v); }

template <class Block>
inline void store_block(void* y, int64_t i, const Block& b) {
  std::memcpy(static_cast<char*>(y) + i * static_cast<int64_t>(sizeof(Block)), &b, sizeof(Block));
}
template <class Block>
inline Block load_block(const void* x, int64_t i) {
  Block b;
  std::memcpy(&b, static_cast<const char*>(x) + i * static_cast<int64_t>(sizeof(Block)), sizeof(Block));
  return b;
}

// Q4_0 / Q5_0 scale search: the signed value of largest magnitude, first one wins.
inline float signed_absmax(const float* x, int n) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

// Q4_1 / Q5_1 range: first minimum and first maximum, starting from +-FLT_MAX.
inline void min_max(const float* x, int n, float* min_out, float* max_out) {
  float min = FLT_MAX;
  float max = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  *min_out = min;
  *max_out = max;
}

}  // namespace

void quantize_row_f32(const float* x, void* y, int64_t n) {
  std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
}

void quantize_row_f16(const float* x, void* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = fp32_to_fp16(x[i]);
    std::memcpy(static_cast<char*>(y) + 2 * i, &h, 2);
  }
}

void quantize_row_bf16(const float* x, void* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = fp32_to_bf16(x[i]);
    std::memcpy(static_cast<char*>(y) + 2 * i, &h, 2);
  }
}

void quantize_row_q8_0(const float* x, void* y, int64_t n) {
  const int64_t nb = n / QK8_0;
  for (int64_t i = 0; i < nb; ++i, x += QK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; ++j) {
      const float a = std::fabs(x[j]);
      amax = amax > a ? amax : a;  // ggml's MAX(amax, fabsf(v))
    }
    const float d = amax / ((1 << 7) - 1);  // 127: the largest q
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    block_q8_0 b;
    b.d = fp32_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) b.qs[j] = low_i8(cvtt_i32(std::round(x[j] * id)));
    store_block(y, i, b);
  }
}

void quantize_row_q4_0(const float* x, void* y, int64_t n) {
  const int64_t nb = n / QK4_0;
  for (int64_t i = 0; i < nb; ++i, x += QK4_0) {
    const float max = signed_absmax(x, QK4_0);
    const float d = max / -8;  // q = -8 lands exactly on max
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    block_q4_0 b;
    b.d = fp32_to_fp16(d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[QK4_0 / 2 + j] * id;
      const int8_t q0 = low_i8(cvtt_i32(x0 + 8.5f));
      const int8_t q1 = low_i8(cvtt_i32(x1 + 8.5f));
      const uint8_t xi0 = static_cast<uint8_t>(q0 < 15 ? q0 : 15);
      const uint8_t xi1 = static_cast<uint8_t>(q1 < 15 ? q1 : 15);
      b.qs[j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
    }
    store_block(y, i, b);
  }
}

void quantize_row_q4_1(const float* x, void* y, int64_t n) {
  const int64_t nb = n / QK4_1;
  for (int64_t i = 0; i < nb; ++i, x += QK4_1) {
    float min, max;
    min_max(x, QK4_1, &min, &max);
    const float d = (max - min) / ((1 << 4) - 1);  // 15 steps
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    block_q4_1 b;
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(min);
    for (int j = 0; j < QK4_1 / 2; ++j) {
      const float x0 = (x[j] - min) * id;
      const float x1 = (x[QK4_1 / 2 + j] - min) * id;
      const int8_t q0 = low_i8(cvtt_i32(x0 + 0.5f));
      const int8_t q1 = low_i8(cvtt_i32(x1 + 0.5f));
      const uint8_t xi0 = static_cast<uint8_t>(q0 < 15 ? q0 : 15);
      const uint8_t xi1 = static_cast<uint8_t>(q1 < 15 ? q1 : 15);
      b.qs[j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
    }
    store_block(y, i, b);
  }
}

void quantize_row_q5_0(const float* x, void* y, int64_t n) {
  const int64_t nb = n / QK5_0;
  for (int64_t i = 0; i < nb; ++i, x += QK5_0) {
    const float max = signed_absmax(x, QK5_0);
    const float d = max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    block_q5_0 b;
    b.d = fp32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < QK5_0 / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[QK5_0 / 2 + j] * id;
      const int8_t q0 = low_i8(cvtt_i32(x0 + 16.5f));
      const int8_t q1 = low_i8(cvtt_i32(x1 + 16.5f));
      const uint8_t xi0 = static_cast<uint8_t>(q0 < 31 ? q0 : 31);
      const uint8_t xi1 = static_cast<uint8_t>(q1 < 31 ? q1 : 31);
      b.qs[j] = static_cast<uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
      qh |= ((xi0 & 0x10u) >> 4) << j;
      qh |= ((xi1 & 0x10u) >> 4) << (j + QK5_0 / 2);
    }
    std::memcpy(b.qh, &qh, sizeof qh);  // little-endian, as ggml's memcpy
    store_block(y, i, b);
  }
}

void quantize_row_q5_1(const float* x, void* y, int64_t n) {
  const int64_t nb = n / QK5_1;
  for (int64_t i = 0; i < nb; ++i, x += QK5_1) {
    float min, max;
    min_max(x, QK5_1, &min, &max);
    const float d = (max - min) / ((1 << 5) - 1);  // 31 steps
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    block_q5_1 b;
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(min);
    uint32_t qh = 0;
    for (int j = 0; j < QK5_1 / 2; ++j) {
      const float x0 = (x[j] - min) * id;
      const float x1 = (x[QK5_1 / 2 + j] - min) * id;
      const uint8_t xi0 = static_cast<uint8_t>(cvtt_i32(x0 + 0.5f));  // no clamp in ggml
      const uint8_t xi1 = static_cast<uint8_t>(cvtt_i32(x1 + 0.5f));
      b.qs[j] = static_cast<uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
      qh |= ((xi0 & 0x10u) >> 4) << j;
      qh |= ((xi1 & 0x10u) >> 4) << (j + QK5_1 / 2);
    }
    std::memcpy(b.qh, &qh, sizeof qh);
    store_block(y, i, b);
  }
}

// ---- Dequantization: q*d (+ m), int -> float then one multiply (and one add), as ggml. ----

void dequantize_row_f32(const void* x, float* y, int64_t n) {
  std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
}

void dequantize_row_f16(const void* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, static_cast<const char*>(x) + 2 * i, 2);
    y[i] = fp16_to_fp32(h);
  }
}

void dequantize_row_bf16(const void* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, static_cast<const char*>(x) + 2 * i, 2);
    y[i] = bf16_to_fp32(h);
  }
}

void dequantize_row_q8_0(const void* x, float* y, int64_t n) {
  const int64_t nb = n / QK8_0;
  for (int64_t i = 0; i < nb; ++i, y += QK8_0) {
    const auto b = load_block<block_q8_0>(x, i);
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < QK8_0; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
  }
}

void dequantize_row_q4_0(const void* x, float* y, int64_t n) {
  const int64_t nb = n / QK4_0;
  for (int64_t i = 0; i < nb; ++i, y += QK4_0) {
    const auto b = load_block<block_q4_0>(x, i);
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      y[j] = static_cast<float>((b.qs[j] & 0x0F) - 8) * d;
      y[j + QK4_0 / 2] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_row_q4_1(const void* x, float* y, int64_t n) {
  const int64_t nb = n / QK4_1;
  for (int64_t i = 0; i < nb; ++i, y += QK4_1) {
    const auto b = load_block<block_q4_1>(x, i);
    const float d = fp16_to_fp32(b.d);
    const float m = fp16_to_fp32(b.m);
    for (int j = 0; j < QK4_1 / 2; ++j) {
      y[j] = static_cast<float>(b.qs[j] & 0x0F) * d + m;
      y[j + QK4_1 / 2] = static_cast<float>(b.qs[j] >> 4) * d + m;
    }
  }
}

void dequantize_row_q5_0(const void* x, float* y, int64_t n) {
  const int64_t nb = n / QK5_0;
  for (int64_t i = 0; i < nb; ++i, y += QK5_0) {
    const auto b = load_block<block_q5_0>(x, i);
    const float d = fp16_to_fp32(b.d);
    uint32_t qh;
    std::memcpy(&qh, b.qh, sizeof qh);
    for (int j = 0; j < QK5_0 / 2; ++j) {
      const int hi0 = static_cast<int>((qh >> j) & 1u) << 4;
      const int hi1 = static_cast<int>((qh >> (j + QK5_0 / 2)) & 1u) << 4;
      y[j] = static_cast<float>(((b.qs[j] & 0x0F) | hi0) - 16) * d;
      y[j + QK5_0 / 2] = static_cast<float>(((b.qs[j] >> 4) | hi1) - 16) * d;
    }
  }
}

void dequantize_row_q5_1(const void* x, float* y, int64_t n) {
  const int64_t nb = n / QK5_1;
  for (int64_t i = 0; i < nb; ++i, y += QK5_1) {
    const auto b = load_block<block_q5_1>(x, i);
    const float d = fp16_to_fp32(b.d);
    const float m = fp16_to_fp32(b.m);
    uint32_t qh;
    std::memcpy(&qh, b.qh, sizeof qh);
    for (int j = 0; j < QK5_1 / 2; ++j) {
      const int hi0 = static_cast<int>((qh >> j) & 1u) << 4;
      const int hi1 = static_cast<int>((qh >> (j + QK5_1 / 2)) & 1u) << 4;
      y[j] = static_cast<float>((b.qs[j] & 0x0F) | hi0) * d + m;
      y[j + QK5_1 / 2] = static_cast<float>((b.qs[j] >> 4) | hi1) * d + m;
    }
  }
}

}  // namespace shrink::kernels::ref
