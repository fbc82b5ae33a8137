// LlamaModel: a Llama-family decoder ("llama" and "qwen2" as GGUF names them) loaded for
// inference, and its forward pass over a batch of tokens with a KV cache.
//
// Weight matrices stay in their storage type: a GGUF input's tensors are used in place (views
// into the mapped file, kept alive by the model), other inputs are read as F32. Products with
// quantized weights follow ggml's CPU backend: the activation row is converted to the weight
// type's vec_dot_type (kernels/dot.h) and each block's integer dot product is scaled, so results
// agree with llama.cpp up to float summation order. The KV cache holds F16 values by default,
// as llama.cpp's does (type_k = type_v = f16), and attention rounds the query and the softmax
// weights to F16 where ggml's F16 matrix products do.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "formats/vocab.h"
#include "kernels/gemv_packed.h"
#include "kernels/quant_types.h"
#include "model/llama_config.h"
#include "model/model_source.h"

namespace shrink {

// The copy of a matrix that one-token products read (kernels/gemv_packed.h: the same bytes
// regrouped into 16-row panels, 0.87-1.04 of memory bandwidth against 0.49-0.70 in place). Made
// by the first one-token product, so batched-only work such as eval never pays for it. It
// describes the matrix it was made for: a WeightMatrix copied and then given other data, type
// or shape (tests, exporters) shares the pointer but not the description, and reads in place.
// Batched products keep reading the original bytes, so a model that does both holds the weights
// twice, as llama.cpp does when it repacks.
struct PackedWeights {
  PackedWeights(TypeId t, const uint8_t* d, int64_t rows, int64_t cols) : type(t), source(d), n_rows(rows), n_cols(cols) {}
  const TypeId type;
  const uint8_t* const source;
  const int64_t n_rows, n_cols;
  std::once_flag once;
  kernels::PackedMatrix matrix;  // filled under `once`
};

// One weight matrix in its storage type: n_rows rows of n_cols weights (ggml ne0 = n_cols).
struct WeightMatrix {
  std::string name;
  TypeId type = TypeId::F32;
  int64_t n_cols = 0;
  int64_t n_rows = 0;
  size_t row_bytes = 0;
  const uint8_t* data = nullptr;
  // Set by load_llama_model for matrices kernels::gemv_packable accepts; filled lazily (above).
  std::shared_ptr<PackedWeights> packed;
  bool packed_matches() const {
    return packed != nullptr && packed->type == type && packed->source == data && packed->n_rows == n_rows &&
           packed->n_cols == n_cols;
  }
  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
};

struct LlamaLayer {
  std::vector<float> attn_norm;                 // (n_embd)
  WeightMatrix wq, wk, wv, wo;                  // (n_embd_q, n_embd), (n_embd_kv, n_embd) x2, (n_embd, n_embd_q)
  std::vector<float> bq, bk, bv;                // empty unless config.qkv_bias
  std::vector<float> ffn_norm;                  // (n_embd)
  WeightMatrix ffn_gate, ffn_up, ffn_down;      // (n_ff, n_embd) x2, (n_embd, n_ff)
};

enum class KvCacheType { F16, F32 };

struct LlamaModel {
  LlamaConfig config;
  Vocab vocab;
  WeightMatrix token_embd;                      // (n_vocab, n_embd)
  std::vector<LlamaLayer> layers;
  std::vector<float> output_norm;               // (n_embd)
  WeightMatrix output;                          // (n_vocab, n_embd); token_embd when tied
  std::vector<float> rope_freq_factors;         // (head_dim / 2) or empty (llama3 rope_freqs)
  // Storage behind the WeightMatrix views: the source's mappings and F32 copies.
  std::vector<std::shared_ptr<void>> keep_alive;
  std::vector<std::shared_ptr<std::vector<uint8_t>>> owned;

  uint64_t weight_bytes() const;
};

// Loads every tensor the config names; errors name the tensor and the shape or type rule.
Result<LlamaModel> load_llama_model(const ModelSource& source);

// Keys and values of every layer for up to n_ctx positions.
struct KvCache {
  int64_t n_ctx = 0;
  int64_t n_past = 0;               // positions already filled
  KvCacheType type = KvCacheType::F16;
  // Per layer, F16-rounded when type is F16: keys by head, (n_head_kv, n_ctx, head_dim), so one
  // head's keys are contiguous for the scores (position-major rows 4 KB apart thrashed the TLB);
  // values transposed, (n_embd_kv, v_stride), one row per dimension, as llama.cpp stores them
  // without flash attention, so a value row is contiguous for the attention-weighted sum.
  // v_stride is n_ctx rounded up to 64 with zeros past the written positions (the sum reads
  // whole vector steps).
  std::vector<std::vector<float>> k, v;
  int64_t v_stride = 0;

  void clear() { n_past = 0; }
};
KvCache make_kv_cache(const LlamaModel& model, int64_t n_ctx, KvCacheType type = KvCacheType::F16);

// Sees the input of every weight-matrix product during a forward pass (calibration: importance
// matrices, activation statistics). x is (n_tokens, w.n_cols), row-major, in F32 as it enters
// the product (before any activation quantization). Called from the forward pass's thread, never
// concurrently; `w.name` is the GGUF tensor name ("blk.0.attn_q.weight").
class MatmulObserver {
 public:
  virtual ~MatmulObserver() = default;
  virtual void observe(const WeightMatrix& w, const float* x, int64_t n_tokens) = 0;
};

// Evaluates `tokens` at positions cache.n_past .. cache.n_past + n - 1, appending their keys and
// values to the cache. Logits (n_vocab floats per row) are written to `logits` for the tokens
// at index >= logits_from only: (n - logits_from) rows. Errors: cache full, token id out of range.
Status llama_forward(const LlamaModel& model, KvCache& cache, std::span<const int32_t> tokens,
                     std::vector<float>& logits, int64_t logits_from = 0,
                     MatmulObserver* observer = nullptr);

// y (n_tokens, w.n_rows) = x (n_tokens, w.n_cols) times w transposed, with ggml's activation
// conversion for w's type (see kernels/dot.h). Rows spread over OpenMP threads.
void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y);

}  // namespace shrink
