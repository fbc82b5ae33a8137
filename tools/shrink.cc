// shrink: the command-line entry point. Each subcommand lives in its own cmd_<verb>.cc;
// tools/ is the only layer that prints or chooses exit codes.
#include <CLI/CLI.hpp>

#include "tools/cli.h"

int main(int argc, char** argv) {
  CLI::App app{"shrink: import open model weights, quantize them, and write files llama.cpp runs unchanged"};
  app.set_version_flag("--version", "shrink 0.1.0");
  app.require_subcommand(1);
  std::vector<shrink::cli::Command> commands;
  shrink::cli::add_inspect(app, commands);
  shrink::cli::add_convert_and_quantize(app, commands);
  shrink::cli::add_demo(app, commands);
  shrink::cli::add_tokenize(app, commands);
  shrink::cli::add_eval(app, commands);
  shrink::cli::add_export(app, commands);
  shrink::cli::add_distill(app, commands);
  shrink::cli::add_calibrate(app, commands);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (const shrink::cli::Command& c : commands)
    if (c.app->parsed()) return c.run();
  return 1;
}
