// Distillation and cross-entropy losses with their gradients (see losses.h for the definitions).
//
// Every divergence is computed over "buckets": single token ids, plus one rest bucket for a top-k
// teacher. With P the student's tempered bucket probabilities, Q the teacher's, and w_b = P_b *
// dD/dP_b, the chain rule through the tempered softmax gives, for token j in bucket b(j):
//   dD/dz_j = (1/T) * p_j * (w_b(j) / P_b(j) - sum_b w_b)
//   forward KL  w_b = -Q_b                      D = sum Q (log Q - log P)
//   reverse KL  w_b = P_b (log P_b - log Q_b + 1)  D = sum P (log P - log Q)
//   JSD(beta)   w_b = (1 - beta) P_b (log P_b - log M_b)
// Everything per row is in double; rows run in parallel.
#include "distill/losses.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace shrink::distill {
namespace {

constexpr double kMinRest = 1e-30;

// log-softmax of z / T into out (n values); returns nothing, out in double.
void log_softmax(const float* z, int64_t n, double inv_t, double* out) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, static_cast<double>(z[j]) * inv_t);
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += std::exp(static_cast<double>(z[j]) * inv_t - mx);
  const double lse = mx + std::log(s);
  for (int64_t j = 0; j < n; ++j) out[j] = static_cast<double>(z[j]) * inv_t - lse;
}

// One divergence term and w_b for one bucket, from log P_b and log Q_b.
struct Term {
  double d;  // contribution to D
  double w;  // P_b * dD/dP_b
};
Term bucket_term(Divergence div, double beta, double lp, double lq) {
  const double p = std::exp(lp), q = std::exp(lq);
  switch (div) {
    case Divergence::kForwardKL:
      return {q > 0 ? q * (lq - lp) : 0.0, -q};
    case Divergence::kReverseKL:
      return {p > 0 ? p * (lp - lq) : 0.0, p * (lp - lq + 1.0)};
    case Divergence::kJSD: {
      // log M = logsumexp(log beta + lq, log(1 - beta) + lp), 0 < beta < 1 here.
      const double a = std::log(beta) + lq, b = std::log1p(-beta) + lp;
      const double mx = std::max(a, b);
      const double lm = mx + std::log(std::exp(a - mx) + std::exp(b - mx));
      const double d = beta * (q > 0 ? q * (lq - lm) : 0.0) + (1.0 - beta) * (p > 0 ? p * (lp - lm) : 0.0);
      return {d, (1.0 - beta) * p * (lp - lm)};
    }
  }
  return {0, 0};
}

Divergence effective(const KdOptions& o) {
  if (o.divergence == Divergence::kJSD && o.beta <= 0.0) return Divergence::kForwardKL;
  if (o.divergence == Divergence::kJSD && o.beta >= 1.0) return Divergence::kReverseKL;
  return o.divergence;
}

bool counted(std::span<const int32_t> targets, int64_t r) {
  return targets.empty() || targets[static_cast<size_t>(r)] >= 0;
}

int64_t count_rows(std::span<const int32_t> targets, int64_t n_rows) {
  if (targets.empty()) return n_rows;
  int64_t n = 0;
  for (int32_t t : targets) n += t >= 0;
  return n;
}

// Adds alpha * d(CE_r)/dz / n_counted to g and returns CE_r for one row.
double ce_row(const float* z, int64_t n_vocab, int32_t target, double scale, float* g, double* buf) {
  log_softmax(z, n_vocab, 1.0, buf);
  for (int64_t j = 0; j < n_vocab; ++j) g[j] += static_cast<float>(scale * std::exp(buf[j]));
  g[target] -= static_cast<float>(scale);
  return -buf[target];
}

// Shared body of the full and top-k losses. teacher_row(r, lp_student, out...) fills the buckets.
template <class Row>
LossValue kd_loss(std::span<const float> student_logits, std::span<const int32_t> targets, int64_t n_vocab,
                  const KdOptions& o, std::vector<float>& dlogits, Row&& row_fn) {
  const int64_t n_rows = static_cast<int64_t>(student_logits.size()) / n_vocab;
  LossValue out;
  out.n_rows = count_rows(targets, n_rows);
  dlogits.assign(student_logits.size(), 0.0f);
  if (out.n_rows == 0) return out;
  const double inv_n = 1.0 / static_cast<double>(out.n_rows);
  const double T = o.temperature;
  const double kd_scale = (1.0 - o.alpha) * T * T * inv_n;  // d total / d D_r
  const double ce_scale = o.alpha * inv_n;
  double ce_sum = 0, kd_sum = 0;
#pragma omp parallel reduction(+ : ce_sum, kd_sum)
  {
    std::vector<double> lp(static_cast<size_t>(n_vocab)), buf(static_cast<size_t>(n_vocab));
    std::vector<double> coef(static_cast<size_t>(n_vocab));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n_rows; ++r) {
      if (!counted(targets, r)) continue;
      const float* z = student_logits.data() + r * n_vocab;
      float* g = dlogits.data() + r * n_vocab;
      if (!targets.empty() && o.alpha > 0) ce_sum += ce_row(z, n_vocab, targets[static_cast<size_t>(r)], ce_scale, g, buf.data());
      if (o.alpha >= 1.0) continue;
      log_softmax(z, n_vocab, 1.0 / T, lp.data());
      // coef[j] = w_b(j) / P_b(j) for every token; row_fn returns D_r and sum_b w_b.
      double sum_w = 0;
      kd_sum += row_fn(r, lp.data(), coef.data(), sum_w);
      for (int64_t j = 0; j < n_vocab; ++j)
        g[j] += static_cast<float>(kd_scale / T * std::exp(lp[static_cast<size_t>(j)]) * (coef[static_cast<size_t>(j)] - sum_w));
    }
  }
  out.ce = ce_sum / static_cast<double>(out.n_rows);
  out.kd = kd_sum / static_cast<double>(out.n_rows);
  out.total = o.alpha * out.ce + (1.0 - o.alpha) * T * T * out.kd;
  return out;
}

}  // namespace

LossValue cross_entropy(std::span<const float> logits, std::span<const int32_t> targets, int64_t n_vocab,
                        std::vector<float>& dlogits) {
  KdOptions o;
  o.alpha = 1.0;
  return kd_loss(logits, targets, n_vocab, o, dlogits, [](int64_t, const double*, double*, double&) { return 0.0; });
}

LossValue kd_loss_full(std::span<const float> student_logits, std::span<const float> teacher_logits,
                       std::span<const int32_t> targets, int64_t n_vocab, const KdOptions& o,
                       std::vector<float>& dlogits) {
  const Divergence div = effective(o);
  const double inv_t = 1.0 / o.temperature;
  return kd_loss(student_logits, targets, n_vocab, o, dlogits,
                 [&](int64_t r, const double* lp, double* coef, double& sum_w) {
                   thread_local std::vector<double> lq;
                   lq.resize(static_cast<size_t>(n_vocab));
                   log_softmax(teacher_logits.data() + r * n_vocab, n_vocab, inv_t, lq.data());
                   double d = 0;
                   for (int64_t j = 0; j < n_vocab; ++j) {
                     const Term t = bucket_term(div, o.beta, lp[j], lq[static_cast<size_t>(j)]);
                     d += t.d;
                     sum_w += t.w;
                     coef[j] = t.w / std::max(std::exp(lp[j]), 1e-300);
                   }
                   return d;
                 });
}

LossValue kd_loss_topk(std::span<const float> student_logits, std::span<const int32_t> teacher_ids,
                       std::span<const float> teacher_logprobs, int64_t k, std::span<const int32_t> targets,
                       int64_t n_vocab, const KdOptions& o, std::vector<float>& dlogits) {
  const Divergence div = effective(o);
  const double T = o.temperature, inv_t = 1.0 / T;
  const double n_tail = static_cast<double>(n_vocab - k);
  return kd_loss(student_logits, targets, n_vocab, o, dlogits,
                 [&](int64_t r, const double* lp, double* coef, double& sum_w) {
                   const int32_t* ids = teacher_ids.data() + r * k;
                   // An id outside the vocabulary cannot come from a teacher of this vocabulary; such
                   // a row is left out of the divergence rather than indexing outside the logits.
                   for (int64_t i = 0; i < k; ++i)
                     if (ids[i] < 0 || ids[i] >= n_vocab) {
                       for (int64_t j = 0; j < n_vocab; ++j) coef[j] = 0.0;
                       return 0.0;
                     }
                   const float* tl = teacher_logprobs.data() + r * k;
                   thread_local std::vector<double> lq;
                   thread_local std::vector<char> in_top;
                   lq.resize(static_cast<size_t>(k + 1));
                   in_top.assign(static_cast<size_t>(n_vocab), 0);
                   // Teacher buckets at temperature T: top-k log-probs / T, rest as an even tail.
                   double mass1 = 0;
                   for (int64_t i = 0; i < k; ++i) mass1 += std::exp(static_cast<double>(tl[i]));
                   const double rest1 = std::max(1.0 - mass1, 0.0);
                   double mx = -std::numeric_limits<double>::infinity();
                   for (int64_t i = 0; i < k; ++i) {
                     lq[static_cast<size_t>(i)] = static_cast<double>(tl[i]) * inv_t;
                     mx = std::max(mx, lq[static_cast<size_t>(i)]);
                   }
                   const bool has_tail = n_tail > 0;
                   double l_rest = -std::numeric_limits<double>::infinity();
                   if (has_tail && rest1 > 0) l_rest = std::log(n_tail) + (std::log(rest1) - std::log(n_tail)) * inv_t;
                   mx = std::max(mx, l_rest);
                   double s = 0;
                   for (int64_t i = 0; i < k; ++i) s += std::exp(lq[static_cast<size_t>(i)] - mx);
                   if (std::isfinite(l_rest)) s += std::exp(l_rest - mx);
                   const double lse = mx + std::log(s);
                   for (int64_t i = 0; i < k; ++i) lq[static_cast<size_t>(i)] -= lse;
                   const double q_rest = std::isfinite(l_rest) ? std::exp(l_rest - lse) : 0.0;
                   // Student rest mass, summed over the tail tokens (no cancellation).
                   for (int64_t i = 0; i < k; ++i) in_top[static_cast<size_t>(ids[i])] = 1;  // ids checked below
                   double p_rest = 0;
                   for (int64_t j = 0; j < n_vocab; ++j)
                     if (!in_top[static_cast<size_t>(j)]) p_rest += std::exp(lp[j]);
                   double d = 0;
                   for (int64_t i = 0; i < k; ++i) {
                     const int32_t j = ids[i];
                     const Term t = bucket_term(div, o.beta, lp[j], lq[static_cast<size_t>(i)]);
                     d += t.d;
                     sum_w += t.w;
                     coef[j] = t.w / std::max(std::exp(lp[j]), 1e-300);
                   }
                   if (has_tail) {
                     const double lpr = std::log(std::max(p_rest, kMinRest));
                     const double lqr = std::log(std::max(q_rest, kMinRest));
                     const Term t = bucket_term(div, o.beta, lpr, lqr);
                     d += t.d;
                     sum_w += t.w;
                     const double c = t.w / std::exp(lpr);
                     for (int64_t j = 0; j < n_vocab; ++j)
                       if (!in_top[static_cast<size_t>(j)]) coef[j] = c;
                   }
                   return d;
                 });
}

double hidden_mse(std::span<const float> student, std::span<const float> teacher, int64_t n_embd, double weight,
                  std::vector<float>& dstudent) {
  const size_t n = student.size();
  if (dstudent.size() != n) dstudent.assign(n, 0.0f);
  if (n == 0) return 0;
  double s = 0;
  const double scale = 2.0 * weight / static_cast<double>(n);
  for (size_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(student[i]) - static_cast<double>(teacher[i]);
    s += e * e;
    dstudent[i] += static_cast<float>(scale * e);
  }
  return s / static_cast<double>(n);
}

// d cos / d s = t / (|s| |t|) - cos * s / |s|^2, norms clamped at 1e-8 as torch's cosine_similarity.
double hidden_cosine(std::span<const float> student, std::span<const float> teacher, int64_t n_embd,
                     double weight, std::vector<float>& dstudent) {
  const size_t n = student.size();
  if (dstudent.size() != n) dstudent.assign(n, 0.0f);
  const int64_t rows = static_cast<int64_t>(n) / n_embd;
  if (rows == 0) return 0;
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = student.data() + r * n_embd;
    const float* t = teacher.data() + r * n_embd;
    double ss = 0, tt = 0, st = 0;
    for (int64_t j = 0; j < n_embd; ++j) {
      ss += static_cast<double>(s[j]) * s[j];
      tt += static_cast<double>(t[j]) * t[j];
      st += static_cast<double>(s[j]) * t[j];
    }
    const double ns = std::max(std::sqrt(ss), 1e-8), nt = std::max(std::sqrt(tt), 1e-8);
    const double cos = st / (ns * nt);
    total += 1.0 - cos;
    const double scale = -weight / static_cast<double>(rows);
    float* g = dstudent.data() + r * n_embd;
    for (int64_t j = 0; j < n_embd; ++j)
      g[j] += static_cast<float>(scale * (t[j] / (ns * nt) - cos * s[j] / (ns * ns)));
  }
  return total / static_cast<double>(rows);
}

}  // namespace shrink::distill
