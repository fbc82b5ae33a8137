// `--algo best` (see best_quant.h for the objective). How the search goes, per block:
//  1. ggml's bytes for the whole row are computed first (kernels::quantize_rows: the legacy
//     imatrix quantizers need the row's mean square), and their exact error is the bar.
//  2. Single-scale types (Q4_0, Q5_0, Q8_0, IQ4_NL; asymmetric Q4_1, Q5_1): a dense sweep of
//     scales (40 per side of the level grid, 0.7..1.2 of amax/level_max), each rounded to fp16
//     before the codes are chosen (nearest level = optimal codes for a fixed scale), then the
//     closed-form weighted least-squares refit of d (and m) given the codes, rounded to fp16
//     again, repeated while it helps; finally the fp16 neighbours (+-3 ulp) of the winner.
//  3. Super-block types (Q2_K..Q6_K, IQ4_XS): per sub-block, a continuous weighted least-squares
//     target (scale, min) from a sweep; then a sweep of the super-block scale d (and dmin), where
//     for each candidate every sub-block tries its integer scale/min at round(target/d) +- 1 and
//     keeps the best with its nearest-level codes; then the least-squares refit of (d, dmin)
//     given all integers, and fp16 neighbours of d and dmin.
//  4. The candidate block is packed, dequantized by the reference dequantizer and its error
//     recomputed in double; it replaces ggml's block only if strictly lower.
#include "quantizer/best_quant.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "kernels/ref/kquant_ref.h"
#include "kernels/ref/quant_ref.h"

namespace shrink {
namespace {

using kernels::fp16_to_fp32;
using kernels::fp32_to_fp16;

constexpr int kMaxBlock = QK_K;

inline float round_fp16(float f) { return fp16_to_fp32(fp32_to_fp16(f)); }

// Round to nearest (ties to even) for |t| < 2^22, as ggml's nearest_int; callers clamp first.
inline int nearest_int(float t) {
  const float v = t + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &v, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Clamped rounding of a float that may be huge or infinite.
inline int round_clamped(float t, int lo, int hi) {
  if (!(t > static_cast<float>(lo))) return lo;  // also NaN
  if (t >= static_cast<float>(hi)) return hi;
  return clamp_int(nearest_int(t), lo, hi);
}

// The fp16 value `k` steps (in the ordering of halves) away from the half h; never crosses inf.
inline bool fp16_step(uint16_t h, int k, float* out) {
  // Map to a monotone integer: negative halves below positive ones.
  int v = (h & 0x8000) ? -static_cast<int>(h & 0x7FFF) : static_cast<int>(h & 0x7FFF);
  v += k;
  if (v > 0x7BFF || v < -0x7BFF) return false;
  const uint16_t r = v < 0 ? static_cast<uint16_t>(0x8000 | (-v)) : static_cast<uint16_t>(v);
  *out = fp16_to_fp32(r);
  return true;
}

// ---------------------------------------------------------------- level grids

// Integer levels lo..hi; code index = level - lo.
struct UniformGrid {
  int lo, hi;
  int index(float t) const {
    if (!(t > static_cast<float>(lo))) return 0;
    if (t >= static_cast<float>(hi)) return hi - lo;
    return clamp_int(nearest_int(t), lo, hi) - lo;
  }
  float level(int k) const { return static_cast<float>(lo + k); }
  float lo_level() const { return static_cast<float>(lo); }
  float hi_level() const { return static_cast<float>(hi); }
};

// IQ4_NL/IQ4_XS non-linear levels (kValuesIq4nl, ascending).
struct Iq4Grid {
  int index(float t) const {
    const int8_t* v = kValuesIq4nl;
    if (!(t > v[0])) return 0;
    if (t >= v[15]) return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
      const int mav = (ml + mu) / 2;
      if (t < v[mav]) mu = mav;
      else ml = mav;
    }
    return t - v[mu - 1] < v[mu] - t ? mu - 1 : mu;
  }
  float level(int k) const { return static_cast<float>(kValuesIq4nl[k]); }
  float lo_level() const { return -127.0f; }
  float hi_level() const { return 113.0f; }
};

// ---------------------------------------------------------------- single-scale symmetric

// Codes and error of y = d * level for a fixed d (fp16-exact). Optionally LS sums.
template <class Grid>
float sym_assign(const Grid& g, const float* x, const float* w, int n, float d, uint8_t* L, float* sxl, float* sll) {
  float err = 0.0f, a = 0.0f, b = 0.0f;
  if (d == 0.0f) {
    const int k0 = g.index(0.0f);
    for (int i = 0; i < n; ++i) {
      if (L) L[i] = static_cast<uint8_t>(k0);
      err += w[i] * x[i] * x[i];
    }
  } else {
    const float id = 1.0f / d;
    for (int i = 0; i < n; ++i) {
      const int k = g.index(x[i] * id);
      const float l = g.level(k);
      const float e = x[i] - l * d;
      err += w[i] * e * e;
      a += w[i] * x[i] * l;
      b += w[i] * l * l;
      if (L) L[i] = static_cast<uint8_t>(k);
    }
  }
  if (sxl) *sxl = a;
  if (sll) *sll = b;
  return err;
}

// Best fp16 scale for y = d * level[code]. Returns the error; *d_out the fp16-exact scale and L
// the code indices. d_hint: a scale to try as well (ggml's).
template <class Grid>
float sym_search(const Grid& g, const float* x, const float* w, int n, float d_hint, float* d_out, uint8_t* L) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  float best_d = 0.0f;
  float best = sym_assign(g, x, w, n, 0.0f, nullptr, nullptr, nullptr);
  if (amax == 0.0f) {
    *d_out = 0.0f;
    sym_assign(g, x, w, n, 0.0f, L, nullptr, nullptr);
    return best;
  }
  auto try_d = [&](float d0) {
    float d = round_fp16(d0);
    for (int it = 0; it < 3; ++it) {
      if (!std::isfinite(d)) return;
      float sxl, sll;
      const float e = sym_assign(g, x, w, n, d, nullptr, &sxl, &sll);
      const bool improved = e < best;
      if (improved) {
        best = e;
        best_d = d;
      }
      if (it > 0 && !improved) return;
      if (!(sll > 0.0f)) return;
      const float d2 = round_fp16(sxl / sll);
      if (d2 == d) return;
      d = d2;
    }
  };
  const bool symmetric_grid = g.lo_level() == -g.hi_level();
  constexpr int kSteps = 40;
  for (int side = 0; side < (symmetric_grid ? 1 : 2); ++side) {
    const float base = max / (side == 0 ? g.hi_level() : g.lo_level());
    for (int k = 0; k < kSteps; ++k) try_d(base * (0.7f + 0.5f * static_cast<float>(k) / (kSteps - 1)));
  }
  if (d_hint != 0.0f) try_d(d_hint);
  // fp16 neighbours of the winner.
  const uint16_t hb = fp32_to_fp16(best_d);
  float dn;
  for (int k = -3; k <= 3; ++k) {
    if (k == 0 || !fp16_step(hb, k, &dn)) continue;
    const float e = sym_assign(g, x, w, n, dn, nullptr, nullptr, nullptr);
    if (e < best) {
      best = e;
      best_d = dn;
    }
  }
  *d_out = best_d;
  sym_assign(g, x, w, n, best_d, L, nullptr, nullptr);
  return best;
}

// ---------------------------------------------------------------- single-scale asymmetric

// y = float(q) * d + m, q in [0, nmax] (Q4_1, Q5_1 dequantization order).
float asym_assign(int nmax, const float* x, const float* w, int n, float d, float m, uint8_t* L, double* sums) {
  float err = 0.0f;
  float s_q2 = 0, s_q = 0, s_w = 0, s_xq = 0, s_x = 0;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < n; ++i) {
    const int q = d != 0.0f ? round_clamped((x[i] - m) * id, 0, nmax) : 0;
    const float fq = static_cast<float>(q);
    const float e = x[i] - (fq * d + m);
    err += w[i] * e * e;
    if (sums) {
      s_q2 += w[i] * fq * fq;
      s_q += w[i] * fq;
      s_w += w[i];
      s_xq += w[i] * x[i] * fq;
      s_x += w[i] * x[i];
    }
    if (L) L[i] = static_cast<uint8_t>(q);
  }
  if (sums) {
    sums[0] = s_q2, sums[1] = s_q, sums[2] = s_w, sums[3] = s_xq, sums[4] = s_x;
  }
  return err;
}

float asym_search(int nmax, const float* x, const float* w, int n, float d_hint, float m_hint, float* d_out,
                  float* m_out, uint8_t* L) {
  float mn = x[0], mx = x[0];
  for (int i = 1; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  float best_d = round_fp16((mx - mn) / static_cast<float>(nmax)), best_m = round_fp16(mn);
  float best = asym_assign(nmax, x, w, n, best_d, best_m, nullptr, nullptr);
  if (!std::isfinite(best)) best = INFINITY;
  auto try_dm = [&](float d0, float m0) {
    float d = round_fp16(d0), m = round_fp16(m0);
    for (int it = 0; it < 3; ++it) {
      if (!std::isfinite(d) || !std::isfinite(m)) return;
      double s[5];
      const float e = asym_assign(nmax, x, w, n, d, m, nullptr, s);
      const bool improved = e < best;
      if (improved) {
        best = e;
        best_d = d;
        best_m = m;
      }
      if (it > 0 && !improved) return;
      const double det = s[0] * s[2] - s[1] * s[1];
      if (!(det > 0.0)) return;
      const float d2 = round_fp16(static_cast<float>((s[2] * s[3] - s[1] * s[4]) / det));
      const float m2 = round_fp16(static_cast<float>((s[0] * s[4] - s[1] * s[3]) / det));
      if (d2 == d && m2 == m) return;
      d = d2, m = m2;
    }
  };
  if (mx > mn) {
    constexpr int kSteps = 40;
    const float range = mx - mn;
    for (int k = 0; k < kSteps; ++k) {
      const float d = range * (0.7f + 0.5f * static_cast<float>(k) / (kSteps - 1)) / static_cast<float>(nmax);
      try_dm(d, mn);
      try_dm(d, mn + 0.5f * (range - d * static_cast<float>(nmax)));  // clip both ends equally
    }
  }
  try_dm(d_hint, m_hint);
  const uint16_t hd = fp32_to_fp16(best_d), hm = fp32_to_fp16(best_m);
  const float d_c = best_d, m_c = best_m;
  for (int kd = -2; kd <= 2; ++kd) {
    for (int km = -2; km <= 2; ++km) {
      float dn = d_c, mnn = m_c;
      if ((kd != 0 && !fp16_step(hd, kd, &dn)) || (km != 0 && !fp16_step(hm, km, &mnn))) continue;
      const float e = asym_assign(nmax, x, w, n, dn, mnn, nullptr, nullptr);
      if (e < best) {
        best = e;
        best_d = dn;
        best_m = mnn;
      }
    }
  }
  *d_out = best_d;
  *m_out = best_m;
  return asym_assign(nmax, x, w, n, best_d, best_m, L, nullptr);
}

// ---------------------------------------------------------------- super-block types

// Sub-block geometry and integer ranges of one k-quant type. Dequantization of weight i of
// sub-block j is (d * float(sc_j)) * level(code_i) - dmin * float(m_j) (no min term if m_hi == 0).
struct KSpec {
  int nsub, sub;
  int sc_lo, sc_hi;
  int m_hi;  // 0: no mins
};

struct KState {
  float d = 0.0f, dmin = 0.0f;  // fp16-exact
  int sc[16] = {}, m[16] = {};
  uint8_t L[kMaxBlock] = {};
  float err = INFINITY;
};

template <class Grid>
class KSearch {
 public:
  KSearch(const Grid& g, const KSpec& s, const float* x, const float* w) : g_(g), s_(s), x_(x), w_(w) {}

  // Error of one sub-block for the float products D = d*sc, M = dmin*m; codes to L if given.
  float sub_err(int j, float D, float M, uint8_t* L) const {
    const float* x = x_ + j * s_.sub;
    const float* w = w_ + j * s_.sub;
    float err = 0.0f;
    if (D == 0.0f) {
      const int k0 = g_.index(0.0f);
      for (int i = 0; i < s_.sub; ++i) {
        const float e = x[i] - (0.0f - M);
        err += w[i] * e * e;
        if (L) L[i] = static_cast<uint8_t>(k0);
      }
      return err;
    }
    const float iD = 1.0f / D;
    for (int i = 0; i < s_.sub; ++i) {
      const int k = g_.index((x[i] + M) * iD);
      const float e = x[i] - (D * g_.level(k) - M);
      err += w[i] * e * e;
      if (L) L[i] = static_cast<uint8_t>(k);
    }
    return err;
  }

  // Continuous per-sub-block targets: the best (scale, min >= 0) in weighted least squares.
  void targets() {
    for (int j = 0; j < s_.nsub; ++j) {
      const float* x = x_ + j * s_.sub;
      const float* w = w_ + j * s_.sub;
      if (s_.m_hi > 0) asym_target(x, w, &S_[j], &M_[j]);
      else sym_target(x, w, &S_[j]);
    }
  }

  // For fixed (d, dmin): each sub-block's best integers within +-R of round(target / d).
  float eval(float d, float dmin, int R, int* sc, int* m) const {
    float total = 0.0f;
    for (int j = 0; j < s_.nsub; ++j) {
      const int c = d != 0.0f ? round_clamped(S_[j] / d, s_.sc_lo, s_.sc_hi) : 0;
      const int cm = (s_.m_hi > 0 && dmin != 0.0f) ? round_clamped(M_[j] / dmin, 0, s_.m_hi) : 0;
      const int mR = (s_.m_hi > 0 && dmin != 0.0f) ? R : 0;
      float best = INFINITY;
      int bsc = c, bm = cm;
      for (int a = std::max(s_.sc_lo, c - R); a <= std::min(s_.sc_hi, c + R); ++a) {
        const float D = d * static_cast<float>(a);
        for (int b = std::max(0, cm - mR); b <= std::min(s_.m_hi, cm + mR); ++b) {
          const float M = s_.m_hi > 0 ? dmin * static_cast<float>(b) : 0.0f;
          const float e = sub_err(j, D, M, nullptr);
          if (e < best) {
            best = e;
            bsc = a;
            bm = b;
          }
        }
      }
      sc[j] = bsc;
      m[j] = bm;
      total += best;
    }
    return total;
  }

  void consider(float d, float dmin, int R, KState& st) const {
    if (!std::isfinite(d) || !std::isfinite(dmin)) return;
    int sc[16], m[16];
    const float e = eval(d, dmin, R, sc, m);
    if (e < st.err) {
      st.err = e;
      st.d = d;
      st.dmin = dmin;
      std::copy(sc, sc + s_.nsub, st.sc);
      std::copy(m, m + s_.nsub, st.m);
    }
  }

  void codes(KState& st) const {
    for (int j = 0; j < s_.nsub; ++j) {
      const float D = st.d * static_cast<float>(st.sc[j]);
      const float M = s_.m_hi > 0 ? st.dmin * static_cast<float>(st.m[j]) : 0.0f;
      sub_err(j, D, M, st.L + j * s_.sub);
    }
  }

  // Least-squares (d, dmin) for the integers and codes of st, rounded to fp16.
  bool refit(const KState& st, float* d, float* dmin) const {
    double saa = 0, sab = 0, sbb = 0, sxa = 0, sxb = 0;
    for (int j = 0; j < s_.nsub; ++j) {
      const double b = s_.m_hi > 0 ? static_cast<double>(st.m[j]) : 0.0;
      for (int i = 0; i < s_.sub; ++i) {
        const int n = j * s_.sub + i;
        const double a = static_cast<double>(st.sc[j]) * g_.level(st.L[n]);
        const double w = w_[n], x = x_[n];
        saa += w * a * a, sab += w * a * b, sbb += w * b * b, sxa += w * x * a, sxb += w * x * b;
      }
    }
    if (s_.m_hi > 0) {
      // x ~ d a - dmin b.
      const double det = saa * sbb - sab * sab;
      if (!(det > 0.0)) return false;
      const double dd = (sbb * sxa - sab * sxb) / det;
      const double u = (saa * sxb - sab * sxa) / det;  // coefficient of b, = -dmin
      *d = round_fp16(static_cast<float>(dd));
      *dmin = round_fp16(static_cast<float>(std::max(0.0, -u)));
    } else {
      if (!(saa > 0.0)) return false;
      *d = round_fp16(static_cast<float>(sxa / saa));
      *dmin = 0.0f;
    }
    return std::isfinite(*d) && std::isfinite(*dmin);
  }

  // The whole search; d_hint/dmin_hint: ggml's stored super-block scales.
  KState run(float d_hint, float dmin_hint) {
    targets();
    KState st;
    float smax = 0.0f, s_at = 0.0f, mmax = 0.0f;
    for (int j = 0; j < s_.nsub; ++j) {
      if (std::fabs(S_[j]) > smax) {
        smax = std::fabs(S_[j]);
        s_at = S_[j];
      }
      mmax = std::max(mmax, M_[j]);
    }
    const float dmin0 = s_.m_hi > 0 ? round_fp16(mmax / static_cast<float>(s_.m_hi)) : 0.0f;
    consider(round_fp16(d_hint), round_fp16(dmin_hint), 1, st);
    consider(round_fp16(d_hint), dmin0, 1, st);
    if (smax > 0.0f) {
      const bool sym = s_.m_hi == 0;
      const int sides = sym ? 2 : 1;
      const int steps = sym ? 12 : 24;
      for (int side = 0; side < sides; ++side) {
        const float base = s_at / static_cast<float>(side == 0 ? s_.sc_hi : s_.sc_lo);
        for (int k = 0; k < steps; ++k) {
          const float f = 0.8f + 0.4f * static_cast<float>(k) / static_cast<float>(steps - 1);
          consider(round_fp16(base * f), st.dmin, 1, st);
        }
      }
    }
    if (s_.m_hi > 0 && mmax > 0.0f) {
      const float d = st.d;
      for (int k = 0; k < 7; ++k) consider(d, round_fp16(dmin0 * (0.85f + 0.05f * static_cast<float>(k))), 1, st);
    }
    for (int it = 0; it < 2; ++it) {
      codes(st);
      float d, dmin;
      if (!refit(st, &d, &dmin)) break;
      const float before = st.err;
      consider(d, dmin, 1, st);
      if (!(st.err < before)) break;
    }
    for (int k = -3; k <= 3; ++k) {
      float dn;
      if (k != 0 && fp16_step(fp32_to_fp16(st.d), k, &dn)) consider(dn, st.dmin, 1, st);
    }
    if (s_.m_hi > 0) {
      for (int k = -2; k <= 2; ++k) {
        float dn;
        if (k != 0 && fp16_step(fp32_to_fp16(st.dmin), k, &dn) && dn >= 0.0f) consider(st.d, dn, 1, st);
      }
    }
    codes(st);
    return st;
  }

 private:
  void sym_target(const float* x, const float* w, float* S) const {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < s_.sub; ++i)
      if (std::fabs(x[i]) > amax) {
        amax = std::fabs(x[i]);
        max = x[i];
      }
    *S = 0.0f;
    if (amax == 0.0f) return;
    float sx2 = 0.0f;
    for (int i = 0; i < s_.sub; ++i) sx2 += w[i] * x[i] * x[i];
    float best = sx2;
    for (int side = 0; side < 2; ++side) {
      const float base = max / (side == 0 ? g_.hi_level() : g_.lo_level());
      for (int k = 0; k <= 10; ++k) {
        const float d = base * (0.75f + 0.05f * static_cast<float>(k));
        float sxl, sll;
        sym_assign(g_, x, w, s_.sub, d, nullptr, &sxl, &sll);
        if (!(sll > 0.0f)) continue;
        const float e = sx2 - sxl * sxl / sll;
        if (e < best) {
          best = e;
          *S = sxl / sll;
        }
      }
    }
  }

  void asym_target(const float* x, const float* w, float* S, float* M) const {
    const int nmax = static_cast<int>(g_.hi_level());
    float mn = x[0], mx = x[0], sw = 0.0f, sx = 0.0f, sx2 = 0.0f;
    for (int i = 0; i < s_.sub; ++i) {
      mn = std::min(mn, x[i]);
      mx = std::max(mx, x[i]);
      sw += w[i], sx += w[i] * x[i], sx2 += w[i] * x[i] * x[i];
    }
    if (mn > 0.0f) mn = 0.0f;
    *S = 0.0f;
    *M = -mn;
    if (mx == mn) return;
    float best = INFINITY;
    for (int k = 0; k <= 20; ++k) {
      const float iscale = (static_cast<float>(nmax) - 1.0f + 0.1f * static_cast<float>(k)) / (mx - mn);
      float sl = 0, sl2 = 0, sxl = 0;
      for (int i = 0; i < s_.sub; ++i) {
        const float l = static_cast<float>(round_clamped(iscale * (x[i] - mn), 0, nmax));
        sl += w[i] * l, sl2 += w[i] * l * l, sxl += w[i] * x[i] * l;
      }
      const float D = sw * sl2 - sl * sl;
      if (!(D > 0.0f)) continue;
      float a = (sw * sxl - sx * sl) / D;
      float b = (sl2 * sx - sl * sxl) / D;
      float e;
      if (b > 0.0f) {
        b = 0.0f;
        if (!(sl2 > 0.0f)) continue;
        a = sxl / sl2;
        e = sx2 - a * sxl;
      } else {
        e = sx2 - a * sxl - b * sx;
      }
      if (e < best && a > 0.0f) {
        best = e;
        *S = a;
        *M = -b;
      }
    }
  }

  const Grid& g_;
  KSpec s_;
  const float* x_;
  const float* w_;
  float S_[16] = {}, M_[16] = {};
};

// ---------------------------------------------------------------- packing

inline uint16_t h(float f) { return fp32_to_fp16(f); }

void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<uint8_t>((L[j + l] & 3) | ((L[j + l + 32] & 3) << 2) | ((L[j + l + 64] & 3) << 4) |
                                           ((L[j + l + 96] & 3) << 6));
}

void pack_scale_min_k4(int j, int ls, int lm, uint8_t* q) {
  if (j < 4) {
    q[j] = static_cast<uint8_t>(q[j] | ls);
    q[j + 4] = static_cast<uint8_t>(q[j + 4] | lm);
  } else {
    q[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
    q[j - 4] = static_cast<uint8_t>(q[j - 4] | ((ls >> 4) << 6));
    q[j - 0] = static_cast<uint8_t>(q[j - 0] | ((lm >> 4) << 6));
  }
}

void pack_q2_K(const KState& s, void* out) {
  block_q2_K b{};
  for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<uint8_t>(s.sc[j] | (s.m[j] << 4));
  pack_2bit(s.L, b.qs);
  b.d = h(s.d), b.dmin = h(s.dmin);
  std::memcpy(out, &b, sizeof b);
}

void pack_q3_K(const KState& s, void* out) {
  block_q3_K b{};
  for (int j = 0; j < 16; ++j) {
    const int l = s.sc[j] + 32;
    if (j < 8) b.scales[j] = static_cast<uint8_t>(l & 0xF);
    else b.scales[j - 8] = static_cast<uint8_t>(b.scales[j - 8] | ((l & 0xF) << 4));
    b.scales[8 + j % 4] = static_cast<uint8_t>(b.scales[8 + j % 4] | ((l >> 4) << (2 * (j / 4))));
  }
  for (int n = 0; n < QK_K; ++n) b.hmask[n % 32] = static_cast<uint8_t>(b.hmask[n % 32] | ((s.L[n] >> 2) << (n / 32)));
  pack_2bit(s.L, b.qs);
  b.d = h(s.d);
  std::memcpy(out, &b, sizeof b);
}

void pack_q4_K(const KState& s, void* out) {
  block_q4_K b{};
  for (int j = 0; j < 8; ++j) pack_scale_min_k4(j, s.sc[j], s.m[j], b.scales);
  for (int p = 0; p < 4; ++p)
    for (int l = 0; l < 32; ++l) b.qs[32 * p + l] = static_cast<uint8_t>(s.L[64 * p + l] | (s.L[64 * p + 32 + l] << 4));
  b.d = h(s.d), b.dmin = h(s.dmin);
  std::memcpy(out, &b, sizeof b);
}

void pack_q5_K(const KState& s, void* out) {
  block_q5_K b{};
  for (int j = 0; j < 8; ++j) pack_scale_min_k4(j, s.sc[j], s.m[j], b.scales);
  for (int p = 0; p < 4; ++p)
    for (int l = 0; l < 32; ++l) {
      const int lo = s.L[64 * p + l], hi = s.L[64 * p + 32 + l];
      b.qs[32 * p + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
      b.qh[l] = static_cast<uint8_t>(b.qh[l] | ((lo >> 4) << (2 * p)) | ((hi >> 4) << (2 * p + 1)));
    }
  b.d = h(s.d), b.dmin = h(s.dmin);
  std::memcpy(out, &b, sizeof b);
}

void pack_q6_K(const KState& s, void* out) {
  block_q6_K b{};
  for (int g = 0; g < 2; ++g)
    for (int l = 0; l < 32; ++l) {
      const int q1 = s.L[128 * g + l], q2 = s.L[128 * g + l + 32], q3 = s.L[128 * g + l + 64], q4 = s.L[128 * g + l + 96];
      b.ql[64 * g + l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
      b.ql[64 * g + l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
      b.qh[32 * g + l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
  for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<int8_t>(s.sc[j]);
  b.d = h(s.d);
  std::memcpy(out, &b, sizeof b);
}

void pack_iq4_xs(const KState& s, void* out) {
  block_iq4_xs b{};
  for (int ib = 0; ib < 8; ++ib) {
    const int l = s.sc[ib] + 32;
    b.scales_l[ib / 2] = static_cast<uint8_t>(b.scales_l[ib / 2] | ((l & 0xF) << (4 * (ib % 2))));
    b.scales_h = static_cast<uint16_t>(b.scales_h | ((l >> 4) << (2 * ib)));
    for (int j = 0; j < 16; ++j) b.qs[16 * ib + j] = static_cast<uint8_t>(s.L[32 * ib + j] | (s.L[32 * ib + 16 + j] << 4));
  }
  b.d = h(s.d);
  std::memcpy(out, &b, sizeof b);
}

void pack_nibbles(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>((L[j] & 0xF) | ((L[j + 16] & 0xF) << 4));
}
uint32_t pack_fifth_bits(const uint8_t* L) {
  uint32_t qh = 0;
  for (int j = 0; j < 32; ++j) qh |= static_cast<uint32_t>((L[j] >> 4) & 1) << j;
  return qh;
}

// ---------------------------------------------------------------- per-type block search

using DequantFn = void (*)(const void*, float*, int64_t);

DequantFn dequant_fn(TypeId t) {
  switch (t) {
    case TypeId::Q4_0: return kernels::ref::dequantize_row_q4_0;
    case TypeId::Q4_1: return kernels::ref::dequantize_row_q4_1;
    case TypeId::Q5_0: return kernels::ref::dequantize_row_q5_0;
    case TypeId::Q5_1: return kernels::ref::dequantize_row_q5_1;
    case TypeId::Q8_0: return kernels::ref::dequantize_row_q8_0;
    case TypeId::Q2_K: return kernels::ref::dequantize_row_q2_K;
    case TypeId::Q3_K: return kernels::ref::dequantize_row_q3_K;
    case TypeId::Q4_K: return kernels::ref::dequantize_row_q4_K;
    case TypeId::Q5_K: return kernels::ref::dequantize_row_q5_K;
    case TypeId::Q6_K: return kernels::ref::dequantize_row_q6_K;
    case TypeId::IQ4_NL: return kernels::ref::dequantize_row_iq4_nl;
    case TypeId::IQ4_XS: return kernels::ref::dequantize_row_iq4_xs;
    default: return nullptr;
  }
}

double block_error(DequantFn deq, const void* block, const float* x, const float* w, int n) {
  float y[kMaxBlock];
  deq(block, y, n);
  double e = 0.0;
  for (int i = 0; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - static_cast<double>(y[i]);
    e += static_cast<double>(w[i]) * d * d;
  }
  return e;
}

inline float half_at(const void* block, size_t offset) {
  uint16_t v;
  std::memcpy(&v, static_cast<const char*>(block) + offset, 2);
  return fp16_to_fp32(v);
}

// Writes shrink's candidate for one block to `cand` (type_size bytes). ggml's block is `ggml`.
void search_block(TypeId type, const float* x, const float* w, const void* ggml, void* cand) {
  uint8_t L[kMaxBlock];
  float d = 0.0f, m = 0.0f;
  switch (type) {
    case TypeId::Q8_0: {
      block_q8_0 b{};
      sym_search(UniformGrid{-127, 127}, x, w, 32, half_at(ggml, 0), &d, L);
      b.d = h(d);
      for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(L[j] - 127);
      std::memcpy(cand, &b, sizeof b);
      return;
    }
    case TypeId::Q4_0: {
      block_q4_0 b{};
      sym_search(UniformGrid{-8, 7}, x, w, 32, half_at(ggml, 0), &d, L);
      b.d = h(d);
      pack_nibbles(L, b.qs);
      std::memcpy(cand, &b, sizeof b);
      return;
    }
    case TypeId::Q5_0: {
      block_q5_0 b{};
      sym_search(UniformGrid{-16, 15}, x, w, 32, half_at(ggml, 0), &d, L);
      b.d = h(d);
      pack_nibbles(L, b.qs);
      const uint32_t qh = pack_fifth_bits(L);
      std::memcpy(b.qh, &qh, 4);
      std::memcpy(cand, &b, sizeof b);
      return;
    }
    case TypeId::IQ4_NL: {
      block_iq4_nl b{};
      sym_search(Iq4Grid{}, x, w, 32, half_at(ggml, 0), &d, L);
      b.d = h(d);
      pack_nibbles(L, b.qs);
      std::memcpy(cand, &b, sizeof b);
      return;
    }
    case TypeId::Q4_1: {
      block_q4_1 b{};
      asym_search(15, x, w, 32, half_at(ggml, 0), half_at(ggml, 2), &d, &m, L);
      b.d = h(d), b.m = h(m);
      pack_nibbles(L, b.qs);
      std::memcpy(cand, &b, sizeof b);
      return;
    }
    case TypeId::Q5_1: {
      block_q5_1 b{};
      asym_search(31, x, w, 32, half_at(ggml, 0), half_at(ggml, 2), &d, &m, L);
      b.d = h(d), b.m = h(m);
      pack_nibbles(L, b.qs);
      const uint32_t qh = pack_fifth_bits(L);
      std::memcpy(b.qh, &qh, 4);
      std::memcpy(cand, &b, sizeof b);
      return;
    }
    case TypeId::Q2_K: {
      const UniformGrid g{0, 3};
      KSearch<UniformGrid> s(g, KSpec{16, 16, 0, 15, 15}, x, w);
      pack_q2_K(s.run(half_at(ggml, offsetof(block_q2_K, d)), half_at(ggml, offsetof(block_q2_K, dmin))), cand);
      return;
    }
    case TypeId::Q3_K: {
      const UniformGrid g{-4, 3};
      KSearch<UniformGrid> s(g, KSpec{16, 16, -32, 31, 0}, x, w);
      pack_q3_K(s.run(half_at(ggml, offsetof(block_q3_K, d)), 0.0f), cand);
      return;
    }
    case TypeId::Q4_K: {
      const UniformGrid g{0, 15};
      KSearch<UniformGrid> s(g, KSpec{8, 32, 0, 63, 63}, x, w);
      pack_q4_K(s.run(half_at(ggml, offsetof(block_q4_K, d)), half_at(ggml, offsetof(block_q4_K, dmin))), cand);
      return;
    }
    case TypeId::Q5_K: {
      const UniformGrid g{0, 31};
      KSearch<UniformGrid> s(g, KSpec{8, 32, 0, 63, 63}, x, w);
      pack_q5_K(s.run(half_at(ggml, offsetof(block_q5_K, d)), half_at(ggml, offsetof(block_q5_K, dmin))), cand);
      return;
    }
    case TypeId::Q6_K: {
      const UniformGrid g{-32, 31};
      KSearch<UniformGrid> s(g, KSpec{16, 16, -128, 127, 0}, x, w);
      pack_q6_K(s.run(half_at(ggml, offsetof(block_q6_K, d)), 0.0f), cand);
      return;
    }
    case TypeId::IQ4_XS: {
      const Iq4Grid g{};
      KSearch<Iq4Grid> s(g, KSpec{8, 32, -32, 31, 0}, x, w);
      pack_iq4_xs(s.run(half_at(ggml, offsetof(block_iq4_xs, d)), 0.0f), cand);
      return;
    }
    default:
      std::memcpy(cand, ggml, traits(type).type_size);
  }
}

const float* ones() {
  static const std::vector<float> v(kMaxBlock, 1.0f);
  return v.data();
}

// Improves one row in place: dst holds ggml's bytes for it.
void improve_row(TypeId type, const float* x, uint8_t* dst, int64_t n_per_row, const float* imatrix) {
  const TypeTraits& t = traits(type);
  const int bs = static_cast<int>(t.block_size);
  const DequantFn deq = dequant_fn(type);
  uint8_t cand[256];
  for (int64_t ib = 0; ib < n_per_row / bs; ++ib) {
    const float* xb = x + ib * bs;
    const float* wb = imatrix ? imatrix + ib * bs : ones();
    uint8_t* blk = dst + ib * t.type_size;
    bool finite = true;
    for (int i = 0; i < bs && finite; ++i) finite = std::isfinite(xb[i]) && std::isfinite(wb[i]);
    if (!finite) continue;  // NaN/Inf policy: ggml's bytes, unchanged
    const double e_ggml = block_error(deq, blk, xb, wb, bs);
    if (e_ggml == 0.0) continue;
    search_block(type, xb, wb, blk, cand);
    const double e_best = block_error(deq, cand, xb, wb, bs);
    if (e_best < e_ggml) std::memcpy(blk, cand, t.type_size);
  }
}

}  // namespace

bool best_supports(TypeId type) { return dequant_fn(type) != nullptr; }

size_t quantize_rows_best(TypeId type, const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                          const float* imatrix) {
  if (!best_supports(type) || n_rows < 0 || n_per_row <= 0 || !row_fits(type, n_per_row)) return 0;
  const size_t written = kernels::quantize_rows(type, src, dst, n_rows, n_per_row, imatrix);
  if (written == 0) return 0;
  const size_t rs = row_size(type, n_per_row);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t r = 0; r < n_rows; ++r)
    improve_row(type, src + r * n_per_row, static_cast<uint8_t*>(dst) + r * rs, n_per_row, imatrix);
  return written;
}

double weighted_sq_error(TypeId type, const float* src, const void* quantized, int64_t n_rows, int64_t n_per_row,
                         const float* imatrix) {
  std::vector<float> y(static_cast<size_t>(n_per_row));
  const size_t rs = row_size(type, n_per_row);
  double total = 0.0;
  for (int64_t r = 0; r < n_rows; ++r) {
    kernels::dequantize_rows(type, static_cast<const uint8_t*>(quantized) + r * rs, y.data(), 1, n_per_row);
    const float* x = src + r * n_per_row;
    for (int64_t i = 0; i < n_per_row; ++i) {
      const double d = static_cast<double>(x[i]) - static_cast<double>(y[i]);
      total += (imatrix ? static_cast<double>(imatrix[i]) : 1.0) * d * d;
    }
  }
  return total;
}

}  // namespace shrink
