// Calibration inputs for an ONNX model: read from a folder, or generated.
//
// Folder layout (`--calib DIR`): one subfolder per sample, holding one file per graph input named
// `<input name>.pb` / `<input name>.npy`, or `input_<k>.pb` / `input_<k>.npy` by position (the layout
// of ONNX's test_data_set_N folders). A model with a single input may instead have its samples as
// plain files directly in DIR (`*.pb` or `*.npy`, one sample each). Subfolders and files are taken in
// name order. `.pb` files are serialized onnx.TensorProto; `.npy` files are NumPy arrays (little-endian
// float32, int64, int32, int8, uint8 or bool, C order).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "calibration/onnx_executor.h"
#include "common/result.h"

namespace shrink {

using OnnxSample = std::map<std::string, OnnxTensor>;

Result<OnnxTensor> read_npy(const std::filesystem::path& file);
Result<OnnxTensor> read_tensor_pb(const std::filesystem::path& file);

// Samples for the executor's inputs from `dir` (layout above). Errors name the file.
Result<std::vector<OnnxSample>> load_calibration_dir(const std::filesystem::path& dir, const OnnxExecutor& ex);

// `n` samples of uniform [0, 1) floats in each input's declared shape; symbolic dims take the value
// from `shapes` (input name -> full shape) when given, else 1 for the first dim and 64 for the others.
// Non-float inputs are refused (give a folder for those).
Result<std::vector<OnnxSample>> random_calibration(const OnnxExecutor& ex, int n,
                                                   const std::map<std::string, std::vector<int64_t>>& shapes,
                                                   uint32_t seed);

}  // namespace shrink
