// Training text for distillation: files tokenized with the teacher's tokenizer, packed into
// fixed-length windows, split into a training part and a held-out part, and served in a
// deterministic shuffled order that a checkpoint can resume exactly.
//
// Packing: each file is one document, tokenized as llama.cpp tokenizes a prompt
// (common_tokenize with add_special = true: BOS first when the vocabulary adds one), and the
// documents are concatenated. Window i holds tokens [i*seq, i*seq + seq] (seq + 1 tokens): the
// model reads the first seq and is scored on predicting the last seq, so consecutive windows
// share one token and every token after the first is a target exactly once.
// Held-out split: the LAST ceil(holdout * n_windows) windows of the stream, taken before any
// shuffling, so held-out text is never trained on (it does share its first token with the last
// training window).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "model/tokenizer.h"

namespace shrink::distill {

struct PackOptions {
  int64_t seq = 256;      // tokens the model reads per window
  double holdout = 0.05;  // fraction of windows held out for evaluation, in [0, 0.5]
};

struct PackedData {
  int64_t seq = 0;
  std::vector<int32_t> train;    // (n_train, seq + 1)
  std::vector<int32_t> heldout;  // (n_heldout, seq + 1)
  int64_t n_tokens = 0;          // tokens in the whole stream
  uint64_t fingerprint = 0;      // FNV-1a over seq and every token: identifies the data of a run

  int64_t n_train() const { return static_cast<int64_t>(train.size()) / (seq + 1); }
  int64_t n_heldout() const { return static_cast<int64_t>(heldout.size()) / (seq + 1); }
  std::span<const int32_t> train_window(int64_t i) const;
  std::span<const int32_t> heldout_window(int64_t i) const;
};

// Reads and tokenizes the files in order. Errors name the file (missing, unreadable, empty).
Result<std::vector<int32_t>> tokenize_files(const std::vector<std::string>& files, const Tokenizer& tokenizer);

// Cuts the stream into windows. `what` names the input in errors ("3 files").
// Errors: seq < 2, holdout outside [0, 0.5], fewer tokens than one window (seq + 1), or too
// few windows for a non-empty held-out part plus at least one training window.
Result<PackedData> pack_tokens(const std::vector<int32_t>& tokens, const PackOptions& options, const std::string& what);

// splitmix64 (Steele, Lea, Flood 2014): a small generator whose whole state is one integer,
// so a checkpoint stores it exactly and the sequence is the same on every platform.
struct SplitMix64 {
  uint64_t state = 0;
  uint64_t next();
  // Uniform in [0, n) by rejection (no modulo bias); n > 0.
  uint64_t below(uint64_t n);
};

// Where the training order stands: epoch and index into that epoch's permutation. The
// permutation of epoch e is a Fisher-Yates shuffle driven by SplitMix64 seeded from
// (seed, e), so (seed, cursor) alone determines every future batch.
struct DataCursor {
  int64_t epoch = 0;
  int64_t index = 0;
};

class BatchSampler {
 public:
  BatchSampler(const PackedData& data, uint64_t seed, DataCursor cursor = {});
  // The training-window indices of the next batch, advancing the cursor and wrapping into the
  // next epoch (a new permutation) when one runs out.
  std::vector<int64_t> next_batch(int64_t batch);
  // Position of the next window to serve (saved in checkpoints).
  const DataCursor& cursor() const { return cursor_; }
  uint64_t seed() const { return seed_; }

 private:
  void make_permutation();
  const PackedData& data_;
  uint64_t seed_;
  DataCursor cursor_;
  std::vector<int64_t> order_;  // permutation of the current epoch
};

// The SplitMix64 state that starts epoch `epoch`'s shuffle: the whole RNG state a checkpoint
// needs next to the cursor.
uint64_t epoch_rng_state(uint64_t seed, int64_t epoch);
// The training order for one epoch.
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace shrink::distill
