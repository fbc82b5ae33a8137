#include "eval/tensor_report.h"

namespace shrink {
namespace {

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

Result<TensorReport> compare_tensors(const ModelSource& quantized, const ModelSource& source) {
  TensorReport report;
  std::vector<float> ref, got;
  for (const WeightTensor& t : quantized.tensors) {
    const WeightTensor* s = source.find(t.name);
    if (s == nullptr) {
      report.not_in_source.push_back(t.name);
      continue;
    }
    if (s->shape != t.shape)
      return make_error("tensor " + t.name + ": shape " + shape_text(t.shape) + " in " + quantized.path + " but " +
                        shape_text(s->shape) + " in " + source.path);
    SHRINK_CHECK(s->read_f32(ref));
    SHRINK_CHECK(t.read_f32(got));
    if (ref.size() != got.size())
      return make_error("tensor " + t.name + ": read " + std::to_string(got.size()) + " values from " + quantized.path +
                        " but " + std::to_string(ref.size()) + " from " + source.path);
    TensorErrorRow row;
    row.name = t.name;
    row.type = t.source_type;
    row.shape = t.shape;
    row.error.add(ref.data(), got.data(), static_cast<int64_t>(ref.size()));
    // GGUF input: the bytes actually stored; otherwise what the storage type takes per row.
    const uint64_t bytes = t.raw_bytes > 0 ? t.raw_bytes
                                           : static_cast<uint64_t>(row_size(t.source_type, t.shape[0])) *
                                                 static_cast<uint64_t>(t.n_rows());
    row.bits_per_weight = ref.empty() ? 0 : 8.0 * static_cast<double>(bytes) / static_cast<double>(ref.size());
    report.total.merge(row.error);
    report.total_bytes += bytes;
    report.rows.push_back(std::move(row));
  }
  return report;
}

}  // namespace shrink
