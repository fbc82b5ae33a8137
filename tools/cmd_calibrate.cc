// `shrink calibrate MODEL (--text FILE | --tokens ids.json) -o imatrix.gguf [--ctx 512] [--chunks N]
//  [--process-output] [--no-ppl] [--json]`: an importance matrix in llama.cpp's imatrix GGUF form,
// collected as llama-imatrix collects it (calibration/imatrix_collector.h, imatrix_pass.h), for
// `shrink quantize --imatrix` or llama-quantize --imatrix.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "calibration/imatrix_collector.h"
#include "calibration/imatrix_pass.h"
#include "formats/atomic_output.h"
#include "formats/imatrix_file.h"
#include "model/llama_model.h"
#include "model/model_source.h"
#include "model/tokenizer.h"
#include "tools/cli.h"

namespace shrink::cli {
namespace {

struct Args {
  std::string input, tokenizer, text, tokens, output;
  int64_t ctx = 512;
  int64_t chunks = -1;
  int threads = 0;
  std::string kv_type = "f16";
  bool process_output = false;
  bool no_ppl = false;
  bool parse_special = false;
  bool json = false;
};

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

// The text as llama-imatrix reads -f (common_params' prompt file): one trailing newline dropped,
// then common_tokenize(add_special = true, parse_special = --parse-special) with the model's tokenizer.
Result<std::vector<int32_t>> tokenize_text(const std::string& path, const ModelSource& model, bool parse_special) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": cannot open the text file");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!text.empty() && text.back() == '\n') text.pop_back();
  TokenizerOptions to;
  to.model_name = model.config.name;
  SHRINK_ASSIGN(Tokenizer tok, Tokenizer::from_vocab(model.vocab, to));
  return tok.encode(text, /*add_special=*/true, parse_special);
}

int run(const Args& a) {
  if (a.text.empty() == a.tokens.empty()) return fail("give exactly one of --text and --tokens");
  if (a.kv_type != "f16" && a.kv_type != "f32") return fail("--kv-type must be f16 or f32, got \"" + a.kv_type + "\"");
  if (a.ctx < 16) return fail("--ctx " + std::to_string(a.ctx) + " is too small: llama-imatrix collects nothing from batches under 16 tokens");
  if (a.chunks == 0 || a.chunks < -1) return fail("--chunks must be at least 1, got " + std::to_string(a.chunks));
  if (a.threads > 0) omp_set_num_threads(a.threads);
  // Fail on an unwritable destination before the pass, not after it (the temp file is removed).
  {
    auto probe = AtomicOutput::create(a.output);
    if (!probe.ok()) return fail(probe.error());
  }

  OpenOptions oo;
  oo.tokenizer = a.tokenizer;
  auto source = open_model(a.input, oo);
  if (!source.ok()) return fail(source.error());
  for (const std::string& w : source->warnings) warn(w);
  auto tokens = a.tokens.empty() ? tokenize_text(a.text, *source, a.parse_special) : read_token_ids(a.tokens);
  if (!tokens.ok()) return fail(tokens.error());
  auto model = load_llama_model(*source);
  if (!model.ok()) return fail(model.error());
  if (model->config.n_ctx_train > 0 && a.ctx > model->config.n_ctx_train)
    warn("the model was trained on " + std::to_string(model->config.n_ctx_train) + " tokens of context; --ctx is " +
         std::to_string(a.ctx));

  ImatrixCollectorOptions co;
  co.process_output = a.process_output;
  ImatrixCollector collector(co);
  ImatrixPassOptions po;
  po.n_ctx = a.ctx;
  po.max_chunks = a.chunks;
  po.add_bos = model->vocab.add_bos.value_or(model->vocab.model == "llama") && model->vocab.bos_id.has_value();
  po.bos_id = static_cast<int32_t>(model->vocab.bos_id.value_or(-1));
  po.compute_ppl = !a.no_ppl;
  po.kv_type = a.kv_type == "f16" ? KvCacheType::F16 : KvCacheType::F32;
  // One progress line on stderr, as llama-imatrix prints it: [chunk]running PPL, ...
  po.progress = [&](int64_t done, int64_t total, double ppl) {
    if (done == 1) std::fprintf(stderr, "calibrate: %lld chunks of %lld tokens: ", static_cast<long long>(total),
                                static_cast<long long>(a.ctx));
    if (std::isnan(ppl)) std::fprintf(stderr, "[%lld],", static_cast<long long>(done));
    else std::fprintf(stderr, "[%lld]%.4f,", static_cast<long long>(done), ppl);
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
  auto r = run_imatrix_pass(*model, *tokens, po, collector);
  if (!r.ok()) return fail(r.error());

  const std::string dataset = a.text.empty() ? a.tokens : a.text;
  auto im = collector.imatrix({dataset}, a.ctx);
  if (!im.ok()) return fail(im.error());
  if (im->entries.empty()) return fail("no weight product was collected (nothing to write)");
  Status st = write_imatrix_gguf(a.output, *im);
  if (!st.ok()) return fail(st.error());

  if (a.json) {
    nlohmann::json j = {{"model", a.input},
                        {"output", a.output},
                        {"dataset", dataset},
                        {"n_ctx", r->n_ctx},
                        {"chunks", r->n_chunks},
                        {"chunk_count", im->chunk_count},
                        {"tokens", r->n_tokens},
                        {"tokens_evaluated", r->n_evaluated},
                        {"tensors", im->entries.size()},
                        {"add_bos", po.add_bos},
                        {"process_output", a.process_output},
                        {"seconds", r->seconds},
                        {"threads", omp_get_max_threads()}};
    if (!a.no_ppl) {
      j["ppl"] = r->ppl;
      j["chunk_ppl"] = r->chunk_ppl;
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  if (!a.no_ppl) std::printf("Final estimate: PPL = %.4f\n", r->ppl);
  std::printf("wrote %s: %zu tensors, %lld chunks of %lld tokens (%s of %s tokens evaluated), %.2f s\n",
              a.output.c_str(), im->entries.size(), static_cast<long long>(r->n_chunks),
              static_cast<long long>(r->n_ctx), with_commas(static_cast<uint64_t>(r->n_evaluated)).c_str(),
              with_commas(static_cast<uint64_t>(r->n_tokens)).c_str(), r->seconds);
  return 0;
}

}  // namespace

void add_calibrate(CLI::App& root, std::vector<Command>& commands) {
  static Args a;
  CLI::App* sub = root.add_subcommand(
      "calibrate", "importance matrix (llama.cpp imatrix GGUF) from a text, collected as llama-imatrix does");
  sub->add_option("input", a.input, "model: .gguf, Hugging Face folder, .safetensors, or llama2.c .bin")->required();
  sub->add_option("--text", a.text, "calibration text file, tokenized with the model's tokenizer (BOS first)");
  sub->add_option("--tokens", a.tokens, "instead of --text: JSON array of token ids (BOS first when the model adds one)");
  sub->add_option("-o,--output", a.output, "output imatrix .gguf (written to a temp file, then renamed)")->required();
  sub->add_option("--tokenizer", a.tokenizer, "llama2.c inputs: the tok*.bin or SentencePiece .model vocabulary");
  sub->add_option("--ctx", a.ctx, "tokens per chunk; each chunk starts from an empty KV cache")->capture_default_str();
  sub->add_option("--chunks", a.chunks, "process at most this many chunks (default: all whole chunks)");
  sub->add_flag("--process-output", a.process_output,
                "collect output.weight too (llama-imatrix --process-output; a tied output projection is never collected)");
  sub->add_flag("--parse-special", a.parse_special,
                "with --text: control-token texts such as <|eot_id|> become those tokens (llama-imatrix --parse-special)");
  sub->add_flag("--no-ppl", a.no_ppl, "do not compute the running perplexity");
  sub->add_option("--threads", a.threads, "OpenMP threads (default: all cores)");
  sub->add_option("--kv-type", a.kv_type, "KV cache precision: f16 (llama.cpp's default) or f32")->capture_default_str();
  sub->add_flag("--json", a.json, "print the summary as one JSON object");
  commands.push_back({sub, [] { return run(a); }});
}

}  // namespace shrink::cli
