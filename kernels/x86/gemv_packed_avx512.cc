// AVX-512 (F, BW, VL, DQ, VNNI) kernels of the packed GEMV (kernels/gemv_packed.h has the
// layout). Every 512-bit weight load holds one 4-byte group of each of 16 rows, so one vpdpbusd
// against the broadcast activation group advances the 16 rows' integer sums; the float steps are
// gemv()'s (ggml's order), now one 16-lane FMA per block for all 16 rows.
//
// Template NP: 1 or 2 panels side by side. Two are two memory streams per core (the caller
// passes panels from the two halves of its range), which kept the prefetchers ahead: a first
// version of the Q4_0 kernel reached 0.93-0.98 of the read anchor with two, 0.64-0.79 with one.
//
// vpdpbusd multiplies unsigned by signed bytes: Q4 nibbles are used unsigned (q, not q - 8) and
// 8 * sum(a) of the block is subtracted through the accumulator's start value; Q8_0 weights are
// stored xor 0x80 (q + 128) and 128 * sum(a) is subtracted the same way. Exact for every byte.
#include <immintrin.h>

#include <cstring>

// GCC 12 warns inside its own _mm512_cvtph_ps and _mm512_reduce_add_ps: false positives.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "kernels/quant_types.h"
#include "kernels/x86/gemv_x86.h"
#include "kernels/x86/gemv_simd_common.h"

namespace shrink::kernels::avx512 {
namespace {

inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }
inline __m512i bcast32(const void* p) { return _mm512_set1_epi32(load32(p)); }
// 16 fp16 values at p (one per row) times a scalar, as floats.
inline __m512 f16x16_times(const uint8_t* p, float s) {
  return _mm512_mul_ps(_mm512_cvtph_ps(load256(p)), _mm512_set1_ps(s));
}


}  // namespace

// ---------------------------------------------------------------------------------------------
// Q4_0 (repacked-8 order): per block acc = fma(float(isum), d_w * d_a, acc). Scratch per block:
// the start value -8 * sum(a) and d_a as float.

namespace {
struct Q4_0Prep {
  int32_t corr;
  float da;
};
constexpr size_t kQ4_0Unit = 16 * sizeof(block_q4_0);

// The panels take turns every two blocks: 576 bytes, nine whole cache lines of one stream per
// turn. Turns of one block (288 bytes, 4.5 lines) or of one 64-byte group (the first version)
// streamed 11-24% slower (bench_gemv, three runs with the variants side by side).
template <int NP>
void q4_0_panels(const uint8_t* const* pn, int64_t nb, const block_q8_0* a, const Q4_0Prep* prep, float* const* y) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), high4 = _mm512_set1_epi8(static_cast<char>(0xF0));
  __m512 acc[NP];
  for (int p = 0; p < NP; ++p) acc[p] = _mm512_setzero_ps();
  for (int64_t b0 = 0; b0 < nb; b0 += 2) {
    const int64_t b1 = b0 + 2 < nb ? b0 + 2 : nb;
    for (int p = 0; p < NP; ++p) {
      for (int64_t b = b0; b < b1; ++b) {
        const size_t at = static_cast<size_t>(b) * kQ4_0Unit;
        prefetch_ahead(pn[p] + at, 5);  // 288 bytes: 4.5 lines
        __m512i lo = _mm512_set1_epi32(prep[b].corr), hi = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          const __m512i v = load512(pn[p] + at + 64 * i);
          lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v, low4), bcast32(a[b].qs + 4 * i));
          hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(v, high4), bcast32(a[b].qs + 16 + 4 * i));  // 16 x the products
        }
        const __m512 d = f16x16_times(pn[p] + at + 256, prep[b].da);
        const __m512i isum = _mm512_add_epi32(lo, _mm512_srai_epi32(hi, 4));  // exact: hi is a multiple of 16
        acc[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), d, acc[p]);
      }
    }
  }
  for (int p = 0; p < NP; ++p) _mm512_storeu_ps(y[p], acc[p]);
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
// 4k..4k+3 of each block, then hsum_float_8. A 512-bit load is one row pair (row 2q in lanes
// 0-7, 2q + 1 in 8-15), so every lane is one of ggml's. Scratch per block: eight int32 start
// values -128 * (a_4k + ... + a_4k+3), then d_a of every block.

namespace {
constexpr size_t kQ8_0Unit = 16 * sizeof(block_q8_0);

template <int NP>
void q8_0_panels(const uint8_t* const* pn, int64_t nb, const block_q8_0* a, const int32_t* corr, const float* da,
                 float* const* y) {
  __m512 acc[NP][8];
  for (int p = 0; p < NP; ++p)
    for (int q = 0; q < 8; ++q) acc[p][q] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const size_t at = static_cast<size_t>(b) * kQ8_0Unit;
    const __m512i av = _mm512_broadcast_i64x4(load256(a[b].qs));
    const __m512i cv = _mm512_broadcast_i64x4(load256(corr + 8 * b));
    for (int p = 0; p < NP; ++p) {
      // Each panel's prefetch just before its own turn: both at the start of the block streamed
      // ~10% slower (bench_gemv, three runs side by side).
      prefetch_ahead(pn[p] + at, 9);  // 544 bytes: 8.5 lines
      const __m512 d = f16x16_times(pn[p] + at + 512, da[b]);  // d_w * d_a of rows 0..15
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q) {
        const __m512i isum = _mm512_dpbusd_epi32(cv, load512(pn[p] + at + 64 * q), av);
        // lanes 0-7: row 2q's product, 8-15: row 2q + 1's.
        const __m512 dq = _mm512_permutexvar_ps(
            _mm512_set_epi32(2 * q + 1, 2 * q + 1, 2 * q + 1, 2 * q + 1, 2 * q + 1, 2 * q + 1, 2 * q + 1, 2 * q + 1,
                             2 * q, 2 * q, 2 * q, 2 * q, 2 * q, 2 * q, 2 * q, 2 * q),
            d);
        acc[p][q] = _mm512_fmadd_ps(dq, _mm512_cvtepi32_ps(isum), acc[p][q]);
      }
    }
  }
  for (int p = 0; p < NP; ++p)
    for (int q = 0; q < 8; ++q) {
      y[p][2 * q] = hsum_float_8(_mm512_castps512_ps256(acc[p][q]));
      y[p][2 * q + 1] = hsum_float_8(_mm512_extractf32x8_ps(acc[p][q], 1));
    }
}
}  // namespace

size_t packed_q8_0_scratch(int64_t n_cols) { return static_cast<size_t>(n_cols / QK8_0) * (8 * sizeof(int32_t) + sizeof(float)); }

void packed_q8_0_prepare(const void* act, int64_t n_cols, void* scratch) {
  const auto* a = static_cast<const block_q8_0*>(act);
  const int64_t nb = n_cols / QK8_0;
  auto* corr = static_cast<int32_t*>(scratch);
  auto* da = reinterpret_cast<float*>(corr + 8 * nb);
  for (int64_t b = 0; b < nb; ++b) {
    for (int k = 0; k < 8; ++k) {
      int32_t s = 0;
      for (int t = 0; t < 4; ++t) s += a[b].qs[4 * k + t];
      corr[8 * b + k] = -128 * s;
    }
    da[b] = _cvtsh_ss(a[b].d);
  }
}

void packed_q8_0_panels(const uint8_t* const* panels, int n, int64_t n_cols, const void* act, const void* scratch,
                        float* const* y) {
  const auto* a = static_cast<const block_q8_0*>(act);
  const int64_t nb = n_cols / QK8_0;
  const auto* corr = static_cast<const int32_t*>(scratch);
  const auto* da = reinterpret_cast<const float*>(corr + 8 * nb);
  if (n == 2)
    q8_0_panels<2>(panels, nb, a, corr, da, y);
  else
    q8_0_panels<1>(panels, nb, a, corr, da, y);
}

// ---------------------------------------------------------------------------------------------
// Q4_K (repacked-8 order): per super-block acc = fma(float(sum_s sc_s isum_s), d_w * d_a, acc)
// and acc_min = fma(float(sum_s m_s (bsum_2s + bsum_2s+1)), dmin_w * d_a, acc_min); y = acc -
// acc_min. The 6-bit scales and mins of 16 rows are unpacked side by side from the three
// 64-byte scale groups (ggml's get_scale_min_k4 on every lane at once). Scratch per super-block:
// the pair sums bp_s = bsum_2s + bsum_2s+1 as int16 pairs (bp0, bp2), (bp1, bp3), (bp4, bp6),
// (bp5, bp7) for vpdpwssd against the mins.

namespace {
constexpr size_t kQ4_KUnit = 16 * sizeof(block_q4_K);

// Byte k of every dword lane, zero-extended.
template <int K>
inline __m512i byte_of(__m512i v) {
  return _mm512_and_si512(_mm512_srli_epi32(v, 8 * K), _mm512_set1_epi32(0xFF));
}

template <int NP>
void q4_K_panels(const uint8_t* const* pn, int64_t nb, const block_q8_K* a, const int32_t* bp, float* const* y) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), low6 = _mm512_set1_epi8(0x3F), bits45 = _mm512_set1_epi8(0x30);
  const __m512i high4 = _mm512_set1_epi8(static_cast<char>(0xF0));
  const __m512i even_words = _mm512_set1_epi32(0x00FF00FF);
  __m512 acc[NP], acc_min[NP];
  for (int p = 0; p < NP; ++p) acc[p] = acc_min[p] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const size_t at = static_cast<size_t>(b) * kQ4_KUnit;
    const int8_t* aq = a[b].qs;
    const uint8_t* u[NP];
    __m512i sc_lo[NP], sc_hi[NP], isum[NP];
    for (int p = 0; p < NP; ++p) {
      u[p] = pn[p] + at;
      const __m512i u0 = load512(u[p] + 64), u1 = load512(u[p] + 128), u2 = load512(u[p] + 192);
      // Per row lane: sc0..3 | sc4..7 | m0..3 | m4..7, one byte each.
      sc_lo[p] = _mm512_and_si512(u0, low6);
      sc_hi[p] = _mm512_or_si512(_mm512_and_si512(u2, low4), _mm512_and_si512(_mm512_srli_epi32(u0, 2), bits45));
      const __m512i m_lo = _mm512_and_si512(u1, low6);
      const __m512i m_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), low4),
                                           _mm512_and_si512(_mm512_srli_epi32(u1, 2), bits45));
      // Mins: (m0, m2) . (bp0, bp2) + (m1, m3) . (bp1, bp3) + the same for 4..7, as int16 pairs.
      __m512i imin = _mm512_madd_epi16(_mm512_and_si512(m_lo, even_words), _mm512_set1_epi32(bp[4 * b]));
      imin = _mm512_dpwssd_epi32(imin, _mm512_and_si512(_mm512_srli_epi32(m_lo, 8), even_words), _mm512_set1_epi32(bp[4 * b + 1]));
      imin = _mm512_dpwssd_epi32(imin, _mm512_and_si512(m_hi, even_words), _mm512_set1_epi32(bp[4 * b + 2]));
      imin = _mm512_dpwssd_epi32(imin, _mm512_and_si512(_mm512_srli_epi32(m_hi, 8), even_words), _mm512_set1_epi32(bp[4 * b + 3]));
      acc_min[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin), f16x16_times(u[p] + 32, a[b].d), acc_min[p]);
      isum[p] = _mm512_setzero_si512();
    }
    // Scaled sums: qs bytes 32j .. 32j + 31 hold sub-block 2j (low nibbles) and 2j + 1 (high).
    // Each activation group is broadcast once and used by both panels right away (with the
    // panels in the outer loop, the sixteen broadcasts of a j stayed live and spilled).
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      for (int p = 0; p < NP; ++p) prefetch_ahead(u[p] + 64 * 9 * j, 9);  // a quarter of the 36 lines of a unit
      // Two chains per sub-block and panel (even and odd groups): none longer than four.
      __m512i sl[NP][2], sh[NP][2];
      for (int p = 0; p < NP; ++p) sl[p][0] = sl[p][1] = sh[p][0] = sh[p][1] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        const __m512i al = bcast32(aq + 64 * j + 4 * c), ah = bcast32(aq + 64 * j + 32 + 4 * c);
        for (int p = 0; p < NP; ++p) {
          const __m512i v = load512(u[p] + 256 + 64 * (8 * j + c));
          sl[p][c % 2] = _mm512_dpbusd_epi32(sl[p][c % 2], _mm512_and_si512(v, low4), al);
          sh[p][c % 2] = _mm512_dpbusd_epi32(sh[p][c % 2], _mm512_and_si512(v, high4), ah);  // 16 x the products
        }
      }
      for (int p = 0; p < NP; ++p) {
        const __m512i sc = j < 2 ? sc_lo[p] : sc_hi[p];
        const __m512i sc_a = j % 2 == 0 ? byte_of<0>(sc) : byte_of<2>(sc);
        const __m512i sc_b = j % 2 == 0 ? byte_of<1>(sc) : byte_of<3>(sc);
        const __m512i lo = _mm512_add_epi32(sl[p][0], sl[p][1]);
        const __m512i hi = _mm512_srai_epi32(_mm512_add_epi32(sh[p][0], sh[p][1]), 4);  // exact: multiples of 16
        isum[p] = _mm512_add_epi32(isum[p], _mm512_add_epi32(_mm512_mullo_epi32(lo, sc_a), _mm512_mullo_epi32(hi, sc_b)));
      }
    }
    for (int p = 0; p < NP; ++p)
      acc[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[p]), f16x16_times(u[p], a[b].d), acc[p]);
  }
  for (int p = 0; p < NP; ++p) _mm512_storeu_ps(y[p], _mm512_sub_ps(acc[p], acc_min[p]));
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

}  // namespace shrink::kernels::avx512
