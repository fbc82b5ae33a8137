// GEMV bandwidth: one token against a weight matrix of at least 256 MB (far beyond any cache),
// in GB/s of weight bytes read, next to the machine's memory read bandwidth measured in the same
// run with the same OpenMP threads (a plain summing pass over a buffer of the same size). The
// ratio is the figure of merit: a GEMV that keeps up with memory reads every weight byte once at
// the speed the machine can deliver it.
//
//   bench_gemv [--mb 256] [--cols 4096] [--reps 7]
// Threads: OMP_NUM_THREADS (default: all cores). Prints one row per type and the read anchor.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"

using namespace shrink;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Memory read anchor: sum every 64-bit word of `buf` across threads, eight independent
// accumulators per thread so the adds never limit the loads. Best of `reps`.
double read_bandwidth_gbs(const std::vector<uint64_t>& buf, int reps, uint64_t* sink) {
  double best = 1e30;
  const int64_t n = static_cast<int64_t>(buf.size());
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_s();
    uint64_t total = 0;
#pragma omp parallel reduction(+ : total)
    {
      uint64_t a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; i += 8)
        for (int k = 0; k < 8; ++k) a[k] += buf[static_cast<size_t>(i + k)];
      for (uint64_t v : a) total += v;
    }
    best = std::min(best, now_s() - t0);
    *sink += total;
  }
  return static_cast<double>(buf.size() * sizeof(uint64_t)) / best / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t mb = 256, cols = 4096;
  int reps = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--mb") mb = std::atoll(argv[i + 1]);
    else if (a == "--cols") cols = std::atoll(argv[i + 1]);
    else if (a == "--reps") reps = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: bench_gemv [--mb MB] [--cols N (multiple of 256)] [--reps R]\n");
      return 2;
    }
  }
  const size_t bytes = static_cast<size_t>(mb) << 20;
  std::printf("GEMV, 1 token, weights >= %lld MB, %lld columns, %d threads, kernels: %s, best of %d\n", (long long)mb,
              (long long)cols, omp_get_max_threads(), kernels::active_isa(), reps);

  uint64_t sink = 0;
  std::vector<uint64_t> anchor(bytes / sizeof(uint64_t));
  for (size_t i = 0; i < anchor.size(); ++i) anchor[i] = i * 0x9E3779B97F4A7C15ULL;
  const double read_gbs = read_bandwidth_gbs(anchor, reps, &sink);
  std::printf("%-6s %10s %10s %10s %8s\n", "type", "MB", "ms", "GB/s", "vs read");
  std::printf("%-6s %10.0f %10.2f %10.2f %8s\n", "read", bytes / 1048576.0, bytes / read_gbs / 1e6, read_gbs, "1.00");
  anchor.clear();
  anchor.shrink_to_fit();

  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(cols));
  for (float& v : x) v = normal(rng);

  for (TypeId t : {TypeId::F16, TypeId::Q8_0, TypeId::Q4_0, TypeId::Q4_K}) {
    const size_t row_bytes = row_size(t, cols);
    const int64_t rows = static_cast<int64_t>((bytes + row_bytes - 1) / row_bytes);
    // 64 distinct quantized rows, repeated: contents do not change the bytes read.
    constexpr int64_t kDistinct = 64;
    std::vector<float> src(static_cast<size_t>(kDistinct * cols));
    for (float& v : src) v = 0.02f * normal(rng);
    std::vector<uint8_t> base(row_bytes * kDistinct);
    kernels::quantize_rows(t, src.data(), base.data(), kDistinct, cols);
    std::vector<uint8_t> w(row_bytes * static_cast<size_t>(rows));
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(w.data() + static_cast<size_t>(r) * row_bytes, base.data() + static_cast<size_t>(r % kDistinct) * row_bytes,
                  row_bytes);
    std::vector<float> y(static_cast<size_t>(rows));
    kernels::gemm(t, w.data(), row_bytes, rows, cols, x.data(), 1, y.data());  // warm-up
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      const double t0 = now_s();
      kernels::gemm(t, w.data(), row_bytes, rows, cols, x.data(), 1, y.data());
      best = std::min(best, now_s() - t0);
    }
    const double gbs = static_cast<double>(w.size()) / best / 1e9;
    std::printf("%-6s %10.0f %10.2f %10.2f %8.2f   (%s)\n", std::string(type_name(t)).c_str(), w.size() / 1048576.0, best * 1e3, gbs,
                gbs / read_gbs, kernels::isa_name(kernels::dispatched_dot(t)->isa));
    sink += static_cast<uint64_t>(y[0] != 0.0f);
  }
  if (sink == 42) std::printf("\n");  // keeps the anchor sums alive
  return 0;
}
