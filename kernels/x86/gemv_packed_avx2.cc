// AVX2 (+FMA, F16C) kernels of the packed GEMV (kernels/gemv_packed.h has the layout), for CPUs
// without AVX-512 VNNI. A 16-row group is two 256-bit halves (rows 0-7 and 8-15): one load holds
// one 4-byte group of each of 8 rows, so the integer sums advance 8 rows per instruction with no
// reductions; the float steps are gemv()'s (ggml's order), as in gemv_packed_avx512.cc.
//
// Without vpdpbusd the byte products go through vpmaddubsw (unsigned x signed bytes -> int16 sums
// of two products, saturating) and vpmaddwd (int16 pairs -> int32). The bounds that keep every
// int16 exact:
//  - Q4_0 / Q4_K: nibble q in 0..15 times an activation byte a in -128..127 is at most 1920 in
//    magnitude, so a pair is <= 3840 and up to 8 pair sums (16 products) can be added in int16:
//    16 * 1920 = 30720 < 32767. Q4_0 adds the 16 low- and high-nibble products of a row's dword
//    lane over the block's four groups (30720), Q4_K the 8 groups of one sub-block (30720).
//    Q4_0's q - 8 offset goes through the start value -8 * sum(a), as in the AVX-512 kernels.
//  - Q8_0: the stored byte is q xor 0x80; with q restored, ggml's sign trick |q| * sign(a, q)
//    gives q * a with |q| <= 128 and |a| <= 127 (quantize_row_q8_0 rounds x / (amax / 127), so
//    no activation code is -128): a pair is at most 2 * 128 * 127 = 32512 < 32767.
//
// Template NP: 1 or 2 panels side by side (two memory streams per core) and the software
// prefetch ~2.3 KB ahead, as in the AVX-512 kernels. Both pay here too (bench_gemv --isa avx2
// --cpu-clock, 256 MB, 2 threads on a 2-core AVX-512 machine, three alternating runs, fraction of the
// read anchor, Q8_0 / Q4_0 / Q4_K): as written 0.88-0.95 / 0.88-1.04 / 0.89-0.96; without the
// prefetch 0.73-0.75 / 0.77-0.79 / 0.59-0.68; one panel at a time 0.67-0.85 / 0.62-0.81 /
// 0.56-0.57. The AVX2 gemv() in place reached 0.61-0.68 / 0.46-0.48 / 0.57-0.63 in those runs.
#include <immintrin.h>

#include <cstring>

#include "kernels/quant_types.h"
#include "kernels/x86/gemv_x86.h"
#include "kernels/x86/gemv_simd_common.h"

namespace shrink::kernels::avx2 {
namespace {

inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
inline __m256i bcast32(const void* p) { return _mm256_set1_epi32(load32(p)); }
// 8 fp16 values at p (one per row) times a scalar, as floats.
inline __m256 f16x8_times(const uint8_t* p, float s) { return _mm256_mul_ps(_mm256_cvtph_ps(load128(p)), _mm256_set1_ps(s)); }


// Unsigned nibble bytes times signed bytes: int16 sums of adjacent pairs.
inline __m256i mul_pairs(__m256i u, __m256i s) { return _mm256_maddubs_epi16(u, s); }
inline __m256i low_nibbles(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0F)); }
inline __m256i high_nibbles(__m256i v) { return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F)); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Q4_0 (repacked-8 order): per block acc = fma(float(isum), d_w * d_a, acc). Scratch per block:
// the start value -8 * sum(a) and d_a as float (the AVX-512 kernels' layout).

namespace {
struct Q4_0Prep {
  int32_t corr;
  float da;
};
constexpr size_t kQ4_0Unit = 16 * sizeof(block_q4_0);

template <int NP>
void q4_0_panels(const uint8_t* const* pn, int64_t nb, const block_q8_0* a, const Q4_0Prep* prep, float* const* y) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[NP][2];
  for (int p = 0; p < NP; ++p) acc[p][0] = acc[p][1] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const size_t at = static_cast<size_t>(b) * kQ4_0Unit;
    for (int p = 0; p < NP; ++p) prefetch_ahead(pn[p] + at, 5);  // 288 bytes: 4.5 lines
    const __m256i corr = _mm256_set1_epi32(prep[b].corr);
    for (int p = 0; p < NP; ++p) {
      for (int h = 0; h < 2; ++h) {
        // Group i, row lane r: qs[4i .. 4i + 3] of row 8h + r; low nibbles meet a[4i ..], high
        // ones a[16 + 4i ..]. All 32 products of a row end in its int16 pair (bound above).
        __m256i s16 = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          const __m256i v = load256(pn[p] + at + 64 * i + 32 * h);
          s16 = _mm256_add_epi16(s16, _mm256_add_epi16(mul_pairs(low_nibbles(v), bcast32(a[b].qs + 4 * i)),
                                                        mul_pairs(high_nibbles(v), bcast32(a[b].qs + 16 + 4 * i))));
        }
        const __m256i isum = _mm256_add_epi32(_mm256_madd_epi16(s16, ones), corr);
        const __m256 d = f16x8_times(pn[p] + at + 256 + 16 * h, prep[b].da);
        acc[p][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc[p][h]);
      }
    }
  }
  for (int p = 0; p < NP; ++p) {
    _mm256_storeu_ps(y[p], acc[p][0]);
    _mm256_storeu_ps(y[p] + 8, acc[p][1]);
  }
}
}  // namespace

size_t packed_q4_0_scratch(int64_t n_cols) { return static_cast<size_t>(n_cols / QK4_0) * sizeof(Q4_0Prep); }

void packed_q4_0_prepare(const void* act, int64_t n_cols, void* scratch) {
  const auto* a = static_cast<const block_q8_0*>(act);
  auto* prep = static_cast<Q4_0Prep*>(scratch);
  for (int64_t b = 0; b < n_cols / QK8_0; ++b) {
    int32_t sum = 0;
    for (int j = 0; j < QK8_0; ++j) sum += a[b].qs[j];
    prep[b].corr = -8 * sum;
    prep[b].da = _cvtsh_ss(a[b].d);
  }
}

void packed_q4_0_panels(const uint8_t* const* panels, int n, int64_t n_cols, const void* act, const void* scratch,
                        float* const* y) {
  const auto* a = static_cast<const block_q8_0*>(act);
  const auto* prep = static_cast<const Q4_0Prep*>(scratch);
  if (n == 2)
    q4_0_panels<2>(panels, n_cols / QK4_0, a, prep, y);
  else
    q4_0_panels<1>(panels, n_cols / QK4_0, a, prep, y);
}

// ---------------------------------------------------------------------------------------------
// Q8_0 (vec_dot order): ggml's eight float lanes per row, lane k taking the sum of bytes
// 4k..4k+3 of each block, then hsum_float_8. Row r's 32 bytes of a unit are at 32 r (row pair
// q at 64 q), so one 256-bit load is one row and every lane is one of ggml's. Sixteen rows need
// sixteen 8-lane accumulators per panel: more than the 16 ymm registers, so some live in L1
// (one load and store per row and block, far below the loads the products need). Scratch: d_a
// of every block as float.

namespace {
constexpr size_t kQ8_0Unit = 16 * sizeof(block_q8_0);

template <int NP>
void q8_0_panels(const uint8_t* const* pn, int64_t nb, const block_q8_0* a, const float* da, float* const* y) {
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80)), ones = _mm256_set1_epi16(1);
  __m256 acc[NP][16];
  for (int p = 0; p < NP; ++p)
    for (int r = 0; r < 16; ++r) acc[p][r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const size_t at = static_cast<size_t>(b) * kQ8_0Unit;
    for (int p = 0; p < NP; ++p) prefetch_ahead(pn[p] + at, 9);  // 544 bytes: 8.5 lines
    const __m256i av = load256(a[b].qs);
    for (int p = 0; p < NP; ++p) {
      alignas(32) float d[16];  // d_w * d_a of rows 0..15
      _mm256_store_ps(d, f16x8_times(pn[p] + at + 512, da[b]));
      _mm256_store_ps(d + 8, f16x8_times(pn[p] + at + 528, da[b]));
#pragma GCC unroll 16
      for (int r = 0; r < 16; ++r) {
        const __m256i q = _mm256_xor_si256(load256(pn[p] + at + 32 * r), flip);
        const __m256i isum = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(av, q)), ones);
        acc[p][r] = _mm256_fmadd_ps(_mm256_set1_ps(d[r]), _mm256_cvtepi32_ps(isum), acc[p][r]);
      }
    }
  }
  for (int p = 0; p < NP; ++p)
    for (int r = 0; r < 16; ++r) y[p][r] = hsum_float_8(acc[p][r]);
}
}  // namespace

size_t packed_q8_0_scratch(int64_t n_cols) { return static_cast<size_t>(n_cols / QK8_0) * sizeof(float); }

void packed_q8_0_prepare(const void* act, int64_t n_cols, void* scratch) {
  const auto* a = static_cast<const block_q8_0*>(act);
  auto* da = static_cast<float*>(scratch);
  for (int64_t b = 0; b < n_cols / QK8_0; ++b) da[b] = _cvtsh_ss(a[b].d);
}

void packed_q8_0_panels(const uint8_t* const* panels, int n, int64_t n_cols, const void* act, const void* scratch,
                        float* const* y) {
  const auto* a = static_cast<const block_q8_0*>(act);
  const auto* da = static_cast<const float*>(scratch);
  if (n == 2)
    q8_0_panels<2>(panels, n_cols / QK8_0, a, da, y);
  else
    q8_0_panels<1>(panels, n_cols / QK8_0, a, da, y);
}

// ---------------------------------------------------------------------------------------------
// Q4_K (repacked-8 order): per super-block acc = fma(float(sum_s sc_s isum_s), d_w * d_a, acc)
// and acc_min = fma(float(sum_s m_s (bsum_2s + bsum_2s+1)), dmin_w * d_a, acc_min); y = acc -
// acc_min. Scales and mins of 8 rows are unpacked side by side from the three scale groups
// (ggml's get_scale_min_k4 on every lane), then each sub-block's int16 sums meet their scale
// in one vpmaddwd. Scratch per super-block: the pair sums bp_s = bsum_2s + bsum_2s+1 as int16
// pairs (bp0, bp2), (bp1, bp3), (bp4, bp6), (bp5, bp7) (the AVX-512 kernels' layout).

namespace {
constexpr size_t kQ4_KUnit = 16 * sizeof(block_q4_K);

// Byte K of every dword lane, zero-extended into both of its int16 halves.
template <int K>
inline __m256i words_of_byte(__m256i v) {
  const __m256i idx = _mm256_setr_epi8(K, -1, K, -1, 4 + K, -1, 4 + K, -1, 8 + K, -1, 8 + K, -1, 12 + K, -1, 12 + K, -1,
                                       K, -1, K, -1, 4 + K, -1, 4 + K, -1, 8 + K, -1, 8 + K, -1, 12 + K, -1, 12 + K, -1);
  return _mm256_shuffle_epi8(v, idx);
}

template <int NP>
void q4_K_panels(const uint8_t* const* pn, int64_t nb, const block_q8_K* a, const int32_t* bp, float* const* y) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), low6 = _mm256_set1_epi8(0x3F), bits45 = _mm256_set1_epi8(0x30);
  const __m256i even_words = _mm256_set1_epi32(0x00FF00FF);
  __m256 acc[NP][2], acc_min[NP][2];
  for (int p = 0; p < NP; ++p)
    for (int h = 0; h < 2; ++h) acc[p][h] = acc_min[p][h] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const size_t at = static_cast<size_t>(b) * kQ4_KUnit;
    const int8_t* aq = a[b].qs;
    const uint8_t* u[NP];
    __m256i sc_lo[NP][2], sc_hi[NP][2], isum[NP][2];
    for (int p = 0; p < NP; ++p) {
      u[p] = pn[p] + at;
      for (int h = 0; h < 2; ++h) {
        const __m256i u0 = load256(u[p] + 64 + 32 * h), u1 = load256(u[p] + 128 + 32 * h),
                      u2 = load256(u[p] + 192 + 32 * h);
        // Per row lane: sc0..3 | sc4..7 | m0..3 | m4..7, one byte each.
        sc_lo[p][h] = _mm256_and_si256(u0, low6);
        sc_hi[p][h] =
            _mm256_or_si256(_mm256_and_si256(u2, low4), _mm256_and_si256(_mm256_srli_epi32(u0, 2), bits45));
        const __m256i m_lo = _mm256_and_si256(u1, low6);
        const __m256i m_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), low4),
                                             _mm256_and_si256(_mm256_srli_epi32(u1, 2), bits45));
        // Mins: (m0, m2) . (bp0, bp2) + (m1, m3) . (bp1, bp3) + the same for 4..7.
        __m256i imin = _mm256_madd_epi16(_mm256_and_si256(m_lo, even_words), _mm256_set1_epi32(bp[4 * b]));
        imin = _mm256_add_epi32(imin, _mm256_madd_epi16(_mm256_and_si256(_mm256_srli_epi32(m_lo, 8), even_words),
                                                        _mm256_set1_epi32(bp[4 * b + 1])));
        imin = _mm256_add_epi32(imin, _mm256_madd_epi16(_mm256_and_si256(m_hi, even_words), _mm256_set1_epi32(bp[4 * b + 2])));
        imin = _mm256_add_epi32(imin, _mm256_madd_epi16(_mm256_and_si256(_mm256_srli_epi32(m_hi, 8), even_words),
                                                        _mm256_set1_epi32(bp[4 * b + 3])));
        acc_min[p][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin), f16x8_times(u[p] + 32 + 16 * h, a[b].d), acc_min[p][h]);
        isum[p][h] = _mm256_setzero_si256();
      }
    }
    // qs bytes 32j .. 32j + 31 hold sub-block 2j (low nibbles) and 2j + 1 (high); the panels
    // take turns every 512 bytes, so both streams advance together.
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      for (int p = 0; p < NP; ++p) {
        prefetch_ahead(u[p] + 64 * 9 * j, 9);  // a quarter of the 36 lines of a unit
        for (int h = 0; h < 2; ++h) {
          __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
#pragma GCC unroll 8
          for (int c = 0; c < 8; ++c) {
            const __m256i v = load256(u[p] + 256 + 64 * (8 * j + c) + 32 * h);
            lo = _mm256_add_epi16(lo, mul_pairs(_mm256_and_si256(v, low4), bcast32(aq + 64 * j + 4 * c)));
            hi = _mm256_add_epi16(
                hi, mul_pairs(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4), bcast32(aq + 64 * j + 32 + 4 * c)));
          }
          const __m256i sc = j < 2 ? sc_lo[p][h] : sc_hi[p][h];
          const __m256i sc_a = j % 2 == 0 ? words_of_byte<0>(sc) : words_of_byte<2>(sc);
          const __m256i sc_b = j % 2 == 0 ? words_of_byte<1>(sc) : words_of_byte<3>(sc);
          isum[p][h] = _mm256_add_epi32(isum[p][h],
                                        _mm256_add_epi32(_mm256_madd_epi16(lo, sc_a), _mm256_madd_epi16(hi, sc_b)));
        }
      }
    }
    for (int p = 0; p < NP; ++p)
      for (int h = 0; h < 2; ++h)
        acc[p][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[p][h]), f16x8_times(u[p] + 16 * h, a[b].d), acc[p][h]);
  }
  for (int p = 0; p < NP; ++p)
    for (int h = 0; h < 2; ++h) _mm256_storeu_ps(y[p] + 8 * h, _mm256_sub_ps(acc[p][h], acc_min[p][h]));
}
}  // namespace

size_t packed_q4_K_scratch(int64_t n_cols) { return static_cast<size_t>(n_cols / QK_K) * 4 * sizeof(int32_t); }

void packed_q4_K_prepare(const void* act, int64_t n_cols, void* scratch) {
  const auto* a = static_cast<const block_q8_K*>(act);
  auto* bp = static_cast<int32_t*>(scratch);
  for (int64_t b = 0; b < n_cols / QK_K; ++b) {
    int32_t s[8];
    for (int k = 0; k < 8; ++k) s[k] = a[b].bsums[2 * k] + a[b].bsums[2 * k + 1];
    auto pair = [](int32_t lo, int32_t hi) {
      return static_cast<int32_t>((static_cast<uint32_t>(hi) << 16) | (static_cast<uint32_t>(lo) & 0xFFFF));
    };
    bp[4 * b] = pair(s[0], s[2]);
    bp[4 * b + 1] = pair(s[1], s[3]);
    bp[4 * b + 2] = pair(s[4], s[6]);
    bp[4 * b + 3] = pair(s[5], s[7]);
  }
}

void packed_q4_K_panels(const uint8_t* const* panels, int n, int64_t n_cols, const void* act, const void* scratch,
                        float* const* y) {
  const auto* a = static_cast<const block_q8_K*>(act);
  const auto* bp = static_cast<const int32_t*>(scratch);
  if (n == 2)
    q4_K_panels<2>(panels, n_cols / QK_K, a, bp, y);
  else
    q4_K_panels<1>(panels, n_cols / QK_K, a, bp, y);
}

}  // namespace shrink::kernels::avx2
