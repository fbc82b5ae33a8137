// Loading a LlamaModel from a ModelSource: GGUF tensors used in place in their storage type,
// every other source read once as F32.
#include <cstring>

#include "model/llama_model.h"

namespace shrink {
namespace {

std::string shape_text(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

class Loader {
 public:
  Loader(const ModelSource& src, LlamaModel& m) : src_(src), m_(m) {}

  // A (n_rows, n_cols) matrix; ggml shape [n_cols, n_rows].
  Status matrix(const std::string& name, int64_t n_cols, int64_t n_rows, WeightMatrix& out) {
    const WeightTensor* t = src_.find(name);
    if (!t) return make_error(src_.path + ": tensor " + name + " is missing");
    if (t->shape.size() != 2 || t->shape[0] != n_cols || t->shape[1] != n_rows)
      return make_error(src_.path + ": tensor " + name + " has shape " + shape_text(t->shape) + ", expected [" +
                        std::to_string(n_cols) + ", " + std::to_string(n_rows) + "] for this config");
    out.name = name;
    out.n_cols = n_cols;
    out.n_rows = n_rows;
    if (src_.format == "gguf" && t->raw != nullptr) {
      if (!type_traits(static_cast<uint32_t>(t->source_type)) || !row_fits(t->source_type, n_cols))
        return make_error(src_.path + ": tensor " + name + ": rows of " + std::to_string(n_cols) +
                          " do not fit type " + std::string(type_name(t->source_type)));
      out.type = t->source_type;
      out.row_bytes = row_size(out.type, n_cols);
      if (t->raw_bytes < out.row_bytes * static_cast<uint64_t>(n_rows))
        return make_error(src_.path + ": tensor " + name + ": " + std::to_string(t->raw_bytes) + " bytes, expected " +
                          std::to_string(out.row_bytes * static_cast<uint64_t>(n_rows)));
      out.data = t->raw;
      if (kernels::gemv_packable(out.type, n_rows, n_cols))
        out.packed = std::make_shared<PackedWeights>(out.type, out.data, n_rows, n_cols);
      return {};
    }
    std::vector<float> values;
    SHRINK_CHECK(t->read_f32(values));
    auto buf = std::make_shared<std::vector<uint8_t>>(values.size() * sizeof(float));
    std::memcpy(buf->data(), values.data(), buf->size());
    out.type = TypeId::F32;
    out.row_bytes = static_cast<size_t>(n_cols) * sizeof(float);
    out.data = buf->data();
    m_.owned.push_back(std::move(buf));
    return {};
  }

  Status vector(const std::string& name, int64_t n, std::vector<float>& out, bool optional = false) {
    const WeightTensor* t = src_.find(name);
    if (!t) {
      if (optional) return {};
      return make_error(src_.path + ": tensor " + name + " is missing");
    }
    if (t->n_elements() != n)
      return make_error(src_.path + ": tensor " + name + " has shape " + shape_text(t->shape) + ", expected [" +
                        std::to_string(n) + "]");
    return t->read_f32(out);
  }

 private:
  const ModelSource& src_;
  LlamaModel& m_;
};

}  // namespace

uint64_t LlamaModel::weight_bytes() const {
  auto mb = [](const WeightMatrix& w) { return static_cast<uint64_t>(w.row_bytes) * static_cast<uint64_t>(w.n_rows); };
  uint64_t total = mb(token_embd) + (config.tied_embeddings ? 0 : mb(output));
  for (const LlamaLayer& l : layers)
    total += mb(l.wq) + mb(l.wk) + mb(l.wv) + mb(l.wo) + mb(l.ffn_gate) + mb(l.ffn_up) + mb(l.ffn_down);
  return total;
}

Result<LlamaModel> load_llama_model(const ModelSource& src) {
  const LlamaConfig& c = src.config;
  SHRINK_CHECK(c.validate(src.path));
  if (c.arch != "llama" && c.arch != "qwen2")
    return make_error(src.path + ": architecture \"" + c.arch + "\" cannot be run (llama and qwen2 can)");
  if (c.head_dim % 2 != 0)
    return make_error(src.path + ": head_dim " + std::to_string(c.head_dim) + " is odd; RoPE needs pairs");
  if (c.rope_scaling && c.rope_scaling->type != "linear" && c.rope_scaling->type != "llama3")
    return make_error(src.path + ": rope scaling \"" + c.rope_scaling->type + "\" is not supported");

  LlamaModel m;
  m.config = c;
  m.vocab = src.vocab;
  m.keep_alive = src.keep_alive;
  Loader ld(src, m);
  const int64_t d = c.n_embd, dq = c.n_embd_q(), dkv = c.n_embd_kv(), ff = c.n_ff;
  SHRINK_CHECK(ld.matrix("token_embd.weight", d, c.n_vocab, m.token_embd));
  SHRINK_CHECK(ld.vector("output_norm.weight", d, m.output_norm));
  if (src.find("output.weight")) {
    SHRINK_CHECK(ld.matrix("output.weight", d, c.n_vocab, m.output));
  } else {
    m.output = m.token_embd;  // tied: llama.cpp falls back to token_embd when output.weight is absent
  }
  SHRINK_CHECK(ld.vector("rope_freqs.weight", c.head_dim / 2, m.rope_freq_factors, /*optional=*/true));
  m.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t i = 0; i < c.n_layer; ++i) {
    LlamaLayer& l = m.layers[static_cast<size_t>(i)];
    const std::string p = "blk." + std::to_string(i) + ".";
    SHRINK_CHECK(ld.vector(p + "attn_norm.weight", d, l.attn_norm));
    SHRINK_CHECK(ld.matrix(p + "attn_q.weight", d, dq, l.wq));
    SHRINK_CHECK(ld.matrix(p + "attn_k.weight", d, dkv, l.wk));
    SHRINK_CHECK(ld.matrix(p + "attn_v.weight", d, dkv, l.wv));
    SHRINK_CHECK(ld.matrix(p + "attn_output.weight", dq, d, l.wo));
    SHRINK_CHECK(ld.vector(p + "attn_q.bias", dq, l.bq, /*optional=*/!c.qkv_bias));
    SHRINK_CHECK(ld.vector(p + "attn_k.bias", dkv, l.bk, /*optional=*/!c.qkv_bias));
    SHRINK_CHECK(ld.vector(p + "attn_v.bias", dkv, l.bv, /*optional=*/!c.qkv_bias));
    SHRINK_CHECK(ld.vector(p + "ffn_norm.weight", d, l.ffn_norm));
    SHRINK_CHECK(ld.matrix(p + "ffn_gate.weight", d, ff, l.ffn_gate));
    SHRINK_CHECK(ld.matrix(p + "ffn_up.weight", d, ff, l.ffn_up));
    SHRINK_CHECK(ld.matrix(p + "ffn_down.weight", ff, d, l.ffn_down));
  }
  return m;
}

KvCache make_kv_cache(const LlamaModel& model, int64_t n_ctx, KvCacheType type) {
  KvCache c;
  c.n_ctx = n_ctx;
  c.type = type;
  c.v_stride = (n_ctx + 63) / 64 * 64;
  const size_t n_kv = static_cast<size_t>(model.config.n_embd_kv());
  c.k.assign(model.layers.size(), std::vector<float>(static_cast<size_t>(n_ctx) * n_kv));
  c.v.assign(model.layers.size(), std::vector<float>(static_cast<size_t>(c.v_stride) * n_kv, 0.0f));
  return c;
}

}  // namespace shrink
