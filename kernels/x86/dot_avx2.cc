// AVX2 dot products (compiled with -mavx2 -mfma -mf16c). Integer parts are exact for every
// input byte, including -128 activations:
//  - unsigned weight quants (4/5/6-bit, Q2_K/Q3_K's offset quants) go through vpmaddubsw as the
//    unsigned operand; a pair sum is at most 63 * 128 * 2 = 16128 < 32767, so it never saturates,
//    and the -8/-16/-32/-4 offsets are subtracted as offset * y pair sums in the same 16-bit lane
//    (never through the bsums in other lanes: every int32 lane must be a true partial sum of the
//    products, or a row of zero weights, quants at the offset, leaves float rounding residue);
//  - signed weights (Q8_0) are widened to 16 bits (vpmaddwd), so -128 * -128 is exact;
//  - IQ4 grid values (|v| <= 127) take the sign of the activation and pair with |activation|
//    (|-128| = 128 as an unsigned byte): at most 127 * 128 * 2 = 32512.
// Float parts: one fused multiply-add per block (or super-block) into eight lanes, summed at the
// end: the reference's order differs, hence the bound in tests/test_kernels_dot.cc. For Q4_0,
// Q8_0, Q4_1, Q5_0 and Q5_1 the lanes hold the same integers (sums of four consecutive
// byte products) and are accumulated and reduced in the same order as ggml's x86 kernels
// (ggml-cpu/arch/x86/quants.c, and llamafile's tinyBLAS for batches), so their float results
// are the ones llama.cpp computes on x86; the activation roundings that follow then agree too.
#include <immintrin.h>

#include <cstring>

#include "kernels/dot.h"
#include "kernels/fp16.h"
#include "kernels/quant_types.h"
#include "kernels/x86/dot_x86.h"

namespace shrink::kernels::avx2 {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Unsigned bytes u (pairs summing below 32768) times signed bytes s, summed in fours: int32 x 8.
inline __m256i dot_us(__m256i u, __m256i s) { return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)); }

// 16 bytes of packed nibbles -> 32 bytes: low nibbles (elements 0..15) in the low lane, high
// nibbles (elements 16..31) in the high lane, the layout of Q4_0/Q4_1/Q5_*/IQ4_NL/IQ4_XS blocks.
inline __m256i nibbles32(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i v = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
  return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

// Bit k of qh -> byte k = 0xFF (set) or 0x00, k = 0..31.
inline __m256i bits_to_bytes(uint32_t qh) {
  const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(qh)), spread);
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

// 16 int16 lanes: eight copies of a, then eight of b (scales of two 16-weight sub-blocks).
inline __m256i two_scales(int a, int b) {
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(b)), _mm_set1_epi16(static_cast<int16_t>(a)));
}

inline __m256i iq4_grid() {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kValuesIq4nl)));
}

// Signed grid values v (|v| <= 127) times signed activations y, exact for y = -128.
inline __m256i dot_ss_grid(__m256i v, __m256i y) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(y, y), _mm256_sign_epi8(v, y)), _mm256_set1_epi16(1));
}

}  // namespace

float vec_dot_f32(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const float*>(vw);
  const auto* a = static_cast<const float*>(va);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(a + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(a + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(a + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(a + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(a + i), s0);
  float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) s += w[i] * a[i];
  return s;
}

float vec_dot_f16(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const uint16_t*>(vw);
  const auto* a = static_cast<const uint16_t*>(va);
  auto ld = [](const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); };
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(ld(w + i), ld(a + i), s0);
    s1 = _mm256_fmadd_ps(ld(w + i + 8), ld(a + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(ld(w + i), ld(a + i), s0);
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += h2f(w[i]) * h2f(a[i]);
  return s;
}

float vec_dot_bf16(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const uint16_t*>(vw);
  const auto* a = static_cast<const uint16_t*>(va);
  auto ld = [](const uint16_t* p) {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
  };
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(ld(w + i), ld(a + i), s0);
    s1 = _mm256_fmadd_ps(ld(w + i + 8), ld(a + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(ld(w + i), ld(a + i), s0);
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += bf16_to_fp32(w[i]) * bf16_to_fp32(a[i]);
  return s;
}

float vec_dot_q4_0_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q4_0*>(vw);
  const auto* y = static_cast<const block_q8_0*>(va);
  const __m256i eight = _mm256_set1_epi8(8);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK8_0; ++i) {
    const __m256i q = nibbles32(x[i].qs);
    const __m256i ya = load256(y[i].qs);
    // (q - 8) * y per pair: |.| <= 8 * 128 * 2, no saturation in either product.
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q, ya), _mm256_maddubs_epi16(eight, ya));
    const __m256i isum = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc);
}

float vec_dot_q4_1_q8_1(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q4_1*>(vw);
  const auto* y = static_cast<const block_q8_1*>(va);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0;
  for (int64_t i = 0; i < n / QK8_1; ++i) {
    const __m256i isum = dot_us(nibbles32(x[i].qs), load256(y[i].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(isum), acc);
    mins += h2f(x[i].m) * h2f(y[i].s);
  }
  return hsum(acc) + mins;
}

float vec_dot_q5_0_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q5_0*>(vw);
  const auto* y = static_cast<const block_q8_0*>(va);
  const __m256i sixteen = _mm256_set1_epi8(16);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK8_0; ++i) {
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, sizeof qh);
    const __m256i q = _mm256_or_si256(nibbles32(x[i].qs), _mm256_and_si256(bits_to_bytes(qh), sixteen));
    const __m256i ya = load256(y[i].qs);
    // (q - 16) * y per pair: |.| <= 16 * 128 * 2; q * y alone <= 31 * 128 * 2.
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q, ya), _mm256_maddubs_epi16(sixteen, ya));
    const __m256i isum = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc);
}

float vec_dot_q5_1_q8_1(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q5_1*>(vw);
  const auto* y = static_cast<const block_q8_1*>(va);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0;
  for (int64_t i = 0; i < n / QK8_1; ++i) {
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, sizeof qh);
    const __m256i q = _mm256_or_si256(nibbles32(x[i].qs), _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(16)));
    const __m256i isum = dot_us(q, load256(y[i].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(isum), acc);
    mins += h2f(x[i].m) * h2f(y[i].s);
  }
  return hsum(acc) + mins;
}

float vec_dot_q8_0_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q8_0*>(vw);
  const auto* y = static_cast<const block_q8_0*>(va);
  __m256 acc = _mm256_setzero_ps();
  auto wide = [](const int8_t* p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); };
  for (int64_t i = 0; i < n / QK8_0; ++i) {
    // Pair sums of bytes 0..15 (a) and 16..31 (b), then lane k = bytes 4k..4k+3: the grouping of
    // ggml's x86 kernel, so the float accumulation below rounds exactly as llama.cpp's does.
    const __m256i a = _mm256_madd_epi16(wide(x[i].qs), wide(y[i].qs));
    const __m256i b = _mm256_madd_epi16(wide(x[i].qs + 16), wide(y[i].qs + 16));
    const __m256i isum = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a, b), 0xD8);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc);
}

float vec_dot_iq4_nl_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_iq4_nl*>(vw);
  const auto* y = static_cast<const block_q8_0*>(va);
  const __m256i grid = iq4_grid();
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK4_NL; ++i) {
    const __m256i v = _mm256_shuffle_epi8(grid, nibbles32(x[i].qs));
    const __m256i isum = dot_ss_grid(v, load256(y[i].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc);
}

// ---- Super-block types against Q8_K (256 weights, float d, bsums per 16) ----

float vec_dot_q2_K_q8_K(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q2_K*>(vw);
  const auto* y = static_cast<const block_q8_K*>(va);
  const __m256i three = _mm256_set1_epi8(3);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales));
    const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(0x0F)));
    const int32_t msum = hsum_i32(_mm256_madd_epi16(load256(y[i].bsums), m16));
    __m256i isum = _mm256_setzero_si256();
    for (int c = 0; c < 2; ++c) {
      const __m256i q = load256(x[i].qs + 32 * c);
      for (int s = 0; s < 4; ++s) {
        const int j = 8 * c + 2 * s;  // sub-blocks j (low lane) and j + 1 (high lane)
        const __m256i u = _mm256_and_si256(_mm256_srli_epi16(q, 2 * s), three);
        const __m256i p = _mm256_maddubs_epi16(u, load256(y[i].qs + 128 * c + 32 * s));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, two_scales(x[i].scales[j] & 0xF, x[i].scales[j + 1] & 0xF)));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].d)), _mm256_cvtepi32_ps(isum), acc);
    mins += y[i].d * h2f(x[i].dmin) * static_cast<float>(msum);
  }
  return hsum(acc) - mins;
}

float vec_dot_q3_K_q8_K(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q3_K*>(vw);
  const auto* y = static_cast<const block_q8_K*>(va);
  const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int scales[16];
    ref::unpack_q3_K_scales(x[i].scales, scales);
    // Weight quant = u - 4 with u = low + 4 * high in 0..7: (u - 4) * y per byte pair, in the
    // lane of its own products (|.| <= 4 * 128 * 2). Subtracting 4 * sum sc * bsum instead puts
    // the offset in other lanes: the integers still cancel, but each lane's float product
    // rounds alone, so zero weights gave nonzero dots (e.g. -2^-13).
    const __m256i four = _mm256_set1_epi8(4);
    __m256i isum = _mm256_setzero_si256();
    const __m256i hm = load256(x[i].hmask);
    for (int c = 0; c < 2; ++c) {
      const __m256i q = load256(x[i].qs + 32 * c);
      for (int s = 0; s < 4; ++s) {
        const int j = 8 * c + 2 * s;
        const __m256i low = _mm256_and_si256(_mm256_srli_epi16(q, 2 * s), three);
        const __m256i high = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * c + s), one);
        const __m256i u = _mm256_or_si256(low, _mm256_slli_epi16(high, 2));
        const __m256i ya = load256(y[i].qs + 128 * c + 32 * s);
        const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(u, ya), _mm256_maddubs_epi16(four, ya));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, two_scales(scales[j], scales[j + 1])));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc);
}

namespace {
// Q4_K/Q5_K: the eight 6-bit scales and mins (ggml's get_scale_min_k4 layout).
inline void scales_mins_k4(const uint8_t* q, int16_t* sc, int16_t* m) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = q[j] & 63;
    m[j] = q[j + 4] & 63;
    sc[j + 4] = static_cast<int16_t>((q[j + 8] & 0xF) | ((q[j] >> 6) << 4));
    m[j + 4] = static_cast<int16_t>((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
  }
}

// Sum over sub-blocks j of m[j] * (bsums[2j] + bsums[2j+1]).
inline int32_t min_sum_k4(const int16_t* bsums, const int16_t* m) {
  alignas(32) int16_t m2[16];
  for (int j = 0; j < 8; ++j) m2[2 * j] = m2[2 * j + 1] = m[j];
  return hsum_i32(_mm256_madd_epi16(load256(bsums), load256(m2)));
}
}  // namespace

float vec_dot_q4_K_q8_K(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q4_K*>(vw);
  const auto* y = static_cast<const block_q8_K*>(va);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int16_t sc[8], m[8];
    scales_mins_k4(x[i].scales, sc, m);
    __m256i isum = _mm256_setzero_si256();
    for (int g = 0; g < 4; ++g) {
      const __m256i q = load256(x[i].qs + 32 * g);
      const __m256i lo = _mm256_and_si256(q, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
      const __m256i plo = _mm256_maddubs_epi16(lo, load256(y[i].qs + 64 * g));
      const __m256i phi = _mm256_maddubs_epi16(hi, load256(y[i].qs + 64 * g + 32));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * g])));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * g + 1])));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(isum), acc);
    mins += h2f(x[i].dmin) * y[i].d * static_cast<float>(min_sum_k4(y[i].bsums, m));
  }
  return hsum(acc) - mins;
}

float vec_dot_q5_K_q8_K(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q5_K*>(vw);
  const auto* y = static_cast<const block_q8_K*>(va);
  const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int16_t sc[8], m[8];
    scales_mins_k4(x[i].scales, sc, m);
    const __m256i qh = load256(x[i].qh);
    __m256i isum = _mm256_setzero_si256();
    for (int g = 0; g < 4; ++g) {
      const __m256i q = load256(x[i].qs + 32 * g);
      const __m256i hlo = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), one), 4);
      const __m256i hhi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * g + 1), one), 4);
      const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, low4), hlo);
      const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low4), hhi);
      const __m256i plo = _mm256_maddubs_epi16(lo, load256(y[i].qs + 64 * g));
      const __m256i phi = _mm256_maddubs_epi16(hi, load256(y[i].qs + 64 * g + 32));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * g])));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * g + 1])));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(isum), acc);
    mins += h2f(x[i].dmin) * y[i].d * static_cast<float>(min_sum_k4(y[i].bsums, m));
  }
  return hsum(acc) - mins;
}

float vec_dot_q6_K_q8_K(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_q6_K*>(vw);
  const auto* y = static_cast<const block_q8_K*>(va);
  const __m256i low4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK_K; ++i) {
    // Weight quant = u - 32, u in 0..63: (u - 32) * y per byte pair in its own lane (|.| <= 8192;
    // u * y alone <= 16128), as for Q3_K above: no offset through the bsums of other lanes.
    const __m256i thirty_two = _mm256_set1_epi8(32);
    __m256i isum = _mm256_setzero_si256();
    for (int c = 0; c < 2; ++c) {
      const __m256i a = load256(x[i].ql + 64 * c), b = load256(x[i].ql + 64 * c + 32);
      const __m256i h = load256(x[i].qh + 32 * c);
      const __m256i u[4] = {
          _mm256_or_si256(_mm256_and_si256(a, low4), _mm256_slli_epi16(_mm256_and_si256(h, three), 4)),
          _mm256_or_si256(_mm256_and_si256(b, low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), three), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), three), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), three), 4)),
      };
      for (int k = 0; k < 4; ++k) {
        const int j = 8 * c + 2 * k;
        const __m256i ya = load256(y[i].qs + 128 * c + 32 * k);
        const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(u[k], ya), _mm256_maddubs_epi16(thirty_two, ya));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, two_scales(x[i].scales[j], x[i].scales[j + 1])));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc);
}

float vec_dot_iq4_xs_q8_K(int64_t n, const void* vw, const void* va) {
  const auto* x = static_cast<const block_iq4_xs*>(vw);
  const auto* y = static_cast<const block_q8_K*>(va);
  const __m256i grid = iq4_grid();
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK_K; ++i) {
    __m256i isum = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x[i].scales_h >> (2 * ib)) & 3) << 4);
      const __m256i v = _mm256_shuffle_epi8(grid, nibbles32(x[i].qs + 16 * ib));
      const __m256i ya = load256(y[i].qs + 32 * ib);
      const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(ya, ya), _mm256_sign_epi8(v, ya));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, _mm256_set1_epi16(static_cast<int16_t>(ls - 32))));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc);
}

}  // namespace shrink::kernels::avx2
