// The non-matmul float steps of a Llama forward pass in the exact float order of ggml's CPU
// backend as built for AVX-512 (the variant llama.cpp picks on Zen 4 / Skylake-X and later), so
// that `shrink eval` reproduces llama.cpp's activations bit for bit and a Q8_0 activation that
// sits on a rounding tie rounds the same way in both (a flipped tie moves a token's
// log-probability by up to 0.26 on stories260K).
//
// What each function mirrors (ggml/src/ggml-cpu of the llama.cpp release node-llama-cpp ships):
//   expf_ggml      ggml_v_expf (vec.h, AVX-512 form): exp(x) as 2^n * p(b), n = round(x log2 e),
//                  b = x - n ln2 in two fused steps, a degree-5 polynomial with Arm's
//                  optimized-routines coefficients, scalef; |n| > 192 saturates to 0 / inf.
//   reduce16       _mm512_reduce_add_ps: (v[i] + v[i+8]), then +4, then +2, then +1.
//   dot_ggml       kTiled: tinyBLAS<16, __m512> (llamafile/sgemm.cpp), used by mul_mat when the
//                  batch has >= 2 tokens and k % 16 == 0: one 16-lane fused-multiply-add
//                  accumulator per output, then reduce16. kVecF16: ggml_vec_dot_f16 (vec.cpp):
//                  four 16-lane accumulators over 64-element steps, folded (0+2, 1+3, 0+1),
//                  reduce16 into a double, the tail in double. kVecF32: ggml_vec_dot_f32.
//   softmax_ggml   ggml_compute_forward_soft_max_f32 + ggml_vec_soft_max_f32 with llama.cpp's
//                  KV length padded to 256 (so every element takes the 16-wide path): scores
//                  scaled, max, e = expf_ggml(w - max), the sum of each 16-group reduced and
//                  added in double, then multiplied by (float)(1/sum).
//   swiglu_ggml    ggml_vec_swiglu_f32: x / (1 + expf_ggml(-x)) * g for 16-wide groups, the
//                  tail with libm expf.
// Inputs of the F16 dots are floats already rounded to F16 (the KV cache and the converted
// activations), whose products are exact in float.
//
// Variants: the scalar reference (kernels/ref/ggml_ops_ref.cc, std::fma where ggml fuses) and
// AVX-512 (kernels/x86/ggml_ops_avx512.cc), same bits. On a CPU without AVX-512 the reference
// runs, so results are the same on every machine; llama.cpp itself would take its AVX2 forms
// there.
#pragma once

#include <cstdint>

namespace shrink::kernels {

// ggml_compute_forward_rms_norm_f32 then ggml_mul by the weight: sum of squares in double,
// scale = 1/sqrtf(mean + eps), y = (x * scale) * w.
void rms_norm_ggml(const float* x, const float* w, int64_t n, float eps, float* y);

// ggml's rope cache (ggml_rope_cache_init with ext_factor 0, mscale 1): theta starts at pos and
// is multiplied by freq_base^(-2/n_dims) per pair in float; cs[2i], cs[2i+1] = cos, sin of
// freq_scale * theta / factor[i] (factors may be null). cs has n_dims floats.
void rope_cache_ggml(float pos, int64_t n_dims, float freq_base, float freq_scale, const float* factors, float* cs);
// Rotates one head in place: GGUF "llama" pairs adjacent elements (2i, 2i+1) (ggml's normal
// mode); neox (qwen2) pairs i with i + n_dims/2.
void rope_ggml(float* x, int64_t n_dims, const float* cs, bool neox);

float expf_ggml(float x);
float reduce16(const float* v);  // v[16]

// Which order a product takes (see the table above): tinyBLAS's one 16-lane accumulator;
// ggml_vec_dot_f16's four 16-lane accumulators with the tail in double; ggml_vec_dot_f32's
// four accumulators kept in float, whose tail the shipped build adds 16 and 8 rounded products
// at a time and fuses the last n % 8 (checked against its disassembly and its results).
enum class DotOrder { kTiled, kVecF16, kVecF32 };

// sum_i a[i] * b[i] in `order`; for kTiled n % 16 == 0.
float dot_ggml(DotOrder order, const float* a, const float* b, int64_t n);

// out[j] = dot_ggml(order, k + j * k_stride, q, hd) for j < n: one query's scores against n
// cached keys.
void scores_ggml(DotOrder order, const float* k, int64_t k_stride, const float* q, int64_t hd, int64_t n, float* out);

// n rounded up to the order's vector step (16 tiled, 64 otherwise).
int64_t padded_length(DotOrder order, int64_t n);

// out[i] = sum_j vt[i * vt_stride + j] * p[j], i < n_out, j < n: the attention-weighted sum of
// values with V stored transposed (one row per dimension, as llama.cpp's cache without flash
// attention). Like llama.cpp, which sums over its whole 256-padded KV length with zero weights
// past each token's position, it reads p and every vt row up to padded_length(order, n):
// those weights must be zero and those values finite.
void weighted_sum_ggml(const float* vt, int64_t vt_stride, const float* p, int64_t n, int64_t n_out, DotOrder order,
                       float* out);

// In place: p[0..n) raw scores -> probabilities of softmax(p * scale) in ggml's order.
void softmax_ggml(float* p, int64_t n, float scale);

// x[i] = x[i] rounded to F16 and back (ggml's F32 -> F16 conversion: nearest even, NaN ->
// sign | 0x7E00), as the KV cache and the F16 activations of attention products are.
void round_fp16_inplace(float* x, int64_t n);

// gate[i] = silu(gate[i]) * up[i] for one row of n values.
void swiglu_ggml(float* gate, const float* up, int64_t n);

}  // namespace shrink::kernels
