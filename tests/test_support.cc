#include "tests/test_support.h"

#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

namespace shrink::test {

fs::path source_dir() { return fs::path(SHRINK_SOURCE_DIR); }

fs::path data_dir() {
  if (const char* d = std::getenv("SHRINK_DATA")) return fs::path(d);
  return source_dir().parent_path() / "shared" / "data";
}

fs::path interop_dir() { return source_dir() / "tests" / "interop"; }

fs::path ggml_base_library() {
  fs::path p = interop_dir() / "node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so";
  return fs::exists(p) ? p : fs::path();
}

void skip_program(const std::string& why) {
  if (std::getenv("CI") != nullptr) {
    std::cerr << "FAILED: " << why << " (required under CI; run setup.sh and keep ../shared beside the repo)\n";
    std::exit(1);
  }
  std::cerr << "SKIPPED: " << why << "\n";
  std::exit(77);
}

fs::path require(const fs::path& p, const std::string& what) {
  if (p.empty() || !fs::exists(p)) skip_program(what + " not found at " + p.string());
  return p;
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "shrink-test-XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path, ec);
}

std::string quote(const std::string& s) {
  std::string r = "'";
  for (char c : s) {
    if (c == '\'') r += "'\\''";
    else r += c;
  }
  return r + "'";
}

RunResult run(const std::string& command) {
  RunResult r;
  std::string cmd = command + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

RunResult run_shrink(const std::string& args) { return run(quote(SHRINK_BINARY) + " " + args); }

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

nlohmann::json parse_last_json_line(const std::string& out) {
  nlohmann::json last;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) last = std::move(j);
  }
  return last;
}

uint32_t seed() { return Catch::rngSeed(); }

}  // namespace shrink::test
