// Shared by the subcommands: the one place that prints errors, sizes and progress.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/result.h"

namespace shrink::cli {

// A subcommand: its CLI11 parser and what to run when it was chosen. run() returns the exit code.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

void add_inspect(CLI::App& root, std::vector<Command>& commands);
void add_convert_and_quantize(CLI::App& root, std::vector<Command>& commands);
void add_demo(CLI::App& root, std::vector<Command>& commands);
void add_tokenize(CLI::App& root, std::vector<Command>& commands);
void add_eval(CLI::App& root, std::vector<Command>& commands);
void add_export(CLI::App& root, std::vector<Command>& commands);
void add_distill(CLI::App& root, std::vector<Command>& commands);
void add_calibrate(CLI::App& root, std::vector<Command>& commands);

// Prints "shrink: error: <message>" on stderr and returns exit code 1.
int fail(const Error& error);
int fail(const std::string& message);
void warn(const std::string& message);

std::string human_bytes(uint64_t bytes);  // "1.23 MiB"
std::string with_commas(uint64_t n);      // "1,234,567"

// A one-line progress bar on stderr, drawn only when stderr is a terminal.
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();
  void update(double fraction, const std::string& detail);
  void done();

 private:
  std::string label_;
  bool tty_;
  bool active_ = false;
};

}  // namespace shrink::cli
