// `shrink quantize MODEL.onnx -o OUT.onnx --method M`: the ONNX branch of `shrink quantize`.
#pragma once

#include <CLI/CLI.hpp>
#include <onnx/onnx_pb.h>

#include <string>

#include "common/result.h"

namespace shrink::cli {

// Adds the ONNX options (--method, --block, ...) to the quantize subcommand; --type becomes required only
// for inputs that are not .onnx files. Call after --type is defined.
void add_quantize_onnx_options(CLI::App* quantize);
// True when `input` names an ONNX model (by its .onnx extension).
bool is_onnx_input(const std::string& input);
// Upgrades `model`'s default-domain opset to `requested` (--opset), or when 0 to what `method` needs
// (weight-int4-qdq 21, weight-int8 and static 13, dynamic 11) if the model is older; returns a one-line summary of the
// change ("" when none was needed) or the upgrade's refusal.
Result<std::string> upgrade_for_method(onnx::ModelProto* model, const std::string& method, int64_t requested,
                                       const std::string& file);
// Runs the ONNX quantization with the parsed options; returns the exit code.
int run_quantize_onnx(const std::string& input, const std::string& output, bool dry_run);

}  // namespace shrink::cli
