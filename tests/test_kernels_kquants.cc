// Byte-exactness against ggml for the k-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), IQ4_NL and IQ4_XS,
// and for the importance-matrix quantizers of those and of Q4_0/Q4_1/Q5_0/Q5_1:
//  - our bytes == ggml_quantize_chunk's (libggml-base.so of @node-llama-cpp/linux-x64), without an
//    imatrix and with a random heavy-tailed one, on >= 1,000 random rows per type (lengths 256, 512,
//    4096 and other multiples of 256; IQ4_NL also 32-multiples), on edge-case super-blocks, and
//    on rows cut from the real llama2.c checkpoints in the shared data folder;
//  - our dequantization of ggml's bytes == ggml's to_float, bit for bit (bound: 0 ulp; same
//    products in the same order, no FMA).
// Both the scalar reference and the dispatched path (quantize_rows, OpenMP) are checked.
#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>
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

const TypeId kNewTypes[] = {TypeId::Q2_K, TypeId::Q3_K, TypeId::Q4_K, TypeId::Q5_K,
                            TypeId::Q6_K, TypeId::IQ4_NL, TypeId::IQ4_XS};
const TypeId kLegacyImatrixTypes[] = {TypeId::Q4_0, TypeId::Q4_1, TypeId::Q5_0, TypeId::Q5_1};

std::string rerun_hint() { return "rerun with: --rng-seed " + std::to_string(test::seed()); }

std::string hex_float(float f) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", static_cast<double>(f));
  return buf;
}

struct Rows {
  std::string name;
  int64_t n_per_row;
  std::vector<float> data;     // (n_rows, n_per_row)
  std::vector<float> imatrix;  // (n_per_row) or empty
  int64_t n_rows() const { return static_cast<int64_t>(data.size()) / n_per_row; }
  const float* qw() const { return imatrix.empty() ? nullptr : imatrix.data(); }
};

// Empty when equal; otherwise where the rows differ, with the offending block's inputs.
std::string diff_bytes(TypeId type, const std::vector<uint8_t>& ours, const std::vector<uint8_t>& theirs,
                       const Rows& r) {
  if (ours == theirs) return {};
  size_t at = 0;
  while (at < ours.size() && ours[at] == theirs[at]) ++at;
  const TypeTraits& t = traits(type);
  const size_t block = at / t.type_size;
  const int64_t first_weight = static_cast<int64_t>(block) * t.block_size;
  std::ostringstream s;
  s << type_name(type) << (r.imatrix.empty() ? "" : " (imatrix)") << ": first differing byte " << at
    << " (byte " << at % t.type_size << " of block " << block << ", row " << first_weight / r.n_per_row
    << "): ours 0x" << std::hex << int(ours[at]) << " ggml 0x" << int(theirs[at]) << std::dec
    << "\n  block bytes ours/ggml:";
  for (size_t k = block * t.type_size; k < (block + 1) * t.type_size && k < ours.size(); ++k)
    s << " " << std::hex << int(ours[k]) << "/" << int(theirs[k]) << std::dec;
  s << "\n  inputs:";
  for (int64_t k = 0; k < t.block_size && k < 64; ++k) s << " " << hex_float(r.data[first_weight + k]);
  s << (t.block_size > 64 ? " ..." : "") << "\n  " << rerun_hint();
  return s.str();
}

// Positive, heavy-tailed importance: log-normal with a wide spread plus a few Pareto spikes,
// the shape of real mean-squared activations.
std::vector<float> random_imatrix(Rng& rng, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  std::normal_distribution<float> normal(0.0f, 1.5f);
  const float scale = std::pow(10.0f, uniform(rng, -4.0f, 3.0f));
  for (float& v : w) v = scale * std::exp(normal(rng));
  const int spikes = uniform_int(rng, 0, 8);
  for (int k = 0; k < spikes; ++k)
    w[uniform_int(rng, 0, static_cast<int>(n - 1))] *= std::pow(uniform(rng, 1e-3f, 1.0f), -1.5f) * 10.0f;
  return w;
}

void add_imatrix_copies(Rng& rng, std::vector<Rows>& sets) {
  const size_t n = sets.size();
  for (size_t i = 0; i < n; ++i) {
    Rows r = sets[i];
    r.name += " + imatrix";
    r.imatrix = random_imatrix(rng, r.n_per_row);
    sets.push_back(std::move(r));
  }
}

// >= 1,000 random rows of super-block multiples.
std::vector<Rows> random_rows(Rng& rng, int64_t block) {
  std::vector<Rows> out;
  struct Shape {
    int64_t len;
    int rows;
  };
  std::vector<Shape> shapes = {{256, 400}, {512, 300}, {4096, 40}, {768, 100}, {1280, 100}, {2304, 100}};
  if (block == 32) {  // IQ4_NL: also rows that are not multiples of 256
    shapes.push_back({32, 100});
    shapes.push_back({96, 100});
    shapes.push_back({4128, 20});
  }
  for (const Shape& sh : shapes) {
    Rows r{"random rows of " + std::to_string(sh.len), sh.len, std::vector<float>(static_cast<size_t>(sh.rows * sh.len)), {}};
    for (int i = 0; i < sh.rows; ++i) fill_random_row(rng, r.data.data() + i * sh.len, sh.len);
    out.push_back(std::move(r));
  }
  return out;
}

// Super-block edge cases, each as 32 super-blocks of 256 (rows of 1024).
std::vector<Rows> edge_rows(Rng& rng) {
  using Fill = std::function<void(Rng&, float*)>;  // fills 256
  std::vector<std::pair<std::string, Fill>> cases;
  cases.push_back({"all zero super-block", [](Rng&, float* x) { std::fill(x, x + 256, 0.0f); }});
  cases.push_back({"all -0", [](Rng&, float* x) { std::fill(x, x + 256, -0.0f); }});
  cases.push_back({"constant", [](Rng& r, float* x) {
    std::fill(x, x + 256, random_sign(r) * std::pow(10.0f, uniform(r, -6.0f, 4.0f)));
  }});
  cases.push_back({"one huge outlier", [](Rng& r, float* x) {
    fill_random_row(r, x, 256);
    x[uniform_int(r, 0, 255)] = random_sign(r) * uniform(r, 1e2f, 1e5f);
  }});
  cases.push_back({"one outlier among zeros", [](Rng& r, float* x) {
    std::fill(x, x + 256, 0.0f);
    x[uniform_int(r, 0, 255)] = random_sign(r) * uniform(r, 0.1f, 10.0f);
  }});
  cases.push_back({"tiny values", [](Rng& r, float* x) {
    const float s = std::pow(10.0f, uniform(r, -30.0f, -8.0f));
    for (int j = 0; j < 256; ++j) x[j] = uniform(r, -1.0f, 1.0f) * s;
  }});
  cases.push_back({"below GROUP_MAX_EPS", [](Rng& r, float* x) {
    for (int j = 0; j < 256; ++j) x[j] = uniform(r, -1.0f, 1.0f) * 1e-16f;
  }});
  cases.push_back({"mixed signs, per sub-block sign", [](Rng& r, float* x) {
    for (int g = 0; g < 16; ++g) {
      const float s = random_sign(r);
      for (int j = 0; j < 16; ++j) x[16 * g + j] = s * uniform(r, 0.01f, 2.0f);
    }
  }});
  cases.push_back({"all positive", [](Rng& r, float* x) { for (int j = 0; j < 256; ++j) x[j] = uniform(r, 0.001f, 3.0f); }});
  cases.push_back({"all negative", [](Rng& r, float* x) { for (int j = 0; j < 256; ++j) x[j] = -uniform(r, 0.001f, 3.0f); }});
  cases.push_back({"zero sub-blocks of 16", [](Rng& r, float* x) {
    fill_random_row(r, x, 256);
    for (int g = 0; g < 16; ++g)
      if (r() % 3 == 0) std::fill(x + 16 * g, x + 16 * g + 16, 0.0f);
  }});
  cases.push_back({"zero sub-blocks of 32", [](Rng& r, float* x) {
    fill_random_row(r, x, 256);
    for (int g = 0; g < 8; ++g)
      if (r() % 2 == 0) std::fill(x + 32 * g, x + 32 * g + 32, 0.0f);
  }});
  cases.push_back({"one live sub-block", [](Rng& r, float* x) {
    std::fill(x, x + 256, 0.0f);
    const int g = uniform_int(r, 0, 15);
    for (int j = 0; j < 16; ++j) x[16 * g + j] = uniform(r, -1.0f, 1.0f);
  }});
  cases.push_back({"sub-block scales spanning 1e6", [](Rng& r, float* x) {
    for (int g = 0; g < 16; ++g) {
      const float s = std::pow(10.0f, uniform(r, -3.0f, 3.0f));
      for (int j = 0; j < 16; ++j) x[16 * g + j] = uniform(r, -1.0f, 1.0f) * s;
    }
  }});
  cases.push_back({"small integers", [](Rng& r, float* x) {
    for (int j = 0; j < 256; ++j) x[j] = static_cast<float>(uniform_int(r, -8, 7));
  }});
  cases.push_back({"grid with ties", [](Rng& r, float* x) {
    const float s = pow2(uniform_int(r, -10, 10));
    for (int j = 0; j < 256; ++j) x[j] = (static_cast<float>(uniform_int(r, -16, 15)) + 0.5f) * s;
  }});
  // The 32-weight edge cases of the legacy tests, 8 draws per super-block.
  for (const BlockCase& c : edge_cases()) {
    cases.push_back({"blocks: " + c.name, [fill = c.fill](Rng& r, float* x) {
      for (int b = 0; b < 8; ++b) fill(r, x + 32 * b);
    }});
  }
  std::vector<Rows> out;
  for (const auto& [name, fill] : cases) {
    Rows r{name, 1024, std::vector<float>(32 * 256), {}};
    for (int b = 0; b < 32; ++b) fill(rng, r.data.data() + 256 * b);
    out.push_back(std::move(r));
  }
  return out;
}

// Finite-only edge cases for the imatrix copies: the imatrix path squares and sums a whole row
// or super-block, so a single +-FLT_MAX makes every weight inf/NaN; those are tested without an
// imatrix only (NaN/Inf policy, kernels/ref/quant_ref.cc).
bool imatrix_safe(const Rows& r) {
  for (float v : r.data)
    if (std::fabs(v) > 1e18f) return false;
  return true;
}

std::vector<uint8_t> ggml_quantize(TypeId type, const Rows& r) {
  std::vector<uint8_t> out(static_cast<size_t>(r.n_rows()) * row_size(type, r.n_per_row));
  const size_t n = oracle().quantize_chunk(static_cast<uint32_t>(type), r.data.data(), out.data(), 0, r.n_rows(),
                                           r.n_per_row, r.qw());
  REQUIRE(n == out.size());
  return out;
}

std::vector<uint8_t> ref_quantize(TypeId type, const Rows& r) {
  const size_t rs = row_size(type, r.n_per_row);
  std::vector<uint8_t> out(static_cast<size_t>(r.n_rows()) * rs);
  const kernels::KernelVariant* v = kernels::reference_variant(type);
  REQUIRE(v != nullptr);
  if (r.imatrix.empty()) {
    v->quantize(r.data.data(), out.data(), static_cast<int64_t>(r.data.size()));
  } else {
    REQUIRE(v->quantize_imatrix != nullptr);
    for (int64_t i = 0; i < r.n_rows(); ++i)
      v->quantize_imatrix(r.data.data() + i * r.n_per_row, out.data() + i * rs, r.n_per_row, r.qw());
  }
  return out;
}

std::vector<uint8_t> dispatched_quantize(TypeId type, const Rows& r) {
  std::vector<uint8_t> out(static_cast<size_t>(r.n_rows()) * row_size(type, r.n_per_row));
  const size_t n = kernels::quantize_rows(type, r.data.data(), out.data(), r.n_rows(), r.n_per_row, r.qw());
  REQUIRE(n == out.size());
  return out;
}

// Returns the rows compared (all of them unless one failed).
int64_t check_type(TypeId type, const std::vector<Rows>& sets) {
  int64_t rows = 0;
  for (const Rows& r : sets) {
    if (!row_fits(type, r.n_per_row)) continue;
    const std::vector<uint8_t> theirs = ggml_quantize(type, r);
    INFO(r.name << ", " << r.n_rows() << " row(s) of " << r.n_per_row);
    const std::string ref_diff = diff_bytes(type, ref_quantize(type, r), theirs, r);
    CHECK(ref_diff == "");
    const std::string disp_diff = diff_bytes(type, dispatched_quantize(type, r), theirs, r);
    CHECK(disp_diff == "");
    if (!ref_diff.empty() || !disp_diff.empty()) return rows;  // one detailed failure per type
    rows += r.n_rows();
  }
  return rows;
}

int64_t expected_rows(TypeId type, const std::vector<Rows>& sets) {
  int64_t n = 0;
  for (const Rows& r : sets)
    if (row_fits(type, r.n_per_row)) n += r.n_rows();
  return n;
}

TEST_CASE("k/i-quants: quantize == ggml_quantize_chunk on random rows, with and without imatrix",
          "[kernels][ggml][kquants]") {
  for (TypeId type : kNewTypes) {
    Rng rng(test::seed() + static_cast<uint32_t>(type));
    std::vector<Rows> plain = random_rows(rng, traits(type).block_size);
    std::vector<Rows> weighted = plain;
    for (Rows& r : weighted) {
      r.name += " + imatrix";
      r.imatrix = random_imatrix(rng, r.n_per_row);
    }
    REQUIRE(expected_rows(type, plain) >= 1000);
    // The imatrix must reach ggml and change its choices (else the "with" half tests nothing).
    int64_t changed = 0;
    for (size_t i = 0; i < plain.size(); ++i)
      if (row_fits(type, plain[i].n_per_row)) changed += ggml_quantize(type, plain[i]) != ggml_quantize(type, weighted[i]);
    CHECK(changed > 0);
    const int64_t n_plain = check_type(type, plain);
    const int64_t n_weighted = check_type(type, weighted);
    INFO(type_name(type) << ": " << n_plain << " rows without imatrix, " << n_weighted << " with");
    CHECK(n_plain == expected_rows(type, plain));
    CHECK(n_weighted == expected_rows(type, weighted));
  }
}

TEST_CASE("k/i-quants: quantize == ggml_quantize_chunk on edge-case super-blocks", "[kernels][ggml][kquants]") {
  Rng rng(test::seed() + 100);
  std::vector<Rows> sets = edge_rows(rng);
  std::vector<Rows> weighted;
  for (const Rows& r : sets) {
    if (!imatrix_safe(r)) continue;
    Rows w = r;
    w.name += " + imatrix";
    w.imatrix = random_imatrix(rng, w.n_per_row);
    weighted.push_back(std::move(w));
  }
  // An imatrix with exact zeros (unused channels) and one that is zero on whole sub-blocks.
  {
    Rows w{"random rows + imatrix with zeros", 1024, std::vector<float>(32 * 1024), random_imatrix(rng, 1024)};
    for (int i = 0; i < 32; ++i) fill_random_row(rng, w.data.data() + i * 1024, 1024);
    for (float& v : w.imatrix)
      if (rng() % 4 == 0) v = 0.0f;
    weighted.push_back(w);
    for (int g = 0; g < 64; ++g)
      if (g % 3 == 0) std::fill(w.imatrix.begin() + 16 * g, w.imatrix.begin() + 16 * g + 16, 0.0f);
    w.name = "random rows + imatrix zero on sub-blocks";
    weighted.push_back(std::move(w));
  }
  for (TypeId type : kNewTypes) {
    const int64_t n_plain = check_type(type, sets);
    const int64_t n_weighted = check_type(type, weighted);
    INFO(type_name(type) << ": " << n_plain << " edge rows without imatrix, " << n_weighted << " with");
    CHECK(n_plain == expected_rows(type, sets));
    CHECK(n_weighted == expected_rows(type, weighted));
  }
}

TEST_CASE("legacy types with an imatrix == ggml_quantize_chunk", "[kernels][ggml][kquants]") {
  Rng rng(test::seed() + 200);
  std::vector<Rows> sets;
  for (int64_t len : row_lengths()) {
    const int rows = len >= 4096 ? 40 : 200;
    Rows r{"random rows of " + std::to_string(len), len, std::vector<float>(static_cast<size_t>(rows * len)),
           random_imatrix(rng, len)};
    for (int i = 0; i < rows; ++i) fill_random_row(rng, r.data.data() + i * len, len);
    sets.push_back(std::move(r));
  }
  for (Rows& r : edge_rows(rng)) {
    if (!imatrix_safe(r)) continue;
    r.imatrix = random_imatrix(rng, r.n_per_row);
    sets.push_back(std::move(r));
  }
  for (TypeId type : kLegacyImatrixTypes) {
    const int64_t n = check_type(type, sets);
    INFO(type_name(type) << ": " << n << " rows with imatrix");
    CHECK(n == expected_rows(type, sets));
    CHECK(n >= 1000);
  }
}

TEST_CASE("k/i-quants: dequantize(ggml bytes) == ggml to_float, bit for bit", "[kernels][ggml][kquants]") {
  Rng rng(test::seed() + 400);
  for (TypeId type : kNewTypes) {
    std::vector<Rows> sets = random_rows(rng, traits(type).block_size);
    for (Rows& r : edge_rows(rng)) sets.push_back(std::move(r));
    add_imatrix_copies(rng, sets);
    int64_t rows = 0;
    for (const Rows& r : sets) {
      if (!r.imatrix.empty() && !imatrix_safe(r)) continue;
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
      if (!ref_ok || !disp_ok) break;
      rows += r.n_rows();
    }
    INFO(type_name(type) << ": " << rows << " rows dequantized");
    CHECK(rows > 1000);
  }
}

TEST_CASE("quantize_rows: imatrix is ignored where ggml ignores it, used where it has a path", "[kernels][kquants]") {
  Rng rng(test::seed() + 500);
  const int64_t len = 512, rows = 3;
  std::vector<float> x(static_cast<size_t>(len * rows));
  for (int64_t i = 0; i < rows; ++i) fill_random_row(rng, x.data() + i * len, len);
  const std::vector<float> qw = random_imatrix(rng, len);
  for (TypeId type : {TypeId::F32, TypeId::F16, TypeId::BF16, TypeId::Q8_0}) {
    CHECK_FALSE(kernels::uses_imatrix(type));
    const size_t bytes = static_cast<size_t>(rows) * row_size(type, len);
    std::vector<uint8_t> a(bytes), b(bytes);
    CHECK(kernels::quantize_rows(type, x.data(), a.data(), rows, len) == bytes);
    CHECK(kernels::quantize_rows(type, x.data(), b.data(), rows, len, qw.data()) == bytes);
    CHECK(a == b);
  }
  for (TypeId type : kNewTypes) {
    CHECK(kernels::can_quantize(type));
    CHECK(kernels::can_dequantize(type));
    CHECK(kernels::uses_imatrix(type));
  }
  for (TypeId type : kLegacyImatrixTypes) CHECK(kernels::uses_imatrix(type));
  // A row length that is not a multiple of the super-block is refused, not truncated.
  std::vector<uint8_t> out(1024);
  CHECK(kernels::quantize_rows(TypeId::Q4_K, x.data(), out.data(), 1, 288) == 0);
  CHECK(kernels::quantize_rows(TypeId::Q4_K, x.data(), out.data(), 1, 288, qw.data()) == 0);
}

// Last in the file: when the shared data folder is absent it skips the program (exit 77 outside
// CI) after every other case has run. Tagged [data] so it can be run on its own.
// Rows of 256 cut from a llama2.c checkpoint's weight matrices (header of 7 int32, then the
// float32 tensors from token_embedding to w3; see the shared data README).
std::vector<float> llama2c_weights(const test::fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return {};
  int32_t h[7];
  f.read(reinterpret_cast<char*>(h), sizeof h);
  if (!f) return {};
  const int64_t dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv_heads = h[4];
  const int64_t vocab = h[5] < 0 ? -h[5] : h[5];
  const int64_t kv_dim = dim * kv_heads / heads;
  const int64_t n = vocab * dim + layers * dim + layers * dim * dim + 2 * layers * kv_dim * dim +
                    layers * dim * dim + layers * dim + 3 * layers * hidden * dim;
  std::vector<float> w(static_cast<size_t>(n));
  f.read(reinterpret_cast<char*>(w.data()), static_cast<std::streamsize>(n * 4));
  if (!f) return {};
  w.resize(static_cast<size_t>(n / 256 * 256));
  return w;
}

TEST_CASE("k/i-quants: quantize == ggml on rows cut from real checkpoints", "[kernels][ggml][kquants][data]") {
  const test::fs::path files[] = {test::data_dir() / "models" / "babyllama-105" / "model5000.bin",
                                  test::data_dir() / "models" / "stories260K" / "stories260K.bin"};
  Rng rng(test::seed() + 300);
  std::vector<Rows> sets;
  for (const auto& p : files) {
    std::vector<float> w = llama2c_weights(p);
    if (w.empty()) test::skip_program("llama2.c checkpoint not readable: " + p.string());
    // Whole file as rows of 256, and as rows of 4096 with an imatrix.
    Rows r{p.filename().string() + " rows of 256", 256, w, {}};
    sets.push_back(r);
    Rows big{p.filename().string() + " rows of 4096 + imatrix", 4096, w, random_imatrix(rng, 4096)};
    big.data.resize(big.data.size() / 4096 * 4096);
    sets.push_back(std::move(big));
    r.name += " + imatrix";
    r.imatrix = random_imatrix(rng, 256);
    sets.push_back(std::move(r));
  }
  for (TypeId type : kNewTypes) {
    const int64_t n = check_type(type, sets);
    INFO(type_name(type) << ": " << n << " checkpoint rows");
    CHECK(n == expected_rows(type, sets));
  }
}

}  // namespace
}  // namespace shrink
