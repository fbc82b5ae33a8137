// Static-quantization calibration: runs the reference executor over the samples and feeds every
// value of the requested tensors to one calibrator each (calibrators.h).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "calibration/calibrators.h"
#include "calibration/onnx_calib_data.h"
#include "calibration/onnx_executor.h"

namespace shrink {

struct OnnxCalibration {
  std::map<std::string, Range> ranges;    // tensors that were FLOAT and observed
  std::vector<std::string> not_observed;  // requested but never seen as FLOAT (integer, or not computed)
};

using CalibrationProgress = std::function<void(size_t done, size_t total)>;

Result<OnnxCalibration> calibrate_onnx(const OnnxExecutor& ex, const std::vector<OnnxSample>& samples,
                                       const std::vector<std::string>& tensors, const CalibratorOptions& opt,
                                       const CalibrationProgress& progress = {});

}  // namespace shrink
