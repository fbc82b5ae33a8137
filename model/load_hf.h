// The model architecture a Hugging Face config.json describes, as the HF opener reads it
// (open_hf in model/model_source.h uses it for whole folders; distill/ for a student config).
#pragma once

#include <string>

#include "common/result.h"
#include "formats/hf_model.h"
#include "model/llama_config.h"

namespace shrink {

// LlamaConfig from config.json's keys: arch "qwen2" for Qwen2, else "llama" (Mistral runs as
// llama in llama.cpp); name = the folder holding `file`; rope_scaling linear or llama3 (with
// convert_hf_to_gguf.py's defaults for absent llama3 keys), anything else refused. Validated;
// errors name `file`, the field and the value.
Result<LlamaConfig> llama_config_from_hf(const HfConfig& hf, const std::string& file);

}  // namespace shrink
