// Q8_0 activation quantization (quantize_activation(TypeId::Q8_0, ...), kernels/dot.h) per ISA,
// for tests: the scalar reference and the AVX-512 form write the same bytes. ggml's x86 rule:
// d = amax / 127, q = round-half-even(x * (127 / amax)).
#pragma once

#include <cstdint>

namespace shrink::kernels {
namespace ref {
void quantize_act_q8_0(const float* x, void* dst, int64_t n);
}
namespace avx512 {
void quantize_act_q8_0(const float* x, void* dst, int64_t n);
}
}  // namespace shrink::kernels
