// AVX-512 (F, BW, VL, VNNI) micro-kernels for kernels/gemm.cc; the summation order each one
// reproduces is written down in kernels/gemm_kernels.h. Quantized kernels put one token per
// 32-bit lane: a 512-bit register holds 16 tokens' 4-byte slices of one block, and one
// broadcast 4-byte slice of a weight row is multiplied into all 16 at once (vpdpbusd), so the
// weights are used in their file layout, never repacked.
#include <cmath>
#include <immintrin.h>

#include <algorithm>
#include <cstring>

// GCC 12 warns inside its own _mm512_reduce_add_ps and _mm512_set1_*: false positives.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "kernels/gemm_kernels.h"
#include "kernels/quant_types.h"

namespace shrink::kernels::gemm_avx512 {
namespace {

// fp16 -> fp32 with the F16C instruction (exact, like every IEEE half -> float conversion).
inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

inline int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ggml's hsum for one 8-lane accumulator (hsum_float_8 in arch/x86/quants.c; tinyBLAS's hsum
// for __m256), applied to 16 tokens at once: lane k of the original is register acc[k] here.
inline __m512 hsum8_lanes(const __m512 acc[8]) {
  const __m512 r0 = _mm512_add_ps(acc[4], acc[0]);
  const __m512 r1 = _mm512_add_ps(acc[5], acc[1]);
  const __m512 r2 = _mm512_add_ps(acc[6], acc[2]);
  const __m512 r3 = _mm512_add_ps(acc[7], acc[3]);
  return _mm512_add_ps(_mm512_add_ps(r0, r2), _mm512_add_ps(r1, r3));
}

inline void store_tokens(__m512 v, int n_valid, float* y, int64_t ldy) {
  alignas(64) float tmp[kTokenGroup];
  _mm512_store_ps(tmp, v);
  for (int t = 0; t < n_valid; ++t) y[t * ldy] = tmp[t];
}

// One weight block as 32 unsigned bytes, element i at byte i: Q8_0 quants + 128 (xor 0x80),
// Q4_0 nibbles 0..15. vpdpbusd multiplies unsigned by signed bytes; the offset comes back
// through the accumulator's start value, -offset * (sum of the 4 activation quants of the
// lane), so every lane is exactly sum(w x) over its 4 elements.
inline void decode_block_unsigned(Q0Weights type, const uint8_t* blk, uint8_t out[32], float* d) {
  if (type == Q0Weights::kQ8_0) {
    const auto* b = reinterpret_cast<const block_q8_0*>(blk);
    *d = half_to_float(b->d);
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out), _mm256_xor_si256(q, _mm256_set1_epi8(static_cast<char>(0x80))));
  } else {
    const auto* b = reinterpret_cast<const block_q4_0*>(blk);
    *d = half_to_float(b->d);
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs));
    const __m128i m4 = _mm_set1_epi8(0x0F);
    _mm_store_si128(reinterpret_cast<__m128i*>(out), _mm_and_si128(q, m4));
    _mm_store_si128(reinterpret_cast<__m128i*>(out + 16), _mm_and_si128(_mm_srli_epi16(q, 4), m4));
  }
}

template <int R>
void q0_lanes8_rows(Q0Weights type, const uint8_t* w, size_t row_bytes, size_t block_bytes, const PackedQ8_0& a,
                    int n_valid, float* y, int64_t ldy) {
  __m512 acc[R][8];
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < 8; ++k) acc[r][k] = _mm512_setzero_ps();
  alignas(32) uint8_t wq[R][32];
  // pack stores -128 * sum4; Q4_0's offset is 8, so its start value is that / 16 (exact).
  const int shift = type == Q0Weights::kQ8_0 ? 0 : 4;
  for (int64_t b = 0; b < a.n_blocks; ++b) {
    const __m512 da = _mm512_loadu_ps(a.d + b * kTokenGroup);
    __m512 scale[R];
    for (int r = 0; r < R; ++r) {
      float dw;
      decode_block_unsigned(type, w + static_cast<size_t>(r) * row_bytes + static_cast<size_t>(b) * block_bytes, wq[r], &dw);
      // tinyBLAS: unhalf(A.d) * unhalf(B.d), one float product
      scale[r] = _mm512_mul_ps(_mm512_set1_ps(dw), da);
    }
    const int8_t* xs = a.qs + b * (8 * kTokenGroup * 4);
    const int32_t* bias = a.bias4 + b * 8 * kTokenGroup;
    for (int k = 0; k < 8; ++k) {
      const __m512i x = _mm512_loadu_si512(xs + k * kTokenGroup * 4);
      const __m512i start = _mm512_srai_epi32(_mm512_loadu_si512(bias + k * kTokenGroup), shift);
      for (int r = 0; r < R; ++r) {
        const __m512i dp = _mm512_dpbusd_epi32(start, _mm512_set1_epi32(load_i32(wq[r] + 4 * k)), x);
        acc[r][k] = _mm512_fmadd_ps(scale[r], _mm512_cvtepi32_ps(dp), acc[r][k]);
      }
    }
  }
  for (int r = 0; r < R; ++r) store_tokens(hsum8_lanes(acc[r]), n_valid, y + r, ldy);
}

template <int R>
void q4_0_repack_rows(const uint8_t* w, size_t row_bytes, const PackedQ8_0& a, int n_valid, float* y, int64_t ldy) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  // Nibbles 0..15 as unsigned bytes (element i at byte i); the -8 offset comes back as
  // -8 * (sum of the block's activation quants), so i_b = sum((q - 8) x) exactly.
  alignas(32) uint8_t wq[R][32];
  const __m128i m4 = _mm_set1_epi8(0x0F);
  for (int64_t b = 0; b < a.n_blocks; ++b) {
    const __m512 da = _mm512_loadu_ps(a.d + b * kTokenGroup);
    __m512 scale[R];
    __m512i isum[R];
    for (int r = 0; r < R; ++r) {
      const auto* blk = reinterpret_cast<const block_q4_0*>(w + static_cast<size_t>(r) * row_bytes) + b;
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->qs));
      _mm_store_si128(reinterpret_cast<__m128i*>(wq[r]), _mm_and_si128(q, m4));
      _mm_store_si128(reinterpret_cast<__m128i*>(wq[r] + 16), _mm_and_si128(_mm_srli_epi16(q, 4), m4));
      // repack GEMM: _mm512_mul_ps(col_scale_f32, row_scale_f32)
      scale[r] = _mm512_mul_ps(_mm512_set1_ps(half_to_float(blk->d)), da);
      isum[r] = _mm512_setzero_si512();
    }
    const int8_t* xs = a.qs + b * (8 * kTokenGroup * 4);
    for (int k = 0; k < 8; ++k) {
      const __m512i x = _mm512_loadu_si512(xs + k * kTokenGroup * 4);
      for (int r = 0; r < R; ++r) isum[r] = _mm512_dpbusd_epi32(isum[r], _mm512_set1_epi32(load_i32(wq[r] + 4 * k)), x);
    }
    const __m512i off = _mm512_slli_epi32(_mm512_loadu_si512(a.sum + b * kTokenGroup), 3);
    for (int r = 0; r < R; ++r)
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(isum[r], off)), scale[r], acc[r]);
  }
  for (int r = 0; r < R; ++r) store_tokens(acc[r], n_valid, y + r, ldy);
}

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j from the 12 packed bytes.
inline void q4_K_scale_min(const uint8_t* q, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

template <int R, bool kPerPair>
void q4_K_repack_rows(const uint8_t* w, size_t row_bytes, const PackedQ8_K& a, int t_begin, int t_end, float* y,
                      int64_t ldy) {
  __m512 acc[R], acc_min[R];
  for (int r = 0; r < R; ++r) acc[r] = acc_min[r] = _mm512_setzero_ps();
  alignas(64) uint8_t wq[R][QK_K];  // the 256 quants 0..15, element i at byte i
  int sc[R][8], mn[R][8];
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int64_t b = 0; b < a.n_blocks; ++b) {
    const __m512 da = _mm512_loadu_ps(a.d + b * kTokenGroup);
    __m512 scale[R], scale_min[R];
    for (int r = 0; r < R; ++r) {
      const auto* blk = reinterpret_cast<const block_q4_K*>(w + static_cast<size_t>(r) * row_bytes) + b;
      // 32 bytes of qs hold sub-block 2i (low nibbles) and 2i+1 (high nibbles).
      for (int i = 0; i < 4; ++i) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs + 32 * i));
        _mm256_store_si256(reinterpret_cast<__m256i*>(wq[r] + 64 * i), _mm256_and_si256(q, m4));
        _mm256_store_si256(reinterpret_cast<__m256i*>(wq[r] + 64 * i + 32), _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
      }
      for (int j = 0; j < 8; ++j) q4_K_scale_min(blk->scales, j, &sc[r][j], &mn[r][j]);
      scale[r] = _mm512_mul_ps(_mm512_set1_ps(half_to_float(blk->d)), da);
      scale_min[r] = _mm512_mul_ps(_mm512_set1_ps(half_to_float(blk->dmin)), da);
    }
    const int8_t* xs = a.qs + b * (64 * kTokenGroup * 4);
    __m512i isum[R], imin[R];
    for (int r = 0; r < R; ++r) isum[r] = imin[r] = _mm512_setzero_si512();
    for (int j = 0; j < 8; ++j) {
      __m512i t[R];
      for (int r = 0; r < R; ++r) t[r] = _mm512_setzero_si512();
      for (int k = 0; k < 8; ++k) {
        const __m512i x = _mm512_loadu_si512(xs + (8 * j + k) * kTokenGroup * 4);
        for (int r = 0; r < R; ++r) t[r] = _mm512_dpbusd_epi32(t[r], _mm512_set1_epi32(load_i32(wq[r] + 32 * j + 4 * k)), x);
      }
      const __m512i bs = _mm512_loadu_si512(a.bsum + (b * 8 + j) * kTokenGroup);
      for (int r = 0; r < R; ++r) {
        isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(t[r], _mm512_set1_epi32(sc[r][j])));
        imin[r] = _mm512_add_epi32(imin[r], _mm512_mullo_epi32(bs, _mm512_set1_epi32(mn[r][j])));
      }
      // The GEMM (4-token groups) rounds after every pair of sub-blocks, the GEMV once per
      // super-block (ggml_gemm_q4_K_8x8_q8_K's `sb` loop vs ggml_gemv_q4_K_8x8_q8_K).
      if ((kPerPair && j % 2 == 1) || j == 7) {
        for (int r = 0; r < R; ++r) {
          acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r]), scale[r], acc[r]);
          acc_min[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin[r]), scale_min[r], acc_min[r]);
          isum[r] = imin[r] = _mm512_setzero_si512();
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    alignas(64) float tmp[kTokenGroup];
    _mm512_store_ps(tmp, _mm512_sub_ps(acc[r], acc_min[r]));
    for (int t = t_begin; t < t_end; ++t) y[t * ldy + r] = tmp[t];
  }
}

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }

// tinyBLAS::gemm_bloc<RM, RN> with KN = 16: one 16-lane accumulator per output. T: float, or
// uint16_t for F16 weights against F16 activations (tinyBLAS<16, __m512, __m512, ggml_fp16_t,
// ggml_fp16_t>, which widens both with vcvtph2ps before the fma).
template <int RM, int RN, typename T>
void tiny16_bloc(const T* w, int64_t ldw, int64_t n_cols, const T* x, float* y, int64_t ldy) {
  __m512 c[RN][RM];
  for (int j = 0; j < RN; ++j)
    for (int i = 0; i < RM; ++i) c[j][i] = _mm512_setzero_ps();
  for (int64_t l = 0; l < n_cols; l += 16) {
    __m512 av[RM];
    for (int i = 0; i < RM; ++i) av[i] = load16(w + i * ldw + l);
    for (int j = 0; j < RN; ++j) {
      const __m512 bv = load16(x + j * n_cols + l);
      for (int i = 0; i < RM; ++i) c[j][i] = _mm512_fmadd_ps(av[i], bv, c[j][i]);
    }
  }
  for (int j = 0; j < RN; ++j)
    for (int i = 0; i < RM; ++i) y[j * ldy + i] = _mm512_reduce_add_ps(c[j][i]);
}

template <int RM, typename T>
void tiny16_bloc_tokens(int rn, const T* w, int64_t ldw, int64_t n_cols, const T* x, float* y, int64_t ldy) {
  switch (rn) {
    case 6: return tiny16_bloc<RM, 6>(w, ldw, n_cols, x, y, ldy);
    case 5: return tiny16_bloc<RM, 5>(w, ldw, n_cols, x, y, ldy);
    case 4: return tiny16_bloc<RM, 4>(w, ldw, n_cols, x, y, ldy);
    case 3: return tiny16_bloc<RM, 3>(w, ldw, n_cols, x, y, ldy);
    case 2: return tiny16_bloc<RM, 2>(w, ldw, n_cols, x, y, ldy);
    default: return tiny16_bloc<RM, 1>(w, ldw, n_cols, x, y, ldy);
  }
}

template <typename T>
void tiny16(const T* w, int64_t ldw, int64_t n_rows, int64_t n_cols, const T* x, int64_t n_tokens, float* y,
            int64_t ldy) {
  // n_rows % 4 == 0 (tinyBLAS's own condition); tiles of 4 rows x up to 6 tokens.
  constexpr int kRn = 6;
  for (int64_t r = 0; r < n_rows; r += 4)
    for (int64_t t = 0; t < n_tokens; t += kRn)
      tiny16_bloc_tokens<4>(static_cast<int>(std::min<int64_t>(kRn, n_tokens - t)), w + r * ldw, ldw, n_cols,
                            x + t * n_cols, y + t * ldy + r, ldy);
}

}  // namespace

void f32_tiny16(const float* w, int64_t ldw, int64_t n_rows, int64_t n_cols, const float* x, int64_t n_tokens,
                float* y, int64_t ldy) {
  tiny16(w, ldw, n_rows, n_cols, x, n_tokens, y, ldy);
}

void f16_tiny16(const uint16_t* w, int64_t ldw, int64_t n_rows, int64_t n_cols, const uint16_t* x, int64_t n_tokens,
                float* y, int64_t ldy) {
  tiny16(w, ldw, n_rows, n_cols, x, n_tokens, y, ldy);
}

void f32_vec_dot(const float* w, int64_t ldw, int64_t n_rows, int64_t n_cols, const float* x, int64_t n_tokens,
                 float* y, int64_t ldy) {
  const int64_t np = n_cols & ~static_cast<int64_t>(63);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * n_cols;
    for (int64_t r = 0; r < n_rows; ++r) {
      const float* wr = w + r * ldw;
      __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
      for (int64_t i = 0; i < np; i += 64)
        for (int j = 0; j < 4; ++j) s[j] = _mm512_fmadd_ps(_mm512_loadu_ps(wr + i + 16 * j), _mm512_loadu_ps(xt + i + 16 * j), s[j]);
      s[0] = _mm512_add_ps(s[0], s[2]);
      s[1] = _mm512_add_ps(s[1], s[3]);
      s[0] = _mm512_add_ps(s[0], s[1]);
      float sum = _mm512_reduce_add_ps(s[0]);
      // ggml's leftovers, `sumf += x[i]*y[i]`, as the shipped build compiled them: vectorized 16
      // and then 8 at a time (rounded products added in order), and the last n % 8 in the scalar
      // epilogue, contracted to fused multiply-adds (kernels/ggml_ops.cc dot_f32_vec, checked
      // against libggml-cpu-zen4's ggml_vec_dot_f32).
      const int64_t plain_end = n_cols - (n_cols - np) % 8;
      for (int64_t i = np; i < plain_end; ++i) sum += wr[i] * xt[i];
      for (int64_t i = plain_end; i < n_cols; ++i) sum = std::fma(wr[i], xt[i], sum);
      y[t * ldy + r] = sum;
    }
  }
}

size_t packed_q8_0_bytes(int64_t n_blocks) {
  return static_cast<size_t>(n_blocks) *
             (8 * kTokenGroup * 4 + kTokenGroup * sizeof(float) + 9 * kTokenGroup * sizeof(int32_t)) + 64;
}

PackedQ8_0 pack_q8_0(const uint8_t* act, size_t act_row_bytes, int n, int64_t n_blocks, void* buf) {
  PackedQ8_0 p;
  p.n_blocks = n_blocks;
  auto* base = static_cast<uint8_t*>(buf);
  p.qs = reinterpret_cast<int8_t*>(base);
  p.d = reinterpret_cast<float*>(base + n_blocks * 8 * kTokenGroup * 4);
  p.sum = reinterpret_cast<int32_t*>(p.d + n_blocks * kTokenGroup);
  p.bias4 = p.sum + n_blocks * kTokenGroup;
  for (int64_t b = 0; b < n_blocks; ++b) {
    int8_t* qs = p.qs + b * 8 * kTokenGroup * 4;
    for (int t = 0; t < kTokenGroup; ++t) {
      float d = 0.0f;
      int32_t s = 0;
      if (t < n) {
        const auto* blk = reinterpret_cast<const block_q8_0*>(act + static_cast<size_t>(t) * act_row_bytes) + b;
        d = half_to_float(blk->d);
        for (int k = 0; k < 8; ++k) {
          std::memcpy(qs + (k * kTokenGroup + t) * 4, blk->qs + 4 * k, 4);
          const int32_t s4 = blk->qs[4 * k] + blk->qs[4 * k + 1] + blk->qs[4 * k + 2] + blk->qs[4 * k + 3];
          p.bias4[(b * 8 + k) * kTokenGroup + t] = -128 * s4;
          s += s4;
        }
      } else {
        for (int k = 0; k < 8; ++k) {
          std::memset(qs + (k * kTokenGroup + t) * 4, 0, 4);
          p.bias4[(b * 8 + k) * kTokenGroup + t] = 0;
        }
      }
      p.d[b * kTokenGroup + t] = d;
      p.sum[b * kTokenGroup + t] = s;
    }
  }
  return p;
}

size_t packed_q8_K_bytes(int64_t n_blocks) {
  return static_cast<size_t>(n_blocks) * (64 * kTokenGroup * 4 + kTokenGroup * sizeof(float) + 8 * kTokenGroup * sizeof(int32_t)) + 64;
}

PackedQ8_K pack_q8_K(const uint8_t* act, size_t act_row_bytes, int n, int64_t n_blocks, void* buf) {
  PackedQ8_K p;
  p.n_blocks = n_blocks;
  auto* base = static_cast<uint8_t*>(buf);
  p.qs = reinterpret_cast<int8_t*>(base);
  p.d = reinterpret_cast<float*>(base + n_blocks * 64 * kTokenGroup * 4);
  p.bsum = reinterpret_cast<int32_t*>(p.d + n_blocks * kTokenGroup);
  for (int64_t b = 0; b < n_blocks; ++b) {
    int8_t* qs = p.qs + b * 64 * kTokenGroup * 4;
    for (int t = 0; t < kTokenGroup; ++t) {
      if (t < n) {
        const auto* blk = reinterpret_cast<const block_q8_K*>(act + static_cast<size_t>(t) * act_row_bytes) + b;
        p.d[b * kTokenGroup + t] = blk->d;
        for (int k = 0; k < 64; ++k) std::memcpy(qs + (k * kTokenGroup + t) * 4, blk->qs + 4 * k, 4);
        // ggml pairs the two 16-sums of each 32-sub-block (madd of bsums with the sub-block's min)
        for (int j = 0; j < 8; ++j) p.bsum[(b * 8 + j) * kTokenGroup + t] = blk->bsums[2 * j] + blk->bsums[2 * j + 1];
      } else {
        p.d[b * kTokenGroup + t] = 0.0f;
        for (int k = 0; k < 64; ++k) std::memset(qs + (k * kTokenGroup + t) * 4, 0, 4);
        for (int j = 0; j < 8; ++j) p.bsum[(b * 8 + j) * kTokenGroup + t] = 0;
      }
    }
  }
  return p;
}

void q0_lanes8(Q0Weights type, const uint8_t* w, size_t row_bytes, int64_t n_rows, const PackedQ8_0& a, int n_valid,
               float* y, int64_t ldy) {
  const size_t block_bytes = type == Q0Weights::kQ8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
  int64_t r = 0;
  for (; r + 3 <= n_rows; r += 3) q0_lanes8_rows<3>(type, w + r * row_bytes, row_bytes, block_bytes, a, n_valid, y + r, ldy);
  for (; r < n_rows; ++r) q0_lanes8_rows<1>(type, w + r * row_bytes, row_bytes, block_bytes, a, n_valid, y + r, ldy);
}

void q4_0_repack(const uint8_t* w, size_t row_bytes, int64_t n_rows, const PackedQ8_0& a, int n_valid, float* y,
                 int64_t ldy) {
  int64_t r = 0;
  for (; r + 4 <= n_rows; r += 4) q4_0_repack_rows<4>(w + r * row_bytes, row_bytes, a, n_valid, y + r, ldy);
  for (; r < n_rows; ++r) q4_0_repack_rows<1>(w + r * row_bytes, row_bytes, a, n_valid, y + r, ldy);
}

void q4_K_repack(const uint8_t* w, size_t row_bytes, int64_t n_rows, const PackedQ8_K& a, int t_begin, int t_end,
                 bool gemm_order, float* y, int64_t ldy) {
  int64_t r = 0;
  if (gemm_order) {
    for (; r + 4 <= n_rows; r += 4) q4_K_repack_rows<4, true>(w + r * row_bytes, row_bytes, a, t_begin, t_end, y + r, ldy);
    for (; r < n_rows; ++r) q4_K_repack_rows<1, true>(w + r * row_bytes, row_bytes, a, t_begin, t_end, y + r, ldy);
  } else {
    for (; r + 4 <= n_rows; r += 4) q4_K_repack_rows<4, false>(w + r * row_bytes, row_bytes, a, t_begin, t_end, y + r, ldy);
    for (; r < n_rows; ++r) q4_K_repack_rows<1, false>(w + r * row_bytes, row_bytes, a, t_begin, t_end, y + r, ldy);
  }
}

}  // namespace shrink::kernels::gemm_avx512
