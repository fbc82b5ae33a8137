#include "kernels/dispatch.h"

#include <array>
#include <cstdlib>
#include <cstring>

namespace shrink::kernels {
namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.f16c = __builtin_cpu_supports("f16c");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
#elif defined(__aarch64__)
  f.neon = true;  // Advanced SIMD is mandatory in AArch64
#endif
  return f;
}

constexpr size_t kMaxTypeId = 64;

struct Table {
  std::array<const KernelVariant*, kMaxTypeId> best{};
};

Table build() {
  Table t;
  const bool ref_only = force_reference();
  for (const KernelVariant& v : kernel_variants()) {
    const auto id = static_cast<size_t>(v.type);
    if (id >= kMaxTypeId || !v.available()) continue;
    if (ref_only && v.isa != Isa::kRef) continue;
    const KernelVariant*& slot = t.best[id];
    if (slot == nullptr || static_cast<int>(v.isa) > static_cast<int>(slot->isa)) slot = &v;
  }
  return t;
}

// Float and 32-block dot products keep the reference's accumulation order (one float sum over
// blocks, in order) unless SHRINK_SIMD_DOTS=1. The SIMD variants agree with it to ~1e-7 per dot,
// but llama.cpp's CPU backend on x86 (repacked Q4_0 GEMM, its F16/F32 order) sums in the
// reference's order, and with Q8_0 activation rounding downstream, a 1e-7 difference flips
// rounding ties: stories260K Q8_0/Q4_0 log-probabilities at the first positions of a chunk then
// differ from llama.cpp's by 0.012-0.049 instead of <= 1.1e-3 (tests/test_eval_llamacpp.cc).
// The k-quants (Q8_K activations) dispatch to SIMD.
bool block_order_free(TypeId t) {
  switch (t) {
    case TypeId::Q2_K: case TypeId::Q3_K: case TypeId::Q4_K: case TypeId::Q5_K: case TypeId::Q6_K:
    case TypeId::IQ4_XS:
      return true;
    default:
      return false;
  }
}

bool simd_float_order() {
  const char* e = std::getenv("SHRINK_SIMD_DOTS");
  return e != nullptr && std::strcmp(e, "1") == 0;
}

// Same choice for the dot products: the highest available ISA per weight type.
struct DotTable {
  std::array<const DotVariant*, kMaxTypeId> best{};
};

DotTable build_dots() {
  DotTable t;
  const bool ref_only = force_reference();
  for (const DotVariant& v : dot_variants()) {
    const auto id = static_cast<size_t>(v.weight_type);
    if (id >= kMaxTypeId || !v.available()) continue;
    if (ref_only && v.isa != Isa::kRef) continue;
    if (v.isa != Isa::kRef && !block_order_free(v.weight_type) && !simd_float_order()) continue;
    const DotVariant*& slot = t.best[id];
    if (slot == nullptr || static_cast<int>(v.isa) > static_cast<int>(slot->isa)) slot = &v;
  }
  return t;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

bool force_reference() {
  static const bool forced = [] {
    const char* e = std::getenv("SHRINK_FORCE_REF");
    return e != nullptr && std::strcmp(e, "1") == 0;
  }();
  return forced;
}

const KernelVariant* dispatched_variant(TypeId type) {
  static const Table table = build();
  const auto id = static_cast<size_t>(type);
  return id < kMaxTypeId ? table.best[id] : nullptr;
}

const DotVariant* dispatched_dot(TypeId weight_type) {
  static const DotTable table = build_dots();
  const auto id = static_cast<size_t>(weight_type);
  return id < kMaxTypeId ? table.best[id] : nullptr;
}

}  // namespace shrink::kernels
