// fp16 / bf16 conversions (kernels/fp16.h and the F16/BF16 row kernels) against ggml:
//  - all 2^16 halves and all 2^16 bf16 values -> fp32: our reference, every SIMD variant and
//    ggml's to_float agree bit for bit (NaNs included);
//  - fp32 -> fp16 and fp32 -> bf16 over 2^32 / 61 evenly spaced bit patterns plus a random
//    offset (every exponent, both signs, NaN and Inf), the boundary values below, and the whole
//    2^32 space in the hidden "[exhaustive]" test (run with: test_kernels_fp16 "[exhaustive]").
//    This is also what lets the SIMD kernels use F16C's vcvtps2ph for block scales.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/registry.h"
#include "tests/ggml_oracle.h"
#include "tests/test_support.h"

namespace shrink {
namespace {

using kernels::KernelVariant;

const test::GgmlOracle& oracle() {
  static test::GgmlOracle o(test::ggml_base_library().string());
  if (!o.ok()) test::skip_program("ggml oracle unavailable: " + o.error());
  return o;
}

std::string rerun_hint() { return "rerun with: --rng-seed " + std::to_string(test::seed()); }

float f_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// All 65536 16-bit patterns through ggml's to_float, our reference and every SIMD variant.
void check_all_halves(TypeId type) {
  std::vector<uint16_t> h(65536);
  for (uint32_t i = 0; i < 65536; ++i) h[i] = static_cast<uint16_t>(i);
  std::vector<float> theirs(65536), ours(65536);
  REQUIRE(oracle().dequantize_row(static_cast<uint32_t>(type), h.data(), theirs.data(), 65536));
  for (uint32_t i = 0; i < 65536; ++i) {
    const float f = type == TypeId::F16 ? kernels::fp16_to_fp32(h[i]) : kernels::bf16_to_fp32(h[i]);
    if (std::memcmp(&f, &theirs[i], 4) != 0) {
      FAIL_CHECK(type_name(type) << " 0x" << std::hex << i << ": ours 0x" << kernels::fp32_bits(f) << " ggml 0x"
                                 << kernels::fp32_bits(theirs[i]));
      break;
    }
  }
  for (const KernelVariant& v : kernels::kernel_variants()) {
    if (v.type != type || !v.available()) continue;
    std::fill(ours.begin(), ours.end(), 0.0f);
    v.dequantize(h.data(), ours.data(), 65536);
    INFO(type_name(type) << "/" << kernels::isa_name(v.isa));
    CHECK(std::memcmp(ours.data(), theirs.data(), ours.size() * 4) == 0);
  }
}

TEST_CASE("all 2^16 halves and bf16 values convert to fp32 exactly as ggml", "[kernels][fp16]") {
  check_all_halves(TypeId::F16);
  check_all_halves(TypeId::BF16);
}

// fp32 bit patterns start, start+stride, ... (count of them), converted by ggml and by every
// variant of `type` (the reference included); returns false after reporting a mismatch.
bool check_fp32_patterns(TypeId type, uint64_t start, uint64_t stride, uint64_t count) {
  constexpr uint64_t kChunk = 1 << 20;
  std::vector<float> x(kChunk);
  std::vector<uint16_t> theirs(kChunk), ours(kChunk);
  for (uint64_t base = 0; base < count; base += kChunk) {
    const uint64_t n = std::min(kChunk, count - base);
    for (uint64_t i = 0; i < n; ++i) x[i] = f_bits(static_cast<uint32_t>(start + (base + i) * stride));
    oracle().quantize_chunk(static_cast<uint32_t>(type), x.data(), theirs.data(), 0, 1, static_cast<int64_t>(n));
    for (const KernelVariant& v : kernels::kernel_variants()) {
      if (v.type != type || !v.available()) continue;
      v.quantize(x.data(), ours.data(), static_cast<int64_t>(n));
      if (std::memcmp(ours.data(), theirs.data(), n * 2) != 0) {
        uint64_t i = 0;
        while (ours[i] == theirs[i]) ++i;
        FAIL_CHECK(type_name(type) << "/" << kernels::isa_name(v.isa) << ": fp32 0x" << std::hex
                                   << kernels::fp32_bits(x[i]) << " -> ours 0x" << ours[i] << " ggml 0x"
                                   << theirs[i] << std::dec << "; " << rerun_hint());
        return false;
      }
    }
  }
  return true;
}

TEST_CASE("fp32 -> fp16 / bf16 equal ggml on a strided sweep of all fp32 bit patterns", "[kernels][fp16]") {
  // 2^32 / 61 ~ 70M patterns per type; 61 is odd, so the sweep walks every exponent, sign and
  // low-mantissa residue. The random start moves the sweep on each seed.
  constexpr uint64_t kStride = 61;
  const uint64_t start = test::seed() % kStride;
  for (TypeId type : {TypeId::F16, TypeId::BF16}) {
    INFO(type_name(type) << " sweep from 0x" << std::hex << start);
    CHECK(check_fp32_patterns(type, start, kStride, ((uint64_t{1} << 32) - start + kStride - 1) / kStride));
  }
}

TEST_CASE("fp32 -> fp16 / bf16 boundary values", "[kernels][fp16]") {
  using kernels::fp32_to_bf16;
  using kernels::fp32_to_fp16;
  CHECK(fp32_to_fp16(65504.0f) == 0x7BFF);                           // largest half
  CHECK(fp32_to_fp16(std::nextafter(65520.0f, 0.0f)) == 0x7BFF);     // just below the inf threshold
  CHECK(fp32_to_fp16(65520.0f) == 0x7C00);                           // tie rounds to even: inf
  CHECK(fp32_to_fp16(-1e10f) == 0xFC00);
  CHECK(fp32_to_fp16(f_bits(0x7F800000u)) == 0x7C00);                // +inf
  CHECK(fp32_to_fp16(f_bits(0x7FC00001u)) == 0x7E00);                // NaN payload dropped
  CHECK(fp32_to_fp16(f_bits(0xFF800001u)) == 0xFE00);                // -sNaN keeps the sign
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);              // smallest subnormal half
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);              // tie to even: zero
  CHECK(fp32_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);
  CHECK(fp32_to_fp16(std::ldexp(3.0f, -25)) == 0x0002);              // 1.5 ulp: tie to even 2
  CHECK(fp32_to_fp16(std::ldexp(1023.5f, -24)) == 0x0400);           // rounds up into the normals
  CHECK(fp32_to_fp16(-0.0f) == 0x8000);
  CHECK(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);       // tie to even (down)
  CHECK(fp32_to_fp16(1.0f + std::ldexp(3.0f, -11)) == 0x3C02);       // tie to even (up)
  CHECK(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3F80);        // tie to even (down)
  CHECK(fp32_to_bf16(1.0f + std::ldexp(3.0f, -8)) == 0x3F82);        // tie to even (up)
  CHECK(fp32_to_bf16(f_bits(0x7F800001u)) == 0x7FC0);                // sNaN made quiet
  CHECK(fp32_to_bf16(f_bits(0x7F7FFFFFu)) == 0x7F80);                // FLT_MAX rounds to inf
  CHECK(fp32_to_bf16(f_bits(0x00008000u)) == 0x0000);                // subnormal tie to even
  CHECK(fp32_to_bf16(f_bits(0x00018000u)) == 0x0002);
}

TEST_CASE("fp32 -> fp16 / bf16 equal ggml on all 2^32 fp32 bit patterns", "[.][exhaustive][kernels][fp16]") {
  for (TypeId type : {TypeId::F16, TypeId::BF16}) {
    INFO(type_name(type));
    CHECK(check_fp32_patterns(type, 0, 1, uint64_t{1} << 32));
  }
}

}  // namespace
}  // namespace shrink
