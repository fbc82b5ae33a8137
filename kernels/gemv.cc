#include "kernels/gemv.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/dot.h"
#include "kernels/fp16.h"
#if defined(SHRINK_HAVE_X86)
#include "kernels/x86/gemv_x86.h"
#endif

namespace shrink::kernels {
namespace {

// ---- Scalar references: the executable spec of each order (slow; never tuned). ----

inline float h2f(uint16_t h) { return fp16_to_fp32(h); }

// ggml's hsum_float_8 (arch/x86 quants.c): (x_i + x_{i+4}) for i < 4, then (r0 + r2) + (r1 + r3).
float hsum_float_8(const float* x) {
  float r[4];
  for (int i = 0; i < 4; ++i) r[i] = x[i + 4] + x[i];
  return (r[0] + r[2]) + (r[1] + r[3]);
}

// Q8_0 x Q8_0 as ggml's x86 vec_dot: eight float lanes, lane k takes the integer sum of bytes
// 4k..4k+3 of every block times d_w * d_a in one FMA, then hsum_float_8.
float ref_row_q8_0(const uint8_t* row, const void* act, int64_t n_cols) {
  const auto* x = reinterpret_cast<const block_q8_0*>(row);
  const auto* a = static_cast<const block_q8_0*>(act);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t b = 0; b < n_cols / QK8_0; ++b) {
    const float d = h2f(x[b].d) * h2f(a[b].d);
    for (int k = 0; k < 8; ++k) {
      int32_t s = 0;
      for (int t = 0; t < 4; ++t) s += x[b].qs[4 * k + t] * a[b].qs[4 * k + t];
      acc[k] = std::fma(d, static_cast<float>(s), acc[k]);
    }
  }
  return hsum_float_8(acc);
}

// F16 x F16 as ggml's ggml_vec_dot_f16 built for AVX-512 without FP16 arithmetic (vec.cpp,
// simd-mappings.h GGML_F32Cx16): four 16-lane accumulators over 64-element steps, reduced
// s0 + s2, s1 + s3, then their sum, then GCC's _mm512_reduce_add_ps tree (halves of 8, 4, then
// (t0 + t2) + (t1 + t3)); the n % 64 leftovers are added in double, one float product at a time.
float ref_row_f16(const uint8_t* row, const void* act, int64_t n_cols) {
  const auto* w = reinterpret_cast<const uint16_t*>(row);
  const auto* a = static_cast<const uint16_t*>(act);
  float s[4][16] = {};
  const int64_t np = n_cols & ~int64_t{63};
  for (int64_t i = 0; i < np; i += 64)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 16; ++l) {
        const int64_t k = i + 16 * j + l;
        s[j][l] = std::fma(h2f(w[k]), h2f(a[k]), s[j][l]);
      }
  float v[16];
  for (int l = 0; l < 16; ++l) v[l] = (s[0][l] + s[2][l]) + (s[1][l] + s[3][l]);
  float t8[8], t4[4];
  for (int l = 0; l < 8; ++l) t8[l] = v[l + 8] + v[l];
  for (int l = 0; l < 4; ++l) t4[l] = t8[l + 4] + t8[l];
  double sum = static_cast<double>((t4[0] + t4[2]) + (t4[1] + t4[3]));
  for (int64_t k = np; k < n_cols; ++k) sum += static_cast<double>(h2f(w[k]) * h2f(a[k]));
  return static_cast<float>(sum);
}

// Q4_0 x Q8_0 as ggml's repacked 8-row GEMV: one float chain per row over the blocks.
float ref_row_q4_0(const uint8_t* row, const void* act, int64_t n_cols) {
  const auto* x = reinterpret_cast<const block_q4_0*>(row);
  const auto* a = static_cast<const block_q8_0*>(act);
  float acc = 0;
  for (int64_t b = 0; b < n_cols / QK4_0; ++b) {
    int32_t s = 0;
    for (int j = 0; j < QK4_0 / 2; ++j) {
      s += ((x[b].qs[j] & 0x0F) - 8) * a[b].qs[j];
      s += ((x[b].qs[j] >> 4) - 8) * a[b].qs[j + QK4_0 / 2];
    }
    acc = std::fma(static_cast<float>(s), h2f(x[b].d) * h2f(a[b].d), acc);
  }
  return acc;
}

// Q4_K x Q8_K as ggml's repacked 8-row GEMV: two float chains per row (scaled sums, mins).
float ref_row_q4_K(const uint8_t* row, const void* act, int64_t n_cols) {
  const auto* x = reinterpret_cast<const block_q4_K*>(row);
  const auto* a = static_cast<const block_q8_K*>(act);
  float acc = 0, acc_min = 0;
  for (int64_t b = 0; b < n_cols / QK_K; ++b) {
    const uint8_t* q = x[b].scales;
    int32_t sc[8], m[8];
    for (int j = 0; j < 4; ++j) {  // ggml's get_scale_min_k4
      sc[j] = q[j] & 63;
      m[j] = q[j + 4] & 63;
      sc[j + 4] = (q[j + 8] & 0x0F) | ((q[j] >> 6) << 4);
      m[j + 4] = (q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4);
    }
    int32_t isum = 0, imin = 0;
    for (int s = 0; s < 8; ++s) {
      const int g = s / 2, shift = 4 * (s % 2);
      int32_t d = 0;
      for (int l = 0; l < 32; ++l) d += ((x[b].qs[32 * g + l] >> shift) & 0x0F) * a[b].qs[32 * s + l];
      isum += sc[s] * d;
      imin += m[s] * (a[b].bsums[2 * s] + a[b].bsums[2 * s + 1]);
    }
    acc = std::fma(static_cast<float>(isum), h2f(x[b].d) * a[b].d, acc);
    acc_min = std::fma(static_cast<float>(imin), h2f(x[b].dmin) * a[b].d, acc_min);
  }
  return acc - acc_min;
}

template <float (*Row)(const uint8_t*, const void*, int64_t)>
void ref_rows(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void* act, const void*,
              float* y) {
  for (int64_t r = 0; r < n_rows; ++r) y[r] = Row(w + static_cast<size_t>(r) * row_bytes, act, n_cols);
}

size_t no_scratch(int64_t) { return 0; }
bool always() { return true; }

#if defined(SHRINK_HAVE_X86)
bool has_avx2() {
  const CpuFeatures& f = cpu_features();
  return f.avx2 && f.fma && f.f16c;
}
// gemv_avx512.cc is compiled for F+BW+VL+DQ+VNNI and uses vpdpbusd.
bool has_avx512() {
  const CpuFeatures& f = cpu_features();
  return has_avx2() && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni;
}
#endif

#define SHRINK_GEMV_REF(TYPE, ORDER, ROW) \
  GemvVariant { TypeId::TYPE, Isa::kRef, GemvOrder::ORDER, &no_scratch, nullptr, &ref_rows<&ROW>, &always }
#define SHRINK_GEMV_SIMD(TYPE, ORDER, ISA, NS, NAME, AVAIL)                                                \
  GemvVariant {                                                                                            \
    TypeId::TYPE, Isa::ISA, GemvOrder::ORDER, &NS::NAME##_scratch, &NS::NAME##_prepare, &NS::NAME##_rows, \
        &AVAIL                                                                                             \
  }

const GemvVariant kGemvVariants[] = {
    SHRINK_GEMV_REF(Q8_0, kVecDot, ref_row_q8_0),
    SHRINK_GEMV_REF(F16, kVecDot, ref_row_f16),
    SHRINK_GEMV_REF(Q4_0, kRepack8, ref_row_q4_0),
    SHRINK_GEMV_REF(Q4_K, kRepack8, ref_row_q4_K),
#if defined(SHRINK_HAVE_X86)
    SHRINK_GEMV_SIMD(Q8_0, kVecDot, kAvx2, avx2, gemv_q8_0_vecdot, has_avx2),
    SHRINK_GEMV_SIMD(Q4_0, kRepack8, kAvx2, avx2, gemv_q4_0_repack8, has_avx2),
    SHRINK_GEMV_SIMD(Q4_K, kRepack8, kAvx2, avx2, gemv_q4_K_repack8, has_avx2),
    SHRINK_GEMV_SIMD(Q8_0, kVecDot, kAvx512, avx512, gemv_q8_0_vecdot, has_avx512),
    SHRINK_GEMV_SIMD(F16, kVecDot, kAvx512, avx512, gemv_f16_vecdot, has_avx512),
    SHRINK_GEMV_SIMD(Q4_0, kRepack8, kAvx512, avx512, gemv_q4_0_repack8, has_avx512),
    SHRINK_GEMV_SIMD(Q4_K, kRepack8, kAvx512, avx512, gemv_q4_K_repack8, has_avx512),
#endif
};

#undef SHRINK_GEMV_SIMD
#undef SHRINK_GEMV_REF

const GemvVariant* pick(TypeId type, GemvOrder order) {
  const bool ref_only = force_reference();
  const GemvVariant* best = nullptr;
  for (const GemvVariant& v : kGemvVariants) {
    if (v.type != type || v.order != order || !v.available()) continue;
    if (ref_only && v.isa != Isa::kRef) continue;
    if (best == nullptr || static_cast<int>(v.isa) > static_cast<int>(best->isa)) best = &v;
  }
  return best;
}

// One scratch buffer per calling thread, 64-byte aligned, grown, never shrunk.
void* scratch_buffer(size_t bytes) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < bytes + 64) buf.resize(bytes + 64);
  const auto p = reinterpret_cast<uintptr_t>(buf.data());
  return buf.data() + ((64 - p % 64) % 64);
}

// Below this many weight bytes one thread is faster than waking the team (~10 us on 2 cores).
constexpr size_t kMinParallelBytes = size_t{1} << 20;
// Thread ranges start on multiples of this many rows: the widest SIMD row group (16).
constexpr int64_t kRowAlign = 16;

}  // namespace

GemvOrder gemv_order(TypeId type, int64_t n_rows) {
  // repack.cpp ggml_repack_get_optimal_repack_type: Q4_0 -> q4_0_8x8_q8_0 and Q4_K ->
  // q4_K_8x8_q8_K on AVX2 CPUs when ne[1] (the row count) % 8 == 0.
  if ((type == TypeId::Q4_0 || type == TypeId::Q4_K) && n_rows % 8 == 0) return GemvOrder::kRepack8;
  return GemvOrder::kVecDot;
}

std::span<const GemvVariant> gemv_variants() { return kGemvVariants; }

const GemvVariant* dispatched_gemv(TypeId type, GemvOrder order) {
  // Resolved per call: a short scan of a dozen entries, negligible next to a GEMV.
  return pick(type, order);
}

void gemv_with(const GemvVariant& v, const void* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void* act,
               float* y) {
  void* scratch = scratch_buffer(v.scratch_bytes(n_cols));
  if (v.prepare != nullptr) v.prepare(act, n_cols, scratch);
  v.rows(static_cast<const uint8_t*>(w), row_bytes, n_rows, n_cols, act, scratch, y);
}

void gemv(TypeId type, const void* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void* act, float* y) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const bool parallel = static_cast<size_t>(n_rows) * row_bytes >= kMinParallelBytes;
  const GemvVariant* v = dispatched_gemv(type, gemv_order(type, n_rows));
  if (v == nullptr) {
    // ggml's own vec_dot order per row (the dispatched dot), contiguous row ranges per thread.
    const VecDotFn dot = dispatched_dot(type)->vec_dot;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t r = 0; r < n_rows; ++r) y[r] = dot(n_cols, wb + static_cast<size_t>(r) * row_bytes, act);
    return;
  }
  void* scratch = scratch_buffer(v->scratch_bytes(n_cols));
  if (v->prepare != nullptr) v->prepare(act, n_cols, scratch);
#pragma omp parallel if (parallel)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    // Contiguous ranges: each thread streams one part of the matrix from start to end.
    const int64_t per = ((n_rows + nt - 1) / nt + kRowAlign - 1) / kRowAlign * kRowAlign;
    const int64_t r0 = std::min(n_rows, t * per), r1 = std::min(n_rows, r0 + per);
    if (r0 < r1) v->rows(wb + static_cast<size_t>(r0) * row_bytes, row_bytes, r1 - r0, n_cols, act, scratch, y + r0);
  }
}

}  // namespace shrink::kernels
