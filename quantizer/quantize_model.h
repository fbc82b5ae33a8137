// The streaming quantization pipeline: plan -> resolve error-chosen fallbacks -> GGUF header ->
// one tensor at a time (read as floats, check finiteness, quantize, write) -> rename into place.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/result.h"
#include "model/model_source.h"
#include "quantizer/plan.h"

namespace shrink {

struct QuantizeProgress {
  size_t index = 0;       // tensors finished
  size_t total = 0;
  uint64_t bytes_done = 0;  // output bytes written so far
  uint64_t bytes_total = 0;
  const std::string* current = nullptr;  // tensor being worked on
};

enum class QuantAlgo {
  kGgml,  // byte-identical to ggml_quantize_chunk
  kBest,  // shrink's own scale search: same layout, lower weighted error
};

struct QuantizeOptions {
  PlanOptions plan;
  QuantAlgo algo = QuantAlgo::kBest;
  std::string output;
  bool allow_nonfinite = false;  // NaN/Inf weights are refused unless this is set
  // Per-column importance for a weight tensor (row length values), or nullptr when the
  // importance matrix has no entry for it (then it is quantized unweighted).
  std::function<const std::vector<float>*(const WeightTensor&)> importance;
  std::function<void(const QuantizeProgress&)> on_progress;
};

struct QuantizeSummary {
  QuantPlan plan;
  size_t n_tensors = 0;
  int64_t n_weights = 0;
  uint64_t input_bytes = 0;   // weight data in the source
  uint64_t output_bytes = 0;  // whole output file
  uint64_t output_tensor_bytes = 0;
  double bits_per_weight = 0;  // output tensor bits / weights
  double seconds = 0;
  std::vector<std::string> unweighted;  // quantized tensors the importance matrix had no entry for
};

// Makes the plan and resolves every error-chosen fallback (reads those tensors once).
Result<QuantPlan> resolve_plan(const ModelSource& model, const QuantizeOptions& options);

Result<QuantizeSummary> quantize_model(const ModelSource& model, const QuantizeOptions& options);

// Index of the first NaN or Inf in `values`, or -1.
int64_t find_nonfinite(const float* values, int64_t n);

}  // namespace shrink
