// ImatrixCollector: accumulates an importance matrix ("imatrix") while a Llama-family model runs,
// with the rules llama.cpp's llama-imatrix applies (tools/imatrix/imatrix.cpp, collect_imatrix):
//  - which products: every weight whose GGUF name starts with "blk.", plus "output.weight" when
//    process_output is set. A tied output projection runs as "token_embd.weight" and is therefore
//    never collected, in llama.cpp as here.
//  - which batches: a product fed fewer than 16 activation rows is ignored (llama-imatrix asks the
//    scheduler only for src1->ne[1] >= 16).
//  - what is summed: per weight and input column j, sum over every activation row x of x[j]^2;
//    the count of that weight grows by the number of rows. Dense weights only (one matrix per
//    weight, n_mat = 1): shrink runs no mixture-of-experts models.
//  - chunks: chunk_count = floor(largest count / chunk_size), the m_last_chunk llama-imatrix
//    writes (chunk_size = tokens per chunk, its n_ctx / n_parallel).
// Sums are kept in double and rounded to float once when the file is built (llama.cpp adds in
// float; the difference is float rounding, ~1e-7 relative per addition).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/result.h"
#include "formats/imatrix_file.h"
#include "model/llama_model.h"

namespace shrink {

struct ImatrixCollectorOptions {
  bool process_output = false;   // llama-imatrix --process-output: collect output.weight too
  int64_t min_rows = 16;         // llama-imatrix ignores products with fewer activation rows
};

class ImatrixCollector : public MatmulObserver {
 public:
  explicit ImatrixCollector(ImatrixCollectorOptions options = {});

  void observe(const WeightMatrix& w, const float* x, int64_t n_tokens) override;

  // True when llama-imatrix would collect the product of this weight (by name only).
  bool wants(const std::string& weight_name) const;

  // The first problem seen (llama-imatrix aborts on it): a non-finite sum, or a weight seen with
  // two different row lengths. Checked by the caller after each forward pass.
  const Status& status() const { return status_; }

  // floor(largest count / chunk_size); 0 when nothing was collected or chunk_size < 1.
  int64_t chunk_count(int64_t chunk_size) const;
  // Weights collected so far.
  size_t size() const { return stats_.size(); }
  // Activation rows summed for one weight (0 when never collected).
  int64_t count(const std::string& weight_name) const;

  // The importance matrix in the GGUF form's terms: entries sorted by name, raw sums and counts,
  // datasets as given, chunk_count as above and chunk_size.
  Result<Imatrix> imatrix(const std::vector<std::string>& datasets, int64_t chunk_size) const;

 private:
  struct Stats {
    std::vector<double> sum2;  // (n_cols)
    int64_t count = 0;         // activation rows summed
  };
  ImatrixCollectorOptions options_;
  std::map<std::string, Stats> stats_;  // ordered by name, the order llama-imatrix writes
  Status status_;
};

}  // namespace shrink
