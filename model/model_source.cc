#include "model/model_source.h"

#include <cstring>
#include <filesystem>
#include <fstream>

namespace shrink {

namespace fs = std::filesystem;

int64_t WeightTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // shapes were overflow-checked by the readers
  return n;
}

uint64_t ModelSource::source_bytes() const {
  uint64_t total = 0;
  for (const WeightTensor& t : tensors) total += row_size(t.source_type, t.shape[0]) * static_cast<uint64_t>(t.n_rows());
  return total;
}

const WeightTensor* ModelSource::find(const std::string& name) const {
  for (const WeightTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

Result<ModelSource> open_model(const std::string& path, const OpenOptions& options) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return make_error(path + ": no such file or folder");
  if (fs::is_directory(st)) return open_hf(path, options);
  // Sniff the first bytes rather than trusting the extension.
  char magic[8] = {};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) return make_error(path + ": cannot open for reading");
    in.read(magic, sizeof magic);
  }
  const std::string ext = fs::path(path).extension().string();
  if (std::memcmp(magic, "GGUF", 4) == 0 || ext == ".gguf") return open_gguf_model(path, options);
  if (ext == ".safetensors" || ext == ".json") return open_hf(path, options);
  if (ext == ".bin") return open_llama2c(path, options);
  return make_error(path + ": unrecognised model file (expected a Hugging Face folder, .safetensors, .gguf or a "
                           "llama2.c .bin)");
}

}  // namespace shrink
