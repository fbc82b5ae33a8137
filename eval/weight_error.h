// Error of quantized weights against their source: signal-to-quantization-noise ratio,
// RMSE, the mean signed error (which exposes rounding bias) and the cosine similarity,
// accumulated in double.
#pragma once

#include <cstdint>

namespace shrink {

struct ErrorStats {
  double sum_sq_signal = 0;  // sum x^2
  double sum_sq_error = 0;   // sum (y - x)^2
  double sum_error = 0;      // sum (y - x)
  double max_abs_error = 0;
  double sum_sq_approx = 0;  // sum y^2
  double sum_product = 0;    // sum x y
  int64_t count = 0;

  void add(const float* reference, const float* approx, int64_t n);
  void merge(const ErrorStats& o);
  double rmse() const;
  double mean_error() const;
  double sqnr_db() const;  // 10 log10(signal / noise); +inf for an exact copy
  double cosine() const;   // sum x y / sqrt(sum x^2 sum y^2); 1 when both are all zero
};

}  // namespace shrink
