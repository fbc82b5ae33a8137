// Dynamic quantization of ONNX models, as ONNX Runtime's quantize_dynamic does it: weights stored as 8-bit
// integers, activations quantized at run time by DynamicQuantizeLinear (uint8, per tensor), the product in
// integers (MatMulInteger / ConvInteger, int32) and rescaled to float by Cast + Mul (x_scale * w_scale),
// then the float bias added. Needs default-domain opset 11 (DynamicQuantizeLinear).
#pragma once

#include "quantizer/onnx_weight_quant.h"

namespace shrink {

// Rewrites MatMul (constant 2-D weight), Gemm (transA=0, alpha=1, beta=1) and Conv nodes in place.
// Weights: int8 symmetric (scale = max|w| / 127, zero point 0) or, with weight_uint8, uint8 asymmetric
// (range widened to include 0, 255 steps); per tensor, or per output channel with per_channel.
Result<OnnxQuantReport> quantize_onnx_dynamic(onnx::ModelProto* model, const OnnxQuantOptions& opt,
                                              const OnnxQuantProgress& progress = {});

}  // namespace shrink
