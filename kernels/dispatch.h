// Dispatch: CPU features are read once per process (__builtin_cpu_supports), then every type
// gets the best available variant from the registry. SHRINK_FORCE_REF=1 in the environment
// forces the scalar reference for every type (debugging, bisecting a SIMD bug).
#pragma once

#include "kernels/registry.h"

namespace shrink::kernels {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512vnni = false;
  bool neon = false;
};

// Read on first use, then cached.
const CpuFeatures& cpu_features();
// SHRINK_FORCE_REF=1 was set when the process first asked.
bool force_reference();

// The variant quantize_rows()/dequantize_rows() use for `type`, or nullptr if none.
const KernelVariant* dispatched_variant(TypeId type);

// The dot-product variant vec_dot() uses for `weight_type`, or nullptr if none.
const DotVariant* dispatched_dot(TypeId weight_type);

}  // namespace shrink::kernels
