// AVX2 (8 lanes, ymm) k-quant and IQ4 kernels. The algorithms live in kquant_simd_impl.inc, written once
// with GCC vector extensions over kW lanes; this file fixes the width and the square root.
// Why the bytes equal kernels/ref/kquant_ref.cc: see the top of kquant_simd_impl.inc.
#include "kernels/x86/kquant_avx2.h"

#include <immintrin.h>

#include <cstring>

#include "kernels/fp16.h"
#include "kernels/quant_types.h"

namespace shrink::kernels::avx2 {
namespace {

constexpr int kW = 8;
typedef float vf __attribute__((vector_size(kW * 4)));
typedef int32_t vi __attribute__((vector_size(kW * 4)));
inline vf vsqrt(vf v) { return (vf)_mm256_sqrt_ps((__m256)v); }
inline vf splat(float s) { return (vf)_mm256_set1_ps(s); }
inline vi splati(int s) { return (vi)_mm256_set1_epi32(s); }
inline vi load_i8(const int8_t* p) {
  return (vi)_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
inline void store_u8(uint8_t* p, vi v) {
  const __m256i w = _mm256_packus_epi32((__m256i)v, (__m256i)v);  // lanes 0-3,0-3 | 4-7,4-7
  const __m128i b = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_shuffle_epi32(b, 0x08));  // dwords 0, 2
}

#include "kernels/x86/kquant_simd_impl.inc"

}  // namespace

void quantize_row_q2_K(const float* x, void* y, int64_t n) { q2_K_row(x, y, n, nullptr); }
void quantize_row_q3_K(const float* x, void* y, int64_t n) { q3_K_row(x, y, n, nullptr); }
void quantize_row_q4_K(const float* x, void* y, int64_t n) { q4_K_row(x, y, n, nullptr); }
void quantize_row_q5_K(const float* x, void* y, int64_t n) { q5_K_row(x, y, n, nullptr); }
void quantize_row_q6_K(const float* x, void* y, int64_t n) { q6_K_row(x, y, n, nullptr); }
void quantize_row_iq4_nl(const float* x, void* y, int64_t n) { iq4_nl_row(x, y, n, nullptr); }
void quantize_row_iq4_xs(const float* x, void* y, int64_t n) { iq4_xs_row(x, y, n, nullptr); }

void quantize_row_q2_K_imatrix(const float* x, void* y, int64_t n, const float* qw) { q2_K_row(x, y, n, qw); }
void quantize_row_q3_K_imatrix(const float* x, void* y, int64_t n, const float* qw) { q3_K_row(x, y, n, qw); }
void quantize_row_q4_K_imatrix(const float* x, void* y, int64_t n, const float* qw) { q4_K_row(x, y, n, qw); }
void quantize_row_q5_K_imatrix(const float* x, void* y, int64_t n, const float* qw) { q5_K_row(x, y, n, qw); }
void quantize_row_q6_K_imatrix(const float* x, void* y, int64_t n, const float* qw) { q6_K_row(x, y, n, qw); }
void quantize_row_iq4_nl_imatrix(const float* x, void* y, int64_t n, const float* qw) { iq4_nl_row(x, y, n, qw); }
void quantize_row_iq4_xs_imatrix(const float* x, void* y, int64_t n, const float* qw) { iq4_xs_row(x, y, n, qw); }

void dequantize_row_q2_K(const void* x, float* y, int64_t n) { dq_q2_K(x, y, n); }
void dequantize_row_q3_K(const void* x, float* y, int64_t n) { dq_q3_K(x, y, n); }
void dequantize_row_q4_K(const void* x, float* y, int64_t n) { dq_q4_K(x, y, n); }
void dequantize_row_q5_K(const void* x, float* y, int64_t n) { dq_q5_K(x, y, n); }
void dequantize_row_q6_K(const void* x, float* y, int64_t n) { dq_q6_K(x, y, n); }
void dequantize_row_iq4_nl(const void* x, float* y, int64_t n) { dq_iq4_nl(x, y, n); }
void dequantize_row_iq4_xs(const void* x, float* y, int64_t n) { dq_iq4_xs(x, y, n); }

}  // namespace shrink::kernels::avx2
