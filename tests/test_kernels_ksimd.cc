// The AVX2 / AVX-512 variants of the k-quants (Q2_K..Q6_K) and IQ4_NL / IQ4_XS against the
// scalar reference (kernels/ref/kquant_ref.cc, itself byte-exact with ggml: test_kernels_kquants),
// for every such variant this CPU can run, not only the one dispatch picks:
//  - dequantize: identical float bits on blocks the reference quantizer made and on random
//    valid blocks (random bytes, finite fp16 scales);
//  - quantize, with and without an imatrix: identical bytes on random rows and on edge-case
//    super-blocks, 1, 2, 3, 7 and 33 rows of 256, 512 and 4096 weights (IQ4_NL also 32, 96),
//    on unaligned pointers, with guard bytes around the output.
// Needs no ggml.
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <sstream>

#include "kernels/registry.h"
#include "tests/test_kernels_data.h"
#include "tests/test_support.h"

namespace shrink {
namespace {

using namespace shrink::test::kernel_data;
using kernels::KernelVariant;

const TypeId kTypes[] = {TypeId::Q2_K, TypeId::Q3_K, TypeId::Q4_K, TypeId::Q5_K,
                         TypeId::Q6_K, TypeId::IQ4_NL, TypeId::IQ4_XS};

bool is_new_type(TypeId t) {
  for (TypeId k : kTypes)
    if (k == t) return true;
  return false;
}

std::string rerun_hint() { return "rerun with: --rng-seed " + std::to_string(test::seed()); }
std::string describe(const KernelVariant& v) { return std::string(type_name(v.type)) + "/" + kernels::isa_name(v.isa); }

// The SIMD variants of the new types that this CPU runs; warns about the others.
std::vector<const KernelVariant*> variants_under_test() {
  std::vector<const KernelVariant*> out;
  for (const KernelVariant& v : kernels::kernel_variants()) {
    if (v.isa == kernels::Isa::kRef || !is_new_type(v.type)) continue;
    if (!v.available()) {
      WARN(describe(v) << ": not supported by this CPU, not tested");
      continue;
    }
    out.push_back(&v);
  }
  return out;
}

std::string first_byte_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, size_t block_bytes) {
  for (size_t k = 0; k < a.size(); ++k) {
    if (a[k] != b[k]) {
      std::ostringstream s;
      s << "first differing byte " << k << " (block " << k / block_bytes << ", byte " << k % block_bytes
        << "): simd 0x" << std::hex << int(a[k]) << " ref 0x" << int(b[k]);
      return s.str();
    }
  }
  return {};
}

std::string first_float_diff(const std::vector<float>& a, const std::vector<float>& b) {
  for (size_t k = 0; k < a.size(); ++k) {
    if (std::memcmp(&a[k], &b[k], 4) != 0) {
      std::ostringstream s;
      s << "first differing float " << k << ": simd " << a[k] << " (0x" << std::hex << bits_of(a[k]) << ") ref "
        << std::dec << b[k] << " (0x" << std::hex << bits_of(b[k]) << ")";
      return s.str();
    }
  }
  return {};
}

// Positive, heavy-tailed importance (as test_kernels_kquants.cc), sometimes with exact zeros.
std::vector<float> random_imatrix(Rng& rng, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  std::normal_distribution<float> normal(0.0f, 1.5f);
  const float scale = std::pow(10.0f, uniform(rng, -4.0f, 3.0f));
  for (float& v : w) v = scale * std::exp(normal(rng));
  const int spikes = uniform_int(rng, 0, 8);
  for (int k = 0; k < spikes; ++k)
    w[uniform_int(rng, 0, static_cast<int>(n - 1))] *= std::pow(uniform(rng, 1e-3f, 1.0f), -1.5f) * 10.0f;
  if (rng() % 3 == 0)
    for (float& v : w)
      if (rng() % 4 == 0) v = 0.0f;
  return w;
}

// One super-block (256 weights) of an edge case: the super-block shapes of
// test_kernels_kquants.cc and the 32-weight blocks of test_kernels_data.h.
void fill_edge_superblock(Rng& r, float* x, int pick) {
  static const std::vector<BlockCase> blocks = edge_cases();
  switch (pick) {
    case 0: std::fill(x, x + 256, 0.0f); return;
    case 1: std::fill(x, x + 256, -0.0f); return;
    case 2: std::fill(x, x + 256, random_sign(r) * std::pow(10.0f, uniform(r, -6.0f, 4.0f))); return;
    case 3:
      fill_random_row(r, x, 256);
      x[uniform_int(r, 0, 255)] = random_sign(r) * uniform(r, 1e2f, 1e5f);
      return;
    case 4:
      std::fill(x, x + 256, 0.0f);
      x[uniform_int(r, 0, 255)] = random_sign(r) * uniform(r, 0.1f, 10.0f);
      return;
    case 5:
      for (int j = 0; j < 256; ++j) x[j] = uniform(r, -1.0f, 1.0f) * 1e-16f;  // below GROUP_MAX_EPS
      return;
    case 6:
      for (int g = 0; g < 16; ++g) {
        const float s = random_sign(r);
        for (int j = 0; j < 16; ++j) x[16 * g + j] = s * uniform(r, 0.01f, 2.0f);
      }
      return;
    case 7:
      fill_random_row(r, x, 256);
      for (int g = 0; g < 16; ++g)
        if (r() % 3 == 0) std::fill(x + 16 * g, x + 16 * g + 16, 0.0f);
      return;
    case 8:
      std::fill(x, x + 256, 0.0f);
      for (int j = 0, g = uniform_int(r, 0, 15); j < 16; ++j) x[16 * g + j] = uniform(r, -1.0f, 1.0f);
      return;
    case 9:
      for (int g = 0; g < 16; ++g) {
        const float s = std::pow(10.0f, uniform(r, -3.0f, 3.0f));
        for (int j = 0; j < 16; ++j) x[16 * g + j] = uniform(r, -1.0f, 1.0f) * s;
      }
      return;
    case 10:
      for (int j = 0; j < 256; ++j) x[j] = static_cast<float>(uniform_int(r, -8, 7));
      return;
    case 11: {
      const float s = pow2(uniform_int(r, -10, 10));
      for (int j = 0; j < 256; ++j) x[j] = (static_cast<float>(uniform_int(r, -16, 15)) + 0.5f) * s;
      return;
    }
    case 12:
      for (int j = 0; j < 256; ++j) x[j] = (j % 2 ? -1.0f : 1.0f) * uniform(r, 0.001f, 3.0f);
      return;
    default: {
      const BlockCase& c = blocks[static_cast<size_t>(pick - 13) % blocks.size()];
      for (int b = 0; b < 8; ++b) c.fill(r, x + 32 * b);
    }
  }
}
int edge_case_count() { return 13 + static_cast<int>(edge_cases().size()); }

// Rows for one shape: random, or every super-block an edge case (`edge` >= 0 picks one case for
// all of them; -1 mixes cases). imatrix-safe: no |x| > 1e18 (the imatrix path squares whole
// super-blocks; NaN/Inf policy, kernels/ref/quant_ref.cc).
std::vector<float> make_rows(Rng& rng, int64_t rows, int64_t len, bool edge, bool imatrix_safe) {
  std::vector<float> x(static_cast<size_t>(rows * len));
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x.data() + r * len;
    if (!edge || len % 256 != 0) {
      fill_random_row(rng, row, len);
      if (edge)  // 32-multiples: the 32-weight edge blocks
        for (int64_t b = 0; b < len / 32; ++b)
          if (rng() % 2) edge_cases()[rng() % edge_cases().size()].fill(rng, row + 32 * b);
    } else {
      for (int64_t s = 0; s < len / 256; ++s) fill_edge_superblock(rng, row + 256 * s, uniform_int(rng, 0, edge_case_count() - 1));
    }
    if (imatrix_safe)
      for (int64_t j = 0; j < len; ++j)
        if (!(std::fabs(row[j]) <= 1e18f)) row[j] = 0.0f;
  }
  return x;
}

std::vector<int64_t> lengths_for(TypeId t) {
  if (t == TypeId::IQ4_NL) return {32, 96, 256, 512, 4096};
  return {256, 512, 4096};
}

TEST_CASE("k-quant SIMD variants quantize exactly like the reference", "[kernels][simd][kquants]") {
  Rng rng(test::seed());
  const auto variants = variants_under_test();
  int64_t compared_rows = 0;
  for (const KernelVariant* v : variants) {
    const KernelVariant& ref = *kernels::reference_variant(v->type);
    REQUIRE(v->quantize_imatrix != nullptr);
    REQUIRE(ref.quantize_imatrix != nullptr);
    const size_t block_bytes = traits(v->type).type_size;
    for (int64_t len : lengths_for(v->type)) {
      for (int64_t rows : {1, 2, 3, 7, 33}) {
        for (int kind = 0; kind < 4; ++kind) {  // {random, edge} x {no imatrix, imatrix}
          const bool edge = kind & 1, with_imatrix = kind & 2;
          const int misalign = static_cast<int>(rows % 2);
          std::vector<float> buf = make_rows(rng, rows, len, edge, with_imatrix);
          buf.insert(buf.begin(), misalign, 0.0f);
          const float* x = buf.data() + misalign;
          const size_t rs = row_size(v->type, len);
          std::vector<uint8_t> a(rows * rs + 2 + misalign, 0xA5), b(a.size(), 0xA5);
          uint8_t* pa = a.data() + 1 + misalign;
          uint8_t* pb = b.data() + 1 + misalign;
          if (with_imatrix) {
            const std::vector<float> qw = random_imatrix(rng, len);
            for (int64_t r = 0; r < rows; ++r) {
              v->quantize_imatrix(x + r * len, pa + r * rs, len, qw.data());
              ref.quantize_imatrix(x + r * len, pb + r * rs, len, qw.data());
            }
          } else {
            v->quantize(x, pa, rows * len);
            ref.quantize(x, pb, rows * len);
          }
          INFO(describe(*v) << ": " << rows << " row(s) of " << len << (edge ? ", edge cases" : ", random")
                            << (with_imatrix ? ", imatrix" : "") << "; " << rerun_hint());
          const std::string diff = first_byte_diff(a, b, block_bytes);
          CHECK(diff == "");
          CHECK(a.front() == 0xA5);
          CHECK(a.back() == 0xA5);
          if (!diff.empty()) return;  // one detailed failure is enough
          compared_rows += rows;
        }
      }
    }
  }
  WARN("k-quant SIMD variants tested: " << variants.size() << ", rows compared: " << compared_rows);
}

// Offsets of the fp16 scale fields that must stay finite in a "valid" random block.
std::vector<size_t> fp16_fields(TypeId t) {
  switch (t) {
    case TypeId::Q2_K: return {offsetof(block_q2_K, d), offsetof(block_q2_K, dmin)};
    case TypeId::Q3_K: return {offsetof(block_q3_K, d)};
    case TypeId::Q4_K: return {offsetof(block_q4_K, d), offsetof(block_q4_K, dmin)};
    case TypeId::Q5_K: return {offsetof(block_q5_K, d), offsetof(block_q5_K, dmin)};
    case TypeId::Q6_K: return {offsetof(block_q6_K, d)};
    case TypeId::IQ4_NL: return {offsetof(block_iq4_nl, d)};
    case TypeId::IQ4_XS: return {offsetof(block_iq4_xs, d)};
    default: return {};
  }
}

TEST_CASE("k-quant SIMD variants dequantize exactly like the reference", "[kernels][simd][kquants]") {
  Rng rng(test::seed() + 1);
  for (const KernelVariant* v : variants_under_test()) {
    const KernelVariant& ref = *kernels::reference_variant(v->type);
    const int64_t bs = traits(v->type).block_size;
    const size_t block_bytes = traits(v->type).type_size;
    for (int64_t blocks : {1, 2, 3, 7, 16, 33, 129}) {
      const int64_t n = blocks * bs;
      // (a) bytes the reference quantizer made (random and edge-case rows); +1: unaligned source.
      for (int edge = 0; edge <= 1; ++edge) {
        const std::vector<float> x = make_rows(rng, 1, n, edge && n % 256 == 0, false);
        std::vector<uint8_t> q(row_size(v->type, n) + 1);
        ref.quantize(x.data(), q.data() + 1, n);
        std::vector<float> a(static_cast<size_t>(n) + 1, 7.0f), b(a.size(), 7.0f);
        v->dequantize(q.data() + 1, a.data(), n);
        ref.dequantize(q.data() + 1, b.data(), n);
        INFO(describe(*v) << ", " << blocks << " blocks from the quantizer; " << rerun_hint());
        CHECK(first_float_diff(a, b) == "");
        CHECK(a[n] == 7.0f);
      }
      // (b) random bytes with finite fp16 scales (normal, subnormal, zero).
      std::vector<uint8_t> q(row_size(v->type, n));
      for (uint8_t& byte : q) byte = static_cast<uint8_t>(rng());
      for (int64_t k = 0; k < blocks; ++k) {
        for (size_t off : fp16_fields(v->type)) {
          uint16_t h = static_cast<uint16_t>(rng());
          if ((h & 0x7C00u) == 0x7C00u) h = static_cast<uint16_t>(h & ~0x4000u);  // inf/NaN -> finite
          std::memcpy(q.data() + k * block_bytes + off, &h, 2);
        }
      }
      std::vector<float> a(static_cast<size_t>(n)), b(a.size());
      v->dequantize(q.data(), a.data(), n);
      ref.dequantize(q.data(), b.data(), n);
      INFO(describe(*v) << ", " << blocks << " random valid blocks; " << rerun_hint());
      CHECK(first_float_diff(a, b) == "");
    }
  }
}

// IQ4's level search: the SIMD best_index on every float that lands between levels, via blocks
// whose scale makes id * x == x: a block of 32 with max = -127 has d = 1 on the first trial.
// Checked through the quantizer itself on grids of x around every level and midpoint.
TEST_CASE("IQ4 SIMD level choice equals the reference at every level boundary", "[kernels][simd][kquants]") {
  Rng rng(test::seed() + 2);
  for (const KernelVariant* v : variants_under_test()) {
    if (v->type != TypeId::IQ4_NL) continue;
    const KernelVariant& ref = *kernels::reference_variant(v->type);
    std::vector<float> x;
    for (int k = 0; k < 16; ++k) {
      const float lv = static_cast<float>(kValuesIq4nl[k]);
      const float mid = k < 15 ? 0.5f * (lv + static_cast<float>(kValuesIq4nl[k + 1])) : lv + 10.0f;
      for (float c : {lv, mid}) {
        float p = c, m = c;
        for (int u = 0; u < 6; ++u, p = std::nextafter(p, FLT_MAX), m = std::nextafter(m, -FLT_MAX)) {
          x.push_back(p);
          x.push_back(m);
        }
      }
    }
    while (x.size() % 31 != 0) x.push_back(uniform(rng, -127.0f, 113.0f));
    std::vector<float> rows;
    for (size_t i = 0; i < x.size(); i += 31) {
      rows.push_back(-127.0f);
      rows.insert(rows.end(), x.begin() + static_cast<std::ptrdiff_t>(i), x.begin() + static_cast<std::ptrdiff_t>(i) + 31);
    }
    const int64_t n = static_cast<int64_t>(rows.size());
    std::vector<uint8_t> a(row_size(v->type, n)), b(a.size());
    v->quantize(rows.data(), a.data(), n);
    ref.quantize(rows.data(), b.data(), n);
    INFO(describe(*v) << "; " << rerun_hint());
    CHECK(first_byte_diff(a, b, traits(v->type).type_size) == "");
  }
}

}  // namespace
}  // namespace shrink
