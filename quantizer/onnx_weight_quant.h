// Weight-only quantization of ONNX models (the activations stay float):
//   weight-int4      MatMul/Gemm with a constant 2-D float weight -> com.microsoft.MatMulNBits (4-bit blocks along K),
//                    and Gather from a constant (vocab, hidden) float table with computed indices (an embedding)
//                    -> com.microsoft.GatherBlockQuantized (the same 4-bit blocks along hidden)
//   weight-int4-qdq  the same weights as int4/uint4 tensors behind a blocked DequantizeLinear (opset 21)
//   weight-int8      Conv/Gemm/MatMul weights as per-output-channel symmetric int8 behind DequantizeLinear (opset 13)
// Rounding: the round-to-nearest of ONNX Runtime's blockwise quantizer for the 4-bit methods (so shrink's
// bytes equal ORT's for the same weights); symmetric int8 uses scale = max|w| / 127 and codes in [-127, 127].
#pragma once

#include <onnx/onnx_pb.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/result.h"

namespace shrink {

enum class OnnxQuantMethod { kWeightInt4, kWeightInt4Qdq, kWeightInt8, kDynamic };
Result<OnnxQuantMethod> parse_onnx_quant_method(const std::string& name);
const char* onnx_quant_method_name(OnnxQuantMethod m);

struct OnnxQuantOptions {
  OnnxQuantMethod method = OnnxQuantMethod::kWeightInt4;
  int64_t block_size = 32;       // 4-bit methods: values per block along K, a power of two in 16..256
  int64_t accuracy_level = 0;    // MatMulNBits attribute (0 = unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 compute)
  bool asymmetric = false;       // 4-bit methods: per-block zero points (uint4) instead of symmetric codes
  bool quantize_gather = true;   // weight-int4: embedding Gathers -> com.microsoft.GatherBlockQuantized
  bool per_channel = false;      // dynamic: one weight scale per output channel instead of one per tensor
  bool weight_uint8 = false;     // dynamic: asymmetric uint8 weights instead of symmetric int8
  std::vector<std::string> op_types;       // restrict to these op types (empty: all the method supports)
  std::vector<std::string> exclude_nodes;  // node names left in float
  std::string file;                        // names the model in messages
};

struct OnnxQuantizedNode {
  std::string node, op_type, weight;
  size_t float_bytes = 0;      // the weight as it was stored
  size_t quantized_bytes = 0;  // codes + scales (+ zero points)
};

struct OnnxQuantReport {
  std::vector<OnnxQuantizedNode> quantized;
  std::vector<std::string> skipped;  // "node 'x' (MatMul): why", for nodes of a supported type left alone
};

// Called once per candidate node, in graph order.
using OnnxQuantProgress = std::function<void(size_t done, size_t total, const std::string& node)>;

// Rewrites `model` in place with the chosen weight-only method (not kDynamic: see onnx_dynamic_quant.h).
// Fails, naming the file, when the options are invalid, an op type is not one the method handles, the model's
// opset cannot be raised to what the method needs, or nothing was quantized.
Result<OnnxQuantReport> quantize_onnx_weights(onnx::ModelProto* model, const OnnxQuantOptions& opt,
                                              const OnnxQuantProgress& progress = {});

// ---- The 4-bit block codes, exposed for tests. ----
// A (K, N) row-major float weight quantized along K in blocks of `block_size`, per output column n.
struct Int4Blocks {
  int64_t K = 0, N = 0, block_size = 0, n_blocks = 0;
  std::vector<uint8_t> codes;        // (N, n_blocks, block_size / 2): two 4-bit codes per byte, low nibble first
  std::vector<float> scales;         // (N, n_blocks)
  std::vector<uint8_t> zero_points;  // (N, ceil(n_blocks / 2)) packed like codes; empty when symmetric (zero point 8)
};
Int4Blocks quantize_int4_blocks(const float* w, int64_t K, int64_t N, int64_t block_size, bool asymmetric);
// The (K, N) float weight the blocks stand for: (code - zero_point) * scale.
std::vector<float> dequantize_int4_blocks(const Int4Blocks& q);

}  // namespace shrink
