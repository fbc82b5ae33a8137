// KL divergence of a model's next-token distributions from a base model's, with the statistics
// `llama-perplexity --kl-divergence` prints (llama.cpp tools/perplexity/perplexity.cpp,
// kl_divergence() and its log_softmax overloads), computed the same way so the numbers compare:
//  - the base distribution of each scored position is stored as 16-bit codes of its
//    log-probabilities over the range [max - 16, max] of the logits (eval/logits_file.h); values
//    below that range code as 0, and terms with log p_base <= -16 are left out of the KLD sum;
//  - per position: KLD = sum_v p_base(v) (log p_base(v) - log p_model(v)), NLL of the next token
//    for both models, Δp = p_model(next) - p_base(next), and whether both argmaxes agree
//    (first maximum wins on both sides);
//  - float where llama.cpp uses float (per-position values), double for the running sums.
// Errors ("±") are llama-perplexity's: sqrt(var / (N - 1)) of the per-position values, with
// the delta method for PPL = exp(mean NLL), the ratio and the RMS.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/result.h"

namespace shrink {

// Encodes one position's logits (n_vocab floats) into a record of log_prob_record_words(n_vocab)
// uint16 words and returns -log softmax(logits)[tok] (llama-perplexity's saving log_softmax).
double encode_log_probs(std::span<const float> logits, int32_t tok, uint16_t* record);

// The (scale, min_log_prob) pair at the start of a record; is_valid_record() requires both
// finite and scale >= 0 (anything else would turn the KLD into NaN/Inf).
struct RecordScale {
  float scale = 0;
  float min_log_prob = 0;
};
RecordScale record_scale(const uint16_t* record);
bool is_valid_record(const uint16_t* record);

// Percentiles of a sorted sample as llama-perplexity interpolates them.
struct Percentiles {
  double max = 0, p99_9 = 0, p99 = 0, p95 = 0, p90 = 0, p75 = 0, median = 0, p25 = 0, p10 = 0, p5 = 0, p1 = 0,
         p0_1 = 0, min = 0;
};

struct KldStatistics {
  int64_t count = 0;  // scored positions
  double ppl = 0, ppl_error = 0;            // Mean PPL(Q)
  double ppl_base = 0, ppl_base_error = 0;  // Mean PPL(base)
  double log_ppl_cor = 0;                   // Cor(ln PPL(Q), ln PPL(base)), a fraction
  double log_ppl_ratio = 0, log_ppl_ratio_error = 0;  // Mean ln(PPL(Q)/PPL(base))
  double ppl_ratio = 0, ppl_ratio_error = 0;          // Mean PPL(Q)/PPL(base)
  double ppl_diff = 0, ppl_diff_error = 0;            // Mean PPL(Q)-PPL(base)
  double kld_mean = 0, kld_error = 0;
  Percentiles kld;
  double p_diff_mean = 0, p_diff_error = 0;  // Δp as a fraction (llama-perplexity prints percent)
  Percentiles p_diff;
  double p_diff_rms = 0, p_diff_rms_error = 0;
  double same_top = 0, same_top_error = 0;  // fraction of positions with the same argmax
};

class KldAccumulator {
 public:
  // Adds one scored position: the model's logits (n_vocab), the base record, the next token.
  void add(std::span<const float> logits, const uint16_t* base_record, int32_t tok);
  int64_t count() const { return static_cast<int64_t>(count_); }
  // Error when nothing was added.
  Result<KldStatistics> finish() const;

 private:
  double sum_nll_ = 0, sum_nll2_ = 0, sum_nll_base_ = 0, sum_nll_base2_ = 0, sum_nll_nll_base_ = 0;
  double sum_kld_ = 0, sum_kld2_ = 0, sum_p_diff_ = 0, sum_p_diff2_ = 0, sum_p_diff4_ = 0;
  size_t n_same_top_ = 0, count_ = 0;
  std::vector<float> kld_values_, p_diff_values_;
};

}  // namespace shrink
