// llama.cpp importance-matrix ("imatrix") files: reader for both on-disk forms, GGUF writer.
//
// Sources (llama.cpp, as bundled with node-llama-cpp v0.5.0):
//   imatrix.cpp   = tools/imatrix/imatrix.cpp (save_imatrix, save_imatrix_legacy: what is written)
//   loader.cpp    = common/imatrix-loader.cpp (common_imatrix_load: what is accepted)
//   quantize.cpp  = tools/quantize/quantize.cpp (load_imatrix: how values become per-column weights)
//   llama-quant.cpp = src/llama-quant.cpp (size check against the model tensor, non-finite refusal)
//
// GGUF form (current default of llama-imatrix):
//   metadata  general.type = "imatrix", imatrix.datasets = [string], imatrix.chunk_count = u32,
//             imatrix.chunk_size = u32 (tokens per chunk, n_ctx / n_parallel)
//   tensors   per weight matrix W, in name order:
//             "<W>.in_sum2"  F32 (n_mat, n_cols) -- ggml shape {n_cols, n_mat}: sum over every
//                            activation row x fed to W of x[col]^2, one row per expert
//             "<W>.counts"   F32 (n_mat, 1)      -- ggml shape {1, n_mat}: activation rows summed
//             ggml drops trailing 1-dims when writing, so a dense weight has in_sum2 {n_cols} and
//             counts {1}.
// Legacy .dat form (llama-imatrix --output-format dat, and every file before the GGUF form):
//   i32 n_entries, then per entry: i32 name length, name bytes, i32 ncall, i32 nval,
//   nval f32 values; then optionally i32 last_call (chunks processed) and i32 length + dataset
//   file name. Each stored value is (sum / count) * ncall, where ncall = ceil(max count /
//   chunk_size) and a matrix with count 0 stores 1 * ncall; the .dat form does not record how
//   many experts the values span (nval = n_mat * n_cols, one ncall for all of them).
//
// This file only parses and writes; the one formula here is imatrix_weights(), the division
// llama-quantize applies when it loads either form.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace shrink {

struct ImatrixEntry {
  std::string name;           // weight tensor name, e.g. "blk.0.attn_q.weight"
  int64_t n_cols = 0;         // weight row length (ggml ne[0]); for a legacy entry: nval
  int64_t n_mat = 1;          // experts (ggml ne[2] of a 3-D MoE weight), 1 for a dense weight and
                              // for every legacy entry
  std::vector<float> in_sum2; // (n_mat, n_cols). GGUF form: raw sums of squared activations.
                              // Legacy: (sum / count) * ncall as stored in the .dat file.
  std::vector<float> counts;  // (n_mat). GGUF form: activation rows per matrix (integral in files
                              // llama-imatrix writes). Legacy: one value, ncall.
  bool legacy = false;        // read from a .dat file: in_sum2/counts hold the legacy quantities

  int64_t n_values() const { return n_cols * n_mat; }
};

enum class ImatrixFormat { kGguf, kLegacyDat };

struct Imatrix {
  ImatrixFormat format = ImatrixFormat::kGguf;
  std::vector<ImatrixEntry> entries;  // read: sorted by name, names unique
  std::vector<std::string> datasets;  // calibration text files (paths as given to llama-imatrix)
  int64_t chunk_count = 0;            // chunks processed (legacy: the trailing last_call, or 0)
  int64_t chunk_size = 0;             // tokens per chunk; 0 in the legacy form, which has no such field

  const ImatrixEntry* find(const std::string& name) const;
};

// Reads either form; GGUF when the file starts with "GGUF", legacy .dat otherwise. Refuses,
// with one line naming the file, the entry or field, the bad value and the rule:
//  - GGUF: general.type present and not "imatrix"; any of imatrix.datasets / chunk_count /
//    chunk_size missing (llama-quantize refuses that too) or of the wrong type; no tensors;
//    a tensor whose name is not "<W>.in_sum2" or "<W>.counts"; an in_sum2 without its counts or
//    the reverse; a type other than F32; shapes not {n_cols[, n_mat]} and {1[, n_mat]} with the
//    same n_mat (extra trailing dims must be 1).
//  - .dat: n_entries < 1 or more than the file could hold; a name length < 1 or > 4096, a name
//    with a NUL byte, a duplicate name; ncall < 0; nval < 1; a truncated entry; a trailer other
//    than nothing, i32 last_call alone, or last_call + i32 length + exactly that many bytes;
//    last_call < 0 or a negative dataset length.
//  - both: any in_sum2 value that is NaN, infinite or negative (it is a sum of squares), any
//    count that is NaN, infinite, negative or above 2^62 (llama.cpp rounds counts to int64).
// Non-integral counts are accepted: llama.cpp rounds them (see imatrix_weights).
Result<Imatrix> read_imatrix(const std::string& path);

// Writes the GGUF form exactly as llama-imatrix lays it out: the four keys in its order,
// entries sorted by name, in_sum2 then counts per entry, trailing 1-dims dropped, alignment 32;
// temp file renamed into place. Entries are validated by the reader's rules (so what is written
// reads back) and names must be unique and short enough for "<name>.in_sum2" to fit GGUF's
// 63-byte tensor name. A legacy entry is written as in_sum2 = stored values and counts =
// {ncall > 0 ? ncall : 1}, which keeps imatrix_weights() bit for bit; chunk_count and chunk_size
// must fit in u32.
Status write_imatrix_gguf(const std::string& path, const Imatrix& imatrix);

// Per-column importance of matrix `mat` (0 <= mat < n_mat; empty vector otherwise), n_cols
// values, exactly as llama-quantize's load_imatrix computes them:
//   GGUF form:  c = float(lround(counts[mat])); w[i] = c > 0 ? in_sum2[mat*n_cols + i] / c : 1
//               (a matrix no activation reached gets uniform weight 1)
//   legacy:     n = counts[0] (ncall); w[i] = n > 0 ? in_sum2[i] / float(n) : in_sum2[i]
std::vector<float> imatrix_weights(const ImatrixEntry& entry, int64_t mat = 0);
// All matrices back to back, n_mat * n_cols values: the array llama-quantize hands to the
// quantizer for a weight of shape {n_cols, n_rows, n_mat} (expert e at offset e * n_cols). For a
// legacy entry this is also the only correct per-expert source: slice it by the model's n_cols.
std::vector<float> imatrix_weights_all(const ImatrixEntry& entry);

// The model side of check_imatrix_against: the row length and expert count of a weight.
struct ImatrixWeightShape {
  int64_t n_cols = 0;  // ggml ne[0]
  int64_t n_mat = 1;   // ggml ne[2] for a 3-D expert weight, else 1
};
// Returns nullopt when the model has no weight by that name.
using ImatrixShapeLookup = std::function<std::optional<ImatrixWeightShape>(const std::string& name)>;

// Checks every entry against the model. A size mismatch is an error (llama-quantize throws
// "imatrix size ... is different from tensor size ..." for all but token_embd): a GGUF-form entry
// must match n_cols and n_mat; a legacy entry, which does not know its experts, must hold
// n_cols * n_mat values. Entry names the model does not have are an error as well when
// `unknown_names_are_errors` (the default): llama-quantize merely never looks them up, but an
// imatrix whose names the model lacks was computed for a different model, and quantizing with
// it silently drops the calibration. The message names `file`, the first offending tensor and
// both sizes, and counts the other offenders.
Status check_imatrix_against(const Imatrix& imatrix, const ImatrixShapeLookup& model_shape, const std::string& file,
                             bool unknown_names_are_errors = true);

}  // namespace shrink
