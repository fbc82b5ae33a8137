// The micro-kernels behind kernels::gemm (kernels/gemm.cc), one per summation order that ggml's
// CPU backend uses for a matrix product on an AVX-512 machine (llama.cpp release b-series as
// shipped by node-llama-cpp; sources: ggml-cpu/llamafile/sgemm.cpp, ggml-cpu/repack.cpp,
// ggml-cpu/arch/x86/repack.cpp, ggml-cpu/arch/x86/quants.c, ggml-cpu/vec.cpp). Each kernel
// reproduces ggml's float operations for every output, operation for operation, so the results
// are bit-identical; the integer parts are exact in any order. The orders, per output y[t][r]:
//
//  kF32Tiny16   tinyBLAS<16, __m512>: 16 lane sums s_i += w[l+i] * x[l+i] (fused, l in steps
//               of 16), then _mm512_reduce_add_ps. F32 weights, and F16 weights against F16
//               activations, when n_tokens >= 2, n_cols % 16 == 0 and n_rows % 4 == 0 (F16
//               otherwise: ggml_vec_dot_f16, which kernels/gemv.h reproduces).
//  kF32VecDot   ggml_vec_dot_f32 (AVX-512): four 16-lane fused sums over steps of 64, folded
//               (0+2, 1+3, then 0+1), _mm512_reduce_add_ps, leftovers added one by one (fused).
//               F32 weights otherwise.
//  kQ0Lanes8    tinyBLAS_Q0_AVX and ggml_vec_dot_q{8,4}_0_q8_0 (AVX2 code in the AVX-512 build):
//               per 32-block, 8 int32 lanes (lane k = sum of the products of elements 4k..4k+3),
//               acc_k = fma(d_w * d_x, float(lane_k), acc_k), then hsum_float_8:
//               ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)). Q8_0 always; Q4_0 when n_rows % 8 != 0.
//  kRepackQ4_0  the q4_0_8x8 repack GEMM/GEMV (weights in the CPU_REPACK buffer, n_rows % 8 == 0):
//               per 32-block one exact integer dot i_b, acc = fma(float(i_b), d_w * d_x, acc).
//  kRepackQ4_K  the q4_K_8x8 repack GEMM/GEMV (n_rows % 8 == 0): over sub-blocks j,
//               i = sum scale_j * dot_j and m = sum min_j * bsum_j (exact integers), folded in
//               acc = fma(float(i), d_w * d_x, acc), acc_min = fma(float(m), dmin_w * d_x,
//               acc_min) once per super-block by the GEMV but once per pair of sub-blocks by
//               the GEMM; y = acc - acc_min. ggml runs the GEMM on the first n - n % 4 tokens and
//               the GEMV on the rest (repack.cpp, forward_mul_mat_one_chunk), so the order
//               depends on the token's position.
//
// Activations arrive already converted by quantize_activation (kernels/dot.h), which writes the
// bytes ggml's x86 from_float writes (Q8_0, Q8_K); ggml's 4-row interleaved quantizers
// (ggml_quantize_mat_q8_0_4x8 / q8_K_4x8) produce the same values in another layout.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shrink::kernels::gemm_avx512 {

// Tokens side by side in one 512-bit register: one int32/float lane per token.
constexpr int kTokenGroup = 16;

// ---- F32 ----
// y[t * ldy + r] for rows [0, n_rows) and tokens [0, n_tokens): w row r at w + r * ldw floats,
// x token t at x + t * n_cols floats.
void f32_tiny16(const float* w, int64_t ldw, int64_t n_rows, int64_t n_cols, const float* x, int64_t n_tokens,
                float* y, int64_t ldy);
// F16 weights against F16 activations (ggml converts the activations first), same order.
void f16_tiny16(const uint16_t* w, int64_t ldw, int64_t n_rows, int64_t n_cols, const uint16_t* x, int64_t n_tokens,
                float* y, int64_t ldy);
void f32_vec_dot(const float* w, int64_t ldw, int64_t n_rows, int64_t n_cols, const float* x, int64_t n_tokens,
                 float* y, int64_t ldy);

// ---- 32-blocks against Q8_0 activations ----
// A group of up to 16 tokens' Q8_0 rows re-laid out for the token-lane kernels: for block b and
// 4-byte slot k (elements 4k..4k+3), the 16 tokens' 4 bytes side by side (64 bytes), the 16 scales
// as floats, the 16 block sums (sum of the 32 quants) and, per slot, -128 * (sum of its 4 quants)
// (the start value that undoes a +128 weight offset). Missing tokens are zero.
struct PackedQ8_0 {
  int64_t n_blocks = 0;
  int8_t* qs = nullptr;      // [n_blocks][8][16][4]
  float* d = nullptr;        // [n_blocks][16]
  int32_t* sum = nullptr;    // [n_blocks][16]
  int32_t* bias4 = nullptr;  // [n_blocks][8][16]
};
// Bytes a PackedQ8_0 of n_blocks needs (qs, d and sum carved from one buffer).
size_t packed_q8_0_bytes(int64_t n_blocks);
// Packs tokens [0, n) (n <= 16) of Q8_0 activation rows (act + t * act_row_bytes) into buf.
PackedQ8_0 pack_q8_0(const uint8_t* act, size_t act_row_bytes, int n, int64_t n_blocks, void* buf);

enum class Q0Weights { kQ8_0, kQ4_0 };
// Rows [0, n_rows) of Q8_0/Q4_0 weights (row r at w + r * row_bytes) against one packed group
// of n_valid tokens; writes y[t * ldy + r] for t < n_valid. Order kQ0Lanes8.
void q0_lanes8(Q0Weights type, const uint8_t* w, size_t row_bytes, int64_t n_rows, const PackedQ8_0& a,
               int n_valid, float* y, int64_t ldy);
// Order kRepackQ4_0 (Q4_0 weights).
void q4_0_repack(const uint8_t* w, size_t row_bytes, int64_t n_rows, const PackedQ8_0& a, int n_valid, float* y,
                 int64_t ldy);

// ---- Q4_K against Q8_K activations ----
struct PackedQ8_K {
  int64_t n_blocks = 0;     // super-blocks of 256
  int8_t* qs = nullptr;     // [n_blocks][64][16][4]
  float* d = nullptr;       // [n_blocks][16]
  int32_t* bsum = nullptr;  // [n_blocks][8][16]: sums of the 32 quants of sub-block j
};
size_t packed_q8_K_bytes(int64_t n_blocks);
PackedQ8_K pack_q8_K(const uint8_t* act, size_t act_row_bytes, int n, int64_t n_blocks, void* buf);
// Order kRepackQ4_K, the GEMM's (gemm_order) or the GEMV's, for tokens [t_begin, t_end) of the
// group (y + t * ldy is token t of the group).
void q4_K_repack(const uint8_t* w, size_t row_bytes, int64_t n_rows, const PackedQ8_K& a, int t_begin, int t_end,
                 bool gemm_order, float* y, int64_t ldy);

}  // namespace shrink::kernels::gemm_avx512
