#include "kernels/registry.h"

#include "kernels/dispatch.h"
#include "kernels/ref/kquant_ref.h"
#include "kernels/ref/quant_ref.h"
#if defined(SHRINK_HAVE_X86)
#include "kernels/x86/kquant_avx2.h"
#include "kernels/x86/kquant_avx512.h"
#include "kernels/x86/quant_avx2.h"
#include "kernels/x86/quant_avx512.h"
#include "kernels/x86/dot_x86.h"
#endif
#if defined(SHRINK_HAVE_NEON)
#include "kernels/arm/quant_neon.h"
#endif

namespace shrink::kernels {
namespace {

bool always() { return true; }
#if defined(SHRINK_HAVE_X86)
bool has_avx2() {
  const CpuFeatures& f = cpu_features();
  return f.avx2 && f.fma && f.f16c;
}
// The AVX-512 file is compiled for F+BW+VL+DQ (and VNNI, unused by these kernels).
bool has_avx512() {
  const CpuFeatures& f = cpu_features();
  return has_avx2() && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
}
#endif
#if defined(SHRINK_HAVE_NEON)
bool has_neon() { return cpu_features().neon; }
#endif

#define SHRINK_VARIANT(TYPE, ISA, NS, SUFFIX, AVAIL) \
  KernelVariant { TypeId::TYPE, Isa::ISA, &NS::quantize_row_##SUFFIX, &NS::dequantize_row_##SUFFIX, &AVAIL, nullptr }
// A scalar reference that also has an importance-matrix quantizer.
#define SHRINK_REF_IMATRIX(TYPE, SUFFIX)                                                     \
  KernelVariant {                                                                            \
    TypeId::TYPE, Isa::kRef, &ref::quantize_row_##SUFFIX, &ref::dequantize_row_##SUFFIX, &always, \
        &ref::quantize_row_##SUFFIX##_imatrix                                                \
  }

// A SIMD variant with its own importance-matrix quantizer (same bytes as the reference's).
#define SHRINK_SIMD_IMATRIX(TYPE, ISA, NS, SUFFIX, AVAIL)                                   \
  KernelVariant {                                                                          \
    TypeId::TYPE, Isa::ISA, &NS::quantize_row_##SUFFIX, &NS::dequantize_row_##SUFFIX, &AVAIL, \
        &NS::quantize_row_##SUFFIX##_imatrix                                               \
  }
// The k-quants and IQ4 types (kernels/x86/kquant_*.cc).
#define SHRINK_K_TYPES(ISA, NS, AVAIL)                                                                     \
  SHRINK_SIMD_IMATRIX(Q2_K, ISA, NS, q2_K, AVAIL), SHRINK_SIMD_IMATRIX(Q3_K, ISA, NS, q3_K, AVAIL),         \
      SHRINK_SIMD_IMATRIX(Q4_K, ISA, NS, q4_K, AVAIL), SHRINK_SIMD_IMATRIX(Q5_K, ISA, NS, q5_K, AVAIL),     \
      SHRINK_SIMD_IMATRIX(Q6_K, ISA, NS, q6_K, AVAIL), SHRINK_SIMD_IMATRIX(IQ4_NL, ISA, NS, iq4_nl, AVAIL), \
      SHRINK_SIMD_IMATRIX(IQ4_XS, ISA, NS, iq4_xs, AVAIL)

#define SHRINK_ALL_TYPES(ISA, NS, AVAIL)                                                 \
  SHRINK_VARIANT(F16, ISA, NS, f16, AVAIL), SHRINK_VARIANT(BF16, ISA, NS, bf16, AVAIL), \
      SHRINK_VARIANT(Q8_0, ISA, NS, q8_0, AVAIL), SHRINK_VARIANT(Q4_0, ISA, NS, q4_0, AVAIL), \
      SHRINK_VARIANT(Q4_1, ISA, NS, q4_1, AVAIL), SHRINK_VARIANT(Q5_0, ISA, NS, q5_0, AVAIL), \
      SHRINK_VARIANT(Q5_1, ISA, NS, q5_1, AVAIL)

// Reference first (reference_variant() relies on it), then SIMD. F32 is a copy: ref only.
// The k-quants and IQ4 types have AVX2/AVX-512 variants only (NEON: reference).
const KernelVariant kVariants[] = {
    SHRINK_VARIANT(F32, kRef, ref, f32, always),
    SHRINK_VARIANT(F16, kRef, ref, f16, always),
    SHRINK_VARIANT(BF16, kRef, ref, bf16, always),
    SHRINK_VARIANT(Q8_0, kRef, ref, q8_0, always),
    SHRINK_REF_IMATRIX(Q4_0, q4_0),
    SHRINK_REF_IMATRIX(Q4_1, q4_1),
    SHRINK_REF_IMATRIX(Q5_0, q5_0),
    SHRINK_REF_IMATRIX(Q5_1, q5_1),
    SHRINK_REF_IMATRIX(Q2_K, q2_K),
    SHRINK_REF_IMATRIX(Q3_K, q3_K),
    SHRINK_REF_IMATRIX(Q4_K, q4_K),
    SHRINK_REF_IMATRIX(Q5_K, q5_K),
    SHRINK_REF_IMATRIX(Q6_K, q6_K),
    SHRINK_REF_IMATRIX(IQ4_NL, iq4_nl),
    SHRINK_REF_IMATRIX(IQ4_XS, iq4_xs),
#if defined(SHRINK_HAVE_X86)
    SHRINK_ALL_TYPES(kAvx2, avx2, has_avx2),
    SHRINK_K_TYPES(kAvx2, avx2, has_avx2),
    SHRINK_ALL_TYPES(kAvx512, avx512, has_avx512),
    SHRINK_K_TYPES(kAvx512, avx512, has_avx512),
#endif
#if defined(SHRINK_HAVE_NEON)
    SHRINK_ALL_TYPES(kNeon, neon, has_neon),
#endif
};

#undef SHRINK_ALL_TYPES
#undef SHRINK_K_TYPES
#undef SHRINK_SIMD_IMATRIX
#undef SHRINK_REF_IMATRIX
#undef SHRINK_VARIANT

#define SHRINK_DOT(TYPE, ISA, NS, FN, AVAIL) \
  DotVariant { TypeId::TYPE, Isa::ISA, &NS::FN, &AVAIL }
// Every weight type with a dot product, in one ISA namespace.
#define SHRINK_ALL_DOTS(ISA, NS, AVAIL)                                                                        \
  SHRINK_DOT(F32, ISA, NS, vec_dot_f32, AVAIL), SHRINK_DOT(F16, ISA, NS, vec_dot_f16, AVAIL),                   \
      SHRINK_DOT(BF16, ISA, NS, vec_dot_bf16, AVAIL), SHRINK_DOT(Q4_0, ISA, NS, vec_dot_q4_0_q8_0, AVAIL),      \
      SHRINK_DOT(Q4_1, ISA, NS, vec_dot_q4_1_q8_1, AVAIL), SHRINK_DOT(Q5_0, ISA, NS, vec_dot_q5_0_q8_0, AVAIL), \
      SHRINK_DOT(Q5_1, ISA, NS, vec_dot_q5_1_q8_1, AVAIL), SHRINK_DOT(Q8_0, ISA, NS, vec_dot_q8_0_q8_0, AVAIL), \
      SHRINK_DOT(IQ4_NL, ISA, NS, vec_dot_iq4_nl_q8_0, AVAIL), SHRINK_DOT(Q2_K, ISA, NS, vec_dot_q2_K_q8_K, AVAIL), \
      SHRINK_DOT(Q3_K, ISA, NS, vec_dot_q3_K_q8_K, AVAIL), SHRINK_DOT(Q4_K, ISA, NS, vec_dot_q4_K_q8_K, AVAIL), \
      SHRINK_DOT(Q5_K, ISA, NS, vec_dot_q5_K_q8_K, AVAIL), SHRINK_DOT(Q6_K, ISA, NS, vec_dot_q6_K_q8_K, AVAIL), \
      SHRINK_DOT(IQ4_XS, ISA, NS, vec_dot_iq4_xs_q8_K, AVAIL)

#if defined(SHRINK_HAVE_X86)
// The AVX-512 dot kernels use vpdpbusd (VNNI) as well.
bool has_avx512_vnni() { return has_avx512() && cpu_features().avx512vnni; }
#endif

// Reference first (reference_dot() relies on it). AVX-512 only where it has its own kernel
// (kernels/x86/dot_x86.h); the other types dispatch to AVX2 on such CPUs.
const DotVariant kDotVariants[] = {
    SHRINK_ALL_DOTS(kRef, ref, always),
#if defined(SHRINK_HAVE_X86)
    SHRINK_ALL_DOTS(kAvx2, avx2, has_avx2),
    SHRINK_DOT(F32, kAvx512, avx512, vec_dot_f32, has_avx512_vnni),
    SHRINK_DOT(F16, kAvx512, avx512, vec_dot_f16, has_avx512_vnni),
    SHRINK_DOT(Q8_0, kAvx512, avx512, vec_dot_q8_0_q8_0, has_avx512_vnni),
    SHRINK_DOT(Q4_0, kAvx512, avx512, vec_dot_q4_0_q8_0, has_avx512_vnni),
    SHRINK_DOT(Q4_K, kAvx512, avx512, vec_dot_q4_K_q8_K, has_avx512_vnni),
    SHRINK_DOT(Q6_K, kAvx512, avx512, vec_dot_q6_K_q8_K, has_avx512_vnni),
#endif
};

#undef SHRINK_ALL_DOTS
#undef SHRINK_DOT

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kRef: return "ref";
    case Isa::kNeon: return "neon";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

std::span<const KernelVariant> kernel_variants() { return kVariants; }

const KernelVariant* reference_variant(TypeId type) {
  for (const KernelVariant& v : kVariants)
    if (v.type == type && v.isa == Isa::kRef) return &v;
  return nullptr;
}

std::span<const DotVariant> dot_variants() { return kDotVariants; }

const DotVariant* reference_dot(TypeId weight_type) {
  for (const DotVariant& v : kDotVariants)
    if (v.weight_type == weight_type && v.isa == Isa::kRef) return &v;
  return nullptr;
}

}  // namespace shrink::kernels
