// shrink: the command-line entry point. Each subcommand lives in its own cmd_<verb>.cc.
#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  CLI::App app{"shrink: import, quantize and export open model weights"};
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
