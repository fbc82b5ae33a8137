// The one shared header between formats/ and kernels/: ggml type ids, the geometry of
// every type (the traits table is the only place block sizes live), and one struct per
// on-disk block of the types shrink quantizes, with its layout and bits per weight.
//
// Type ids and block geometry are ggml's (ggml.h `enum ggml_type`, ggml.c `type_traits`),
// because GGUF stores these ids verbatim and llama.cpp must read our files unchanged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace shrink {

enum class TypeId : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3,  // 4 and 5 (Q4_2, Q4_3) were removed from ggml
  Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  // 31..33 (Q4_0_4_4, Q4_0_4_8, Q4_0_8_8) were removed
  TQ1_0 = 34, TQ2_0 = 35,
  // 36..38 (IQ4_NL_4_4, ...) were removed
  MXFP4 = 39,
};

struct TypeTraits {
  TypeId id;
  std::string_view name;  // ggml's lower-case name: "q4_0", "f16", ...
  int64_t block_size;     // weights per block
  size_t type_size;       // bytes per block
  bool quantized;         // a block format (not a plain scalar type)
};

// Traits of a known type id, or nullptr (unknown/removed ids: a GGUF naming one is refused).
const TypeTraits* type_traits(uint32_t id);
inline const TypeTraits& traits(TypeId id) { return *type_traits(static_cast<uint32_t>(id)); }
std::optional<TypeId> type_from_name(std::string_view name);  // case-insensitive
inline std::string_view type_name(TypeId id) { return traits(id).name; }

// Bytes of one row of n weights; n must be a multiple of the block size (callers check
// with row_fits()). Products over rows are overflow-checked by the readers, not here.
inline size_t row_size(TypeId id, int64_t n) {
  const TypeTraits& t = traits(id);
  return static_cast<size_t>(n / t.block_size) * t.type_size;
}
inline bool row_fits(TypeId id, int64_t n) { return n % traits(id).block_size == 0; }

// ---- Block layouts (ggml-common.h). fp16 fields are raw IEEE half bits. ----

constexpr int QK4_0 = 32;
// Q4_0: d * q, q in [-8, 7] stored as nibble q+8. Low nibbles hold weights 0..15,
// high nibbles 16..31. 18 bytes / 32 weights = 4.5 bits per weight.
struct block_q4_0 {
  uint16_t d;
  uint8_t qs[QK4_0 / 2];
};
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 must be 18 bytes");

constexpr int QK4_1 = 32;
// Q4_1: d * q + m, q in [0, 15]; same nibble order as Q4_0. 20 bytes = 5.0 bpw.
struct block_q4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[QK4_1 / 2];
};
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 must be 20 bytes");

constexpr int QK5_0 = 32;
// Q5_0: d * q, q in [-16, 15] stored as 5 bits q+16: low 4 bits in qs (Q4_0 order),
// bit 4 of weight j in bit j of qh (little-endian uint32). 22 bytes = 5.5 bpw.
struct block_q5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[QK5_0 / 2];
};
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 must be 22 bytes");

constexpr int QK5_1 = 32;
// Q5_1: d * q + m, q in [0, 31]; bits as Q5_0. 24 bytes = 6.0 bpw.
struct block_q5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[QK5_1 / 2];
};
static_assert(sizeof(block_q5_1) == 24, "block_q5_1 must be 24 bytes");

constexpr int QK8_0 = 32;
// Q8_0: d * q, q in [-127, 127]. 34 bytes = 8.5 bpw.
struct block_q8_0 {
  uint16_t d;
  int8_t qs[QK8_0];
};
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must be 34 bytes");

constexpr int QK8_1 = 32;
// Q8_1: like Q8_0 plus s = d * sum(q), used for activations against Q4_1/Q5_1. 36 bytes.
struct block_q8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[QK8_1];
};
static_assert(sizeof(block_q8_1) == 36, "block_q8_1 must be 36 bytes");

}  // namespace shrink
