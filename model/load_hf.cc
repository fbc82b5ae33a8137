// Hugging Face folders (config.json + safetensors, sharded or not) for LlamaForCausalLM,
// MistralForCausalLM and Qwen2ForCausalLM: names mapped to GGUF's, shapes checked against
// config.json, q/k rows permuted from rotate-half to GGUF's interleaved order (llama only:
// llama.cpp runs qwen2 with NEOX-style RoPE, which is HF's own order).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "formats/hf_model.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"
#include "model/hf_names.h"
#include "model/load_hf.h"
#include "model/model_source.h"
#include "model/rope_layout.h"

namespace shrink {

namespace fs = std::filesystem;

namespace {

Result<TypeId> weight_type(const StTensor& t) {
  switch (t.dtype) {
    case StDtype::F32: return TypeId::F32;
    case StDtype::F16: return TypeId::F16;
    case StDtype::BF16: return TypeId::BF16;
    default:
      return make_error(t.file + ": tensor " + t.name + " has dtype " + st_dtype_name(t.dtype) +
                        "; weights must be F32, F16 or BF16");
  }
}

// Llama 3 rope scaling as per-frequency factors, the way convert_hf_to_gguf.py computes the
// rope_freqs.weight tensor from rope_scaling {factor, low_freq_factor, high_freq_factor,
// original_max_position_embeddings}.
std::vector<float> llama3_rope_factors(const LlamaConfig& c) {
  const RopeScaling& s = *c.rope_scaling;
  const double low_wavelen = static_cast<double>(s.original_context) / s.low_freq_factor;
  const double high_wavelen = static_cast<double>(s.original_context) / s.high_freq_factor;
  std::vector<float> factors;
  for (int64_t i = 0; i < c.head_dim; i += 2) {
    // torch computes base ** (arange(0, dim, 2) / dim) in float32.
    const float freq = 1.0f / std::pow(static_cast<float>(c.rope_theta), static_cast<float>(i) / static_cast<float>(c.head_dim));
    const double wavelen = 2 * M_PI / freq;
    if (wavelen < high_wavelen) factors.push_back(1.0f);
    else if (wavelen > low_wavelen) factors.push_back(static_cast<float>(s.factor));
    else {
      const double smooth = (static_cast<double>(s.original_context) / wavelen - s.low_freq_factor) /
                            (s.high_freq_factor - s.low_freq_factor);
      factors.push_back(static_cast<float>(1.0 / ((1 - smooth) / s.factor + smooth)));
    }
  }
  return factors;
}

// Expected GGUF shape (ggml order) of every tensor the config implies.
std::map<std::string, std::vector<int64_t>> expected_shapes(const LlamaConfig& c) {
  std::map<std::string, std::vector<int64_t>> s;
  s["token_embd.weight"] = {c.n_embd, c.n_vocab};
  s["output_norm.weight"] = {c.n_embd};
  if (!c.tied_embeddings) s["output.weight"] = {c.n_embd, c.n_vocab};
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    s[b + "attn_norm.weight"] = {c.n_embd};
    s[b + "attn_q.weight"] = {c.n_embd, c.n_embd_q()};
    s[b + "attn_k.weight"] = {c.n_embd, c.n_embd_kv()};
    s[b + "attn_v.weight"] = {c.n_embd, c.n_embd_kv()};
    s[b + "attn_output.weight"] = {c.n_embd_q(), c.n_embd};
    if (c.qkv_bias) {
      s[b + "attn_q.bias"] = {c.n_embd_q()};
      s[b + "attn_k.bias"] = {c.n_embd_kv()};
      s[b + "attn_v.bias"] = {c.n_embd_kv()};
    }
    s[b + "ffn_norm.weight"] = {c.n_embd};
    s[b + "ffn_gate.weight"] = {c.n_embd, c.n_ff};
    s[b + "ffn_up.weight"] = {c.n_embd, c.n_ff};
    s[b + "ffn_down.weight"] = {c.n_ff, c.n_embd};
  }
  return s;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// GGUF sort key: token_embd, output_norm, output, then layers in order, as convert_hf_to_gguf writes.
std::pair<long, std::string> order_key(const std::string& gguf) {
  if (gguf == "token_embd.weight") return {-4, ""};
  if (gguf == "rope_freqs.weight") return {-3, ""};
  if (gguf == "output_norm.weight") return {-2, ""};
  if (gguf == "output.weight") return {-1, ""};
  long layer = std::strtol(gguf.c_str() + 4, nullptr, 10);
  return {layer, gguf};
}

}  // namespace

Result<LlamaConfig> llama_config_from_hf(const HfConfig& hf, const std::string& file) {
  LlamaConfig c;
  c.arch = hf.model_type == "qwen2" ? "qwen2" : "llama";  // Mistral runs as "llama" in llama.cpp
  c.name = fs::path(file).parent_path().filename().string();
  c.n_embd = hf.hidden_size;
  c.n_ff = hf.intermediate_size;
  c.n_layer = hf.num_hidden_layers;
  c.n_head = hf.num_attention_heads;
  c.n_head_kv = hf.num_key_value_heads;
  c.head_dim = hf.head_dim_or_default();
  c.n_vocab = hf.vocab_size;
  c.n_ctx_train = hf.max_position_embeddings;
  c.rms_eps = hf.rms_norm_eps;
  c.rope_theta = hf.rope_theta;
  c.tied_embeddings = hf.tie_word_embeddings;
  c.qkv_bias = hf.attention_bias;
  if (hf.rope_scaling) {
    const HfRopeScaling& r = *hf.rope_scaling;
    RopeScaling s;
    s.type = r.type;
    s.factor = r.factor.value_or(1.0);
    if (r.type == "llama3") {
      s.factor = r.factor.value_or(8.0);  // convert_hf_to_gguf.py's defaults
      s.low_freq_factor = r.low_freq_factor.value_or(1.0);
      s.high_freq_factor = r.high_freq_factor.value_or(4.0);
      s.original_context = r.original_max_position_embeddings.value_or(8192);
      if (!(s.high_freq_factor > s.low_freq_factor))
        return make_error(file + ": rope_scaling high_freq_factor must exceed low_freq_factor");
    } else if (r.type != "linear") {
      return make_error(file + ": rope_scaling type '" + r.type + "' is not supported (supported: linear, llama3)");
    }
    c.rope_scaling = s;
  }
  SHRINK_CHECK(c.validate(file));
  return c;
}

Result<ModelSource> open_hf(const std::string& path, const OpenOptions&) {
  fs::path p(path);
  fs::path dir = fs::is_directory(p) ? p : p.parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::exists(dir / "config.json"))
    return make_error(path + ": no config.json beside the weights (a Hugging Face model folder needs one)");
  SHRINK_ASSIGN(HfConfig hf, read_hf_config(dir.string()));
  SHRINK_ASSIGN(SafetensorsModel st, SafetensorsModel::open(path));
  auto weights = std::make_shared<SafetensorsModel>(std::move(st));

  ModelSource m;
  m.path = path;
  m.format = fs::is_directory(p) ? "hf" : "safetensors";
  SHRINK_ASSIGN(m.config, llama_config_from_hf(hf, (dir / "config.json").string()));
  if (hf.sliding_window && (hf.model_type == "mistral" || hf.use_sliding_window))
    m.warnings.push_back((dir / "config.json").string() + ": sliding_window " + std::to_string(*hf.sliding_window) +
                         " is not stored in GGUF; llama.cpp attends over the full context, as it does for its own conversions");
  SHRINK_ASSIGN(m.vocab, read_hf_tokenizer(dir.string()));
  const LlamaConfig& c = m.config;
  if (static_cast<int64_t>(m.vocab.size()) > c.n_vocab)
    return make_error((dir / "config.json").string() + ": vocab_size " + std::to_string(c.n_vocab) +
                      " is smaller than the tokenizer's " + std::to_string(m.vocab.size()) + " tokens");

  auto expected = expected_shapes(c);
  std::set<std::string> seen;
  for (const StTensor& t : weights->tensors()) {
    if (hf_tensor_ignorable(t.name)) continue;
    auto gguf = gguf_name_from_hf(t.name);
    if (!gguf) return make_error(t.file + ": tensor " + t.name + " is not part of " + hf.architecture);
    if (*gguf == "output.weight" && c.tied_embeddings) continue;  // tied: llama.cpp reuses token_embd
    auto want = expected.find(*gguf);
    if (want == expected.end())
      return make_error(t.file + ": tensor " + t.name + " is not expected by config.json (" + std::to_string(c.n_layer) +
                        " layers" + (c.qkv_bias ? "" : ", no attention bias") + ")");
    std::vector<int64_t> shape(t.shape.rbegin(), t.shape.rend());  // row-major -> ggml order
    if (shape != want->second)
      return make_error(t.file + ": tensor " + t.name + " has shape " + shape_text(t.shape) + " but config.json implies " +
                        shape_text(std::vector<int64_t>(want->second.rbegin(), want->second.rend())));
    SHRINK_ASSIGN(TypeId type, weight_type(t));
    seen.insert(*gguf);

    WeightTensor w;
    w.name = *gguf;
    w.shape = shape;
    w.source_type = type;
    w.origin = t.file + ": " + t.name;
    // Rows of q and k (weights and biases) move to GGUF's RoPE order; llama only.
    int64_t permute_heads = 0;
    if (c.arch == "llama") {
      if (gguf->find(".attn_q.") != std::string::npos) permute_heads = c.n_head;
      if (gguf->find(".attn_k.") != std::string::npos) permute_heads = c.n_head_kv;
    }
    if (permute_heads == 0) {
      w.raw = t.data;
      w.raw_bytes = t.n_bytes;
    }
    const StTensor* tp = &t;
    const int64_t row_len = shape.size() == 1 ? 1 : shape[0];
    w.read_f32 = [tp, type, permute_heads, row_len](std::vector<float>& out) -> Status {
      const int64_t n = tp->n_elements();
      out.resize(static_cast<size_t>(n));
      kernels::dequantize_rows(type, tp->data, out.data(), 1, n);
      if (permute_heads > 0) out = permute_rows_hf_to_gguf(out, permute_heads, row_len);
      return {};
    };
    m.tensors.push_back(std::move(w));
  }
  for (const auto& [name, shape] : expected)
    if (!seen.count(name)) {
      auto hf_name = hf_name_from_gguf(name);
      return make_error(path + ": tensor " + (hf_name ? *hf_name : name) + " is missing (config.json implies it)");
    }
  if (c.rope_scaling && c.rope_scaling->type == "llama3") {
    WeightTensor w;
    w.name = "rope_freqs.weight";
    w.shape = {c.head_dim / 2};
    w.source_type = TypeId::F32;
    w.origin = (dir / "config.json").string() + ": rope_scaling";
    std::vector<float> factors = llama3_rope_factors(c);
    w.read_f32 = [factors](std::vector<float>& out) -> Status {
      out = factors;
      return {};
    };
    m.tensors.push_back(std::move(w));
  }
  std::stable_sort(m.tensors.begin(), m.tensors.end(),
                   [](const WeightTensor& a, const WeightTensor& b) { return order_key(a.name) < order_key(b.name); });
  m.keep_alive.push_back(weights);
  return m;
}

}  // namespace shrink
