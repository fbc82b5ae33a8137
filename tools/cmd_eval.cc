// `shrink eval MODEL (--tokens FILE | --text FILE) [--ctx 512] [--chunks N] [--json]`:
// perplexity of a model on a text, computed as llama-perplexity computes it (eval/perplexity.h).
#include <omp.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "eval/perplexity.h"
#include "kernels/kernels.h"
#include "model/llama_model.h"
#include "model/model_source.h"
#include "model/tokenizer.h"
#include "tools/cli.h"

namespace shrink::cli {
namespace {

struct Args {
  std::string input, tokenizer, text, tokens;
  int64_t ctx = 512;
  int64_t chunks = -1;
  int threads = 0;
  std::string kv_type = "f16";
  bool json = false;
  bool logprobs = false;
};

Result<std::vector<int32_t>> read_tokens(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error(path + ": cannot open");
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

// The text as llama-perplexity reads -f: one trailing newline dropped, tokenized with the
// model's own tokenizer, BOS first when the vocabulary adds one, special texts not parsed.
Result<std::vector<int32_t>> tokenize_file(const std::string& path, const ModelSource& model) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": cannot open the text file");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!text.empty() && text.back() == '\n') text.pop_back();
  TokenizerOptions to;
  to.model_name = model.config.name;
  SHRINK_ASSIGN(Tokenizer tok, Tokenizer::from_vocab(model.vocab, to));
  return tok.encode(text, /*add_special=*/true, /*parse_special=*/false);
}

int run(const Args& a) {
  if (a.text.empty() == a.tokens.empty()) return fail("give exactly one of --text and --tokens");
  if (a.kv_type != "f16" && a.kv_type != "f32") return fail("--kv-type must be f16 or f32, got \"" + a.kv_type + "\"");
  if (a.threads > 0) omp_set_num_threads(a.threads);

  OpenOptions oo;
  oo.tokenizer = a.tokenizer;
  auto source = open_model(a.input, oo);
  if (!source.ok()) return fail(source.error());
  for (const std::string& w : source->warnings) warn(w);
  auto tokens = a.tokens.empty() ? tokenize_file(a.text, *source) : read_tokens(a.tokens);
  if (!tokens.ok()) return fail(tokens.error());
  auto model = load_llama_model(*source);
  if (!model.ok()) return fail(model.error());

  PerplexityOptions po;
  po.n_ctx = a.ctx;
  po.max_chunks = a.chunks;
  po.add_bos = model->vocab.add_bos.value_or(model->vocab.model == "llama") && model->vocab.bos_id.has_value();
  po.bos_id = static_cast<int32_t>(model->vocab.bos_id.value_or(-1));
  po.keep_logprobs = a.logprobs;
  po.kv_type = a.kv_type == "f16" ? KvCacheType::F16 : KvCacheType::F32;
  if (!a.json)
    po.progress = [](int64_t done, int64_t, double ppl) {
      std::printf("[%lld]%.4f,", static_cast<long long>(done), ppl);
      std::fflush(stdout);
    };
  auto r = compute_perplexity(*model, *tokens, po);
  if (!a.json) std::printf("\n");
  if (!r.ok()) return fail(r.error());

  const int threads = omp_get_max_threads();
  if (a.json) {
    nlohmann::json j = {{"model", a.input},
                        {"format", source->format},
                        {"n_ctx", r->n_ctx},
                        {"n_chunks", r->n_chunks},
                        {"n_tokens", r->n_tokens},
                        {"add_bos", po.add_bos},
                        {"count", r->count},
                        {"nll", r->nll},
                        {"ppl", r->ppl},
                        {"ppl_error", r->ppl_error},
                        {"seconds", r->seconds},
                        {"tokens_per_second", r->tokens_per_second},
                        {"threads", threads},
                        {"kv_type", a.kv_type},
                        {"isa", kernels::active_isa()},
                        {"weight_bytes", model->weight_bytes()}};
    if (a.logprobs) j["logprobs"] = r->logprobs;
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%s: %lld chunks of %lld tokens, %lld tokens scored\n", a.input.c_str(), static_cast<long long>(r->n_chunks),
              static_cast<long long>(r->n_ctx), static_cast<long long>(r->count));
  std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r->ppl, r->ppl_error);
  std::printf("%.2f s, %.0f tokens/s (%d threads)\n", r->seconds, r->tokens_per_second, threads);
  return 0;
}

}  // namespace

void add_eval(CLI::App& root, std::vector<Command>& commands) {
  static Args a;
  CLI::App* sub = root.add_subcommand("eval", "perplexity of a model on a text, as llama-perplexity computes it");
  sub->add_option("input", a.input, "model: .gguf, Hugging Face folder, .safetensors, or llama2.c .bin")->required();
  sub->add_option("--tokens", a.tokens, "JSON array of token ids (BOS first when the model adds one)");
  sub->add_option("--text", a.text, "text file to tokenize with the model's tokenizer");
  sub->add_option("--tokenizer", a.tokenizer, "llama2.c inputs: the tok*.bin or SentencePiece .model vocabulary");
  sub->add_option("--ctx", a.ctx, "tokens per chunk; the second half of each is scored")->capture_default_str();
  sub->add_option("--chunks", a.chunks, "evaluate at most this many chunks (default: all)");
  sub->add_option("--threads", a.threads, "OpenMP threads (default: all cores)");
  sub->add_option("--kv-type", a.kv_type, "KV cache precision: f16 (llama.cpp's default) or f32")->capture_default_str();
  sub->add_flag("--json", a.json, "print one JSON object");
  sub->add_flag("--logprobs", a.logprobs, "with --json: per chunk, log p(next token) at every position");
  commands.push_back({sub, [] { return run(a); }});
}

}  // namespace shrink::cli
