// The quantization plan: which type each tensor gets, and why. Rules follow llama.cpp's
// llama-quant.cpp where shrink has the types it names; where it does not yet, the plan says so.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "kernels/quant_types.h"
#include "model/model_source.h"

namespace shrink {

struct TensorPlan {
  const WeightTensor* tensor = nullptr;
  TypeId type = TypeId::F32;
  uint64_t bytes = 0;      // output bytes
  std::string reason;      // empty for the requested type; otherwise why it differs
};

struct QuantPlan {
  TypeId requested = TypeId::F32;
  uint32_t file_type = 0;  // general.file_type (llama.cpp's llama_ftype)
  std::vector<TensorPlan> tensors;
  uint64_t total_bytes() const;
  int64_t total_weights() const;
};

// llama_ftype for a whole-model type: ALL_F32=0, MOSTLY_F16=1, Q4_0=2, Q4_1=3, Q8_0=7, Q5_0=8,
// Q5_1=9, BF16=32 (llama.h).
Result<uint32_t> llama_file_type(TypeId type);

// The types `shrink quantize --type` accepts in this build.
std::vector<TypeId> plannable_types();

Result<QuantPlan> make_plan(const ModelSource& model, TypeId type);

}  // namespace shrink
