// Per-tensor error of a quantized model against its source: every weight tensor of the
// quantized model is read back to floats (dequantized as ggml does) and compared with the
// tensor of the same GGUF name in the source, which may be any format shrink opens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "eval/weight_error.h"
#include "kernels/quant_types.h"
#include "model/model_source.h"

namespace shrink {

struct TensorErrorRow {
  std::string name;
  TypeId type = TypeId::F32;      // storage type in the quantized model
  std::vector<int64_t> shape;     // ggml order: shape[0] is the row length
  double bits_per_weight = 0;     // stored bytes * 8 / weights
  ErrorStats error;               // reference = source, approx = quantized
};

struct TensorReport {
  std::vector<TensorErrorRow> rows;  // in the quantized model's tensor order
  ErrorStats total;                  // over all compared tensors
  uint64_t total_bytes = 0;          // stored bytes of the compared tensors
  std::vector<std::string> not_in_source;  // quantized tensors with no source tensor of that name
};

// Errors: a shape that differs between the two (naming the tensor and both shapes), or a tensor
// either side cannot read.
Result<TensorReport> compare_tensors(const ModelSource& quantized, const ModelSource& source);

}  // namespace shrink
