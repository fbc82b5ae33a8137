#include "model/gguf_metadata.h"

#include <cmath>

namespace shrink {

std::vector<GgufKV> llama_gguf_metadata(const LlamaConfig& c, const Vocab& v) {
  std::vector<GgufKV> kv;
  auto add = [&](std::string key, GgufValue value) { kv.push_back({std::move(key), std::move(value)}); };
  const std::string a = c.arch;
  add("general.architecture", GgufValue::str(a));
  add("general.name", GgufValue::str(c.name.empty() ? a : c.name));
  add(a + ".context_length", GgufValue::u32(static_cast<uint32_t>(c.n_ctx_train)));
  add(a + ".embedding_length", GgufValue::u32(static_cast<uint32_t>(c.n_embd)));
  add(a + ".block_count", GgufValue::u32(static_cast<uint32_t>(c.n_layer)));
  add(a + ".feed_forward_length", GgufValue::u32(static_cast<uint32_t>(c.n_ff)));
  add(a + ".attention.head_count", GgufValue::u32(static_cast<uint32_t>(c.n_head)));
  add(a + ".attention.head_count_kv", GgufValue::u32(static_cast<uint32_t>(c.n_head_kv)));
  add(a + ".rope.freq_base", GgufValue::f32(static_cast<float>(c.rope_theta)));
  add(a + ".attention.layer_norm_rms_epsilon", GgufValue::f32(static_cast<float>(c.rms_eps)));
  add(a + ".vocab_size", GgufValue::u32(static_cast<uint32_t>(c.n_vocab)));
  add(a + ".rope.dimension_count", GgufValue::u32(static_cast<uint32_t>(c.head_dim)));
  if (c.head_dim * c.n_head != c.n_embd) {
    // llama.cpp assumes n_embd / n_head unless these say otherwise.
    add(a + ".attention.key_length", GgufValue::u32(static_cast<uint32_t>(c.head_dim)));
    add(a + ".attention.value_length", GgufValue::u32(static_cast<uint32_t>(c.head_dim)));
  }
  if (c.rope_scaling && c.rope_scaling->type == "linear") {
    add(a + ".rope.scaling.type", GgufValue::str("linear"));
    add(a + ".rope.scaling.factor", GgufValue::f32(static_cast<float>(c.rope_scaling->factor)));
  }
  // llama3 rope scaling travels as the rope_freqs.weight tensor, not as keys.

  add("tokenizer.ggml.model", GgufValue::str(v.model));
  if (!v.pre.empty()) add("tokenizer.ggml.pre", GgufValue::str(v.pre));
  add("tokenizer.ggml.tokens", GgufValue::array_str(v.tokens));
  if (!v.scores.empty()) add("tokenizer.ggml.scores", GgufValue::array_f32(v.scores));
  if (!v.token_types.empty()) {
    std::vector<int32_t> types;
    types.reserve(v.token_types.size());
    for (TokenType t : v.token_types) types.push_back(static_cast<int32_t>(t));
    add("tokenizer.ggml.token_type", GgufValue::array_i32(types));
  }
  if (!v.merges.empty()) add("tokenizer.ggml.merges", GgufValue::array_str(v.merges));
  auto id = [&](const char* key, const std::optional<int64_t>& x) {
    if (x) add(key, GgufValue::u32(static_cast<uint32_t>(*x)));
  };
  id("tokenizer.ggml.bos_token_id", v.bos_id);
  id("tokenizer.ggml.eos_token_id", v.eos_id);
  id("tokenizer.ggml.unknown_token_id", v.unk_id);
  id("tokenizer.ggml.padding_token_id", v.pad_id);
  if (v.add_bos) add("tokenizer.ggml.add_bos_token", GgufValue::boolean(*v.add_bos));
  if (v.add_eos) add("tokenizer.ggml.add_eos_token", GgufValue::boolean(*v.add_eos));
  if (v.add_space_prefix) add("tokenizer.ggml.add_space_prefix", GgufValue::boolean(*v.add_space_prefix));
  if (v.chat_template) add("tokenizer.chat_template", GgufValue::str(*v.chat_template));
  return kv;
}

namespace {

Result<int64_t> get_int(const GgufFile& f, const std::string& key, std::optional<int64_t> fallback = std::nullopt) {
  const GgufValue* v = f.find(key);
  if (v == nullptr) {
    if (fallback) return *fallback;
    return make_error(f.path() + ": metadata key " + key + " is missing");
  }
  auto x = v->as_int();
  if (!x) return make_error(f.path() + ": metadata key " + key + " has type " + gguf_type_name(v->type) + ", expected an integer");
  return *x;
}

Result<double> get_float(const GgufFile& f, const std::string& key, std::optional<double> fallback = std::nullopt) {
  const GgufValue* v = f.find(key);
  if (v == nullptr) {
    if (fallback) return *fallback;
    return make_error(f.path() + ": metadata key " + key + " is missing");
  }
  auto x = v->as_float();
  if (!x) return make_error(f.path() + ": metadata key " + key + " has type " + gguf_type_name(v->type) + ", expected a number");
  return *x;
}

}  // namespace

Result<LlamaConfig> config_from_gguf(const GgufFile& f) {
  LlamaConfig c;
  const GgufValue* arch = f.find("general.architecture");
  if (arch == nullptr || arch->as_string() == nullptr)
    return make_error(f.path() + ": metadata key general.architecture is missing or not a string");
  c.arch = *arch->as_string();
  if (c.arch != "llama" && c.arch != "qwen2")
    return make_error(f.path() + ": architecture '" + c.arch + "' is not supported (supported: llama, qwen2)");
  if (const GgufValue* n = f.find("general.name"); n && n->as_string()) c.name = *n->as_string();
  const std::string a = c.arch + ".";
  SHRINK_ASSIGN(c.n_embd, get_int(f, a + "embedding_length"));
  SHRINK_ASSIGN(c.n_ff, get_int(f, a + "feed_forward_length"));
  SHRINK_ASSIGN(c.n_layer, get_int(f, a + "block_count"));
  SHRINK_ASSIGN(c.n_head, get_int(f, a + "attention.head_count"));
  SHRINK_ASSIGN(c.n_head_kv, get_int(f, a + "attention.head_count_kv", c.n_head));
  SHRINK_ASSIGN(c.n_ctx_train, get_int(f, a + "context_length", 0));
  SHRINK_ASSIGN(c.rope_theta, get_float(f, a + "rope.freq_base", 10000.0));
  SHRINK_ASSIGN(c.rms_eps, get_float(f, a + "attention.layer_norm_rms_epsilon"));
  SHRINK_ASSIGN(c.head_dim, get_int(f, a + "attention.key_length", c.n_head > 0 ? c.n_embd / c.n_head : 0));
  const GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  if (embd == nullptr) return make_error(f.path() + ": tensor token_embd.weight is missing");
  if (embd->shape.size() != 2) return make_error(f.path() + ": tensor token_embd.weight must be 2-D");
  int64_t vocab_from_tensor = embd->shape[1];
  SHRINK_ASSIGN(c.n_vocab, get_int(f, a + "vocab_size", vocab_from_tensor));
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  if (const GgufValue* t = f.find(a + "rope.scaling.type"); t && t->as_string() && *t->as_string() == "linear") {
    RopeScaling rs;
    rs.type = "linear";
    SHRINK_ASSIGN(rs.factor, get_float(f, a + "rope.scaling.factor", 1.0));
    c.rope_scaling = rs;
  }
  SHRINK_CHECK(c.validate(f.path()));
  return c;
}

Result<Vocab> vocab_from_gguf(const GgufFile& f) {
  Vocab v;
  const GgufValue* model = f.find("tokenizer.ggml.model");
  if (model == nullptr || model->as_string() == nullptr)
    return make_error(f.path() + ": metadata key tokenizer.ggml.model is missing (a GGUF without a vocabulary)");
  v.model = *model->as_string();
  if (const GgufValue* p = f.find("tokenizer.ggml.pre"); p && p->as_string()) v.pre = *p->as_string();
  auto array_of = [&](const char* key, GgufType elem) -> Result<const GgufArray*> {
    const GgufValue* x = f.find(key);
    if (x == nullptr) return static_cast<const GgufArray*>(nullptr);
    const GgufArray* arr = x->as_array();
    if (arr == nullptr || arr->elem_type != elem)
      return make_error(f.path() + ": metadata key " + key + " must be an array of " + gguf_type_name(elem));
    return arr;
  };
  SHRINK_ASSIGN(const GgufArray* tokens, array_of("tokenizer.ggml.tokens", GgufType::STRING));
  if (tokens == nullptr) return make_error(f.path() + ": metadata key tokenizer.ggml.tokens is missing");
  for (const GgufValue& t : tokens->items) v.tokens.push_back(*t.as_string());
  SHRINK_ASSIGN(const GgufArray* scores, array_of("tokenizer.ggml.scores", GgufType::FLOAT32));
  if (scores) for (const GgufValue& s : scores->items) v.scores.push_back(static_cast<float>(*s.as_float()));
  SHRINK_ASSIGN(const GgufArray* types, array_of("tokenizer.ggml.token_type", GgufType::INT32));
  if (types) for (const GgufValue& t : types->items) v.token_types.push_back(static_cast<TokenType>(*t.as_int()));
  SHRINK_ASSIGN(const GgufArray* merges, array_of("tokenizer.ggml.merges", GgufType::STRING));
  if (merges) for (const GgufValue& m : merges->items) v.merges.push_back(*m.as_string());
  if ((!v.scores.empty() && v.scores.size() != v.tokens.size()) ||
      (!v.token_types.empty() && v.token_types.size() != v.tokens.size()))
    return make_error(f.path() + ": tokenizer.ggml.scores/token_type lengths differ from tokenizer.ggml.tokens (" +
                      std::to_string(v.tokens.size()) + ")");
  auto id = [&](const char* key, std::optional<int64_t>& out) {
    if (const GgufValue* x = f.find(key); x && x->as_int()) out = *x->as_int();
  };
  id("tokenizer.ggml.bos_token_id", v.bos_id);
  id("tokenizer.ggml.eos_token_id", v.eos_id);
  id("tokenizer.ggml.unknown_token_id", v.unk_id);
  id("tokenizer.ggml.padding_token_id", v.pad_id);
  auto flag = [&](const char* key, std::optional<bool>& out) {
    if (const GgufValue* x = f.find(key); x && x->as_bool()) out = *x->as_bool();
  };
  flag("tokenizer.ggml.add_bos_token", v.add_bos);
  flag("tokenizer.ggml.add_eos_token", v.add_eos);
  flag("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
  if (const GgufValue* t = f.find("tokenizer.chat_template"); t && t->as_string()) v.chat_template = *t->as_string();
  return v;
}

}  // namespace shrink
