// LlamaConfig: the hyper-parameters of a Llama-family decoder (Llama 2/3, Mistral, Qwen2,
// SmolLM, TinyLlama), in llama.cpp's words, whatever file they were read from.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/result.h"

namespace shrink {

struct RopeScaling {
  std::string type;   // "linear" or "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;    // llama3 only
  double high_freq_factor = 4.0;   // llama3 only
  int64_t original_context = 8192; // llama3: original_max_position_embeddings
};

struct LlamaConfig {
  std::string arch = "llama";  // GGUF general.architecture: "llama" or "qwen2"
  std::string name;            // general.name
  int64_t n_embd = 0;          // hidden size
  int64_t n_ff = 0;            // feed-forward (intermediate) size
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;        // usually n_embd / n_head
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  double rope_theta = 10000.0;
  double rms_eps = 1e-5;
  bool tied_embeddings = false;  // output projection shares token_embd
  bool qkv_bias = false;         // Qwen2: q/k/v projections carry biases
  std::optional<RopeScaling> rope_scaling;

  int64_t n_embd_q() const { return n_head * head_dim; }
  int64_t n_embd_kv() const { return n_head_kv * head_dim; }
  // Every size positive, heads dividing evenly, GQA groups whole; `source` names the file.
  Status validate(const std::string& source) const;
  // Parameter count of the weights this config implies (norms included).
  int64_t n_params() const;
};

}  // namespace shrink
