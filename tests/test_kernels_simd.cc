// Every SIMD variant in the registry that this CPU can run (not only the one dispatch picks)
// against the scalar reference:
//  - quantize: identical bytes, on shapes that break tails (1 block, block-1 / block / block+1
//    multiples of the vector width, odd counts, long rows) and unaligned pointers, over random
//    rows and every edge-case block. F16/BF16 also on every bit pattern incl. NaN/Inf, since
//    their policy is "exactly as ggml".
//  - dequantize: identical float bits on bytes the reference produced; on arbitrary bytes
//    (NaN/Inf scales included) identical bits or both NaN (x86 picks which NaN payload survives
//    an add of two NaNs by operand order, which the compiler may swap in scalar code).
//  - quantize_rows / dequantize_rows (OpenMP, chunks that cut rows) equal the reference on odd
//    row counts.
// Needs no ggml: runs wherever the kernels build.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>

#include "kernels/dispatch.h"
#include "kernels/kernels.h"
#include "kernels/registry.h"
#include "tests/test_kernels_data.h"
#include "tests/test_support.h"

namespace shrink {
namespace {

using namespace shrink::test::kernel_data;
using kernels::KernelVariant;

std::string rerun_hint() { return "rerun with: --rng-seed " + std::to_string(test::seed()); }

std::string describe(const KernelVariant& v) {
  return std::string(type_name(v.type)) + "/" + kernels::isa_name(v.isa);
}

// Weights counts to test for a type: block multiples around 1, 4, 8, 16, 32 blocks (vector
// widths and unroll factors) and a long odd one; every count 1..70 for the 1-weight types.
std::vector<int64_t> tail_shapes(TypeId type) {
  const int64_t bs = traits(type).block_size;
  std::vector<int64_t> n;
  if (bs == 1) {
    for (int64_t k = 1; k <= 70; ++k) n.push_back(k);
    for (int64_t k : {127, 128, 129, 255, 256, 257, 1000, 4103}) n.push_back(k);
  } else {
    for (int64_t b : {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 129, 257}) n.push_back(b * bs);
  }
  return n;
}

// n weights: random rows, edge-case blocks, and (for F16/BF16) every kind of bit pattern.
std::vector<float> test_input(Rng& rng, TypeId type, int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  const auto cases = edge_cases();
  int64_t i = 0;
  while (i < n) {
    const int pick = uniform_int(rng, 0, 3);
    if (traits(type).block_size == 1 && pick == 0) {  // any 32-bit pattern, NaN/Inf included
      x[i++] = from_bits(static_cast<uint32_t>(rng()));
    } else if (pick == 1 && n - i >= 32) {
      cases[static_cast<size_t>(uniform_int(rng, 0, static_cast<int>(cases.size()) - 1))].fill(rng, x.data() + i);
      i += 32;
    } else {
      const int64_t len = std::min<int64_t>(n - i, 32);
      fill_random_row(rng, x.data() + i, len);
      i += len;
    }
  }
  return x;
}

std::string first_byte_diff(const uint8_t* a, const uint8_t* b, size_t size, size_t block_bytes) {
  for (size_t k = 0; k < size; ++k) {
    if (a[k] != b[k]) {
      std::ostringstream s;
      s << "first differing byte " << k << " (block " << k / block_bytes << "): simd 0x" << std::hex << int(a[k])
        << " ref 0x" << int(b[k]);
      return s.str();
    }
  }
  return {};
}

bool same_bits_or_both_nan(float a, float b) {
  return std::memcmp(&a, &b, 4) == 0 || (std::isnan(a) && std::isnan(b));
}

TEST_CASE("every available SIMD variant quantizes exactly like the reference", "[kernels][simd]") {
  Rng rng(test::seed());
  int tested = 0;
  for (const KernelVariant& v : kernels::kernel_variants()) {
    if (v.isa == kernels::Isa::kRef) continue;
    if (!v.available()) {
      WARN(describe(v) << ": not supported by this CPU, not tested");
      continue;
    }
    const KernelVariant& ref = *kernels::reference_variant(v.type);
    const size_t block_bytes = traits(v.type).type_size;
    for (int64_t n : tail_shapes(v.type)) {
      for (int misalign = 0; misalign <= 1; ++misalign) {
        const std::vector<float> x = test_input(rng, v.type, n + misalign);
        const size_t bytes = row_size(v.type, n);
        // One guard byte on each side catches writes past the row.
        std::vector<uint8_t> a(bytes + 2 + misalign, 0xA5), b(bytes + 2 + misalign, 0xA5);
        v.quantize(x.data() + misalign, a.data() + 1 + misalign, n);
        ref.quantize(x.data() + misalign, b.data() + 1 + misalign, n);
        const std::string diff = first_byte_diff(a.data(), b.data(), a.size(), block_bytes);
        INFO(describe(v) << ", n = " << n << ", misaligned = " << misalign << "; " << rerun_hint());
        CHECK(diff == "");
        CHECK(a.front() == 0xA5);
        CHECK(a.back() == 0xA5);
      }
    }
    ++tested;
  }
  WARN("SIMD variants tested against the reference: " << tested);
}

TEST_CASE("every available SIMD variant dequantizes exactly like the reference", "[kernels][simd]") {
  Rng rng(test::seed() + 1);
  for (const KernelVariant& v : kernels::kernel_variants()) {
    if (v.isa == kernels::Isa::kRef || !v.available()) continue;
    const KernelVariant& ref = *kernels::reference_variant(v.type);
    for (int64_t n : tail_shapes(v.type)) {
      // (a) bytes the reference quantizer made: exact bits.
      const std::vector<float> x = test_input(rng, v.type, n);
      std::vector<uint8_t> q(row_size(v.type, n) + 1);
      ref.quantize(x.data(), q.data() + 1, n);  // +1: unaligned source for the dequantizer
      std::vector<float> a(static_cast<size_t>(n) + 1, 7.0f), b(static_cast<size_t>(n) + 1, 7.0f);
      v.dequantize(q.data() + 1, a.data(), n);
      ref.dequantize(q.data() + 1, b.data(), n);
      INFO(describe(v) << ", n = " << n << "; " << rerun_hint());
      bool exact = true;
      for (int64_t k = 0; k < n && exact; ++k)
        exact = std::memcmp(&a[k], &b[k], 4) == 0;
      CHECK(exact);
      CHECK(a[n] == 7.0f);
      // (b) arbitrary bytes, including NaN/Inf/subnormal fp16 scales.
      for (uint8_t& byte : q) byte = static_cast<uint8_t>(rng());
      v.dequantize(q.data() + 1, a.data(), n);
      ref.dequantize(q.data() + 1, b.data(), n);
      bool same = true;
      for (int64_t k = 0; k < n && same; ++k) same = same_bits_or_both_nan(a[k], b[k]);
      CHECK(same);
    }
  }
}

// Q8_0's SIMD rounding (truncate(v + copysign(0.5 - 2^-25, v)) standing in for roundf) over the
// floats of [-127, 127]: a block anchored by 127 has d = 1 and id = 1, so the other 31 weights
// are rounded as they are. Default: every 1021st pattern; "[exhaustive]": all ~2.1G of them.
void check_q8_0_rounding(uint32_t stride, uint32_t start) {
  const uint32_t top = 0x42FE0000u;  // 127.0f
  for (const KernelVariant& v : kernels::kernel_variants()) {
    if (v.type != TypeId::Q8_0 || v.isa == kernels::Isa::kRef || !v.available()) continue;
    const KernelVariant& ref = *kernels::reference_variant(TypeId::Q8_0);
    constexpr int kBlocks = 4096;
    std::vector<float> x(32 * kBlocks);
    std::vector<uint8_t> a(34 * kBlocks), b(34 * kBlocks);
    uint64_t pattern = start;
    bool ok = true;
    while (ok && pattern <= top) {
      for (int blk = 0; blk < kBlocks; ++blk) {
        x[32 * blk] = 127.0f;
        for (int j = 1; j < 32; ++j) {
          const uint32_t p = pattern <= top ? static_cast<uint32_t>(pattern) : 0u;
          x[32 * blk + j] = from_bits(p | (j & 1 ? 0x80000000u : 0u));
          pattern += stride;
        }
      }
      v.quantize(x.data(), a.data(), 32 * kBlocks);
      ref.quantize(x.data(), b.data(), 32 * kBlocks);
      ok = a == b;
    }
    INFO(describe(v) << " rounding sweep, stride " << stride << ", stopped near pattern 0x" << std::hex << pattern);
    CHECK(ok);
  }
}

TEST_CASE("Q8_0 SIMD rounding equals roundf on a sweep of [-127, 127]", "[kernels][simd]") {
  check_q8_0_rounding(1021, test::seed() % 1021);
}

TEST_CASE("Q8_0 SIMD rounding equals roundf on every float of [-127, 127]", "[.][exhaustive][kernels][simd]") {
  check_q8_0_rounding(1, 0);
}

TEST_CASE("quantize_rows / dequantize_rows equal the reference on odd row counts", "[kernels][dispatch]") {
  Rng rng(test::seed() + 2);
  const TypeId types[] = {TypeId::F32, TypeId::F16, TypeId::BF16, TypeId::Q8_0,
                          TypeId::Q4_0, TypeId::Q4_1, TypeId::Q5_0, TypeId::Q5_1};
  for (TypeId type : types) {
    REQUIRE(kernels::can_quantize(type));
    REQUIRE(kernels::can_dequantize(type));
    const KernelVariant& ref = *kernels::reference_variant(type);
    for (int64_t rows : {1, 3, 7, 13, 33}) {
      for (int64_t len : {32, 96, 4128}) {
        std::vector<float> x(static_cast<size_t>(rows * len));
        for (int64_t r = 0; r < rows; ++r) fill_random_row(rng, x.data() + r * len, len);
        const size_t bytes = static_cast<size_t>(rows) * row_size(type, len);
        std::vector<uint8_t> a(bytes), b(bytes);
        CHECK(kernels::quantize_rows(type, x.data(), a.data(), rows, len) == bytes);
        ref.quantize(x.data(), b.data(), rows * len);
        INFO(type_name(type) << ": " << rows << " rows of " << len << "; " << rerun_hint());
        CHECK(first_byte_diff(a.data(), b.data(), bytes, traits(type).type_size) == "");
        std::vector<float> fa(x.size()), fb(x.size());
        kernels::dequantize_rows(type, a.data(), fa.data(), rows, len);
        ref.dequantize(b.data(), fb.data(), rows * len);
        CHECK(std::memcmp(fa.data(), fb.data(), fa.size() * 4) == 0);
      }
    }
  }
}

// NaN/Inf policy (kernels/ref/quant_ref.cc): a block holding NaN or Inf gets unspecified bytes,
// but nothing crashes, nothing outside the row is written, and the other blocks are untouched.
TEST_CASE("NaN/Inf in a block affect only that block, in every variant", "[kernels][nan]") {
  Rng rng(test::seed() + 3);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  for (const KernelVariant& v : kernels::kernel_variants()) {
    if (!v.available() || traits(v.type).block_size == 1) continue;  // F32/F16/BF16: exact, tested elsewhere
    const int64_t block = traits(v.type).block_size;
    const int64_t n = 8 * block;
    std::vector<float> x(n);
    fill_random_row(rng, x.data(), n);
    std::vector<uint8_t> clean(row_size(v.type, n) + 1, 0xA5), dirty(row_size(v.type, n) + 1, 0xA5);
    v.quantize(x.data(), clean.data(), n);
    for (int k = 0; k < 3; ++k)
      x[3 * block + uniform_int(rng, 0, static_cast<int>(block) - 1)] = specials[uniform_int(rng, 0, 3)];
    v.quantize(x.data(), dirty.data(), n);
    const size_t bb = traits(v.type).type_size;
    INFO(describe(v) << "; " << rerun_hint());
    CHECK(std::memcmp(clean.data(), dirty.data(), 3 * bb) == 0);
    CHECK(std::memcmp(clean.data() + 4 * bb, dirty.data() + 4 * bb, clean.size() - 4 * bb) == 0);
    CHECK(dirty.back() == 0xA5);
    std::vector<float> back(n);
    v.dequantize(dirty.data(), back.data(), n);  // must not crash either
  }
}

TEST_CASE("dispatch honours SHRINK_FORCE_REF and picks an available variant", "[kernels][dispatch]") {
  const char* e = std::getenv("SHRINK_FORCE_REF");
  const bool forced = e != nullptr && std::string(e) == "1";
  CHECK(kernels::force_reference() == forced);
  for (TypeId type : {TypeId::F16, TypeId::Q8_0, TypeId::Q4_0}) {
    const KernelVariant* v = kernels::dispatched_variant(type);
    REQUIRE(v != nullptr);
    CHECK(v->available());
    if (forced) CHECK(v->isa == kernels::Isa::kRef);
  }
  // A type shrink cannot quantize reports so instead of crashing.
  CHECK_FALSE(kernels::can_quantize(TypeId::IQ2_XXS));
  CHECK(kernels::quantize_rows(TypeId::IQ2_XXS, nullptr, nullptr, 1, 256) == 0);
  WARN("active ISA: " << kernels::active_isa());
}

}  // namespace
}  // namespace shrink
