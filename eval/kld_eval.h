// The three KL-divergence runs of `shrink eval`, each chunked and scored as llama-perplexity
// (eval/perplexity.h):
//  - save_base_logits: the reference model's distributions of every scored position go to a
//    llama-perplexity base file (eval/logits_file.h), with the tokens they were computed on;
//  - kl_divergence_from_file: a model against such a file, on the file's own tokens;
//  - kl_divergence_with_base: a model against a second model computed on the fly, chunk by chunk
//    (base first, coded into the same 16-bit records, so the numbers equal the file route's).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "common/result.h"
#include "eval/kl_divergence.h"
#include "eval/logits_file.h"
#include "eval/perplexity.h"
#include "model/llama_model.h"

namespace shrink {

struct SaveLogitsResult {
  int64_t n_ctx = 0, n_chunks = 0, count = 0;
  double ppl = 0, ppl_error = 0;  // of the saved model, as llama-perplexity prints it while saving
  double seconds = 0;
};

struct KldRun {
  int64_t n_ctx = 0, n_chunks = 0;
  KldStatistics stats;
  double seconds = 0;  // forward passes of the evaluated model
};

// options: n_ctx, max_chunks, add_bos/bos_id, kv_type. Needs at least 2 * n_ctx tokens, as llama-perplexity.
Result<SaveLogitsResult> save_base_logits(const LlamaModel& base, std::span<const int32_t> tokens,
                                          const PerplexityOptions& options, const std::string& path);

// options.n_ctx must equal the file's (the caller reads it from the header); max_chunks limits.
Result<KldRun> kl_divergence_from_file(const LlamaModel& model, const LogitsFile& base,
                                       const PerplexityOptions& options);

Result<KldRun> kl_divergence_with_base(const LlamaModel& model, const LlamaModel& base,
                                       std::span<const int32_t> tokens, const PerplexityOptions& options);

// Same vocabulary size and the same token texts, or an error naming both models and the first difference.
Status check_same_vocabulary(const LlamaModel& model, const std::string& model_name, const LlamaModel& base,
                             const std::string& base_name);

}  // namespace shrink
