// Helpers shared by the tests: where the shared data and the npm runtimes are, temp folders,
// running the shrink binary, and skipping (exit 77, which ctest reports as skipped) when
// something a test needs is absent. Under CI (CI set in the environment) absence is a failure.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace shrink::test {

namespace fs = std::filesystem;

fs::path source_dir();
// ../shared/data beside the repo, or $SHRINK_DATA.
fs::path data_dir();
// tests/interop (holds node_modules after setup.sh).
fs::path interop_dir();
// libggml-base.so inside @node-llama-cpp/linux-x64, or empty.
fs::path ggml_base_library();

// Exit 77 (skipped) with a message naming what is missing, or fail hard under CI.
[[noreturn]] void skip_program(const std::string& why);
// Skips the whole test program unless `p` exists.
fs::path require(const fs::path& p, const std::string& what);

// A fresh empty folder under the system temp dir, removed on destruction.
struct TempDir {
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  fs::path path;
  fs::path operator/(const std::string& name) const { return path / name; }
};

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};
// Runs a shell command line, capturing output.
RunResult run(const std::string& command);
// Runs the built shrink binary with the given arguments (already shell-quoted as needed).
RunResult run_shrink(const std::string& args);
std::string quote(const std::string& s);

std::vector<uint8_t> read_bytes(const fs::path& p);
void write_bytes(const fs::path& p, const std::vector<uint8_t>& bytes);
std::string read_text(const fs::path& p);
void write_text(const fs::path& p, const std::string& text);
// The last line of a program's output that starts with '{' and parses as JSON (progress lines
// and logs around it are skipped); a null json when there is none.
nlohmann::json parse_last_json_line(const std::string& out);

// Seed from Catch2's --rng-seed so failures replay.
uint32_t seed();

}  // namespace shrink::test
