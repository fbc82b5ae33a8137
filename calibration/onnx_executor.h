// A reference executor for ONNX graphs: float32 plus the integer and bool types the graphs
// of our target models (mnist, super_resolution, silero VAD, PaddleOCR v4 det/rec) and the
// quantized graphs shrink writes (QDQ, MatMulInteger/ConvInteger, MatMulNBits) need.
// It exists so calibration can observe every activation and eval can compare two models
// tensor by tensor; ONNX Runtime stays the oracle it is tested against.
//
// Values: float types are held as float (FLOAT only; DOUBLE/FLOAT16/BFLOAT16 are refused),
// every integer type and BOOL as int64 with the element type kept, so an op computes in one
// wide type and saturates/wraps only where the spec says so.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace shrink {

struct OnnxTensor {
  int32_t type = onnx::TensorProto::FLOAT;  // onnx::TensorProto::DataType
  std::vector<int64_t> shape;
  std::vector<float> f;    // FLOAT values, row-major
  std::vector<int64_t> i;  // integer / BOOL values, row-major

  bool is_float() const { return type == onnx::TensorProto::FLOAT; }
  int64_t numel() const;
  // Convenience constructors.
  static OnnxTensor floats(std::vector<int64_t> shape, std::vector<float> values);
  static OnnxTensor ints(int32_t type, std::vector<int64_t> shape, std::vector<int64_t> values);
  // Value k as double, whatever the storage.
  double at(int64_t k) const { return is_float() ? static_cast<double>(f[k]) : static_cast<double>(i[k]); }
};

// Element types the executor holds (FLOAT, the 8/16/32/64-bit integers, BOOL, INT4/UINT4).
bool onnx_type_supported(int32_t type);
std::string onnx_type_name(int32_t type);

// TensorProto -> OnnxTensor (raw_data or typed fields; external data must already be inlined).
// `what` names the tensor in errors.
Result<OnnxTensor> tensor_from_proto(const onnx::TensorProto& t, const std::string& what);
// OnnxTensor -> TensorProto with raw_data (INT4/UINT4 packed two per byte, low nibble first).
onnx::TensorProto tensor_to_proto(const OnnxTensor& t, const std::string& name);

// Whether an op (domain "" or "ai.onnx" for the standard set, "com.microsoft" for contrib) is implemented.
bool onnx_op_supported(const std::string& domain, const std::string& op_type);
std::vector<std::string> onnx_supported_ops();

// Sees each node's outputs right after the node ran (values are freed later): the main graph's nodes, and
// with `observe_subgraphs` also the nodes of the If/Loop/Scan bodies that ran (a Loop body once per iteration;
// an If branch not taken is never seen).
using OnnxNodeObserver = std::function<void(const onnx::NodeProto& node, const std::vector<std::string>& names,
                                            const std::vector<const OnnxTensor*>& values)>;

struct OnnxRunOptions {
  OnnxNodeObserver observer;
  bool observe_subgraphs = false;
};

class OnnxExecutor {
 public:
  // Checks that every node's op is implemented (names the first one that is not) and converts the
  // initializers once. `source` names the model in errors (usually its path).
  static Result<OnnxExecutor> create(const onnx::ModelProto& model, const std::string& source);

  // Graph inputs that are not initializers, and the graph outputs, in file order.
  const std::vector<std::string>& input_names() const { return inputs_; }
  const std::vector<std::string>& output_names() const { return outputs_; }
  // The declared input type/shape (dims <= 0 for symbolic dims).
  const onnx::ValueInfoProto* input_info(const std::string& name) const;

  Result<std::map<std::string, OnnxTensor>> run(const std::map<std::string, OnnxTensor>& inputs,
                                                const OnnxRunOptions& opt = {}) const;

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
  std::vector<std::string> inputs_, outputs_;
};

}  // namespace shrink
