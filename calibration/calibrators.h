// Activation-range calibrators for static quantization: each sees every value a tensor takes over
// the calibration samples and proposes the float range [rmin, rmax] the quantizer maps to uint8.
//  - MinMax: the extremes over all samples, or (moving_average) an exponential average of the
//    per-sample extremes with constant 0.01, as ONNX Runtime's MinMaxCalibrater.
//  - Percentile: a 2048-bin histogram; cuts (100 - p)/2 percent of the mass from each side.
//  - Entropy: TensorRT's KL-divergence calibration on a 2048-bin histogram of |x|: the clip
//    threshold whose 128-level quantized distribution is closest (KL) to the clipped original.
// Every range is widened to include 0 so zero is exactly representable.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace shrink {

enum class CalibratorKind { kMinMax, kPercentile, kEntropy };
Result<CalibratorKind> parse_calibrator(const std::string& name);

struct CalibratorOptions {
  CalibratorKind kind = CalibratorKind::kMinMax;
  bool moving_average = false;      // MinMax only
  double averaging_constant = 0.01;  // ONNX Runtime's default for the moving average
  double percentile = 99.999;        // Percentile only, in (50, 100]
  int num_bins = 2048;               // histogram bins (Percentile, Entropy)
  int num_quantized_bins = 128;      // Entropy: levels of the quantized candidate (TensorRT uses 128)
};

struct Range {
  float rmin = 0, rmax = 0;
};

// One tensor's observer. `observe` is called once per calibration sample with all its values.
class Calibrator {
 public:
  virtual ~Calibrator() = default;
  virtual void observe(const float* x, size_t n) = 0;
  virtual Range range() const = 0;
};

std::unique_ptr<Calibrator> make_calibrator(const CalibratorOptions& opt);

// Fixed-width histogram over [lo, hi] that grows (re-binning its counts) when values fall outside.
struct Histogram {
  int bins = 2048;
  double lo = 0, hi = 0;
  std::vector<double> count;
  bool empty() const { return count.empty(); }
  void add(const float* x, size_t n, bool absolute);
};

// The KL-optimal clip threshold of a histogram over [0, hi] (TensorRT's entropy calibration).
double entropy_threshold(const Histogram& h, int num_quantized_bins);

}  // namespace shrink
