#include "model/hf_writer.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/kernels.h"
#include "model/hf_names.h"
#include "model/rope_layout.h"

namespace shrink {

namespace fs = std::filesystem;

Result<std::string> hf_tensor_name(const std::string& gguf_name) {
  auto n = hf_name_from_gguf(gguf_name);
  if (!n) return make_error("tensor " + gguf_name + " has no Hugging Face Llama counterpart");
  return *n;
}

namespace {

Status write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
  f.close();
  if (!f) return make_error(p.string() + ": cannot write");
  return {};
}

nlohmann::json config_json(const LlamaConfig& c, const Vocab& v) {
  nlohmann::json j;
  const bool qwen = c.arch == "qwen2";
  j["architectures"] = {qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
  j["model_type"] = qwen ? "qwen2" : "llama";
  j["hidden_size"] = c.n_embd;
  j["intermediate_size"] = c.n_ff;
  j["num_hidden_layers"] = c.n_layer;
  j["num_attention_heads"] = c.n_head;
  j["num_key_value_heads"] = c.n_head_kv;
  if (c.head_dim * c.n_head != c.n_embd) j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.n_vocab;
  j["max_position_embeddings"] = c.n_ctx_train;
  j["rms_norm_eps"] = c.rms_eps;
  j["rope_theta"] = c.rope_theta;
  j["tie_word_embeddings"] = c.tied_embeddings;
  j["hidden_act"] = "silu";
  if (!qwen) j["attention_bias"] = c.qkv_bias;
  if (v.bos_id) j["bos_token_id"] = *v.bos_id;
  if (v.eos_id) j["eos_token_id"] = *v.eos_id;
  j["torch_dtype"] = "float32";
  return j;
}

// GPT-2 style tokenizer.json from a byte-level BPE vocabulary.
nlohmann::json bpe_tokenizer_json(const Vocab& v) {
  nlohmann::json vocab = nlohmann::json::object();
  nlohmann::json added = nlohmann::json::array();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const TokenType t = i < v.token_types.size() ? v.token_types[i] : TokenType::NORMAL;
    if (t == TokenType::CONTROL || t == TokenType::USER_DEFINED)
      added.push_back({{"id", i}, {"content", v.tokens[i]}, {"single_word", false}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", false}, {"special", t == TokenType::CONTROL}});
    vocab[v.tokens[i]] = i;
  }
  nlohmann::json j;
  j["version"] = "1.0";
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"fuse_unk", false},
                {"byte_fallback", false}, {"vocab", vocab}, {"merges", v.merges}};
  return j;
}

}  // namespace

Status write_hf_folder(const std::string& dir, const ModelSource& model, const HfWriteOptions& options) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(dir + ": cannot create folder: " + ec.message());
  const LlamaConfig& c = model.config;
  const size_t elem = st_dtype_size(options.dtype);
  if (options.dtype != StDtype::F32 && options.dtype != StDtype::BF16)
    return make_error("Hugging Face output supports F32 and BF16 weights");

  std::vector<std::vector<uint8_t>> buffers;
  std::vector<StWriteTensor> tensors;
  std::vector<float> values;
  for (const WeightTensor& t : model.tensors) {
    if (t.name == "rope_freqs.weight") continue;  // derived from config.json's rope_scaling
    SHRINK_ASSIGN(std::string name, hf_tensor_name(t.name));
    SHRINK_CHECK(t.read_f32(values));
    const bool is_q = t.name.find(".attn_q.") != std::string::npos;
    const bool is_k = t.name.find(".attn_k.") != std::string::npos;
    if (c.arch == "llama" && (is_q || is_k))
      values = permute_rows_gguf_to_hf(values, is_q ? c.n_head : c.n_head_kv, t.shape.size() == 1 ? 1 : t.shape[0]);
    std::vector<uint8_t> bytes(values.size() * elem);
    if (options.dtype == StDtype::F32) {
      std::memcpy(bytes.data(), values.data(), bytes.size());
    } else {
      kernels::quantize_rows(TypeId::BF16, values.data(), bytes.data(), 1, static_cast<int64_t>(values.size()));
    }
    buffers.push_back(std::move(bytes));
    tensors.push_back({name, options.dtype, std::vector<int64_t>(t.shape.rbegin(), t.shape.rend()), buffers.back().data()});
  }
  const std::map<std::string, std::string> meta{{"format", "pt"}};
  if (options.max_shard_bytes > 0)
    SHRINK_CHECK(write_safetensors_sharded(dir, tensors, options.max_shard_bytes, meta));
  else
    SHRINK_CHECK(write_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, meta));

  nlohmann::json cfg = config_json(c, model.vocab);
  if (options.dtype == StDtype::BF16) cfg["torch_dtype"] = "bfloat16";
  SHRINK_CHECK(write_text(fs::path(dir) / "config.json", cfg.dump(2) + "\n"));

  const Vocab& v = model.vocab;
  nlohmann::json tok_cfg = nlohmann::json::object();
  auto token_text = [&](const std::optional<int64_t>& id) -> nlohmann::json {
    if (id && *id >= 0 && *id < static_cast<int64_t>(v.tokens.size())) return v.tokens[static_cast<size_t>(*id)];
    return nullptr;
  };
  tok_cfg["bos_token"] = token_text(v.bos_id);
  tok_cfg["eos_token"] = token_text(v.eos_id);
  tok_cfg["unk_token"] = token_text(v.unk_id);
  if (v.pad_id) tok_cfg["pad_token"] = token_text(v.pad_id);
  tok_cfg["add_bos_token"] = v.add_bos.value_or(v.model == "llama");
  tok_cfg["add_eos_token"] = v.add_eos.value_or(false);
  if (v.chat_template) tok_cfg["chat_template"] = *v.chat_template;
  if (v.model == "llama") {
    if (options.sentencepiece_model.empty())
      return make_error(dir + ": a SentencePiece vocabulary needs its tokenizer.model to write a Hugging Face folder");
    fs::copy_file(options.sentencepiece_model, fs::path(dir) / "tokenizer.model", fs::copy_options::overwrite_existing, ec);
    if (ec) return make_error(options.sentencepiece_model + ": cannot copy into " + dir + ": " + ec.message());
    tok_cfg["tokenizer_class"] = "LlamaTokenizer";
  } else if (v.model == "gpt2") {
    SHRINK_CHECK(write_text(fs::path(dir) / "tokenizer.json", bpe_tokenizer_json(v).dump() + "\n"));
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast";
  } else {
    return make_error("tokenizer model '" + v.model + "' cannot be written to a Hugging Face folder");
  }
  SHRINK_CHECK(write_text(fs::path(dir) / "tokenizer_config.json", tok_cfg.dump(2) + "\n"));
  return {};
}

}  // namespace shrink
