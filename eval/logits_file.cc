#include "eval/logits_file.h"

#include <cstring>

#include "formats/byte_reader.h"

namespace shrink {

Result<LogitsFile> LogitsFile::open(const std::string& path) {
  SHRINK_ASSIGN(std::shared_ptr<MappedFile> map, MappedFile::open(path));
  ByteReader r(map->data(), map->size(), path);
  const std::string what = path + ": not a llama-perplexity log-probability file (--kl-divergence-base)";
  if (map->size() < sizeof(kLogitsMagic) || std::memcmp(map->data(), kLogitsMagic, sizeof(kLogitsMagic)) != 0)
    return make_error(what + ": it does not start with \"_logits_\"");
  SHRINK_CHECK(r.bytes(sizeof(kLogitsMagic), "magic"));
  LogitsFile f;
  f.path_ = path;
  SHRINK_ASSIGN(f.header_.n_ctx, r.read<int32_t>("n_ctx"));
  SHRINK_ASSIGN(f.header_.n_vocab, r.read<int32_t>("n_vocab"));
  SHRINK_ASSIGN(f.header_.n_chunk, r.read<int32_t>("n_chunk"));
  const LogitsFileHeader& h = f.header_;
  // llama-perplexity needs 2*n_ctx tokens and a context of at least 4 to score anything.
  if (h.n_ctx < 4) return make_error(path + ": n_ctx is " + std::to_string(h.n_ctx) + ", must be at least 4");
  if (h.n_vocab < 1) return make_error(path + ": n_vocab is " + std::to_string(h.n_vocab) + ", must be positive");
  if (h.n_chunk < 1) return make_error(path + ": n_chunk is " + std::to_string(h.n_chunk) + ", must be positive");

  // Expected size: header + tokens + records; every product overflow-checked.
  uint64_t n_tokens = 0, token_bytes = 0, record_bytes = 0, n_records = 0, all_records = 0, total = 0;
  const uint64_t header_bytes = sizeof(kLogitsMagic) + 3 * sizeof(int32_t);
  bool ok = checked_mul(static_cast<uint64_t>(h.n_ctx), static_cast<uint64_t>(h.n_chunk), &n_tokens) &&
            checked_mul(n_tokens, sizeof(int32_t), &token_bytes) &&
            checked_mul(static_cast<uint64_t>(log_prob_record_words(h.n_vocab)), sizeof(uint16_t), &record_bytes) &&
            checked_mul(static_cast<uint64_t>(scored_per_chunk(h.n_ctx)), static_cast<uint64_t>(h.n_chunk), &n_records) &&
            checked_mul(n_records, record_bytes, &all_records) && checked_add(header_bytes, token_bytes, &total) &&
            checked_add(total, all_records, &total);
  if (!ok)
    return make_error(path + ": n_ctx " + std::to_string(h.n_ctx) + " x n_chunk " + std::to_string(h.n_chunk) +
                      " x n_vocab " + std::to_string(h.n_vocab) + " overflows a 64-bit size");
  if (total != map->size())
    return make_error(path + ": size is " + std::to_string(map->size()) + " bytes, but n_ctx " + std::to_string(h.n_ctx) +
                      ", n_vocab " + std::to_string(h.n_vocab) + " and n_chunk " + std::to_string(h.n_chunk) +
                      " need exactly " + std::to_string(total) + (map->size() < total ? " (truncated file?)" : ""));
  SHRINK_ASSIGN(const uint8_t* tok, r.bytes(token_bytes, "tokens"));
  f.tokens_.resize(n_tokens);
  std::memcpy(f.tokens_.data(), tok, token_bytes);
  for (size_t i = 0; i < f.tokens_.size(); ++i)
    if (f.tokens_[i] < 0 || f.tokens_[i] >= h.n_vocab)
      return make_error(path + ": token " + std::to_string(i) + " is " + std::to_string(f.tokens_[i]) +
                        ", outside the vocabulary of " + std::to_string(h.n_vocab));
  f.records_offset_ = r.offset();
  f.map_ = std::move(map);
  return f;
}

void LogitsFile::record(int64_t chunk, int64_t j, uint16_t* words) const {
  const size_t words_per = static_cast<size_t>(log_prob_record_words(header_.n_vocab));
  const size_t index = static_cast<size_t>(chunk * scored_per_chunk(header_.n_ctx) + j);
  std::memcpy(words, map_->data() + records_offset_ + index * words_per * sizeof(uint16_t), words_per * sizeof(uint16_t));
}

Result<LogitsFileWriter> LogitsFileWriter::create(const std::string& path, const LogitsFileHeader& h,
                                                  std::span<const int32_t> tokens) {
  if (tokens.size() != static_cast<size_t>(h.n_ctx) * static_cast<size_t>(h.n_chunk))
    return make_error(path + ": " + std::to_string(tokens.size()) + " tokens given for " + std::to_string(h.n_chunk) +
                      " chunks of " + std::to_string(h.n_ctx));
  SHRINK_ASSIGN(AtomicOutput out, AtomicOutput::create(path));
  SHRINK_CHECK(out.write(kLogitsMagic, sizeof(kLogitsMagic)));
  SHRINK_CHECK(out.write(&h.n_ctx, sizeof(h.n_ctx)));
  SHRINK_CHECK(out.write(&h.n_vocab, sizeof(h.n_vocab)));
  SHRINK_CHECK(out.write(&h.n_chunk, sizeof(h.n_chunk)));
  SHRINK_CHECK(out.write(tokens.data(), tokens.size_bytes()));
  return LogitsFileWriter(std::move(out), h);
}

Status LogitsFileWriter::write_chunk(std::span<const uint16_t> records) {
  const size_t want = static_cast<size_t>(scored_per_chunk(header_.n_ctx) * log_prob_record_words(header_.n_vocab));
  if (records.size() != want)
    return make_error(out_.path() + ": chunk " + std::to_string(chunks_written_) + " has " +
                      std::to_string(records.size()) + " words, expected " + std::to_string(want));
  if (chunks_written_ >= header_.n_chunk)
    return make_error(out_.path() + ": more chunks than the " + std::to_string(header_.n_chunk) + " announced");
  SHRINK_CHECK(out_.write(records.data(), records.size_bytes()));
  ++chunks_written_;
  return {};
}

Status LogitsFileWriter::commit() {
  if (chunks_written_ != header_.n_chunk)
    return make_error(out_.path() + ": " + std::to_string(chunks_written_) + " of " + std::to_string(header_.n_chunk) +
                      " chunks written");
  return out_.commit();
}

}  // namespace shrink
