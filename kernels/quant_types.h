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

// ---- Super-block ("k") and non-linear ("i") quants (ggml-common.h). QK_K weights per
// super-block; fp16 fields are raw IEEE half bits, as above. ----

constexpr int QK_K = 256;
constexpr int K_SCALE_SIZE = 12;

// Q2_K: 16 blocks of 16; weight = d * (scales[j] & 0xF) * q - dmin * (scales[j] >> 4), q in [0, 3].
// qs: 2-bit quants, byte l of each 32-byte group g holds weights 128g + l + 32k at bits 2k.
// 84 bytes / 256 weights = 2.625 bits per weight.
struct block_q2_K {
  uint8_t scales[QK_K / 16];  // low nibble: scale, high nibble: min, 4 bits each
  uint8_t qs[QK_K / 4];
  uint16_t d;                 // super-block scale of the scales
  uint16_t dmin;              // super-block scale of the mins
};
static_assert(sizeof(block_q2_K) == 84, "block_q2_K must be 84 bytes");

// Q3_K: 16 blocks of 16; weight = d * (s - 32) * (q - 4), q in [0, 7]: low 2 bits in qs (Q2_K
// order), bit 2 in hmask (bit k of byte m: weight 32k + m). Scales s are 6 bits: low nibbles in
// scales[0..7], high 2 bits in scales[8..11]. 110 bytes = 3.4375 bpw.
struct block_q3_K {
  uint8_t hmask[QK_K / 8];
  uint8_t qs[QK_K / 4];
  uint8_t scales[K_SCALE_SIZE];
  uint16_t d;
};
static_assert(sizeof(block_q3_K) == 110, "block_q3_K must be 110 bytes");

// Q4_K: 8 blocks of 32; weight = d * sc * q - dmin * m, q in [0, 15], sc and m 6 bits each
// packed in 12 bytes (ggml's get_scale_min_k4). qs: 32-byte groups, low nibbles weights
// 64g + l, high nibbles 64g + 32 + l. 144 bytes = 4.5 bpw.
struct block_q4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q4_K) == 144, "block_q4_K must be 144 bytes");

// Q5_K: Q4_K plus a fifth bit per weight: bit 2g (low nibble) / 2g+1 (high nibble) of qh[l]
// for group g. q in [0, 31]. 176 bytes = 5.5 bpw.
struct block_q5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q5_K) == 176, "block_q5_K must be 176 bytes");

// Q6_K: 16 blocks of 16; weight = d * scales[j] * (q - 32), q in [0, 63]: low 4 bits in ql,
// high 2 bits in qh, scales signed 8-bit. 210 bytes = 6.5625 bpw.
struct block_q6_K {
  uint8_t ql[QK_K / 2];
  uint8_t qh[QK_K / 4];
  int8_t scales[QK_K / 16];
  uint16_t d;
};
static_assert(sizeof(block_q6_K) == 210, "block_q6_K must be 210 bytes");

// Q8_K: intermediate type of ggml's dot products (float d, not fp16); never written to GGUF by
// shrink, listed for its geometry only. 292 bytes.
struct block_q8_K {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];
};
static_assert(sizeof(block_q8_K) == 292, "block_q8_K must be 292 bytes");

// The 16 levels of IQ4_NL/IQ4_XS (ggml-common.h kvalues_iq4nl): a non-uniform 4-bit grid.
constexpr int8_t kValuesIq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

constexpr int QK4_NL = 32;
// IQ4_NL: weight = d * kValuesIq4nl[q], q a nibble in Q4_0 order. 18 bytes / 32 = 4.5 bpw.
struct block_iq4_nl {
  uint16_t d;
  uint8_t qs[QK4_NL / 2];
};
static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl must be 18 bytes");

// IQ4_XS: 8 blocks of 32; weight = d * (ls - 32) * kValuesIq4nl[q], ls 6 bits: low nibble in
// scales_l (two per byte), high 2 bits at bit 2*ib of scales_h. 136 bytes = 4.25 bpw.
struct block_iq4_xs {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[QK_K / 64];
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_iq4_xs) == 136, "block_iq4_xs must be 136 bytes");

}  // namespace shrink
