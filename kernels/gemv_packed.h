// Packed GEMV: one token against a weight matrix that was rearranged once for streaming.
//
// gemv() (kernels/gemv.h) reads the weights where they lie, row after row of GGUF blocks, so
// its kernels spend their time regrouping bytes: Q4_0 nibbles gathered from 18-byte blocks,
// per-row partial sums reduced and transposed, scales picked out of each row. A one-token step
// reads every weight byte exactly once, so that regrouping can be done once instead, when the
// matrix is first used for one token (llama.cpp repacks its Q4_0/Q4_K weights at load for the
// same reason). The packed matrix has exactly the bytes of the original, regrouped in panels of
// 16 rows, so one 512-bit load holds one 4-byte group of each of the 16 rows and one vpdpbusd
// against a broadcast activation group advances all 16 row sums: no reductions, no shuffles.
//
// Measured (bench_gemv, 256 MB, one token, 4096 columns, this 2-core AVX-512 machine): the
// packed kernels run at 58-74 GB/s per core with their data in L2, against 27-37 for gemv()'s
// in-place ones. Streaming from memory also needs two streams per core: each thread walks two
// halves of its rows side by side (a first Q4_0 version reached 0.64-0.79 of a one-stream read
// anchor with one stream per core, 0.93-0.98 with two), and a software prefetch ~2.3 KB ahead
// in each (gemv_packed_avx512.cc), and (AVX-512 Q8_0, Q4_K) a dynamic schedule of 4 MB chunks.
// Against a read anchor that also uses two streams per thread (up to 15% faster than one), on a
// quiet machine (82-91 GB/s): 0.87-1.04 on 2 threads and 0.72-0.96 on one core for Q8_0, Q4_0
// and Q4_K, against 0.49-0.70 for gemv() in place (README has the runs).
// The AVX2 kernels (gemv_packed_avx2.cc, for CPUs without AVX-512 VNNI) reached 0.87-0.97 of
// the one-stream anchor in 16 of 18 type-runs (extremes 0.75 and 1.04: a shared machine)
// against 0.46-0.76 for the AVX2 gemv() in place (bench_gemv --isa avx2 --cpu-clock, six runs).
//
// The float steps per row are exactly gemv()'s (ggml's one-token order, see gemv.h): packing
// changes only how the exact integer sums are formed, so packed and in-place results are equal
// bit for bit (test_kernels_gemv), and so equal ggml's where gemv() does.
//
// Layout, panel p = rows 16p .. 16p + 15 (16 * row_bytes bytes), then per block ("unit"):
//   Q4_0 (288 B):  [64 i + 4 r + k] = qs[4 i + k] of row r (i < 4, r < 16, k < 4);
//                  [256 + 2 r] = d of row r.
//   Q8_0 (544 B):  [64 q + 32 h + j] = qs[j] of row 2 q + h, xor 0x80 (stored unsigned);
//                  [512 + 2 r] = d of row r.
//   Q4_K (2304 B): [2 r] = d of row r; [32 + 2 r] = dmin of row r;
//                  [64 + 64 c + 4 r + k] = scales[4 c + k] of row r (c < 3);
//                  [256 + 64 i + 4 r + k] = qs[4 i + k] of row r (i < 32).
// Each unit is read in ascending address order (Q4_K's scales come first because they are
// needed first: with them after the quants, the backward jump in every unit cost a third of the
// streaming speed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/quant_types.h"
#include "kernels/registry.h"

namespace shrink::kernels {

inline constexpr int64_t kPanelRows = 16;

// True when `type` has a packed layout and the matrix fits it: Q8_0 (ggml's vec_dot order),
// Q4_0 and Q4_K (repacked-8 order, which gemv() takes when n_rows % 8 == 0), n_rows % 16 == 0.
bool gemv_packable(TypeId type, int64_t n_rows, int64_t n_cols);

struct PackedMatrix {
  TypeId type = TypeId::F32;
  int64_t n_rows = 0, n_cols = 0;
  size_t row_bytes = 0;   // of the original rows: a panel is kPanelRows * row_bytes bytes
  size_t bytes = 0;
  std::unique_ptr<uint8_t, void (*)(uint8_t*)> data{nullptr, nullptr};
  const uint8_t* panel(int64_t p) const { return data.get() + static_cast<size_t>(p) * kPanelRows * row_bytes; }
};

// Packs rows (row r at w + r * row_bytes) into a new 64-byte aligned buffer, huge-page advised,
// threads over panels. Requires gemv_packable(type, n_rows, n_cols).
PackedMatrix pack_matrix(TypeId type, const void* w, size_t row_bytes, int64_t n_rows, int64_t n_cols);

// The 16 original rows of panel p, contiguous (16 * row_bytes bytes at out).
void unpack_panel(const PackedMatrix& m, int64_t p, uint8_t* out);

// y[r] = sum_i W[r][i] a[i] for every row; `act` as for gemv() (vec_dot_type(type) row). Equal
// bit for bit to gemv(m.type, original rows, ...). Runs packed_isa()'s kernels on the OpenMP team.
void gemv_packed(const PackedMatrix& m, const void* act, float* y);

// The kernels gemv_packed() runs here: Isa::kAvx512 (AVX-512 F/BW/VL/DQ + VNNI), else Isa::kAvx2
// (AVX2 + FMA + F16C), else Isa::kRef: each panel unpacked and given to gemv()'s dispatched
// variant (also under SHRINK_FORCE_REF=1).
Isa packed_isa();

// True when gemv_packed runs packed kernels here (packed_isa() != kRef). Both ISAs' packed
// kernels beat gemv() in place (bench_gemv, with --isa avx2 for the AVX2 ones); the unpacking
// path does not, and there gemv() on the original rows is the faster choice.
bool gemv_packed_preferred();

// One path, for tests and benchmarks: `isa`'s packed kernels, or Isa::kRef = unpack + gemv()'s
// scalar reference. Requires packed_isa_available(isa) (kRef: everywhere). `threads`: split the
// panels over the OpenMP team as gemv_packed() does; otherwise one thread.
bool packed_isa_available(Isa isa);
void gemv_packed_with(const PackedMatrix& m, const void* act, float* y, Isa isa, bool threads = false);

}  // namespace shrink::kernels
