#include "calibration/onnx_calibrate.h"

#include <memory>

namespace shrink {

Result<OnnxCalibration> calibrate_onnx(const OnnxExecutor& ex, const std::vector<OnnxSample>& samples,
                                       const std::vector<std::string>& tensors, const CalibratorOptions& opt,
                                       const CalibrationProgress& progress) {
  std::map<std::string, std::unique_ptr<Calibrator>> cal;
  for (const auto& t : tensors) cal[t] = nullptr;
  auto see = [&](const std::string& name, const OnnxTensor& v) {
    auto it = cal.find(name);
    if (it == cal.end() || !v.is_float()) return;
    if (!it->second) it->second = make_calibrator(opt);
    it->second->observe(v.f.data(), v.f.size());
  };
  OnnxRunOptions ro;
  ro.observe_subgraphs = true;  // ranges of tensors inside If/Loop bodies (the branches each sample takes)
  ro.observer = [&](const onnx::NodeProto&, const std::vector<std::string>& names, const std::vector<const OnnxTensor*>& vals) {
    for (size_t k = 0; k < names.size(); ++k) see(names[k], *vals[k]);
  };
  for (size_t s = 0; s < samples.size(); ++s) {
    for (const auto& [name, v] : samples[s]) see(name, v);  // graph inputs are not node outputs
    auto r = ex.run(samples[s], ro);
    if (!r.ok()) return make_error("calibration sample " + std::to_string(s) + ": " + r.error().message);
    if (progress) progress(s + 1, samples.size());
  }
  OnnxCalibration out;
  for (const auto& [name, c] : cal) {
    if (c) out.ranges[name] = c->range();
    else out.not_observed.push_back(name);
  }
  return out;
}

}  // namespace shrink
