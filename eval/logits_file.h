// The base-model log-probability file of `llama-perplexity --kl-divergence-base` (llama.cpp
// tools/perplexity/perplexity.cpp: perplexity() writes it, kl_divergence() reads it), so files
// written by either program are read by the other. Layout, little-endian, no padding:
//
//   char    magic[8]  = "_logits_"
//   int32   n_ctx                      tokens per chunk
//   int32   n_vocab
//   int32   n_chunk
//   int32   tokens[n_chunk * n_ctx]    the evaluated text, as tokenized (chunk starts NOT replaced by BOS)
//   then per chunk, for each scored position i = n_ctx/2 .. n_ctx-2 (n_ctx - 1 - n_ctx/2 of them),
//   one record of nv = 2*((n_vocab+1)/2) + 4 uint16 words:
//     float   scale                    words 0-1
//     float   min_log_prob             words 2-3
//     uint16  q[n_vocab]               log p(v) = scale * q[v] + min_log_prob
//     (uint16 0 when n_vocab is odd, so a record is a whole number of 32-bit words)
//
// This file only moves bytes; turning logits into records and back is eval/kl_divergence.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "formats/atomic_output.h"
#include "formats/mapped_file.h"

namespace shrink {

inline constexpr char kLogitsMagic[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};

// uint16 words in one position's record.
inline int64_t log_prob_record_words(int64_t n_vocab) { return 2 * ((n_vocab + 1) / 2) + 4; }
// Scored positions per chunk: n_ctx/2 .. n_ctx-2.
inline int64_t scored_per_chunk(int64_t n_ctx) { return n_ctx - 1 - n_ctx / 2; }

struct LogitsFileHeader {
  int32_t n_ctx = 0;
  int32_t n_vocab = 0;
  int32_t n_chunk = 0;
};

// A mapped, validated base file: the size is exactly what the header implies and every token
// id lies in the vocabulary. Records are checked as they are used (kl_divergence).
class LogitsFile {
 public:
  static Result<LogitsFile> open(const std::string& path);

  const std::string& path() const { return path_; }
  const LogitsFileHeader& header() const { return header_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }  // (n_chunk * n_ctx)
  // Record j (0 .. scored_per_chunk(n_ctx)-1) of chunk c, copied out as words (aligned).
  void record(int64_t chunk, int64_t j, uint16_t* words) const;

 private:
  std::string path_;
  LogitsFileHeader header_;
  std::vector<int32_t> tokens_;
  std::shared_ptr<MappedFile> map_;
  size_t records_offset_ = 0;
};

// Writes the header and tokens at creation, then records chunk by chunk, in order; commit()
// checks every chunk was written and renames the temp file onto the path.
class LogitsFileWriter {
 public:
  static Result<LogitsFileWriter> create(const std::string& path, const LogitsFileHeader& header,
                                         std::span<const int32_t> tokens);
  // scored_per_chunk(n_ctx) records of log_prob_record_words(n_vocab) words.
  Status write_chunk(std::span<const uint16_t> records);
  Status commit();

 private:
  LogitsFileWriter(AtomicOutput out, const LogitsFileHeader& h) : out_(std::move(out)), header_(h) {}
  AtomicOutput out_;
  LogitsFileHeader header_;
  int64_t chunks_written_ = 0;
};

}  // namespace shrink
