// Dot products (kernels/dot.h) of every weight type shrink writes, every variant this CPU runs
// (reference, AVX2, AVX-512), not only the one dispatch picks.
//
// Without ggml:
//  - Exact cases: weight blocks of random bytes whose float scales (d, dmin, m) are powers of two,
//    activation blocks of random quants with power-of-two scales. Then every product and every
//    partial sum is a multiple of one unit, and when sum_i |a_i| * (largest weight magnitude of
//    the type) stays below 2^24 units no float step rounds: each variant must equal the exact sum
//    (computed in double from ggml-exact dequantized weights), bit for bit. This pins the integer
//    parts (block sums, scale unpacking, bsums, the -8/-16/-32 offsets) of every variant.
//  - Q3_K/Q6_K super-blocks whose quants all sit at the offset (zero weights): exactly 0.
//  - Extreme cases (quants at +-127, -128 activations, all-zero blocks, all-max weights): every
//    variant equals the exact sum when it is representable, else within the float bound below.
//  - Float types (F32, F16, BF16): within (n + 64) * 2^-24 * sum |w_i a_i| of the double sum, and
//    exactly equal on small-integer data.
//  Shapes: 1, 2, 3, 5, 7, 8, 9, 17, 33 blocks of 32 and 1, 2, 3, 5 super-blocks of 256;
//  rows at odd (unaligned) addresses.
//  - gemm(): every output equals the dispatched vec_dot of its (token, row), bit for bit, for
//    1..600 rows and 1..70 tokens (tile edges), where gemm does not follow ggml_mul_mat's order
//    (kernels::gemm_matches_ggml; those are in test_kernels_gemm).
// With ggml ([data]: the npm package's libggml-cpu-x64.so, built without AVX, runs ggml's
// *_generic code):
//  - Q8_K activation bytes == ggml's from_float (quantize_row_q8_K) on random rows, ties and
//    sign-tie rows; F16/BF16 activation bytes too.
//  - vec_dot of the reference and of the dispatched variant against ggml's vec_dot on weights
//    quantized from random rows: within the float bound of dot_bound() (summation order only;
//    its magnitude counts the scale and min terms separately); rows whose fp16 fields overflow
//    must give non-finite results on every side.
//  - The x86 variants of Q4_0, Q8_0, Q4_1, Q5_0, Q5_1 against ggml's AVX2 build
//    (libggml-cpu-haswell.so): identical bits.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "kernels/act_quant.h"
#include "kernels/dispatch.h"
#include "kernels/dot.h"
#include "kernels/fp16.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "kernels/registry.h"
#include "tests/ggml_oracle.h"
#include "tests/test_kernels_data.h"
#include "tests/test_support.h"

namespace shrink {
namespace {

using namespace shrink::test::kernel_data;
using kernels::DotVariant;

const TypeId kQuantTypes[] = {TypeId::Q4_0, TypeId::Q4_1, TypeId::Q5_0, TypeId::Q5_1, TypeId::Q8_0,
                              TypeId::IQ4_NL, TypeId::Q2_K, TypeId::Q3_K, TypeId::Q4_K, TypeId::Q5_K,
                              TypeId::Q6_K, TypeId::IQ4_XS};
const TypeId kFloatTypes[] = {TypeId::F32, TypeId::F16, TypeId::BF16};

std::string hex_float(float f) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", static_cast<double>(f));
  return buf;
}

std::string rerun_hint() { return "rerun with: --rng-seed " + std::to_string(test::seed()); }
std::string describe(const DotVariant& v) {
  return std::string(type_name(v.weight_type)) + "/" + kernels::isa_name(v.isa);
}

// Every variant of `type` this CPU runs; warns about the others.
std::vector<const DotVariant*> variants_of(TypeId type) {
  std::vector<const DotVariant*> out;
  for (const DotVariant& v : kernels::dot_variants()) {
    if (v.weight_type != type) continue;
    if (!v.available()) {
      WARN(describe(v) << ": not supported by this CPU, not tested");
      continue;
    }
    out.push_back(&v);
  }
  return out;
}

// Largest |scale * weight quant| + |min| of one weight, in units of the block scales, per type
// (ggml-common.h block layouts): bounds every integer partial sum by sum |a_i| * this.
double max_weight_units(TypeId t) {
  switch (t) {
    case TypeId::Q4_0: return 8;
    case TypeId::Q4_1: return 15 + 1;       // + m * s (s = d_a * sum q_a)
    case TypeId::Q5_0: return 16;
    case TypeId::Q5_1: return 31 + 1;
    case TypeId::Q8_0: return 128;
    case TypeId::IQ4_NL: return 127;
    case TypeId::Q2_K: return 15 * 3 + 15;
    case TypeId::Q3_K: return 32 * 4;
    case TypeId::Q4_K: return 63 * 15 + 63;
    case TypeId::Q5_K: return 63 * 31 + 63;
    case TypeId::Q6_K: return 128 * 32;
    case TypeId::IQ4_XS: return 32 * 127;
    default: return 0;
  }
}

int block_of(TypeId t) { return traits(t).block_size; }

// Writes power-of-two scale fields into every block of a weight row of random bytes.
void set_pow2_scales(TypeId t, uint8_t* row, int64_t n, uint16_t d, uint16_t m) {
  const int64_t nb = n / block_of(t);
  const size_t bs = traits(t).type_size;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* p = row + static_cast<size_t>(b) * bs;
    switch (t) {
      case TypeId::Q4_0: reinterpret_cast<block_q4_0*>(p)->d = d; break;
      case TypeId::Q4_1: reinterpret_cast<block_q4_1*>(p)->d = d; reinterpret_cast<block_q4_1*>(p)->m = m; break;
      case TypeId::Q5_0: reinterpret_cast<block_q5_0*>(p)->d = d; break;
      case TypeId::Q5_1: reinterpret_cast<block_q5_1*>(p)->d = d; reinterpret_cast<block_q5_1*>(p)->m = m; break;
      case TypeId::Q8_0: reinterpret_cast<block_q8_0*>(p)->d = d; break;
      case TypeId::IQ4_NL: reinterpret_cast<block_iq4_nl*>(p)->d = d; break;
      case TypeId::Q2_K: reinterpret_cast<block_q2_K*>(p)->d = d; reinterpret_cast<block_q2_K*>(p)->dmin = m; break;
      case TypeId::Q3_K: reinterpret_cast<block_q3_K*>(p)->d = d; break;
      case TypeId::Q4_K: reinterpret_cast<block_q4_K*>(p)->d = d; reinterpret_cast<block_q4_K*>(p)->dmin = m; break;
      case TypeId::Q5_K: reinterpret_cast<block_q5_K*>(p)->d = d; reinterpret_cast<block_q5_K*>(p)->dmin = m; break;
      case TypeId::Q6_K: reinterpret_cast<block_q6_K*>(p)->d = d; break;
      case TypeId::IQ4_XS: reinterpret_cast<block_iq4_xs*>(p)->d = d; break;
      default: break;
    }
  }
}

// An activation row in `at` (Q8_0, Q8_1 or Q8_K) from integer quants q and one power-of-two
// scale; Q8_1's s and Q8_K's bsums are the exact sums (representable: |sum| < 2048 here or
// rounded as fp16 like ggml would store it).
std::vector<uint8_t> make_activation(TypeId at, const std::vector<int>& q, float d) {
  const int64_t n = static_cast<int64_t>(q.size());
  std::vector<uint8_t> a(row_size(at, n));
  if (at == TypeId::Q8_K) {
    auto* y = reinterpret_cast<block_q8_K*>(a.data());
    for (int64_t b = 0; b < n / QK_K; ++b) {
      y[b].d = d;
      for (int j = 0; j < QK_K; ++j) y[b].qs[j] = static_cast<int8_t>(q[static_cast<size_t>(b * QK_K + j)]);
      for (int j = 0; j < QK_K / 16; ++j) {
        int s = 0;
        for (int k = 0; k < 16; ++k) s += y[b].qs[16 * j + k];
        y[b].bsums[j] = static_cast<int16_t>(s);
      }
    }
  } else if (at == TypeId::Q8_1) {
    auto* y = reinterpret_cast<block_q8_1*>(a.data());
    for (int64_t b = 0; b < n / 32; ++b) {
      y[b].d = kernels::fp32_to_fp16(d);
      int s = 0;
      for (int j = 0; j < 32; ++j) s += (y[b].qs[j] = static_cast<int8_t>(q[static_cast<size_t>(b * 32 + j)]));
      y[b].s = kernels::fp32_to_fp16(d * static_cast<float>(s));
    }
  } else {
    auto* y = reinterpret_cast<block_q8_0*>(a.data());
    for (int64_t b = 0; b < n / 32; ++b) {
      y[b].d = kernels::fp32_to_fp16(d);
      for (int j = 0; j < 32; ++j) y[b].qs[j] = static_cast<int8_t>(q[static_cast<size_t>(b * 32 + j)]);
    }
  }
  return a;
}

// The exact value of the product, in double: dequantized weights (reference dequantizer, which
// test_kernels_ggml/kquants prove bit-exact with ggml; with power-of-two scales every weight is
// exact) times d * q. For Q8_1 the stored s stands in for d * sum(q), as in ggml.
double exact_dot(TypeId t, const uint8_t* w, const std::vector<int>& q, float d, const uint8_t* act) {
  const int64_t n = static_cast<int64_t>(q.size());
  std::vector<float> wf(static_cast<size_t>(n));
  kernels::reference_variant(t)->dequantize(w, wf.data(), n);
  double s = 0;
  if (kernels::vec_dot_type(t) == TypeId::Q8_1) {
    // weight = d_w * q_w + m: the m part pairs with s, the stored (fp16) d_a * sum(q_a).
    const size_t bs = traits(t).type_size;
    for (int64_t b = 0; b < n / 32; ++b) {
      const uint8_t* blk = w + static_cast<size_t>(b) * bs;
      const uint16_t mbits = t == TypeId::Q4_1 ? reinterpret_cast<const block_q4_1*>(blk)->m
                                               : reinterpret_cast<const block_q5_1*>(blk)->m;
      const double m = kernels::fp16_to_fp32(mbits);
      const double sa = kernels::fp16_to_fp32(reinterpret_cast<const block_q8_1*>(act)[b].s);
      for (int j = 0; j < 32; ++j) {
        const size_t i = static_cast<size_t>(b * 32 + j);
        s += (static_cast<double>(wf[i]) - m) * static_cast<double>(d) * q[i];
      }
      s += m * sa;
    }
    return s;
  }
  for (size_t i = 0; i < wf.size(); ++i) s += static_cast<double>(wf[i]) * static_cast<double>(d) * q[i];
  return s;
}

// One weight row (random bytes, power-of-two scales) against one activation row; checks every
// variant of t. Returns how many comparisons were exact (not bounded).
int check_quant_case(TypeId t, int64_t n, const std::vector<uint8_t>& w_in, const std::vector<int>& q,
                     const std::string& what) {
  const TypeId at = kernels::vec_dot_type(t);
  const float d_a = pow2(-5);
  const std::vector<uint8_t> act_in = make_activation(at, q, d_a);
  // Odd addresses: kernels must not assume alignment.
  std::vector<uint8_t> wbuf(w_in.size() + 1), abuf(act_in.size() + 3);
  std::memcpy(wbuf.data() + 1, w_in.data(), w_in.size());
  std::memcpy(abuf.data() + 3, act_in.data(), act_in.size());
  const uint8_t* w = wbuf.data() + 1;
  const uint8_t* a = abuf.data() + 3;

  const double exact = exact_dot(t, w, q, d_a, a);
  // Units: weights are multiples of 2^-3 (scales) and activations of d_a, so every term is a
  // multiple of 2^-8; partial sums never exceed sum |q_a| * max_weight_units.
  double suma = 0;
  for (int v : q) suma += std::abs(v);
  const double bound_units = suma * max_weight_units(t);
  const bool representable = bound_units < 16777216.0;  // 2^24
  const double unit = std::ldexp(1.0, -8);
  // Float reorder bound: each of the (blocks + 16) float additions rounds by at most 2^-24 of a
  // partial sum, itself at most bound_units * unit.
  const double tol = (static_cast<double>(n / block_of(t)) + 16) * std::ldexp(1.0, -24) * bound_units * unit;
  for (const DotVariant* v : variants_of(t)) {
    const float got = v->vec_dot(n, w, a);
    INFO(describe(*v) << " " << what << " n=" << n << " exact=" << exact << " got=" << got << " " << rerun_hint());
    if (representable)
      REQUIRE(static_cast<double>(got) == exact);
    else
      REQUIRE(std::fabs(static_cast<double>(got) - exact) <= tol);
  }
  return representable ? 1 : 0;
}

std::vector<uint8_t> random_weights(Rng& rng, TypeId t, int64_t n) {
  std::vector<uint8_t> w(row_size(t, n));
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  set_pow2_scales(t, w.data(), n, kernels::fp32_to_fp16(pow2(-3)), kernels::fp32_to_fp16(pow2(-3)));
  return w;
}

std::vector<int64_t> lengths_of(TypeId t) {
  if (block_of(t) == QK_K) return {256, 512, 768, 1280};
  return {32, 64, 96, 160, 224, 256, 288, 544, 1056};
}

TEST_CASE("quantized dots: every variant equals the exact sum on random blocks", "[kernels][dot]") {
  Rng rng(test::seed());
  for (TypeId t : kQuantTypes) {
    int exact_count = 0, total = 0;
    for (int64_t n : lengths_of(t)) {
      for (int rep = 0; rep < 6; ++rep) {
        const std::vector<uint8_t> w = random_weights(rng, t, n);
        // Small activations keep the sums representable (exact); larger ones exercise the bound.
        const int r = rep < 4 ? 4 : 127;
        std::vector<int> q(static_cast<size_t>(n));
        for (int& v : q) v = uniform_int(rng, -r, r);
        exact_count += check_quant_case(t, n, w, q, "random |q|<=" + std::to_string(r));
        ++total;
      }
    }
    INFO(type_name(t));
    CHECK(exact_count * 2 >= total);  // the exact comparison, not the bound, decides most cases
  }
}

TEST_CASE("quantized dots: extreme quants, -128 activations, zero and all-max blocks", "[kernels][dot]") {
  Rng rng(test::seed());
  for (TypeId t : kQuantTypes) {
    for (int64_t n : {static_cast<int64_t>(block_of(t)), static_cast<int64_t>(block_of(t)) * 3}) {
      std::vector<uint8_t> w_rand = random_weights(rng, t, n);
      std::vector<uint8_t> w_max(row_size(t, n), 0xFF), w_zero(row_size(t, n), 0);
      set_pow2_scales(t, w_max.data(), n, kernels::fp32_to_fp16(pow2(-3)), kernels::fp32_to_fp16(pow2(-3)));
      const std::vector<std::pair<std::string, std::function<int(size_t)>>> acts = {
          {"+127", [](size_t) { return 127; }},
          {"-127", [](size_t) { return -127; }},
          {"-128", [](size_t) { return -128; }},
          {"+-128/127", [](size_t i) { return i % 2 ? 127 : -128; }},
          {"zero", [](size_t) { return 0; }},
          {"one -128", [](size_t i) { return i == 5 ? -128 : 0; }},
      };
      for (const auto& [name, f] : acts) {
        std::vector<int> q(static_cast<size_t>(n));
        for (size_t i = 0; i < q.size(); ++i) q[i] = f(i);
        check_quant_case(t, n, w_rand, q, "random weights, acts " + name);
        check_quant_case(t, n, w_max, q, "all-0xFF weights, acts " + name);
        check_quant_case(t, n, w_zero, q, "all-zero weights, acts " + name);
      }
    }
  }
}

// Float weights: F32 rows as floats, F16/BF16 as their bits; activations in the same type.
std::vector<uint8_t> to_type(TypeId t, const std::vector<float>& x) {
  std::vector<uint8_t> out(row_size(t, static_cast<int64_t>(x.size())));
  kernels::quantize_activation(t, x.data(), out.data(), static_cast<int64_t>(x.size()));
  return out;
}
double as_float(TypeId t, const uint8_t* p, size_t i) {
  if (t == TypeId::F32) return reinterpret_cast<const float*>(p)[i];
  const uint16_t h = reinterpret_cast<const uint16_t*>(p)[i];
  return t == TypeId::F16 ? kernels::fp16_to_fp32(h) : kernels::bf16_to_fp32(h);
}

TEST_CASE("float dots: within the summation bound, exact on small integers", "[kernels][dot]") {
  Rng rng(test::seed());
  for (TypeId t : kFloatTypes) {
    for (int64_t n : {1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 256, 1000, 4096}) {
      for (int integers = 0; integers < 2; ++integers) {
        std::vector<float> x(static_cast<size_t>(n)), y(static_cast<size_t>(n));
        for (size_t i = 0; i < x.size(); ++i) {
          x[i] = integers ? static_cast<float>(uniform_int(rng, -16, 16)) : uniform(rng, -3, 3);
          y[i] = integers ? static_cast<float>(uniform_int(rng, -16, 16)) : uniform(rng, -3, 3);
        }
        const std::vector<uint8_t> wb = to_type(t, x), ab = to_type(t, y);
        double exact = 0, mag = 0;
        for (size_t i = 0; i < x.size(); ++i) {
          const double p = as_float(t, wb.data(), i) * as_float(t, ab.data(), i);
          exact += p;
          mag += std::fabs(p);
        }
        const double tol = (static_cast<double>(n) + 64) * std::ldexp(1.0, -24) * mag;
        for (const DotVariant* v : variants_of(t)) {
          const float got = v->vec_dot(n, wb.data(), ab.data());
          INFO(describe(*v) << " n=" << n << " integers=" << integers << " exact=" << exact << " got=" << got);
          if (integers)
            REQUIRE(static_cast<double>(got) == exact);
          else
            REQUIRE(std::fabs(static_cast<double>(got) - exact) <= tol);
        }
      }
    }
  }
}

// Weights whose quants all sit at the type's offset (Q3_K: low 0 + high bit = 4 - 4; Q6_K:
// 32 - 32) are zero weights, as quantizers write for zero or pruned sub-blocks, so the dot is
// exactly 0 whatever the activations. A kernel that subtracts the offset through the activation
// sums (offset * scale * bsum) in other int32 lanes than the ones holding scale * u * y gets
// lanes that are not partial sums of the products: each lane's float product rounds on its own
// and the exact integer cancellation leaves rounding residue (e.g. 2^-13 from lanes near 2^14
// with a scale of 3.8). Every lane must hold a true partial sum, so the result is exactly 0.
TEST_CASE("K-quant dots: quants at the offset (zero weights) give exactly 0", "[kernels][dot]") {
  const int64_t n = 2 * QK_K;
  // Scales with full mantissas, so that products of unequal lanes do not round alike.
  const float d_a = 1.0f / 3.0f;
  const uint16_t d_w = kernels::fp32_to_fp16(0.9004f);
  for (TypeId t : {TypeId::Q3_K, TypeId::Q6_K}) {
    std::vector<uint8_t> w(row_size(t, n), 0);
    for (int64_t b = 0; b < n / QK_K; ++b) {
      if (t == TypeId::Q3_K) {
        auto& x = reinterpret_cast<block_q3_K*>(w.data())[b];
        std::memset(x.hmask, 0xFF, sizeof x.hmask);  // high bit set, low bits 0: u = 4
        std::memset(x.qs, 0, sizeof x.qs);
        std::memset(x.scales, 0xFF, sizeof x.scales);  // every 6-bit scale 63: 63 - 32 = 31
        x.d = d_w;
      } else {
        auto& x = reinterpret_cast<block_q6_K*>(w.data())[b];
        std::memset(x.ql, 0, sizeof x.ql);
        std::memset(x.qh, 0xAA, sizeof x.qh);  // high bits 2 every 2 bits: u = 32
        for (int j = 0; j < QK_K / 16; ++j) x.scales[j] = static_cast<int8_t>(j % 2 ? -127 : 121);
        x.d = d_w;
      }
    }
    std::vector<float> wd(static_cast<size_t>(n));
    kernels::reference_variant(t)->dequantize(w.data(), wd.data(), n);
    for (float v : wd) REQUIRE(v == 0.0f);
    // Activations that put unequal integers in several lanes of one sub-block: elements 16 and
    // 20 (second sub-block of the first 32) against a zero rest, and a dense row.
    for (int pattern = 0; pattern < 3; ++pattern) {
      std::vector<int> q(static_cast<size_t>(n), 0);
      if (pattern == 0) {
        q[16] = 127;
        q[20] = 1;
      } else if (pattern == 1) {
        q[16] = -128;
        q[21] = 77;
        q[300] = 5;
      } else {
        for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<int>((i * 37 + 11) % 255) - 127;
      }
      const std::vector<uint8_t> a = make_activation(TypeId::Q8_K, q, d_a);
      for (const DotVariant* v : variants_of(t)) {
        const float got = v->vec_dot(n, w.data(), a.data());
        INFO(describe(*v) << " pattern " << pattern << " got=" << hex_float(got));
        CHECK(got == 0.0f);
      }
    }
  }
}

TEST_CASE("dispatch: every type has a dot, SHRINK_FORCE_REF picks the reference", "[kernels][dot]") {
  for (TypeId t : kQuantTypes) {
    REQUIRE(kernels::has_vec_dot(t));
    REQUIRE(kernels::reference_dot(t) != nullptr);
    const DotVariant* d = kernels::dispatched_dot(t);
    REQUIRE(d != nullptr);
    if (kernels::force_reference()) REQUIRE(d->isa == kernels::Isa::kRef);
  }
}

#if defined(SHRINK_HAVE_X86)
// The AVX-512 Q8_0 activation quantizer writes the reference's bytes: random rows, rows of exact
// rounding ties (k + 0.5 steps of amax / 127), zero blocks and +-max blocks.
TEST_CASE("Q8_0 activations: AVX-512 bytes == reference bytes", "[kernels][dot]") {
  if (!kernels::cpu_features().avx512f) {
    WARN("no AVX-512F on this CPU: only the reference runs here");
    return;
  }
  Rng rng(test::seed());
  for (const int64_t n : {32, 64, 288, 4096}) {
    for (int kind = 0; kind < 4; ++kind) {
      std::vector<float> x(static_cast<size_t>(n));
      fill_random_row(rng, x.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        if (kind == 1) x[static_cast<size_t>(i)] = (static_cast<float>(i % 255) - 127.0f + 0.5f) * (3.0f / 127.0f);
        if (kind == 2 && i < 32) x[static_cast<size_t>(i)] = 0.0f;
        if (kind == 3) x[static_cast<size_t>(i)] = (i % 2 ? 1.0f : -1.0f) * 1e30f;
      }
      std::vector<uint8_t> a(row_size(TypeId::Q8_0, n)), b(a.size());
      kernels::ref::quantize_act_q8_0(x.data(), a.data(), n);
      kernels::avx512::quantize_act_q8_0(x.data(), b.data(), n);
      INFO("n " << n << " kind " << kind << " (rerun with --rng-seed " << test::seed() << ")");
      CHECK(a == b);
    }
  }
}
#endif

// gemm() tiles rows and tokens and spreads them over threads; each output must still be exactly
// the dispatched vec_dot of its (row, token) pair on the activations quantize_activation makes.
TEST_CASE("gemm equals one dispatched vec_dot per (token, row), every tile shape", "[kernels][dot][gemm]") {
  Rng rng(test::seed());
  for (TypeId t : {TypeId::F32, TypeId::F16, TypeId::BF16, TypeId::Q4_0, TypeId::Q4_1, TypeId::Q5_0, TypeId::Q5_1,
                   TypeId::Q8_0, TypeId::IQ4_NL, TypeId::Q2_K, TypeId::Q3_K, TypeId::Q4_K, TypeId::Q5_K,
                   TypeId::Q6_K, TypeId::IQ4_XS}) {
    REQUIRE(kernels::can_gemm(t));
    const TypeId at = kernels::vec_dot_type(t);
    const int64_t cols = block_of(t) == QK_K ? 512 : 96;
    for (int64_t rows : {1, 7, 130, 600}) {
      // Where gemm follows ggml_mul_mat's own order instead, test_kernels_gemm checks it.
      if (kernels::gemm_matches_ggml(t, rows)) continue;
      for (int64_t tokens : {1, 2, 33, 70}) {
        std::vector<float> wf(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(tokens * cols));
        for (float& v : wf) v = uniform(rng, -1, 1);
        for (float& v : x) v = uniform(rng, -2, 2);
        const size_t rb = row_size(t, cols);
        std::vector<uint8_t> w(rb * static_cast<size_t>(rows));
        kernels::quantize_rows(t, wf.data(), w.data(), rows, cols, nullptr);
        std::vector<float> y(static_cast<size_t>(rows * tokens), -1.0f);
        kernels::gemm(t, w.data(), rb, rows, cols, x.data(), tokens, y.data());
        std::vector<uint8_t> a(row_size(at, cols));
        for (int64_t tk = 0; tk < tokens; ++tk) {
          kernels::quantize_activation(at, x.data() + tk * cols, a.data(), cols);
          for (int64_t r = 0; r < rows; ++r) {
            const float want = kernels::vec_dot(t, cols, w.data() + static_cast<size_t>(r) * rb, a.data());
            const float got = y[static_cast<size_t>(tk * rows + r)];
            INFO(type_name(t) << " rows=" << rows << " tokens=" << tokens << " token " << tk << " row " << r);
            REQUIRE(std::memcmp(&got, &want, sizeof got) == 0);
          }
        }
      }
    }
  }
}

// ---- ggml as the oracle ----

test::fs::path ggml_cpu_library(const std::string& variant) {
  const test::fs::path base = test::ggml_base_library();
  if (base.empty()) return {};
  const test::fs::path p = base.parent_path() / ("libggml-cpu-" + variant + ".so");
  return test::fs::exists(p) ? p : test::fs::path();
}

const test::GgmlCpuOracle& generic_ggml() {
  static test::GgmlCpuOracle o(ggml_cpu_library("x64").string());
  if (!o.ok()) test::skip_program("ggml CPU oracle unavailable: " + o.error());
  return o;
}

// Random rows plus rows made of exact rounding ties and of equal-magnitude extremes of both signs.
std::vector<std::vector<float>> activation_rows(Rng& rng, int64_t n) {
  std::vector<std::vector<float>> rows;
  for (int r = 0; r < 12; ++r) {
    std::vector<float> x(static_cast<size_t>(n));
    fill_random_row(rng, x.data(), n);
    rows.push_back(x);
  }
  {
    // max = -127 * s makes iscale = 1/s exactly, so (k + 0.5) * s lands on a tie.
    std::vector<float> x(static_cast<size_t>(n));
    const float s = pow2(uniform_int(rng, -10, 10));
    for (size_t i = 0; i < x.size(); ++i) x[i] = (static_cast<float>(uniform_int(rng, -127, 126)) + 0.5f) * s;
    for (int64_t b = 0; b < n / QK_K; ++b) x[static_cast<size_t>(b * QK_K + uniform_int(rng, 0, QK_K - 1))] = -127 * s;
    rows.push_back(x);
  }
  {
    // +a and -a both present: the first one fixes the sign of d.
    std::vector<float> x(static_cast<size_t>(n));
    fill_random_row(rng, x.data(), n);
    for (int64_t b = 0; b < n / QK_K; ++b) {
      x[static_cast<size_t>(b * QK_K + 3)] = 1e3f;
      x[static_cast<size_t>(b * QK_K + 7)] = -1e3f;
    }
    rows.push_back(x);
    for (auto& v : x) v = -v;
    rows.push_back(x);
  }
  rows.push_back(std::vector<float>(static_cast<size_t>(n), 0.0f));
  {
    std::vector<float> x(static_cast<size_t>(n), 0.0f);  // one zero super-block among others
    fill_random_row(rng, x.data(), n);
    for (int j = 0; j < QK_K; ++j) x[static_cast<size_t>(j)] = 0.0f;
    rows.push_back(x);
  }
  return rows;
}

TEST_CASE("activation bytes == ggml's from_float (Q8_K, F16, BF16)", "[kernels][dot][data]") {
  const test::GgmlCpuOracle& g = generic_ggml();
  Rng rng(test::seed());
  for (TypeId at : {TypeId::Q8_K, TypeId::F16, TypeId::BF16}) {
    for (int64_t n : {256, 512, 2048}) {
      for (const std::vector<float>& x : activation_rows(rng, n)) {
        std::vector<uint8_t> ours(row_size(at, n), 0xAA), theirs(row_size(at, n), 0);
        kernels::quantize_activation(at, x.data(), ours.data(), n);
        REQUIRE(g.from_float(static_cast<uint32_t>(at), x.data(), theirs.data(), n));
        INFO(type_name(at) << " n=" << n << " " << rerun_hint());
        REQUIRE(std::memcmp(ours.data(), theirs.data(), ours.size()) == 0);
      }
    }
  }
}

// The value of each activation, in double: d * q for the 8-bit types (exact: 24 + 8 bits), the
// value itself otherwise.
void activation_values(TypeId at, const uint8_t* a, double* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    switch (at) {
      case TypeId::Q8_K: {
        const auto& b = reinterpret_cast<const block_q8_K*>(a)[i / QK_K];
        out[i] = static_cast<double>(b.d) * b.qs[i % QK_K];
        break;
      }
      case TypeId::Q8_0: {
        const auto& b = reinterpret_cast<const block_q8_0*>(a)[i / 32];
        out[i] = static_cast<double>(kernels::fp16_to_fp32(b.d)) * b.qs[i % 32];
        break;
      }
      case TypeId::Q8_1: {
        const auto& b = reinterpret_cast<const block_q8_1*>(a)[i / 32];
        out[i] = static_cast<double>(kernels::fp16_to_fp32(b.d)) * b.qs[i % 32];
        break;
      }
      default: out[i] = as_float(at, a, static_cast<size_t>(i));
    }
  }
}

// A weight row split into its scale part (d * scale * quant: the min fields zeroed) and its min
// part (-dmin * min or + m: the d field zeroed), each dequantized by the reference. Types without
// mins have an empty min part.
struct WeightParts {
  std::vector<float> scaled, mins;
};
WeightParts weight_parts(TypeId t, const std::vector<uint8_t>& w, int64_t n) {
  const size_t bs = traits(t).type_size;
  std::vector<uint8_t> no_min = w, no_d = w;
  bool has_min = true;
  for (size_t off = 0; off + bs <= w.size(); off += bs) {
    switch (t) {
      case TypeId::Q4_1:
        reinterpret_cast<block_q4_1*>(no_min.data() + off)->m = 0;
        reinterpret_cast<block_q4_1*>(no_d.data() + off)->d = 0;
        break;
      case TypeId::Q5_1:
        reinterpret_cast<block_q5_1*>(no_min.data() + off)->m = 0;
        reinterpret_cast<block_q5_1*>(no_d.data() + off)->d = 0;
        break;
      case TypeId::Q2_K:
        reinterpret_cast<block_q2_K*>(no_min.data() + off)->dmin = 0;
        reinterpret_cast<block_q2_K*>(no_d.data() + off)->d = 0;
        break;
      case TypeId::Q4_K:
        reinterpret_cast<block_q4_K*>(no_min.data() + off)->dmin = 0;
        reinterpret_cast<block_q4_K*>(no_d.data() + off)->d = 0;
        break;
      case TypeId::Q5_K:
        reinterpret_cast<block_q5_K*>(no_min.data() + off)->dmin = 0;
        reinterpret_cast<block_q5_K*>(no_d.data() + off)->d = 0;
        break;
      default: has_min = false;
    }
  }
  WeightParts parts;
  parts.scaled.resize(static_cast<size_t>(n));
  kernels::reference_variant(t)->dequantize(no_min.data(), parts.scaled.data(), n);
  if (has_min) {
    parts.mins.resize(static_cast<size_t>(n));
    kernels::reference_variant(t)->dequantize(no_d.data(), parts.mins.data(), n);
  }
  return parts;
}

// How far two correct vec_dots of the same operands may differ, from the float steps of the
// kernels (ref: kernels/ref/dot*_ref.cc; ours: kernels/x86/dot_avx2.cc, dot_avx512.cc; ggml:
// ggml_vec_dot_*_generic in ggml-cpu/quants.c and vec.cpp).
//
// Every kernel adds float terms of one form: c * I, where c is a product of the stored scales
// (d_w * d_a, dmin_w * d_a, m * s; one rounding) and I an exact integer converted to float (one
// more rounding once |I| > 2^24: Q6_K lanes reach 128 * 32 * 127 * 64), or, for F32/F16/BF16,
// one product w_i * a_i. A final multiply and the additions follow. With u = 2^-24, a term with p
// roundings carries a relative error of at most gamma_p = p u / (1 - p u), and a sum of such
// terms in any bracketing where each term passes through at most D additions is off by at most
// gamma_{p+D} * T, T = sum |exact terms| (Higham, Accuracy and Stability, 2nd ed., ch. 3-4).
// Here p <= 4 and D <= (terms on the longest chain) + 8 lanes + 4 final combinations; the
// longest chain is one term per block (n/32, n/256: ggml, the reference and the AVX2 lanes each
// take one block per step; AVX-512 half as many) or, for the float types, n/8 (every SIMD
// variant keeps at least 8 lanes; ggml and the reference sum in double, far inside the bound).
// So each side is within gamma_k * T of the exact value with k = chain + 16, and two sides of
// each other within 2 gamma_k T, plus 2^-149 per rounding for results that go subnormal.
//
// T must count every term a kernel forms, not the dequantized products sum |w_i a_i|: with
// mins (Q4_1/Q5_1, Q2_K/Q4_K/Q5_K) the kernels form d * sum(scale * q_w * q_a) and
// dmin * sum(min * bsum) (or m * s) separately, and those two cancel in w = d sc q - dmin m;
// a lane's integer I is a sum of exact products, so |c I| <= sum of the |scale part * a_i|
// over the lane's elements, whatever the lane partition. Hence
//   T = sum_i |scaled_i * a_i| + sum over 16-element groups |min_g * sum_g a_i|  (Q8_K types)
//     = sum_i |scaled_i * a_i| + sum over blocks |m * s|                       (Q8_1 types)
// (a group of 16 shares one min; ggml pairs groups or sums them all, which only lowers T).
// A real error - a wrong scale, min or quant for one sub-block of 16 or 32 - moves the result by
// that sub-block's share of T (1/16 of a super-block's), orders of magnitude above 2 gamma_k T
// (2^-17 T at n = 4096 for Q4_0, about 2^-19 T for the super-block types).
struct DotBound {
  double mag = 0;        // T
  double tol = 0;        // allowed |x - y| between two correct results
  bool finite = true;    // every stored scale and value finite
};

DotBound dot_bound(TypeId t, TypeId at, const std::vector<uint8_t>& w, const std::vector<uint8_t>& a, int64_t n) {
  DotBound b;
  std::vector<double> av(static_cast<size_t>(n));
  activation_values(at, a.data(), av.data(), n);
  const WeightParts parts = weight_parts(t, w, n);
  for (size_t i = 0; i < av.size(); ++i) {
    if (!std::isfinite(parts.scaled[i]) || !std::isfinite(av[i])) b.finite = false;
    b.mag += std::fabs(static_cast<double>(parts.scaled[i]) * av[i]);
  }
  if (!parts.mins.empty()) {
    for (float v : parts.mins)
      if (!std::isfinite(v)) b.finite = false;
    if (at == TypeId::Q8_1) {
      // The min part of a Q4_1/Q5_1 weight is +m, constant over the block of 32.
      for (int64_t blk = 0; blk < n / 32; ++blk) {
        const double m = parts.mins[static_cast<size_t>(blk * 32)];
        const double sa = kernels::fp16_to_fp32(reinterpret_cast<const block_q8_1*>(a.data())[blk].s);
        if (!std::isfinite(sa)) b.finite = false;
        b.mag += std::fabs(m * sa);
      }
    } else {
      for (int64_t g = 0; g < n / 16; ++g) {
        double sum_a = 0;
        for (int64_t i = 16 * g; i < 16 * g + 16; ++i) sum_a += av[static_cast<size_t>(i)];
        b.mag += std::fabs(static_cast<double>(parts.mins[static_cast<size_t>(16 * g)]) * sum_a);
      }
    }
  }
  const bool is_float = t == TypeId::F32 || t == TypeId::F16 || t == TypeId::BF16;
  const double chain = is_float ? static_cast<double>(n) / 8 : static_cast<double>(n / block_of(t));
  const double k = chain + 16, u = std::ldexp(1.0, -24);
  const double gamma = k * u / (1 - k * u);
  // Scales and the dequantizer's float products (d * scale * q can take 25 bits in Q6_K) can
  // make T itself low by 2^-24 relative: the factor (1 + 2^-20) covers it.
  b.tol = 2 * gamma * b.mag * (1 + std::ldexp(1.0, -20)) + std::ldexp(4.0 * static_cast<double>(n), -149);
  return b;
}

TEST_CASE("vec_dot agrees with ggml's vec_dot on quantized random rows", "[kernels][dot][data]") {
  const test::GgmlCpuOracle& g = generic_ggml();
  Rng rng(test::seed());
  int nonfinite = 0, compared = 0;
  for (TypeId t : {TypeId::F32, TypeId::F16, TypeId::BF16, TypeId::Q4_0, TypeId::Q4_1, TypeId::Q5_0, TypeId::Q5_1,
                   TypeId::Q8_0, TypeId::IQ4_NL, TypeId::Q2_K, TypeId::Q3_K, TypeId::Q4_K, TypeId::Q5_K,
                   TypeId::Q6_K, TypeId::IQ4_XS}) {
    const TypeId at = kernels::vec_dot_type(t);
    REQUIRE(g.vec_dot_type(static_cast<uint32_t>(t)) == static_cast<uint32_t>(at));
    for (int64_t n : {256, 768, 4096}) {
      for (int rep = 0; rep < 8; ++rep) {
        std::vector<float> wf(static_cast<size_t>(n)), xf(static_cast<size_t>(n));
        fill_random_row(rng, wf.data(), n);
        fill_random_row(rng, xf.data(), n);
        std::vector<uint8_t> w(row_size(t, n)), a(row_size(at, n));
        kernels::quantize_rows(t, wf.data(), w.data(), 1, n, nullptr);
        kernels::quantize_activation(at, xf.data(), a.data(), n);
        const DotBound bound = dot_bound(t, at, w, a, n);
        float theirs = 0;
        REQUIRE(g.vec_dot(static_cast<uint32_t>(t), n, w.data(), a.data(), &theirs));
        const float ref = kernels::reference_dot(t)->vec_dot(n, w.data(), a.data());
        const float disp = kernels::vec_dot(t, n, w.data(), a.data());
        INFO(type_name(t) << " n=" << n << " ggml=" << hex_float(theirs) << " ref=" << hex_float(ref)
                          << " dispatched=" << hex_float(disp) << " ("
                          << kernels::isa_name(kernels::dispatched_dot(t)->isa) << ") T=" << bound.mag
                          << " tol=" << bound.tol << " " << rerun_hint());
        if (!bound.finite) {
          // fill_random_row's outliers (up to ~1e5) overflow fp16 fields: a Q4_0 d = max / -8,
          // an F16 value, Q8_1's s = d * sum(q) (up to ~1e3 * 4064). An infinite scale meets
          // every integer of its block, so each kernel's result is inf or NaN (inf * 0 or
          // inf - inf, which depends on the lane partition: ggml's generic inf can be NaN in
          // lanes of four). Each side must say so; two infinities must agree in sign, since
          // they can only come from infinite terms of that one sign.
          ++nonfinite;
          REQUIRE(!std::isfinite(theirs));
          REQUIRE(!std::isfinite(ref));
          REQUIRE(!std::isfinite(disp));
          if (std::isinf(theirs) && std::isinf(ref)) REQUIRE(ref == theirs);
          if (std::isinf(theirs) && std::isinf(disp)) REQUIRE(disp == theirs);
          continue;
        }
        // Finite operands of these magnitudes (|x| < ~1e6) keep T, and so every partial sum,
        // far below FLT_MAX: no side may overflow.
        REQUIRE(bound.mag < 1e30);
        ++compared;
        REQUIRE(std::fabs(static_cast<double>(ref) - theirs) <= bound.tol);
        REQUIRE(std::fabs(static_cast<double>(disp) - theirs) <= bound.tol);
      }
    }
  }
  // The non-finite path must not decide most cases.
  REQUIRE(compared > 10 * nonfinite);
}

// ggml's AVX2 build (libggml-cpu-haswell.so) is what llama.cpp runs on AVX2 machines, and its
// tinyBLAS batches accumulate the same way. Types whose x86 variants promise the very same float
// sequence must give identical bits, not merely close ones.
TEST_CASE("x86 dot variants equal ggml's AVX2 vec_dot bit for bit", "[kernels][dot][data]") {
  if (!kernels::cpu_features().avx2 || !kernels::cpu_features().fma) {
    WARN("no AVX2+FMA on this CPU: nothing to compare");
    return;
  }
  static test::GgmlCpuOracle g(ggml_cpu_library("haswell").string());
  if (!g.ok()) test::skip_program("ggml AVX2 oracle unavailable: " + g.error());
  Rng rng(test::seed());
  int compared = 0;
  for (TypeId t : {TypeId::Q4_0, TypeId::Q8_0, TypeId::Q4_1, TypeId::Q5_0, TypeId::Q5_1}) {
    const TypeId at = kernels::vec_dot_type(t);
    for (int64_t n : {32, 64, 96, 160, 1024, 4096, 4128}) {
      for (int rep = 0; rep < 10; ++rep) {
        std::vector<float> wf(static_cast<size_t>(n)), xf(static_cast<size_t>(n));
        fill_random_row(rng, wf.data(), n);
        fill_random_row(rng, xf.data(), n);
        std::vector<uint8_t> w(row_size(t, n)), a(row_size(at, n));
        kernels::quantize_rows(t, wf.data(), w.data(), 1, n, nullptr);
        kernels::quantize_activation(at, xf.data(), a.data(), n);
        float theirs = 0;
        REQUIRE(g.vec_dot(static_cast<uint32_t>(t), n, w.data(), a.data(), &theirs));
        for (const DotVariant* v : variants_of(t)) {
          if (v->isa == kernels::Isa::kRef) continue;
          const float ours = v->vec_dot(n, w.data(), a.data());
          INFO(describe(*v) << " n=" << n << " ggml=" << hex_float(theirs) << " ours=" << hex_float(ours) << " "
                            << rerun_hint());
          REQUIRE(std::memcmp(&ours, &theirs, sizeof ours) == 0);
          ++compared;
        }
      }
    }
  }
  REQUIRE(compared > 0);
}


// Q8_0 activations against ggml's own x86 quantize_row_q8_0 (the AVX2 build's from_float, whose
// rounding is llama.cpp's on every x86 build): the reference and the AVX-512 form, on random rows,
// rows of exact ties and zero blocks.
TEST_CASE("Q8_0 activation bytes == ggml's x86 from_float", "[kernels][dot][data]") {
  if (!kernels::cpu_features().avx2) {
    WARN("no AVX2 on this CPU: ggml's x86 build cannot run here");
    return;
  }
  static test::GgmlCpuOracle g(ggml_cpu_library("haswell").string());
  if (!g.ok()) test::skip_program("ggml AVX2 oracle unavailable: " + g.error());
  Rng rng(test::seed());
  for (const int64_t n : {32, 64, 288, 4096}) {
    for (int kind = 0; kind < 3; ++kind) {
      std::vector<float> x(static_cast<size_t>(n));
      fill_random_row(rng, x.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        if (kind == 1) x[static_cast<size_t>(i)] = (static_cast<float>(i % 255) - 127.0f + 0.5f) * (3.0f / 127.0f);
        if (kind == 2 && i < 32) x[static_cast<size_t>(i)] = 0.0f;
      }
      std::vector<uint8_t> theirs(row_size(TypeId::Q8_0, n)), ours(theirs.size());
      REQUIRE(g.from_float(static_cast<uint32_t>(TypeId::Q8_0), x.data(), theirs.data(), n));
      INFO("n " << n << " kind " << kind << " (rerun with --rng-seed " << test::seed() << ")");
      kernels::ref::quantize_act_q8_0(x.data(), ours.data(), n);
      CHECK(ours == theirs);
#if defined(SHRINK_HAVE_X86)
      if (kernels::cpu_features().avx512f) {
        kernels::avx512::quantize_act_q8_0(x.data(), ours.data(), n);
        CHECK(ours == theirs);
      }
#endif
    }
  }
}

}  // namespace
}  // namespace shrink
