// `shrink eval MODEL`: how good a model is on a text, computed as llama-perplexity computes it.
//   perplexity (default)          --text FILE | --tokens FILE [--ctx 512] [--chunks N]
//   --save-logits BASE_FILE       MODEL is the reference: store its distributions (llama.cpp's
//                                 --kl-divergence-base file, eval/logits_file.h)
//   --kl-divergence BASE_FILE     MODEL against a stored reference, on the file's tokens
//   --base OTHER_MODEL            MODEL against a reference model computed on the fly
//   --base SOURCE --per-tensor    per weight tensor: SQNR, cosine, max-abs error, bits per weight
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "eval/kld_eval.h"
#include "eval/perplexity.h"
#include "eval/tensor_report.h"
#include "kernels/kernels.h"
#include "model/llama_model.h"
#include "model/model_source.h"
#include "tools/cmd_eval_onnx.h"
#include "tools/cli.h"
#include "tools/token_source.h"

namespace shrink::cli {
namespace {

struct Args {
  TokenSourceArgs in;  // --text/--tokens/--tokenizer/--ctx/--chunks/--threads/--kv-type
  std::string input;
  std::string save_logits, kl_divergence, base, base_tokenizer;
  bool ctx_given = false;
  bool json = false;
  bool logprobs = false;
  bool per_tensor = false;
};

// A model opened and loaded for inference, warnings printed.
struct Loaded {
  ModelSource source;
  LlamaModel model;
};
Result<Loaded> load(const std::string& path, const std::string& tokenizer) {
  OpenOptions oo;
  oo.tokenizer = tokenizer;
  SHRINK_ASSIGN(ModelSource source, open_model(path, oo));
  for (const std::string& w : source.warnings) warn(w);
  SHRINK_ASSIGN(LlamaModel model, load_llama_model(source));
  return Loaded{std::move(source), std::move(model)};
}

PerplexityOptions chunk_options(const Args& a, const LlamaModel& model) {
  PerplexityOptions po;
  po.n_ctx = a.in.ctx;
  po.max_chunks = a.in.chunks;
  po.add_bos = adds_bos(model.vocab);
  po.bos_id = static_cast<int32_t>(model.vocab.bos_id.value_or(-1));
  po.kv_type = a.in.kv_type == "f16" ? KvCacheType::F16 : KvCacheType::F32;  // checked in run()
  return po;
}

int run_perplexity(const Args& a) {
  auto m = load(a.input, a.in.tokenizer);
  if (!m.ok()) return fail(m.error());
  auto tokens = load_tokens(a.in, m->source);
  if (!tokens.ok()) return fail(tokens.error());
  PerplexityOptions po = chunk_options(a, m->model);
  po.keep_logprobs = a.logprobs;
  if (!a.json)
    po.progress = [](int64_t done, int64_t, double ppl) {
      std::printf("[%lld]%.4f,", static_cast<long long>(done), ppl);
      std::fflush(stdout);
    };
  auto r = compute_perplexity(m->model, *tokens, po);
  if (!a.json) std::printf("\n");
  if (!r.ok()) return fail(r.error());

  const int threads = omp_get_max_threads();
  if (a.json) {
    nlohmann::json j = {{"model", a.input},
                        {"format", m->source.format},
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
                        {"kv_type", a.in.kv_type},
                        {"isa", kernels::active_isa()},
                        {"weight_bytes", m->model.weight_bytes()}};
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

int run_save_logits(const Args& a) {
  auto m = load(a.input, a.in.tokenizer);
  if (!m.ok()) return fail(m.error());
  auto tokens = load_tokens(a.in, m->source);
  if (!tokens.ok()) return fail(tokens.error());
  auto r = save_base_logits(m->model, *tokens, chunk_options(a, m->model), a.save_logits);
  if (!r.ok()) return fail(r.error());
  if (a.json) {
    nlohmann::json j = {{"model", a.input},   {"logits_file", a.save_logits}, {"n_ctx", r->n_ctx},
                        {"n_chunks", r->n_chunks}, {"count", r->count},       {"ppl", r->ppl},
                        {"ppl_error", r->ppl_error}, {"seconds", r->seconds}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%s: %lld chunks of %lld tokens, %lld tokens scored; base logits written to %s\n", a.input.c_str(),
              static_cast<long long>(r->n_chunks), static_cast<long long>(r->n_ctx), static_cast<long long>(r->count),
              a.save_logits.c_str());
  std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r->ppl, r->ppl_error);
  return 0;
}

nlohmann::json percentiles_json(const Percentiles& p) {
  return {{"max", p.max}, {"p99.9", p.p99_9}, {"p99", p.p99}, {"p95", p.p95}, {"p90", p.p90},   {"p75", p.p75},
          {"median", p.median}, {"p25", p.p25}, {"p10", p.p10}, {"p5", p.p5}, {"p1", p.p1}, {"p0.1", p.p0_1}, {"min", p.min}};
}

void print_kld_json(const Args& a, const KldRun& r) {
  const KldStatistics& s = r.stats;
  nlohmann::json j = {{"model", a.input},
                      {"base", a.kl_divergence.empty() ? a.base : a.kl_divergence},
                      {"n_ctx", r.n_ctx},
                      {"n_chunks", r.n_chunks},
                      {"count", s.count},
                      {"ppl", s.ppl},
                      {"ppl_error", s.ppl_error},
                      {"ppl_base", s.ppl_base},
                      {"ppl_base_error", s.ppl_base_error},
                      {"log_ppl_cor", s.log_ppl_cor},
                      {"log_ppl_ratio", s.log_ppl_ratio},
                      {"log_ppl_ratio_error", s.log_ppl_ratio_error},
                      {"ppl_ratio", s.ppl_ratio},
                      {"ppl_ratio_error", s.ppl_ratio_error},
                      {"ppl_diff", s.ppl_diff},
                      {"ppl_diff_error", s.ppl_diff_error},
                      {"kld_mean", s.kld_mean},
                      {"kld_error", s.kld_error},
                      {"kld", percentiles_json(s.kld)},
                      {"p_diff_mean", s.p_diff_mean},
                      {"p_diff_error", s.p_diff_error},
                      {"p_diff", percentiles_json(s.p_diff)},
                      {"p_diff_rms", s.p_diff_rms},
                      {"p_diff_rms_error", s.p_diff_rms_error},
                      {"same_top", s.same_top},
                      {"same_top_error", s.same_top_error},
                      {"seconds", r.seconds},
                      {"kv_type", a.in.kv_type}};
  std::printf("%s\n", j.dump().c_str());
}

// The final block of `llama-perplexity --kl-divergence`, line for line.
void print_kld_text(const KldRun& r) {
  const KldStatistics& s = r.stats;
  std::printf("%lld chunks of %lld tokens, %lld positions scored\n\n", static_cast<long long>(r.n_chunks),
              static_cast<long long>(r.n_ctx), static_cast<long long>(s.count));
  std::printf("====== Perplexity statistics ======\n");
  std::printf("Mean PPL(Q)                   : %10.6f ± %10.6f\n", s.ppl, s.ppl_error);
  std::printf("Mean PPL(base)                : %10.6f ± %10.6f\n", s.ppl_base, s.ppl_base_error);
  std::printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * s.log_ppl_cor);
  std::printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", s.log_ppl_ratio, s.log_ppl_ratio_error);
  std::printf("Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", s.ppl_ratio, s.ppl_ratio_error);
  std::printf("Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n\n", s.ppl_diff, s.ppl_diff_error);
  std::printf("====== KL divergence statistics ======\n");
  std::printf("Mean    KLD: %10.6f ± %10.6f\n", s.kld_mean, s.kld_error);
  const Percentiles& k = s.kld;
  std::printf("Maximum KLD: %10.6f\n99.9%%   KLD: %10.6f\n99.0%%   KLD: %10.6f\n95.0%%   KLD: %10.6f\n", k.max, k.p99_9,
              k.p99, k.p95);
  std::printf("90.0%%   KLD: %10.6f\nMedian  KLD: %10.6f\n10.0%%   KLD: %10.6f\n 5.0%%   KLD: %10.6f\n", k.p90, k.median,
              k.p10, k.p5);
  std::printf(" 1.0%%   KLD: %10.6f\n 0.1%%   KLD: %10.6f\nMinimum KLD: %10.6f\n\n", k.p1, k.p0_1, k.min);
  std::printf("====== Token probability statistics ======\n");
  std::printf("Mean    Δp: %6.3f ± %5.3f %%\n", 100.0 * s.p_diff_mean, 100.0 * s.p_diff_error);
  const Percentiles& p = s.p_diff;
  std::printf("Maximum Δp: %6.3f%%\n99.9%%   Δp: %6.3f%%\n99.0%%   Δp: %6.3f%%\n95.0%%   Δp: %6.3f%%\n", 100 * p.max,
              100 * p.p99_9, 100 * p.p99, 100 * p.p95);
  std::printf("90.0%%   Δp: %6.3f%%\n75.0%%   Δp: %6.3f%%\nMedian  Δp: %6.3f%%\n25.0%%   Δp: %6.3f%%\n", 100 * p.p90,
              100 * p.p75, 100 * p.median, 100 * p.p25);
  std::printf("10.0%%   Δp: %6.3f%%\n 5.0%%   Δp: %6.3f%%\n 1.0%%   Δp: %6.3f%%\n 0.1%%   Δp: %6.3f%%\n", 100 * p.p10,
              100 * p.p5, 100 * p.p1, 100 * p.p0_1);
  std::printf("Minimum Δp: %6.3f%%\n", 100 * p.min);
  std::printf("RMS Δp    : %6.3f ± %5.3f %%\n", 100.0 * s.p_diff_rms, 100.0 * s.p_diff_rms_error);
  std::printf("Same top p: %6.3f ± %5.3f %%\n", 100.0 * s.same_top, 100.0 * s.same_top_error);
}

int run_kld_file(const Args& a) {
  auto base = LogitsFile::open(a.kl_divergence);
  if (!base.ok()) return fail(base.error());
  const LogitsFileHeader& h = base->header();
  if (a.ctx_given && a.in.ctx != h.n_ctx)
    return fail(a.kl_divergence + ": the base logits were computed with a context of " + std::to_string(h.n_ctx) +
                ", not the --ctx " + std::to_string(a.in.ctx) + " given");
  auto m = load(a.input, a.in.tokenizer);
  if (!m.ok()) return fail(m.error());
  // A text given as well must be the one the base was computed on.
  if (!a.in.text.empty() || !a.in.tokens.empty()) {
    auto tokens = load_tokens(a.in, m->source);
    if (!tokens.ok()) return fail(tokens.error());
    const std::vector<int32_t>& stored = base->tokens();
    const std::string given = a.in.text.empty() ? a.in.tokens : a.in.text;
    if (tokens->size() < stored.size())
      return fail(a.kl_divergence + ": the base logits cover " + std::to_string(stored.size()) + " tokens but " + given +
                  " has only " + std::to_string(tokens->size()) + ": not the text the base was computed on");
    for (size_t i = 0; i < stored.size(); ++i)
      if ((*tokens)[i] != stored[i])
        return fail(a.kl_divergence + ": token " + std::to_string(i) + " is " + std::to_string(stored[i]) +
                    " in the base logits but " + std::to_string((*tokens)[i]) + " in " + given +
                    ": not the text the base was computed on");
  }
  Args fa = a;
  fa.in.ctx = h.n_ctx;
  auto r = kl_divergence_from_file(m->model, *base, chunk_options(fa, m->model));
  if (!r.ok()) return fail(r.error());
  if (a.json)
    print_kld_json(a, *r);
  else
    print_kld_text(*r);
  return 0;
}

int run_kld_base(const Args& a) {
  auto base = load(a.base, a.base_tokenizer.empty() ? a.in.tokenizer : a.base_tokenizer);
  if (!base.ok()) return fail(base.error());
  auto m = load(a.input, a.in.tokenizer);
  if (!m.ok()) return fail(m.error());
  if (Status s = check_same_vocabulary(m->model, a.input, base->model, a.base); !s.ok()) return fail(s.error());
  auto tokens = load_tokens(a.in, base->source);  // tokenized by the reference, as llama-perplexity saves a base
  if (!tokens.ok()) return fail(tokens.error());
  auto r = kl_divergence_with_base(m->model, base->model, *tokens, chunk_options(a, base->model));
  if (!r.ok()) return fail(r.error());
  if (a.json)
    print_kld_json(a, *r);
  else
    print_kld_text(*r);
  return 0;
}

int run_per_tensor(const Args& a) {
  OpenOptions qo, so;
  qo.tokenizer = a.in.tokenizer;
  so.tokenizer = a.base_tokenizer.empty() ? a.in.tokenizer : a.base_tokenizer;
  auto q = open_model(a.input, qo);
  if (!q.ok()) return fail(q.error());
  auto s = open_model(a.base, so);
  if (!s.ok()) return fail(s.error());
  auto r = compare_tensors(*q, *s);
  if (!r.ok()) return fail(r.error());
  const double total_bpw =
      r->total.count ? 8.0 * static_cast<double>(r->total_bytes) / static_cast<double>(r->total.count) : 0.0;
  if (a.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const TensorErrorRow& t : r->rows)
      rows.push_back({{"name", t.name},
                      {"type", std::string(type_name(t.type))},
                      {"shape", t.shape},
                      {"bits_per_weight", t.bits_per_weight},
                      {"sqnr_db", std::isinf(t.error.sqnr_db()) ? nlohmann::json(nullptr) : nlohmann::json(t.error.sqnr_db())},
                      {"cosine", t.error.cosine()},
                      {"max_abs_error", t.error.max_abs_error},
                      {"rmse", t.error.rmse()},
                      {"mean_error", t.error.mean_error()},
                      {"n_weights", t.error.count}});
    const double tsq = r->total.sqnr_db();
    nlohmann::json j = {{"model", a.input},
                        {"base", a.base},
                        {"tensors", rows},
                        {"not_in_base", r->not_in_source},
                        {"total",
                         {{"sqnr_db", std::isinf(tsq) ? nlohmann::json(nullptr) : nlohmann::json(tsq)},
                          {"cosine", r->total.cosine()},
                          {"max_abs_error", r->total.max_abs_error},
                          {"rmse", r->total.rmse()},
                          {"bits_per_weight", total_bpw},
                          {"n_weights", r->total.count}}}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%-28s %-7s %-14s %8s %10s %10s %12s\n", "tensor", "type", "shape", "bits/w", "SQNR (dB)", "cosine",
              "max |err|");
  auto shape = [](const std::vector<int64_t>& v) {
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) out += (i ? "x" : "") + std::to_string(v[i]);
    return out;
  };
  for (const TensorErrorRow& t : r->rows)
    std::printf("%-28s %-7s %-14s %8.3f %10.2f %10.6f %12.6g\n", t.name.c_str(), std::string(type_name(t.type)).c_str(),
                shape(t.shape).c_str(), t.bits_per_weight, t.error.sqnr_db(), t.error.cosine(), t.error.max_abs_error);
  std::printf("%-28s %-7s %-14s %8.3f %10.2f %10.6f %12.6g\n", "total", "", "", total_bpw, r->total.sqnr_db(),
              r->total.cosine(), r->total.max_abs_error);
  for (const std::string& n : r->not_in_source) warn(n + " is not in " + a.base + " (not compared)");
  return 0;
}

int run(const Args& a) {
  if (is_onnx_eval(a.input)) return run_eval_onnx(a.input, a.json);
  if (auto kv = kv_cache_type(a.in.kv_type); !kv.ok()) return fail(kv.error());
  if (a.in.threads > 0) omp_set_num_threads(a.in.threads);
  const int modes = !a.save_logits.empty() + !a.kl_divergence.empty() + (!a.base.empty() && !a.per_tensor);
  if (modes > 1) return fail("give at most one of --save-logits, --kl-divergence and --base");
  if (a.per_tensor) {
    if (a.base.empty()) return fail("--per-tensor needs --base SOURCE_MODEL (the weights the model was quantized from)");
    return run_per_tensor(a);
  }
  if (!a.in.text.empty() && !a.in.tokens.empty()) return fail("give at most one of --text and --tokens");
  if (!a.kl_divergence.empty()) return run_kld_file(a);
  if (a.in.text.empty() && a.in.tokens.empty()) return fail("give one of --text and --tokens");
  if (a.logprobs && (!a.save_logits.empty() || !a.base.empty()))
    return fail("--logprobs is for perplexity runs only");
  if (!a.save_logits.empty()) return run_save_logits(a);
  if (!a.base.empty()) return run_kld_base(a);
  return run_perplexity(a);
}

}  // namespace

void add_eval(CLI::App& root, std::vector<Command>& commands) {
  static Args a;
  CLI::App* sub = root.add_subcommand(
      "eval", "perplexity and KL divergence of a model on a text, as llama-perplexity computes them; per-tensor weight error");
  sub->add_option("input", a.input, "model: .gguf, Hugging Face folder, .safetensors, or llama2.c .bin")->required();
  CLI::Option* ctx = add_token_source_options(
      sub, a.in, {"tokens per chunk; the second half of each is scored", "evaluate at most this many chunks (default: all)"});
  sub->add_flag("--json", a.json, "print one JSON object");
  sub->add_flag("--logprobs", a.logprobs, "with --json: per chunk, log p(next token) at every position");
  sub->add_option("--save-logits", a.save_logits,
                  "write MODEL's distributions of the scored tokens to this file (llama-perplexity's "
                  "--kl-divergence-base format, with the tokens), for a later --kl-divergence");
  sub->add_option("--kl-divergence", a.kl_divergence,
                  "KL divergence of MODEL from the base logits in this file (from --save-logits or "
                  "llama-perplexity --kl-divergence-base), on the file's tokens; --text/--tokens, if given, must match them");
  sub->add_option("--base", a.base,
                  "reference model: KL divergence of MODEL from it, computed on the fly on --text/--tokens; "
                  "with --per-tensor, the source weights MODEL was quantized from");
  sub->add_option("--base-tokenizer", a.base_tokenizer, "llama2.c --base: its vocabulary (default: --tokenizer)");
  sub->add_flag("--per-tensor", a.per_tensor,
                "with --base SOURCE: a table of every weight tensor of MODEL against SOURCE (type, shape, bits per "
                "weight, SQNR, cosine, max-abs error)");
  add_eval_onnx_options(sub);
  commands.push_back({sub, [ctx] {
                        a.ctx_given = ctx->count() > 0;
                        return run(a);
                      }});
}

}  // namespace shrink::cli
