// The teacher's top-k logits, computed once and reused by later runs (--cache-teacher FILE
// writes it, --teacher-cache FILE trains from it without loading the teacher's forward pass).
//
// Per position the file keeps the K largest logits with their token ids and the log-sum-exp of
// the whole row, so the log-probabilities of the top K are exact and the mass left for the other
// n_vocab - K tokens is known: what kd_loss_topk (distill/losses.h) takes.
//
// File layout (little-endian):
//   "SHRKTKC1" | u32 version=1 | u32 k | u32 id_bytes (2 when n_vocab <= 65536, else 4)
//   | u64 data_fingerprint | i64 seq | i64 n_vocab | i64 n_windows | i64 n_train
//   then per window (training windows first, then held-out), per position (seq of them):
//   f32 lse | k x f32 logit (descending) | k x id (u16 or u32)
// So a position costs 4 + k * (4 + id_bytes) bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "formats/atomic_output.h"
#include "formats/mapped_file.h"

namespace shrink::distill {

struct TeacherCacheHeader {
  uint32_t k = 0;
  uint32_t id_bytes = 0;
  uint64_t data_fingerprint = 0;
  int64_t seq = 0;
  int64_t n_vocab = 0;
  int64_t n_windows = 0;
  int64_t n_train = 0;
  uint64_t bytes_per_position() const { return 4 + static_cast<uint64_t>(k) * (4 + id_bytes); }
};

constexpr uint64_t kTeacherCacheHeaderBytes = 8 + 4 * 3 + 8 * 5;

class TeacherCacheWriter {
 public:
  static Result<TeacherCacheWriter> create(const std::string& path, TeacherCacheHeader header);
  // One window: logits (seq, n_vocab). Windows must come in order: training ones, then held-out.
  Status add_window(std::span<const float> logits);
  Status finish();  // checks that every window was written, then renames into place
  const TeacherCacheHeader& header() const { return h_; }

 private:
  TeacherCacheWriter(AtomicOutput out, TeacherCacheHeader h) : out_(std::move(out)), h_(h) {}
  AtomicOutput out_;
  TeacherCacheHeader h_;
  int64_t written_ = 0;
};

class TeacherCache {
 public:
  // Maps the file and checks magic, version, sizes and that the file length matches the header.
  static Result<TeacherCache> open(const std::string& path);
  const TeacherCacheHeader& header() const { return h_; }
  // Window `w` (training windows first, then held-out): top-k ids (seq, k) and their
  // log-probabilities at T = 1 (seq, k), largest first.
  Status topk(int64_t w, std::vector<int32_t>& ids, std::vector<float>& logprobs) const;

 private:
  std::shared_ptr<MappedFile> file_;
  TeacherCacheHeader h_;
};

}  // namespace shrink::distill
