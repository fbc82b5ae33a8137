// Quantization throughput: shrink's dispatched kernels (kernels::quantize_rows, OpenMP) against
// ggml_quantize_chunk driven from an OpenMP loop over row chunks with the same thread count
// (ggml_quantize_chunk itself is single-threaded), on the same rows, one timed run each.
// Also prints memcpy bandwidth over the same input size as a ceiling, and each registry variant
// single-threaded. Never part of pass/fail (DESIGN.md: benchmarks report ratios measured in the
// same run; the machines are shared and noisy).
//
// Usage: bench_quantize [--threads N] [--mfloats M] [--ggml PATH]
//   defaults: 2 threads, 64 Mi floats (256 MiB of fp32) as rows of 4096,
//   PATH = tests/interop/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so
//          under the current directory, else under its parent (run from the repo or a build dir).
// GB/s counts fp32 input bytes read (1 GB = 1e9 bytes); memcpy's counts bytes copied.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/kernels.h"
#include "kernels/registry.h"
#include "tests/ggml_oracle.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Weight-like data, fast: a sum of 4 uniforms (roughly normal), scaled per row, with rare
// outliers. Deterministic per row so every run sees the same tensor.
void fill(std::vector<float>& x, int64_t n_per_row) {
  const int64_t rows = static_cast<int64_t>(x.size()) / n_per_row;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    uint64_t s = 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(r + 1);
    auto next = [&s] {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      return static_cast<float>(s >> 40) * (1.0f / 16777216.0f);
    };
    const float scale = 0.002f + 0.05f * next();
    float* row = x.data() + r * n_per_row;
    for (int64_t j = 0; j < n_per_row; ++j) {
      float v = (next() + next() + next() + next() - 2.0f) * scale;
      if (next() < 1e-4f) v *= 50.0f;
      row[j] = v;
    }
  }
}

std::string default_ggml_path() {
  const std::filesystem::path rel =
      "tests/interop/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so";
  for (const char* base : {".", ".."})
    if (std::filesystem::exists(base / rel)) return (base / rel).string();
  return rel.string();
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  int64_t mfloats = 64;
  std::string ggml_path = default_ggml_path();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--mfloats") mfloats = std::atoll(argv[i + 1]);
    else if (a == "--ggml") ggml_path = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--mfloats M] [--ggml PATH]\n", argv[0]);
      return 2;
    }
  }
  omp_set_num_threads(threads);
  const int64_t n_per_row = 4096;
  const int64_t n = mfloats * (1 << 20);
  const int64_t rows = n / n_per_row;
  const double in_bytes = static_cast<double>(n) * 4.0;

  shrink::test::GgmlOracle ggml(ggml_path);
  if (!ggml.ok()) std::fprintf(stderr, "ggml oracle unavailable (%s): timing shrink only\n", ggml.error().c_str());

  std::vector<float> src(static_cast<size_t>(n));
  fill(src, n_per_row);
  std::printf("shrink bench_quantize: %lld floats (%.0f MiB) as %lld rows of %lld, %d threads, dispatched ISA %s\n",
              static_cast<long long>(n), in_bytes / (1 << 20), static_cast<long long>(rows),
              static_cast<long long>(n_per_row), threads, shrink::kernels::active_isa());

  {  // memcpy ceiling: the same number of bytes, same threads, prefaulted destination.
    std::vector<float> dst(src.size());
    std::memset(dst.data(), 0, dst.size() * 4);
    const int64_t chunk = 1 << 16;
    const auto t0 = Clock::now();
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t c = 0; c < n / chunk; ++c) std::memcpy(dst.data() + c * chunk, src.data() + c * chunk, chunk * 4);
    const double t = seconds_since(t0);
    std::printf("memcpy (%d threads)         %7.2f GB/s  (%.1f ms)\n", threads, in_bytes / t / 1e9, t * 1e3);
  }

  {  // read-only bandwidth: the true ceiling for a quantizer, which must read every input byte.
    const auto* words = reinterpret_cast<const uint64_t*>(src.data());
    const int64_t n_words = n / 2;
    uint64_t sum = 0;
    const auto t0 = Clock::now();
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (int64_t i = 0; i < n_words; ++i) sum += words[i];
    const double t = seconds_since(t0);
    std::printf("read-only sum (%d threads)  %7.2f GB/s  (%.1f ms, checksum %llx)\n", threads, in_bytes / t / 1e9,
                t * 1e3, static_cast<unsigned long long>(sum & 0xFFFF));
  }

  std::printf("%-6s %10s %10s %8s %7s\n", "type", "shrink", "ggml", "ratio", "equal");
  const shrink::TypeId types[] = {shrink::TypeId::Q8_0, shrink::TypeId::Q4_0, shrink::TypeId::Q4_1,
                                  shrink::TypeId::Q5_0, shrink::TypeId::Q5_1, shrink::TypeId::F16,
                                  shrink::TypeId::BF16};
  for (shrink::TypeId type : types) {
    const size_t bytes = static_cast<size_t>(rows) * shrink::row_size(type, n_per_row);
    std::vector<uint8_t> ours(bytes), theirs(bytes);
    std::memset(ours.data(), 0, bytes);  // prefault both outputs so neither run pays for page faults
    std::memset(theirs.data(), 1, bytes);

    auto t0 = Clock::now();
    shrink::kernels::quantize_rows(type, src.data(), ours.data(), rows, n_per_row);
    const double t_ours = seconds_since(t0);

    double t_ggml = 0.0;
    bool equal = false;
    if (ggml.ok()) {
      const int64_t rows_per_chunk = 16;  // 64 Ki weights, the same chunk size shrink uses
      const int64_t chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
      t0 = Clock::now();
#pragma omp parallel for schedule(dynamic, 1)
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t r0 = c * rows_per_chunk;
        const int64_t nr = r0 + rows_per_chunk <= rows ? rows_per_chunk : rows - r0;
        ggml.quantize_chunk(static_cast<uint32_t>(type), src.data(), theirs.data(), r0 * n_per_row, nr, n_per_row);
      }
      t_ggml = seconds_since(t0);
      equal = ours == theirs;
    }
    std::printf("%-6s %7.2f GB/s", std::string(shrink::type_name(type)).c_str(), in_bytes / t_ours / 1e9);
    if (ggml.ok())
      std::printf(" %5.2f GB/s %7.2fx %7s", in_bytes / t_ggml / 1e9, t_ggml / t_ours, equal ? "yes" : "NO");
    std::printf("\n");
  }

  // Every registry variant on one thread, over the first 16 Mi floats (shows what dispatch chose from).
  const int64_t n1 = n < (int64_t{16} << 20) ? n : (int64_t{16} << 20);
  std::printf("single thread, %lld floats:\n", static_cast<long long>(n1));
  for (const shrink::kernels::KernelVariant& v : shrink::kernels::kernel_variants()) {
    if (!v.available() || v.type == shrink::TypeId::F32) continue;
    std::vector<uint8_t> out(shrink::row_size(v.type, n1));
    std::memset(out.data(), 0, out.size());
    const auto t0 = Clock::now();
    v.quantize(src.data(), out.data(), n1);
    const double t = seconds_since(t0);
    std::printf("  %-5s %-7s %7.2f GB/s\n", std::string(shrink::type_name(v.type)).c_str(),
                shrink::kernels::isa_name(v.isa), static_cast<double>(n1) * 4.0 / t / 1e9);
  }
  return 0;
}
