#include "calibration/calibrators.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace shrink {

Result<CalibratorKind> parse_calibrator(const std::string& name) {
  if (name == "minmax") return CalibratorKind::kMinMax;
  if (name == "percentile") return CalibratorKind::kPercentile;
  if (name == "entropy") return CalibratorKind::kEntropy;
  return make_error("calibrator '" + name + "' is not one of minmax, percentile, entropy");
}

void Histogram::add(const float* x, size_t n, bool absolute) {
  double mn = std::numeric_limits<double>::infinity(), mx = -mn;
  for (size_t k = 0; k < n; ++k) {
    if (!std::isfinite(x[k])) continue;
    const double v = absolute ? std::fabs(x[k]) : x[k];
    mn = std::min(mn, v);
    mx = std::max(mx, v);
  }
  if (!(mx >= mn)) return;  // nothing finite
  if (absolute) mn = 0;
  if (count.empty()) {
    lo = mn;
    hi = mx > mn ? mx : mn + 1e-12;
    count.assign(bins, 0.0);
  } else if (mn < lo || mx > hi) {
    // Widen and move each old bin's count to the new bin holding its centre.
    const double nlo = std::min(lo, mn), nhi = std::max(hi, mx);
    std::vector<double> next(bins, 0.0);
    const double ow = (hi - lo) / bins, nw = (nhi - nlo) / bins;
    for (int b = 0; b < bins; ++b) {
      const int nb = std::min(bins - 1, static_cast<int>((lo + (b + 0.5) * ow - nlo) / nw));
      next[nb] += count[b];
    }
    count.swap(next);
    lo = nlo;
    hi = nhi;
  }
  const double w = (hi - lo) / bins;
  for (size_t k = 0; k < n; ++k) {
    if (!std::isfinite(x[k])) continue;
    const double v = absolute ? std::fabs(x[k]) : x[k];
    const int b = std::clamp(static_cast<int>((v - lo) / w), 0, bins - 1);
    count[b] += 1;
  }
}

double entropy_threshold(const Histogram& h, int num_quantized_bins) {
  const int B = h.bins;
  const double width = (h.hi - h.lo) / B;
  if (h.empty() || B <= num_quantized_bins) return h.hi;
  double best_kl = std::numeric_limits<double>::infinity();
  int best_i = B;
  std::vector<double> p, q;
  double tail = 0;
  for (int b = num_quantized_bins; b < B; ++b) tail += h.count[b];
  for (int i = num_quantized_bins; i <= B; ++i) {
    // P: the first i bins, with everything beyond the threshold folded into the last one.
    p.assign(h.count.begin(), h.count.begin() + i);
    p[i - 1] += tail;
    if (i < B) tail -= h.count[i];
    // Q: the first i bins merged into num_quantized_bins levels, each level's mass spread evenly over
    // the bins of that level that were non-empty (empty bins stay empty, as in TensorRT).
    q.assign(i, 0.0);
    for (int j = 0; j < num_quantized_bins; ++j) {
      const int start = static_cast<int>(static_cast<int64_t>(j) * i / num_quantized_bins);
      const int end = static_cast<int>(static_cast<int64_t>(j + 1) * i / num_quantized_bins);
      double mass = 0;
      int nonzero = 0;
      for (int b = start; b < end; ++b) {
        mass += h.count[b];
        nonzero += h.count[b] != 0;
      }
      if (nonzero == 0) continue;
      for (int b = start; b < end; ++b)
        if (h.count[b] != 0) q[b] = mass / nonzero;
    }
    double ps = 0, qs = 0;
    for (int b = 0; b < i; ++b) ps += p[b], qs += q[b];
    if (ps <= 0 || qs <= 0) continue;
    double kl = 0;
    for (int b = 0; b < i; ++b) {
      if (p[b] <= 0) continue;
      const double pp = p[b] / ps;
      const double qq = std::max(q[b] / qs, 1e-12);  // a folded outlier bin may have no Q mass
      kl += pp * std::log(pp / qq);
    }
    if (kl < best_kl) {
      best_kl = kl;
      best_i = i;
    }
  }
  return h.lo + best_i * width;
}

namespace {

Range with_zero(double mn, double mx) {
  Range r;
  r.rmin = static_cast<float>(std::min(mn, 0.0));
  r.rmax = static_cast<float>(std::max(mx, 0.0));
  return r;
}

class MinMaxCalibrator : public Calibrator {
 public:
  explicit MinMaxCalibrator(const CalibratorOptions& o) : opt_(o) {}
  void observe(const float* x, size_t n) override {
    double mn = std::numeric_limits<double>::infinity(), mx = -mn;
    for (size_t k = 0; k < n; ++k)
      if (std::isfinite(x[k])) mn = std::min<double>(mn, x[k]), mx = std::max<double>(mx, x[k]);
    if (!(mx >= mn)) return;
    if (!seen_) {
      mn_ = mn;
      mx_ = mx;
      seen_ = true;
    } else if (opt_.moving_average) {
      mn_ += opt_.averaging_constant * (mn - mn_);
      mx_ += opt_.averaging_constant * (mx - mx_);
    } else {
      mn_ = std::min(mn_, mn);
      mx_ = std::max(mx_, mx);
    }
  }
  Range range() const override { return seen_ ? with_zero(mn_, mx_) : Range{}; }

 private:
  CalibratorOptions opt_;
  bool seen_ = false;
  double mn_ = 0, mx_ = 0;
};

class PercentileCalibrator : public Calibrator {
 public:
  explicit PercentileCalibrator(const CalibratorOptions& o) : opt_(o) { h_.bins = o.num_bins; }
  void observe(const float* x, size_t n) override { h_.add(x, n, false); }
  Range range() const override {
    if (h_.empty()) return {};
    double total = 0;
    for (double c : h_.count) total += c;
    const double cut = (100.0 - opt_.percentile) / 200.0 * total;  // mass cut from each side
    const double w = (h_.hi - h_.lo) / h_.bins;
    int left = 0, right = h_.bins - 1;
    for (double acc = 0; left < h_.bins - 1; ++left) {
      acc += h_.count[left];
      if (acc > cut) break;
    }
    for (double acc = 0; right > 0; --right) {
      acc += h_.count[right];
      if (acc > cut) break;
    }
    return with_zero(h_.lo + left * w, h_.lo + (right + 1) * w);
  }

 private:
  CalibratorOptions opt_;
  Histogram h_;
};

class EntropyCalibrator : public Calibrator {
 public:
  explicit EntropyCalibrator(const CalibratorOptions& o) : opt_(o) { h_.bins = o.num_bins; }
  void observe(const float* x, size_t n) override {
    h_.add(x, n, true);
    for (size_t k = 0; k < n; ++k)
      if (std::isfinite(x[k])) mn_ = std::min<double>(mn_, x[k]), mx_ = std::max<double>(mx_, x[k]);
  }
  Range range() const override {
    if (h_.empty()) return {};
    const double t = entropy_threshold(h_, opt_.num_quantized_bins);
    return with_zero(std::max(mn_, -t), std::min(mx_, t));
  }

 private:
  CalibratorOptions opt_;
  Histogram h_;
  double mn_ = std::numeric_limits<double>::infinity(), mx_ = -std::numeric_limits<double>::infinity();
};

}  // namespace

std::unique_ptr<Calibrator> make_calibrator(const CalibratorOptions& opt) {
  switch (opt.kind) {
    case CalibratorKind::kPercentile: return std::make_unique<PercentileCalibrator>(opt);
    case CalibratorKind::kEntropy: return std::make_unique<EntropyCalibrator>(opt);
    default: return std::make_unique<MinMaxCalibrator>(opt);
  }
}

}  // namespace shrink
