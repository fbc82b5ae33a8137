// GEMV (kernels/gemv.h): one token against a weight matrix, in ggml's float order.
//
// Without ggml:
//  - Every SIMD variant this CPU runs equals the scalar reference of its (type, order) bit for
//    bit: both follow one fixed order of float steps and their integer parts are exact. Shapes
//    break the row groups (1..40 rows: pairs, 4-row and 16-row groups, plus tails) and the block
//    groups (1..33 blocks of 32: 4-block and 16-block groups; 1..5 super-blocks; F16 rows of
//    1..200 with and without the 64-element steps); rows at odd strides; weights from the
//    quantizer and from random bytes (Q8_0 codes of -128, every Q4_K scale/min code).
//  - The references themselves against the exact sum in double of ggml-exact dequantized weights
//    times the activation values: within (n + 64) 2^-24 sum |w a| (only float rounding differs).
//  - gemv() on many threads equals the dispatched variant on one, bit for bit; orders: rows % 8
//    picks repacked-8 for Q4_0 / Q4_K, and Q4_0 with rows % 8 != 0 equals the dispatched vec_dot.
// With ggml ([data]: libggml-base.so + libggml-cpu-zen4.so from the npm package, AVX-512 CPUs):
//  - ggml_mul_mat of one token through the CPU backend with one thread, the weight in the repack
//    buffer type (as llama.cpp loads it) for Q4_0 / Q4_K and in the plain CPU buffer for Q8_0 /
//    F16: every output equals shrink's gemv() on the same activation row bit for bit, for Q8_0,
//    F16, Q4_0 (repacked and not) and Q4_K (repacked).
#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/dot.h"
#include "kernels/fp16.h"
#include "kernels/gemv.h"
#include "kernels/gemv_packed.h"
#include "kernels/kernels.h"
#include "tests/ggml_oracle.h"
#include "tests/test_kernels_data.h"
#include "tests/test_support.h"

namespace shrink {
namespace {

using namespace shrink::test::kernel_data;
using kernels::GemvOrder;
using kernels::GemvVariant;
using kernels::Isa;

std::string rerun_hint() { return "rerun with: --rng-seed " + std::to_string(test::seed()); }
std::string describe(const GemvVariant& v) {
  return std::string(type_name(v.type)) + "/" + kernels::isa_name(v.isa) +
         (v.order == GemvOrder::kRepack8 ? "/repack8" : "/vecdot");
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// A weight matrix with `stride` bytes per row (>= the row size: odd strides misalign rows).
struct Matrix {
  TypeId type;
  int64_t rows, cols;
  size_t stride;
  std::vector<uint8_t> bytes;
  const uint8_t* row(int64_t r) const { return bytes.data() + static_cast<size_t>(r) * stride; }
};

// Finite random fp16 bits of moderate size (|v| in 2^-14 .. 2^2): scales of random blocks.
uint16_t random_scale_bits(Rng& rng, bool allow_negative) {
  const float v = std::ldexp(uniform(rng, 0.5f, 1.0f), uniform_int(rng, -13, 2)) * (allow_negative ? random_sign(rng) : 1.0f);
  return kernels::fp32_to_fp16(v);
}

// kind 0: quantized from random rows; kind 1: random bytes with finite random scale fields.
Matrix make_matrix(Rng& rng, TypeId t, int64_t rows, int64_t cols, size_t pad, int kind) {
  Matrix m{t, rows, cols, row_size(t, cols) + pad, {}};
  m.bytes.assign(m.stride * static_cast<size_t>(rows) + 64, 0);
  std::vector<float> src(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* dst = m.bytes.data() + static_cast<size_t>(r) * m.stride;
    if (kind == 0 || t == TypeId::F16) {
      fill_random_row(rng, src.data(), cols);
      // Keep every scale within fp16's range (fill_random_row's outliers reach 1e2 x 300 x 10).
      const float lim = t == TypeId::F16 ? 6e4f : 1e5f;
      for (float& v : src) v = std::fmax(-lim, std::fmin(lim, v));
      kernels::quantize_rows(t, src.data(), dst, 1, cols, nullptr);
      continue;
    }
    for (size_t i = 0; i < row_size(t, cols); ++i) dst[i] = static_cast<uint8_t>(rng());
    const size_t bs = traits(t).type_size;
    for (int64_t b = 0; b < cols / traits(t).block_size; ++b) {
      uint8_t* blk = dst + static_cast<size_t>(b) * bs;
      const uint16_t d = random_scale_bits(rng, true), dmin = random_scale_bits(rng, true);
      std::memcpy(blk, &d, 2);  // Q8_0, Q4_0: d first; Q4_K: d, dmin
      if (t == TypeId::Q4_K) std::memcpy(blk + 2, &dmin, 2);
    }
  }
  return m;
}

// The token's activation row in vec_dot_type(t): random values, or all codes at +-127.
std::vector<uint8_t> make_activation(Rng& rng, TypeId t, int64_t cols, bool extreme, std::vector<float>* x_out = nullptr) {
  std::vector<float> x(static_cast<size_t>(cols));
  for (float& v : x) v = extreme ? 3.0f * random_sign(rng) : uniform(rng, -2.0f, 2.0f);
  const TypeId at = kernels::vec_dot_type(t);
  std::vector<uint8_t> a(row_size(at, cols));
  kernels::quantize_activation(at, x.data(), a.data(), cols);
  if (x_out != nullptr) *x_out = x;
  return a;
}

const GemvVariant& reference_of(TypeId t, GemvOrder order) {
  for (const GemvVariant& v : kernels::gemv_variants())
    if (v.type == t && v.order == order && v.isa == kernels::Isa::kRef) return v;
  FAIL("no reference GEMV for " << type_name(t));
  throw;
}

struct Case {
  TypeId type;
  std::vector<int64_t> cols;
};
std::vector<Case> shape_cases() {
  return {{TypeId::Q8_0, {32, 64, 96, 128, 160, 224, 480, 512, 544, 1056}},
          {TypeId::Q4_0, {32, 64, 96, 128, 160, 224, 480, 512, 544, 1056}},
          {TypeId::Q4_K, {256, 512, 768, 1280}},
          {TypeId::F16, {1, 15, 16, 63, 64, 65, 130, 200, 256}}};
}
const int64_t kRowCounts[] = {1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 24, 31, 33, 40};

TEST_CASE("SIMD GEMV variants equal their scalar reference bit for bit", "[kernels][gemv]") {
  Rng rng(test::seed());
  int compared = 0;
  for (const GemvVariant& v : kernels::gemv_variants()) {
    if (v.isa == kernels::Isa::kRef) continue;
    if (!v.available()) {
      WARN(describe(v) << ": not supported by this CPU, not tested");
      continue;
    }
    const GemvVariant& ref = reference_of(v.type, v.order);
    for (const Case& c : shape_cases()) {
      if (c.type != v.type) continue;
      for (int64_t cols : c.cols) {
        for (int64_t rows : kRowCounts) {
          for (int kind = 0; kind < 2; ++kind) {
            const size_t pad = (rows % 3 == 0) ? 0 : static_cast<size_t>(rows % 5);
            const Matrix m = make_matrix(rng, v.type, rows, cols, pad, kind);
            const std::vector<uint8_t> a = make_activation(rng, v.type, cols, kind == 1 && rows % 2 == 0);
            std::vector<float> want(static_cast<size_t>(rows), -1.0f), got(static_cast<size_t>(rows), -2.0f);
            kernels::gemv_with(ref, m.bytes.data(), m.stride, rows, cols, a.data(), want.data());
            kernels::gemv_with(v, m.bytes.data(), m.stride, rows, cols, a.data(), got.data());
            for (int64_t r = 0; r < rows; ++r) {
              INFO(describe(v) << " rows=" << rows << " cols=" << cols << " stride=" << m.stride << " kind=" << kind
                               << " row " << r << ": " << got[r] << " vs " << want[r] << "; " << rerun_hint());
              REQUIRE(same_bits(got[static_cast<size_t>(r)], want[static_cast<size_t>(r)]));
            }
            ++compared;
          }
        }
      }
    }
  }
  // An x86-64 CPU with AVX2 runs at least the AVX2 variants; elsewhere only references exist.
  if (kernels::cpu_features().avx2) REQUIRE(compared > 0);
}

// The references' integer parts and scales: against the exact dot product of ggml-exact
// dequantized weights (kernels::dequantize_rows is byte-checked against ggml in
// test_kernels_ggml) with the activation's own values, computed in double.
double activation_value(TypeId at, const uint8_t* a, int64_t i) {
  switch (at) {
    case TypeId::Q8_0: {
      const auto* b = reinterpret_cast<const block_q8_0*>(a) + i / QK8_0;
      return static_cast<double>(kernels::fp16_to_fp32(b->d)) * b->qs[i % QK8_0];
    }
    case TypeId::Q8_K: {
      const auto* b = reinterpret_cast<const block_q8_K*>(a) + i / QK_K;
      return static_cast<double>(b->d) * b->qs[i % QK_K];
    }
    case TypeId::F16: return kernels::fp16_to_fp32(reinterpret_cast<const uint16_t*>(a)[i]);
    default: return 0;
  }
}

TEST_CASE("GEMV references are within float rounding of the exact dot product", "[kernels][gemv]") {
  Rng rng(test::seed());
  for (const GemvVariant& v : kernels::gemv_variants()) {
    if (v.isa != kernels::Isa::kRef) continue;
    const TypeId at = kernels::vec_dot_type(v.type);
    for (const Case& c : shape_cases()) {
      if (c.type != v.type) continue;
      for (int64_t cols : c.cols) {
        const int64_t rows = 9;
        const Matrix m = make_matrix(rng, v.type, rows, cols, 0, 0);
        const std::vector<uint8_t> a = make_activation(rng, v.type, cols, false);
        std::vector<float> y(static_cast<size_t>(rows));
        kernels::gemv_with(v, m.bytes.data(), m.stride, rows, cols, a.data(), y.data());
        std::vector<float> wf(static_cast<size_t>(cols));
        for (int64_t r = 0; r < rows; ++r) {
          kernels::dequantize_rows(v.type, m.row(r), wf.data(), 1, cols);
          double exact = 0, mag = 0;
          for (int64_t i = 0; i < cols; ++i) {
            const double p = static_cast<double>(wf[static_cast<size_t>(i)]) * activation_value(at, a.data(), i);
            exact += p;
            mag += std::fabs(p);
          }
          const double bound = (static_cast<double>(cols) + 64) * std::ldexp(1.0, -24) * mag + 1e-30;
          INFO(describe(v) << " cols=" << cols << " row " << r << ": " << y[r] << " vs exact " << exact << " (bound "
                           << bound << "); " << rerun_hint());
          REQUIRE(std::fabs(static_cast<double>(y[static_cast<size_t>(r)]) - exact) <= bound);
        }
      }
    }
  }
}

TEST_CASE("gemv() on all threads equals one thread of the dispatched variant, per order", "[kernels][gemv]") {
  Rng rng(test::seed());
  // 1 MB+ matrices take the threaded path; small ones the single-thread one.
  const struct {
    TypeId type;
    int64_t rows, cols;
  } cases[] = {{TypeId::Q8_0, 600, 4096}, {TypeId::Q8_0, 37, 256},  {TypeId::F16, 300, 2048},
               {TypeId::F16, 5, 100},     {TypeId::Q4_0, 1000, 4096}, {TypeId::Q4_0, 1004, 4096},
               {TypeId::Q4_0, 12, 64},    {TypeId::Q4_K, 1000, 4096}, {TypeId::Q4_K, 1002, 4096},
               {TypeId::Q4_K, 24, 256}};
  INFO("OpenMP threads: " << omp_get_max_threads());
  for (const auto& c : cases) {
    const Matrix m = make_matrix(rng, c.type, c.rows, c.cols, 0, 0);
    const std::vector<uint8_t> a = make_activation(rng, c.type, c.cols, false);
    std::vector<float> got(static_cast<size_t>(c.rows), -1.0f), want(static_cast<size_t>(c.rows), -2.0f);
    kernels::gemv(c.type, m.bytes.data(), m.stride, c.rows, c.cols, a.data(), got.data());
    const GemvOrder order = kernels::gemv_order(c.type, c.rows);
    CHECK(order == ((c.type == TypeId::Q4_0 || c.type == TypeId::Q4_K) && c.rows % 8 == 0 ? GemvOrder::kRepack8
                                                                                           : GemvOrder::kVecDot));
    const GemvVariant* v = kernels::dispatched_gemv(c.type, order);
    if (v != nullptr) {
      kernels::gemv_with(*v, m.bytes.data(), m.stride, c.rows, c.cols, a.data(), want.data());
    } else {
      for (int64_t r = 0; r < c.rows; ++r) want[static_cast<size_t>(r)] = kernels::vec_dot(c.type, c.cols, m.row(r), a.data());
    }
    for (int64_t r = 0; r < c.rows; ++r) {
      INFO(type_name(c.type) << " rows=" << c.rows << " cols=" << c.cols << " row " << r << "; " << rerun_hint());
      REQUIRE(same_bits(got[static_cast<size_t>(r)], want[static_cast<size_t>(r)]));
    }
  }
}

// ---- Packed GEMV (kernels/gemv_packed.h): same bits as gemv() on the original rows. ----

TEST_CASE("gemv_packable takes Q8_0, Q4_0 and Q4_K matrices of whole 16-row panels only", "[kernels][gemv]") {
  CHECK(kernels::gemv_packable(TypeId::Q8_0, 16, 32));
  CHECK(kernels::gemv_packable(TypeId::Q4_0, 4096, 4096));
  CHECK(kernels::gemv_packable(TypeId::Q4_K, 32, 256));
  CHECK_FALSE(kernels::gemv_packable(TypeId::Q4_0, 24, 64));  // 24 % 16 != 0
  CHECK_FALSE(kernels::gemv_packable(TypeId::Q4_K, 16, 128));  // not whole super-blocks
  CHECK_FALSE(kernels::gemv_packable(TypeId::F16, 16, 64));
  CHECK_FALSE(kernels::gemv_packable(TypeId::Q4_1, 16, 64));
}

TEST_CASE("Packed GEMV: unpacking returns the rows, and every path equals gemv()'s reference bit for bit",
          "[kernels][gemv]") {
  Rng rng(test::seed());
  // Every packed path this CPU runs: the unpacking one, then each ISA's kernels.
  std::vector<Isa> isas;
  for (Isa isa : {Isa::kRef, Isa::kAvx2, Isa::kAvx512})
    if (kernels::packed_isa_available(isa)) isas.push_back(isa);
  if (isas.size() == 1) WARN("no packed SIMD kernels on this CPU: only the unpacking path of the packed GEMV is tested");
  std::vector<int> compared(isas.size(), 0);
  for (const Case& c : shape_cases()) {
    if (c.type == TypeId::F16) continue;
    for (int64_t cols : c.cols) {
      for (int64_t rows : {16, 32, 48, 80}) {
        for (int kind = 0; kind < 2; ++kind) {
          const Matrix m = make_matrix(rng, c.type, rows, cols, static_cast<size_t>(rows % 3), kind);
          REQUIRE(kernels::gemv_packable(c.type, rows, cols));
          const kernels::PackedMatrix pm = kernels::pack_matrix(c.type, m.bytes.data(), m.stride, rows, cols);
          REQUIRE(pm.bytes == row_size(c.type, cols) * static_cast<size_t>(rows));  // same bytes, regrouped
          std::vector<uint8_t> back(kernels::kPanelRows * pm.row_bytes);
          for (int64_t p = 0; p < rows / kernels::kPanelRows; ++p) {
            kernels::unpack_panel(pm, p, back.data());
            for (int64_t r = 0; r < kernels::kPanelRows; ++r) {
              INFO(type_name(c.type) << " cols=" << cols << " panel " << p << " row " << r << "; " << rerun_hint());
              REQUIRE(std::memcmp(back.data() + static_cast<size_t>(r) * pm.row_bytes, m.row(p * kernels::kPanelRows + r),
                                  pm.row_bytes) == 0);
            }
          }
          const std::vector<uint8_t> a = make_activation(rng, c.type, cols, kind == 1 && rows % 32 == 0);
          const GemvVariant& ref = reference_of(c.type, kernels::gemv_order(c.type, rows));
          std::vector<float> want(static_cast<size_t>(rows), -1.0f);
          kernels::gemv_with(ref, m.bytes.data(), m.stride, rows, cols, a.data(), want.data());
          for (size_t k = 0; k < isas.size(); ++k) {
            std::vector<float> packed(static_cast<size_t>(rows), -3.0f);
            kernels::gemv_packed_with(pm, a.data(), packed.data(), isas[k]);
            for (int64_t r = 0; r < rows; ++r) {
              INFO(type_name(c.type) << " rows=" << rows << " cols=" << cols << " kind=" << kind << " row " << r
                                     << ": ref " << want[r] << " packed (" << kernels::isa_name(isas[k]) << ") "
                                     << packed[r] << "; " << rerun_hint());
              REQUIRE(same_bits(packed[static_cast<size_t>(r)], want[static_cast<size_t>(r)]));
            }
            ++compared[k];
          }
        }
      }
    }
  }
  for (size_t k = 0; k < isas.size(); ++k) {
    INFO(kernels::isa_name(isas[k]));
    REQUIRE(compared[k] > 0);
  }
}

TEST_CASE("gemv_packed() on all threads equals gemv() on the original rows", "[kernels][gemv]") {
  Rng rng(test::seed());
  // 1 MB+ matrices take the threaded path with two streams per thread; an odd panel count per
  // thread leaves one panel for the single-stream kernel.
  const struct {
    TypeId type;
    int64_t rows, cols;
  } cases[] = {{TypeId::Q8_0, 608, 4096}, {TypeId::Q8_0, 48, 256},  {TypeId::Q4_0, 1008, 4096},
               // Past 4 MB: several chunks of the dynamic schedule (AVX-512 Q8_0 / Q4_K), the last odd
               {TypeId::Q8_0, 1104, 4096}, {TypeId::Q4_K, 2096, 4096},
               {TypeId::Q4_0, 16, 64},    {TypeId::Q4_K, 1040, 4096}, {TypeId::Q4_K, 32, 512}};
  INFO("OpenMP threads: " << omp_get_max_threads());
  for (const auto& c : cases) {
    const Matrix m = make_matrix(rng, c.type, c.rows, c.cols, 0, 0);
    const std::vector<uint8_t> a = make_activation(rng, c.type, c.cols, false);
    const kernels::PackedMatrix pm = kernels::pack_matrix(c.type, m.bytes.data(), m.stride, c.rows, c.cols);
    std::vector<float> want(static_cast<size_t>(c.rows), -2.0f);
    kernels::gemv(c.type, m.bytes.data(), m.stride, c.rows, c.cols, a.data(), want.data());
    // gemv_packed() itself, then each packed ISA this CPU runs on the same thread split.
    for (int path = -1; path < 3; ++path) {
      const Isa isas[3] = {Isa::kRef, Isa::kAvx2, Isa::kAvx512};
      if (path >= 0 && !kernels::packed_isa_available(isas[path])) continue;
      std::vector<float> got(static_cast<size_t>(c.rows), -1.0f);
      if (path < 0)
        kernels::gemv_packed(pm, a.data(), got.data());
      else
        kernels::gemv_packed_with(pm, a.data(), got.data(), isas[path], true);
      for (int64_t r = 0; r < c.rows; ++r) {
        INFO(type_name(c.type) << " rows=" << c.rows << " cols=" << c.cols << " row " << r << " path "
                               << (path < 0 ? "gemv_packed" : kernels::isa_name(isas[path])) << "; " << rerun_hint());
        REQUIRE(same_bits(got[static_cast<size_t>(r)], want[static_cast<size_t>(r)]));
      }
    }
  }
}

// ---- ggml as the oracle: one-token ggml_mul_mat through the CPU backend. ----

// Mirror of ggml.h `struct ggml_init_params` (same release as tests/ggml_oracle.cc).
struct GgmlInitParams {
  size_t mem_size;
  void* mem_buffer;
  bool no_alloc;
};

// The ggml and ggml-backend entry points a one-node graph needs, from the npm package's
// libggml-base.so and one libggml-cpu-<variant>.so. Tensors, graphs and buffers stay opaque.
class GgmlMulMat {
 public:
  explicit GgmlMulMat(const test::fs::path& cpu_library) {
    cpu_ = ::dlopen(cpu_library.c_str(), RTLD_NOW | RTLD_LOCAL);
    base_ = ::dlopen((cpu_library.parent_path() / "libggml-base.so").c_str(), RTLD_NOW | RTLD_LOCAL);
    if (cpu_ == nullptr || base_ == nullptr) {
      error_ = std::string("dlopen: ") + (::dlerror() ? ::dlerror() : "?");
      return;
    }
    bool ok = true;
    auto sym = [&](void* h, const char* name) {
      void* p = ::dlsym(h, name);
      if (p == nullptr) {
        ok = false;
        error_ += std::string(" missing ") + name;
      }
      return p;
    };
    init_ = reinterpret_cast<void* (*)(GgmlInitParams)>(sym(base_, "ggml_init"));
    free_ = reinterpret_cast<void (*)(void*)>(sym(base_, "ggml_free"));
    tensor_overhead_ = reinterpret_cast<size_t (*)()>(sym(base_, "ggml_tensor_overhead"));
    graph_overhead_ = reinterpret_cast<size_t (*)()>(sym(base_, "ggml_graph_overhead"));
    new_tensor_2d_ = reinterpret_cast<void* (*)(void*, int, int64_t, int64_t)>(sym(base_, "ggml_new_tensor_2d"));
    mul_mat_ = reinterpret_cast<void* (*)(void*, void*, void*)>(sym(base_, "ggml_mul_mat"));
    new_graph_ = reinterpret_cast<void* (*)(void*)>(sym(base_, "ggml_new_graph"));
    expand_ = reinterpret_cast<void (*)(void*, void*)>(sym(base_, "ggml_build_forward_expand"));
    alloc_ = reinterpret_cast<void* (*)(void*, void*)>(sym(base_, "ggml_backend_alloc_ctx_tensors_from_buft"));
    tensor_set_ = reinterpret_cast<void (*)(void*, const void*, size_t, size_t)>(sym(base_, "ggml_backend_tensor_set"));
    tensor_get_ = reinterpret_cast<void (*)(const void*, void*, size_t, size_t)>(sym(base_, "ggml_backend_tensor_get"));
    compute_ = reinterpret_cast<int (*)(void*, void*)>(sym(base_, "ggml_backend_graph_compute"));
    buffer_free_ = reinterpret_cast<void (*)(void*)>(sym(base_, "ggml_backend_buffer_free"));
    backend_free_ = reinterpret_cast<void (*)(void*)>(sym(base_, "ggml_backend_free"));
    cpu_buft_ = reinterpret_cast<void* (*)()>(sym(base_, "ggml_backend_cpu_buffer_type"));
    // Declared in ggml-cpu/repack.h without extern "C": exported C++-mangled.
    repack_buft_ = reinterpret_cast<void* (*)()>(sym(cpu_, "_Z35ggml_backend_cpu_repack_buffer_typev"));
    auto cpu_init = reinterpret_cast<void* (*)()>(sym(cpu_, "ggml_backend_cpu_init"));
    auto set_threads = reinterpret_cast<void (*)(void*, int)>(sym(cpu_, "ggml_backend_cpu_set_n_threads"));
    if (!ok) return;
    backend_ = cpu_init();
    if (backend_ == nullptr) {
      error_ = "ggml_backend_cpu_init failed";
      return;
    }
    set_threads(backend_, 1);
    // Quiet ggml's per-tensor "repack: ..." info lines.
    if (auto log_set = reinterpret_cast<void (*)(void (*)(int, const char*, void*), void*)>(::dlsym(base_, "ggml_log_set")))
      log_set([](int, const char*, void*) {}, nullptr);
  }
  ~GgmlMulMat() {
    if (backend_ != nullptr) backend_free_(backend_);
    // The libraries stay loaded: ggml keeps static state that outlives the backend.
  }
  bool ok() const { return backend_ != nullptr; }
  const std::string& error() const { return error_; }

  // y(rows) = W x for one token: W (rows, cols) of `type` placed in the repack buffer type (as
  // llama.cpp does for CPU weights) or the plain CPU buffer; x (cols) float.
  bool run(TypeId type, const uint8_t* w, int64_t rows, int64_t cols, const float* x, bool repack, float* y) {
    const GgmlInitParams ip{tensor_overhead_() * 8 + graph_overhead_(), nullptr, true};
    void* ctx_w = init_(ip);
    void* ctx = init_(ip);
    void* wt = new_tensor_2d_(ctx_w, static_cast<int>(type), cols, rows);
    void* buf_w = alloc_(ctx_w, repack ? repack_buft_() : cpu_buft_());
    void* xt = new_tensor_2d_(ctx, 0 /* GGML_TYPE_F32 */, cols, 1);
    void* yt = mul_mat_(ctx, wt, xt);
    void* gf = new_graph_(ctx);
    expand_(gf, yt);
    void* buf = alloc_(ctx, cpu_buft_());
    bool done = buf_w != nullptr && buf != nullptr;
    if (done) {
      tensor_set_(wt, w, 0, row_size(type, cols) * static_cast<size_t>(rows));
      tensor_set_(xt, x, 0, static_cast<size_t>(cols) * sizeof(float));
      done = compute_(backend_, gf) == 0;
      if (done) tensor_get_(yt, y, 0, static_cast<size_t>(rows) * sizeof(float));
    }
    if (buf != nullptr) buffer_free_(buf);
    if (buf_w != nullptr) buffer_free_(buf_w);
    free_(ctx);
    free_(ctx_w);
    return done;
  }

 private:
  void* cpu_ = nullptr;
  void* base_ = nullptr;
  void* backend_ = nullptr;
  std::string error_;
  void* (*init_)(GgmlInitParams) = nullptr;
  void (*free_)(void*) = nullptr;
  size_t (*tensor_overhead_)() = nullptr;
  size_t (*graph_overhead_)() = nullptr;
  void* (*new_tensor_2d_)(void*, int, int64_t, int64_t) = nullptr;
  void* (*mul_mat_)(void*, void*, void*) = nullptr;
  void* (*new_graph_)(void*) = nullptr;
  void (*expand_)(void*, void*) = nullptr;
  void* (*alloc_)(void*, void*) = nullptr;
  void (*tensor_set_)(void*, const void*, size_t, size_t) = nullptr;
  void (*tensor_get_)(const void*, void*, size_t, size_t) = nullptr;
  int (*compute_)(void*, void*) = nullptr;
  void (*buffer_free_)(void*) = nullptr;
  void (*backend_free_)(void*) = nullptr;
  void* (*cpu_buft_)() = nullptr;
  void* (*repack_buft_)() = nullptr;
};

// The zen4 build of ggml needs these (ggml/src/CMakeLists.txt: AVX512 AVX512_VBMI AVX512_VNNI
// AVX512_BF16 on top of AVX2/FMA/F16C/BMI2); node-llama-cpp loads it on this CPU family.
bool cpu_runs_zen4_build() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni") &&
         __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("bmi2");
}

GgmlMulMat& zen4_ggml() {
  const test::fs::path base = test::ggml_base_library();
  if (base.empty()) test::skip_program("libggml-base.so not found (run setup.sh: npm package @node-llama-cpp/linux-x64)");
  if (!cpu_runs_zen4_build()) test::skip_program("this CPU cannot run ggml's zen4 build (AVX-512 VBMI/VNNI/BF16)");
  static GgmlMulMat g(base.parent_path() / "libggml-cpu-zen4.so");
  if (!g.ok()) test::skip_program("ggml CPU backend unavailable: " + g.error());
  return g;
}

TEST_CASE("gemv() equals ggml_mul_mat of one token bit for bit (zen4 CPU backend)", "[kernels][gemv][data]") {
  GgmlMulMat& g = zen4_ggml();
  if (kernels::force_reference()) WARN("SHRINK_FORCE_REF=1: checking the scalar references");
  Rng rng(test::seed());
  const struct {
    TypeId type;
    int64_t rows, cols;
    bool repack;
  } cases[] = {
      {TypeId::Q8_0, 1, 32, false},   {TypeId::Q8_0, 7, 96, false},    {TypeId::Q8_0, 40, 544, false},
      {TypeId::Q8_0, 64, 4096, false}, {TypeId::F16, 3, 64, false},     {TypeId::F16, 9, 100, false},
      {TypeId::F16, 33, 4096, false}, {TypeId::F16, 5, 1000, false},   {TypeId::Q4_0, 8, 32, true},
      {TypeId::Q4_0, 16, 96, true},   {TypeId::Q4_0, 24, 160, true},   {TypeId::Q4_0, 40, 544, true},
      {TypeId::Q4_0, 256, 4096, true}, {TypeId::Q4_0, 12, 64, true},    {TypeId::Q4_0, 36, 4096, true},
      {TypeId::Q4_K, 8, 256, true},   {TypeId::Q4_K, 24, 768, true},   {TypeId::Q4_K, 40, 1280, true},
      {TypeId::Q4_K, 256, 4096, true}, {TypeId::Q8_0, 48, 544, false}, {TypeId::Q4_0, 48, 1056, true},
      {TypeId::Q4_K, 32, 768, true},
  };
  int64_t repacked_rows = 0, differs_from_vec_dot = 0, packed_cases = 0;
  for (const auto& c : cases) {
    for (int kind = 0; kind < 2; ++kind) {
      const Matrix m = make_matrix(rng, c.type, c.rows, c.cols, 0, kind);
      std::vector<float> x;
      const std::vector<uint8_t> a = make_activation(rng, c.type, c.cols, false, &x);
      std::vector<float> theirs(static_cast<size_t>(c.rows), -1.0f), ours(static_cast<size_t>(c.rows), -2.0f);
      // llama.cpp puts a weight in the repack buffer only when ggml has a repacked layout for it
      // (rows % 8 == 0 for these types); the others stay in the plain CPU buffer.
      const bool repack = c.repack && c.rows % 8 == 0;
      // Without a GEMV kernel gemv() runs the dispatched vec_dot per row: the x86 SIMD dot of
      // Q4_0 is ggml's order, the scalar reference (SHRINK_FORCE_REF=1) is ggml's generic one.
      if (kernels::force_reference() && kernels::dispatched_gemv(c.type, kernels::gemv_order(c.type, c.rows)) == nullptr)
        continue;
      REQUIRE(g.run(c.type, m.bytes.data(), c.rows, c.cols, x.data(), repack, theirs.data()));
      kernels::gemv(c.type, m.bytes.data(), m.stride, c.rows, c.cols, a.data(), ours.data());
      // The packed GEMV (what one-token model steps run) where the shape allows it.
      std::vector<float> packed = ours;
      if (kernels::gemv_packable(c.type, c.rows, c.cols)) {
        kernels::gemv_packed(kernels::pack_matrix(c.type, m.bytes.data(), m.stride, c.rows, c.cols), a.data(), packed.data());
        ++packed_cases;
      }
      const char* order = kernels::gemv_order(c.type, c.rows) == GemvOrder::kRepack8 ? "repack8" : "vecdot";
      for (int64_t r = 0; r < c.rows; ++r) {
        INFO(type_name(c.type) << " rows=" << c.rows << " cols=" << c.cols << " (" << order << ") kind=" << kind << " row "
                               << r << ": shrink " << ours[r] << " ggml " << theirs[r] << "; " << rerun_hint());
        REQUIRE(same_bits(ours[static_cast<size_t>(r)], theirs[static_cast<size_t>(r)]));
        REQUIRE(same_bits(packed[static_cast<size_t>(r)], theirs[static_cast<size_t>(r)]));
        if (repack) {
          ++repacked_rows;
          differs_from_vec_dot += !same_bits(theirs[static_cast<size_t>(r)], kernels::vec_dot(c.type, c.cols, m.row(r), a.data()));
        }
      }
    }
  }
  // The repacked order is a different float sequence from the per-row vec_dot: on these rows
  // the two disagree often, so this oracle tells the orders apart.
  INFO(differs_from_vec_dot << " of " << repacked_rows << " repacked rows differ from the per-row vec_dot");
  CHECK(differs_from_vec_dot > repacked_rows / 10);
  CHECK(packed_cases >= 14);  // Q8_0, Q4_0 and Q4_K shapes of whole panels, both kinds
}

}  // namespace
}  // namespace shrink
