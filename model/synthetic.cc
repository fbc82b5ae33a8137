#include "model/synthetic.h"

#include <memory>
#include <random>

namespace shrink {

LlamaConfig synthetic_config() {
  LlamaConfig c;
  c.arch = "llama";
  c.name = "shrink-demo";
  c.n_embd = 256;
  c.n_ff = 768;
  c.n_layer = 4;
  c.n_head = 8;
  c.n_head_kv = 4;
  c.head_dim = 32;
  c.n_vocab = 267;  // 256 byte tokens + 8 merges + <s> + </s> + <pad>
  c.n_ctx_train = 512;
  c.rope_theta = 10000.0;
  c.rms_eps = 1e-5;
  c.tied_embeddings = false;
  return c;
}

namespace {

// GPT-2's byte-to-unicode map: printable bytes map to themselves, the rest to U+0100 onwards.
std::string byte_token(int b) {
  auto printable = [](int x) { return (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF); };
  int cp = b;
  if (!printable(b)) {
    int n = 0;
    for (int x = 0; x < b; ++x)
      if (!printable(x)) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) s += static_cast<char>(cp);
  else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

Vocab byte_vocab() {
  Vocab v;
  v.model = "gpt2";
  v.pre = "gpt-2";
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(byte_token(b));
    v.token_types.push_back(TokenType::NORMAL);
  }
  // A few BPE merges: llama.cpp refuses a byte-level BPE vocabulary without any.
  for (const char* m : {"\xC4\xA0 t", "h e", "i n", "e r", "a n", "o u", "\xC4\xA0 a", "r e"}) {
    std::string merge(m);
    const size_t sp = merge.find(' ');
    v.merges.push_back(merge);
    v.tokens.push_back(merge.substr(0, sp) + merge.substr(sp + 1));
    v.token_types.push_back(TokenType::NORMAL);
  }
  for (const char* special : {"<s>", "</s>", "<pad>"}) {
    v.tokens.push_back(special);
    v.token_types.push_back(TokenType::CONTROL);
  }
  v.bos_id = 264;
  v.eos_id = 265;
  v.pad_id = 266;
  v.add_bos = true;
  return v;
}

}  // namespace

ModelSource make_synthetic_model(const LlamaConfig& c, uint64_t seed) {
  ModelSource m;
  m.path = "(generated)";
  m.format = "generated";
  m.config = c;
  m.vocab = byte_vocab();
  std::mt19937_64 rng(seed);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool is_norm) {
    auto data = std::make_shared<std::vector<float>>();
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    data->resize(static_cast<size_t>(n));
    if (is_norm) {
      std::normal_distribution<float> d(1.0f, 0.1f);
      for (float& x : *data) x = d(rng);
    } else {
      std::normal_distribution<float> d(0.0f, 0.02f);
      for (float& x : *data) x = d(rng);
      if (shape.size() == 1) {
        for (float& x : *data) x *= 10.0f;  // biases: N(0, 0.2)
      } else {
      // ~1% of input columns carry 8x larger weights (outlier channels).
      std::uniform_int_distribution<int64_t> col(0, shape[0] - 1);
      const int64_t n_outliers = std::max<int64_t>(1, shape[0] / 100);
      for (int64_t k = 0; k < n_outliers; ++k) {
        const int64_t j = col(rng);
        for (int64_t r = 0; r < n / shape[0]; ++r) (*data)[static_cast<size_t>(r * shape[0] + j)] *= 8.0f;
      }
      }
    }
    WeightTensor t;
    t.name = name;
    t.shape = std::move(shape);
    t.source_type = TypeId::F32;
    t.origin = "generated: " + name;
    t.raw = reinterpret_cast<const uint8_t*>(data->data());
    t.raw_bytes = data->size() * sizeof(float);
    t.read_f32 = [data](std::vector<float>& out) -> Status {
      out = *data;
      return {};
    };
    m.keep_alive.push_back(data);
    m.tensors.push_back(std::move(t));
  };
  add("token_embd.weight", {c.n_embd, c.n_vocab}, false);
  add("output_norm.weight", {c.n_embd}, true);
  if (!c.tied_embeddings) add("output.weight", {c.n_embd, c.n_vocab}, false);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {c.n_embd}, true);
    add(b + "attn_q.weight", {c.n_embd, c.n_embd_q()}, false);
    add(b + "attn_k.weight", {c.n_embd, c.n_embd_kv()}, false);
    add(b + "attn_v.weight", {c.n_embd, c.n_embd_kv()}, false);
    add(b + "attn_output.weight", {c.n_embd_q(), c.n_embd}, false);
    if (c.qkv_bias) {
      add(b + "attn_q.bias", {c.n_embd_q()}, false);
      add(b + "attn_k.bias", {c.n_embd_kv()}, false);
      add(b + "attn_v.bias", {c.n_embd_kv()}, false);
    }
    add(b + "ffn_norm.weight", {c.n_embd}, true);
    add(b + "ffn_gate.weight", {c.n_embd, c.n_ff}, false);
    add(b + "ffn_up.weight", {c.n_embd, c.n_ff}, false);
    add(b + "ffn_down.weight", {c.n_ff, c.n_embd}, false);
  }
  return m;
}

}  // namespace shrink
