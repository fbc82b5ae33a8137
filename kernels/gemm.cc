#include "kernels/gemm.h"

#include <algorithm>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/dot.h"
#include "kernels/gemm_kernels.h"
#include "kernels/gemv.h"

namespace shrink::kernels {
namespace {

// Weight bytes per row tile: half of a 32 KB L1d, so the activations of the current token and
// the output fit beside it.
constexpr size_t kRowTileBytes = 16 * 1024;
// Tokens per tile: 32 activation rows of 4096 Q8_0 values are 139 KB, inside a 512 KB-1 MB L2.
constexpr int64_t kTokenTile = 32;

// Reused across calls: one buffer per calling thread and purpose, grown, never shrunk.
std::vector<uint8_t>& thread_buffer(int which, size_t bytes) {
  thread_local std::vector<uint8_t> bufs[2];
  std::vector<uint8_t>& buf = bufs[which];
  if (buf.size() < bytes) buf.resize(bytes);
  return buf;
}

// Converts the activations once per call to vec_dot_type(type); F32 passes through.
const uint8_t* convert_activations(TypeId at, const float* x, int64_t n_cols, int64_t n_tokens, size_t* act_row) {
  if (at == TypeId::F32) {
    *act_row = static_cast<size_t>(n_cols) * sizeof(float);
    return reinterpret_cast<const uint8_t*>(x);
  }
  *act_row = row_size(at, n_cols);
  uint8_t* dst = thread_buffer(0, *act_row * static_cast<size_t>(n_tokens)).data();
  const size_t row = *act_row;
#pragma omp parallel for schedule(static) if (n_tokens > 1)
  for (int64_t t = 0; t < n_tokens; ++t) quantize_activation(at, x + t * n_cols, dst + static_cast<size_t>(t) * row, n_cols);
  return dst;
}

// The per-(token, row) dot product path: every type with a vec_dot, any CPU. Used with the
// scalar reference (SHRINK_FORCE_REF=1), on CPUs without AVX-512 VNNI, and for the types the
// ggml-order kernels below do not cover.
void gemm_by_dots(TypeId type, const uint8_t* wb, size_t row_bytes, int64_t n_rows, int64_t n_cols, const float* x,
                  int64_t n_tokens, float* y) {
  const VecDotFn dot = dispatched_dot(type)->vec_dot;
  size_t act_row = 0;
  const uint8_t* act = convert_activations(vec_dot_type(type), x, n_cols, n_tokens, &act_row);

  if (n_tokens == 1) {
#pragma omp parallel for schedule(static, 8)
    for (int64_t r = 0; r < n_rows; ++r) y[r] = dot(n_cols, wb + static_cast<size_t>(r) * row_bytes, act);
    return;
  }

  const int64_t rows_per_tile = std::max<int64_t>(4, static_cast<int64_t>(kRowTileBytes / std::max<size_t>(row_bytes, 1)));
  const int64_t n_row_tiles = (n_rows + rows_per_tile - 1) / rows_per_tile;
  const int64_t n_token_tiles = (n_tokens + kTokenTile - 1) / kTokenTile;
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t tt = 0; tt < n_token_tiles; ++tt) {
    for (int64_t rt = 0; rt < n_row_tiles; ++rt) {
      const int64_t r0 = rt * rows_per_tile, r1 = std::min(n_rows, r0 + rows_per_tile);
      const int64_t t0 = tt * kTokenTile, t1 = std::min(n_tokens, t0 + kTokenTile);
      for (int64_t t = t0; t < t1; ++t) {
        const uint8_t* a = act + static_cast<size_t>(t) * act_row;
        float* yt = y + t * n_rows;
        for (int64_t r = r0; r < r1; ++r) yt[r] = dot(n_cols, wb + static_cast<size_t>(r) * row_bytes, a);
      }
    }
  }
}

#if defined(SHRINK_HAVE_X86)

bool have_ggml_order_kernels() {
  static const bool ok = [] {
    const CpuFeatures& f = cpu_features();
    return !force_reference() && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni && f.fma && f.f16c;
  }();
  return ok;
}

// Rows per work item of the quantized kernels: 64 rows of 4096 Q4_0 weights are 147 KB (L2),
// reused by every 16-token group of the item's thread.
constexpr int64_t kRowBlock = 64;

// Runs `kernel(row0, n_rows_in_block, group)` over (row block, 16-token group) pairs.
template <typename Kernel>
void over_row_blocks_and_groups(int64_t n_rows, int64_t n_groups, Kernel kernel) {
  const int64_t n_row_blocks = (n_rows + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t rb = 0; rb < n_row_blocks; ++rb)
    for (int64_t g = 0; g < n_groups; ++g) {
      const int64_t r0 = rb * kRowBlock;
      kernel(r0, std::min(kRowBlock, n_rows - r0), g);
    }
}

// Converts the activations to `act_type` (Q8_0 or Q8_K) and packs them in 16-token groups for
// the quantized kernels, groups spread over the threads; the packed bytes live in a reused
// thread buffer, 64-byte aligned per group.
template <typename Packed, typename BytesFn, typename PackFn>
std::vector<Packed> pack_token_groups(TypeId act_type, const float* x, int64_t n_cols, int64_t n_tokens, int64_t nb,
                                      BytesFn packed_bytes, PackFn pack) {
  namespace k = gemm_avx512;
  size_t act_row = 0;
  const uint8_t* act = convert_activations(act_type, x, n_cols, n_tokens, &act_row);
  const int64_t n_groups = (n_tokens + k::kTokenGroup - 1) / k::kTokenGroup;
  const size_t group_bytes = (packed_bytes(nb) + 63) & ~static_cast<size_t>(63);
  uint8_t* packed = thread_buffer(1, group_bytes * static_cast<size_t>(n_groups)).data();
  std::vector<Packed> groups(static_cast<size_t>(n_groups));
#pragma omp parallel for schedule(static) if (n_groups > 1)
  for (int64_t g = 0; g < n_groups; ++g) {
    const int n = static_cast<int>(std::min<int64_t>(k::kTokenGroup, n_tokens - g * k::kTokenGroup));
    groups[static_cast<size_t>(g)] = pack(act + static_cast<size_t>(g * k::kTokenGroup) * act_row, act_row, n, nb,
                                          packed + group_bytes * static_cast<size_t>(g));
  }
  return groups;
}

void gemm_q8_0_acts(TypeId type, const uint8_t* wb, size_t row_bytes, int64_t n_rows, int64_t n_cols, const float* x,
                    int64_t n_tokens, float* y) {
  namespace k = gemm_avx512;
  const std::vector<k::PackedQ8_0> groups = pack_token_groups<k::PackedQ8_0>(TypeId::Q8_0, x, n_cols, n_tokens, n_cols / QK8_0,
                                                               k::packed_q8_0_bytes, k::pack_q8_0);
  const int64_t n_groups = static_cast<int64_t>(groups.size());
  // Q4_0 with n_rows % 8 == 0 is what llama.cpp repacks (q4_0_8x8, repack.cpp); its GEMM and
  // GEMV share one order, so every token count takes it.
  const bool repack = type == TypeId::Q4_0 && n_rows % 8 == 0;
  over_row_blocks_and_groups(n_rows, n_groups, [&](int64_t r0, int64_t nr, int64_t g) {
    const k::PackedQ8_0& a = groups[static_cast<size_t>(g)];
    const int n = static_cast<int>(std::min<int64_t>(k::kTokenGroup, n_tokens - g * k::kTokenGroup));
    float* yg = y + g * k::kTokenGroup * n_rows + r0;
    const uint8_t* w = wb + static_cast<size_t>(r0) * row_bytes;
    if (repack)
      k::q4_0_repack(w, row_bytes, nr, a, n, yg, n_rows);
    else
      k::q0_lanes8(type == TypeId::Q8_0 ? k::Q0Weights::kQ8_0 : k::Q0Weights::kQ4_0, w, row_bytes, nr, a, n, yg, n_rows);
  });
}

void gemm_q4_K_repacked(const uint8_t* wb, size_t row_bytes, int64_t n_rows, int64_t n_cols, const float* x,
                        int64_t n_tokens, float* y) {
  namespace k = gemm_avx512;
  const std::vector<k::PackedQ8_K> groups = pack_token_groups<k::PackedQ8_K>(TypeId::Q8_K, x, n_cols, n_tokens, n_cols / QK_K,
                                                               k::packed_q8_K_bytes, k::pack_q8_K);
  const int64_t n_groups = static_cast<int64_t>(groups.size());
  // ggml: GEMM order for tokens [0, n - n % 4), GEMV order for the last n % 4.
  const int64_t gemm_end = n_tokens - n_tokens % 4;
  over_row_blocks_and_groups(n_rows, n_groups, [&](int64_t r0, int64_t nr, int64_t g) {
    const int64_t t0 = g * k::kTokenGroup;
    const int n = static_cast<int>(std::min<int64_t>(k::kTokenGroup, n_tokens - t0));
    const int split = static_cast<int>(std::clamp<int64_t>(gemm_end - t0, 0, n));
    const uint8_t* w = wb + static_cast<size_t>(r0) * row_bytes;
    float* yg = y + t0 * n_rows + r0;
    if (split > 0) k::q4_K_repack(w, row_bytes, nr, groups[static_cast<size_t>(g)], 0, split, true, yg, n_rows);
    if (split < n) k::q4_K_repack(w, row_bytes, nr, groups[static_cast<size_t>(g)], split, n, false, yg, n_rows);
  });
}

void gemm_f32(const float* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const float* x, int64_t n_tokens,
              float* y) {
  namespace k = gemm_avx512;
  const int64_t ldw = static_cast<int64_t>(row_bytes / sizeof(float));
  // llamafile_sgemm takes F32 only for n_tokens >= 2, and tinyBLAS only when k % 16 == 0 and
  // m % 4 == 0 (tinyBLAS::matmul); everything else is ggml_vec_dot_f32 per output.
  const bool tiny = n_tokens >= 2 && n_cols % 16 == 0 && n_rows % 4 == 0;
  // Work items: 64 rows x 48 tokens (~256 + 192 KB of floats at 1024 columns).
  constexpr int64_t kRows = 64, kTokens = 48;
  const int64_t n_rb = (n_rows + kRows - 1) / kRows, n_tb = (n_tokens + kTokens - 1) / kTokens;
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t rb = 0; rb < n_rb; ++rb)
    for (int64_t tb = 0; tb < n_tb; ++tb) {
      const int64_t r0 = rb * kRows, t0 = tb * kTokens;
      const int64_t nr = std::min(kRows, n_rows - r0), nt = std::min(kTokens, n_tokens - t0);
      if (tiny)
        k::f32_tiny16(w + r0 * ldw, ldw, nr, n_cols, x + t0 * n_cols, nt, y + t0 * n_rows + r0, n_rows);
      else
        k::f32_vec_dot(w + r0 * ldw, ldw, nr, n_cols, x + t0 * n_cols, nt, y + t0 * n_rows + r0, n_rows);
    }
}

void gemm_f16(const uint16_t* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const float* x, int64_t n_tokens,
              float* y) {
  namespace k = gemm_avx512;
  size_t act_row = 0;
  const uint8_t* act = convert_activations(TypeId::F16, x, n_cols, n_tokens, &act_row);
  // ggml converts the activations to F16, then tinyBLAS takes the product under the same
  // conditions as for F32; otherwise ggml_vec_dot_f16 per output, which gemv() follows.
  if (!(n_tokens >= 2 && n_cols % 16 == 0 && n_rows % 4 == 0)) {
    for (int64_t t = 0; t < n_tokens; ++t)
      gemv(TypeId::F16, w, row_bytes, n_rows, n_cols, act + static_cast<size_t>(t) * act_row, y + t * n_rows);
    return;
  }
  const auto* xa = reinterpret_cast<const uint16_t*>(act);
  const int64_t ldw = static_cast<int64_t>(row_bytes / sizeof(uint16_t));
  constexpr int64_t kRows = 64, kTokens = 48;
  const int64_t n_rb = (n_rows + kRows - 1) / kRows, n_tb = (n_tokens + kTokens - 1) / kTokens;
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t rb = 0; rb < n_rb; ++rb)
    for (int64_t tb = 0; tb < n_tb; ++tb) {
      const int64_t r0 = rb * kRows, t0 = tb * kTokens;
      k::f16_tiny16(w + r0 * ldw, ldw, std::min(kRows, n_rows - r0), n_cols, xa + t0 * n_cols,
                    std::min(kTokens, n_tokens - t0), y + t0 * n_rows + r0, n_rows);
    }
}

#endif  // SHRINK_HAVE_X86

}  // namespace

bool can_gemm(TypeId type) { return has_vec_dot(type) && dispatched_dot(type) != nullptr; }

bool gemm_matches_ggml(TypeId type, int64_t n_rows) {
#if defined(SHRINK_HAVE_X86)
  if (!have_ggml_order_kernels()) return false;
  switch (type) {
    case TypeId::F32:
    case TypeId::F16:
    case TypeId::Q8_0:
    case TypeId::Q4_0: return true;
    case TypeId::Q4_K: return true;  // rows % 8 != 0: ggml's vec_dot order (kernels/x86/dot_avx512.cc)
    default: return false;
  }
#else
  (void)type;
  (void)n_rows;
  return false;
#endif
}

void gemm(TypeId type, const void* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const float* x,
          int64_t n_tokens, float* y) {
  const auto* wb = static_cast<const uint8_t*>(w);
  // One token (generation): the memory-bound GEMV kernels (kernels/gemv.h), in ggml's one-token
  // order. F32 stays below: gemv runs the dispatched dot for it, gemm_f32 ggml's vec_dot_f32.
  if (n_tokens == 1 && type != TypeId::F32) {
    size_t act_row = 0;
    const uint8_t* act = convert_activations(vec_dot_type(type), x, n_cols, 1, &act_row);
    gemv(type, w, row_bytes, n_rows, n_cols, act, y);
    return;
  }
#if defined(SHRINK_HAVE_X86)
  if (gemm_matches_ggml(type, n_rows)) {
    switch (type) {
      case TypeId::F32: return gemm_f32(static_cast<const float*>(w), row_bytes, n_rows, n_cols, x, n_tokens, y);
      case TypeId::F16: return gemm_f16(static_cast<const uint16_t*>(w), row_bytes, n_rows, n_cols, x, n_tokens, y);
      case TypeId::Q8_0:
      case TypeId::Q4_0: return gemm_q8_0_acts(type, wb, row_bytes, n_rows, n_cols, x, n_tokens, y);
      case TypeId::Q4_K:
        // Not repacked by llama.cpp: no tinyBLAS for Q4_K, so ggml's vec_dot per output.
        if (n_rows % 8 != 0) break;
        return gemm_q4_K_repacked(wb, row_bytes, n_rows, n_cols, x, n_tokens, y);
      default: break;
    }
  }
#endif
  gemm_by_dots(type, wb, row_bytes, n_rows, n_cols, x, n_tokens, y);
}

}  // namespace shrink::kernels
