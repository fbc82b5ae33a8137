// Scalar reference of the k-quants, IQ4_NL/IQ4_XS and all importance-matrix quantizers.
//
// The algorithms are ggml's (ggml-quants.c: quantize_row_q*_K_ref, quantize_q*_K with an
// imatrix, quantize_iq4_nl/xs, quantize_row_q4_0_impl & co.), written out again here operation
// for operation: a GGUF is only "the same" as llama.cpp's when every float rounds the same way.
// Facts the bytes depend on (all checked against libggml-base by tests/test_kernels_kquants.cc):
//  - nearest_int() is ggml's magic-number rounding: add 1.5 * 2^23 and read the mantissa, i.e.
//    round half to even, exact only for |x| < 2^22 (larger inputs give garbage, as in ggml).
//  - Every float expression keeps ggml's association and its int -> float conversions (w*x*l is
//    (w*x)*float(l)); the build has -ffp-contract=off so nothing is fused into an FMA.
//  - Without an imatrix ggml takes different code paths than with one: Q2_K..Q5_K use the
//    *_ref search (make_qkx2 / make_q3 quants, max-based super-block scale), with one they use
//    make_qkx3 / make_qx quants and a least-squares super-block scale (make_qp_quants).
//    Q6_K uses make_qx_quants both ways, weighted by x^2 or by the imatrix as given.
//  - IQ4_NL through ggml_quantize_chunk searches 15 scales (ntry = 7), not the 1 of
//    quantize_row_iq4_nl_ref; shrink matches the chunk path, since that is what writes files.
//  - Small integers pass through uint8_t/int8_t exactly where ggml stores them in such a type
//    (a negative nearest_int stored to uint8_t wraps before MIN(63, .)).
//  - The imatrix is indexed by column: block i of a row uses imatrix[256 i ..]. The legacy types
//    scale it by sqrt(sigma2 + x^2) with sigma2 the mean square of the whole row.
#include "kernels/ref/kquant_ref.h"

#include <cmath>
#include <cstring>

#include "kernels/fp16.h"
#include "kernels/quant_types.h"

namespace shrink::kernels::ref {
namespace {

constexpr float kGroupMaxEps = 1e-15f;  // ggml-quants.c GROUP_MAX_EPS: "all zero" below this

// ggml's nearest_int: round to nearest, ties to even, through the float adder.
inline int nearest_int(float f) {
  const float v = f + 12582912.0f;  // 1.5 * 2^23: the integer lands in the low mantissa bits
  int32_t i;
  std::memcpy(&i, &v, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

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

// Symmetric quants q in [-nmax, nmax-1], stored in L as q + nmax, minimising the weighted squared
// error sum w (x - s q)^2 over 19 trial scales around -nmax/max; w = qw, or x^2 without qw.
// Returns s. (ggml make_qx_quants with rmse_type 1, the only kind the quantizers use.)
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* qw) {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = qw ? qw[i] : x[i] * x[i];
    const float fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = qw ? qw[i] : x[i] * x[i];
      const float fl = static_cast<float>(l);
      sumlx += w * x[i] * fl;
      suml2 += w * fl * fl;
    }
    if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i)
        L[i] = static_cast<int8_t>(nmax + clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q3_K without imatrix: start at -nmax/max, then up to 5 passes of coordinate descent on the
// x^2-weighted error. L holds q + nmax. (ggml make_q3_quants with do_rmse.)
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    const float fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      const float li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      if (slx > 0.0f) {
        float sl2 = suml2 - w * li * li;
        const int new_l = clamp_int(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
        if (new_l != L[i]) {
          const float fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Asymmetric quants x ~ scale * q - the_min, q in [0, nmax], min clamped to <= 0: start from the
// min/max grid, then try nstep+1 scales (rmin + rdelta*is + nmax)/(max - min) with a weighted
// least-squares fit of scale and min each, keeping the lowest weighted error (|.| if use_mad,
// else squared). ggml's make_qkx2_quants and make_qkx3_quants compute the same thing whenever
// weights are given (they are, by every caller); returns the scale, *the_min = -min.
float make_qkx_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                      uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0.0f) min = 0.0f;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.0f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1.0f / iscale;
  float best_error = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(clamp_int(l, 0, nmax));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      const float fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0.0f) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0.0f) {
        this_min = 0.0f;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0.0f;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Non-negative quants q in [0, nmax] of the (sub-block scales or mins) x, weighted least squares
// with quant_weights: 9 trial scales, then up to 5 passes of coordinate descent. L is uint8_t as
// in ggml, so a (never expected) negative q wraps. (ggml make_qp_quants.)
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights) {
  float max = 0.0f;
  for (int i = 0; i < n; ++i) max = max > x[i] ? max : x[i];  // ggml's MAX(max, x[i])
  if (max < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  float iscale = static_cast<float>(nmax) / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
  const float scale = 1.0f / iscale;
  float best_mse = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * static_cast<float>(L[i]);
    best_mse += quant_weights[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * static_cast<float>(is) + static_cast<float>(nmax)) / max;
    const float scale_is = 1.0f / iscale_is;
    float mse = 0.0f;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale_is * x[i]);
      l = l < nmax ? l : nmax;
      const float diff = x[i] - scale_is * static_cast<float>(l);
      mse += quant_weights[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = l < nmax ? l : nmax;
    L[i] = static_cast<uint8_t>(l);
    const float w = quant_weights[i];
    const float fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = quant_weights[i];
      const float li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      float sl2 = suml2 - w * li * li;
      if (slx > 0.0f && sl2 > 0.0f) {
        int new_l = nearest_int(x[i] * sl2 / slx);
        new_l = new_l < nmax ? new_l : nmax;
        if (new_l != L[i]) {
          const float fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Q4_K/Q5_K 6-bit scale and min of sub-block j from the 12 packed bytes (ggml get_scale_min_k4).
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}
inline void put_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t* q) {
  if (j < 4) {
    q[j] = ls;
    q[j + 4] = lm;
  } else {
    q[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
    q[j - 4] = static_cast<uint8_t>(q[j - 4] | ((ls >> 4) << 6));
    q[j - 0] = static_cast<uint8_t>(q[j - 0] | ((lm >> 4) << 6));
  }
}

// Q2_K / Q3_K 2-bit packing: byte l of 32-byte group g holds weights 128g + 32k + l at bits 2k.
inline void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// ---------------------------------------------------------------------------------- Q2_K

// Shared tail of both Q2_K paths: requantize with the stored (fp16-rounded) scales, then pack.
void q2_K_finish(const float* x, uint8_t* L, block_q2_K& b) {
  const float d_all = fp16_to_fp32(b.d);
  const float m_all = fp16_to_fp32(b.dmin);
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = d_all * static_cast<float>(b.scales[j] & 0xF);
    if (d == 0.0f) continue;
    const float dm = m_all * static_cast<float>(b.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = static_cast<uint8_t>(clamp_int(nearest_int((x[16 * j + ii] + dm) / d), 0, 3));
  }
  pack_2bit(L, b.qs);
}

void q2_K_block(const float* x, block_q2_K& b) {
  uint8_t L[QK_K], Laux[16];
  float weights[16], mins[QK_K / 16], scales[QK_K / 16];
  const float q4scale = 15.0f;
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < QK_K / 16; ++j) {
    for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
    scales[j] = make_qkx_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  if (max_scale > 0.0f) {
    const float iscale = q4scale / max_scale;
    for (int j = 0; j < QK_K / 16; ++j) b.scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
    b.d = fp32_to_fp16(max_scale / q4scale);
  } else {
    for (int j = 0; j < QK_K / 16; ++j) b.scales[j] = 0;
    b.d = fp32_to_fp16(0.0f);
  }
  if (max_min > 0.0f) {
    const float iscale = q4scale / max_min;
    for (int j = 0; j < QK_K / 16; ++j)
      b.scales[j] = static_cast<uint8_t>(b.scales[j] | (nearest_int(iscale * mins[j]) << 4));
    b.dmin = fp32_to_fp16(max_min / q4scale);
  } else {
    b.dmin = fp32_to_fp16(0.0f);
  }
  q2_K_finish(x, L, b);
}

void q2_K_block_imatrix(const float* x, const float* qw_block, block_q2_K& b) {
  uint8_t L[QK_K], Laux[16], Ls[QK_K / 16], Lm[QK_K / 16];
  float mins[QK_K / 16], scales[QK_K / 16], sw[QK_K / 16], weight[16];
  float sumx2 = 0.0f;
  for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
  const float sigma2 = sumx2 / QK_K;
  for (int j = 0; j < QK_K / 16; ++j) {
    const float* qw = qw_block + 16 * j;
    for (int l = 0; l < 16; ++l) weight[l] = qw[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
    sw[j] = 0.0f;
    for (int l = 0; l < 16; ++l) sw[j] += weight[l];
    scales[j] = make_qkx_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
  }
  const float dm = make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
  const float mm = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
  b.d = fp32_to_fp16(dm);
  b.dmin = fp32_to_fp16(mm);
  for (int j = 0; j < QK_K / 16; ++j) b.scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
  q2_K_finish(x, L, b);
}

// ---------------------------------------------------------------------------------- Q3_K

// Packs the 16 6-bit scales Ls (already offset by +32) into 12 bytes.
void q3_K_pack_scales(const int* ls, uint8_t* s) {
  std::memset(s, 0, K_SCALE_SIZE);
  for (int j = 0; j < QK_K / 16; ++j) {
    int l = ls[j];
    if (j < 8) s[j] = static_cast<uint8_t>(l & 0xF);
    else s[j - 8] = static_cast<uint8_t>(s[j - 8] | ((l & 0xF) << 4));
    l >>= 4;
    s[j % 4 + 8] = static_cast<uint8_t>(s[j % 4 + 8] | (l << (2 * (j / 4))));
  }
}

void q3_K_finish(const float* x, int8_t* L, block_q3_K& b) {
  const float d_all = fp16_to_fp32(b.d);
  for (int j = 0; j < QK_K / 16; ++j) {
    int8_t sc = static_cast<int8_t>(j < 8 ? b.scales[j] & 0xF : b.scales[j - 8] >> 4);
    sc = static_cast<int8_t>((sc | (((b.scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
    const float d = d_all * static_cast<float>(sc);
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = static_cast<int8_t>(clamp_int(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
  }
  std::memset(b.hmask, 0, sizeof b.hmask);
  uint8_t Lu[QK_K];
  int m = 0;
  uint8_t hm = 1;
  for (int j = 0; j < QK_K; ++j) {
    int l = L[j];
    if (l > 3) {
      b.hmask[m] = static_cast<uint8_t>(b.hmask[m] | hm);
      l -= 4;
    }
    Lu[j] = static_cast<uint8_t>(l);
    if (++m == QK_K / 8) {
      m = 0;
      hm = static_cast<uint8_t>(hm << 1);
    }
  }
  pack_2bit(Lu, b.qs);
}

void q3_K_block(const float* x, block_q3_K& b) {
  int8_t L[QK_K];
  float scales[QK_K / 16];
  float max_scale = 0.0f, amax = 0.0f;
  for (int j = 0; j < QK_K / 16; ++j) {
    scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
    const float scale = std::fabs(scales[j]);
    if (scale > amax) {
      amax = scale;
      max_scale = scales[j];
    }
  }
  if (max_scale != 0.0f) {
    const float iscale = -32.0f / max_scale;
    int ls[QK_K / 16];
    for (int j = 0; j < QK_K / 16; ++j) {
      int8_t l = static_cast<int8_t>(nearest_int(iscale * scales[j]));  // int8_t first, as ggml
      ls[j] = clamp_int(l, -32, 31) + 32;
    }
    q3_K_pack_scales(ls, b.scales);
    b.d = fp32_to_fp16(1.0f / iscale);
  } else {
    std::memset(b.scales, 0, K_SCALE_SIZE);
    b.d = fp32_to_fp16(0.0f);
  }
  q3_K_finish(x, L, b);
}

void q3_K_block_imatrix(const float* x, const float* qw_block, block_q3_K& b) {
  int8_t L[QK_K], Ls[QK_K / 16];
  float scales[QK_K / 16], weight[16], sw[QK_K / 16];
  float sumx2 = 0.0f;
  for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
  const float sigma2 = 2 * sumx2 / QK_K;
  for (int j = 0; j < QK_K / 16; ++j) {
    const float* qw = qw_block + 16 * j;
    for (int l = 0; l < 16; ++l) weight[l] = qw[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
    float sumw = 0.0f;
    for (int l = 0; l < 16; ++l) sumw += weight[l];
    sw[j] = sumw;
    scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weight);
  }
  const float d_block = make_qx_quants(QK_K / 16, 32, scales, Ls, sw);
  int ls[QK_K / 16];
  for (int j = 0; j < QK_K / 16; ++j) ls[j] = Ls[j];
  q3_K_pack_scales(ls, b.scales);
  b.d = fp32_to_fp16(d_block);
  q3_K_finish(x, L, b);
}

// ------------------------------------------------------------------------- Q4_K and Q5_K

// Sub-block scales/mins -> 6-bit codes with one max-based super-block scale each (no imatrix).
void k4_scales_from_max(const float* scales, const float* mins, uint8_t* packed, uint16_t* d, uint16_t* dmin) {
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < QK_K / 32; ++j) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
  for (int j = 0; j < QK_K / 32; ++j) {
    uint8_t ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
    uint8_t lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
    ls = ls < 63 ? ls : 63;
    lm = lm < 63 ? lm : 63;
    put_scale_min_k4(j, ls, lm, packed);
  }
  *d = fp32_to_fp16(max_scale / 63.0f);
  *dmin = fp32_to_fp16(max_min / 63.0f);
}

// Requantize every weight with the stored scales: q = nearest((x + dm) / d) in [0, nmax].
void k4_requantize(const float* x, int nmax, const uint8_t* packed, uint16_t d16, uint16_t dmin16, uint8_t* L) {
  const float d_all = fp16_to_fp32(d16);
  const float m_all = fp16_to_fp32(dmin16);
  for (int j = 0; j < QK_K / 32; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, packed, &sc, &m);
    const float d = d_all * static_cast<float>(sc);
    if (d == 0.0f) continue;
    const float dm = m_all * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii)
      L[32 * j + ii] = static_cast<uint8_t>(clamp_int(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax));
  }
}

// Sub-block scales and mins of one super-block, nmax 15 (Q4_K) or 31 (Q5_K).
void k4_subblocks(const float* x, int nmax, const float* qw_block, uint8_t* L, uint8_t* packed, uint16_t* d,
                  uint16_t* dmin) {
  uint8_t Laux[32];
  float weights[32], mins[QK_K / 32], scales[QK_K / 32];
  if (qw_block == nullptr) {
    const float rmin = nmax == 15 ? -1.0f : -0.5f;
    const int nstep = nmax == 15 ? 20 : 15;
    for (int j = 0; j < QK_K / 32; ++j) {
      float sum_x2 = 0.0f;
      for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = make_qkx_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
    }
    std::memset(packed, 0, K_SCALE_SIZE);
    k4_scales_from_max(scales, mins, packed, d, dmin);
    return;
  }
  float sw[QK_K / 32];
  uint8_t Ls[QK_K / 32], Lm[QK_K / 32];
  float sum_x2 = 0.0f;
  for (int l = 0; l < QK_K; ++l) sum_x2 += x[l] * x[l];
  const float sigma2 = 2 * sum_x2 / QK_K;
  for (int j = 0; j < QK_K / 32; ++j) {
    const float* qw = qw_block + 32 * j;
    for (int l = 0; l < 32; ++l) weights[l] = qw[l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
    float sumw = 0.0f;
    for (int l = 0; l < 32; ++l) sumw += weights[l];
    sw[j] = sumw;
    scales[j] = make_qkx_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
  }
  const float d_block = make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
  const float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
  std::memset(packed, 0, K_SCALE_SIZE);
  for (int j = 0; j < QK_K / 32; ++j) {
    // ggml clamps to 63 in Q5_K only; make_qp_quants never exceeds nmax = 63, so both agree.
    const uint8_t ls = Ls[j] < 63 ? Ls[j] : 63;
    const uint8_t lm = Lm[j] < 63 ? Lm[j] : 63;
    put_scale_min_k4(j, ls, lm, packed);
  }
  *d = fp32_to_fp16(d_block);
  *dmin = fp32_to_fp16(m_block);
}

void q4_K_block(const float* x, const float* qw_block, block_q4_K& b) {
  uint8_t L[QK_K];
  k4_subblocks(x, 15, qw_block, L, b.scales, &b.d, &b.dmin);
  k4_requantize(x, 15, b.scales, b.d, b.dmin, L);
  uint8_t* q = b.qs;
  for (int j = 0; j < QK_K; j += 64, q += 32)
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
}

void q5_K_block(const float* x, const float* qw_block, block_q5_K& b) {
  uint8_t L[QK_K];
  k4_subblocks(x, 31, qw_block, L, b.scales, &b.d, &b.dmin);
  k4_requantize(x, 31, b.scales, b.d, b.dmin, L);
  std::memset(b.qh, 0, sizeof b.qh);
  uint8_t* ql = b.qs;
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < QK_K; n += 64, ql += 32) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j];
      if (l1 > 15) {
        l1 -= 16;
        b.qh[j] = static_cast<uint8_t>(b.qh[j] | m1);
      }
      int l2 = L[n + j + 32];
      if (l2 > 15) {
        l2 -= 16;
        b.qh[j] = static_cast<uint8_t>(b.qh[j] | m2);
      }
      ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
    m1 = static_cast<uint8_t>(m1 << 2);
    m2 = static_cast<uint8_t>(m2 << 2);
  }
}

// ---------------------------------------------------------------------------------- Q6_K

void q6_K_block(const float* x, const float* qw_block, block_q6_K& b) {
  int8_t L[QK_K];
  float scales[QK_K / 16];
  float max_scale = 0.0f, max_abs_scale = 0.0f;
  for (int ib = 0; ib < QK_K / 16; ++ib) {
    const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, qw_block ? qw_block + 16 * ib : nullptr);
    scales[ib] = scale;
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(&b, 0, sizeof b);
    b.d = fp32_to_fp16(0.0f);
    return;
  }
  const float iscale = -128.0f / max_scale;
  b.d = fp32_to_fp16(1.0f / iscale);
  for (int ib = 0; ib < QK_K / 16; ++ib) {
    const int v = nearest_int(iscale * scales[ib]);
    b.scales[ib] = static_cast<int8_t>(v < 127 ? v : 127);
  }
  const float d_all = fp16_to_fp32(b.d);
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = d_all * static_cast<float>(b.scales[j]);
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = static_cast<int8_t>(clamp_int(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
  }
  uint8_t* ql = b.ql;
  uint8_t* qh = b.qh;
  for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l + 0], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
      ql[l + 0] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
      ql[l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
      qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
  }
}

// ------------------------------------------------------------------------- IQ4_NL, IQ4_XS

// Index of the level nearest to x (ties to the upper level only if strictly closer below);
// ggml's best_index_int8.
inline int best_index_iq4nl(float x) {
  const int8_t* val = kValuesIq4nl;
  if (x <= static_cast<float>(val[0])) return 0;
  if (x >= static_cast<float>(val[15])) return 15;
  int ml = 0, mu = 15;
  while (mu - ml > 1) {
    const int mav = (ml + mu) / 2;
    if (x < static_cast<float>(val[mav])) mu = mav;
    else ml = mav;
  }
  return x - static_cast<float>(val[mu - 1]) < static_cast<float>(val[mu]) - x ? mu - 1 : mu;
}

// One IQ4 super-block: super_block_size 32 (IQ4_NL, one scale) or 256 (IQ4_XS, 8 blocks of 32
// with 6-bit scales). ntry = 7: 15 trial scales per block, as ggml_quantize_chunk uses.
// qw: importance of these weights, or nullptr (then x^2).
void iq4_superblock(int super_block_size, const float* x, const float* qw_sb, uint16_t* dh, uint8_t* q4,
                    uint16_t* scales_h, uint8_t* scales_l) {
  constexpr int kBlock = 32;
  constexpr int kNtry = 7;
  const int8_t* values = kValuesIq4nl;
  float scales[QK_K / kBlock], weight[kBlock];
  uint8_t L[QK_K];
  float sigma2 = 0.0f;
  for (int j = 0; j < super_block_size; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.0f / static_cast<float>(super_block_size);
  std::memset(q4, 0, static_cast<size_t>(super_block_size / 2));
  *dh = fp32_to_fp16(0.0f);

  const int nb = super_block_size / kBlock;
  float max_scale = 0.0f, amax_scale = 0.0f;
  for (int ib = 0; ib < nb; ++ib) {
    const float* xb = x + ib * kBlock;
    uint8_t* Lb = L + ib * kBlock;
    if (qw_sb != nullptr) {
      const float* qw = qw_sb + ib * kBlock;
      for (int j = 0; j < kBlock; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    } else {
      for (int j = 0; j < kBlock; ++j) weight[j] = xb[j] * xb[j];
    }
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kBlock; ++j) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    if (amax < kGroupMaxEps) {
      scales[ib] = 0.0f;
      continue;
    }
    float d = -max / static_cast<float>(values[0]);
    float id = 1.0f / d;
    float sumqx = 0.0f, sumq2 = 0.0f;
    for (int j = 0; j < kBlock; ++j) {
      const int l = best_index_iq4nl(id * xb[j]);
      Lb[j] = static_cast<uint8_t>(l);
      const float q = static_cast<float>(values[l]);
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    for (int itry = -kNtry; itry <= kNtry; ++itry) {
      id = static_cast<float>(itry + values[0]) / max;
      sumqx = sumq2 = 0.0f;
      for (int j = 0; j < kBlock; ++j) {
        const float q = static_cast<float>(values[best_index_iq4nl(id * xb[j])]);
        const float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    const float abs_d = std::fabs(d);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = d;
    }
  }

  if (nb > 1) {
    *scales_h = 0;
    const float d = -max_scale / 32;
    *dh = fp32_to_fp16(d);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int ib = 0; ib < nb; ++ib) {
      int l = clamp_int(nearest_int(id * scales[ib]), -32, 31);
      const float dl = d * static_cast<float>(l);
      const float idl = dl != 0.0f ? 1.0f / dl : 0.0f;
      uint8_t* Lb = L + ib * kBlock;
      const float* xb = x + ib * kBlock;
      for (int j = 0; j < kBlock; ++j) Lb[j] = static_cast<uint8_t>(best_index_iq4nl(idl * xb[j]));
      l += 32;
      const uint8_t l_l = static_cast<uint8_t>(l & 0xF);
      const uint8_t l_h = static_cast<uint8_t>(l >> 4);
      if (ib % 2 == 0) scales_l[ib / 2] = l_l;
      else scales_l[ib / 2] = static_cast<uint8_t>(scales_l[ib / 2] | (l_l << 4));
      *scales_h = static_cast<uint16_t>(*scales_h | (l_h << 2 * (ib % 8)));
    }
  } else {
    *dh = fp32_to_fp16(scales[0]);
    const float id = scales[0] != 0.0f ? 1.0f / scales[0] : 0.0f;
    for (int j = 0; j < super_block_size; ++j) L[j] = static_cast<uint8_t>(best_index_iq4nl(id * x[j]));
  }
  for (int i = 0; i < super_block_size / 32; ++i)
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = static_cast<uint8_t>(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

void iq4_nl_block(const float* x, const float* qw, block_iq4_nl& b) {
  uint16_t unused_h = 0;
  iq4_superblock(QK4_NL, x, qw, &b.d, b.qs, &unused_h, nullptr);
}

void iq4_xs_block(const float* x, const float* qw, block_iq4_xs& b) {
  iq4_superblock(QK_K, x, qw, &b.d, b.qs, &b.scales_h, b.scales_l);
}

// Runs block_fn(x_block, qw_block_or_null, block) over the n / block weights of x.
template <class Block, int kWeights, class Fn>
void for_blocks(const float* x, void* y, int64_t n, const float* imatrix, Fn&& block_fn) {
  const int64_t nb = n / kWeights;
  for (int64_t i = 0; i < nb; ++i) {
    Block b;
    std::memset(&b, 0, sizeof b);
    block_fn(x + i * kWeights, imatrix ? imatrix + i * kWeights : nullptr, b);
    store_block(y, i, b);
  }
}

// ------------------------------------------------------- legacy types with an importance matrix

// Mean square of the row: the legacy types' sigma2.
float row_sigma2(const float* x, int64_t n) {
  float sum_x2 = 0.0f;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / static_cast<float>(n);
}

inline void legacy_weights(const float* xb, const float* qw, float sigma2, float* weight) {
  for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

inline uint32_t pack_q5_high_bits(const uint8_t* L, uint8_t* qs) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const uint8_t xi0 = L[j], xi1 = L[j + 16];
    qs[j] = static_cast<uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
    qh |= ((xi0 & 0x10u) >> 4) << j;
    qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
  }
  return qh;
}

}  // namespace

// ---------------------------------------------------------------- public row functions

void quantize_row_q2_K(const float* x, void* y, int64_t n) {
  for_blocks<block_q2_K, QK_K>(x, y, n, nullptr, [](const float* xb, const float*, block_q2_K& b) { q2_K_block(xb, b); });
}
void quantize_row_q3_K(const float* x, void* y, int64_t n) {
  for_blocks<block_q3_K, QK_K>(x, y, n, nullptr, [](const float* xb, const float*, block_q3_K& b) { q3_K_block(xb, b); });
}
void quantize_row_q4_K(const float* x, void* y, int64_t n) { for_blocks<block_q4_K, QK_K>(x, y, n, nullptr, q4_K_block); }
void quantize_row_q5_K(const float* x, void* y, int64_t n) { for_blocks<block_q5_K, QK_K>(x, y, n, nullptr, q5_K_block); }
void quantize_row_q6_K(const float* x, void* y, int64_t n) { for_blocks<block_q6_K, QK_K>(x, y, n, nullptr, q6_K_block); }
void quantize_row_iq4_nl(const float* x, void* y, int64_t n) {
  for_blocks<block_iq4_nl, QK4_NL>(x, y, n, nullptr, iq4_nl_block);
}
void quantize_row_iq4_xs(const float* x, void* y, int64_t n) {
  for_blocks<block_iq4_xs, QK_K>(x, y, n, nullptr, iq4_xs_block);
}

void quantize_row_q2_K_imatrix(const float* x, void* y, int64_t n, const float* imatrix) {
  for_blocks<block_q2_K, QK_K>(x, y, n, imatrix, q2_K_block_imatrix);
}
void quantize_row_q3_K_imatrix(const float* x, void* y, int64_t n, const float* imatrix) {
  for_blocks<block_q3_K, QK_K>(x, y, n, imatrix, q3_K_block_imatrix);
}
void quantize_row_q4_K_imatrix(const float* x, void* y, int64_t n, const float* imatrix) {
  for_blocks<block_q4_K, QK_K>(x, y, n, imatrix, q4_K_block);
}
void quantize_row_q5_K_imatrix(const float* x, void* y, int64_t n, const float* imatrix) {
  for_blocks<block_q5_K, QK_K>(x, y, n, imatrix, q5_K_block);
}
void quantize_row_q6_K_imatrix(const float* x, void* y, int64_t n, const float* imatrix) {
  for_blocks<block_q6_K, QK_K>(x, y, n, imatrix, q6_K_block);
}
void quantize_row_iq4_nl_imatrix(const float* x, void* y, int64_t n, const float* imatrix) {
  for_blocks<block_iq4_nl, QK4_NL>(x, y, n, imatrix, iq4_nl_block);
}
void quantize_row_iq4_xs_imatrix(const float* x, void* y, int64_t n, const float* imatrix) {
  for_blocks<block_iq4_xs, QK_K>(x, y, n, imatrix, iq4_xs_block);
}

void quantize_row_q4_0_imatrix(const float* x, void* y, int64_t n, const float* imatrix) {
  const float sigma2 = row_sigma2(x, n);
  for_blocks<block_q4_0, QK4_0>(x, y, n, imatrix, [sigma2](const float* xb, const float* qw, block_q4_0& b) {
    float weight[32];
    int8_t L[32];
    legacy_weights(xb, qw, sigma2, weight);
    b.d = fp32_to_fp16(make_qx_quants(32, 8, xb, L, weight));
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
  });
}

void quantize_row_q5_0_imatrix(const float* x, void* y, int64_t n, const float* imatrix) {
  const float sigma2 = row_sigma2(x, n);
  for_blocks<block_q5_0, QK5_0>(x, y, n, imatrix, [sigma2](const float* xb, const float* qw, block_q5_0& b) {
    float weight[32];
    int8_t L[32];
    uint8_t Lu[32];
    legacy_weights(xb, qw, sigma2, weight);
    b.d = fp32_to_fp16(make_qx_quants(32, 16, xb, L, weight));
    for (int j = 0; j < 32; ++j) Lu[j] = static_cast<uint8_t>(L[j]);
    const uint32_t qh = pack_q5_high_bits(Lu, b.qs);
    std::memcpy(b.qh, &qh, sizeof qh);
  });
}

void quantize_row_q4_1_imatrix(const float* x, void* y, int64_t n, const float* imatrix) {
  const float sigma2 = row_sigma2(x, n);
  for_blocks<block_q4_1, QK4_1>(x, y, n, imatrix, [sigma2](const float* xb, const float* qw, block_q4_1& b) {
    float weight[32], min;
    uint8_t L[32], Laux[32];
    legacy_weights(xb, qw, sigma2, weight);
    const float d = make_qkx_quants(32, 15, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(-min);
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
  });
}

void quantize_row_q5_1_imatrix(const float* x, void* y, int64_t n, const float* imatrix) {
  const float sigma2 = row_sigma2(x, n);
  for_blocks<block_q5_1, QK5_1>(x, y, n, imatrix, [sigma2](const float* xb, const float* qw, block_q5_1& b) {
    float weight[32], min;
    uint8_t L[32], Laux[32];
    legacy_weights(xb, qw, sigma2, weight);
    const float d = make_qkx_quants(32, 31, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(-min);
    const uint32_t qh = pack_q5_high_bits(L, b.qs);
    std::memcpy(b.qh, &qh, sizeof qh);
  });
}

// ---------------------------------------------------------------------- dequantization
// Each is ggml's dequantize_row_* expression for expression: scale products first, then
// one multiply by the level and one subtraction of the min.

void dequantize_row_q2_K(const void* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const auto b = load_block<block_q2_K>(x, i);
    const float d = fp16_to_fp32(b.d);
    const float min = fp16_to_fp32(b.dmin);
    const uint8_t* q = b.qs;
    int is = 0;
    for (int g = 0; g < QK_K; g += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = b.scales[is++];
          const float dl = d * static_cast<float>(sc & 0xF);
          const float ml = min * static_cast<float>(sc >> 4);
          for (int l = 0; l < 16; ++l)
            *y++ = dl * static_cast<float>((q[l + 16 * half] >> shift) & 3) - ml;
        }
      }
    }
  }
}

void dequantize_row_q3_K(const void* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const auto b = load_block<block_q3_K>(x, i);
    const float d_all = fp16_to_fp32(b.d);
    int scales[QK_K / 16];
    for (int j = 0; j < QK_K / 16; ++j) {
      const int lo = j < 8 ? b.scales[j] & 0xF : b.scales[j - 8] >> 4;
      scales[j] = (lo | (((b.scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
    }
    const uint8_t* q = b.qs;
    uint8_t m = 1;
    int is = 0;
    for (int g = 0; g < QK_K; g += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1)) {
        for (int half = 0; half < 2; ++half) {
          const float dl = d_all * static_cast<float>(scales[is++]);
          for (int l = 0; l < 16; ++l) {
            const int k = l + 16 * half;
            *y++ = dl * static_cast<float>(((q[k] >> shift) & 3) - ((b.hmask[k] & m) ? 0 : 4));
          }
        }
      }
    }
  }
}

void dequantize_row_q4_K(const void* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const auto b = load_block<block_q4_K>(x, i);
    const float d = fp16_to_fp32(b.d);
    const float min = fp16_to_fp32(b.dmin);
    const uint8_t* q = b.qs;
    for (int is = 0; is < QK_K / 32; is += 2, q += 32) {
      uint8_t sc, m;
      get_scale_min_k4(is + 0, b.scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
      get_scale_min_k4(is + 1, b.scales, &sc, &m);
      const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void dequantize_row_q5_K(const void* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const auto b = load_block<block_q5_K>(x, i);
    const float d = fp16_to_fp32(b.d);
    const float min = fp16_to_fp32(b.dmin);
    const uint8_t* ql = b.qs;
    uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < QK_K / 32; is += 2, ql += 32) {
      uint8_t sc, m;
      get_scale_min_k4(is + 0, b.scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
      get_scale_min_k4(is + 1, b.scales, &sc, &m);
      const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (b.qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (b.qh[l] & u2 ? 16 : 0)) - m2;
      u1 = static_cast<uint8_t>(u1 << 2);
      u2 = static_cast<uint8_t>(u2 << 2);
    }
  }
}

void dequantize_row_q6_K(const void* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const auto b = load_block<block_q6_K>(x, i);
    const float d = fp16_to_fp32(b.d);
    const uint8_t* ql = b.ql;
    const uint8_t* qh = b.qh;
    const int8_t* sc = b.scales;
    for (int g = 0; g < QK_K; g += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

void dequantize_row_iq4_nl(const void* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / QK4_NL; ++i, y += QK4_NL) {
    const auto b = load_block<block_iq4_nl>(x, i);
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < QK4_NL / 2; ++j) {
      y[j] = d * static_cast<float>(kValuesIq4nl[b.qs[j] & 0xF]);
      y[j + QK4_NL / 2] = d * static_cast<float>(kValuesIq4nl[b.qs[j] >> 4]);
    }
  }
}

void dequantize_row_iq4_xs(const void* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const auto b = load_block<block_iq4_xs>(x, i);
    const float d = fp16_to_fp32(b.d);
    const uint8_t* qs = b.qs;
    for (int ib = 0; ib < QK_K / 32; ++ib, y += 32, qs += 16) {
      const int ls = ((b.scales_l[ib / 2] >> 4 * (ib % 2)) & 0xF) | (((b.scales_h >> 2 * ib) & 3) << 4);
      const float dl = d * static_cast<float>(ls - 32);
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * static_cast<float>(kValuesIq4nl[qs[j] & 0xF]);
        y[j + 16] = dl * static_cast<float>(kValuesIq4nl[qs[j] >> 4]);
      }
    }
  }
}

}  // namespace shrink::kernels::ref
