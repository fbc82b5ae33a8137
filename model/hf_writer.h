// Writes a model as a Hugging Face folder (config.json, model.safetensors, tokenizer files)
// that transformers-style loaders read: tensor names and q/k row order as Hugging Face has them.
#pragma once

#include <string>

#include "common/result.h"
#include "formats/safetensors.h"
#include "model/model_source.h"

namespace shrink {

struct HfWriteOptions {
  StDtype dtype = StDtype::F32;         // F32, F16 or BF16
  std::string sentencepiece_model;      // copied as tokenizer.model when the vocab is SentencePiece
  uint64_t max_shard_bytes = 0;         // 0: one model.safetensors
};

// Hugging Face tensor name for a GGUF name ("blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight").
Result<std::string> hf_tensor_name(const std::string& gguf_name);

Status write_hf_folder(const std::string& dir, const ModelSource& model, const HfWriteOptions& options = {});

}  // namespace shrink
