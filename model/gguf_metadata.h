// The GGUF metadata keys llama.cpp reads for the "llama" and "qwen2" architectures
// (llama.cpp src/llama-arch.cpp LLM_KV_*, gguf-py constants.py), both ways.
#pragma once

#include <vector>

#include "common/result.h"
#include "formats/gguf.h"
#include "formats/vocab.h"
#include "model/llama_config.h"

namespace shrink {

// general.*, <arch>.* and tokenizer.ggml.* keys for a model (general.file_type and
// general.quantization_version are the quantizer's to add).
std::vector<GgufKV> llama_gguf_metadata(const LlamaConfig& config, const Vocab& vocab);

// Read back from a GGUF file; errors name the file and the missing or bad key.
Result<LlamaConfig> config_from_gguf(const GgufFile& file);
Result<Vocab> vocab_from_gguf(const GgufFile& file);

}  // namespace shrink
