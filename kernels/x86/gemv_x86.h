// AVX2 (gemv_avx2.cc) and AVX-512 (gemv_avx512.cc) GEMV kernels, listed in gemv_variants()
// (kernels/gemv.cc), and both ISAs' packed GEMV kernels (gemv_packed_avx2.cc,
// gemv_packed_avx512.cc, run by kernels/gemv_packed.cc). Same contract as the scalar references
// there: identical bits.
#pragma once

#include <xmmintrin.h>  // _mm_prefetch (SSE: every x86-64 CPU)

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace shrink::kernels {

// Internal linkage on purpose: this header is included by files compiled for different ISAs, and
// an inline function with external linkage could be emitted with AVX-512 code and then be the
// copy the linker keeps for the AVX2 file too.
namespace {

// The kernels read several rows side by side: that many interleaved DRAM streams, which the
// memory system serves worse than one sequential stream (measured with four Q8_0 rows: 0.42 of
// the read anchor on one core, against 0.85 for one row at a time). So while a row group is
// computed, the next group's bytes (contiguous in the matrix) are prefetched into L2 in one
// ascending sweep, a slice per step, and the kernel then reads them from L2 (0.8-0.95).
struct Sweep {
  const uint8_t* next = nullptr;  // first byte of the next row group
  int64_t lines = 0;              // its 64-byte lines
  int64_t done = 0;
  Sweep(const uint8_t* p, size_t bytes) : next(p), lines(static_cast<int64_t>((bytes + 63) / 64)) {}
  // Step s of n: prefetch up to line lines * (s + 1) / n (prefetches never fault).
  void step(int64_t s, int64_t n) {
    const int64_t until = lines * (s + 1) / n;
    for (; done < until; ++done) _mm_prefetch(reinterpret_cast<const char*>(next + 64 * done), _MM_HINT_T1);
  }
};
// The `group` rows from r_next on (fewer at the end of the range).
inline Sweep next_group(const uint8_t* w, size_t row_bytes, int64_t r_next, int64_t n_rows, int64_t group) {
  const int64_t n = std::max<int64_t>(0, std::min(group, n_rows - r_next));
  return Sweep(w + static_cast<size_t>(std::min(r_next, n_rows)) * row_bytes, static_cast<size_t>(n) * row_bytes);
}

}  // namespace

#define SHRINK_GEMV_DECL(NAME)                                                                      \
  size_t NAME##_scratch(int64_t n_cols);                                                            \
  void NAME##_prepare(const void* act, int64_t n_cols, void* scratch);                              \
  void NAME##_rows(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const void* act, \
                   const void* scratch, float* y);

// Packed GEMV (kernels/gemv_packed.h): n (1 or 2) panels of 16 rows side by side, one output
// array of 16 floats each; scratch from the type's prepare(), computed once per activation row.
// Each ISA namespace below has its own scratch layout: prepare and panels go together.
using PackedPanelsFn = void (*)(const uint8_t* const* panels, int n, int64_t n_cols, const void* act,
                                const void* scratch, float* const* y);
#define SHRINK_PACKED_DECL(NAME)                                          \
  size_t NAME##_scratch(int64_t n_cols);                                  \
  void NAME##_prepare(const void* act, int64_t n_cols, void* scratch);    \
  void NAME##_panels(const uint8_t* const* panels, int n, int64_t n_cols, const void* act, const void* scratch, \
                     float* const* y);

namespace avx512 {
SHRINK_PACKED_DECL(packed_q8_0)
SHRINK_PACKED_DECL(packed_q4_0)
SHRINK_PACKED_DECL(packed_q4_K)

SHRINK_GEMV_DECL(gemv_q8_0_vecdot)
SHRINK_GEMV_DECL(gemv_f16_vecdot)
SHRINK_GEMV_DECL(gemv_q4_0_repack8)
SHRINK_GEMV_DECL(gemv_q4_K_repack8)
}  // namespace avx512

namespace avx2 {
// gemv_packed_avx2.cc: AVX2 + FMA + F16C, no VNNI.
SHRINK_PACKED_DECL(packed_q8_0)
SHRINK_PACKED_DECL(packed_q4_0)
SHRINK_PACKED_DECL(packed_q4_K)

SHRINK_GEMV_DECL(gemv_q8_0_vecdot)
SHRINK_GEMV_DECL(gemv_q4_0_repack8)
SHRINK_GEMV_DECL(gemv_q4_K_repack8)
}  // namespace avx2

#undef SHRINK_GEMV_DECL
#undef SHRINK_PACKED_DECL

}  // namespace shrink::kernels
