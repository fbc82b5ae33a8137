// Scalar reference of the super-block ("k") dot products against Q8_K activations, and of the
// Q8_K activation quantizer. Semantics from ggml (ggml-quants.c quantize_row_q8_K_ref;
// ggml-cpu/quants.c ggml_vec_dot_{q2_K..q6_K,iq4_xs}_q8_K_generic); the code is organised
// differently: each super-block of 256 weights yields one exact integer sum of
// scale * (weight quant * activation quant) (and, for the types with mins, one integer sum of
// min * bsum), and only then is it scaled by the two float super-block scales. ggml's generic
// code spreads the same integers over eight float lanes, so results agree to float-summation
// order (tests/test_kernels_dot.cc bounds the difference), and the integer parts are exactly
// what the SIMD variants must reproduce.
#include <cmath>
#include <cstring>

#include "kernels/dot.h"
#include "kernels/fp16.h"

namespace shrink::kernels::ref {
namespace {

// ggml's nearest_int: round half to even through the float adder (1.5 * 2^23 puts the integer
// in the low mantissa bits). Valid for |f| < 2^22, which |iscale * x| <= 127 satisfies.
inline int nearest_int(float f) {
  const float v = f + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &v, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

// Q4_K/Q5_K: the 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes
// (ggml-quants.c get_scale_min_k4).
inline void scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

}  // namespace

// Q3_K's 16 signed 6-bit scales (s - 32): low nibbles in bytes 0..7 (sub-blocks 0..7 low
// nibble, 8..15 high nibble), the two high bits of sub-block j at bits 2*(j/4) of byte 8 + j%4.
void unpack_q3_K_scales(const uint8_t* packed, int* scales) {
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
    const int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    scales[j] = (low | (high << 4)) - 32;
  }
}

void quantize_row_q8_K(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q8_K*>(vy);
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    // The signed value of largest magnitude (the first one on ties): its sign fixes the sign
    // of d, so that value quantizes to exactly -127 (ggml: "iscale = -127.f/max").
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      // ggml leaves bsums untouched here; zero is the only value that makes the block's
      // contribution zero for every weight type, and d = 0 already does.
      std::memset(&y[i], 0, sizeof(block_q8_K));
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; ++j) {
      const int v = nearest_int(iscale * x[j]);
      y[i].qs[j] = static_cast<int8_t>(v < 127 ? v : 127);
    }
    for (int j = 0; j < QK_K / 16; ++j) {
      int sum = 0;
      for (int k = 0; k < 16; ++k) sum += y[i].qs[16 * j + k];
      y[i].bsums[j] = static_cast<int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

// Q2_K: element 128c + 32s + l (c chunk 0..1, s shift 0..3, l 0..31) is bits 2s of
// qs[32c + l]; sub-block j (16 weights) has scale sc[j] & 0xF and min sc[j] >> 4.
float vec_dot_q2_K_q8_K(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q2_K*>(vw);
  const auto* y = static_cast<const block_q8_K*>(va);
  float sumf = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 16; ++j) msum += y[i].bsums[j] * (x[i].scales[j] >> 4);
    for (int e = 0; e < QK_K; e += 16) {
      const int c = e / 128, s = (e % 128) / 32, l0 = e % 32;
      int32_t sub = 0;
      for (int l = l0; l < l0 + 16; ++l) sub += ((x[i].qs[32 * c + l] >> (2 * s)) & 3) * y[i].qs[e + l - l0];
      isum += (x[i].scales[e / 16] & 0xF) * sub;
    }
    const float dall = y[i].d * fp16_to_fp32(x[i].d);
    const float dmin = y[i].d * fp16_to_fp32(x[i].dmin);
    sumf += dall * static_cast<float>(isum) - dmin * static_cast<float>(msum);
  }
  return sumf;
}

// Q3_K: Q2_K's low bits plus hmask bit (4c + s) of byte l; weight quant = low + 4*bit - 4.
float vec_dot_q3_K_q8_K(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q3_K*>(vw);
  const auto* y = static_cast<const block_q8_K*>(va);
  float sumf = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int scales[16];
    unpack_q3_K_scales(x[i].scales, scales);
    int32_t isum = 0;
    for (int e = 0; e < QK_K; e += 16) {
      const int c = e / 128, s = (e % 128) / 32, l0 = e % 32;
      int32_t sub = 0;
      for (int l = l0; l < l0 + 16; ++l) {
        const int low = (x[i].qs[32 * c + l] >> (2 * s)) & 3;
        const int high = (x[i].hmask[l] >> (4 * c + s)) & 1;
        sub += (low + 4 * high - 4) * y[i].qs[e + l - l0];
      }
      isum += scales[e / 16] * sub;
    }
    sumf += fp16_to_fp32(x[i].d) * y[i].d * static_cast<float>(isum);
  }
  return sumf;
}

// Q4_K: element 64g + l is the low nibble of qs[32g + l], 64g + 32 + l the high nibble;
// sub-block j (32 weights) has 6-bit scale and min; bsums[2j] + bsums[2j+1] cover it.
float vec_dot_q4_K_q8_K(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q4_K*>(vw);
  const auto* y = static_cast<const block_q8_K*>(va);
  float sumf = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      scale_min_k4(j, x[i].scales, &sc, &m);
      const int g = j / 2, shift = 4 * (j % 2);
      int32_t sub = 0;
      for (int l = 0; l < 32; ++l) sub += ((x[i].qs[32 * g + l] >> shift) & 0xF) * y[i].qs[32 * j + l];
      isum += sc * sub;
      msum += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    const float d = fp16_to_fp32(x[i].d) * y[i].d;
    const float dmin = fp16_to_fp32(x[i].dmin) * y[i].d;
    sumf += d * static_cast<float>(isum) - dmin * static_cast<float>(msum);
  }
  return sumf;
}

// Q5_K: Q4_K plus bit j of qh[l] as the fifth bit (+16) of element 32j + l.
float vec_dot_q5_K_q8_K(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q5_K*>(vw);
  const auto* y = static_cast<const block_q8_K*>(va);
  float sumf = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      scale_min_k4(j, x[i].scales, &sc, &m);
      const int g = j / 2, shift = 4 * (j % 2);
      int32_t sub = 0;
      for (int l = 0; l < 32; ++l) {
        const int q = ((x[i].qs[32 * g + l] >> shift) & 0xF) + 16 * ((x[i].qh[l] >> j) & 1);
        sub += q * y[i].qs[32 * j + l];
      }
      isum += sc * sub;
      msum += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    const float d = fp16_to_fp32(x[i].d) * y[i].d;
    const float dmin = fp16_to_fp32(x[i].dmin) * y[i].d;
    sumf += d * static_cast<float>(isum) - dmin * static_cast<float>(msum);
  }
  return sumf;
}

// Q6_K: in chunk c (128 weights; ql + 64c, qh + 32c), element 32k + l takes its low nibble from
// ql[l + 32*(k%2)] (k < 2: low nibble, else high) and two high bits from qh[l] >> 2k;
// weight quant = q - 32, scale = scales[element / 16] (signed).
float vec_dot_q6_K_q8_K(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q6_K*>(vw);
  const auto* y = static_cast<const block_q8_K*>(va);
  float sumf = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int32_t isum = 0;
    for (int e = 0; e < QK_K; e += 16) {
      const int c = e / 128, k = (e % 128) / 32, l0 = e % 32;
      const uint8_t* ql = x[i].ql + 64 * c + 32 * (k % 2);
      const uint8_t* qh = x[i].qh + 32 * c;
      int32_t sub = 0;
      for (int l = l0; l < l0 + 16; ++l) {
        const int low = (ql[l] >> (4 * (k / 2))) & 0xF;
        const int q = low | (((qh[l] >> (2 * k)) & 3) << 4);
        sub += (q - 32) * y[i].qs[e + l - l0];
      }
      isum += x[i].scales[e / 16] * sub;
    }
    sumf += fp16_to_fp32(x[i].d) * y[i].d * static_cast<float>(isum);
  }
  return sumf;
}

// IQ4_XS: 8 blocks of 32, each 16 bytes of qs (low nibbles: elements 0..15, high: 16..31) into
// the kValuesIq4nl grid, block scale ls - 32 with ls 6 bits (low nibble in scales_l, high two
// bits at 2*ib of scales_h).
float vec_dot_iq4_xs_q8_K(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_iq4_xs*>(vw);
  const auto* y = static_cast<const block_q8_K*>(va);
  float sumf = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int32_t isum = 0;
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x[i].scales_h >> (2 * ib)) & 3) << 4);
      const uint8_t* qs = x[i].qs + 16 * ib;
      const int8_t* q8 = y[i].qs + 32 * ib;
      int32_t sub = 0;
      for (int j = 0; j < 16; ++j) sub += kValuesIq4nl[qs[j] & 0xF] * q8[j] + kValuesIq4nl[qs[j] >> 4] * q8[j + 16];
      isum += (ls - 32) * sub;
    }
    sumf += fp16_to_fp32(x[i].d) * y[i].d * static_cast<float>(isum);
  }
  return sumf;
}

}  // namespace shrink::kernels::ref
