// ModelSource: a model opened from any supported file, presented the way GGUF "llama"/"qwen2"
// names it: a LlamaConfig, a Vocab and a list of weight tensors under their GGUF names and
// in ggml shape order. Tensor data is not read until asked for, one tensor at a time, so
// peak memory stays near the largest tensor whatever the model size.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "formats/gguf.h"
#include "formats/vocab.h"
#include "kernels/quant_types.h"
#include "model/llama_config.h"

namespace shrink {

struct WeightTensor {
  std::string name;             // GGUF name, e.g. "blk.0.attn_q.weight"
  std::vector<int64_t> shape;   // ggml order: shape[0] is the row length
  TypeId source_type = TypeId::F32;  // storage type in the source file
  std::string origin;           // "<file>: <name in that file>" for messages
  // Fills `out` with the tensor's values (n_elements floats, rows of shape[0]), applying any
  // re-layout the source needs (e.g. Hugging Face q/k rows permuted to GGUF's RoPE order).
  std::function<Status(std::vector<float>& out)> read_f32;
  // Source bytes already in GGUF layout (GGUF input only), for copying without conversion.
  const uint8_t* raw = nullptr;
  uint64_t raw_bytes = 0;

  int64_t n_elements() const;
  int64_t n_rows() const { return shape.empty() ? 0 : n_elements() / shape[0]; }
};

struct ModelSource {
  std::string path;
  std::string format;  // "llama2.c", "hf", "safetensors", "gguf"
  LlamaConfig config;
  Vocab vocab;
  std::vector<WeightTensor> tensors;
  // GGUF input: metadata keys the writer should carry over unchanged (not the derived ones).
  std::vector<GgufKV> passthrough_metadata;
  std::vector<std::string> warnings;          // for tools/ to print
  std::vector<std::shared_ptr<void>> keep_alive;  // mappings the tensors view into

  uint64_t source_bytes() const;  // bytes of all weight data in the source
  const WeightTensor* find(const std::string& name) const;
};

struct OpenOptions {
  std::string tokenizer;  // llama2.c: tok*.bin or a SentencePiece .model
};

// Detects the format of `path` (a folder with config.json, a .safetensors beside a
// config.json, a .gguf, or a llama2.c .bin) and opens it. Errors name the file and problem.
Result<ModelSource> open_model(const std::string& path, const OpenOptions& options = {});

// The per-format openers (model/load_*.cc).
Result<ModelSource> open_llama2c(const std::string& path, const OpenOptions& options);
Result<ModelSource> open_hf(const std::string& path, const OpenOptions& options);
Result<ModelSource> open_gguf_model(const std::string& path, const OpenOptions& options);

}  // namespace shrink
