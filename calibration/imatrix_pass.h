// The calibration pass of llama-imatrix (tools/imatrix/imatrix.cpp, compute_imatrix): the token
// stream (BOS first when the vocabulary adds one, as common_tokenize(add_special=true) returns it)
// is cut into floor(n / n_ctx) chunks of n_ctx tokens; each chunk runs from an empty KV cache with
// its first token replaced by BOS when the vocabulary adds one, every position producing logits
// (so output.weight sees every row); the collector sees every weight product. Optional running
// perplexity per chunk as llama-imatrix prints it: positions n_ctx/2 .. n_ctx-2 predict the next
// token, PPL = exp(mean NLL).
//
// Batching: shrink evaluates a chunk in one pass of n_ctx rows. llama-imatrix with its defaults
// (n_batch 2048, n_ubatch 512) packs several chunks into one batch and splits it into 512-row
// micro-batches; the sums are the same except when a micro-batch has fewer than 16 rows, which
// llama-imatrix skips (e.g. n_ctx 520: its last 8 rows). Here every chunk of >= 16 tokens counts.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "calibration/imatrix_collector.h"
#include "common/result.h"
#include "model/llama_model.h"

namespace shrink {

struct ImatrixPassOptions {
  int64_t n_ctx = 512;           // tokens per chunk (llama-imatrix -c)
  int64_t max_chunks = -1;       // -1: every whole chunk (llama-imatrix --chunks)
  bool add_bos = true;           // replace each chunk's first token by BOS
  int32_t bos_id = 1;
  bool compute_ppl = true;       // llama-imatrix's default (--no-ppl turns it off)
  KvCacheType kv_type = KvCacheType::F16;
  // Called after each chunk with (chunks done, chunks total, running PPL or NaN without ppl).
  std::function<void(int64_t, int64_t, double)> progress;
};

struct ImatrixPassResult {
  int64_t n_ctx = 0;
  int64_t n_chunks = 0;          // chunks evaluated
  int64_t n_tokens = 0;          // tokens in the input stream
  int64_t n_evaluated = 0;       // n_chunks * n_ctx
  double ppl = 0;                // final running perplexity (0 without compute_ppl)
  std::vector<double> chunk_ppl; // running PPL after each chunk
  double seconds = 0;            // forward passes only
};

// Errors: n_ctx < 16 (llama-imatrix would collect nothing from smaller batches), fewer tokens
// than one chunk, BOS outside the vocabulary, any forward or collector error.
Result<ImatrixPassResult> run_imatrix_pass(const LlamaModel& model, std::span<const int32_t> tokens,
                                           const ImatrixPassOptions& options, ImatrixCollector& collector);

}  // namespace shrink
