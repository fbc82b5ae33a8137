#include "model/llama_config.h"

namespace shrink {

Status LlamaConfig::validate(const std::string& source) const {
  auto bad = [&](const std::string& field, int64_t v, const char* rule) {
    return make_error(source + ": " + field + " = " + std::to_string(v) + " " + rule);
  };
  // 1<<24 bounds every dimension far above any released model (Llama 3 405B: hidden 16384,
  // vocab 128256) while keeping products of two dimensions inside int64.
  constexpr int64_t kMax = int64_t{1} << 24;
  struct Field { const char* name; int64_t v; } fields[] = {
      {"embedding length", n_embd}, {"feed-forward length", n_ff}, {"layer count", n_layer},
      {"head count", n_head}, {"kv head count", n_head_kv}, {"head dim", head_dim}, {"vocab size", n_vocab}};
  for (const Field& f : fields) {
    if (f.v <= 0) return bad(f.name, f.v, "must be positive");
    if (f.v > kMax) return bad(f.name, f.v, "is implausibly large (limit 2^24)");
  }
  if (n_head % n_head_kv != 0)
    return make_error(source + ": head count " + std::to_string(n_head) + " is not a multiple of kv head count " +
                      std::to_string(n_head_kv) + " (grouped-query attention needs whole groups)");
  if (head_dim % 2 != 0) return bad("head dim", head_dim, "must be even (RoPE rotates pairs)");
  if (n_ctx_train < 0) return bad("context length", n_ctx_train, "must not be negative");
  if (!(rms_eps > 0) || rms_eps > 1) return make_error(source + ": rms_norm_eps = " + std::to_string(rms_eps) + " must lie in (0, 1]");
  if (!(rope_theta > 0)) return make_error(source + ": rope_theta = " + std::to_string(rope_theta) + " must be positive");
  if (arch != "llama" && arch != "qwen2") return make_error(source + ": architecture '" + arch + "' is not supported (supported: llama, qwen2)");
  return {};
}

int64_t LlamaConfig::n_params() const {
  int64_t attn = n_embd * n_embd_q() * 2 + n_embd * n_embd_kv() * 2;
  if (qkv_bias) attn += n_embd_q() + 2 * n_embd_kv();
  int64_t ffn = 3 * n_embd * n_ff;
  int64_t per_layer = attn + ffn + 2 * n_embd;
  int64_t total = n_layer * per_layer + n_vocab * n_embd + n_embd;
  if (!tied_embeddings) total += n_vocab * n_embd;
  return total;
}

}  // namespace shrink
