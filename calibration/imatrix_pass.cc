#include "calibration/imatrix_pass.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

namespace shrink {
namespace {

// -log p(tok) from one row of logits: max in float, sum of exp in double (llama.cpp's log_softmax).
double nll_of(const float* logits, int64_t n_vocab, int32_t tok) {
  float max_logit = logits[0];
  for (int64_t i = 1; i < n_vocab; ++i) max_logit = std::max(max_logit, logits[i]);
  double sum_exp = 0;
  for (int64_t i = 0; i < n_vocab; ++i) sum_exp += std::exp(logits[i] - max_logit);
  return std::log(sum_exp) - static_cast<double>(logits[tok] - max_logit);
}

}  // namespace

Result<ImatrixPassResult> run_imatrix_pass(const LlamaModel& model, std::span<const int32_t> tokens,
                                           const ImatrixPassOptions& o, ImatrixCollector& collector) {
  const int64_t n_ctx = o.n_ctx;
  const int64_t n_vocab = model.config.n_vocab;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n_ctx < 16)
    return make_error("context of " + std::to_string(n_ctx) +
                      " tokens is too small: llama-imatrix collects nothing from batches under 16 tokens");
  if (n < n_ctx)
    return make_error("the text has " + std::to_string(n) + " tokens, fewer than one chunk of " +
                      std::to_string(n_ctx) + " (use a longer text or a smaller --ctx)");
  if (o.add_bos && (o.bos_id < 0 || o.bos_id >= n_vocab))
    return make_error("BOS id " + std::to_string(o.bos_id) + " is outside the vocabulary of " + std::to_string(n_vocab));
  ImatrixPassResult r;
  r.n_ctx = n_ctx;
  r.n_tokens = n;
  r.n_chunks = n / n_ctx;
  if (o.max_chunks >= 0) r.n_chunks = std::min(r.n_chunks, o.max_chunks);
  r.n_evaluated = r.n_chunks * n_ctx;
  const int64_t first = n_ctx / 2;

  KvCache cache = make_kv_cache(model, n_ctx, o.kv_type);
  std::vector<int32_t> chunk(static_cast<size_t>(n_ctx));
  std::vector<float> logits;
  double nll = 0;
  int64_t count = 0;
  for (int64_t ci = 0; ci < r.n_chunks; ++ci) {
    std::copy(tokens.begin() + ci * n_ctx, tokens.begin() + (ci + 1) * n_ctx, chunk.begin());
    if (o.add_bos) chunk[0] = o.bos_id;
    cache.clear();
    const auto t0 = std::chrono::steady_clock::now();
    // Logits for every position, as llama-imatrix requests them: output.weight sees all rows.
    SHRINK_CHECK(llama_forward(model, cache, chunk, logits, 0, &collector));
    r.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    SHRINK_CHECK(collector.status());
    double running = std::numeric_limits<double>::quiet_NaN();
    if (o.compute_ppl) {
      for (int64_t i = first; i < n_ctx - 1; ++i) {
        nll += nll_of(logits.data() + i * n_vocab, n_vocab, chunk[static_cast<size_t>(i + 1)]);
        ++count;
      }
      running = std::exp(nll / static_cast<double>(count));
      r.chunk_ppl.push_back(running);
    }
    if (o.progress) o.progress(ci + 1, r.n_chunks, running);
  }
  if (o.compute_ppl && count > 0) r.ppl = std::exp(nll / static_cast<double>(count));
  return r;
}

}  // namespace shrink
