// ONNX model files: read (with external data pulled in, so the proto is self-contained),
// write (inline, or with a "<name>.data" sidecar), and a tensor's values as F32.
// No math beyond element-type conversion; graph rewrites live in quantizer/.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstddef>
#include <filesystem>
#include <vector>

#include "common/result.h"

namespace shrink {

// Element types newer than the ONNX 1.12 protobuf classes Debian ships (data_type is a plain int32 field,
// so files using them still parse): float8 from ONNX 1.14 (IR 9), 4-bit integers from ONNX 1.16 (IR 10).
constexpr int kOnnxFloat8E4M3FN = 17, kOnnxFloat8E4M3FNUZ = 18, kOnnxFloat8E5M2 = 19, kOnnxFloat8E5M2FNUZ = 20;
constexpr int kOnnxUint4 = 21, kOnnxInt4 = 22;

struct OnnxModel {
  onnx::ModelProto proto;
  std::filesystem::path path;
};

// Parses the file; tensors stored as external data (location/offset/length, relative to the model's folder,
// no escaping it) are loaded into raw_data, so `proto` is self-contained. Errors name the file and field.
Result<OnnxModel> read_onnx(const std::filesystem::path& file);

struct OnnxWriteOptions {
  enum class External { kAuto, kAlways, kNever } external = External::kAuto;  // kAuto: when the proto would exceed ~2 GB
  size_t min_external_bytes = 1024;   // tensors smaller than this stay inline
};

// Writes `out` (and `out` + ".data" when external) via temp files + rename; never half-written.
Status write_onnx(const onnx::ModelProto& model, const std::filesystem::path& out, const OnnxWriteOptions& opt = {});

// A tensor's values as F32 (float, double, float16, bfloat16, int8/uint8/int32/int64 ...), checking sizes.
// The tensor must hold its data (raw_data or a typed field), not point to external data.
Result<std::vector<float>> tensor_to_f32(const onnx::TensorProto& t);

// Number of elements the dims describe, or an error naming the tensor when a dim is negative or the product
// overflows.
Result<size_t> onnx_element_count(const onnx::TensorProto& t);

}  // namespace shrink
