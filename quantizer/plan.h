// The quantization plan: which type each tensor gets, and why. The per-tensor rules are
// llama.cpp's mixes (quantizer/mixes.h). Where a row is not a multiple of the chosen type's
// block, llama.cpp falls back to a fixed larger type (Q4_K -> Q5_0, so a "4.5 bpw" tensor becomes
// 5.5; llama.cpp issue #1919). shrink instead lists every 32-block type no larger than llama.cpp's
// fallback and lets the quantizer keep the one with the lowest (importance-weighted) error, so
// the file is never larger than llama.cpp's; `--fallback llama` takes llama.cpp's type as is.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "kernels/quant_types.h"
#include "model/model_source.h"
#include "quantizer/mixes.h"

namespace shrink {

struct TensorPlan {
  const WeightTensor* tensor = nullptr;
  TypeId type = TypeId::F32;      // final type (after the quantizer resolved candidates)
  std::vector<TypeId> candidates; // >1: the quantizer picks the lowest-error one and sets `type`
  uint64_t bytes = 0;             // output bytes of `type`
  std::string reason;             // empty for the mix's default type; otherwise why it differs
};

struct QuantPlan {
  MixSpec mix;
  uint32_t file_type = 0;  // general.file_type (llama.cpp's llama_ftype)
  std::vector<TensorPlan> tensors;
  uint64_t total_bytes() const;
  int64_t total_weights() const;
  bool resolved() const;   // no tensor waits for a choice among candidates
};

enum class FallbackRule {
  kLowestError,  // shrink: the lowest-error type no larger than llama.cpp's fallback
  kLlama,        // llama.cpp: tensor_type_fallback (Q4_K -> Q5_0, Q6_K -> Q8_0, ...)
};

struct PlanOptions {
  std::string mix = "f32";  // a name from all_mixes(): q4_k_m, q8_0, f16, ...
  MixOverrides overrides;
  FallbackRule fallback = FallbackRule::kLowestError;
};

Result<QuantPlan> make_plan(const ModelSource& model, const PlanOptions& options);
// Sets a tensor's type and byte count (used when candidates are resolved).
void set_plan_type(TensorPlan& p, TypeId type);

}  // namespace shrink
