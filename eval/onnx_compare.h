// Float vs quantized ONNX model comparison: per output SQNR, cosine similarity, max |diff| and
// top-1 agreement (argmax over the last axis, per row), accumulated over samples; and per quantized
// activation (the float tensor vs the value its DequantizeLinear hands on, like ONNX Runtime's
// qdq_loss_debug). Pure arithmetic on tensors: running the models is the caller's job.
#pragma once

#include <onnx/onnx_pb.h>

#include <map>
#include <string>
#include <vector>

#include "calibration/onnx_executor.h"
#include "common/result.h"

namespace shrink {

// Running sums for one tensor pair.
struct OnnxErrorStats {
  double ref_sq = 0, err_sq = 0, dot = 0, test_sq = 0, max_abs = 0;
  int64_t count = 0;
  int64_t rows = 0, top1_same = 0;  // argmax over the last axis
  void add(const float* ref, const float* test, size_t n, int64_t row_len);
  double sqnr_db() const;   // 10 log10(sum ref^2 / sum (ref - test)^2); 200 when identical
  double cosine() const;    // <ref, test> / (|ref| |test|)
  double top1() const;      // fraction of rows whose argmax agrees, or -1 with no rows
};

struct OnnxCompareReport {
  int samples = 0;
  std::vector<std::pair<std::string, OnnxErrorStats>> outputs;  // model output order
  struct Node {
    std::string tensor, dequantized;  // float tensor name, the quantized model's DQ output for it
    OnnxErrorStats stats;
  };
  std::vector<Node> nodes;  // quantized model's graph order
};

// For each activation the quantized model quantizes (QuantizeLinear(T) -> DequantizeLinear -> T'),
// with T also present in the float model: the pair (T, T'). Weights (Q/DQ of initializers) are not listed.
std::vector<std::pair<std::string, std::string>> dequantized_activations(const onnx::ModelProto& quantized);

// Adds one sample's outputs of both models; error when an output is missing, not FLOAT or differs in shape.
Status add_output_sample(OnnxCompareReport* r, const std::vector<std::string>& output_names,
                         const std::map<std::string, OnnxTensor>& ref, const std::map<std::string, OnnxTensor>& test);
// Adds one per-node pair.
Status add_node_sample(OnnxCompareReport::Node* n, const OnnxTensor& ref, const OnnxTensor& test);

}  // namespace shrink
