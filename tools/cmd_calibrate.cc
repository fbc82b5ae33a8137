// `shrink calibrate MODEL (--text FILE | --tokens ids.json) -o imatrix.gguf [--ctx 512] [--chunks N]
//  [--process-output] [--no-ppl] [--json]`: an importance matrix in llama.cpp's imatrix GGUF form,
// collected as llama-imatrix collects it (calibration/imatrix_collector.h, imatrix_pass.h), for
// `shrink quantize --imatrix` or llama-quantize --imatrix.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "calibration/imatrix_collector.h"
#include "calibration/imatrix_pass.h"
#include "formats/atomic_output.h"
#include "formats/imatrix_file.h"
#include "model/llama_model.h"
#include "model/model_source.h"
#include "tools/cli.h"
#include "tools/token_source.h"

namespace shrink::cli {
namespace {

struct Args {
  TokenSourceArgs in;  // --text/--tokens/--tokenizer/--ctx/--chunks/--threads/--kv-type/--parse-special
  std::string input, output;
  bool process_output = false;
  bool no_ppl = false;
  bool json = false;
};

int run(const Args& a) {
  const TokenSourceArgs& in = a.in;
  if (in.text.empty() == in.tokens.empty()) return fail("give exactly one of --text and --tokens");
  auto kv_type = kv_cache_type(in.kv_type);
  if (!kv_type.ok()) return fail(kv_type.error());
  if (in.ctx < 16) return fail("--ctx " + std::to_string(in.ctx) + " is too small: llama-imatrix collects nothing from batches under 16 tokens");
  if (in.chunks == 0 || in.chunks < -1) return fail("--chunks must be at least 1, got " + std::to_string(in.chunks));
  if (in.threads > 0) omp_set_num_threads(in.threads);
  // Fail on an unwritable destination before the pass, not after it (the temp file is removed).
  {
    auto probe = AtomicOutput::create(a.output);
    if (!probe.ok()) return fail(probe.error());
  }

  OpenOptions oo;
  oo.tokenizer = in.tokenizer;
  auto source = open_model(a.input, oo);
  if (!source.ok()) return fail(source.error());
  for (const std::string& w : source->warnings) warn(w);
  auto tokens = load_tokens(in, *source);
  if (!tokens.ok()) return fail(tokens.error());
  auto model = load_llama_model(*source);
  if (!model.ok()) return fail(model.error());
  if (model->config.n_ctx_train > 0 && in.ctx > model->config.n_ctx_train)
    warn("the model was trained on " + std::to_string(model->config.n_ctx_train) + " tokens of context; --ctx is " +
         std::to_string(in.ctx));

  ImatrixCollectorOptions co;
  co.process_output = a.process_output;
  ImatrixCollector collector(co);
  ImatrixPassOptions po;
  po.n_ctx = in.ctx;
  po.max_chunks = in.chunks;
  po.add_bos = adds_bos(model->vocab);
  po.bos_id = static_cast<int32_t>(model->vocab.bos_id.value_or(-1));
  po.compute_ppl = !a.no_ppl;
  po.kv_type = *kv_type;
  // One progress line on stderr, as llama-imatrix prints it: [chunk]running PPL, ...
  po.progress = [&](int64_t done, int64_t total, double ppl) {
    if (done == 1) std::fprintf(stderr, "calibrate: %lld chunks of %lld tokens: ", static_cast<long long>(total),
                                static_cast<long long>(in.ctx));
    if (std::isnan(ppl)) std::fprintf(stderr, "[%lld],", static_cast<long long>(done));
    else std::fprintf(stderr, "[%lld]%.4f,", static_cast<long long>(done), ppl);
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
  auto r = run_imatrix_pass(*model, *tokens, po, collector);
  if (!r.ok()) return fail(r.error());

  const std::string dataset = in.text.empty() ? in.tokens : in.text;
  auto im = collector.imatrix({dataset}, in.ctx);
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
  sub->add_option("-o,--output", a.output, "output imatrix .gguf (written to a temp file, then renamed)")->required();
  add_token_source_options(sub, a.in,
                           {"tokens per chunk; each chunk starts from an empty KV cache",
                            "process at most this many chunks (default: all whole chunks)"});
  sub->add_flag("--process-output", a.process_output,
                "collect output.weight too (llama-imatrix --process-output; a tied output projection is never collected)");
  sub->add_flag("--parse-special", a.in.parse_special,
                "with --text: control-token texts such as <|eot_id|> become those tokens (llama-imatrix --parse-special)");
  sub->add_flag("--no-ppl", a.no_ppl, "do not compute the running perplexity");
  sub->add_flag("--json", a.json, "print the summary as one JSON object");
  commands.push_back({sub, [] { return run(a); }});
}

}  // namespace shrink::cli
