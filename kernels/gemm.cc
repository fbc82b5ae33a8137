#include "kernels/gemm.h"

#include <algorithm>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/dot.h"

namespace shrink::kernels {
namespace {

// Weight bytes per row tile: half of a 32 KB L1d, so the activations of the current token and
// the output fit beside it.
constexpr size_t kRowTileBytes = 16 * 1024;
// Tokens per tile: 32 activation rows of 4096 Q8_0 values are 139 KB, inside a 512 KB-1 MB L2.
constexpr int64_t kTokenTile = 32;

// Reused across calls: one activation buffer per calling thread, grown, never shrunk.
std::vector<uint8_t>& activation_buffer(size_t bytes) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < bytes) buf.resize(bytes);
  return buf;
}

}  // namespace

bool can_gemm(TypeId type) { return has_vec_dot(type) && dispatched_dot(type) != nullptr; }

void gemm(TypeId type, const void* w, size_t row_bytes, int64_t n_rows, int64_t n_cols, const float* x,
          int64_t n_tokens, float* y) {
  const VecDotFn dot = dispatched_dot(type)->vec_dot;
  const auto* wb = static_cast<const uint8_t*>(w);
  const TypeId at = vec_dot_type(type);

  // F32 weights take the float activations as they are; others are converted once per call.
  const uint8_t* act = reinterpret_cast<const uint8_t*>(x);
  size_t act_row = static_cast<size_t>(n_cols) * sizeof(float);
  if (at != TypeId::F32) {
    act_row = row_size(at, n_cols);
    std::vector<uint8_t>& buf = activation_buffer(act_row * static_cast<size_t>(n_tokens));
    uint8_t* dst = buf.data();
#pragma omp parallel for schedule(static) if (n_tokens > 1)
    for (int64_t t = 0; t < n_tokens; ++t)
      quantize_activation(at, x + t * n_cols, dst + static_cast<size_t>(t) * act_row, n_cols);
    act = dst;
  }

  if (n_tokens == 1) {
#pragma omp parallel for schedule(static, 8)
    for (int64_t r = 0; r < n_rows; ++r) y[r] = dot(n_cols, wb + static_cast<size_t>(r) * row_bytes, act);
    return;
  }

  const int64_t rows_per_tile = std::max<int64_t>(4, static_cast<int64_t>(kRowTileBytes / std::max<size_t>(row_bytes, 1)));
  const int64_t n_row_tiles = (n_rows + rows_per_tile - 1) / rows_per_tile;
  const int64_t n_token_tiles = (n_tokens + kTokenTile - 1) / kTokenTile;
  // Token tiles outermost within a thread's range of row tiles keeps each thread's rows hot;
  // collapsing both loops gives every thread work even when one dimension is small.
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

}  // namespace shrink::kernels
