// Raises an ONNX model's default-domain opset from N to M (7 <= N < M <= 21, the newest opset ONNX Runtime
// 1.30 runs), rewriting every node -- in the main graph and in If/Loop bodies -- whose signature or meaning
// changed between N and M, so the model computes the same outputs under the new opset:
//   Upsample (9): scales attribute -> input;                    Upsample (10): -> Resize (asymmetric, floor);
//   Slice (10), TopK (10): attributes -> int64 inputs;
//   Clip, Pad (11): min/max, pads/value attributes -> inputs;   Resize-10 (11): + empty roi, asymmetric, floor;
//   Scatter (11): -> ScatterElements;                           Dropout (12): ratio attribute -> input;
//   Squeeze, Unsqueeze, Split, ReduceSum (13): axes/split attributes -> inputs;
//   Softmax, LogSoftmax, Hardmax (13): the old rule flattens to 2-D at `axis`, the new one works on one axis:
//     kept when `axis` is the last axis, else Flatten -> op(axis -1) -> Reshape(Shape(x));
//   BatchNormalization (9, 14): `spatial` dropped (only spatial = 1 is the same op); inference form only;
//   ReduceMean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare (18): axes attribute -> input;
//   Split (18): without a split input, num_outputs = the number of outputs.
// The version numbers are the opsets where the ONNX operator changelog (docs/Changelog.md) changes each
// signature. Ops whose upgrade is not a rewrite (Scan 9, RoiAlign 16, GroupNormalization 21, training-mode
// BatchNormalization/Dropout, nearest Upsample/Resize-10 with scales below 1 or not constant) are refused
// with one line naming the node, its op and the reason; the model is unchanged then.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace shrink {

// The newest default-domain opset the upgrade writes (ONNX Runtime 1.30 runs up to 21 for every op here).
constexpr int64_t kOnnxMaxUpgradeOpset = 21;

struct OnnxOpsetUpgradeReport {
  int64_t from = 0, to = 0;
  int rewritten_nodes = 0;            // nodes whose form changed (attributes moved, ops replaced)
  std::vector<std::string> changes;   // one line per rewritten node: "node 'x' (Slice): starts/ends -> inputs"
};

// Upgrades `model` in place to default-domain opset `to` (no-op when it is already >= `to`). `file` names
// the model in errors. Raises the IR version to the one the opset needs.
Result<OnnxOpsetUpgradeReport> upgrade_onnx_opset(onnx::ModelProto* model, int64_t to, const std::string& file);

}  // namespace shrink
