#include "distill/data.h"

#include <cmath>
#include <fstream>
#include <iterator>

namespace shrink::distill {

std::span<const int32_t> PackedData::train_window(int64_t i) const {
  return {train.data() + i * (seq + 1), static_cast<size_t>(seq + 1)};
}

std::span<const int32_t> PackedData::heldout_window(int64_t i) const {
  return {heldout.data() + i * (seq + 1), static_cast<size_t>(seq + 1)};
}

Result<std::vector<int32_t>> tokenize_files(const std::vector<std::string>& files, const Tokenizer& tokenizer) {
  if (files.empty()) return make_error("no training text: give at least one --data file");
  std::vector<int32_t> out;
  for (const std::string& path : files) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return make_error(path + ": cannot open the text file");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) return make_error(path + ": read failed");
    if (text.empty()) return make_error(path + ": the text file is empty");
    // One document per file, BOS first when the vocabulary adds one (llama.cpp's common_tokenize
    // with add_special = true); control-token texts stay plain text (parse_special = false).
    std::vector<int32_t> ids = tokenizer.encode(text, /*add_special=*/true, /*parse_special=*/false);
    out.insert(out.end(), ids.begin(), ids.end());
  }
  return out;
}

Result<PackedData> pack_tokens(const std::vector<int32_t>& tokens, const PackOptions& o, const std::string& what) {
  if (o.seq < 2) return make_error("--seq must be at least 2, got " + std::to_string(o.seq));
  if (!(o.holdout >= 0.0 && o.holdout <= 0.5))
    return make_error("--holdout must lie in [0, 0.5], got " + std::to_string(o.holdout));
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < o.seq + 1)
    return make_error(what + ": " + std::to_string(n) + " tokens are shorter than one training sequence (--seq " +
                      std::to_string(o.seq) + " needs " + std::to_string(o.seq + 1) + " tokens); give more text or a smaller --seq");
  const int64_t n_windows = (n - 1) / o.seq;  // window i ends at token i*seq + seq <= n - 1
  const int64_t n_held = o.holdout > 0 ? static_cast<int64_t>(std::ceil(o.holdout * static_cast<double>(n_windows))) : 0;
  if (n_windows - n_held < 1)
    return make_error(what + ": " + std::to_string(n) + " tokens make " + std::to_string(n_windows) + " window(s) of --seq " +
                      std::to_string(o.seq) + ", too few for " + std::to_string(n_held) +
                      " held-out window(s) (--holdout " + std::to_string(o.holdout) +
                      ") and one to train on; give more text or a smaller --seq");
  PackedData d;
  d.seq = o.seq;
  d.n_tokens = n;
  const int64_t n_train = n_windows - n_held;
  auto copy_window = [&](int64_t w, std::vector<int32_t>& dst) {
    dst.insert(dst.end(), tokens.begin() + w * o.seq, tokens.begin() + w * o.seq + o.seq + 1);
  };
  d.train.reserve(static_cast<size_t>(n_train * (o.seq + 1)));
  for (int64_t w = 0; w < n_train; ++w) copy_window(w, d.train);
  for (int64_t w = n_train; w < n_windows; ++w) copy_window(w, d.heldout);
  // FNV-1a 64 (offset basis 14695981039346656037, prime 1099511628211) over the window length,
  // the split point and every token, byte by byte.
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](uint64_t v) {
    for (int b = 0; b < 8; ++b) {
      h ^= (v >> (8 * b)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(static_cast<uint64_t>(o.seq));
  mix(static_cast<uint64_t>(n_train));
  for (int32_t t : tokens) mix(static_cast<uint32_t>(t));
  d.fingerprint = h;
  return d;
}

uint64_t SplitMix64::next() {
  // Constants from the reference splitmix64.c (Vigna).
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::below(uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // multiples of n below it are equally likely
  uint64_t r;
  do r = next();
  while (r >= limit);
  return r % n;
}

uint64_t epoch_rng_state(uint64_t seed, int64_t epoch) {
  return seed * 0x9e3779b97f4a7c15ull ^ (static_cast<uint64_t>(epoch) + 1) * 0xd1b54a32d192ed03ull;
}

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  SplitMix64 rng{epoch_rng_state(seed, epoch)};
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i + 1)));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

BatchSampler::BatchSampler(const PackedData& data, uint64_t seed, DataCursor cursor)
    : data_(data), seed_(seed), cursor_(cursor) {
  make_permutation();
}

void BatchSampler::make_permutation() { order_ = epoch_permutation(data_.n_train(), seed_, cursor_.epoch); }

std::vector<int64_t> BatchSampler::next_batch(int64_t batch) {
  std::vector<int64_t> out;
  for (int64_t b = 0; b < batch; ++b) {
    if (cursor_.index >= static_cast<int64_t>(order_.size())) {
      ++cursor_.epoch;
      cursor_.index = 0;
      make_permutation();
    }
    out.push_back(order_[static_cast<size_t>(cursor_.index++)]);
  }
  return out;
}

}  // namespace shrink::distill
