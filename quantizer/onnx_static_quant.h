// Static int8 quantization of an ONNX model in ONNX Runtime's QDQ format: each chosen activation
// tensor T gets QuantizeLinear -> DequantizeLinear (uint8, asymmetric, from a calibrated range) and
// every reader of T reads the dequantized value; each weight of a Conv / ConvTranspose / Gemm / MatMul
// is stored as int8 (symmetric, zero point 0, codes in [-127, 127]; per output channel optional) behind
// a DequantizeLinear; a 1-D Conv/Gemm bias becomes int32 with scale = input scale * weight scale.
// The ranges come from calibration (calibration/onnx_calibrate.h); this file only rewrites the graph.
//
// Q/DQ ops are the standard ones when the model imports opset >= 13 (or >= 10 and per-tensor), else
// ONNX Runtime's com.microsoft QuantizeLinear/DequantizeLinear (same semantics, any opset), so models
// with old opsets (PaddleOCR rec: 9, det: 11) are quantized without changing the meaning of other ops.
// If/Loop bodies are rewritten too: their Q/DQ nodes, scales and zero points live in the body; a body node
// whose activations have no range (calibration never ran that branch) stays float and is listed as skipped.
#pragma once

#include <onnx/onnx_pb.h>

#include <array>
#include <map>
#include <string>
#include <vector>

#include "common/result.h"

namespace shrink {

struct OnnxStaticOptions {
  bool per_channel = false;                // weights: one scale per output channel
  std::vector<std::string> op_types;       // ops to quantize; empty: Conv, ConvTranspose, Gemm, MatMul
  std::vector<std::string> exclude_nodes;  // node names left in float
  std::string file;                        // names the model in messages
};

// The activation tensors whose ranges the rewrite needs: the float inputs and the output of every
// node to quantize, in the main graph and in If/Loop bodies (graph and body outputs excluded: they stay
// float so the model's and the If/Loop's interfaces are unchanged).
Result<std::vector<std::string>> onnx_static_activations(const onnx::ModelProto& model, const OnnxStaticOptions& opt);

struct OnnxStaticReport {
  int quantized_nodes = 0, qdq_activations = 0, quantized_weights = 0, quantized_biases = 0;
  int quantized_body_nodes = 0;  // of quantized_nodes, those inside If/Loop bodies
  size_t float_weight_bytes = 0, quantized_weight_bytes = 0;
  std::vector<std::string> skipped;  // "node 'x' (Conv): why"
};

// Rewrites `model` in place. `ranges`: tensor name -> {rmin, rmax} (as calibrated; widened to hold 0).
// Tensors without a range stay float. Fails, naming the file, when nothing could be quantized.
Result<OnnxStaticReport> quantize_onnx_static(onnx::ModelProto* model,
                                              const std::map<std::string, std::array<float, 2>>& ranges,
                                              const OnnxStaticOptions& opt);

// uint8 asymmetric parameters of a range (ONNX Runtime's rule: scale = (rmax - rmin) / 255 over a
// range holding 0, zero point = round(-rmin / scale); a zero-width range gets scale 1, zero point 0).
void uint8_params(float rmin, float rmax, float* scale, uint8_t* zero_point);

}  // namespace shrink
