#include "eval/weight_error.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace shrink {

void ErrorStats::add(const float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(y[i]) - static_cast<double>(x[i]);
    sum_sq_signal += static_cast<double>(x[i]) * x[i];
    sum_sq_error += e * e;
    sum_error += e;
    max_abs_error = std::max(max_abs_error, std::fabs(e));
    sum_sq_approx += static_cast<double>(y[i]) * y[i];
    sum_product += static_cast<double>(x[i]) * y[i];
  }
  count += n;
}

void ErrorStats::merge(const ErrorStats& o) {
  sum_sq_signal += o.sum_sq_signal;
  sum_sq_error += o.sum_sq_error;
  sum_error += o.sum_error;
  max_abs_error = std::max(max_abs_error, o.max_abs_error);
  sum_sq_approx += o.sum_sq_approx;
  sum_product += o.sum_product;
  count += o.count;
}

double ErrorStats::rmse() const { return count ? std::sqrt(sum_sq_error / static_cast<double>(count)) : 0; }
double ErrorStats::mean_error() const { return count ? sum_error / static_cast<double>(count) : 0; }
double ErrorStats::sqnr_db() const {
  if (sum_sq_error == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(sum_sq_signal / sum_sq_error);
}

double ErrorStats::cosine() const {
  if (sum_sq_signal == 0 && sum_sq_approx == 0) return 1.0;
  if (sum_sq_signal == 0 || sum_sq_approx == 0) return 0.0;
  return sum_product / std::sqrt(sum_sq_signal * sum_sq_approx);
}

}  // namespace shrink
