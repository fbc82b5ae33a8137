// kernels/ggml_ops against ggml's own ops, run as one-node ggml graphs in the CPU backend that
// llama.cpp picks on this machine (libggml-cpu-zen4.so of the npm package, ggml's AVX-512 build;
// loaded with dlopen). Every output must be identical to the bit: these ops decide whether a
// Q8_0 activation lands on the same side of a rounding tie as in llama.cpp.
//   softmax (ggml_soft_max_ext with a causal F32 mask over a 256-long KV, as llama.cpp builds it),
//   swiglu (ggml_swiglu_split), rms_norm * weight (ggml_rms_norm, ggml_mul), RoPE (ggml_rope_ext,
//   normal and NEOX), and the attention products K*q and V*p (ggml_mul_mat on F16 with F32
//   activations, which ggml converts to F16), for 1 and several tokens and head sizes that take
//   tinyBLAS and ggml_vec_dot_f16.
// Without an AVX-512 CPU or without the npm package the program skips (exit 77) and says why.
#include <catch2/catch.hpp>
#include <dlfcn.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/ggml_ops.h"
#include "kernels/ggml_ops_impl.h"
#include "kernels/dispatch.h"
#include "tests/test_support.h"

namespace {

namespace test = shrink::test;
namespace k = shrink::kernels;

// ggml's C API, the few entry points used here (ggml.h / ggml-cpu.h of the shipped release).
struct GgmlInitParams {
  size_t mem_size;
  void* mem_buffer;
  bool no_alloc;
};
constexpr int kF32 = 0, kF16 = 1, kI32 = 26;
constexpr int kRopeNormal = 0, kRopeNeox = 2;

struct Ggml {
  void* base = nullptr;
  void* cpu = nullptr;
  void* (*init)(GgmlInitParams) = nullptr;
  void (*free)(void*) = nullptr;
  void* (*new_1d)(void*, int, int64_t) = nullptr;
  void* (*new_2d)(void*, int, int64_t, int64_t) = nullptr;
  void* (*new_3d)(void*, int, int64_t, int64_t, int64_t) = nullptr;
  void* (*get_data)(void*) = nullptr;
  void* (*soft_max_ext)(void*, void*, void*, float, float) = nullptr;
  void* (*mul_mat)(void*, void*, void*) = nullptr;
  void* (*permute)(void*, void*, int, int, int, int) = nullptr;
  void* (*swiglu_split)(void*, void*, void*) = nullptr;
  void* (*rms_norm)(void*, void*, float) = nullptr;
  void* (*mul)(void*, void*, void*) = nullptr;
  void* (*rope_ext)(void*, void*, void*, void*, int, int, int, float, float, float, float, float, float) = nullptr;
  void* (*new_graph)(void*) = nullptr;
  void (*build_forward_expand)(void*, void*) = nullptr;
  int (*graph_compute_with_ctx)(void*, void*, int) = nullptr;
  std::string error;

  template <typename F>
  void sym(void* h, F& f, const char* name) {
    f = reinterpret_cast<F>(::dlsym(h, name));
    if (f == nullptr && error.empty()) error = std::string("missing symbol ") + name;
  }
};

const Ggml& ggml() {
  static Ggml g = [] {
    Ggml r;
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512dq")) {
      r.error = "this CPU has no AVX-512F/DQ: kernels/ggml_ops mirrors ggml's AVX-512 build, which cannot run here";
      return r;
    }
    const test::fs::path base = test::ggml_base_library();
    if (base.empty()) {
      r.error = "npm package @node-llama-cpp/linux-x64 (libggml-base.so) not installed";
      return r;
    }
    const test::fs::path cpu = base.parent_path() / "libggml-cpu-zen4.so";
    r.base = ::dlopen(base.c_str(), RTLD_NOW | RTLD_GLOBAL);
    r.cpu = r.base ? ::dlopen(cpu.c_str(), RTLD_NOW | RTLD_LOCAL) : nullptr;
    if (r.cpu == nullptr) {
      const char* e = ::dlerror();
      r.error = "dlopen " + cpu.string() + ": " + (e ? e : "failed");
      return r;
    }
    r.sym(r.base, r.init, "ggml_init");
    r.sym(r.base, r.free, "ggml_free");
    r.sym(r.base, r.new_1d, "ggml_new_tensor_1d");
    r.sym(r.base, r.new_2d, "ggml_new_tensor_2d");
    r.sym(r.base, r.new_3d, "ggml_new_tensor_3d");
    r.sym(r.base, r.get_data, "ggml_get_data");
    r.sym(r.base, r.soft_max_ext, "ggml_soft_max_ext");
    r.sym(r.base, r.mul_mat, "ggml_mul_mat");
    r.sym(r.base, r.permute, "ggml_permute");
    r.sym(r.base, r.swiglu_split, "ggml_swiglu_split");
    r.sym(r.base, r.rms_norm, "ggml_rms_norm");
    r.sym(r.base, r.mul, "ggml_mul");
    r.sym(r.base, r.rope_ext, "ggml_rope_ext");
    r.sym(r.base, r.new_graph, "ggml_new_graph");
    r.sym(r.base, r.build_forward_expand, "ggml_build_forward_expand");
    r.sym(r.cpu, r.graph_compute_with_ctx, "ggml_graph_compute_with_ctx");
    void (*cpu_init)() = nullptr;
    r.sym(r.cpu, cpu_init, "ggml_cpu_init");
    if (cpu_init) cpu_init();
    return r;
  }();
  if (!g.error.empty()) test::skip_program("ggml AVX-512 oracle unavailable: " + g.error);
  return g;
}

// One graph context: tensors allocated inside a 256 MB arena, computed with one thread.
class Graph {
 public:
  Graph() : g_(ggml()) { ctx_ = g_.init(GgmlInitParams{size_t{256} << 20, nullptr, false}); }
  ~Graph() { g_.free(ctx_); }
  void* f32(std::initializer_list<int64_t> ne, const std::vector<float>& v) {
    void* t = make(kF32, ne);
    std::memcpy(g_.get_data(t), v.data(), v.size() * sizeof(float));
    return t;
  }
  void* f16(std::initializer_list<int64_t> ne, const std::vector<float>& v) {
    void* t = make(kF16, ne);
    auto* d = static_cast<uint16_t*>(g_.get_data(t));
    for (size_t i = 0; i < v.size(); ++i) d[i] = k::fp32_to_fp16(v[i]);
    return t;
  }
  void* i32(const std::vector<int32_t>& v) {
    void* t = g_.new_1d(ctx_, kI32, static_cast<int64_t>(v.size()));
    std::memcpy(g_.get_data(t), v.data(), v.size() * sizeof(int32_t));
    return t;
  }
  std::vector<float> compute(void* out, size_t n) {
    void* gf = g_.new_graph(ctx_);
    g_.build_forward_expand(gf, out);
    REQUIRE(g_.graph_compute_with_ctx(ctx_, gf, 1) == 0);
    const auto* d = static_cast<const float*>(g_.get_data(out));
    return std::vector<float>(d, d + n);
  }
  void* ctx() const { return ctx_; }
  const Ggml& api() const { return g_; }

 private:
  void* make(int type, std::initializer_list<int64_t> ne) {
    const int64_t* n = ne.begin();
    if (ne.size() == 1) return g_.new_1d(ctx_, type, n[0]);
    if (ne.size() == 2) return g_.new_2d(ctx_, type, n[0], n[1]);
    return g_.new_3d(ctx_, type, n[0], n[1], n[2]);
  }
  const Ggml& g_;
  void* ctx_ = nullptr;
};

std::vector<float> normal(std::mt19937& rng, size_t n, float sigma) {
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

inline float round_fp16(float x) { return k::fp16_to_fp32(k::fp32_to_fp16(x)); }

// Bitwise equality, reporting the first mismatch.
void require_identical(const std::vector<float>& ours, const std::vector<float>& ref, const std::string& what) {
  REQUIRE(ours.size() == ref.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    uint32_t a, b;
    std::memcpy(&a, &ours[i], 4);
    std::memcpy(&b, &ref[i], 4);
    if (a != b) {
      INFO(what << ": element " << i << " shrink " << ours[i] << " ggml " << ref[i]);
      REQUIRE(a == b);
    }
  }
}

constexpr int64_t kKv = 256;  // llama.cpp pads the KV length to a multiple of 256

}  // namespace

TEST_CASE("softmax in ggml's order equals ggml_soft_max_ext with a causal mask", "[data][ggml_ops]") {
  std::mt19937 rng(1);
  for (const float sigma : {0.5f, 3.0f, 40.0f}) {
    const int64_t rows = 24;
    std::vector<float> scores = normal(rng, static_cast<size_t>(kKv * rows), sigma);
    std::vector<float> mask(static_cast<size_t>(kKv * rows), 0.0f);
    std::vector<int64_t> n_of(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      n_of[static_cast<size_t>(r)] = 1 + (r * 37) % kKv;  // 1..256 visible positions, ragged vs 16
      for (int64_t j = n_of[static_cast<size_t>(r)]; j < kKv; ++j) mask[static_cast<size_t>(r * kKv + j)] = -INFINITY;
    }
    const float scale = 1.0f / std::sqrt(64.0f);
    Graph g;
    void* a = g.f32({kKv, rows}, scores);
    void* m = g.f32({kKv, rows}, mask);
    const std::vector<float> ref = g.compute(g.api().soft_max_ext(g.ctx(), a, m, scale, 0.0f), scores.size());
    std::vector<float> ours(scores.size(), 0.0f);
    for (int64_t r = 0; r < rows; ++r) {
      float* p = ours.data() + r * kKv;
      std::copy(scores.begin() + r * kKv, scores.begin() + r * kKv + n_of[static_cast<size_t>(r)], p);
      k::softmax_ggml(p, n_of[static_cast<size_t>(r)], scale);
    }
    require_identical(ours, ref, "softmax sigma " + std::to_string(sigma));
  }
}

TEST_CASE("swiglu in ggml's order equals ggml_swiglu_split", "[data][ggml_ops]") {
  std::mt19937 rng(2);
  for (const int64_t n : {5, 16, 64, 172, 2816}) {
    const int64_t rows = 3;
    const std::vector<float> gate = normal(rng, static_cast<size_t>(n * rows), 4.0f);
    const std::vector<float> up = normal(rng, static_cast<size_t>(n * rows), 1.0f);
    Graph g;
    void* a = g.f32({n, rows}, gate);
    void* b = g.f32({n, rows}, up);
    const std::vector<float> ref = g.compute(g.api().swiglu_split(g.ctx(), a, b), gate.size());
    std::vector<float> ours = gate;
    for (int64_t r = 0; r < rows; ++r) k::swiglu_ggml(ours.data() + r * n, up.data() + r * n, n);
    require_identical(ours, ref, "swiglu n " + std::to_string(n));
  }
}

TEST_CASE("rms_norm * weight equals ggml_rms_norm then ggml_mul", "[data][ggml_ops]") {
  std::mt19937 rng(3);
  for (const int64_t n : {8, 64, 288, 2048}) {
    const int64_t rows = 4;
    const std::vector<float> x = normal(rng, static_cast<size_t>(n * rows), 2.0f);
    const std::vector<float> w = normal(rng, static_cast<size_t>(n), 1.0f);
    Graph g;
    void* a = g.f32({n, rows}, x);
    void* b = g.f32({n}, w);
    const std::vector<float> ref = g.compute(g.api().mul(g.ctx(), g.api().rms_norm(g.ctx(), a, 1e-5f), b), x.size());
    std::vector<float> ours(x.size());
    for (int64_t r = 0; r < rows; ++r) k::rms_norm_ggml(x.data() + r * n, w.data(), n, 1e-5f, ours.data() + r * n);
    require_identical(ours, ref, "rms_norm n " + std::to_string(n));
  }
}

TEST_CASE("RoPE equals ggml_rope_ext (normal and NEOX modes)", "[data][ggml_ops]") {
  std::mt19937 rng(4);
  for (const bool neox : {false, true}) {
    for (const int64_t hd : {8, 64, 128}) {
      for (const float base : {10000.0f, 500000.0f}) {
        const int64_t heads = 3, tokens = 40;
        const std::vector<float> x = normal(rng, static_cast<size_t>(hd * heads * tokens), 1.0f);
        std::vector<int32_t> pos(static_cast<size_t>(tokens));
        for (int64_t t = 0; t < tokens; ++t) pos[static_cast<size_t>(t)] = static_cast<int32_t>(t * 53 % 4096);
        Graph g;
        void* a = g.f32({hd, heads, tokens}, x);
        void* p = g.i32(pos);
        void* out = g.api().rope_ext(g.ctx(), a, p, nullptr, static_cast<int>(hd), neox ? kRopeNeox : kRopeNormal, 0,
                                     base, 1.0f, 0.0f, 1.0f, 32.0f, 1.0f);
        const std::vector<float> ref = g.compute(out, x.size());
        std::vector<float> ours = x, cs(static_cast<size_t>(hd));
        for (int64_t t = 0; t < tokens; ++t) {
          k::rope_cache_ggml(static_cast<float>(pos[static_cast<size_t>(t)]), hd, base, 1.0f, nullptr, cs.data());
          for (int64_t h = 0; h < heads; ++h) k::rope_ggml(ours.data() + (t * heads + h) * hd, hd, cs.data(), neox);
        }
        require_identical(ours, ref, std::string(neox ? "neox" : "normal") + " rope hd " + std::to_string(hd));
      }
    }
  }
}

TEST_CASE("attention products K*q and V*p equal ggml_mul_mat on an F16 and an F32 cache", "[data][ggml_ops]") {
  std::mt19937 rng(5);
  for (const bool f16 : {true, false}) {
    // An F16 cache: ggml converts the F32 activations (q, p) to F16; an F32 cache keeps them.
    auto cache_value = [f16](float x) { return f16 ? round_fp16(x) : x; };
    const k::DotOrder vec = f16 ? k::DotOrder::kVecF16 : k::DotOrder::kVecF32;
    for (const int64_t hd : {7, 8, 15, 64, 72, 95, 128, 172}) {
      for (const int64_t T : {1, 2, 7}) {
        const std::string what = std::string(f16 ? "F16" : "F32") + " hd " + std::to_string(hd) + " tokens " +
                                 std::to_string(T);
        const std::vector<float> kv = normal(rng, static_cast<size_t>(kKv * hd), 1.0f);
        // K*q as llama.cpp builds it: K (kKv, hd) rows of one KV head shared by two query heads
        // (GQA broadcast), q a permuted view (hd, T, 2 heads) of the (hd, 2 heads, T) projection
        // -> scores (2 heads, T, kKv).
        {
          const int64_t heads = 2;
          const std::vector<float> q = normal(rng, static_cast<size_t>(T * heads * hd), 1.0f);
          Graph g;
          void* a = f16 ? g.f16({hd, kKv}, kv) : g.f32({hd, kKv}, kv);
          void* b = g.api().permute(g.ctx(), g.f32({hd, heads, T}, q), 0, 2, 1, 3);
          const std::vector<float> ref =
              g.compute(g.api().mul_mat(g.ctx(), a, b), static_cast<size_t>(heads * T * kKv));
          std::vector<float> ours(ref.size()), kr(kv.size()), qh(static_cast<size_t>(hd));
          for (size_t i = 0; i < kv.size(); ++i) kr[i] = cache_value(kv[i]);
          const k::DotOrder order = f16 && T >= 2 && hd % 16 == 0 ? k::DotOrder::kTiled : vec;
          for (int64_t h = 0; h < heads; ++h)
            for (int64_t t = 0; t < T; ++t) {
              for (int64_t i = 0; i < hd; ++i)
                qh[static_cast<size_t>(i)] = cache_value(q[static_cast<size_t>((t * heads + h) * hd + i)]);
              k::scores_ggml(order, kr.data(), hd, qh.data(), hd, kKv, ours.data() + (h * T + t) * kKv);
            }
          require_identical(ours, ref, "K*q " + what);
        }
        // V*p: V^T (hd, kKv) (llama.cpp stores V transposed without flash attention), p (T, kKv)
        // softmax-like weights, zero past each token's causal length.
        {
          std::vector<float> p(static_cast<size_t>(T * kKv), 0.0f);
          std::uniform_real_distribution<float> u(0.0f, 1.0f);
          std::vector<int64_t> n_of(static_cast<size_t>(T));
          for (int64_t t = 0; t < T; ++t) {
            n_of[static_cast<size_t>(t)] = 1 + (t * 41 + 3) % kKv;
            for (int64_t j = 0; j < n_of[static_cast<size_t>(t)]; ++j) p[static_cast<size_t>(t * kKv + j)] = u(rng);
          }
          Graph g;
          void* a = f16 ? g.f16({kKv, hd}, kv) : g.f32({kKv, hd}, kv);  // row i = dimension i over all positions
          void* b = g.f32({kKv, T}, p);
          const std::vector<float> ref = g.compute(g.api().mul_mat(g.ctx(), a, b), static_cast<size_t>(T * hd));
          // shrink's cache holds V transposed too: row i = dimension i over positions.
          std::vector<float> vt(static_cast<size_t>(kKv * hd)), ph(static_cast<size_t>(kKv));
          for (size_t i = 0; i < kv.size(); ++i) vt[i] = cache_value(kv[i]);
          std::vector<float> ours(ref.size());
          const k::DotOrder order = T >= 2 && hd % 4 == 0 ? k::DotOrder::kTiled : vec;
          for (int64_t t = 0; t < T; ++t) {
            for (int64_t j = 0; j < kKv; ++j) ph[static_cast<size_t>(j)] = cache_value(p[static_cast<size_t>(t * kKv + j)]);
            k::weighted_sum_ggml(vt.data(), kKv, ph.data(), n_of[static_cast<size_t>(t)], hd, order, ours.data() + t * hd);
          }
          require_identical(ours, ref, "V*p " + what);
        }
      }
    }
  }
}

// Without ggml: the AVX-512 variant equals the scalar reference bit for bit (the reference is
// what a machine without AVX-512 runs, so both kinds of machine compute the same numbers).
#if defined(SHRINK_HAVE_X86)
TEST_CASE("AVX-512 ggml-order ops equal the scalar reference", "[ggml_ops]") {
  const k::CpuFeatures& f = k::cpu_features();
  if (!(f.avx512f && f.avx512dq)) {
    WARN("no AVX-512F/DQ on this CPU: only the reference runs here");
    return;
  }
  std::mt19937 rng(static_cast<uint32_t>(test::seed()));
  for (const int64_t n : {1, 7, 15, 16, 17, 63, 64, 65, 95, 128, 172, 255, 256, 1000}) {
    for (const float sigma : {0.01f, 1.0f, 30.0f}) {
      const std::vector<float> a = normal(rng, static_cast<size_t>(n), sigma), b = normal(rng, static_cast<size_t>(n), 1.0f);
      INFO("n " << n << " sigma " << sigma << " (rerun with --rng-seed " << test::seed() << ")");
      auto same = [](float x, float y) { return std::memcmp(&x, &y, 4) == 0; };
      CHECK(same(k::ref::dot_vec_f16(a.data(), b.data(), n), k::avx512::dot_vec_f16(a.data(), b.data(), n)));
      CHECK(same(k::ref::dot_vec_f32(a.data(), b.data(), n), k::avx512::dot_vec_f32(a.data(), b.data(), n)));
      if (n % 16 == 0) CHECK(same(k::ref::dot_tiled(a.data(), b.data(), n), k::avx512::dot_tiled(a.data(), b.data(), n)));
      if (n % 16 == 0) {
        // One query against 37 keys (two 16-key passes and a ragged tail; 9 rows for the
        // 4-row weighted passes), stride n + 16.
        const std::vector<float> keys = normal(rng, static_cast<size_t>(37 * (n + 16)), sigma);
        std::vector<float> s1(37), s2(37);
        k::ref::scores_tiled(keys.data(), n + 16, b.data(), n, 37, s1.data());
        k::avx512::scores_tiled(keys.data(), n + 16, b.data(), n, 37, s2.data());
        require_identical(s2, s1, "scores_tiled");
        std::vector<float> w1(9), w2(9);
        k::ref::weighted_tiled(keys.data(), n + 16, b.data(), n, 9, w1.data());
        k::avx512::weighted_tiled(keys.data(), n + 16, b.data(), n, 9, w2.data());
        require_identical(w2, w1, "weighted_tiled");
      }
      std::vector<float> p1 = a, p2 = a;
      k::ref::softmax(p1.data(), n, 0.125f);
      k::avx512::softmax(p2.data(), n, 0.125f);
      require_identical(p2, p1, "softmax");
      std::vector<float> r1 = a, r2 = a;
      if (n > 2) r1[1] = r2[1] = NAN, r1[2] = r2[2] = 70000.0f;  // NaN and F16 overflow
      k::ref::round_f16(r1.data(), n);
      k::avx512::round_f16(r2.data(), n);
      require_identical(r2, r1, "round_f16");
      std::vector<float> g1 = a, g2 = a;
      k::ref::swiglu(g1.data(), b.data(), n);
      k::avx512::swiglu(g2.data(), b.data(), n);
      require_identical(g2, g1, "swiglu");
    }
  }
  // exp's saturation: arguments far below and above the float range.
  std::vector<float> x = {-1e30f, -200.0f, -104.0f, -88.0f, 0.0f, 88.0f, 89.0f, 200.0f, 1e30f, -INFINITY};
  std::vector<float> g1 = x, g2 = x, up(x.size(), 1.0f);
  g1.resize(16, 0.0f);
  g2.resize(16, 0.0f);
  up.resize(16, 1.0f);
  k::ref::swiglu(g1.data(), up.data(), 16);
  k::avx512::swiglu(g2.data(), up.data(), 16);
  for (size_t i = 0; i < 16; ++i) CHECK(std::memcmp(&g1[i], &g2[i], 4) == 0);
}
#endif  // SHRINK_HAVE_X86
