#include "eval/kld_eval.h"

#include <cmath>
#include <vector>

#include "formats/error_text.h"

namespace shrink {
namespace {

int64_t chunks_for(int64_t n_tokens, const PerplexityOptions& o) {
  int64_t n = n_tokens / o.n_ctx;
  if (o.max_chunks >= 0) n = std::min(n, o.max_chunks);
  return n;
}

Status check_length(int64_t n_tokens, int64_t n_ctx) {
  if (n_ctx < 4) return make_error("context of " + std::to_string(n_ctx) + " tokens is too small (at least 4)");
  if (n_tokens < 2 * n_ctx)
    return make_error("KL divergence with a context of " + std::to_string(n_ctx) + " needs at least " +
                      std::to_string(2 * n_ctx) + " tokens; the input has " + std::to_string(n_tokens));
  return {};
}

}  // namespace

Result<SaveLogitsResult> save_base_logits(const LlamaModel& base, std::span<const int32_t> tokens,
                                          const PerplexityOptions& o, const std::string& path) {
  const int64_t n_ctx = o.n_ctx;
  if (Status s = check_length(static_cast<int64_t>(tokens.size()), n_ctx); !s.ok())
    return make_error(path + ": no base logits written: " + s.message());
  const int64_t n_vocab = base.config.n_vocab;
  if (n_ctx > INT32_MAX || n_vocab > INT32_MAX) return make_error(path + ": n_ctx or n_vocab does not fit int32");
  SaveLogitsResult r;
  r.n_ctx = n_ctx;
  r.n_chunks = chunks_for(static_cast<int64_t>(tokens.size()), o);
  if (r.n_chunks < 1) return make_error(path + ": no chunk to evaluate (--chunks 0)");
  LogitsFileHeader h{static_cast<int32_t>(n_ctx), static_cast<int32_t>(n_vocab), static_cast<int32_t>(r.n_chunks)};
  const std::span<const int32_t> used = tokens.first(static_cast<size_t>(r.n_chunks * n_ctx));
  SHRINK_ASSIGN(LogitsFileWriter writer, LogitsFileWriter::create(path, h, used));
  const int64_t words = log_prob_record_words(n_vocab), rows = scored_per_chunk(n_ctx), first = n_ctx / 2;
  std::vector<uint16_t> records(static_cast<size_t>(rows * words));
  double nll = 0, nll2 = 0;
  auto visit = [&](int64_t, std::span<const int32_t> chunk, const float* logits) -> Status {
    for (int64_t j = 0; j < rows; ++j) {
      const std::span<const float> row(logits + j * n_vocab, static_cast<size_t>(n_vocab));
      const double v = encode_log_probs(row, chunk[static_cast<size_t>(first + j + 1)], records.data() + j * words);
      nll += v;
      nll2 += v * v;
    }
    return writer.write_chunk(records);
  };
  SHRINK_ASSIGN(r.seconds, for_each_scored_chunk(base, used, r.n_chunks, o, visit));
  SHRINK_CHECK(writer.commit());
  r.count = r.n_chunks * rows;
  const double n = static_cast<double>(r.count);
  const double mean = nll / n, var = nll2 / n - mean * mean;
  r.ppl = std::exp(mean);
  r.ppl_error = var > 0 && r.count > 1 ? r.ppl * std::sqrt(var / (n - 1)) : 0;
  return r;
}

Result<KldRun> kl_divergence_from_file(const LlamaModel& model, const LogitsFile& base, const PerplexityOptions& o) {
  const LogitsFileHeader& h = base.header();
  if (h.n_vocab != model.config.n_vocab)
    return make_error(base.path() + ": base logits have a vocabulary of " + std::to_string(h.n_vocab) +
                      " tokens, the model has " + std::to_string(model.config.n_vocab) +
                      " (a base file from a different model family?)");
  if (o.n_ctx != h.n_ctx)
    return make_error(base.path() + ": computed with a context of " + std::to_string(h.n_ctx) + ", not " +
                      std::to_string(o.n_ctx));
  KldRun r;
  r.n_ctx = h.n_ctx;
  r.n_chunks = o.max_chunks >= 0 ? std::min<int64_t>(h.n_chunk, o.max_chunks) : h.n_chunk;
  if (r.n_chunks < 1) return make_error(base.path() + ": no chunk to evaluate (--chunks 0)");
  const int64_t n_vocab = h.n_vocab, rows = scored_per_chunk(h.n_ctx), first = h.n_ctx / 2;
  std::vector<uint16_t> record(static_cast<size_t>(log_prob_record_words(n_vocab)));
  KldAccumulator acc;
  auto visit = [&](int64_t c, std::span<const int32_t> chunk, const float* logits) -> Status {
    for (int64_t j = 0; j < rows; ++j) {
      base.record(c, j, record.data());
      if (!is_valid_record(record.data())) {
        const RecordScale s = record_scale(record.data());
        return make_error(base.path() + ": chunk " + std::to_string(c) + ", position " + std::to_string(first + j) +
                          ": scale " + std::to_string(s.scale) + " / min_log_prob " + std::to_string(s.min_log_prob) +
                          " must be finite with scale >= 0 (corrupt file?)");
      }
      acc.add(std::span<const float>(logits + j * n_vocab, static_cast<size_t>(n_vocab)), record.data(),
              chunk[static_cast<size_t>(first + j + 1)]);
    }
    return {};
  };
  SHRINK_ASSIGN(r.seconds, for_each_scored_chunk(model, base.tokens(), r.n_chunks, o, visit));
  SHRINK_ASSIGN(r.stats, acc.finish());
  return r;
}

Result<KldRun> kl_divergence_with_base(const LlamaModel& model, const LlamaModel& base, std::span<const int32_t> tokens,
                                       const PerplexityOptions& o) {
  const int64_t n_ctx = o.n_ctx;
  SHRINK_CHECK(check_length(static_cast<int64_t>(tokens.size()), n_ctx));
  if (model.config.n_vocab != base.config.n_vocab)
    return make_error("the base model has a vocabulary of " + std::to_string(base.config.n_vocab) +
                      " tokens, the model " + std::to_string(model.config.n_vocab));
  KldRun r;
  r.n_ctx = n_ctx;
  r.n_chunks = chunks_for(static_cast<int64_t>(tokens.size()), o);
  if (r.n_chunks < 1) return make_error("no chunk to evaluate (--chunks 0)");
  const int64_t n_vocab = model.config.n_vocab, words = log_prob_record_words(n_vocab);
  const int64_t rows = scored_per_chunk(n_ctx), first = n_ctx / 2;
  std::vector<uint16_t> records(static_cast<size_t>(rows * words));
  KldAccumulator acc;
  // One chunk at a time, base then model, so only one chunk's records are ever held.
  for (int64_t c = 0; c < r.n_chunks; ++c) {
    const std::span<const int32_t> chunk = tokens.subspan(static_cast<size_t>(c * n_ctx), static_cast<size_t>(n_ctx));
    auto encode = [&](int64_t, std::span<const int32_t> t, const float* logits) -> Status {
      for (int64_t j = 0; j < rows; ++j)
        (void)encode_log_probs(std::span<const float>(logits + j * n_vocab, static_cast<size_t>(n_vocab)),
                               t[static_cast<size_t>(first + j + 1)], records.data() + j * words);
      return {};
    };
    SHRINK_CHECK(for_each_scored_chunk(base, chunk, 1, o, encode));
    auto compare = [&](int64_t, std::span<const int32_t> t, const float* logits) -> Status {
      for (int64_t j = 0; j < rows; ++j)
        acc.add(std::span<const float>(logits + j * n_vocab, static_cast<size_t>(n_vocab)), records.data() + j * words,
                t[static_cast<size_t>(first + j + 1)]);
      return {};
    };
    SHRINK_ASSIGN(const double s, for_each_scored_chunk(model, chunk, 1, o, compare));
    r.seconds += s;
  }
  SHRINK_ASSIGN(r.stats, acc.finish());
  return r;
}

Status check_same_vocabulary(const LlamaModel& model, const std::string& model_name, const LlamaModel& base,
                             const std::string& base_name) {
  if (model.config.n_vocab != base.config.n_vocab)
    return make_error("vocabulary mismatch: " + model_name + " has " + std::to_string(model.config.n_vocab) +
                      " tokens, the base " + base_name + " has " + std::to_string(base.config.n_vocab));
  const auto& a = model.vocab.tokens;
  const auto& b = base.vocab.tokens;
  if (a.size() == b.size())
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i] != b[i])
        return make_error("vocabulary mismatch: token " + std::to_string(i) + " is " + quote_untrusted(a[i], 40) + " in " + model_name +
                          " but " + quote_untrusted(b[i], 40) + " in the base " + base_name);
  return {};
}

}  // namespace shrink
