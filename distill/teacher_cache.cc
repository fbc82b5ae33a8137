#include "distill/teacher_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace shrink::distill {

namespace {

constexpr char kMagic[8] = {'S', 'H', 'R', 'K', 'T', 'K', 'C', '1'};
constexpr uint32_t kVersion = 1;

template <class T>
void put(std::vector<uint8_t>& b, T v) {
  const size_t at = b.size();
  b.resize(at + sizeof(T));
  std::memcpy(b.data() + at, &v, sizeof(T));
}

template <class T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

Result<TeacherCacheWriter> TeacherCacheWriter::create(const std::string& path, TeacherCacheHeader h) {
  if (h.k < 1 || static_cast<int64_t>(h.k) > h.n_vocab)
    return make_error("--top-k must lie in [1, n_vocab = " + std::to_string(h.n_vocab) + "], got " + std::to_string(h.k));
  h.id_bytes = h.n_vocab <= 65536 ? 2 : 4;
  SHRINK_ASSIGN(AtomicOutput out, AtomicOutput::create(path));
  std::vector<uint8_t> b(kMagic, kMagic + 8);
  put(b, kVersion);
  put(b, h.k);
  put(b, h.id_bytes);
  put(b, h.data_fingerprint);
  put(b, h.seq);
  put(b, h.n_vocab);
  put(b, h.n_windows);
  put(b, h.n_train);
  SHRINK_CHECK(out.write(b.data(), b.size()));
  return TeacherCacheWriter(std::move(out), h);
}

Status TeacherCacheWriter::add_window(std::span<const float> logits) {
  const int64_t V = h_.n_vocab;
  if (static_cast<int64_t>(logits.size()) != h_.seq * V)
    return make_error(out_.path() + ": window of " + std::to_string(logits.size()) + " logits, expected seq * n_vocab = " +
                      std::to_string(h_.seq * V));
  if (written_ >= h_.n_windows) return make_error(out_.path() + ": more windows than the header's " + std::to_string(h_.n_windows));
  std::vector<int32_t> idx(static_cast<size_t>(V));
  std::vector<uint8_t> b;
  b.reserve(static_cast<size_t>(h_.seq * h_.bytes_per_position()));
  for (int64_t t = 0; t < h_.seq; ++t) {
    const float* row = logits.data() + t * V;
    // log-sum-exp in double: the remaining mass 1 - sum(top-k) must not drown in rounding.
    const float mx = *std::max_element(row, row + V);
    double s = 0;
    for (int64_t i = 0; i < V; ++i) s += std::exp(static_cast<double>(row[i]) - mx);
    put(b, static_cast<float>(mx + std::log(s)));
    std::iota(idx.begin(), idx.end(), 0);
    // Ties broken by the smaller id, so the file does not depend on the sort's implementation.
    std::partial_sort(idx.begin(), idx.begin() + h_.k, idx.end(), [row](int32_t a, int32_t c) {
      return row[a] > row[c] || (row[a] == row[c] && a < c);
    });
    for (uint32_t j = 0; j < h_.k; ++j) put(b, row[idx[j]]);
    for (uint32_t j = 0; j < h_.k; ++j) {
      if (h_.id_bytes == 2)
        put(b, static_cast<uint16_t>(idx[j]));
      else
        put(b, static_cast<uint32_t>(idx[j]));
    }
  }
  ++written_;
  return out_.write(b.data(), b.size());
}

Status TeacherCacheWriter::finish() {
  if (written_ != h_.n_windows)
    return make_error(out_.path() + ": " + std::to_string(written_) + " of " + std::to_string(h_.n_windows) + " windows written");
  return out_.commit();
}

Result<TeacherCache> TeacherCache::open(const std::string& path) {
  SHRINK_ASSIGN(std::shared_ptr<MappedFile> f, MappedFile::open(path));
  if (f->size() < kTeacherCacheHeaderBytes || std::memcmp(f->data(), kMagic, 8) != 0)
    return make_error(path + ": not a shrink teacher cache (magic SHRKTKC1 missing)");
  const uint8_t* p = f->data() + 8;
  const auto version = get<uint32_t>(p);
  if (version != kVersion)
    return make_error(path + ": teacher cache version " + std::to_string(version) + ", this build reads " + std::to_string(kVersion));
  TeacherCacheHeader h;
  h.k = get<uint32_t>(p + 4);
  h.id_bytes = get<uint32_t>(p + 8);
  h.data_fingerprint = get<uint64_t>(p + 12);
  h.seq = get<int64_t>(p + 20);
  h.n_vocab = get<int64_t>(p + 28);
  h.n_windows = get<int64_t>(p + 36);
  h.n_train = get<int64_t>(p + 44);
  if (h.id_bytes != 2 && h.id_bytes != 4) return make_error(path + ": id width " + std::to_string(h.id_bytes) + " is not 2 or 4");
  // Bounds chosen so the size product below cannot overflow 64 bits.
  if (h.n_vocab < 1 || h.n_vocab > (int64_t{1} << 31) || h.k < 1 || h.k > h.n_vocab || h.seq < 1 || h.seq > (int64_t{1} << 24) ||
      h.n_windows < 1 || h.n_windows > (int64_t{1} << 32) || h.n_train < 1 || h.n_train > h.n_windows ||
      (h.id_bytes == 2 && h.n_vocab > 65536))
    return make_error(path + ": inconsistent teacher cache header (k " + std::to_string(h.k) + ", seq " + std::to_string(h.seq) +
                      ", n_vocab " + std::to_string(h.n_vocab) + ", windows " + std::to_string(h.n_windows) + ")");
  const unsigned __int128 want = static_cast<unsigned __int128>(h.bytes_per_position()) * static_cast<uint64_t>(h.seq) *
                                     static_cast<uint64_t>(h.n_windows) + kTeacherCacheHeaderBytes;
  if (want != f->size())
    return make_error(path + ": file is " + std::to_string(f->size()) + " bytes, the header implies " +
                      std::to_string(static_cast<uint64_t>(want)) + " (truncated or not a teacher cache)");
  TeacherCache c;
  c.file_ = std::move(f);
  c.h_ = h;
  return c;
}

Status TeacherCache::topk(int64_t w, std::vector<int32_t>& ids, std::vector<float>& logprobs) const {
  if (w < 0 || w >= h_.n_windows) return make_error(file_->path() + ": window " + std::to_string(w) + " out of range");
  const uint32_t k = h_.k;
  ids.resize(static_cast<size_t>(h_.seq) * k);
  logprobs.resize(ids.size());
  const uint8_t* p = file_->data() + kTeacherCacheHeaderBytes + static_cast<uint64_t>(w) * h_.seq * h_.bytes_per_position();
  for (int64_t t = 0; t < h_.seq; ++t, p += h_.bytes_per_position()) {
    const float lse = get<float>(p);
    const uint8_t* id_bytes = p + 4 + 4 * static_cast<uint64_t>(k);
    for (uint32_t j = 0; j < k; ++j) {
      const size_t o = static_cast<size_t>(t) * k + j;
      logprobs[o] = get<float>(p + 4 + 4 * j) - lse;
      const uint32_t id = h_.id_bytes == 2 ? get<uint16_t>(id_bytes + 2 * j) : get<uint32_t>(id_bytes + 4 * j);
      if (id >= static_cast<uint64_t>(h_.n_vocab))
        return make_error(file_->path() + ": window " + std::to_string(w) + " position " + std::to_string(t) + ": token id " +
                          std::to_string(id) + " outside the vocabulary of " + std::to_string(h_.n_vocab));
      ids[o] = static_cast<int32_t>(id);
    }
  }
  return {};
}

}  // namespace shrink::distill
