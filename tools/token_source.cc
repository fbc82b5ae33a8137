#include "tools/token_source.h"

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/tokenizer.h"

namespace shrink::cli {

CLI::Option* add_token_source_options(CLI::App* sub, TokenSourceArgs& a, const TokenSourceHelp& help) {
  sub->add_option("--text", a.text, "text file, tokenized with the model's tokenizer (BOS first when it adds one)");
  sub->add_option("--tokens", a.tokens, "instead of --text: JSON array of token ids (BOS first when the model adds one)");
  sub->add_option("--tokenizer", a.tokenizer, "llama2.c inputs: the tok*.bin or SentencePiece .model vocabulary");
  CLI::Option* ctx = sub->add_option("--ctx", a.ctx, help.ctx)->capture_default_str();
  sub->add_option("--chunks", a.chunks, help.chunks);
  sub->add_option("--threads", a.threads, "OpenMP threads (default: all cores)");
  sub->add_option("--kv-type", a.kv_type, "KV cache precision: f16 (llama.cpp's default) or f32")->capture_default_str();
  return ctx;
}

Result<KvCacheType> kv_cache_type(const std::string& kv_type) {
  if (kv_type == "f16") return KvCacheType::F16;
  if (kv_type == "f32") return KvCacheType::F32;
  return make_error("--kv-type must be f16 or f32, got \"" + kv_type + "\"");
}

Result<std::vector<int32_t>> read_token_ids(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error(path + ": cannot open the token file");
  std::ostringstream s;
  s << f.rdbuf();
  nlohmann::json j = nlohmann::json::parse(s.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_array()) return make_error(path + ": expected a JSON array of token ids");
  std::vector<int32_t> ids;
  ids.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_number_integer() || j[i].get<int64_t>() < 0 || j[i].get<int64_t>() > INT32_MAX)
      return make_error(path + ": element " + std::to_string(i) + " is not a token id (a non-negative integer)");
    ids.push_back(static_cast<int32_t>(j[i].get<int64_t>()));
  }
  return ids;
}

Result<std::vector<int32_t>> load_tokens(const TokenSourceArgs& a, const ModelSource& model) {
  if (!a.tokens.empty()) return read_token_ids(a.tokens);
  std::ifstream in(a.text, std::ios::binary);
  if (!in) return make_error(a.text + ": cannot open the text file");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!text.empty() && text.back() == '\n') text.pop_back();
  TokenizerOptions to;
  to.model_name = model.config.name;
  SHRINK_ASSIGN(Tokenizer tok, Tokenizer::from_vocab(model.vocab, to));
  return tok.encode(text, /*add_special=*/true, a.parse_special);
}

bool adds_bos(const Vocab& vocab) {
  return vocab.add_bos.value_or(vocab.model == "llama") && vocab.bos_id.has_value();
}

}  // namespace shrink::cli
