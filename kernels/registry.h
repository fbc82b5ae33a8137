// The one list of every kernel variant: {type, ISA, quantize row, dequantize row, available()}.
// Dispatch picks from it, tests run every available entry against the reference, benchmarks
// time them; adding a variant here is all it takes for all three to see it.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/dot.h"
#include "kernels/quant_types.h"

namespace shrink::kernels {

// n weights (a multiple of the type's block size), contiguous, any alignment.
using QuantizeRowFn = void (*)(const float* x, void* y, int64_t n);
using DequantizeRowFn = void (*)(const void* x, float* y, int64_t n);
// One whole row of n_per_row weights with its importance matrix (imatrix[n_per_row], one weight
// per column), as ggml_quantize_chunk does it when given one.
using QuantizeRowImatrixFn = void (*)(const float* x, void* y, int64_t n_per_row, const float* imatrix);

// Instruction sets, in order of preference (dispatch takes the highest available).
enum class Isa : int { kRef = 0, kNeon = 1, kAvx2 = 2, kAvx512 = 3 };
const char* isa_name(Isa isa);  // "ref", "neon", "avx2", "avx512"

struct KernelVariant {
  TypeId type;
  Isa isa;
  QuantizeRowFn quantize;
  DequantizeRowFn dequantize;
  bool (*available)();  // true when this CPU can run it (reads the features dispatch cached)
  // The importance-matrix quantizer, or nullptr: the reference of every type ggml weights (not
  // F32, F16, BF16, Q8_0), and the AVX2/AVX-512 variants of the k-quants and IQ4 types.
  QuantizeRowImatrixFn quantize_imatrix;
};

// All variants compiled into this binary, the scalar reference of each type first.
std::span<const KernelVariant> kernel_variants();

// The scalar reference of `type`, or nullptr if shrink has no kernel for it.
const KernelVariant* reference_variant(TypeId type);

// Dot-product variants: one row of `weight_type` against one activation row in
// vec_dot_type(weight_type) (kernels/dot.h). Same rules as the quantize variants: reference
// first, dispatch takes the highest available ISA, tests run every available entry.
struct DotVariant {
  TypeId weight_type;
  Isa isa;
  VecDotFn vec_dot;
  bool (*available)();
};
std::span<const DotVariant> dot_variants();
const DotVariant* reference_dot(TypeId weight_type);

}  // namespace shrink::kernels
