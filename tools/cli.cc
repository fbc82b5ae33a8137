#include "tools/cli.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

namespace shrink::cli {

int fail(const Error& error) { return fail(error.message); }

int fail(const std::string& message) {
  std::fflush(stdout);
  std::cerr << "shrink: error: " << message << "\n";
  return 1;
}

void warn(const std::string& message) { std::cerr << "shrink: warning: " << message << "\n"; }

std::string human_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

std::string with_commas(uint64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

ProgressBar::ProgressBar(std::string label) : label_(std::move(label)), tty_(::isatty(STDERR_FILENO) == 1) {}

ProgressBar::~ProgressBar() { done(); }

void ProgressBar::update(double fraction, const std::string& detail) {
  if (!tty_) return;
  constexpr int kWidth = 30;
  int filled = static_cast<int>(fraction * kWidth + 0.5);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kWidth, '.');
  std::string d = detail.size() > 40 ? detail.substr(0, 37) + "..." : detail;
  std::fprintf(stderr, "\r%s [%s] %3d%% %-40s", label_.c_str(), bar.c_str(), static_cast<int>(fraction * 100 + 0.5), d.c_str());
  std::fflush(stderr);
  active_ = true;
}

void ProgressBar::done() {
  if (active_) std::fprintf(stderr, "\r%*s\r", 100, "");
  active_ = false;
}

}  // namespace shrink::cli
