// Perplexity as llama-perplexity computes it (llama.cpp tools/perplexity/perplexity.cpp,
// perplexity() with its defaults): the token stream (BOS first when the vocabulary adds one,
// as common_tokenize(add_special=true) returns it) is cut into floor(n / n_ctx) chunks of
// n_ctx tokens; each chunk is evaluated from an empty KV cache with its first token replaced
// by BOS when the vocabulary adds BOS; the second half is scored: positions
// first = n_ctx/2 .. n_ctx-2 predict tokens first+1 .. n_ctx-1. With NLL_i = -log softmax
// (max in float, sum of exp in double), PPL = exp(mean NLL) and its error is
// PPL * sqrt((mean(NLL^2) - mean(NLL)^2) / (N - 1)), llama-perplexity's "+/-".
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "common/result.h"
#include "model/llama_model.h"

namespace shrink {

struct PerplexityOptions {
  int64_t n_ctx = 512;
  int64_t max_chunks = -1;        // -1: every whole chunk
  bool add_bos = true;            // replace each chunk's first token by BOS
  int32_t bos_id = 1;
  bool keep_logprobs = false;     // fill PerplexityResult::logprobs
  KvCacheType kv_type = KvCacheType::F16;
  // Called after each chunk with (chunks done, chunks total, running PPL).
  std::function<void(int64_t, int64_t, double)> progress;
};

struct PerplexityResult {
  int64_t n_ctx = 0;
  int64_t n_chunks = 0;
  int64_t n_tokens = 0;   // tokens in the input stream
  int64_t count = 0;      // scored tokens
  double nll = 0;         // mean negative log-likelihood (nats)
  double ppl = 0;
  double ppl_error = 0;
  double seconds = 0;     // forward passes only
  double tokens_per_second = 0;  // evaluated tokens (n_chunks * n_ctx) per second
  std::vector<double> chunk_ppl;  // running PPL after each chunk, as llama-perplexity prints it
  // With keep_logprobs: per chunk, log p(token_{i+1} | tokens_0..i) for i in 0 .. n_ctx-2.
  std::vector<std::vector<double>> logprobs;
};

// llama-perplexity's log_softmax: logits[tok] - max - log(sum exp(logits - max)).
double log_softmax(std::span<const float> logits, int64_t tok);

Result<PerplexityResult> compute_perplexity(const LlamaModel& model, std::span<const int32_t> tokens,
                                            const PerplexityOptions& options);

// The same chunking for callers that need whole distributions (KL divergence, saving base
// logits): evaluates chunks 0 .. n_chunks-1 of `tokens` (n_ctx each, first token replaced by BOS
// as options say) and calls `visit(chunk, chunk_tokens, logits)` with the chunk's tokens as given
// (not BOS-replaced) and the logits of the scored positions n_ctx/2 .. n_ctx-2, as
// (n_ctx - 1 - n_ctx/2, n_vocab) floats. A visitor error stops the run. Returns the seconds
// spent in forward passes. options.max_chunks, keep_logprobs and progress are not used.
using ScoredChunkVisitor =
    std::function<Status(int64_t chunk, std::span<const int32_t> chunk_tokens, const float* logits)>;
Result<double> for_each_scored_chunk(const LlamaModel& model, std::span<const int32_t> tokens, int64_t n_chunks,
                                     const PerplexityOptions& options, const ScoredChunkVisitor& visit);

}  // namespace shrink
