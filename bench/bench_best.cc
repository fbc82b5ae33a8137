// `--algo best` cost and benefit, per type: throughput of ggml's algorithm as shrink runs it
// (kernels::quantize_rows, OpenMP), of shrink's search (quantize_rows_best, OpenMP) and of
// ggml_quantize_chunk driven from an OpenMP loop over row chunks (same thread count), all on the
// same heavy-tailed rows; then the error of best vs ggml as RMSE (plain) and importance-weighted
// RMSE (sqrt(sum w e^2 / sum w), random heavy-tailed imatrix) on heavy-tailed rows and on rows
// cut from the llama2.c checkpoints in the shared data folder (skipped if absent).
// Never part of pass/fail; ratios are against the ggml-algo time measured in the same run.
//
// Usage: bench_best [--threads N] [--mfloats M] [--ggml PATH] [--data DIR]
//   defaults: 2 threads, 16 Mi floats as rows of 4096, PATH as in bench_quantize, DIR =
//   ../shared/data or ../../shared/data (run from the repo or a build dir), or $SHRINK_DATA.
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "quantizer/best_quant.h"
#include "tests/ggml_oracle.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using shrink::TypeId;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Xorshift {
  uint64_t s;
  float uniform() {  // (0, 1)
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    return (static_cast<float>(s >> 40) + 0.5f) * (1.0f / 16777216.0f);
  }
};

// Heavy-tailed weight-like rows: Student-t with 3 dof (normal / sqrt(chi2_3 / 3)), per-row scale,
// deterministic per row.
void fill_heavy(std::vector<float>& x, int64_t n_per_row) {
  const int64_t rows = static_cast<int64_t>(x.size()) / n_per_row;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    Xorshift g{0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(r + 1)};
    auto normal = [&g] {
      return std::sqrt(-2.0f * std::log(g.uniform())) * std::cos(6.2831853f * g.uniform());
    };
    const float scale = 0.002f + 0.05f * g.uniform();
    float* row = x.data() + r * n_per_row;
    for (int64_t j = 0; j < n_per_row; ++j) {
      float chi2 = 0.0f;
      for (int k = 0; k < 3; ++k) {
        const float z = normal();
        chi2 += z * z;
      }
      row[j] = scale * normal() / std::sqrt(chi2 / 3.0f + 1e-12f);
    }
  }
}

std::vector<float> heavy_imatrix(int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  Xorshift g{12345};
  for (float& v : w) {
    const float z = std::sqrt(-2.0f * std::log(g.uniform())) * std::cos(6.2831853f * g.uniform());
    v = std::exp(1.5f * z);
    if (g.uniform() < 0.002f) v *= 100.0f;
  }
  return w;
}

std::vector<float> llama2c_weights(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return {};
  f.seekg(28);  // 7 int32 header fields
  std::vector<float> w;
  float buf[4096];
  while (f.read(reinterpret_cast<char*>(buf), sizeof buf) || f.gcount() > 0) {
    w.insert(w.end(), buf, buf + f.gcount() / 4);
    if (!f) break;
  }
  w.resize(w.size() / 256 * 256);
  return w;
}

std::string default_ggml_path() {
  const fs::path rel = "tests/interop/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so";
  for (const char* base : {".", ".."})
    if (fs::exists(base / rel)) return (base / rel).string();
  return rel.string();
}

fs::path default_data_dir() {
  if (const char* d = std::getenv("SHRINK_DATA")) return d;
  for (const char* base : {"../shared/data", "../../shared/data"})
    if (fs::exists(base)) return base;
  return "../shared/data";
}

// Weighted RMSE: sqrt(E / (sum of weights over all elements)).
double wrmse(TypeId t, const std::vector<float>& x, const std::vector<uint8_t>& q, int64_t n_per_row,
             const float* qw) {
  const int64_t rows = static_cast<int64_t>(x.size()) / n_per_row;
  double sw = 0.0;
  for (int64_t j = 0; j < n_per_row; ++j) sw += qw ? qw[j] : 1.0;
  return std::sqrt(shrink::weighted_sq_error(t, x.data(), q.data(), rows, n_per_row, qw) / (sw * static_cast<double>(rows)));
}

// ggml's and best's (plain RMSE, imatrix-weighted RMSE) on `x`, and the reduction in error (1 - E_best/E_ggml).
void error_row(TypeId t, const char* set, const std::vector<float>& x, int64_t n_per_row, const std::vector<float>& qw) {
  const int64_t rows = static_cast<int64_t>(x.size()) / n_per_row;
  const size_t bytes = shrink::row_size(t, n_per_row) * static_cast<size_t>(rows);
  std::vector<uint8_t> a(bytes), b(bytes);
  double r[4];
  for (int k = 0; k < 2; ++k) {
    const float* w = k ? qw.data() : nullptr;
    shrink::kernels::quantize_rows(t, x.data(), a.data(), rows, n_per_row, w);
    shrink::quantize_rows_best(t, x.data(), b.data(), rows, n_per_row, w);
    r[2 * k] = wrmse(t, x, a, n_per_row, w);
    r[2 * k + 1] = wrmse(t, x, b, n_per_row, w);
  }
  std::printf("%-7s %-22s %11.4e %11.4e %7.2f%%   %11.4e %11.4e %7.2f%%\n", std::string(shrink::type_name(t)).c_str(), set,
              r[0], r[1], 100.0 * (1.0 - (r[1] * r[1]) / (r[0] * r[0])), r[2], r[3],
              100.0 * (1.0 - (r[3] * r[3]) / (r[2] * r[2])));
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  int64_t mfloats = 16;
  std::string ggml_path = default_ggml_path();
  fs::path data = default_data_dir();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--mfloats") mfloats = std::atoll(argv[i + 1]);
    else if (a == "--ggml") ggml_path = argv[i + 1];
    else if (a == "--data") data = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--mfloats M] [--ggml PATH] [--data DIR]\n", argv[0]);
      return 2;
    }
  }
  omp_set_num_threads(threads);
  const int64_t n_per_row = 4096;
  const int64_t rows = std::max<int64_t>(1, mfloats * (1 << 20) / n_per_row);
  std::vector<float> x(static_cast<size_t>(rows * n_per_row));
  fill_heavy(x, n_per_row);
  shrink::test::GgmlOracle ggml(ggml_path);
  if (!ggml.ok()) std::printf("(ggml oracle unavailable: %s; its column is skipped)\n", ggml.error().c_str());

  const TypeId types[] = {TypeId::Q4_0, TypeId::Q8_0, TypeId::Q4_K, TypeId::Q6_K, TypeId::Q5_K, TypeId::IQ4_XS,
                          TypeId::IQ4_NL, TypeId::Q5_0, TypeId::Q4_1, TypeId::Q5_1, TypeId::Q3_K, TypeId::Q2_K};
  std::printf("throughput, %lld x %lld heavy-tailed floats, %d threads, no imatrix (Mfloat/s; ratio = time / ggml-algo time)\n",
              static_cast<long long>(rows), static_cast<long long>(n_per_row), threads);
  std::printf("%-7s %12s %12s %8s %12s %8s\n", "type", "ggml-algo", "best", "ratio", "ggml_chunk", "ratio");
  for (TypeId t : types) {
    const size_t bytes = shrink::row_size(t, n_per_row) * static_cast<size_t>(rows);
    std::vector<uint8_t> out(bytes);
    const double mf = static_cast<double>(x.size()) / 1e6;
    auto t0 = Clock::now();
    shrink::kernels::quantize_rows(t, x.data(), out.data(), rows, n_per_row, nullptr);
    const double s_algo = seconds_since(t0);
    t0 = Clock::now();
    shrink::quantize_rows_best(t, x.data(), out.data(), rows, n_per_row, nullptr);
    const double s_best = seconds_since(t0);
    double s_chunk = NAN;
    if (ggml.ok()) {
      const int64_t chunk = std::max<int64_t>(1, rows / (8 * threads));
      t0 = Clock::now();
#pragma omp parallel for schedule(dynamic, 1)
      for (int64_t r0 = 0; r0 < rows; r0 += chunk)
        ggml.quantize_chunk(static_cast<uint32_t>(t), x.data(), out.data(), r0 * n_per_row, std::min(chunk, rows - r0),
                            n_per_row, nullptr);
      s_chunk = seconds_since(t0);
    }
    std::printf("%-7s %12.1f %12.2f %8.1f %12.1f %8.2f\n", std::string(shrink::type_name(t)).c_str(), mf / s_algo,
                mf / s_best, s_best / s_algo, mf / s_chunk, s_chunk / s_algo);
    std::fflush(stdout);
  }

  std::printf("\nerror: RMSE (no imatrix) and imatrix-weighted RMSE, ggml vs best; reduction = 1 - E_best/E_ggml\n");
  std::printf("%-7s %-22s %11s %11s %8s   %11s %11s %8s\n", "type", "rows", "ggml", "best", "reduct", "ggml(w)", "best(w)",
              "reduct");
  std::vector<float> heavy(x.begin(), x.begin() + std::min<size_t>(x.size(), 1u << 20));
  std::vector<float> real;
  for (const char* f : {"models/stories260K/stories260K.bin", "models/babyllama-105/model5000.bin"}) {
    std::vector<float> w = llama2c_weights(data / f);
    real.insert(real.end(), w.begin(), w.end());
  }
  if (real.empty()) std::printf("(llama2.c checkpoints not found under %s: real-weight rows skipped)\n", data.string().c_str());
  const std::vector<float> qw256 = heavy_imatrix(256), qw4096 = heavy_imatrix(n_per_row);
  for (TypeId t : types) {
    error_row(t, "heavy-tailed x4096", heavy, n_per_row, qw4096);
    if (!real.empty()) error_row(t, "llama2.c weights x256", real, 256, qw256);
    std::fflush(stdout);
  }
  return 0;
}
