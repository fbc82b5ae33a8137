// kernels::gemm (kernels/gemm.h, kernels/gemm_kernels.h).
//
// Without ggml:
//  - Exact data: weights with power-of-two block scales (F32: small integers) and activations
//    whose quantized scales are powers of two, small enough that no float step of any order
//    rounds: every output equals the exact sum (double, from the dequantized weights and
//    activations) bit for bit. This pins the integer parts: nibble/sign handling, the -8
//    offset, Q4_K's 6-bit scales and mins and the Q8_K bsums, the token packing and the edges of
//    row and token tiles.
//  - Random data: every output within (n + 64) * 2^-24 * sum |w_i a_i| of the per-row scalar
//    reference (kernels/ref, same activation bytes); the reference sums in another order.
// With ggml ([data]: libggml-base.so + libggml-cpu-zen4.so of the npm package, through
// tests/ggml_mulmat_oracle.h, weights placed as llama.cpp places them): for every type and shape
// where gemm_matches_ggml() says so, every output is bit-identical to ggml_mul_mat's; for the
// others, within the float bound above (and the count of differing outputs is reported).
// Shapes: rows 64 and 40 (% 8 == 0: Q4_0/Q4_K go through the repack path in ggml), 36 (% 4 == 0,
// % 8 != 0), 30 and 13; tokens 1, 2, 3, 4, 5, 7, 64, 128; columns 256 and 4096 (and 72 for F32
// and F16, k % 16 != 0). Types F32, F16, Q8_0, Q4_0, Q4_K.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "kernels/dispatch.h"
#include "kernels/dot.h"
#include "kernels/fp16.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "kernels/registry.h"
#include "tests/ggml_mulmat_oracle.h"
#include "tests/test_kernels_data.h"
#include "tests/test_support.h"

namespace shrink {
namespace {

using namespace shrink::test::kernel_data;

const TypeId kTypes[] = {TypeId::F32, TypeId::F16, TypeId::Q8_0, TypeId::Q4_0, TypeId::Q4_K};
const int64_t kRows[] = {64, 40, 36, 30, 13};
const int64_t kTokens[] = {1, 2, 3, 4, 5, 7, 64, 128};

std::string hex_float(float f) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", static_cast<double>(f));
  return buf;
}
std::string rerun_hint() { return "rerun with: --rng-seed " + std::to_string(test::seed()); }

// The activations as the kernels see them: dequantized from quantize_activation's bytes.
std::vector<float> activation_values(TypeId t, const float* x, int64_t n) {
  const TypeId at = kernels::vec_dot_type(t);
  if (at == TypeId::F32) return std::vector<float>(x, x + n);
  std::vector<uint8_t> a(row_size(at, n));
  kernels::quantize_activation(at, x, a.data(), n);
  std::vector<float> v(static_cast<size_t>(n));
  if (at == TypeId::F16) {
    const auto* h = reinterpret_cast<const uint16_t*>(a.data());
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = kernels::fp16_to_fp32(h[i]);
  } else if (at == TypeId::Q8_0) {
    const auto* b = reinterpret_cast<const block_q8_0*>(a.data());
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = kernels::fp16_to_fp32(b[i / 32].d) * b[i / 32].qs[i % 32];
  } else {
    REQUIRE(at == TypeId::Q8_K);
    const auto* b = reinterpret_cast<const block_q8_K*>(a.data());
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = b[i / QK_K].d * b[i / QK_K].qs[i % QK_K];
  }
  return v;
}

// Per-output sum of |w_i a_i| and the double sum, from dequantized weights and activations.
struct Exact {
  std::vector<double> sum, abs_sum;  // (tokens, rows)
};
Exact exact_products(TypeId t, const std::vector<uint8_t>& w, int64_t rows, int64_t cols, const std::vector<float>& x,
                     int64_t tokens) {
  std::vector<float> wf(static_cast<size_t>(rows * cols));
  kernels::dequantize_rows(t, w.data(), wf.data(), rows, cols);
  // Q4_K's kernels sum d * scale * q * a and dmin * min * a apart and subtract at the end, so
  // the rounding bound scales with both parts, not with their difference.
  std::vector<float> wmin;
  if (t == TypeId::Q4_K) {
    std::vector<uint8_t> w_scale = w, w_min = w;
    auto* bs = reinterpret_cast<block_q4_K*>(w_scale.data());
    auto* bm = reinterpret_cast<block_q4_K*>(w_min.data());
    for (int64_t i = 0; i < rows * cols / QK_K; ++i) {
      bs[i].dmin = 0;
      bm[i].d = 0;
    }
    kernels::dequantize_rows(t, w_scale.data(), wf.data(), rows, cols);
    wmin.resize(wf.size());
    kernels::dequantize_rows(t, w_min.data(), wmin.data(), rows, cols);
  }
  Exact e;
  e.sum.assign(static_cast<size_t>(rows * tokens), 0.0);
  e.abs_sum = e.sum;
  for (int64_t tk = 0; tk < tokens; ++tk) {
    const std::vector<float> a = activation_values(t, x.data() + tk * cols, cols);
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0, sa = 0;
      for (int64_t i = 0; i < cols; ++i) {
        const size_t k = static_cast<size_t>(r * cols + i);
        const double p = static_cast<double>(wf[k]) * a[static_cast<size_t>(i)];
        const double pm = wmin.empty() ? 0.0 : static_cast<double>(wmin[k]) * a[static_cast<size_t>(i)];
        s += p + pm;
        sa += std::fabs(p) + std::fabs(pm);
      }
      e.sum[static_cast<size_t>(tk * rows + r)] = s;
      e.abs_sum[static_cast<size_t>(tk * rows + r)] = sa;
    }
  }
  return e;
}

// Weights with every block scale a power of two (and Q4_K's 6-bit scales kept <= 7), so the
// products stay on a coarse grid. Random quant bytes.
std::vector<uint8_t> grid_weights(Rng& rng, TypeId t, int64_t rows, int64_t cols) {
  std::vector<uint8_t> w(row_size(t, cols) * static_cast<size_t>(rows));
  if (t == TypeId::F32) {
    auto* f = reinterpret_cast<float*>(w.data());
    for (int64_t i = 0; i < rows * cols; ++i) f[i] = static_cast<float>(uniform_int(rng, -8, 8));
    return w;
  }
  if (t == TypeId::F16) {
    auto* h = reinterpret_cast<uint16_t*>(w.data());
    for (int64_t i = 0; i < rows * cols; ++i) h[i] = kernels::fp32_to_fp16(static_cast<float>(uniform_int(rng, -8, 8)));
    return w;
  }
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  const int64_t nb = rows * cols / traits(t).block_size;
  for (int64_t i = 0; i < nb; ++i) {
    if (t == TypeId::Q8_0) {
      auto& b = reinterpret_cast<block_q8_0*>(w.data())[i];
      b.d = kernels::fp32_to_fp16(pow2(uniform_int(rng, -2, 0)));
      for (auto& q : b.qs) q = static_cast<int8_t>(uniform_int(rng, -31, 31));  // sums stay below 2^24 units
    } else if (t == TypeId::Q4_0) {
      reinterpret_cast<block_q4_0*>(w.data())[i].d = kernels::fp32_to_fp16(pow2(uniform_int(rng, -2, 0)));
    } else {
      auto& b = reinterpret_cast<block_q4_K*>(w.data())[i];
      b.d = kernels::fp32_to_fp16(pow2(uniform_int(rng, -2, 0)));
      b.dmin = kernels::fp32_to_fp16(pow2(uniform_int(rng, -2, 0)));
      for (auto& s : b.scales) s &= 0x07;  // 6-bit scales and mins in 0..7
    }
  }
  return w;
}

// Activations k * 2^e with |k| <= 7 and one +-127 * 2^e per block, so the quantized scale is
// exactly 2^e (Q8_0: amax / 127; Q8_K: max / -127) and every quant is exact.
std::vector<float> grid_activations(Rng& rng, TypeId t, int64_t cols, int64_t tokens) {
  std::vector<float> x(static_cast<size_t>(cols * tokens));
  const int64_t block = kernels::vec_dot_type(t) == TypeId::Q8_K ? QK_K : 32;
  for (int64_t tk = 0; tk < tokens; ++tk)
    for (int64_t b0 = 0; b0 < cols; b0 += block) {
      const float s = pow2(uniform_int(rng, -3, 0));
      for (int64_t i = 0; i < block; ++i) x[static_cast<size_t>(tk * cols + b0 + i)] = static_cast<float>(uniform_int(rng, -7, 7)) * s;
      x[static_cast<size_t>(tk * cols + b0 + uniform_int(rng, 0, static_cast<int>(block) - 1))] = random_sign(rng) * 127 * s;
    }
  return x;
}

std::vector<uint8_t> quantized_weights(Rng& rng, TypeId t, int64_t rows, int64_t cols) {
  std::vector<float> wf(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) fill_random_row(rng, wf.data() + r * cols, cols);
  std::vector<uint8_t> w(row_size(t, cols) * static_cast<size_t>(rows));
  REQUIRE(kernels::quantize_rows(t, wf.data(), w.data(), rows, cols, nullptr) == w.size());
  return w;
}

std::vector<float> random_activations(Rng& rng, int64_t cols, int64_t tokens) {
  std::vector<float> x(static_cast<size_t>(cols * tokens));
  for (int64_t tk = 0; tk < tokens; ++tk) fill_random_row(rng, x.data() + tk * cols, cols);
  return x;
}

std::vector<float> run_gemm(TypeId t, const std::vector<uint8_t>& w, int64_t rows, int64_t cols,
                            const std::vector<float>& x, int64_t tokens) {
  std::vector<float> y(static_cast<size_t>(rows * tokens), std::nanf(""));
  kernels::gemm(t, w.data(), row_size(t, cols), rows, cols, x.data(), tokens, y.data());
  return y;
}

TEST_CASE("gemm equals the exact sum on grid data (integer parts, tile edges)", "[kernels][gemm]") {
  Rng rng(test::seed());
  for (TypeId t : kTypes) {
    for (int64_t cols : {256, 512}) {
      for (int64_t rows : kRows) {
        for (int64_t tokens : kTokens) {
          const std::vector<uint8_t> w = grid_weights(rng, t, rows, cols);
          const std::vector<float> x = grid_activations(rng, t, cols, tokens);
          const std::vector<float> y = run_gemm(t, w, rows, cols, x, tokens);
          const Exact e = exact_products(t, w, rows, cols, x, tokens);
          for (size_t i = 0; i < y.size(); ++i) {
            INFO(type_name(t) << " rows=" << rows << " cols=" << cols << " tokens=" << tokens << " output " << i
                              << " (token " << i / rows << ", row " << i % rows << ") got " << hex_float(y[i])
                              << " exact " << e.sum[i] << "; " << rerun_hint());
            REQUIRE(static_cast<double>(y[i]) == e.sum[i]);
          }
        }
      }
    }
  }
}

TEST_CASE("gemm within float-summation bounds of the scalar reference on random data", "[kernels][gemm]") {
  Rng rng(test::seed());
  for (TypeId t : kTypes) {
    const kernels::DotVariant* ref = kernels::reference_dot(t);
    REQUIRE(ref != nullptr);
    const TypeId at = kernels::vec_dot_type(t);
    for (int64_t cols : {256, 4096}) {
      for (int64_t rows : kRows) {
        for (int64_t tokens : {1, 5, 64}) {
          const std::vector<uint8_t> w = t == TypeId::F32 ? grid_weights(rng, t, rows, cols) : quantized_weights(rng, t, rows, cols);
          std::vector<float> x = random_activations(rng, cols, tokens);
          if (t == TypeId::F32) {
            auto* f = reinterpret_cast<float*>(const_cast<uint8_t*>(w.data()));
            for (int64_t r = 0; r < rows; ++r) fill_random_row(rng, f + r * cols, cols);
          }
          const std::vector<float> y = run_gemm(t, w, rows, cols, x, tokens);
          const Exact e = exact_products(t, w, rows, cols, x, tokens);
          std::vector<uint8_t> a(row_size(at, cols));
          for (int64_t tk = 0; tk < tokens; ++tk) {
            const void* ap = x.data() + tk * cols;
            if (at != TypeId::F32) {
              kernels::quantize_activation(at, x.data() + tk * cols, a.data(), cols);
              ap = a.data();
            }
            for (int64_t r = 0; r < rows; ++r) {
              const size_t i = static_cast<size_t>(tk * rows + r);
              const float want = ref->vec_dot(cols, w.data() + static_cast<size_t>(r) * row_size(t, cols), ap);
              const double bound = (static_cast<double>(cols) + 64) * std::ldexp(1.0, -24) * e.abs_sum[i];
              INFO(type_name(t) << " rows=" << rows << " cols=" << cols << " tokens=" << tokens << " token " << tk
                                << " row " << r << ": got " << y[i] << " reference " << want << " bound " << bound
                                << "; " << rerun_hint());
              // Outliers can overflow an fp16 scale to +-inf. Then the reference and the kernel
              // must both be non-finite, but not necessarily alike: an inf scale times a zero
              // integer sum is NaN in one summation order and lost in a sum with inf in another.
              if (!std::isfinite(want)) {
                REQUIRE(!std::isfinite(y[i]));
                continue;
              }
              REQUIRE(std::fabs(static_cast<double>(y[i]) - want) <= bound);
            }
          }
        }
      }
    }
  }
}

// ---- ggml_mul_mat as the oracle ----

const test::GgmlMulMatOracle& ggml_mul_mat() {
  static test::GgmlMulMatOracle* o = [] {
    const test::fs::path base = test::ggml_base_library();
    const test::fs::path cpu = base.empty() ? test::fs::path() : base.parent_path() / "libggml-cpu-zen4.so";
    if (base.empty() || !test::fs::exists(cpu))
      test::skip_program("libggml-base.so / libggml-cpu-zen4.so of @node-llama-cpp/linux-x64 not found (run setup.sh)");
    return new test::GgmlMulMatOracle(base.string(), cpu.string());
  }();
  if (!o->ok()) test::skip_program("ggml mul_mat oracle unavailable: " + o->error());
  return *o;
}

TEST_CASE("gemm is bit-identical to ggml_mul_mat (zen4 CPU backend, llama.cpp's weight placement)",
          "[kernels][gemm][data]") {
  // ggml's zen4 build is compiled for AVX-512 F/BW/DQ/VL/VBMI/VNNI/BF16.
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vbmi") &&
        __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16")))
    test::skip_program("this CPU cannot run libggml-cpu-zen4.so (AVX-512 VBMI/VNNI/BF16)");
  const test::GgmlMulMatOracle& g = ggml_mul_mat();
  Rng rng(test::seed());
  for (TypeId t : kTypes) {
    std::vector<int64_t> col_set = {256, 4096};
    // ggml_vec_dot_f32's tail: 72 = 64 + one vectorized 8; 95 = 64 + 16 + 8 + 7 fused; 172
    // (stories260K's ffn_down) = 128 + 2 x 16 + 8 + 4 fused.
    if (t == TypeId::F32 || t == TypeId::F16) col_set.insert(col_set.end(), {72, 95, 172});
    for (int64_t cols : col_set) {
      for (int64_t rows : kRows) {
        const std::vector<uint8_t> w = t == TypeId::F32 ? grid_weights(rng, t, rows, cols) : quantized_weights(rng, t, rows, cols);
        if (t == TypeId::F32) {
          auto* fw = reinterpret_cast<float*>(const_cast<uint8_t*>(w.data()));
          for (int64_t r = 0; r < rows; ++r) fill_random_row(rng, fw + r * cols, cols);
        }
        for (int64_t tokens : kTokens) {
          const std::vector<float> x = random_activations(rng, cols, tokens);
          const test::GgmlMulMatOracle::Output o = g.mul_mat(static_cast<uint32_t>(t), w.data(), rows, cols, x.data(), tokens);
          INFO(type_name(t) << " rows=" << rows << " cols=" << cols << " tokens=" << tokens
                            << (o.repacked ? " (ggml: CPU_REPACK)" : " (ggml: CPU buffer)") << "; " << rerun_hint());
          REQUIRE(o.error.empty());
          // llama.cpp repacks exactly Q4_0 and Q4_K with rows % 8 == 0 on this CPU.
          REQUIRE(o.repacked == ((t == TypeId::Q4_0 || t == TypeId::Q4_K) && rows % 8 == 0));
          const std::vector<float> y = run_gemm(t, w, rows, cols, x, tokens);
          if (kernels::gemm_matches_ggml(t, rows)) {
            for (size_t i = 0; i < y.size(); ++i) {
              INFO("output " << i << " (token " << i / rows << ", row " << i % rows << "): shrink " << hex_float(y[i])
                             << " ggml " << hex_float(o.y[i]));
              REQUIRE(std::memcmp(&y[i], &o.y[i], sizeof(float)) == 0);
            }
          } else {
            const Exact e = exact_products(t, w, rows, cols, x, tokens);
            size_t differ = 0;
            for (size_t i = 0; i < y.size(); ++i) {
              differ += std::memcmp(&y[i], &o.y[i], sizeof(float)) != 0;
              const double bound = (static_cast<double>(cols) + 64) * std::ldexp(1.0, -24) * e.abs_sum[i];
              INFO("output " << i << ": shrink " << y[i] << " ggml " << o.y[i] << " bound " << bound);
              REQUIRE(std::fabs(static_cast<double>(y[i]) - o.y[i]) <= bound);
            }
            if (differ != 0)
              WARN(type_name(t) << " rows=" << rows << " cols=" << cols << " tokens=" << tokens << ": " << differ << " of "
                                << y.size() << " outputs differ from ggml in the last bits (not a ggml-order kernel)");
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace shrink
