// The one table of tensor names: Hugging Face Llama/Mistral/Qwen2 <-> GGUF (llama.cpp's
// gguf-py tensor_mapping.py for these architectures).
#pragma once

#include <optional>
#include <string>

namespace shrink {

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"; nullopt if unknown.
std::optional<std::string> gguf_name_from_hf(const std::string& hf);
// The inverse.
std::optional<std::string> hf_name_from_gguf(const std::string& gguf);
// HF tensors a converter may drop without loss (e.g. rotary_emb.inv_freq buffers).
bool hf_tensor_ignorable(const std::string& hf);

}  // namespace shrink
