// Dot products of a weight row in its storage type with an activation row, computed the way
// ggml's CPU backend computes a matrix product (ggml-cpu.c, ggml_compute_forward_mul_mat):
// the activation row is first converted to the weight type's "vec_dot_type" (Q8_0 for Q4_0,
// Q5_0, Q8_0 and IQ4_NL; Q8_1 for Q4_1 and Q5_1; F16 for F16; BF16 for BF16; Q8_K for the
// k-quants), then each block contributes an integer sum of products scaled by both block scales
// (ggml-cpu/quants.c, ggml_vec_dot_*_generic). Quantizing the activations is a rounding step of
// its own: a model run with float activations against quantized weights differs from llama.cpp
// by far more than the float-summation-order noise that remains when the same step is taken.
//
// A scalar reference (kernels/ref/dot_ref.cc, dot_kquant_ref.cc) plus AVX2 / AVX-512 variants
// (kernels/x86/dot_*.cc), listed in dot_variants() and picked once per process by dispatch
// (SHRINK_FORCE_REF=1 forces the reference). The integer block sums of every variant are
// identical; the float accumulation over blocks runs in a different order, so results agree
// within float-summation bounds, not to the bit.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/quant_types.h"

namespace shrink::kernels {

// The type ggml converts activations to before a product with weights of `weight_type`
// (ggml-cpu.c type_traits_cpu[].vec_dot_type). F32 for F32; nullopt-like F32 for types that
// have no vec_dot here (see has_vec_dot).
TypeId vec_dot_type(TypeId weight_type);

// True if vec_dot() implements `weight_type` against its vec_dot_type: F32, F16, BF16, Q4_0,
// Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL (32-blocks) and Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS
// (256-super-blocks against Q8_K).
bool has_vec_dot(TypeId weight_type);

// Converts n floats to the activation type `act_type` (F32, F16, BF16, Q8_0, Q8_1 or Q8_K), n a
// multiple of its block size. Q8_K is ggml's quantize_row_q8_K (the same on every target):
// d = max / -127 with max the signed value of largest magnitude, q = round-half-even(x / d)
// capped at 127, bsums[j] = sum of the 16 quants of sub-block j; an all-zero block is all zero. Q8_0 and Q8_1 round as llama.cpp's CPU backend does on the
// target this is compiled for (x86: q = round-half-even(x * 127 / amax); AArch64:
// round-half-even(x / d); elsewhere ggml's _ref: roundf(x / d)), d = amax / 127 stored as F16;
// Q8_1 also stores s = d * sum(q). So these bytes can differ from quantize_rows(Q8_0), which is
// byte-exact with ggml's reference quantizer (what llama-quantize writes), on ties.
void quantize_activation(TypeId act_type, const float* x, void* dst, int64_t n);

// sum_i w[i] * a[i] over one row of n weights: `w` in `weight_type`, `a` in
// vec_dot_type(weight_type) as written by quantize_activation. n a multiple of the block size.
// Uses the dispatched variant (dispatched_dot()).
float vec_dot(TypeId weight_type, int64_t n, const void* w, const void* a);

// One row's dot product, the signature every variant shares.
using VecDotFn = float (*)(int64_t n, const void* w, const void* a);

// Float dot product with eight partial sums (vectorizable; the order differs from a sequential
// sum, as ggml's SIMD order does).
float dot_f32(int64_t n, const float* a, const float* b);

namespace ref {
void quantize_row_q8_1(const float* x, void* y, int64_t n);
void quantize_row_q8_K(const float* x, void* y, int64_t n);
// Q3_K's 16 packed 6-bit scales as signed values (s - 32).
void unpack_q3_K_scales(const uint8_t* packed, int* scales);
float vec_dot_f32(int64_t n, const void* w, const void* a);
float vec_dot_f16(int64_t n, const void* w, const void* a);
float vec_dot_bf16(int64_t n, const void* w, const void* a);
float vec_dot_q4_0_q8_0(int64_t n, const void* w, const void* a);
float vec_dot_q4_1_q8_1(int64_t n, const void* w, const void* a);
float vec_dot_q5_0_q8_0(int64_t n, const void* w, const void* a);
float vec_dot_q5_1_q8_1(int64_t n, const void* w, const void* a);
float vec_dot_q8_0_q8_0(int64_t n, const void* w, const void* a);
float vec_dot_iq4_nl_q8_0(int64_t n, const void* w, const void* a);
float vec_dot_q2_K_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_q3_K_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_q4_K_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_q5_K_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_q6_K_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_iq4_xs_q8_K(int64_t n, const void* w, const void* a);
}  // namespace ref

}  // namespace shrink::kernels
