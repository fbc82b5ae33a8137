#include "kernels/gemv_packed.h"

#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/gemv.h"
#if defined(SHRINK_HAVE_X86)
#include "kernels/x86/gemv_x86.h"
#endif

namespace shrink::kernels {
namespace {

// Weights per block of `t` (a packed unit holds this block of all 16 rows of a panel).
int64_t unit_cols(TypeId t) { return t == TypeId::Q4_K ? QK_K : 32; }

// Original block of `type` <-> its slot in a packed unit, for row r of the panel. `to_packed`
// picks the direction, so both directions share one statement of the layout (gemv_packed.h).
void move_block(TypeId type, uint8_t* unit, int r, uint8_t* block, bool to_packed) {
  auto mv = [&](size_t packed_at, size_t block_at, size_t n, uint8_t flip = 0) {
    for (size_t k = 0; k < n; ++k) {
      if (to_packed)
        unit[packed_at + k] = static_cast<uint8_t>(block[block_at + k] ^ flip);
      else
        block[block_at + k] = static_cast<uint8_t>(unit[packed_at + k] ^ flip);
    }
  };
  const size_t rr = static_cast<size_t>(r);
  switch (type) {
    case TypeId::Q4_0:  // d (2), qs (16)
      mv(256 + 2 * rr, 0, 2);
      for (size_t i = 0; i < 4; ++i) mv(64 * i + 4 * rr, 2 + 4 * i, 4);
      break;
    case TypeId::Q8_0:  // d (2), qs (32)
      mv(512 + 2 * rr, 0, 2);
      mv(64 * (rr / 2) + 32 * (rr % 2), 2, 32, 0x80);
      break;
    case TypeId::Q4_K:  // d (2), dmin (2), scales (12), qs (128)
      mv(2 * rr, 0, 2);
      mv(32 + 2 * rr, 2, 2);
      for (size_t c = 0; c < 3; ++c) mv(64 + 64 * c + 4 * rr, 4 + 4 * c, 4);
      for (size_t i = 0; i < 32; ++i) mv(256 + 64 * i + 4 * rr, 16 + 4 * i, 4);
      break;
    default:
      std::abort();  // gemv_packable() said no
  }
}

void free_aligned(uint8_t* p) { std::free(p); }

// Below this many weight bytes one thread is faster than waking the team (as gemv()).
constexpr size_t kMinParallelBytes = size_t{1} << 20;

// One buffer per calling thread, 64-byte aligned, grown, never shrunk.
uint8_t* thread_buffer(int which, size_t bytes) {
  thread_local std::vector<uint8_t> bufs[2];
  std::vector<uint8_t>& buf = bufs[which];
  if (buf.size() < bytes + 64) buf.resize(bytes + 64);
  const auto p = reinterpret_cast<uintptr_t>(buf.data());
  return buf.data() + ((64 - p % 64) % 64);
}

struct SimdKernel;  // x86 only
#if defined(SHRINK_HAVE_X86)
struct SimdKernel {
  size_t (*scratch_bytes)(int64_t n_cols);
  void (*prepare)(const void* act, int64_t n_cols, void* scratch);
  PackedPanelsFn panels;
  // 0: each thread takes one contiguous share of the panels. Otherwise the threads take chunks
  // of about this many bytes as they finish (dynamic schedule), which evens out a thread that
  // runs slower: the upper half of a 256 MB matrix read 5-20% slower here whichever thread had
  // it. Measured per kernel (bench_gemv, three runs with both schedules side by side): AVX-512
  // Q4_K 13-20% and Q8_0 3-5% faster with 4 MB chunks, Q4_0 0-8% slower (kept contiguous).
  size_t chunk_bytes;
};
#define SHRINK_PACKED_KERNEL(NS, NAME, CHUNK) \
  SimdKernel { &NS::NAME##_scratch, &NS::NAME##_prepare, &NS::NAME##_panels, CHUNK }
// The packed kernels of `isa` (kAvx512 or kAvx2) for type t.
const SimdKernel* simd_kernel(Isa isa, TypeId t) {
  constexpr size_t k4MB = size_t{4} << 20;
  static const SimdKernel k512[3] = {SHRINK_PACKED_KERNEL(avx512, packed_q8_0, k4MB),
                                     SHRINK_PACKED_KERNEL(avx512, packed_q4_0, 0),
                                     SHRINK_PACKED_KERNEL(avx512, packed_q4_K, k4MB)};
  // The AVX2 kernels were measured with contiguous shares only.
  static const SimdKernel k256[3] = {SHRINK_PACKED_KERNEL(avx2, packed_q8_0, 0), SHRINK_PACKED_KERNEL(avx2, packed_q4_0, 0),
                                     SHRINK_PACKED_KERNEL(avx2, packed_q4_K, 0)};
  const SimdKernel* k = isa == Isa::kAvx512 ? k512 : k256;
  switch (t) {
    case TypeId::Q8_0: return &k[0];
    case TypeId::Q4_0: return &k[1];
    case TypeId::Q4_K: return &k[2];
    default: return nullptr;
  }
}
#undef SHRINK_PACKED_KERNEL
#endif

// Panels [p0, p1) of one thread. SIMD: two streams, the first and second half of the range side
// by side (see gemv_packed.h for why). Otherwise each panel is unpacked and given to `v`.
void run_panels(const PackedMatrix& m, int64_t p0, int64_t p1, const void* act, const void* scratch, float* y,
                const SimdKernel* simd, const GemvVariant* v) {
#if defined(SHRINK_HAVE_X86)
  if (simd != nullptr) {
    const PackedPanelsFn fn = simd->panels;
    const int64_t h = (p1 - p0) / 2;
    for (int64_t i = 0; i < h; ++i) {
      const uint8_t* two[2] = {m.panel(p0 + i), m.panel(p0 + h + i)};
      float* out[2] = {y + (p0 + i) * kPanelRows, y + (p0 + h + i) * kPanelRows};
      fn(two, 2, m.n_cols, act, scratch, out);
    }
    if ((p1 - p0) % 2 != 0) {
      const uint8_t* one[1] = {m.panel(p1 - 1)};
      float* out[1] = {y + (p1 - 1) * kPanelRows};
      fn(one, 1, m.n_cols, act, scratch, out);
    }
    return;
  }
#endif
  (void)simd;
  uint8_t* rows = thread_buffer(1, kPanelRows * m.row_bytes);
  for (int64_t p = p0; p < p1; ++p) {
    unpack_panel(m, p, rows);
    v->rows(rows, m.row_bytes, kPanelRows, m.n_cols, act, scratch, y + p * kPanelRows);
  }
}

const GemvVariant* reference_variant(TypeId type, GemvOrder order) {
  for (const GemvVariant& v : gemv_variants())
    if (v.type == type && v.order == order && v.isa == Isa::kRef) return &v;
  return nullptr;
}

// `isa`: kAvx512 or kAvx2 run that ISA's packed kernels, kRef unpacks panels for `v`.
void run(const PackedMatrix& m, const void* act, float* y, Isa isa, const GemvVariant* v, bool threads) {
  const int64_t n_panels = m.n_rows / kPanelRows;
  size_t scratch_bytes = 0;
  void (*prepare)(const void*, int64_t, void*) = nullptr;
  const SimdKernel* simd = nullptr;
#if defined(SHRINK_HAVE_X86)
  if (isa != Isa::kRef) {
    simd = simd_kernel(isa, m.type);
    scratch_bytes = simd->scratch_bytes(m.n_cols);
    prepare = simd->prepare;
  }
#endif
  if (simd == nullptr) {
    scratch_bytes = v->scratch_bytes(m.n_cols);
    prepare = v->prepare;
  }
  void* scratch = thread_buffer(0, scratch_bytes);
  if (prepare != nullptr) prepare(act, m.n_cols, scratch);
  const bool parallel = threads && m.bytes >= kMinParallelBytes;
  if (simd != nullptr && simd->chunk_bytes > 0 && parallel) {
    const int64_t per = std::max<int64_t>(2, static_cast<int64_t>(simd->chunk_bytes / (kPanelRows * m.row_bytes)));
    const int64_t n_chunks = (n_panels + per - 1) / per;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t c = 0; c < n_chunks; ++c) run_panels(m, c * per, std::min(n_panels, (c + 1) * per), act, scratch, y, simd, v);
    return;
  }
#pragma omp parallel if (parallel)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t per = (n_panels + nt - 1) / nt;
    const int64_t p0 = std::min(n_panels, t * per), p1 = std::min(n_panels, p0 + per);
    if (p0 < p1) run_panels(m, p0, p1, act, scratch, y, simd, v);
  }
}

}  // namespace

bool gemv_packable(TypeId type, int64_t n_rows, int64_t n_cols) {
  if (type != TypeId::Q8_0 && type != TypeId::Q4_0 && type != TypeId::Q4_K) return false;
  return n_rows > 0 && n_rows % kPanelRows == 0 && n_cols > 0 && n_cols % unit_cols(type) == 0;
}

PackedMatrix pack_matrix(TypeId type, const void* w, size_t row_bytes, int64_t n_rows, int64_t n_cols) {
  if (!gemv_packable(type, n_rows, n_cols)) std::abort();
  PackedMatrix m;
  m.type = type;
  m.n_rows = n_rows;
  m.n_cols = n_cols;
  m.row_bytes = row_size(type, n_cols);
  m.bytes = m.row_bytes * static_cast<size_t>(n_rows);
  // 2 MB alignment lets the kernel back the buffer with huge pages: one TLB entry per 2 MB of a
  // stream that touches every byte once.
  constexpr size_t kAlign = size_t{2} << 20;
  const size_t rounded = (m.bytes + kAlign - 1) / kAlign * kAlign;
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(kAlign, rounded));
  if (p == nullptr) throw std::bad_alloc();
  ::madvise(p, rounded, MADV_HUGEPAGE);
  m.data = std::unique_ptr<uint8_t, void (*)(uint8_t*)>(p, &free_aligned);

  const auto* src = static_cast<const uint8_t*>(w);
  const int64_t n_units = n_cols / unit_cols(type);
  const size_t block = m.row_bytes / static_cast<size_t>(n_units);
  const size_t unit = kPanelRows * block;
#pragma omp parallel for schedule(static) if (m.bytes >= kMinParallelBytes)
  for (int64_t pn = 0; pn < n_rows / kPanelRows; ++pn) {
    uint8_t* panel = p + static_cast<size_t>(pn) * kPanelRows * m.row_bytes;
    for (int r = 0; r < kPanelRows; ++r) {
      const uint8_t* row = src + static_cast<size_t>(pn * kPanelRows + r) * row_bytes;
      for (int64_t u = 0; u < n_units; ++u)
        move_block(type, panel + static_cast<size_t>(u) * unit, r, const_cast<uint8_t*>(row + static_cast<size_t>(u) * block),
                   true);
    }
  }
  return m;
}

void unpack_panel(const PackedMatrix& m, int64_t p, uint8_t* out) {
  const int64_t n_units = m.n_cols / unit_cols(m.type);
  const size_t block = m.row_bytes / static_cast<size_t>(n_units);
  const size_t unit = kPanelRows * block;
  auto* panel = const_cast<uint8_t*>(m.panel(p));
  for (int r = 0; r < kPanelRows; ++r)
    for (int64_t u = 0; u < n_units; ++u)
      move_block(m.type, panel + static_cast<size_t>(u) * unit, r,
                 out + static_cast<size_t>(r) * m.row_bytes + static_cast<size_t>(u) * block, false);
}

bool packed_isa_available(Isa isa) {
#if defined(SHRINK_HAVE_X86)
  const CpuFeatures& f = cpu_features();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  switch (isa) {
    case Isa::kRef: return true;
    case Isa::kAvx2: return avx2;
    case Isa::kAvx512: return avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni;
    default: return false;
  }
#else
  return isa == Isa::kRef;
#endif
}

Isa packed_isa() {
  if (force_reference()) return Isa::kRef;
  if (packed_isa_available(Isa::kAvx512)) return Isa::kAvx512;
  if (packed_isa_available(Isa::kAvx2)) return Isa::kAvx2;
  return Isa::kRef;
}

bool gemv_packed_preferred() { return packed_isa() != Isa::kRef; }

void gemv_packed(const PackedMatrix& m, const void* act, float* y) {
  const Isa isa = packed_isa();
  const GemvVariant* v = isa == Isa::kRef ? dispatched_gemv(m.type, gemv_order(m.type, m.n_rows)) : nullptr;
  run(m, act, y, isa, v, true);
}

void gemv_packed_with(const PackedMatrix& m, const void* act, float* y, Isa isa, bool threads) {
  if (!packed_isa_available(isa)) std::abort();
  run(m, act, y, isa, isa == Isa::kRef ? reference_variant(m.type, gemv_order(m.type, m.n_rows)) : nullptr, threads);
}

}  // namespace shrink::kernels
