#include "eval/onnx_compare.h"

#include <algorithm>
#include <cmath>

namespace shrink {

void OnnxErrorStats::add(const float* ref, const float* test, size_t n, int64_t row_len) {
  for (size_t k = 0; k < n; ++k) {
    const double r = ref[k], t = test[k];
    ref_sq += r * r;
    test_sq += t * t;
    dot += r * t;
    err_sq += (r - t) * (r - t);
    max_abs = std::max(max_abs, std::fabs(r - t));
  }
  count += static_cast<int64_t>(n);
  if (row_len > 1 && n % row_len == 0) {
    for (size_t b = 0; b < n; b += row_len) {
      const auto ra = std::max_element(ref + b, ref + b + row_len) - (ref + b);
      const auto ta = std::max_element(test + b, test + b + row_len) - (test + b);
      ++rows;
      top1_same += ra == ta;
    }
  }
}

double OnnxErrorStats::sqnr_db() const {
  if (err_sq == 0) return 200.0;
  if (ref_sq == 0) return -200.0;
  return 10.0 * std::log10(ref_sq / err_sq);
}

double OnnxErrorStats::cosine() const {
  if (ref_sq == 0 || test_sq == 0) return ref_sq == test_sq ? 1.0 : 0.0;
  return dot / std::sqrt(ref_sq * test_sq);
}

double OnnxErrorStats::top1() const { return rows ? static_cast<double>(top1_same) / static_cast<double>(rows) : -1.0; }

std::vector<std::pair<std::string, std::string>> dequantized_activations(const onnx::ModelProto& q) {
  const auto& g = q.graph();
  std::map<std::string, std::string> q_input;  // QuantizeLinear output -> its float input
  for (const auto& n : g.node())
    if (n.op_type() == "QuantizeLinear" && n.input_size() > 0 && n.output_size() > 0) q_input[n.output(0)] = n.input(0);
  std::vector<std::pair<std::string, std::string>> v;
  for (const auto& n : g.node()) {
    if (n.op_type() != "DequantizeLinear" || n.input_size() == 0) continue;
    auto it = q_input.find(n.input(0));
    if (it != q_input.end()) v.emplace_back(it->second, n.output(0));
  }
  return v;
}

Status add_node_sample(OnnxCompareReport::Node* n, const OnnxTensor& ref, const OnnxTensor& test) {
  if (!ref.is_float() || !test.is_float() || ref.shape != test.shape || ref.f.size() != test.f.size())
    return make_error("tensor '" + n->tensor + "': float and dequantized values differ in type or shape");
  n->stats.add(ref.f.data(), test.f.data(), ref.f.size(), ref.shape.empty() ? 1 : ref.shape.back());
  return {};
}

Status add_output_sample(OnnxCompareReport* r, const std::vector<std::string>& names,
                         const std::map<std::string, OnnxTensor>& ref, const std::map<std::string, OnnxTensor>& test) {
  if (r->outputs.empty())
    for (const auto& name : names) r->outputs.emplace_back(name, OnnxErrorStats{});
  for (auto& [name, st] : r->outputs) {
    auto a = ref.find(name);
    auto b = test.find(name);
    if (a == ref.end() || b == test.end()) return make_error("output '" + name + "' is missing from one of the models");
    if (!a->second.is_float() || !b->second.is_float()) return make_error("output '" + name + "' is not FLOAT");
    if (a->second.shape != b->second.shape) return make_error("output '" + name + "' differs in shape between the models");
    st.add(a->second.f.data(), b->second.f.data(), a->second.f.size(), a->second.shape.empty() ? 1 : a->second.shape.back());
  }
  ++r->samples;
  return {};
}

}  // namespace shrink
