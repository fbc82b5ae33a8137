#include "eval/kl_divergence.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "eval/logits_file.h"

namespace shrink {
namespace {

// Round to nearest (ties to even) through the float mantissa: adding 1.5 * 2^23 leaves the
// integer in the low mantissa bits. Valid for |x| < 2^22; codes here are 0 .. 65535.
int nearest_int(float x) {
  const float v = x + 12582912.f;
  int32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return (bits & 0x007fffff) - 0x00400000;
}

// mean and its standard error, as llama-perplexity's mean_and_uncertainty (no error below 11 values).
std::pair<double, double> mean_and_error(double sum, double sum2, size_t count) {
  if (count < 1) return {0.0, 0.0};
  const double n = static_cast<double>(count);
  const double f = sum / n;
  double df = sum2 / n - f * f;
  df = df > 0 && count > 10 ? std::sqrt(df / (n - 1)) : 0.0;
  return {f, df};
}

double covariance(double suma, double sumb, double sumab, size_t count) {
  if (count < 10) return 0.0;
  const double n = static_cast<double>(count);
  return (sumab / n - (suma / n) * (sumb / n)) / (n - 1);
}

// Linear interpolation between neighbours at fraction * (n - 1), in float as llama-perplexity.
float percentile(const std::vector<float>& v, float fraction) {
  if (fraction <= 0) return v.front();
  if (fraction >= 1) return v.back();
  float p = fraction * static_cast<float>(v.size() - 1);
  const size_t ip = static_cast<size_t>(p);
  p -= static_cast<float>(ip);
  return (1 - p) * v[ip] + p * v[std::min(ip + 1, v.size() - 1)];
}

Percentiles percentiles(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  Percentiles r;
  const size_t n = v.size();
  r.max = v.back();
  r.min = v.front();
  r.median = n % 2 == 0 ? 0.5f * (v[n / 2] + v[n / 2 - 1]) : v[n / 2];
  r.p99_9 = percentile(v, 0.999f);
  r.p99 = percentile(v, 0.990f);
  r.p95 = percentile(v, 0.950f);
  r.p90 = percentile(v, 0.900f);
  r.p75 = percentile(v, 0.750f);
  r.p25 = percentile(v, 0.250f);
  r.p10 = percentile(v, 0.100f);
  r.p5 = percentile(v, 0.050f);
  r.p1 = percentile(v, 0.010f);
  r.p0_1 = percentile(v, 0.001f);
  return r;
}

}  // namespace

double encode_log_probs(std::span<const float> logits, int32_t tok, uint16_t* record) {
  const size_t n = logits.size();
  float max_logit = logits[0], min_logit = logits[0];
  for (size_t i = 1; i < n; ++i) {
    max_logit = std::max(max_logit, logits[i]);
    min_logit = std::min(min_logit, logits[i]);
  }
  // Only the top 16 nats are coded: 65535 steps of at most 16/65535 = 2.4e-4.
  min_logit = std::max(min_logit, max_logit - 16);
  double sum_exp = 0.0;
  for (size_t i = 0; i < n; ++i) sum_exp += std::exp(logits[i] - max_logit);
  const float log_sum_exp = static_cast<float>(std::log(sum_exp));
  const float min_log_prob = min_logit - max_logit - log_sum_exp;
  const float scale = (max_logit - min_logit) / 65535.f;
  std::memcpy(record, &scale, sizeof(float));
  std::memcpy(record + 2, &min_log_prob, sizeof(float));
  uint16_t* q = record + 4;
  if (scale != 0) {
    const float inv_scale = 1 / scale;
    for (size_t i = 0; i < n; ++i)
      q[i] = logits[i] > min_logit ? static_cast<uint16_t>(nearest_int(inv_scale * (logits[i] - min_logit))) : 0;
  } else {
    std::fill(q, q + n, uint16_t{0});
  }
  if (n % 2 == 1) q[n] = 0;  // the padding word
  const float nll = max_logit + log_sum_exp - logits[static_cast<size_t>(tok)];
  return nll;
}

RecordScale record_scale(const uint16_t* record) {
  RecordScale s;
  std::memcpy(&s.scale, record, sizeof(float));
  std::memcpy(&s.min_log_prob, record + 2, sizeof(float));
  return s;
}

bool is_valid_record(const uint16_t* record) {
  const RecordScale s = record_scale(record);
  return std::isfinite(s.scale) && s.scale >= 0 && std::isfinite(s.min_log_prob);
}

void KldAccumulator::add(std::span<const float> logits, const uint16_t* base_record, int32_t tok) {
  const size_t n = logits.size();
  float max_logit = logits[0];
  size_t imax = 0;
  for (size_t i = 1; i < n; ++i)
    if (logits[i] > max_logit) {
      max_logit = logits[i];
      imax = i;
    }
  double sum_exp = 0.0;
  for (size_t i = 0; i < n; ++i) sum_exp += std::exp(logits[i] - max_logit);
  const float log_sum_exp = static_cast<float>(std::log(sum_exp));
  const RecordScale s = record_scale(base_record);
  const uint16_t* q = base_record + 4;
  const size_t t = static_cast<size_t>(tok);

  const float nll = max_logit + log_sum_exp - logits[t];
  sum_nll_ += nll;
  sum_nll2_ += nll * nll;
  const float nll_base = -(s.scale * q[t] + s.min_log_prob);
  sum_nll_base_ += nll_base;
  sum_nll_base2_ += nll_base * nll_base;
  sum_nll_nll_base_ += nll * nll_base;

  const float log_norm = max_logit + log_sum_exp;  // log p_model(v) = logits[v] - log_norm
  double kld = 0;
  size_t imax_base = 0;
  float p_log_base_max = 0;
  for (size_t i = 0; i < n; ++i) {
    const float p_log_base = s.scale * q[i] + s.min_log_prob;
    if (i == 0 || p_log_base > p_log_base_max) {
      p_log_base_max = p_log_base;
      imax_base = i;
    }
    if (p_log_base > -16.f) {
      const float p_base = std::exp(p_log_base);
      kld += p_base * (p_log_base - logits[i] + log_norm);
    }
  }
  sum_kld_ += kld;
  sum_kld2_ += kld * kld;
  ++count_;
  if (imax == imax_base) ++n_same_top_;

  const float p_base = std::exp(-nll_base);
  const float p = std::exp(-nll);
  const float p_diff = p - p_base;
  sum_p_diff_ += p_diff;
  const double p_diff2 = p_diff * p_diff;
  sum_p_diff2_ += p_diff2;
  sum_p_diff4_ += p_diff2 * p_diff2;
  kld_values_.push_back(static_cast<float>(kld));
  p_diff_values_.push_back(p_diff);
}

Result<KldStatistics> KldAccumulator::finish() const {
  if (count_ == 0) return make_error("KL divergence: no scored positions");
  KldStatistics r;
  r.count = static_cast<int64_t>(count_);
  const auto log_ppl = mean_and_error(sum_nll_, sum_nll2_, count_);
  r.ppl = std::exp(log_ppl.first);
  r.ppl_error = r.ppl * log_ppl.second;
  const auto log_ppl_base = mean_and_error(sum_nll_base_, sum_nll_base2_, count_);
  r.ppl_base = std::exp(log_ppl_base.first);
  r.ppl_base_error = r.ppl_base * log_ppl_base.second;
  const double cov = covariance(sum_nll_, sum_nll_base_, sum_nll_nll_base_, count_);
  r.log_ppl_cor = cov / (log_ppl.second * log_ppl_base.second);
  r.log_ppl_ratio = log_ppl.first - log_ppl_base.first;
  r.log_ppl_ratio_error =
      std::sqrt(log_ppl.second * log_ppl.second + log_ppl_base.second * log_ppl_base.second - 2.0 * cov);
  r.ppl_ratio = std::exp(r.log_ppl_ratio);
  r.ppl_ratio_error = r.ppl_ratio * r.log_ppl_ratio_error;
  const double ppl_cov = r.ppl * r.ppl_base * cov;
  r.ppl_diff = r.ppl - r.ppl_base;
  r.ppl_diff_error = std::sqrt(r.ppl_error * r.ppl_error + r.ppl_base_error * r.ppl_base_error - 2.0 * ppl_cov);

  const auto kld = mean_and_error(sum_kld_, sum_kld2_, count_);
  r.kld_mean = kld.first;
  r.kld_error = kld.second;
  r.kld = percentiles(kld_values_);

  const auto p_diff = mean_and_error(sum_p_diff_, sum_p_diff2_, count_);
  r.p_diff_mean = p_diff.first;
  r.p_diff_error = p_diff.second;
  r.p_diff = percentiles(p_diff_values_);
  const auto mse = mean_and_error(sum_p_diff2_, sum_p_diff4_, count_);
  r.p_diff_rms = std::sqrt(mse.first);
  r.p_diff_rms_error = r.p_diff_rms > 0 ? 0.5 / r.p_diff_rms * mse.second : 0.0;
  r.same_top = static_cast<double>(n_same_top_) / static_cast<double>(count_);
  r.same_top_error = count_ > 1 ? std::sqrt(r.same_top * (1.0 - r.same_top) / static_cast<double>(count_ - 1)) : 0.0;
  return r;
}

}  // namespace shrink
