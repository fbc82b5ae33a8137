// AVX-512 (F, BW, VL, DQ, VNNI) GEMV kernels: several weight rows per pass share each activation
// load, and the float steps follow ggml's order exactly (kernels/gemv.h).
//
//  - Q8_0, vec_dot order: two rows per 512-bit register (row A in lanes 0-7, row B in 8-15), so
//    every lane is one of ggml's eight per-row lanes; the per-block scales of 16 blocks come from
//    one gather per row and a permute per block.
//  - F16, vec_dot order: ggml's four 16-lane accumulators, one row at a time.
//  - Q4_0 / Q4_K, repacked-8 order: 16 rows per pass; each row's integer block sums are made with
//    vpdpbusd (Q4_0) or vpmaddubsw + vpmaddwd with the 6-bit scales (Q4_K), then a reduce-transpose
//    puts row r in lane r, where one 16-lane FMA per block runs every row's float chain at once.
//
// vpdpbusd multiplies unsigned by signed bytes: Q8_0 weights become unsigned by xor 0x80 (+128)
// and the 128 * sum(a) this adds is subtracted via the accumulator's start value; Q4_0 nibbles
// are used unsigned (q, not q - 8) and 8 * sum(a) is subtracted the same way. Exact for every byte.
#include <immintrin.h>

#include <algorithm>
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


// 16 fp16 values (the low halves of 16 int32 lanes) as floats.
inline __m512 low_halves_to_float(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }

inline __mmask16 first_lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// Reduce-transpose of 16 rows, four at a time (so few registers stay live): quad_sums of rows
// 4q..4q+3, each holding four int32 partial sums per 128-bit lane j, gives per lane j the four
// row totals [A, B, C, D]; transpose_quads then makes out[j] lane r = row r's total in lane j.
inline __m512i quad_sums(__m512i a, __m512i b, __m512i c, __m512i d) {
  // [a0+a2, b0+b2, a1+a3, b1+b3] per 128-bit lane, then the two halves added.
  const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
  const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
}
inline void transpose_quads(const __m512i* t, __m512i* out) {
  // 4 x 4 transpose of 128-bit lanes: out[j] = [t0.j, t1.j, t2.j, t3.j].
  const __m512i u0 = _mm512_shuffle_i64x2(t[0], t[1], 0x44), u1 = _mm512_shuffle_i64x2(t[0], t[1], 0xEE);
  const __m512i u2 = _mm512_shuffle_i64x2(t[2], t[3], 0x44), u3 = _mm512_shuffle_i64x2(t[2], t[3], 0xEE);
  out[0] = _mm512_shuffle_i64x2(u0, u2, 0x88);
  out[1] = _mm512_shuffle_i64x2(u0, u2, 0xDD);
  out[2] = _mm512_shuffle_i64x2(u1, u3, 0x88);
  out[3] = _mm512_shuffle_i64x2(u1, u3, 0xDD);
}

// Offsets of up to 16 row starts from the first; rows past n repeat the last one (their
// results are computed and dropped), so a group of fewer than 16 rows runs the same code.
inline __m512i row_offsets16(size_t row_bytes, int64_t n, const uint8_t** rows, const uint8_t* w) {
  alignas(64) int32_t off[16];
  for (int r = 0; r < 16; ++r) {
    const int64_t rr = std::min<int64_t>(r, n - 1);
    rows[r] = w + static_cast<size_t>(rr) * row_bytes;
    off[r] = static_cast<int32_t>(static_cast<size_t>(rr) * row_bytes);
  }
  return _mm512_load_si512(off);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Q8_0, ggml's vec_dot order. Scratch: d_a of every block as float (nb, padded to 16), then per
// block the eight int32 values -128 * (a_4k + ... + a_4k+3).

namespace {
inline int64_t pad16(int64_t n) { return (n + 15) / 16 * 16; }
}  // namespace

size_t gemv_q8_0_vecdot_scratch(int64_t n_cols) {
  const int64_t nb = n_cols / QK8_0;
  return static_cast<size_t>(pad16(nb)) * sizeof(float) + static_cast<size_t>(nb) * 32;
}

void gemv_q8_0_vecdot_prepare(const void* act, int64_t n_cols, void* scratch) {
  const auto* a = static_cast<const block_q8_0*>(act);
  const int64_t nb = n_cols / QK8_0;
  auto* da = static_cast<float*>(scratch);
  auto* corr = reinterpret_cast<int32_t*>(da + pad16(nb));
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t b = 0; b < nb; ++b) {
    da[b] = h2f(a[b].d);
    // sum of four signed bytes per lane: 1 (unsigned) x a (signed), times -128.
    const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, load256(a[b].qs));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(corr + 8 * b), _mm256_slli_epi32(_mm256_sub_epi32(_mm256_setzero_si256(), s), 7));
  }
  for (int64_t b = nb; b < pad16(nb); ++b) da[b] = 0;
}

namespace {

// NP pairs of rows (2 * NP rows); p[2k], p[2k + 1] share register k.
template <int NP>
void q8_0_pairs(const uint8_t* const* p, int64_t nb, const block_q8_0* a, const float* da, const int32_t* corr,
                Sweep sweep, float* out) {
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i gidx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                          _mm512_set1_epi32(sizeof(block_q8_0)));
  // Lanes 0-7 pick block k of the first row's 16 scales, lanes 8-15 block k of the second's.
  const __m512i sel0 = _mm512_set_epi32(16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0);
  __m512 acc[NP];
  for (int k = 0; k < NP; ++k) acc[k] = _mm512_setzero_ps();
  for (int64_t b0 = 0; b0 < nb; b0 += 16) {
    const int64_t m = std::min<int64_t>(16, nb - b0);
    const __mmask16 km = first_lanes(m);
    const __m512 dav = _mm512_loadu_ps(da + b0);  // padded with zeros past nb
    sweep.step(b0 / 16, (nb + 15) / 16);
    __m512 d[2 * NP];
    for (int r = 0; r < 2 * NP; ++r) {
      const __m512i h = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), km, gidx, p[r] + b0 * sizeof(block_q8_0), 1);
      d[r] = _mm512_mul_ps(low_halves_to_float(h), dav);  // d_w * d_a, as ggml's scalar product
    }
    __m512i sel = sel0;
    const uint8_t* xb[2 * NP];
    for (int r = 0; r < 2 * NP; ++r) xb[r] = p[r] + b0 * sizeof(block_q8_0) + 2;  // qs of block b0
    for (int64_t k = 0; k < m; ++k) {
      const int64_t b = b0 + k;
      const __m512i av = _mm512_broadcast_i64x4(load256(a[b].qs));
      const __m512i cv = _mm512_broadcast_i64x4(load256(corr + 8 * b));
      for (int q = 0; q < NP; ++q) {
        const __m512i xv = _mm512_inserti64x4(_mm512_castsi256_si512(load256(xb[2 * q])), load256(xb[2 * q + 1]), 1);
        const __m512i isum = _mm512_dpbusd_epi32(cv, _mm512_xor_si512(xv, bias), av);
        const __m512 dv = _mm512_permutex2var_ps(d[2 * q], sel, d[2 * q + 1]);
        acc[q] = _mm512_fmadd_ps(dv, _mm512_cvtepi32_ps(isum), acc[q]);
      }
      for (int r = 0; r < 2 * NP; ++r) xb[r] += sizeof(block_q8_0);
      sel = _mm512_add_epi32(sel, _mm512_set1_epi32(1));
    }
  }
  for (int q = 0; q < NP; ++q) {
    out[2 * q] = hsum_float_8(_mm512_castps512_ps256(acc[q]));
    out[2 * q + 1] = hsum_float_8(_mm512_extractf32x8_ps(acc[q], 1));
  }
}

}  // namespace

void gemv_q8_0_vecdot_rows(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void* act,
                           const void* scratch, float* y) {
  const int64_t nb = n_cols / QK8_0;
  const auto* da = static_cast<const float*>(scratch);
  const auto* corr = reinterpret_cast<const int32_t*>(da + pad16(nb));
  const auto* a = static_cast<const block_q8_0*>(act);
  int64_t r = 0;
  for (; r + 4 <= n_rows; r += 4) {
    const uint8_t* p[4];
    for (int k = 0; k < 4; ++k) p[k] = w + static_cast<size_t>(r + k) * row_bytes;
    q8_0_pairs<2>(p, nb, a, da, corr, next_group(w, row_bytes, r + 4, n_rows, 4), y + r);
  }
  for (; r < n_rows; r += 2) {  // one pair; a lone last row is paired with itself
    const uint8_t* p[2] = {w + static_cast<size_t>(r) * row_bytes,
                           w + static_cast<size_t>(std::min(r + 1, n_rows - 1)) * row_bytes};
    float out[2];
    q8_0_pairs<1>(p, nb, a, da, corr, Sweep(nullptr, 0), out);
    y[r] = out[0];
    if (r + 1 < n_rows) y[r + 1] = out[1];
  }
}

// ---------------------------------------------------------------------------------------------
// F16, ggml's vec_dot order (ggml_vec_dot_f16 with GGML_F32Cx16). No scratch.

size_t gemv_f16_vecdot_scratch(int64_t) { return 0; }
void gemv_f16_vecdot_prepare(const void*, int64_t, void*) {}

namespace {

template <int R>
void f16_rows(const uint16_t* const* p, int64_t n, const uint16_t* a, Sweep sweep, float* out) {
  __m512 s[R][4];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j) s[r][j] = _mm512_setzero_ps();
  const int64_t np = n & ~int64_t{63};
  for (int64_t i = 0; i < np; i += 64) {
    sweep.step(i / 64, np / 64);
    __m512 av[4];
    for (int j = 0; j < 4; ++j) av[j] = _mm512_cvtph_ps(load256(a + i + 16 * j));
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < 4; ++j) s[r][j] = _mm512_fmadd_ps(_mm512_cvtph_ps(load256(p[r] + i + 16 * j)), av[j], s[r][j]);
  }
  for (int r = 0; r < R; ++r) {
    const __m512 v = _mm512_add_ps(_mm512_add_ps(s[r][0], s[r][2]), _mm512_add_ps(s[r][1], s[r][3]));
    double sum = static_cast<double>(_mm512_reduce_add_ps(v));
    for (int64_t k = np; k < n; ++k) sum += static_cast<double>(h2f(p[r][k]) * h2f(a[k]));
    out[r] = static_cast<float>(sum);
  }
}

}  // namespace

void gemv_f16_vecdot_rows(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void* act,
                          const void*, float* y) {
  // One row at a time: the activation row stays in L1, and a single sequential weight stream
  // measured 1.0-1.1 of the read anchor against 0.85 for four rows side by side (F16 has no
  // per-block work that several rows could share).
  const auto* a = static_cast<const uint16_t*>(act);
  for (int64_t r = 0; r < n_rows; ++r) {
    const uint16_t* p[1] = {reinterpret_cast<const uint16_t*>(w + static_cast<size_t>(r) * row_bytes)};
    f16_rows<1>(p, n_cols, a, Sweep(nullptr, 0), y + r);
  }
}

// ---------------------------------------------------------------------------------------------
// Q4_0, repacked-8 order. Scratch per group of four blocks (192 bytes): the activations of the
// low nibbles [a_b[0..15] for the four blocks b], of the high nibbles [a_b[16..31]], and the
// sixteen int32 start values -8 * (the eight activations each lane multiplies); then d_a of every
// block as float. Blocks past the end are zero.

namespace {
constexpr int64_t kQ4GroupBytes = 192;
inline int64_t q4_groups(int64_t n_cols) { return (n_cols / QK4_0 + 3) / 4; }
}  // namespace

size_t gemv_q4_0_repack8_scratch(int64_t n_cols) {
  return static_cast<size_t>(q4_groups(n_cols)) * kQ4GroupBytes + static_cast<size_t>(4 * q4_groups(n_cols)) * sizeof(float);
}

void gemv_q4_0_repack8_prepare(const void* act, int64_t n_cols, void* scratch) {
  const auto* a = static_cast<const block_q8_0*>(act);
  const int64_t nb = n_cols / QK8_0, ng = q4_groups(n_cols);
  auto* s = static_cast<uint8_t*>(scratch);
  std::memset(s, 0, static_cast<size_t>(ng) * kQ4GroupBytes);
  auto* da = reinterpret_cast<float*>(s + ng * kQ4GroupBytes);
  for (int64_t g = 0; g < ng; ++g) {
    uint8_t* lo = s + g * kQ4GroupBytes;
    uint8_t* hi = lo + 64;
    auto* corr = reinterpret_cast<int32_t*>(lo + 128);
    for (int j = 0; j < 4; ++j) {
      const int64_t b = 4 * g + j;
      da[4 * g + j] = b < nb ? h2f(a[b].d) : 0.0f;
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

namespace {

// Word i of the packed nibbles of four blocks (72 bytes: two loads, at +0 and +8): block i / 8,
// qs word i % 8, i.e. word 9 (i / 8) + 1 + i % 8 of the run; words 32..35 come from the second load.
inline __m512i q4_0_gather_index() {
  alignas(64) int16_t idx[32];
  for (int i = 0; i < 32; ++i) {
    const int src = 9 * (i / 8) + 1 + i % 8;
    idx[i] = static_cast<int16_t>(src < 32 ? src : 32 + src - 4);
  }
  return _mm512_load_si512(idx);
}

}  // namespace

void gemv_q4_0_repack8_rows(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void*,
                            const void* scratch, float* y) {
  const int64_t nb = n_cols / QK4_0, ng = q4_groups(n_cols);
  const auto* s = static_cast<const uint8_t*>(scratch);
  const auto* da = reinterpret_cast<const float*>(s + ng * kQ4GroupBytes);
  const __m512i perm = q4_0_gather_index(), low4 = _mm512_set1_epi8(0x0F);
  // d_pick: word 4s + j <- word 9j (the scale of block j in a four-block run), for every slot s.
  // d_block[j]: word i <- word 4i + j of scales[0] (i < 8) or 4(i - 8) + j of scales[1].
  alignas(64) int16_t pick[32], sel[4][32];
  for (int i = 0; i < 32; ++i) pick[i] = static_cast<int16_t>(9 * (i % 4));
  for (int j = 0; j < 4; ++j)
    for (int i = 0; i < 32; ++i) sel[j][i] = static_cast<int16_t>(i < 8 ? 4 * i + j : i < 16 ? 32 + 4 * (i - 8) + j : 0);
  const __m512i d_pick = _mm512_load_si512(pick);
  const __m512i d_block[4] = {_mm512_load_si512(sel[0]), _mm512_load_si512(sel[1]), _mm512_load_si512(sel[2]),
                              _mm512_load_si512(sel[3])};
  for (int64_t r0 = 0; r0 < n_rows; r0 += 16) {
    const int64_t nr = std::min<int64_t>(16, n_rows - r0);
    const uint8_t* rows[16];
    const __m512i offs = row_offsets16(row_bytes, nr, rows, w + static_cast<size_t>(r0) * row_bytes);
    (void)offs;
    Sweep sweep = next_group(w, row_bytes, r0 + 16, n_rows, 16);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; ++g) {
      sweep.step(g, ng);
      const int64_t m = std::min<int64_t>(4, nb - 4 * g);  // blocks in this group
      const uint8_t* gs = s + g * kQ4GroupBytes;
      const __m512i alo = load512(gs), ahi = load512(gs + 64), corr = load512(gs + 128);
      const size_t at = static_cast<size_t>(g) * 4 * sizeof(block_q4_0);
      // The last group may hold fewer than four blocks: load only the row's own bytes.
      const int64_t valid = m * static_cast<int64_t>(sizeof(block_q4_0));
      const __mmask64 k0 = valid >= 64 ? ~__mmask64{0} : ((__mmask64{1} << valid) - 1);
      const __mmask64 k1 = valid - 8 >= 64 ? ~__mmask64{0} : (valid > 8 ? ((__mmask64{1} << (valid - 8)) - 1) : 0);
      __m512i quad[4];
      // The four block scales of row r (words 0, 9, 18, 27 of its first load) go to words
      // 4 (r % 8) .. +3 of scales[r / 8]: one merge-masked word permute per row, no gather.
      __m512i scales[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
#pragma GCC unroll 4
      for (int qd = 0; qd < 4; ++qd) {
        __m512i part[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          const int r = 4 * qd + i;
          const uint8_t* q = rows[r] + at;

          const __m512i l0 = m == 4 ? load512(q) : _mm512_maskz_loadu_epi8(k0, q);
          const __m512i l1 = m == 4 ? load512(q + 8) : _mm512_maskz_loadu_epi8(k1, q + 8);
          scales[r / 8] = _mm512_mask_permutexvar_epi16(scales[r / 8], __mmask32{0xF} << (4 * (r % 8)), d_pick, l0);
          const __m512i packed = _mm512_permutex2var_epi16(l0, perm, l1);
          const __m512i lo = _mm512_and_si512(packed, low4);
          const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low4);
          part[i] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(corr, lo, alo), hi, ahi);
        }
        quad[qd] = quad_sums(part[0], part[1], part[2], part[3]);
      }
      __m512i isum[4];
      transpose_quads(quad, isum);
#pragma GCC unroll 4
      for (int j = 0; j < m; ++j) {
        const int64_t b = 4 * g + j;
        const __m512i h = _mm512_permutex2var_epi16(scales[0], d_block[j], scales[1]);  // rows 0..15, block j
        const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), _mm512_set1_ps(da[b]));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[j]), d, acc);
      }
    }
    _mm512_mask_storeu_ps(y + r0, first_lanes(nr), acc);
  }
}

// ---------------------------------------------------------------------------------------------
// Q4_K, repacked-8 order. Scratch per super-block (320 bytes): the activations rearranged to
// match the nibble registers, [a(sb0) a(sb2)] [a(sb1) a(sb3)] [a(sb4) a(sb6)] [a(sb5) a(sb7)]
// (a(s) = the 32 quants of sub-block s), then 16 int16: eight zeros and the eight pair sums
// bsums[2s] + bsums[2s + 1] (as ggml's _mm_hadd_epi16), then d_a as float.

namespace {
constexpr int64_t kQ4KBytes = 320;
}

size_t gemv_q4_K_repack8_scratch(int64_t n_cols) { return static_cast<size_t>(n_cols / QK_K) * kQ4KBytes; }

void gemv_q4_K_repack8_prepare(const void* act, int64_t n_cols, void* scratch) {
  const auto* a = static_cast<const block_q8_K*>(act);
  auto* s = static_cast<uint8_t*>(scratch);
  static const int kOrder[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  for (int64_t b = 0; b < n_cols / QK_K; ++b) {
    uint8_t* o = s + b * kQ4KBytes;
    for (int k = 0; k < 8; ++k) std::memcpy(o + 32 * k, a[b].qs + 32 * kOrder[k], 32);
    auto* bp = reinterpret_cast<int16_t*>(o + 256);
    for (int k = 0; k < 8; ++k) {
      bp[k] = 0;
      bp[8 + k] = static_cast<int16_t>(a[b].bsums[2 * k] + a[b].bsums[2 * k + 1]);
    }
    std::memcpy(o + 288, &a[b].d, sizeof(float));
  }
}

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

}  // namespace

void gemv_q4_K_repack8_rows(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void*,
                            const void* scratch, float* y) {
  const int64_t nb = n_cols / QK_K;
  const auto* s = static_cast<const uint8_t*>(scratch);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  // Scale words for the four nibble registers, [sc0 x16, sc2 x16], [sc1, sc3], [sc4, sc6],
  // [sc5, sc7]: byte shuffles (within 128-bit lanes) of the eight scale words broadcast to all four
  // lanes; sel[k] picks word (a) in lanes 0-1 and word (b) in lanes 2-3.
  auto word_pair = [](int a, int b) {
    alignas(64) int8_t c[64];
    for (int i = 0; i < 64; ++i) {
      const int wsel = i < 32 ? a : b;
      c[i] = static_cast<int8_t>(2 * wsel + (i % 2));
    }
    return _mm512_load_si512(c);
  };
  const __m512i sel[4] = {word_pair(0, 2), word_pair(1, 3), word_pair(4, 6), word_pair(5, 7)};
  for (int64_t r0 = 0; r0 < n_rows; r0 += 16) {
    const int64_t nr = std::min<int64_t>(16, n_rows - r0);
    const uint8_t* rows[16];
    const uint8_t* base = w + static_cast<size_t>(r0) * row_bytes;
    const __m512i offs = row_offsets16(row_bytes, nr, rows, base);
    Sweep sweep = next_group(w, row_bytes, r0 + 16, n_rows, 16);
    __m512 acc = _mm512_setzero_ps(), acc_min = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      sweep.step(b, nb);
      const uint8_t* sb = s + b * kQ4KBytes;
      const __m512i a0 = load512(sb), a1 = load512(sb + 64), a2 = load512(sb + 128), a3 = load512(sb + 192);
      const __m256i bp = load256(sb + 256);
      float d_a;
      std::memcpy(&d_a, sb + 288, sizeof d_a);
      const size_t at = static_cast<size_t>(b) * sizeof(block_q4_K);
      __m512i quad[4], part[4];
#pragma GCC unroll 16
      for (int r = 0; r < 16; ++r) {
        const uint8_t* blk = rows[r] + at;

        const __m256i sm = q4_K_scales_mins(blk + 4);
        const __m512i sc4 = _mm512_broadcast_i32x4(_mm256_castsi256_si128(sm));  // sc0..sc7 in every lane
        const __m512i l0 = load512(blk + 16), l1 = load512(blk + 80);
        const __m512i q0 = _mm512_and_si512(l0, low4), q1 = _mm512_and_si512(_mm512_srli_epi16(l0, 4), low4);
        const __m512i q2 = _mm512_and_si512(l1, low4), q3 = _mm512_and_si512(_mm512_srli_epi16(l1, 4), low4);
        // |products| <= 2 * 15 * 128 per int16 pair: vpmaddubsw never saturates here.
        // vpdpwssd: scale x (pair sums), accumulated in int32.
        __m512i v = _mm512_madd_epi16(_mm512_maddubs_epi16(q0, a0), _mm512_shuffle_epi8(sc4, sel[0]));
        v = _mm512_dpwssd_epi32(v, _mm512_maddubs_epi16(q1, a1), _mm512_shuffle_epi8(sc4, sel[1]));
        v = _mm512_dpwssd_epi32(v, _mm512_maddubs_epi16(q2, a2), _mm512_shuffle_epi8(sc4, sel[2]));
        v = _mm512_dpwssd_epi32(v, _mm512_maddubs_epi16(q3, a3), _mm512_shuffle_epi8(sc4, sel[3]));
        // 128-bit lanes 0, 1: scaled sums; 2: zero; 3: the mins times the pair sums.
        const __m256i v8 = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
        part[r % 4] = _mm512_inserti64x4(_mm512_castsi256_si512(v8), _mm256_madd_epi16(sm, bp), 1);
        if (r % 4 == 3) quad[r / 4] = quad_sums(part[0], part[1], part[2], part[3]);
      }
      __m512i t[4];
      transpose_quads(quad, t);
      const __m512i isum = _mm512_add_epi32(t[0], t[1]);
      const __m512i h = _mm512_i32gather_epi32(offs, base + at, 1);  // d | dmin << 16
      const __m512 dav = _mm512_set1_ps(d_a);
      const __m512 d = _mm512_mul_ps(low_halves_to_float(h), dav);
      const __m512 dmin = _mm512_mul_ps(low_halves_to_float(_mm512_srli_epi32(h, 16)), dav);
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), d, acc);
      acc_min = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t[3]), dmin, acc_min);
    }
    _mm512_mask_storeu_ps(y + r0, first_lanes(nr), _mm512_sub_ps(acc, acc_min));
  }
}

}  // namespace shrink::kernels::avx512
