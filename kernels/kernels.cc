// quantize_rows / dequantize_rows: the dispatched row kernel, spread over OpenMP threads.
//
// Rows are contiguous in both src and dst and every block is independent, so n_rows rows are
// one flat run of blocks; threads take chunks of kChunkWeights weights (whole blocks). That
// also parallelises a single long row (a 1-row tensor of 100M weights).
//
// NaN/Inf policy: see kernels/ref/quant_ref.cc. In short: shrink refuses non-finite weights
// before quantizing unless the user allows them; then F32/F16/BF16 carry them exactly as ggml
// does and block types produce unspecified (but memory-safe) bytes for the affected blocks.
#include "kernels/kernels.h"

#include <omp.h>

#include "kernels/dispatch.h"

namespace shrink::kernels {
namespace {

// 64 Ki weights = 256 KiB of fp32 input per chunk: big enough that scheduling costs nothing,
// small enough that 2..64 threads stay balanced on a noisy machine.
constexpr int64_t kChunkWeights = 1 << 16;

// fn(first, count) over [0, n_items) in runs of `per_chunk` items, runs spread over threads.
template <class Fn>
void for_each_run(int64_t n_items, int64_t per_chunk, Fn&& fn) {
  const int64_t n_chunks = (n_items + per_chunk - 1) / per_chunk;
#pragma omp parallel for schedule(dynamic, 1) if (n_chunks > 1)
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t b0 = c * per_chunk;
    const int64_t b1 = b0 + per_chunk < n_items ? b0 + per_chunk : n_items;
    fn(b0, b1 - b0);
  }
}

template <class Fn>
void for_each_chunk(int64_t n_blocks, int64_t block_size, Fn&& fn) {
  const int64_t chunk_blocks = kChunkWeights / block_size > 0 ? kChunkWeights / block_size : 1;
  for_each_run(n_blocks, chunk_blocks, fn);
}

}  // namespace

bool can_quantize(TypeId type) { return dispatched_variant(type) != nullptr; }
bool can_dequantize(TypeId type) { return dispatched_variant(type) != nullptr; }
bool uses_imatrix(TypeId type) {
  const KernelVariant* r = reference_variant(type);
  return r != nullptr && r->quantize_imatrix != nullptr;
}

size_t quantize_rows(TypeId type, const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                     const float* imatrix) {
  const KernelVariant* v = dispatched_variant(type);
  if (v == nullptr || n_rows <= 0 || n_per_row <= 0 || !row_fits(type, n_per_row)) return 0;
  const TypeTraits& t = traits(type);
  const KernelVariant* r = reference_variant(type);
  if (imatrix != nullptr && r != nullptr && r->quantize_imatrix != nullptr) {
    // With an imatrix the unit of work is a whole row (the legacy types weight by the row's
    // mean square), so threads take runs of rows. The dispatched variant's imatrix quantizer
    // when it has one (k-quants, IQ4), else the reference's.
    const KernelVariant* q = v->quantize_imatrix != nullptr ? v : r;
    const size_t rs = row_size(type, n_per_row);
    const int64_t rows_per_chunk = n_per_row >= kChunkWeights ? 1 : kChunkWeights / n_per_row;
    for_each_run(n_rows, rows_per_chunk, [&](int64_t r0, int64_t nr) {
      for (int64_t row = r0; row < r0 + nr; ++row)
        q->quantize_imatrix(src + row * n_per_row, static_cast<char*>(dst) + row * static_cast<int64_t>(rs),
                            n_per_row, imatrix);
    });
    return static_cast<size_t>(n_rows) * rs;
  }
  const int64_t n_blocks = n_rows * (n_per_row / t.block_size);
  for_each_chunk(n_blocks, t.block_size, [&](int64_t b0, int64_t nb) {
    v->quantize(src + b0 * t.block_size, static_cast<char*>(dst) + b0 * static_cast<int64_t>(t.type_size),
                nb * t.block_size);
  });
  return static_cast<size_t>(n_rows) * row_size(type, n_per_row);
}

void dequantize_rows(TypeId type, const void* src, float* dst, int64_t n_rows, int64_t n_per_row) {
  const KernelVariant* v = dispatched_variant(type);
  if (v == nullptr || n_rows <= 0 || n_per_row <= 0 || !row_fits(type, n_per_row)) return;
  const TypeTraits& t = traits(type);
  const int64_t n_blocks = n_rows * (n_per_row / t.block_size);
  for_each_chunk(n_blocks, t.block_size, [&](int64_t b0, int64_t nb) {
    v->dequantize(static_cast<const char*>(src) + b0 * static_cast<int64_t>(t.type_size),
                  dst + b0 * t.block_size, nb * t.block_size);
  });
}

const char* active_isa() {
  static const char* name = [] {
    Isa best = Isa::kRef;
    for (const KernelVariant& v : kernel_variants()) {
      const KernelVariant* d = dispatched_variant(v.type);
      if (d != nullptr && static_cast<int>(d->isa) > static_cast<int>(best)) best = d->isa;
    }
    return isa_name(best);
  }();
  return name;
}

}  // namespace shrink::kernels
