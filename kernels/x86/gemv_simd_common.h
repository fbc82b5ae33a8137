// Helpers shared by the AVX2 and AVX-512 GEMV kernel files (gemv_avx2.cc, gemv_avx512.cc,
// gemv_packed_avx2.cc, gemv_packed_avx512.cc). Every includer is compiled with at least AVX2 +
// FMA + F16C. Internal linkage on purpose, as in gemv_x86.h: each ISA's file gets its own copy,
// so the linker can never hand the AVX2 file an AVX-512 encoding of the same inline function.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace shrink::kernels {
namespace {

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

// An unaligned 4-byte group (activation bytes of Q8_0 / Q8_K blocks) as one int32.
inline int32_t load32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// ggml's hsum_float_8 (arch/x86 quants.c), bit for bit.
inline float hsum_float_8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Packed GEMV (kernels/gemv_packed.h): software prefetch, about 2.3 KB ahead in each stream, into
// L1. The hardware prefetchers alone left AVX-512 Q4_K at 0.51-0.64 of the read anchor (one unit
// of 16 rows is 2304 bytes of work, more than the out-of-order window reaches across) and 0.87
// with it; Q4_0 went from 0.82-0.90 to 0.91-0.93 and Q8_0 from 0.78-0.86 to 0.85-0.88
// (bench_gemv, three alternating runs each). The AVX2 kernels gain likewise
// (gemv_packed_avx2.cc).
constexpr size_t kPrefetchAhead = 2304;
// Prefetches the `lines` 64-byte lines kPrefetchAhead bytes past p (past the end of the matrix
// for the last units: prefetches never fault).
inline void prefetch_ahead(const uint8_t* p, int lines) {
  for (int l = 0; l < lines; ++l) _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchAhead + 64 * l), _MM_HINT_T0);
}

}  // namespace
}  // namespace shrink::kernels
