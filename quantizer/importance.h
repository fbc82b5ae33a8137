// Importance weights per weight tensor from an importance-matrix file (llama.cpp's imatrix GGUF
// or legacy .dat), checked against the model and filtered as llama-quantize's --include-weights
// / --exclude-weights filter it (a substring of the tensor name).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "model/model_source.h"

namespace shrink {

class Importance {
 public:
  // Reads `path` and checks its names and sizes against `model` (a size mismatch or a name the
  // model lacks is an error naming the file and tensor).
  static Result<Importance> load(const std::string& path, const ModelSource& model,
                                 const std::vector<std::string>& include, const std::vector<std::string>& exclude);
  // Per-column weights for a tensor, or nullptr when the matrix has no (kept) entry for it.
  const std::vector<float>* find(const std::string& tensor) const;
  size_t size() const { return weights_.size(); }

 private:
  std::map<std::string, std::vector<float>> weights_;
};

}  // namespace shrink
