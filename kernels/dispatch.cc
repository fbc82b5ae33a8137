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
