#include "model/hf_names.h"

#include <cstdlib>

namespace shrink {
namespace {

struct NamePair {
  const char* hf;    // suffix after "model.layers.N." for per-layer tensors
  const char* gguf;  // suffix after "blk.N."
};

constexpr NamePair kLayer[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

constexpr NamePair kGlobal[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

// Splits "<prefix><digits>.<rest>" into layer and rest.
bool split_layer(const std::string& name, const std::string& prefix, long* layer, std::string* rest) {
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  const char* p = name.c_str() + prefix.size();
  char* end = nullptr;
  if (*p < '0' || *p > '9') return false;
  *layer = std::strtol(p, &end, 10);
  if (*end != '.') return false;
  *rest = end + 1;
  return true;
}

}  // namespace

std::optional<std::string> gguf_name_from_hf(const std::string& hf) {
  for (const NamePair& p : kGlobal)
    if (hf == p.hf) return std::string(p.gguf);
  long layer;
  std::string rest;
  if (!split_layer(hf, "model.layers.", &layer, &rest)) return std::nullopt;
  for (const NamePair& p : kLayer)
    if (rest == p.hf) return "blk." + std::to_string(layer) + "." + p.gguf;
  return std::nullopt;
}

std::optional<std::string> hf_name_from_gguf(const std::string& gguf) {
  for (const NamePair& p : kGlobal)
    if (gguf == p.gguf) return std::string(p.hf);
  long layer;
  std::string rest;
  if (!split_layer(gguf, "blk.", &layer, &rest)) return std::nullopt;
  for (const NamePair& p : kLayer)
    if (rest == p.gguf) return "model.layers." + std::to_string(layer) + "." + p.hf;
  return std::nullopt;
}

bool hf_tensor_ignorable(const std::string& hf) {
  // Some older checkpoints store RoPE's inverse frequencies; llama.cpp recomputes them.
  return hf.find("rotary_emb.inv_freq") != std::string::npos;
}

}  // namespace shrink
