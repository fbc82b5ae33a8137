// Forward and backward of the decoder's operations (see ops.h). Matrix products go through
// Eigen (row-major maps over the caller's buffers); Eigen spreads a large product over the
// OpenMP threads by itself, and the per-row loops here use `omp parallel for` directly.
#include "distill/ops.h"

#include <Eigen/Core>
#include <cmath>
#include <limits>

namespace shrink::distill::ops {
namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Map = Eigen::Map<RowMat<T>>;
template <class T>
using CMap = Eigen::Map<const RowMat<T>>;
// A block of columns inside a wider row-major buffer (one head inside (n, n_head * hd)).
template <class T>
using SMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using CSMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;

}  // namespace

template <class T>
void embedding_forward(const T* table, int64_t d, const int32_t* tokens, int64_t n, T* y) {
  for (int64_t i = 0; i < n; ++i) {
    const T* row = table + static_cast<int64_t>(tokens[i]) * d;
    std::copy(row, row + d, y + i * d);
  }
}

template <class T>
void embedding_backward(const T* dy, const int32_t* tokens, int64_t n, int64_t d, T* dtable) {
  // Serial: several rows may hit the same token.
  for (int64_t i = 0; i < n; ++i) {
    T* row = dtable + static_cast<int64_t>(tokens[i]) * d;
    const T* g = dy + i * d;
    for (int64_t j = 0; j < d; ++j) row[j] += g[j];
  }
}

template <class T>
void rmsnorm_forward(const T* x, const T* w, int64_t n, int64_t d, double eps, T* y, T* rstd) {
#pragma omp parallel for schedule(static) if (n * d > 32768)
  for (int64_t i = 0; i < n; ++i) {
    const T* xr = x + i * d;
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(xr[j]) * static_cast<double>(xr[j]);
    const T r = static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
    rstd[i] = r;
    T* yr = y + i * d;
    for (int64_t j = 0; j < d; ++j) yr[j] = xr[j] * r * w[j];
  }
}

// With xhat = x * r: dx = r * (w*dy - xhat * mean(w*dy * xhat)); dw = sum over rows dy * xhat.
template <class T>
void rmsnorm_backward(const T* x, const T* w, const T* rstd, const T* dy, int64_t n, int64_t d, T* dx, T* dw) {
#pragma omp parallel for schedule(static) if (n * d > 32768)
  for (int64_t i = 0; i < n; ++i) {
    const T* xr = x + i * d;
    const T* g = dy + i * d;
    const T r = rstd[i];
    double dot = 0;
    for (int64_t j = 0; j < d; ++j) dot += static_cast<double>(g[j] * w[j]) * static_cast<double>(xr[j] * r);
    const T m = static_cast<T>(dot / static_cast<double>(d));
    T* o = dx + i * d;
    for (int64_t j = 0; j < d; ++j) o[j] += r * (g[j] * w[j] - xr[j] * r * m);
  }
  // dw: column sums, parallel over columns so no two threads write one element.
#pragma omp parallel for schedule(static) if (n * d > 32768)
  for (int64_t j = 0; j < d; ++j) {
    T s = 0;
    for (int64_t i = 0; i < n; ++i) s += dy[i * d + j] * x[i * d + j] * rstd[i];
    dw[j] += s;
  }
}

template <class T>
void linear_forward(const T* x, const T* W, const T* b, int64_t n, int64_t in, int64_t out, T* y) {
  CMap<T> X(x, n, in), Wm(W, out, in);
  Map<T> Y(y, n, out);
  Y.noalias() = X * Wm.transpose();
  if (b) Y.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(b, out);
}

template <class T>
void linear_backward(const T* x, const T* W, const T* dy, int64_t n, int64_t in, int64_t out, T* dx, T* dW,
                     T* db) {
  CMap<T> X(x, n, in), Wm(W, out, in), DY(dy, n, out);
  if (dx) {
    Map<T> DX(dx, n, in);
    DX.noalias() += DY * Wm;
  }
  Map<T> DW(dW, out, in);
  DW.noalias() += DY.transpose() * X;
  if (db) Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(db, out) += DY.colwise().sum();
}

RopeTable make_rope_table(int64_t n_pos, int64_t head_dim, bool neox, double base, double freq_scale,
                          const std::vector<float>& factors) {
  RopeTable t;
  t.head_dim = head_dim;
  t.neox = neox;
  const int64_t half = head_dim / 2;
  t.cos.resize(static_cast<size_t>(n_pos * half));
  t.sin.resize(static_cast<size_t>(n_pos * half));
  for (int64_t i = 0; i < half; ++i) {
    double inv_freq = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim)) * freq_scale;
    if (!factors.empty()) inv_freq /= static_cast<double>(factors[static_cast<size_t>(i)]);
    for (int64_t p = 0; p < n_pos; ++p) {
      const double a = static_cast<double>(p) * inv_freq;
      t.cos[static_cast<size_t>(p * half + i)] = std::cos(a);
      t.sin[static_cast<size_t>(p * half + i)] = std::sin(a);
    }
  }
  return t;
}

template <class T>
void rope(T* x, int64_t n, int64_t n_heads, const int32_t* pos, const RopeTable& table, bool inverse) {
  const int64_t hd = table.head_dim, half = hd / 2;
  const T sign = inverse ? T(-1) : T(1);
#pragma omp parallel for schedule(static) if (n * n_heads * hd > 32768)
  for (int64_t r = 0; r < n; ++r) {
    const double* cs = table.cos.data() + static_cast<int64_t>(pos[r]) * half;
    const double* sn = table.sin.data() + static_cast<int64_t>(pos[r]) * half;
    for (int64_t h = 0; h < n_heads; ++h) {
      T* xh = x + r * n_heads * hd + h * hd;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = table.neox ? i : 2 * i;
        const int64_t b = table.neox ? i + half : 2 * i + 1;
        const T c = static_cast<T>(cs[i]), s = sign * static_cast<T>(sn[i]);
        const T x0 = xh[a], x1 = xh[b];
        xh[a] = x0 * c - x1 * s;
        xh[b] = x0 * s + x1 * c;
      }
    }
  }
}

template <class T>
void attention_forward(const T* q, const T* k, const T* v, int64_t batch, int64_t seq, int64_t n_head,
                       int64_t n_head_kv, int64_t hd, T* out, T* probs) {
  const int64_t dq = n_head * hd, dkv = n_head_kv * hd, group = n_head / n_head_kv;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
  const bool big = batch * n_head * seq * seq * hd > 65536;  // small heads: threads cost more than they save
#pragma omp parallel for schedule(static) collapse(2) if (big)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < n_head; ++h) {
      const int64_t kvh = h / group;
      CSMap<T> Q(q + b * seq * dq + h * hd, seq, hd, Eigen::OuterStride<>(dq));
      CSMap<T> K(k + b * seq * dkv + kvh * hd, seq, hd, Eigen::OuterStride<>(dkv));
      CSMap<T> V(v + b * seq * dkv + kvh * hd, seq, hd, Eigen::OuterStride<>(dkv));
      Map<T> P(probs + (b * n_head + h) * seq * seq, seq, seq);
      P.noalias() = (Q * K.transpose()) * scale;
      for (int64_t i = 0; i < seq; ++i) {
        T* row = P.data() + i * seq;
        T mx = row[0];
        for (int64_t j = 1; j <= i; ++j) mx = std::max(mx, row[j]);
        T sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          row[j] = std::exp(row[j] - mx);
          sum += row[j];
        }
        const T inv = T(1) / sum;
        for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
        for (int64_t j = i + 1; j < seq; ++j) row[j] = 0;
      }
      SMap<T> O(out + b * seq * dq + h * hd, seq, hd, Eigen::OuterStride<>(dq));
      O.noalias() = P * V;
    }
  }
}

// Per head: dP = dO V^T; dS = P * (dP - rowsum(P * dP)); dQ = scale dS K; dK = scale dS^T Q;
// dV = P^T dO. The query heads sharing one kv head run in the same iteration, so dK and dV
// have a single writer.
template <class T>
void attention_backward(const T* q, const T* k, const T* v, const T* probs, const T* dout, int64_t batch,
                        int64_t seq, int64_t n_head, int64_t n_head_kv, int64_t hd, T* dq, T* dk, T* dv) {
  const int64_t dqw = n_head * hd, dkv = n_head_kv * hd, group = n_head / n_head_kv;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
  const bool big = batch * n_head * seq * seq * hd > 65536;
#pragma omp parallel if (big)
  {
    RowMat<T> dS(seq, seq);
#pragma omp for schedule(static) collapse(2)
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t kvh = 0; kvh < n_head_kv; ++kvh) {
        CSMap<T> K(k + b * seq * dkv + kvh * hd, seq, hd, Eigen::OuterStride<>(dkv));
        CSMap<T> V(v + b * seq * dkv + kvh * hd, seq, hd, Eigen::OuterStride<>(dkv));
        SMap<T> DK(dk + b * seq * dkv + kvh * hd, seq, hd, Eigen::OuterStride<>(dkv));
        SMap<T> DV(dv + b * seq * dkv + kvh * hd, seq, hd, Eigen::OuterStride<>(dkv));
        for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
          CSMap<T> Q(q + b * seq * dqw + h * hd, seq, hd, Eigen::OuterStride<>(dqw));
          CSMap<T> DO(dout + b * seq * dqw + h * hd, seq, hd, Eigen::OuterStride<>(dqw));
          SMap<T> DQ(dq + b * seq * dqw + h * hd, seq, hd, Eigen::OuterStride<>(dqw));
          CMap<T> P(probs + (b * n_head + h) * seq * seq, seq, seq);
          DV.noalias() += P.transpose() * DO;
          dS.noalias() = DO * V.transpose();
          for (int64_t i = 0; i < seq; ++i) {
            T* row = dS.data() + i * seq;
            const T* pr = P.data() + i * seq;
            T dot = 0;
            for (int64_t j = 0; j <= i; ++j) dot += pr[j] * row[j];
            for (int64_t j = 0; j <= i; ++j) row[j] = pr[j] * (row[j] - dot) * scale;
            for (int64_t j = i + 1; j < seq; ++j) row[j] = 0;
          }
          DQ.noalias() += dS * K;
          DK.noalias() += dS.transpose() * Q;
        }
      }
    }
  }
}

template <class T>
void swiglu_forward(const T* g, const T* u, int64_t n, T* y) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] / (T(1) + std::exp(-g[i])) * u[i];
}

// d silu(g)/dg = s (1 + g (1 - s)), s = sigmoid(g).
template <class T>
void swiglu_backward(const T* g, const T* u, const T* dy, int64_t n, T* dg, T* du) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const T s = T(1) / (T(1) + std::exp(-g[i]));
    const T silu = g[i] * s;
    du[i] += dy[i] * silu;
    dg[i] += dy[i] * u[i] * s * (T(1) + g[i] * (T(1) - s));
  }
}

#define SHRINK_DISTILL_OPS(T)                                                                                  \
  template void embedding_forward<T>(const T*, int64_t, const int32_t*, int64_t, T*);                           \
  template void embedding_backward<T>(const T*, const int32_t*, int64_t, int64_t, T*);                          \
  template void rmsnorm_forward<T>(const T*, const T*, int64_t, int64_t, double, T*, T*);                       \
  template void rmsnorm_backward<T>(const T*, const T*, const T*, const T*, int64_t, int64_t, T*, T*);          \
  template void linear_forward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, T*);                 \
  template void linear_backward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, T*, T*, T*);        \
  template void rope<T>(T*, int64_t, int64_t, const int32_t*, const RopeTable&, bool);                         \
  template void attention_forward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                     T*, T*);                                                                   \
  template void attention_backward<T>(const T*, const T*, const T*, const T*, const T*, int64_t, int64_t,       \
                                      int64_t, int64_t, int64_t, T*, T*, T*);                                   \
  template void swiglu_forward<T>(const T*, const T*, int64_t, T*);                                             \
  template void swiglu_backward<T>(const T*, const T*, const T*, int64_t, T*, T*);
SHRINK_DISTILL_OPS(float)
SHRINK_DISTILL_OPS(double)

}  // namespace shrink::distill::ops
