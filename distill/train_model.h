// TrainModel: a Llama-family decoder ("llama" and "qwen2" as GGUF names them) held as fp32
// parameters with gradients, for distillation. forward() keeps every activation backward()
// needs; backward() accumulates into Param::grad. The maths is model/forward.cc's (the GGUF
// convention shrink uses internally: "llama" RoPE rotates adjacent pairs (2i, 2i+1), "qwen2"
// rotates i with i + head_dim/2), computed in fp32 without ggml's F16 rounding of the KV cache.
//
// Parameters carry their GGUF names and ggml shape order (shape[0] is the row length), as
// ModelSource's WeightTensor does, so to_source() hands a trained student to the existing
// writers (model/hf_writer.h, quantizer/quantize_model.h) unchanged.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "formats/vocab.h"
#include "model/llama_config.h"
#include "model/llama_model.h"
#include "model/model_source.h"

namespace shrink::distill {

struct Param {
  std::string name;             // GGUF name, e.g. "blk.0.attn_q.weight"
  std::vector<int64_t> shape;   // ggml order: {n_cols, n_rows} for a matrix, {n} for a vector
  std::vector<float> value;     // row-major, rows of shape[0]
  std::vector<float> grad;      // same size as value; backward() adds to it
  int64_t numel() const { return static_cast<int64_t>(value.size()); }
  bool is_matrix() const { return shape.size() == 2; }
};

class TrainModel {
 public:
  TrainModel() = default;

  // Every tensor of an opened model read as F32 (any format shrink opens; quantized GGUF
  // tensors are dequantized). Errors name the missing tensor or the shape that does not fit.
  static Result<TrainModel> from_source(const ModelSource& source);
  // The same from a loaded inference model (weights dequantized to F32).
  static Result<TrainModel> from_llama(const LlamaModel& model);
  // Random init for a fresh student (GPT-2 / llama2.c style): matrices N(0, 0.02), the two
  // residual projections (attn_output, ffn_down) N(0, 0.02 / sqrt(2 n_layer)), norm weights 1,
  // biases 0. Deterministic for a seed (std::mt19937_64 + std::normal_distribution<double>).
  static Result<TrainModel> random(const LlamaConfig& config, uint64_t seed);

  const LlamaConfig& config() const { return config_; }
  std::vector<Param>& params() { return params_; }
  const std::vector<Param>& params() const { return params_; }
  Param* find(const std::string& name);
  const Param* find(const std::string& name) const;
  int64_t n_params() const;

  // tokens: (batch, seq) row-major, each sequence starting at position 0 (no KV cache).
  // logits out: (batch * seq, n_vocab). hidden_out (optional): n_layer + 1 tensors of
  // (batch * seq, n_embd): the residual stream after the embedding and after each layer.
  // Errors: bad sizes, token id outside the vocabulary.
  Status forward(std::span<const int32_t> tokens, int64_t batch, int64_t seq, std::vector<float>& logits,
                 std::vector<std::vector<float>>* hidden_out = nullptr);
  // Gradient of the loss with respect to the logits of the last forward(), (batch * seq, n_vocab),
  // and optionally with respect to the hidden states forward() handed out (same layout as
  // hidden_out; an empty vector means zero). Adds the parameter gradients into Param::grad.
  Status backward(std::span<const float> dlogits, const std::vector<std::vector<float>>* dhidden = nullptr);
  void zero_grad();

  // The parameters as F32 weight tensors with the given vocabulary, for the writers. The
  // returned source shares the parameter values by copy, so it stays valid after training goes on.
  ModelSource to_source(const Vocab& vocab, const std::string& name = "distilled") const;

  // Bytes held by the activations of the last forward() (for memory reports).
  size_t activation_bytes() const;

  struct Activations;  // defined in train_model.cc

 private:
  Status build_params();  // creates params_ with zero values from config_, checks the config
  LlamaConfig config_;
  std::vector<Param> params_;
  std::vector<float> rope_freq_factors_;  // (head_dim / 2) or empty, as LlamaModel's
  std::shared_ptr<Activations> act_;
};

}  // namespace shrink::distill
