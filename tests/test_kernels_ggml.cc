// Byte-exactness against ggml itself: for F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 our
// quantized bytes must equal ggml_quantize_chunk's (libggml-base.so from the npm package
// @node-llama-cpp/linux-x64), on random rows of several lengths and on every edge-case block of
// tests/test_kernels_data.h; and our dequantization of ggml's bytes must equal ggml's own
// to_float bit for bit (bound: 0 ulp -- both compute float(q) * d (+ m) with one rounding per
// operation and no FMA).
//
// Both the scalar reference and the dispatched path (quantize_rows / dequantize_rows, OpenMP) are
// checked; test_kernels_simd.cc ties every other SIMD variant to the reference.
#include <catch2/catch.hpp>

#include <cstring>
#include <sstream>

#include "kernels/dispatch.h"
#include "kernels/kernels.h"
#include "kernels/registry.h"
#include "tests/ggml_oracle.h"
#include "tests/test_kernels_data.h"
#include "tests/test_support.h"

namespace shrink {
namespace {

using namespace shrink::test::kernel_data;

const test::GgmlOracle& oracle() {
  static test::GgmlOracle o(test::ggml_base_library().string());
  if (!o.ok()) test::skip_program("ggml oracle unavailable: " + o.error());
  return o;
}

const TypeId kTypes[] = {TypeId::F32, TypeId::F16, TypeId::BF16, TypeId::Q8_0,
                         TypeId::Q4_0, TypeId::Q4_1, TypeId::Q5_0, TypeId::Q5_1};

std::string rerun_hint() {
  return "rerun with: --rng-seed " + std::to_string(test::seed());
}

std::string hex_float(float f) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", static_cast<double>(f));
  return buf;
}

// Empty when equal; otherwise where and how the rows differ, with the offending block's inputs.
std::string diff_bytes(TypeId type, const std::vector<uint8_t>& ours, const std::vector<uint8_t>& theirs,
                       const float* src, int64_t n_per_row) {
  if (ours == theirs) return {};
  size_t at = 0;
  while (at < ours.size() && ours[at] == theirs[at]) ++at;
  const TypeTraits& t = traits(type);
  const size_t block = at / t.type_size;
  const int64_t first_weight = static_cast<int64_t>(block) * t.block_size;
  std::ostringstream s;
  s << type_name(type) << ": first differing byte " << at << " (block " << block << ", row "
    << first_weight / n_per_row << "): ours 0x" << std::hex << int(ours[at]) << " ggml 0x" << int(theirs[at])
    << std::dec << "\n  block bytes ours/ggml:";
  for (size_t k = block * t.type_size; k < (block + 1) * t.type_size && k < ours.size(); ++k)
    s << " " << std::hex << int(ours[k]) << "/" << int(theirs[k]) << std::dec;
  s << "\n  inputs:";
  for (int64_t k = 0; k < t.block_size; ++k) s << " " << hex_float(src[first_weight + k]);
  s << "\n  " << rerun_hint();
  return s.str();
}

struct Rows {
  std::string name;
  int64_t n_per_row;
  std::vector<float> data;  // (n_rows, n_per_row)
  int64_t n_rows() const { return static_cast<int64_t>(data.size()) / n_per_row; }
};

// >= 1,000 random rows over the lengths in row_lengths(), plus random multiples of 32.
std::vector<Rows> random_rows(Rng& rng) {
  std::vector<Rows> out;
  for (int64_t len : row_lengths()) {
    const int rows = len >= 4096 ? 60 : 200;
    Rows r{"random rows of " + std::to_string(len), len, std::vector<float>(static_cast<size_t>(rows * len))};
    for (int i = 0; i < rows; ++i) fill_random_row(rng, r.data.data() + i * len, len);
    out.push_back(std::move(r));
  }
  for (int i = 0; i < 100; ++i) {
    const int64_t len = 32 * uniform_int(rng, 1, 64);
    Rows r{"random row of " + std::to_string(len), len, std::vector<float>(static_cast<size_t>(len))};
    fill_random_row(rng, r.data.data(), len);
    out.push_back(std::move(r));
  }
  return out;
}

// Each edge case as a row of 64 blocks (64 independent draws), so 2048 weights per case.
std::vector<Rows> edge_rows(Rng& rng) {
  std::vector<Rows> out;
  for (const BlockCase& c : edge_cases()) {
    Rows r{c.name, 2048, std::vector<float>(2048)};
    for (int b = 0; b < 64; ++b) c.fill(rng, r.data.data() + 32 * b);
    out.push_back(std::move(r));
  }
  return out;
}

int64_t total_rows(const std::vector<Rows>& sets) {
  int64_t n = 0;
  for (const Rows& r : sets) n += r.n_rows();
  return n;
}

std::vector<uint8_t> ggml_quantize(TypeId type, const Rows& r) {
  std::vector<uint8_t> out(static_cast<size_t>(r.n_rows()) * row_size(type, r.n_per_row));
  const size_t n = oracle().quantize_chunk(static_cast<uint32_t>(type), r.data.data(), out.data(), 0, r.n_rows(),
                                           r.n_per_row);
  REQUIRE(n == out.size());
  return out;
}

std::vector<uint8_t> ref_quantize(TypeId type, const Rows& r) {
  std::vector<uint8_t> out(static_cast<size_t>(r.n_rows()) * row_size(type, r.n_per_row));
  kernels::reference_variant(type)->quantize(r.data.data(), out.data(), static_cast<int64_t>(r.data.size()));
  return out;
}

std::vector<uint8_t> dispatched_quantize(TypeId type, const Rows& r) {
  std::vector<uint8_t> out(static_cast<size_t>(r.n_rows()) * row_size(type, r.n_per_row));
  const size_t n = kernels::quantize_rows(type, r.data.data(), out.data(), r.n_rows(), r.n_per_row);
  REQUIRE(n == out.size());
  return out;
}

void check_against_ggml(const std::vector<Rows>& sets) {
  for (TypeId type : kTypes) {
    int64_t rows = 0;
    for (const Rows& r : sets) {
      const std::vector<uint8_t> theirs = ggml_quantize(type, r);
      INFO(r.name << ", " << r.n_rows() << " row(s) of " << r.n_per_row);
      const std::string ref_diff = diff_bytes(type, ref_quantize(type, r), theirs, r.data.data(), r.n_per_row);
      CHECK(ref_diff == "");
      const std::string disp_diff = diff_bytes(type, dispatched_quantize(type, r), theirs, r.data.data(), r.n_per_row);
      INFO("dispatched isa: " << kernels::isa_name(kernels::dispatched_variant(type)->isa));
      CHECK(disp_diff == "");
      rows += r.n_rows();
      if (!ref_diff.empty() || !disp_diff.empty()) break;  // one detailed failure per type is enough
    }
    INFO(type_name(type) << ": " << rows << " rows compared");
    CHECK(rows == total_rows(sets));
  }
}

TEST_CASE("quantize == ggml_quantize_chunk on random rows", "[kernels][ggml]") {
  Rng rng(test::seed());
  const std::vector<Rows> sets = random_rows(rng);
  REQUIRE(total_rows(sets) >= 1000);
  check_against_ggml(sets);
}

TEST_CASE("quantize == ggml_quantize_chunk on edge-case blocks", "[kernels][ggml]") {
  Rng rng(test::seed() + 1);
  check_against_ggml(edge_rows(rng));
}

TEST_CASE("quantize == ggml on the scalar-reference facts", "[kernels][ggml]") {
  // Pin down the facts the reference relies on with hand-made blocks, so a ggml change shows up
  // as a named failure rather than a random-row mismatch.
  std::vector<float> x(32, 0.0f);
  Rows zeros{"all zero", 32, x};
  // All-zero Q4_0/Q5_0 store d = (+0)/-8 = -0.0: fp16 0x8000.
  for (TypeId t : {TypeId::Q4_0, TypeId::Q5_0}) {
    const auto g = ggml_quantize(t, zeros);
    CHECK((g[0] | (g[1] << 8)) == 0x8000);
    CHECK(ref_quantize(t, zeros) == g);
  }
  // Q8_0 rounds ties away from zero: amax 127 gives d = 1, so 0.5 -> 1, -2.5 -> -3.
  x[0] = 127.0f, x[1] = 0.5f, x[2] = -2.5f, x[3] = 1.5f;
  Rows ties{"q8_0 ties", 32, x};
  const auto g = ggml_quantize(TypeId::Q8_0, ties);
  CHECK(static_cast<int8_t>(g[2 + 1]) == 1);
  CHECK(static_cast<int8_t>(g[2 + 2]) == -3);
  CHECK(static_cast<int8_t>(g[2 + 3]) == 2);
  CHECK(ref_quantize(TypeId::Q8_0, ties) == g);
  // Q4_0: with +8 and -8 both present, the first one fixes the sign of d.
  std::vector<float> y(32, 1.0f);
  y[3] = -8.0f, y[9] = 8.0f;
  Rows first{"first max wins", 32, y};
  const auto g4 = ggml_quantize(TypeId::Q4_0, first);
  CHECK((g4[0] | (g4[1] << 8)) == 0x3C00);  // d = -8 / -8 = +1.0
  CHECK(ref_quantize(TypeId::Q4_0, first) == g4);
}

TEST_CASE("dequantize(ggml bytes) == ggml to_float, bit for bit", "[kernels][ggml]") {
  Rng rng(test::seed() + 2);
  std::vector<Rows> sets = random_rows(rng);
  for (Rows& r : edge_rows(rng)) sets.push_back(std::move(r));
  for (TypeId type : kTypes) {
    if (type == TypeId::F32) continue;  // ggml has no to_float for F32: it is the float itself
    int64_t rows = 0;
    for (const Rows& r : sets) {
      const std::vector<uint8_t> bytes = ggml_quantize(type, r);
      const int64_t n = static_cast<int64_t>(r.data.size());
      std::vector<float> theirs(r.data.size()), ref(r.data.size()), disp(r.data.size());
      REQUIRE(oracle().dequantize_row(static_cast<uint32_t>(type), bytes.data(), theirs.data(), n));
      kernels::reference_variant(type)->dequantize(bytes.data(), ref.data(), n);
      kernels::dequantize_rows(type, bytes.data(), disp.data(), r.n_rows(), r.n_per_row);
      const bool ref_ok = std::memcmp(ref.data(), theirs.data(), ref.size() * 4) == 0;
      const bool disp_ok = std::memcmp(disp.data(), theirs.data(), disp.size() * 4) == 0;
      INFO(type_name(type) << " " << r.name << "; " << rerun_hint());
      CHECK(ref_ok);
      CHECK(disp_ok);
      rows += r.n_rows();
      if (!ref_ok || !disp_ok) break;
    }
    INFO(type_name(type) << ": " << rows << " rows dequantized");
    CHECK(rows > 1000);
  }
}

}  // namespace
}  // namespace shrink
