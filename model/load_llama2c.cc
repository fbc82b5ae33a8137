// llama2.c checkpoints: weights are already in GGUF's interleaved RoPE order, and a
// shared classifier means tied embeddings.
#include <filesystem>

#include "formats/llama2c.h"
#include "formats/sentencepiece_model.h"
#include "model/model_source.h"

namespace shrink {

namespace fs = std::filesystem;

namespace {

// The vocabulary a checkpoint was trained with: --tokenizer, or a tok<N>.bin / tokenizer.bin /
// tok<N>.model / tokenizer.model beside the checkpoint.
Result<Vocab> find_vocab(const std::string& path, const std::string& given, int64_t vocab_size) {
  std::string tok = given;
  if (tok.empty()) {
    fs::path dir = fs::path(path).parent_path();
    const std::string n = std::to_string(vocab_size);
    for (const char* name : {"tok", "tokenizer"})
      for (const char* ext : {".bin", ".model"}) {
        fs::path p = dir / (std::string(name) + (std::string(name) == "tok" ? n : "") + ext);
        if (tok.empty() && fs::exists(p)) tok = p.string();
      }
    if (tok.empty())
      return make_error(path + ": llama2.c checkpoints carry no vocabulary; pass --tokenizer tok" + n +
                        ".bin (or a SentencePiece .model)");
  }
  if (fs::path(tok).extension() == ".model") {
    SHRINK_ASSIGN(Vocab v, read_sentencepiece_vocab(tok));
    if (static_cast<int64_t>(v.size()) != vocab_size)
      return make_error(tok + ": vocabulary has " + std::to_string(v.size()) + " tokens but " + path + " has " +
                        std::to_string(vocab_size));
    return v;
  }
  return read_llama2c_tokenizer(tok, vocab_size);
}

}  // namespace

Result<ModelSource> open_llama2c(const std::string& path, const OpenOptions& options) {
  SHRINK_ASSIGN(Llama2cCheckpoint ckpt, Llama2cCheckpoint::open(path));
  auto shared = std::make_shared<Llama2cCheckpoint>(std::move(ckpt));
  const Llama2cHeader& h = shared->header();
  ModelSource m;
  m.path = path;
  m.format = "llama2.c";
  LlamaConfig& c = m.config;
  c.arch = "llama";
  c.name = fs::path(path).stem().string();
  c.n_embd = h.dim;
  c.n_ff = h.hidden_dim;
  c.n_layer = h.n_layers;
  c.n_head = h.n_heads;
  c.n_head_kv = h.n_kv_heads;
  c.head_dim = h.head_size();
  c.n_vocab = h.vocab_size;
  c.n_ctx_train = h.seq_len;
  c.rms_eps = 1e-5;        // llama2.c run.c hard-codes 1e-5
  c.rope_theta = 10000.0;  // and RoPE base 10000
  c.tied_embeddings = h.shared_classifier;
  SHRINK_CHECK(c.validate(path));
  SHRINK_ASSIGN(m.vocab, find_vocab(path, options.tokenizer, h.vocab_size));

  // A view (rows x cols, row-major) becomes a GGUF tensor of shape (cols, rows).
  auto add = [&](const std::string& name, const Llama2cView& v, const char* what) {
    WeightTensor t;
    t.name = name;
    if (v.rank == 1) t.shape = {v.shape[0]};
    else t.shape = {v.shape[v.rank - 1], v.shape[v.rank - 2]};
    t.source_type = TypeId::F32;
    t.origin = path + ": " + what;
    const float* data = v.data;
    const uint64_t count = v.count;
    t.raw = reinterpret_cast<const uint8_t*>(data);
    t.raw_bytes = count * sizeof(float);
    t.read_f32 = [data, count](std::vector<float>& out) -> Status {
      out.assign(data, data + count);
      return {};
    };
    m.tensors.push_back(std::move(t));
  };
  // Order as llama.cpp's convert-llama2c-to-ggml writes it.
  add("token_embd.weight", shared->token_embedding(), "token_embedding");
  add("output_norm.weight", shared->rms_final(), "rms_final");
  if (!h.shared_classifier) add("output.weight", shared->wcls(), "wcls");
  struct PerLayer { Llama2cWeight w; const char* gguf; } per_layer[] = {
      {Llama2cWeight::wq, "attn_q.weight"},       {Llama2cWeight::wk, "attn_k.weight"},
      {Llama2cWeight::wv, "attn_v.weight"},       {Llama2cWeight::wo, "attn_output.weight"},
      {Llama2cWeight::rms_att, "attn_norm.weight"}, {Llama2cWeight::w1, "ffn_gate.weight"},
      {Llama2cWeight::w2, "ffn_down.weight"},     {Llama2cWeight::w3, "ffn_up.weight"},
      {Llama2cWeight::rms_ffn, "ffn_norm.weight"},
  };
  for (int32_t l = 0; l < h.n_layers; ++l)
    for (const PerLayer& p : per_layer) {
      SHRINK_ASSIGN(Llama2cView v, shared->layer(p.w, l));
      add("blk." + std::to_string(l) + "." + p.gguf, v,
          (std::string(llama2c_weight_name(p.w)) + "[" + std::to_string(l) + "]").c_str());
    }
  m.keep_alive.push_back(shared);
  return m;
}

}  // namespace shrink
