// `--algo best` (quantizer/best_quant.h) against ggml's choice (kernels::quantize_rows, byte-identical
// to ggml_quantize_chunk) at the same bytes:
//  - for every type, with no imatrix (objective: plain squared error) and with a random heavy-tailed
//    imatrix (objective: sum imatrix[col] * err^2), on random Gaussian rows, heavy-tailed rows
//    (Student-t, 3 dof; Laplace with outliers) and rows cut from real llama2.c checkpoints:
//    total error of best < ggml's, strictly; no row worse than ggml's (best keeps ggml's block when
//    its search finds nothing better);
//  - weighted_sq_error() equals the error recomputed here from kernels::dequantize_rows of the
//    same bytes, and the bytes dequantize to finite values (a valid block stream);
//  - the relative error reduction per type and row set is printed for the README.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "quantizer/best_quant.h"
#include "tests/test_kernels_data.h"
#include "tests/test_support.h"

namespace shrink {
namespace {

using namespace shrink::test::kernel_data;

const TypeId kBestTypes[] = {TypeId::Q4_0, TypeId::Q4_1, TypeId::Q5_0, TypeId::Q5_1, TypeId::Q8_0, TypeId::Q2_K,
                             TypeId::Q3_K, TypeId::Q4_K, TypeId::Q5_K, TypeId::Q6_K, TypeId::IQ4_NL, TypeId::IQ4_XS};

std::string rerun_hint() { return "rerun with: --rng-seed " + std::to_string(test::seed()); }

struct Rows {
  std::string name;
  int64_t n_per_row;
  std::vector<float> data;  // (n_rows, n_per_row)
  int64_t n_rows() const { return static_cast<int64_t>(data.size()) / n_per_row; }
};

// Positive, heavy-tailed importance: log-normal with a wide spread plus a few Pareto spikes.
std::vector<float> random_imatrix(Rng& rng, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  std::normal_distribution<float> normal(0.0f, 1.5f);
  const float scale = std::pow(10.0f, uniform(rng, -4.0f, 3.0f));
  for (float& v : w) v = scale * std::exp(normal(rng));
  const int spikes = uniform_int(rng, 0, 8);
  for (int k = 0; k < spikes; ++k)
    w[uniform_int(rng, 0, static_cast<int>(n - 1))] *= std::pow(uniform(rng, 1e-3f, 1.0f), -1.5f) * 10.0f;
  return w;
}

// Error recomputed independently of weighted_sq_error, per row.
std::vector<double> row_errors(TypeId type, const Rows& r, const std::vector<uint8_t>& q, const float* qw,
                               bool* all_finite) {
  std::vector<float> y(r.data.size());
  kernels::dequantize_rows(type, q.data(), y.data(), r.n_rows(), r.n_per_row);
  std::vector<double> e(static_cast<size_t>(r.n_rows()), 0.0);
  *all_finite = true;
  for (int64_t i = 0; i < r.n_rows(); ++i)
    for (int64_t j = 0; j < r.n_per_row; ++j) {
      const size_t k = static_cast<size_t>(i * r.n_per_row + j);
      if (!std::isfinite(y[k])) *all_finite = false;
      const double d = static_cast<double>(r.data[k]) - static_cast<double>(y[k]);
      e[static_cast<size_t>(i)] += (qw ? static_cast<double>(qw[j]) : 1.0) * d * d;
    }
  return e;
}

// Runs one type over one row set, with and without imatrix; prints the reduction.
void check_set(TypeId type, const Rows& r, const std::vector<float>& imatrix) {
  for (int with_qw = 0; with_qw < 2; ++with_qw) {
    const float* qw = with_qw ? imatrix.data() : nullptr;
    const size_t bytes = row_size(type, r.n_per_row) * static_cast<size_t>(r.n_rows());
    std::vector<uint8_t> ggml(bytes), best(bytes);
    REQUIRE(kernels::quantize_rows(type, r.data.data(), ggml.data(), r.n_rows(), r.n_per_row, qw) == bytes);
    REQUIRE(quantize_rows_best(type, r.data.data(), best.data(), r.n_rows(), r.n_per_row, qw) == bytes);
    const double e_ggml = weighted_sq_error(type, r.data.data(), ggml.data(), r.n_rows(), r.n_per_row, qw);
    const double e_best = weighted_sq_error(type, r.data.data(), best.data(), r.n_rows(), r.n_per_row, qw);
    bool finite = false, finite_ggml = false;
    const std::vector<double> rows_best = row_errors(type, r, best, qw, &finite);
    const std::vector<double> rows_ggml = row_errors(type, r, ggml, qw, &finite_ggml);
    double sum_best = 0.0;
    int worse_rows = 0;
    for (size_t i = 0; i < rows_best.size(); ++i) {
      sum_best += rows_best[i];
      if (rows_best[i] > rows_ggml[i] * (1.0 + 1e-12)) ++worse_rows;
    }
    const std::string what = std::string(type_name(type)) + " on " + r.name + (qw ? " + imatrix" : "") + "; " + rerun_hint();
    INFO(what);
    CHECK(finite);
    CHECK(finite_ggml);
    CHECK(std::fabs(sum_best - e_best) <= 1e-9 * std::max(1.0, std::fabs(e_best)));
    CHECK(worse_rows == 0);
    CHECK(e_best < e_ggml);
    std::printf("  %-7s %-34s %-9s err ggml %.6e  best %.6e  reduction %6.2f%%\n", std::string(type_name(type)).c_str(),
                r.name.c_str(), qw ? "imatrix" : "plain", e_ggml, e_best, 100.0 * (1.0 - e_best / e_ggml));
  }
}

void check_sets(const std::vector<Rows>& sets, Rng& rng) {
  for (const Rows& r : sets) {
    const std::vector<float> qw = random_imatrix(rng, r.n_per_row);
    for (TypeId type : kBestTypes) check_set(type, r, qw);
  }
  std::fflush(stdout);
}

TEST_CASE("best: every listed type is supported; shapes that do not fit are refused", "[best]") {
  for (TypeId type : kBestTypes) CHECK(best_supports(type));
  CHECK_FALSE(best_supports(TypeId::F16));
  std::vector<float> x(288, 1.0f);
  std::vector<uint8_t> out(1024);
  CHECK(quantize_rows_best(TypeId::Q4_K, x.data(), out.data(), 1, 288, nullptr) == 0);
  CHECK(quantize_rows_best(TypeId::Q4_0, x.data(), out.data(), 1, 40, nullptr) == 0);
}

TEST_CASE("best: edge-case blocks stay valid and never worse than ggml", "[best]") {
  Rng rng(test::seed() + 10);
  Rows r{"edge-case blocks", 256, {}};
  for (const BlockCase& c : edge_cases()) {
    // Skip the cases whose values overflow the sums (error of FLT_MAX blocks is inf either way).
    if (c.name.find("FLT_MAX") != std::string::npos || c.name.find("random finite") != std::string::npos ||
        c.name.find("huge") != std::string::npos || c.name.find("fp16 overflow") != std::string::npos)
      continue;
    std::vector<float> row(256);
    for (int b = 0; b < 8; ++b) c.fill(rng, row.data() + 32 * b);
    r.data.insert(r.data.end(), row.begin(), row.end());
  }
  const std::vector<float> qw = random_imatrix(rng, 256);
  for (TypeId type : kBestTypes) {
    for (int with_qw = 0; with_qw < 2; ++with_qw) {
      const float* w = with_qw ? qw.data() : nullptr;
      const size_t bytes = row_size(type, 256) * static_cast<size_t>(r.n_rows());
      std::vector<uint8_t> ggml(bytes), best(bytes);
      kernels::quantize_rows(type, r.data.data(), ggml.data(), r.n_rows(), 256, w);
      REQUIRE(quantize_rows_best(type, r.data.data(), best.data(), r.n_rows(), 256, w) == bytes);
      bool finite = false, finite_ggml = false;
      const auto eb = row_errors(type, r, best, w, &finite);
      const auto eg = row_errors(type, r, ggml, w, &finite_ggml);
      INFO(type_name(type) << (w ? " + imatrix" : "") << "; " << rerun_hint());
      CHECK((finite || !finite_ggml));  // best may repair a block ggml leaves non-finite, never the reverse
      for (size_t i = 0; i < eb.size(); ++i) CHECK(!(eb[i] > eg[i] * (1.0 + 1e-12)));
    }
  }
}

TEST_CASE("best: lower error than ggml on random Gaussian rows", "[best]") {
  Rng rng(test::seed() + 20);
  std::vector<Rows> sets;
  Rows r{"gaussian rows of 256", 256, std::vector<float>(256 * 240)};
  for (int i = 0; i < 240; ++i) {
    const float sigma = std::pow(10.0f, uniform(rng, -3.0f, 1.0f));
    std::normal_distribution<float> normal(0.0f, sigma);
    for (int j = 0; j < 256; ++j) r.data[static_cast<size_t>(i * 256 + j)] = normal(rng);
  }
  sets.push_back(std::move(r));
  std::printf("relative error reduction of best vs ggml (same bytes):\n");
  check_sets(sets, rng);
}

TEST_CASE("best: lower error than ggml on heavy-tailed rows", "[best]") {
  Rng rng(test::seed() + 30);
  std::vector<Rows> sets;
  Rows t{"student-t(3) rows of 512", 512, std::vector<float>(512 * 120)};
  std::student_t_distribution<float> student(3.0f);
  for (int i = 0; i < 120; ++i) {
    const float s = std::pow(10.0f, uniform(rng, -3.0f, 0.0f));
    for (int j = 0; j < 512; ++j) t.data[static_cast<size_t>(i * 512 + j)] = s * student(rng);
  }
  sets.push_back(std::move(t));
  Rows l{"laplace+outlier rows of 256", 256, std::vector<float>(256 * 200)};
  std::exponential_distribution<float> expo(1.0f);
  for (int i = 0; i < 200; ++i) {
    const float s = std::pow(10.0f, uniform(rng, -3.0f, 0.0f));
    float* row = l.data.data() + i * 256;
    for (int j = 0; j < 256; ++j) row[j] = s * random_sign(rng) * expo(rng);
    const int outliers = uniform_int(rng, 1, 4);
    for (int k = 0; k < outliers; ++k) row[uniform_int(rng, 0, 255)] *= uniform(rng, 10.0f, 100.0f);
  }
  sets.push_back(std::move(l));
  check_sets(sets, rng);
}

// llama2.c checkpoint: header of 7 int32, then the float32 tensors; all of them as rows of 256.
std::vector<float> llama2c_weights(const test::fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return {};
  int32_t h[7];
  f.read(reinterpret_cast<char*>(h), sizeof h);
  if (!f) return {};
  std::vector<float> w;
  float buf[4096];
  while (f.read(reinterpret_cast<char*>(buf), sizeof buf) || f.gcount() > 0) {
    w.insert(w.end(), buf, buf + f.gcount() / 4);
    if (!f) break;
  }
  w.resize(w.size() / 256 * 256);
  return w;
}

// Last in the file: when the shared data folder is absent it skips the program (exit 77 outside CI)
// after every other case has run.
TEST_CASE("best: lower error than ggml on rows cut from real checkpoints", "[best][data]") {
  const test::fs::path files[] = {test::data_dir() / "models" / "stories260K" / "stories260K.bin",
                                  test::data_dir() / "models" / "babyllama-105" / "model5000.bin"};
  Rng rng(test::seed() + 40);
  std::vector<Rows> sets;
  for (const auto& p : files) {
    std::vector<float> w = llama2c_weights(p);
    if (w.empty()) test::skip_program("llama2.c checkpoint not readable: " + p.string());
    // At most 1024 rows per file, spread over the whole file, to keep the run short.
    const int64_t rows = static_cast<int64_t>(w.size()) / 256;
    const int64_t stride = std::max<int64_t>(1, rows / 1024);
    Rows r{p.filename().string() + " rows of 256", 256, {}};
    for (int64_t i = 0; i < rows; i += stride) r.data.insert(r.data.end(), w.begin() + i * 256, w.begin() + (i + 1) * 256);
    sets.push_back(std::move(r));
  }
  check_sets(sets, rng);
}

}  // namespace
}  // namespace shrink
