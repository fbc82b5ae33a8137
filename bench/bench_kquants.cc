// Single-thread throughput of every registry variant of the k-quants (Q2_K..Q6_K) and IQ4_NL /
// IQ4_XS: quantize without and with an imatrix, and dequantize, in millions of weights per
// second, with the ratio to the scalar reference measured in the same run (DESIGN.md: these
// machines are shared and noisy, so only same-run ratios mean anything). Best of --reps runs.
// Never part of pass/fail.
//
// Usage: bench_kquants [--mweights M] [--reps R]   (defaults: 1 Mi weights as rows of 4096, 3)
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/registry.h"

namespace {

using Clock = std::chrono::steady_clock;
using shrink::TypeId;
using shrink::kernels::KernelVariant;

// Weight-like rows: sum of 4 uniforms (roughly normal) with a per-row scale and rare outliers.
void fill(std::vector<float>& x, int64_t n_per_row) {
  uint64_t s = 0x9E3779B97F4A7C15ULL;
  auto next = [&s] {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    return static_cast<float>(s >> 40) * (1.0f / 16777216.0f);
  };
  for (size_t r = 0; r < x.size() / n_per_row; ++r) {
    const float scale = 0.002f + 0.05f * next();
    for (int64_t j = 0; j < n_per_row; ++j) {
      float v = (next() + next() + next() + next() - 2.0f) * scale;
      if (next() < 1e-4f) v *= 50.0f;
      x[r * n_per_row + j] = v;
    }
  }
}

template <class Fn>
double best_seconds(int reps, Fn&& fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    fn();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s < best) best = s;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  double mweights = 1.0;
  int reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--mweights") mweights = std::atof(argv[i + 1]);
    else if (a == "--reps") reps = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--mweights M] [--reps R]\n", argv[0]);
      return 2;
    }
  }
  constexpr int64_t kRow = 4096;  // (n_rows, 4096)
  const int64_t rows = std::max<int64_t>(1, static_cast<int64_t>(mweights * 1048576.0) / kRow);
  const int64_t n = rows * kRow;
  std::vector<float> x(static_cast<size_t>(n)), back(static_cast<size_t>(n)), qw(kRow);
  fill(x, kRow);
  for (int64_t j = 0; j < kRow; ++j) qw[j] = std::exp(std::sin(0.37f * static_cast<float>(j)) * 3.0f);

  const TypeId types[] = {TypeId::Q2_K, TypeId::Q3_K, TypeId::Q4_K, TypeId::Q5_K,
                          TypeId::Q6_K, TypeId::IQ4_NL, TypeId::IQ4_XS};
  std::printf("single thread, %lld rows of %lld weights, best of %d; Mw/s (x reference)\n",
              static_cast<long long>(rows), static_cast<long long>(kRow), reps);
  std::printf("%-8s %-7s %22s %22s %22s\n", "type", "isa", "quantize", "quantize+imatrix", "dequantize");
  for (TypeId type : types) {
    const size_t rs = shrink::row_size(type, kRow);
    std::vector<uint8_t> q(static_cast<size_t>(rows) * rs);
    double ref_t[3] = {0, 0, 0};
    for (const KernelVariant& v : shrink::kernels::kernel_variants()) {
      if (v.type != type || !v.available()) continue;
      double t[3];
      t[0] = best_seconds(reps, [&] { v.quantize(x.data(), q.data(), n); });
      t[1] = v.quantize_imatrix == nullptr ? 0.0 : best_seconds(reps, [&] {
        for (int64_t r = 0; r < rows; ++r) v.quantize_imatrix(x.data() + r * kRow, q.data() + r * rs, kRow, qw.data());
      });
      t[2] = best_seconds(reps, [&] { v.dequantize(q.data(), back.data(), n); });
      if (v.isa == shrink::kernels::Isa::kRef)
        for (int k = 0; k < 3; ++k) ref_t[k] = t[k];
      std::printf("%-8s %-7s", std::string(shrink::type_name(type)).c_str(), shrink::kernels::isa_name(v.isa));
      for (int k = 0; k < 3; ++k) {
        if (t[k] == 0.0) {
          std::printf(" %22s", "-");
          continue;
        }
        char cell[64];
        std::snprintf(cell, sizeof cell, "%9.1f (x%5.2f)", static_cast<double>(n) / t[k] / 1e6,
                      ref_t[k] > 0 ? ref_t[k] / t[k] : 0.0);
        std::printf(" %22s", cell);
      }
      std::printf("\n");
    }
  }
  return 0;
}
