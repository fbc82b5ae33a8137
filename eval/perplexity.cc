#include "eval/perplexity.h"

#include <chrono>
#include <cmath>

namespace shrink {

double log_softmax(std::span<const float> logits, int64_t tok) {
  float max_logit = logits[0];
  for (float v : logits) max_logit = std::max(max_logit, v);
  double sum_exp = 0.0;
  for (float v : logits) sum_exp += std::exp(v - max_logit);
  return static_cast<double>(logits[static_cast<size_t>(tok)] - max_logit) - std::log(sum_exp);
}

Result<PerplexityResult> compute_perplexity(const LlamaModel& model, std::span<const int32_t> tokens,
                                            const PerplexityOptions& o) {
  const int64_t n_ctx = o.n_ctx;
  const int64_t n_vocab = model.config.n_vocab;
  if (n_ctx < 4) return make_error("context of " + std::to_string(n_ctx) + " tokens is too small (at least 4)");
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < 2 * n_ctx)
    return make_error("perplexity with a context of " + std::to_string(n_ctx) + " needs at least " +
                      std::to_string(2 * n_ctx) + " tokens; the input has " + std::to_string(n));
  if (o.add_bos && (o.bos_id < 0 || o.bos_id >= n_vocab))
    return make_error("BOS id " + std::to_string(o.bos_id) + " is outside the vocabulary");
  PerplexityResult r;
  r.n_ctx = n_ctx;
  r.n_tokens = n;
  r.n_chunks = n / n_ctx;
  if (o.max_chunks >= 0) r.n_chunks = std::min(r.n_chunks, o.max_chunks);
  const int64_t first = n_ctx / 2;

  KvCache cache = make_kv_cache(model, n_ctx, o.kv_type);
  std::vector<int32_t> chunk(static_cast<size_t>(n_ctx));
  std::vector<float> logits;
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  double seconds = 0;
  for (int64_t ci = 0; ci < r.n_chunks; ++ci) {
    std::copy(tokens.begin() + ci * n_ctx, tokens.begin() + (ci + 1) * n_ctx, chunk.begin());
    if (o.add_bos) chunk[0] = o.bos_id;
    cache.clear();
    // Logits for every position when they are kept, else only from `first` on.
    const int64_t from = o.keep_logprobs ? 0 : first;
    const auto t0 = std::chrono::steady_clock::now();
    SHRINK_CHECK(llama_forward(model, cache, chunk, logits, from));
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<double> lp;
    for (int64_t i = from; i < n_ctx - 1; ++i) {
      const std::span<const float> row(logits.data() + (i - from) * n_vocab, static_cast<size_t>(n_vocab));
      const double v = log_softmax(row, chunk[static_cast<size_t>(i + 1)]);
      if (o.keep_logprobs) lp.push_back(v);
      if (i >= first) {
        nll -= v;
        nll2 += v * v;
        ++count;
      }
    }
    if (o.keep_logprobs) r.logprobs.push_back(std::move(lp));
    r.chunk_ppl.push_back(std::exp(nll / static_cast<double>(count)));
    if (o.progress) o.progress(ci + 1, r.n_chunks, r.chunk_ppl.back());
  }
  r.count = count;
  r.nll = nll / static_cast<double>(count);
  r.ppl = std::exp(r.nll);
  const double var = nll2 / static_cast<double>(count) - r.nll * r.nll;
  r.ppl_error = var > 0 && count > 1 ? r.ppl * std::sqrt(var / static_cast<double>(count - 1)) : 0;
  r.seconds = seconds;
  r.tokens_per_second = seconds > 0 ? static_cast<double>(r.n_chunks * n_ctx) / seconds : 0;
  return r;
}

Result<double> for_each_scored_chunk(const LlamaModel& model, std::span<const int32_t> tokens, int64_t n_chunks,
                                     const PerplexityOptions& o, const ScoredChunkVisitor& visit) {
  const int64_t n_ctx = o.n_ctx;
  if (n_ctx < 4) return make_error("context of " + std::to_string(n_ctx) + " tokens is too small (at least 4)");
  if (n_chunks < 1 || static_cast<int64_t>(tokens.size()) < n_chunks * n_ctx)
    return make_error(std::to_string(n_chunks) + " chunks of " + std::to_string(n_ctx) + " tokens need " +
                      std::to_string(std::max<int64_t>(n_chunks, 1) * n_ctx) + " tokens; the input has " +
                      std::to_string(tokens.size()));
  if (o.add_bos && (o.bos_id < 0 || o.bos_id >= model.config.n_vocab))
    return make_error("BOS id " + std::to_string(o.bos_id) + " is outside the vocabulary");
  KvCache cache = make_kv_cache(model, n_ctx, o.kv_type);
  std::vector<int32_t> chunk(static_cast<size_t>(n_ctx));
  std::vector<float> logits;
  double seconds = 0;
  for (int64_t ci = 0; ci < n_chunks; ++ci) {
    const std::span<const int32_t> given = tokens.subspan(static_cast<size_t>(ci * n_ctx), static_cast<size_t>(n_ctx));
    std::copy(given.begin(), given.end(), chunk.begin());
    if (o.add_bos) chunk[0] = o.bos_id;
    cache.clear();
    const auto t0 = std::chrono::steady_clock::now();
    SHRINK_CHECK(llama_forward(model, cache, chunk, logits, n_ctx / 2));
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    SHRINK_CHECK(visit(ci, given, logits.data()));
  }
  return seconds;
}

}  // namespace shrink
