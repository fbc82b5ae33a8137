// `shrink quantize MODEL.onnx -o OUT.onnx --method M`: the ONNX branch of `shrink quantize`.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace shrink::cli {

// Adds the ONNX options (--method, --block, ...) to the quantize subcommand; --type becomes required only
// for inputs that are not .onnx files. Call after --type is defined.
void add_quantize_onnx_options(CLI::App* quantize);
// True when `input` names an ONNX model (by its .onnx extension).
bool is_onnx_input(const std::string& input);
// Runs the ONNX quantization with the parsed options; returns the exit code.
int run_quantize_onnx(const std::string& input, const std::string& output, bool dry_run);

}  // namespace shrink::cli
