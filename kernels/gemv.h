// GEMV: one token (generation) against a weight matrix in its storage type, y = W a, where W is
// (n_rows, n_cols) in `type`, row r at w + r * row_bytes, and `a` is the token's activation row
// already converted to vec_dot_type(type) by quantize_activation (kernels/dot.h).
//
// Memory-bound: every weight byte is read once, so the kernels process several rows per pass,
// sharing each activation load between them, and OpenMP threads take contiguous row ranges.
//
// The float steps are those llama.cpp's CPU backend takes for one token on x86 (ggml-cpu.c
// ggml_compute_forward_mul_mat; llamafile's sgemm declines n == 1), so on AVX-512 CPUs every
// output of Q8_0, F16, Q4_0 and Q4_K (n_rows % 8 == 0) is bit-identical to ggml's zen4 build
// (test_kernels_gemv), and so are Q4_0 with n_rows % 8 != 0 (the x86 dot kernels follow ggml's
// order). Other types and Q4_K with n_rows % 8 != 0 run the dispatched vec_dot per row: equal to
// ggml within float-summation bounds only.
//  - kVecDot: ggml's vec_dot per row (F16: vec.cpp ggml_vec_dot_f16, 4 x 16-lane accumulators
//    over 64-element steps on AVX-512; Q8_0: arch/x86/quants.c, one 8-lane FMA per 32-block and
//    hsum_float_8). Used for Q8_0, F16, and for Q4_0/Q4_K when n_rows % 8 != 0 (ggml does not
//    repack those), where the per-row dispatched vec_dot runs (kernels/x86/dot_*.cc).
//  - kRepack8: ggml's repacked 8-row GEMV (repack.cpp picks q4_0_8x8_q8_0 / q4_K_8x8_q8_K on AVX2
//    CPUs when n_rows % 8 == 0; arch/x86/repack.cpp ggml_gemv_q4_0_8x8_q8_0 and
//    ggml_gemv_q4_K_8x8_q8_K): per row one scalar float chain over blocks,
//      Q4_0: acc = fma(float(sum_j (q_j - 8) a_j), d_w * d_a, acc)
//      Q4_K: acc = fma(float(sum_s sc_s sum_j q_j a_j), d_w * d_a, acc),
//            acc_min = fma(float(sum_s m_s (bsum_2s + bsum_2s+1)), dmin_w * d_a, acc_min),
//            y = acc - acc_min,
//    with exact integer sums, so any SIMD layout of the integer part gives the same bits.
// The other types run the dispatched vec_dot per row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "kernels/quant_types.h"
#include "kernels/registry.h"

namespace shrink::kernels {

enum class GemvOrder : int { kVecDot = 0, kRepack8 = 1 };

// The float order gemv() follows for a matrix of `type` with n_rows rows (see above).
GemvOrder gemv_order(TypeId type, int64_t n_rows);

// y[r] = sum_i W[r][i] a[i] for r in [0, n_rows). n_cols a multiple of the type's block size;
// `act` holds row_size(vec_dot_type(type), n_cols) bytes (F32: n_cols floats). Threads: the
// OpenMP team (rows split in contiguous ranges), one thread for small matrices.
void gemv(TypeId type, const void* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void* act, float* y);

// ---- Variants (tests and benchmarks run each one the CPU supports). ----

// Derived from the activation row once per call, shared by all threads (read-only): e.g. the
// activation sums that turn unsigned weight codes into signed products.
using GemvPrepareFn = void (*)(const void* act, int64_t n_cols, void* scratch);
// Rows [0, n_rows) of w into y[0, n_rows), one thread. Any n_rows >= 1.
using GemvRowsFn = void (*)(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void* act,
                            const void* scratch, float* y);

struct GemvVariant {
  TypeId type;
  Isa isa;
  GemvOrder order;
  size_t (*scratch_bytes)(int64_t n_cols);  // bytes prepare() writes (64-byte aligned buffer)
  GemvPrepareFn prepare;                    // nullptr: no scratch
  GemvRowsFn rows;
  bool (*available)();
};

// Every GEMV kernel compiled in: the scalar reference of each (type, order) first, then SIMD.
std::span<const GemvVariant> gemv_variants();
// The variant gemv() runs for (type, order) on this CPU (SHRINK_FORCE_REF=1: the reference), or
// nullptr: then gemv() calls the dispatched vec_dot per row.
const GemvVariant* dispatched_gemv(TypeId type, GemvOrder order);

// Runs one variant over all rows, single-threaded (tests, benchmarks).
void gemv_with(const GemvVariant& v, const void* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void* act,
               float* y);

}  // namespace shrink::kernels
