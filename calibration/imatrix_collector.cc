#include "calibration/imatrix_collector.h"

#include <algorithm>
#include <cmath>

namespace shrink {

ImatrixCollector::ImatrixCollector(ImatrixCollectorOptions options) : options_(options) {}

bool ImatrixCollector::wants(const std::string& name) const {
  return name.rfind("blk.", 0) == 0 || (options_.process_output && name == "output.weight");
}

void ImatrixCollector::observe(const WeightMatrix& w, const float* x, int64_t n_tokens) {
  if (!status_.ok() || n_tokens < options_.min_rows || !wants(w.name)) return;
  const int64_t n = w.n_cols;
  Stats& s = stats_[w.name];
  if (s.sum2.empty()) {
    s.sum2.assign(static_cast<size_t>(n), 0.0);
  } else if (static_cast<int64_t>(s.sum2.size()) != n) {
    status_ = make_error("imatrix: " + w.name + " was seen with rows of " + std::to_string(s.sum2.size()) +
                         " and now " + std::to_string(n) + " (one weight, one row length)");
    return;
  }
  double* acc = s.sum2.data();
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* row = x + t * n;
    for (int64_t j = 0; j < n; ++j) acc[j] += static_cast<double>(row[j]) * static_cast<double>(row[j]);
  }
  s.count += n_tokens;
  for (int64_t j = 0; j < n; ++j)
    if (!std::isfinite(acc[j])) {
      status_ = make_error("imatrix: non-finite sum of squared activations for " + w.name + " column " +
                           std::to_string(j) + " (the model produced Inf/NaN activations on this text)");
      return;
    }
}

int64_t ImatrixCollector::chunk_count(int64_t chunk_size) const {
  if (chunk_size < 1) return 0;
  int64_t most = 0;
  for (const auto& [name, s] : stats_) most = std::max(most, s.count);
  return most / chunk_size;
}

int64_t ImatrixCollector::count(const std::string& name) const {
  auto it = stats_.find(name);
  return it == stats_.end() ? 0 : it->second.count;
}

Result<Imatrix> ImatrixCollector::imatrix(const std::vector<std::string>& datasets, int64_t chunk_size) const {
  if (!status_.ok()) return status_.error();
  Imatrix m;
  m.format = ImatrixFormat::kGguf;
  m.datasets = datasets;
  m.chunk_size = chunk_size;
  m.chunk_count = chunk_count(chunk_size);
  for (const auto& [name, s] : stats_) {
    ImatrixEntry e;
    e.name = name;
    e.n_cols = static_cast<int64_t>(s.sum2.size());
    e.n_mat = 1;
    e.in_sum2.resize(s.sum2.size());
    for (size_t j = 0; j < s.sum2.size(); ++j) {
      const float v = static_cast<float>(s.sum2[j]);
      if (!std::isfinite(v))
        return make_error("imatrix: the sum of squared activations for " + name + " column " + std::to_string(j) +
                          " overflows float (" + std::to_string(s.sum2[j]) + ")");
      e.in_sum2[j] = v;
    }
    e.counts = {static_cast<float>(s.count)};
    m.entries.push_back(std::move(e));
  }
  return m;
}

}  // namespace shrink
