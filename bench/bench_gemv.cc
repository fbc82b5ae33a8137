// GEMV bandwidth: one token against a weight matrix of at least 256 MB (far beyond any cache),
// in GB/s of weight bytes read, next to the machine's memory read bandwidth measured in the same
// run with the same OpenMP threads. The ratio is the figure of merit: a GEMV that keeps up with
// memory reads every weight byte once at the speed the machine can deliver it.
//
// The read anchor is a best-effort read: 512-bit loads (256-bit without AVX-512) into four
// independent accumulators, the buffer split in contiguous static ranges across the threads,
// each range read as one stream or as two side by side (the faster counts), first touched by
// the thread that later reads it, on transparent huge pages when the kernel allows them
// (madvise; the weights get the same treatment), best of --reps. The older anchor, a 64-bit
// scalar summing pass, is printed beside it: it under-reads on this CPU.
//
// Per type, interleaved rep by rep so load changes hit both alike:
//   packed    kernels::gemv_packed (kernels/gemv_packed.h): the weights regrouped once into
//             16-row panels (what a model's one-token steps run); "-" for F16, which has no
//             packed layout (its gemv reads rows as they lie at full speed already). With
//             --isa, that ISA's packed kernels (avx2, avx512; ref: unpack + reference)
//   gemv      kernels::gemv (kernels/gemv.h) on the converted activation row, weights in place
//   gemm n=1  kernels::gemm with one token (what model code calls: conversion + its GEMV path)
//   per-row   one dispatched vec_dot per row, OpenMP schedule(static, 8): the GEMV before gemv.h
//
//   bench_gemv [--mb 256] [--cols 4096] [--reps 7] [--no-hugepages] [--cpu-clock] [--isa avx2]
// Threads: OMP_NUM_THREADS (default: all cores).
#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/dot.h"
#include "kernels/gemm.h"
#include "kernels/gemv.h"
#include "kernels/gemv_packed.h"
#include "kernels/kernels.h"

using namespace shrink;

namespace {

// --cpu-clock: process CPU time divided by the thread count instead of wall time. On a shared,
// oversubscribed machine wall time mostly measures how long the threads waited for a core; CPU
// time counts only time on a core (memory stalls included), as if the threads had the machine.
// Use with OMP_WAIT_POLICY=passive, or threads spinning at barriers count as busy.
bool g_cpu_clock = false;

double now_s() {
  if (g_cpu_clock) {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec)) / omp_get_max_threads();
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A 2 MB-aligned buffer, huge-page advised when asked, first touched by each thread over the
// contiguous range it reads later (schedule(static) over 4 KB pages).
struct Buffer {
  uint8_t* data = nullptr;
  size_t size = 0;
  Buffer(size_t bytes, bool huge) : size(bytes) {
    constexpr size_t kAlign = size_t{2} << 20;
    const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
    data = static_cast<uint8_t*>(std::aligned_alloc(kAlign, rounded));
    if (data == nullptr) std::abort();
    if (huge) ::madvise(data, rounded, MADV_HUGEPAGE);
    const int64_t pages = static_cast<int64_t>(rounded / 4096);
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < pages; ++p) data[static_cast<size_t>(p) * 4096] = 0;
  }
  ~Buffer() { std::free(data); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

// Best-effort read: each thread sums its contiguous share with wide loads, as one sequential
// stream or as two (the two halves of the share side by side). Two streams per core read up to
// ~15% faster here, as they did for the packed GEMV, so the anchor is the faster of the two.
// Unit: 256 bytes (AVX-512) or 128 bytes (AVX2) per step and stream.
template <typename Step>
uint64_t read_share(int64_t n_units, int streams, Step step) {
  uint64_t total = 0;
#pragma omp parallel reduction(+ : total)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t per = (n_units + nt - 1) / nt;
    const int64_t u0 = std::min(n_units, t * per), u1 = std::min(n_units, u0 + per);
    total += step(u0, u1, streams);
  }
  return total;
}

// One thread's units [u0, u1): as one stream, or (streams == 2) its two halves side by side.
#define SHRINK_READ_RANGE(STEP)                 \
  const int64_t h = ns == 2 ? (u1 - u0) / 2 : 0; \
  for (int64_t i = u0; i < u0 + h; ++i) {       \
    STEP(i);                                    \
    STEP(i + h);                                \
  }                                             \
  for (int64_t i = u0 + 2 * h; i < u1; ++i) STEP(i);

__attribute__((target("avx512f"))) uint64_t read_range_avx512(const uint8_t* p, int64_t u0, int64_t u1, int ns) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
#define SHRINK_UNIT512(i)                                     \
  {                                                           \
    const uint8_t* q = p + static_cast<size_t>(i) * 256;      \
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(q));          \
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(q + 64));     \
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(q + 128));    \
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(q + 192));    \
  }
  SHRINK_READ_RANGE(SHRINK_UNIT512)
#undef SHRINK_UNIT512
  return static_cast<uint64_t>(_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3))));
}

__attribute__((target("avx2"))) uint64_t read_range_avx2(const uint8_t* p, int64_t u0, int64_t u1, int ns) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
#define SHRINK_UNIT256(i)                                                           \
  {                                                                                 \
    const auto* q = reinterpret_cast<const __m256i*>(p + static_cast<size_t>(i) * 128); \
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(q));                               \
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(q + 1));                            \
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(q + 2));                            \
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(q + 3));                            \
  }
  SHRINK_READ_RANGE(SHRINK_UNIT256)
#undef SHRINK_UNIT256
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#undef SHRINK_READ_RANGE

uint64_t read_pass_avx512(const uint8_t* p, size_t bytes, int streams) {
  return read_share(static_cast<int64_t>(bytes / 256), streams,
                    [p](int64_t u0, int64_t u1, int ns) { return read_range_avx512(p, u0, u1, ns); });
}
uint64_t read_pass_avx2(const uint8_t* p, size_t bytes, int streams) {
  return read_share(static_cast<int64_t>(bytes / 128), streams,
                    [p](int64_t u0, int64_t u1, int ns) { return read_range_avx2(p, u0, u1, ns); });
}

// The previous anchor: eight 64-bit scalar accumulators per thread.
uint64_t read_pass_scalar(const uint8_t* p, size_t bytes) {
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  const int64_t n = static_cast<int64_t>(bytes / 64);
  uint64_t total = 0;
#pragma omp parallel reduction(+ : total)
  {
    uint64_t a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i)
      for (int k = 0; k < 8; ++k) a[k] += w[static_cast<size_t>(i * 8 + k)];
    for (uint64_t v : a) total += v;
  }
  return total;
}

// The GEMV before kernels/gemv.h: one dispatched vec_dot per row.
void per_row_gemv(TypeId t, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t cols, const void* act, float* y) {
  const kernels::VecDotFn dot = kernels::dispatched_dot(t)->vec_dot;
#pragma omp parallel for schedule(static, 8)
  for (int64_t r = 0; r < rows; ++r) y[r] = dot(cols, w + static_cast<size_t>(r) * row_bytes, act);
}

// --isa: the GEMV variant of that ISA run with gemv()'s thread split (contiguous ranges of
// 16-row multiples), to time e.g. the AVX2 kernels on an AVX-512 machine.
void gemv_variant(const kernels::GemvVariant& v, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t cols,
                  const void* act, std::vector<uint8_t>& scratch, float* y) {
  scratch.resize(v.scratch_bytes(cols) + 64);
  uint8_t* sp = scratch.data() + (64 - reinterpret_cast<uintptr_t>(scratch.data()) % 64) % 64;
  if (v.prepare != nullptr) v.prepare(act, cols, sp);
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t per = ((rows + nt - 1) / nt + 15) / 16 * 16;
    const int64_t r0 = std::min(rows, t * per), r1 = std::min(rows, r0 + per);
    if (r0 < r1) v.rows(w + static_cast<size_t>(r0) * row_bytes, row_bytes, r1 - r0, cols, act, sp, y + r0);
  }
}

template <typename F>
double seconds(F&& f) {
  const double t0 = now_s();
  f();
  return now_s() - t0;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t mb = 256, cols = 4096;
  int reps = 7;
  bool huge = true;
  std::string isa;  // empty: the dispatched gemv()
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--no-hugepages") {
      huge = false;
    } else if (a == "--cpu-clock") {
      g_cpu_clock = true;
    } else if (i + 1 < argc && a == "--isa") {
      isa = argv[++i];
    } else if (i + 1 < argc && a == "--mb") {
      mb = std::atoll(argv[++i]);
    } else if (i + 1 < argc && a == "--cols") {
      cols = std::atoll(argv[++i]);
    } else if (i + 1 < argc && a == "--reps") {
      reps = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: bench_gemv [--mb MB] [--cols N (multiple of 256)] [--reps R] [--no-hugepages]\n"
                   "  --mb            weight bytes per type and read-anchor size, in MiB (default 256)\n"
                   "  --cols          columns per row (default 4096)\n"
                   "  --reps          timed repetitions, best kept (default 7)\n"
                   "  --no-hugepages  no madvise(MADV_HUGEPAGE) on the anchor and weight buffers\n"
                   "  --cpu-clock     time by process CPU time / threads, not wall time (shared machines;\n"
                   "                  set OMP_WAIT_POLICY=passive)\n"
                   "  --isa NAME      gemv and packed columns run that ISA's kernels (ref, avx2, avx512) where\n"
                   "                  they exist (e.g. the AVX2 kernels on an AVX-512 machine)\n");
      return 2;
    }
  }
  const size_t bytes = static_cast<size_t>(mb) << 20;
  const bool avx512 = kernels::cpu_features().avx512f;
  std::printf("GEMV, 1 token, weights >= %lld MB, %lld columns, %d threads, kernels: %s, huge pages %s, best of %d, %s\n",
              (long long)mb, (long long)cols, omp_get_max_threads(), kernels::active_isa(), huge ? "advised" : "off", reps,
              g_cpu_clock ? "CPU-time clock" : "wall clock");

  uint64_t sink = 0;
  Buffer anchor(bytes, huge);
  for (size_t i = 0; i < bytes; i += 8) {
    const uint64_t v = i * 0x9E3779B97F4A7C15ULL;
    std::memcpy(anchor.data + i, &v, 8);
  }
  auto read_streams = [&](int streams) {
    sink += avx512 ? read_pass_avx512(anchor.data, bytes, streams) : read_pass_avx2(anchor.data, bytes, streams);
  };
  // The anchor of a rep: the faster of a one-stream and a two-stream pass.
  auto read_pass = [&] { return std::min(seconds([&] { read_streams(1); }), seconds([&] { read_streams(2); })); };
  double one_best = 1e30, two_best = 1e30, scalar_best = 1e30;
  for (int r = 0; r < reps; ++r) {
    one_best = std::min(one_best, seconds([&] { read_streams(1); }));
    two_best = std::min(two_best, seconds([&] { read_streams(2); }));
    scalar_best = std::min(scalar_best, seconds([&] { sink += read_pass_scalar(anchor.data, bytes); }));
  }
  const double read_best = std::min(one_best, two_best);
  std::printf("read anchor (%s loads): %.2f GB/s (one stream per thread %.2f, two %.2f); 64-bit scalar read: %.2f GB/s "
              "(%.2f of the anchor)\n",
              avx512 ? "512-bit" : "256-bit", bytes / read_best / 1e9, bytes / one_best / 1e9, bytes / two_best / 1e9,
              bytes / scalar_best / 1e9, read_best / scalar_best);
  std::printf("Per type the anchor is re-measured in every rep next to the GEMVs (the machine is shared).\n");
  std::printf("%-6s %8s %8s | %8s %6s | %8s %6s | %8s %6s | %8s %6s | %s\n", "type", "MB", "read", "packed", "/read", "gemv",
              "/read", "gemm n=1", "/read", "per-row", "/read", "gemv kernel");

  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(cols));
  for (float& v : x) v = normal(rng);

  for (TypeId t : {TypeId::F16, TypeId::Q8_0, TypeId::Q4_0, TypeId::Q4_K}) {
    const size_t row_bytes = row_size(t, cols);
    int64_t rows = static_cast<int64_t>((bytes + row_bytes - 1) / row_bytes);
    rows = (rows + 15) / 16 * 16;  // whole 16-row groups, and rows % 8 == 0 as real Q4 matrices
    // 64 distinct quantized rows, repeated: contents do not change the bytes read.
    constexpr int64_t kDistinct = 64;
    std::vector<float> src(static_cast<size_t>(kDistinct * cols));
    for (float& v : src) v = 0.02f * normal(rng);
    std::vector<uint8_t> base(row_bytes * kDistinct);
    kernels::quantize_rows(t, src.data(), base.data(), kDistinct, cols);
    const size_t w_bytes = row_bytes * static_cast<size_t>(rows);
    Buffer w(w_bytes, huge);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(w.data + static_cast<size_t>(r) * row_bytes, base.data() + static_cast<size_t>(r % kDistinct) * row_bytes,
                  row_bytes);
    const TypeId at = kernels::vec_dot_type(t);
    std::vector<uint8_t> act(row_size(at, cols));
    kernels::quantize_activation(at, x.data(), act.data(), cols);
    std::vector<float> y(static_cast<size_t>(rows));
    const kernels::GemvOrder order = kernels::gemv_order(t, rows);
    const kernels::GemvVariant* v = kernels::dispatched_gemv(t, order);
    if (!isa.empty()) {
      v = nullptr;
      for (const kernels::GemvVariant& c : kernels::gemv_variants())
        if (c.type == t && c.order == order && isa == kernels::isa_name(c.isa) && c.available()) v = &c;
    }
    std::vector<uint8_t> scratch;
    auto run_gemv = [&] {
      if (isa.empty())
        kernels::gemv(t, w.data, row_bytes, rows, cols, act.data(), y.data());
      else if (v != nullptr)
        gemv_variant(*v, w.data, row_bytes, rows, cols, act.data(), scratch, y.data());
      else
        per_row_gemv(t, w.data, row_bytes, rows, cols, act.data(), y.data());
    };
    run_gemv();  // warm-up
    // The packed column's kernels: packed_isa() unless --isa names one this CPU runs.
    kernels::Isa packed_isa = kernels::packed_isa();
    for (kernels::Isa i : {kernels::Isa::kRef, kernels::Isa::kAvx2, kernels::Isa::kAvx512})
      if (isa == kernels::isa_name(i) && kernels::packed_isa_available(i)) packed_isa = i;
    const bool packable = kernels::gemv_packable(t, rows, cols);
    kernels::PackedMatrix packed;
    double pack_s = 0;
    if (packable) pack_s = seconds([&] { packed = kernels::pack_matrix(t, w.data, row_bytes, rows, cols); });
    double best_read = 1e30, best_gemv = 1e30, best_gemm = 1e30, best_rows = 1e30, best_packed = 1e30;
    for (int r = 0; r < reps; ++r) {
      best_read = std::min(best_read, read_pass());
      if (packable) best_packed = std::min(best_packed, seconds([&] { kernels::gemv_packed_with(packed, act.data(), y.data(), packed_isa, true); }));
      best_gemv = std::min(best_gemv, seconds(run_gemv));
      best_gemm = std::min(best_gemm, seconds([&] { kernels::gemm(t, w.data, row_bytes, rows, cols, x.data(), 1, y.data()); }));
      best_rows = std::min(best_rows, seconds([&] { per_row_gemv(t, w.data, row_bytes, rows, cols, act.data(), y.data()); }));
    }
    auto gbs = [&](double s) { return static_cast<double>(w_bytes) / s / 1e9; };
    const double read_gbs = static_cast<double>(bytes) / best_read / 1e9;
    char packed_col[32] = "       - |      -";
    if (packable)
      std::snprintf(packed_col, sizeof packed_col, "%8.2f | %6.2f", gbs(best_packed), gbs(best_packed) / read_gbs);
    std::printf("%-6s %8.0f %8.2f | %s | %8.2f %6.2f | %8.2f %6.2f | %8.2f %6.2f | %s\n", std::string(type_name(t)).c_str(),
                w_bytes / 1048576.0, read_gbs, packed_col, gbs(best_gemv), gbs(best_gemv) / read_gbs, gbs(best_gemm),
                gbs(best_gemm) / read_gbs, gbs(best_rows), gbs(best_rows) / read_gbs, v ? kernels::isa_name(v->isa) : "vec_dot per row");
    if (packable)
      std::printf("       (packed kernels: %s; packing %.0f MB took %.2f s, once per matrix)\n", kernels::isa_name(packed_isa),
                  w_bytes / 1048576.0, pack_s);
    sink += static_cast<uint64_t>(y[0] != 0.0f);
  }
  if (sink == 42) std::printf("\n");  // keeps the anchor sums alive
  return 0;
}
