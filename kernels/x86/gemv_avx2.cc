// AVX2 GEMV kernels (CPUs without AVX-512 VNNI): a few rows per pass share each activation load;
// the integer block sums use vpmaddubsw + vpmaddwd (exact here: no pair of products reaches the
// int16 limit), and the float steps follow ggml's order (kernels/gemv.h): eight lanes per row for
// Q8_0 (vec_dot order); Q4_0 and Q4_K (repacked-8 order) reduce-transpose eight rows to one row
// per lane and run their FMA chains together.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/quant_types.h"
#include "kernels/x86/gemv_x86.h"
#include "kernels/x86/gemv_simd_common.h"

namespace shrink::kernels::avx2 {
namespace {

inline float fma1(float a, float b, float c) {
  return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}
inline int32_t hsum_i32_8(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_extracti128_si256(v, 1), _mm256_castsi256_si128(v));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}
// Offsets of up to 8 row starts from the first; rows past n repeat the last one (their lanes
// are computed and dropped), so a group of fewer than 8 rows runs the same code.
inline __m256i row_offsets8(size_t row_bytes, int64_t n, const uint8_t** rows, const uint8_t* w) {
  alignas(32) int32_t off[8];
  for (int r = 0; r < 8; ++r) {
    const int64_t rr = std::min<int64_t>(r, n - 1);
    rows[r] = w + static_cast<size_t>(rr) * row_bytes;
    off[r] = static_cast<int32_t>(static_cast<size_t>(rr) * row_bytes);
  }
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(off));
}
// Sum of u * s over groups of four bytes (u unsigned, s signed; |u * s| pairs below 2^15).
inline __m256i dot4(__m256i u, __m256i s) { return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)); }

}  // namespace

// ---- Q8_0, ggml's vec_dot order: rows in pairs, one 8-lane accumulator each. No scratch. ----

size_t gemv_q8_0_vecdot_scratch(int64_t) { return 0; }
void gemv_q8_0_vecdot_prepare(const void*, int64_t, void*) {}

void gemv_q8_0_vecdot_rows(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void* act,
                           const void*, float* y) {
  const auto* a = static_cast<const block_q8_0*>(act);
  const int64_t nb = n_cols / QK8_0;
  for (int64_t r = 0; r < n_rows; r += 2) {
    const bool two = r + 1 < n_rows;
    const auto* x0 = reinterpret_cast<const block_q8_0*>(w + static_cast<size_t>(r) * row_bytes);
    const auto* x1 = reinterpret_cast<const block_q8_0*>(w + static_cast<size_t>(two ? r + 1 : r) * row_bytes);
    Sweep sweep = next_group(w, row_bytes, r + 2, n_rows, 2);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      sweep.step(b, nb);
      const __m256i av = load256(a[b].qs);
      const float da = h2f(a[b].d);
      const __m256i q0 = load256(x0[b].qs), q1 = load256(x1[b].qs);
      // |x| * sign(a, x) = x * a, as ggml's mul_sum_i8_pairs_float.
      const __m256i s0 = dot4(_mm256_sign_epi8(q0, q0), _mm256_sign_epi8(av, q0));
      const __m256i s1 = dot4(_mm256_sign_epi8(q1, q1), _mm256_sign_epi8(av, q1));
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x0[b].d) * da), _mm256_cvtepi32_ps(s0), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x1[b].d) * da), _mm256_cvtepi32_ps(s1), acc1);
    }
    y[r] = hsum_float_8(acc0);
    if (two) y[r + 1] = hsum_float_8(acc1);
  }
}

// ---- Q4_0, repacked-8 order: eight rows per pass, one row per float lane. Scratch per pair of
// blocks (96 bytes): the activations of the low nibbles [a_b[0..15], a_b+1[0..15]], of the high
// nibbles [a_b[16..31], a_b+1[16..31]], and eight int32 start values -8 * (the eight activations
// each lane multiplies); then d_a of every block as float. A missing last block is zero. ----

namespace {
constexpr int64_t kQ4PairBytes = 96;
inline int64_t q4_pairs(int64_t n_cols) { return (n_cols / QK4_0 + 1) / 2; }

// Rows a..d, each with int32 partials four per 128-bit lane: per lane, the four row totals.
inline __m256i quad_sums(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
  const __m256i cd = _mm256_add_epi32(_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
  return _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
}
}  // namespace

size_t gemv_q4_0_repack8_scratch(int64_t n_cols) {
  return static_cast<size_t>(q4_pairs(n_cols)) * kQ4PairBytes + static_cast<size_t>(2 * q4_pairs(n_cols)) * sizeof(float);
}

void gemv_q4_0_repack8_prepare(const void* act, int64_t n_cols, void* scratch) {
  const auto* a = static_cast<const block_q8_0*>(act);
  const int64_t nb = n_cols / QK8_0, np = q4_pairs(n_cols);
  auto* s = static_cast<uint8_t*>(scratch);
  std::memset(s, 0, static_cast<size_t>(np) * kQ4PairBytes);
  auto* da = reinterpret_cast<float*>(s + np * kQ4PairBytes);
  for (int64_t p = 0; p < np; ++p) {
    uint8_t* lo = s + p * kQ4PairBytes;
    uint8_t* hi = lo + 32;
    auto* corr = reinterpret_cast<int32_t*>(lo + 64);
    for (int j = 0; j < 2; ++j) {
      const int64_t b = 2 * p + j;
      da[b] = b < nb ? h2f(a[b].d) : 0.0f;
      if (b >= nb) continue;
      std::memcpy(lo + 16 * j, a[b].qs, 16);
      std::memcpy(hi + 16 * j, a[b].qs + 16, 16);
      for (int u = 0; u < 4; ++u) {
        int32_t sum = 0;
        for (int t = 4 * u; t < 4 * u + 4; ++t) sum += a[b].qs[t] + a[b].qs[16 + t];
        corr[4 * j + u] = -8 * sum;
      }
    }
  }
}

void gemv_q4_0_repack8_rows(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void*,
                            const void* scratch, float* y) {
  const int64_t nb = n_cols / QK4_0, np = q4_pairs(n_cols);
  const auto* s = static_cast<const uint8_t*>(scratch);
  const auto* da = reinterpret_cast<const float*>(s + np * kQ4PairBytes);
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  for (int64_t r0 = 0; r0 < n_rows; r0 += 8) {
    const int64_t nr = std::min<int64_t>(8, n_rows - r0);
    const uint8_t* rows[8];
    const __m256i offs = row_offsets8(row_bytes, nr, rows, w + static_cast<size_t>(r0) * row_bytes);
    const uint8_t* base = rows[0];
    Sweep sweep = next_group(w, row_bytes, r0 + 8, n_rows, 8);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t p = 0; p < np; ++p) {
      sweep.step(p, np);
      const uint8_t* ps = s + p * kQ4PairBytes;
      const __m256i alo = load256(ps), ahi = load256(ps + 32), corr = load256(ps + 64);
      const bool two = 2 * p + 1 < nb;
      const size_t at = static_cast<size_t>(p) * 2 * sizeof(block_q4_0);
      __m256i quad[2];
#pragma GCC unroll 2
      for (int qd = 0; qd < 2; ++qd) {
        __m256i part[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          const uint8_t* q = rows[4 * qd + i] + at;
          const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 2));
          const __m128i q1 = two ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 20)) : _mm_setzero_si128();
          const __m256i packed = _mm256_set_m128i(q1, q0);
          const __m256i lo = _mm256_and_si256(packed, low4);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
          const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, alo), ones);
          const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, ahi), ones);
          part[i] = _mm256_add_epi32(_mm256_add_epi32(plo, phi), corr);
        }
        quad[qd] = quad_sums(part[0], part[1], part[2], part[3]);
      }
      // Lane 0 of each quad is block 2p, lane 1 block 2p + 1: rows 0..7 per block.
      const __m256i isum[2] = {_mm256_permute2x128_si256(quad[0], quad[1], 0x20),
                               _mm256_permute2x128_si256(quad[0], quad[1], 0x31)};
      for (int j = 0; j < (two ? 2 : 1); ++j) {
        const int64_t b = 2 * p + j;
        const __m256i h = _mm256_i32gather_epi32(reinterpret_cast<const int*>(base + b * sizeof(block_q4_0)), offs, 1);
        // Low halves of the eight dwords -> eight fp16 values.
        const __m256i packed16 = _mm256_shuffle_epi8(
            h, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1,
                                -1, -1, -1, -1, -1));
        const __m128i halves = _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed16, 0x08));
        const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(halves), _mm256_set1_ps(da[b]));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[j]), d, acc);
      }
    }
    alignas(32) float out[8];
    _mm256_store_ps(out, acc);
    for (int r = 0; r < nr; ++r) y[r0 + r] = out[r];
  }
}

// ---- Q4_K, repacked-8 order: eight rows per pass, one row per float lane. Scratch per
// super-block (32 bytes): 16 int16, eight zeros then the pair sums bsums[2s] + bsums[2s + 1] (as
// ggml's _mm_hadd_epi16). ----

namespace {

// The eight 6-bit scales and mins of a block_q4_K (ggml's get_scale_min_k4), from the 16 bytes
// at `scales` (12 scale bytes + 4 quant bytes, ignored), as 16 int16: sc0..sc7, m0..m7.
inline __m256i q4_K_scales_mins(const uint8_t* scales) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(scales));  // dwords u0 u1 u2 -
  const __m128i low6 = _mm_and_si128(v, _mm_set1_epi8(0x3F));                  // sc0-3 | m0-3
  const __m128i top2 = _mm_and_si128(_mm_srli_epi32(v, 2), _mm_set1_epi8(0x30));
  const __m128i u2 = _mm_shuffle_epi32(v, 0xAA);
  const __m128i nib = _mm_unpacklo_epi32(_mm_and_si128(u2, _mm_set1_epi8(0x0F)),
                                         _mm_and_si128(_mm_srli_epi32(u2, 4), _mm_set1_epi8(0x0F)));
  const __m128i high = _mm_or_si128(nib, top2);                                // sc4-7 | m4-7
  return _mm256_cvtepu8_epi16(_mm_unpacklo_epi32(low6, high));                 // sc0-3 sc4-7 m0-3 m4-7
}

// Byte-shuffle control that repeats int16 word k over a 128-bit lane.
inline __m256i word_splat(int k) {
  return _mm256_setr_epi8(2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k,
                          2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k,
                          2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1);
}

}  // namespace

size_t gemv_q4_K_repack8_scratch(int64_t n_cols) { return static_cast<size_t>(n_cols / QK_K) * 32; }

void gemv_q4_K_repack8_prepare(const void* act, int64_t n_cols, void* scratch) {
  const auto* a = static_cast<const block_q8_K*>(act);
  auto* bp = static_cast<int16_t*>(scratch);
  for (int64_t b = 0; b < n_cols / QK_K; ++b)
    for (int s = 0; s < 8; ++s) {
      bp[16 * b + s] = 0;
      bp[16 * b + 8 + s] = static_cast<int16_t>(a[b].bsums[2 * s] + a[b].bsums[2 * s + 1]);
    }
}

void gemv_q4_K_repack8_rows(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void* act,
                            const void* scratch, float* y) {
  const auto* a = static_cast<const block_q8_K*>(act);
  const auto* bp = static_cast<const uint8_t*>(scratch);
  const int64_t nb = n_cols / QK_K;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i pick_d = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5, 8, 9, 12, 13,
                                          -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i pick_dmin = _mm256_setr_epi8(2, 3, 6, 7, 10, 11, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, 2, 3, 6, 7, 10, 11,
                                             14, 15, -1, -1, -1, -1, -1, -1, -1, -1);
  for (int64_t r0 = 0; r0 < n_rows; r0 += 8) {
    const int64_t nr = std::min<int64_t>(8, n_rows - r0);
    const uint8_t* rows[8];
    const __m256i offs = row_offsets8(row_bytes, nr, rows, w + static_cast<size_t>(r0) * row_bytes);
    Sweep sweep = next_group(w, row_bytes, r0 + 8, n_rows, 8);
    __m256 acc = _mm256_setzero_ps(), acc_min = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      sweep.step(b, nb);
      const __m256i bpv = load256(bp + 32 * b);
      const size_t at = static_cast<size_t>(b) * sizeof(block_q4_K);
      __m256i quad[2];
#pragma GCC unroll 2
      for (int qd = 0; qd < 2; ++qd) {
        __m256i part[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          const uint8_t* blk = rows[4 * qd + i] + at;
          const __m256i sm = q4_K_scales_mins(blk + 4);
          const __m256i sc = _mm256_permute2x128_si256(sm, sm, 0x00);  // sc0..sc7 in both lanes
          __m256i v = _mm256_setzero_si256();
#pragma GCC unroll 4
          for (int g = 0; g < 4; ++g) {
            const __m256i qs = load256(blk + 16 + 32 * g);
            const __m256i lo = _mm256_and_si256(qs, low4), hi = _mm256_and_si256(_mm256_srli_epi16(qs, 4), low4);
            const __m256i plo = _mm256_maddubs_epi16(lo, load256(a[b].qs + 64 * g));
            const __m256i phi = _mm256_maddubs_epi16(hi, load256(a[b].qs + 64 * g + 32));
            v = _mm256_add_epi32(v, _mm256_madd_epi16(plo, _mm256_shuffle_epi8(sc, word_splat(2 * g))));
            v = _mm256_add_epi32(v, _mm256_madd_epi16(phi, _mm256_shuffle_epi8(sc, word_splat(2 * g + 1))));
          }
          // 128-bit lane 0: the scaled sums folded to four; lane 1: the mins times the pair sums.
          const __m256i folded = _mm256_add_epi32(v, _mm256_permute2x128_si256(v, v, 0x01));
          part[i] = _mm256_blend_epi32(folded, _mm256_madd_epi16(sm, bpv), 0xF0);
        }
        quad[qd] = quad_sums(part[0], part[1], part[2], part[3]);
      }
      const __m256i isum = _mm256_permute2x128_si256(quad[0], quad[1], 0x20);  // rows 0..7
      const __m256i imin = _mm256_permute2x128_si256(quad[0], quad[1], 0x31);
      const __m256i h = _mm256_i32gather_epi32(reinterpret_cast<const int*>(rows[0] + at), offs, 1);  // d | dmin << 16
      const __m256 dav = _mm256_set1_ps(a[b].d);
      const __m256 d = _mm256_mul_ps(
          _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_shuffle_epi8(h, pick_d), 0x08))), dav);
      const __m256 dmin = _mm256_mul_ps(
          _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_shuffle_epi8(h, pick_dmin), 0x08))), dav);
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc);
      acc_min = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin), dmin, acc_min);
    }
    alignas(32) float out[8];
    _mm256_store_ps(out, _mm256_sub_ps(acc, acc_min));
    for (int r = 0; r < nr; ++r) y[r0 + r] = out[r];
  }
}

}  // namespace shrink::kernels::avx2
