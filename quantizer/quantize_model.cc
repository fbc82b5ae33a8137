#include "quantizer/quantize_model.h"

#include <chrono>
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"
#include "model/gguf_metadata.h"
#include "quantizer/best_quant.h"

namespace shrink {

int64_t find_nonfinite(const float* values, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(values[i])) return i;
  return -1;
}

namespace {

// Reads a tensor as floats and applies the NaN/Inf policy.
Status read_checked(const WeightTensor& t, const QuantizeOptions& options, std::vector<float>& values) {
  SHRINK_CHECK(t.read_f32(values));
  const int64_t n = t.n_elements();
  if (static_cast<int64_t>(values.size()) != n)
    return make_error(t.origin + ": read " + std::to_string(values.size()) + " values, expected " + std::to_string(n));
  if (!options.allow_nonfinite) {
    int64_t bad = find_nonfinite(values.data(), n);
    if (bad >= 0)
      return make_error(t.origin + ": weight " + std::to_string(bad) + " is " + (std::isnan(values[bad]) ? "NaN" : "Inf") +
                        " (refusing to quantize non-finite weights; --allow-nonfinite to write them anyway)");
  }
  return {};
}

const float* importance_of(const WeightTensor& t, const QuantizeOptions& options) {
  if (!options.importance) return nullptr;
  const std::vector<float>* w = options.importance(t);
  return w != nullptr && static_cast<int64_t>(w->size()) == t.shape[0] ? w->data() : nullptr;
}

void quantize(TypeId type, QuantAlgo algo, const float* src, void* dst, int64_t rows, int64_t cols, const float* imatrix) {
  if (algo == QuantAlgo::kBest && best_supports(type)) quantize_rows_best(type, src, dst, rows, cols, imatrix);
  else kernels::quantize_rows(type, src, dst, rows, cols, imatrix);
}

}  // namespace

Result<QuantPlan> resolve_plan(const ModelSource& model, const QuantizeOptions& options) {
  SHRINK_ASSIGN(QuantPlan plan, make_plan(model, options.plan));
  std::vector<float> values;
  std::vector<uint8_t> out;
  for (TensorPlan& p : plan.tensors) {
    if (p.candidates.size() <= 1) continue;
    const WeightTensor& t = *p.tensor;
    SHRINK_CHECK(read_checked(t, options, values));
    const float* imatrix = importance_of(t, options);
    double best_err = INFINITY;
    TypeId best = p.candidates.front();
    for (TypeId c : p.candidates) {
      out.resize(row_size(c, t.shape[0]) * static_cast<size_t>(t.n_rows()));
      quantize(c, options.algo, values.data(), out.data(), t.n_rows(), t.shape[0], imatrix);
      const double err = weighted_sq_error(c, values.data(), out.data(), t.n_rows(), t.shape[0], imatrix);
      if (err < best_err) best_err = err, best = c;
    }
    set_plan_type(p, best);
    p.candidates = {best};
  }
  return plan;
}

Result<QuantizeSummary> quantize_model(const ModelSource& model, const QuantizeOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  QuantizeSummary summary;
  SHRINK_ASSIGN(summary.plan, resolve_plan(model, options));
  const QuantPlan& plan = summary.plan;

  GgufWriter writer(options.output);
  std::vector<GgufKV> metadata =
      model.format == "gguf" ? model.passthrough_metadata : llama_gguf_metadata(model.config, model.vocab);
  for (GgufKV& kv : metadata) writer.set(kv.key, std::move(kv.value));
  writer.set("general.quantization_version", GgufValue::u32(2));  // ggml's GGML_QNT_VERSION
  writer.set("general.file_type", GgufValue::u32(plan.file_type));
  for (const TensorPlan& p : plan.tensors) writer.add_tensor(p.tensor->name, p.tensor->shape, p.type);
  SHRINK_CHECK(writer.begin());

  QuantizeProgress progress;
  progress.total = plan.tensors.size();
  progress.bytes_total = plan.total_bytes();
  std::vector<float> values;
  std::vector<uint8_t> out;
  for (size_t i = 0; i < plan.tensors.size(); ++i) {
    const TensorPlan& p = plan.tensors[i];
    const WeightTensor& t = *p.tensor;
    progress.index = i;
    progress.current = &t.name;
    if (options.on_progress) options.on_progress(progress);
    if (t.raw != nullptr && t.source_type == p.type) {
      // Same type in and out: copy the bytes (no second rounding).
      SHRINK_CHECK(writer.write_tensor_data(i, t.raw, t.raw_bytes));
    } else {
      SHRINK_CHECK(read_checked(t, options, values));
      const float* imatrix = traits(p.type).quantized ? importance_of(t, options) : nullptr;
      if (options.importance && traits(p.type).quantized && imatrix == nullptr) summary.unweighted.push_back(t.name);
      out.resize(p.bytes);
      quantize(p.type, options.algo, values.data(), out.data(), t.n_rows(), t.shape[0], imatrix);
      SHRINK_CHECK(writer.write_tensor_data(i, out.data(), out.size()));
    }
    progress.bytes_done += p.bytes;
  }
  SHRINK_CHECK(writer.finish());
  progress.index = plan.tensors.size();
  progress.current = nullptr;
  if (options.on_progress) options.on_progress(progress);

  summary.n_tensors = plan.tensors.size();
  summary.n_weights = plan.total_weights();
  summary.input_bytes = model.source_bytes();
  summary.output_tensor_bytes = plan.total_bytes();
  summary.output_bytes = writer.bytes_written();
  summary.bits_per_weight =
      summary.n_weights > 0 ? 8.0 * static_cast<double>(summary.output_tensor_bytes) / static_cast<double>(summary.n_weights) : 0;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace shrink
