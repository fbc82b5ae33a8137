// `shrink eval FLOAT.onnx --quantized Q.onnx [--inputs DIR | --random N] [--per-node] [--json]
//   [--runtime ort|shrink] [--ort-lib PATH] [--ort-threads N]`.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace shrink::cli {

// Adds --quantized, --inputs, --random, --per-node, --input-shapes, --runtime, --ort-lib, --ort-threads
// to the eval subcommand.
void add_eval_onnx_options(CLI::App* eval);
bool is_onnx_eval(const std::string& input);
int run_eval_onnx(const std::string& input, bool json);

}  // namespace shrink::cli
