// GGUF input: the tensors stay as they are; values are read by dequantizing when a
// different output type is asked for.
#include <memory>

#include "kernels/kernels.h"
#include "model/gguf_metadata.h"
#include "model/model_source.h"

namespace shrink {

Result<ModelSource> open_gguf_model(const std::string& path, const OpenOptions&) {
  SHRINK_ASSIGN(GgufFile file, GgufFile::open(path));
  auto shared = std::make_shared<GgufFile>(std::move(file));
  ModelSource m;
  m.path = path;
  m.format = "gguf";
  SHRINK_ASSIGN(m.config, config_from_gguf(*shared));
  SHRINK_ASSIGN(m.vocab, vocab_from_gguf(*shared));
  for (const GgufKV& kv : shared->metadata()) {
    // Derived keys are rewritten by the quantizer; alignment by the writer.
    if (kv.key == "general.file_type" || kv.key == "general.quantization_version" || kv.key == "general.alignment")
      continue;
    m.passthrough_metadata.push_back(kv);
  }
  for (const GgufTensorInfo& info : shared->tensors()) {
    WeightTensor t;
    t.name = info.name;
    t.shape = info.shape;
    t.source_type = info.type;
    t.origin = path + ": " + info.name;
    t.raw = info.data;
    t.raw_bytes = info.n_bytes;
    const GgufTensorInfo* ip = &info;
    t.read_f32 = [ip, path](std::vector<float>& out) -> Status {
      if (!kernels::can_dequantize(ip->type))
        return make_error(path + ": tensor " + ip->name + " has type " + std::string(type_name(ip->type)) +
                          ", which shrink cannot read back to floats yet");
      const int64_t n = ip->shape.empty() ? 0 : ip->n_elements();
      out.resize(static_cast<size_t>(n));
      kernels::dequantize_rows(ip->type, ip->data, out.data(), n / ip->shape[0], ip->shape[0]);
      return {};
    };
    m.tensors.push_back(std::move(t));
  }
  m.keep_alive.push_back(shared);
  return m;
}

}  // namespace shrink
