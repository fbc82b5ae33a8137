// `shrink quantize MODEL.onnx -o OUT.onnx --method static ...`: calibration options and the run.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "formats/onnx_model.h"

namespace shrink::cli {

// Adds --calib, --calib-random, --calibrator, --moving-average, --percentile, --input-shape, --seed.
void add_quantize_onnx_static_options(CLI::App* quantize);

struct OnnxStaticCliShared {
  bool per_channel = false;
  std::vector<std::string> op_types, exclude_nodes;
  OnnxWriteOptions write;
  int64_t opset = 0;  // --opset (0: raise to 13 when the upgrade can, else keep the model's opset)
};
int run_quantize_onnx_static(const std::string& input, const std::string& output, const OnnxStaticCliShared& shared);

}  // namespace shrink::cli
