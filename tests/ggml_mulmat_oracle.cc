#include "tests/ggml_mulmat_oracle.h"

#include <dlfcn.h>

#include <cstddef>
#include <cstring>

namespace shrink::test {
namespace {

// ggml.h's struct ggml_init_params (same release as the package): passed by value to ggml_init.
struct GgmlInitParams {
  size_t mem_size;
  void* mem_buffer;
  bool no_alloc;
};

// The handles are opaque here: every field access goes through an exported function.
using Ctx = void*;
using Tensor = void*;
using Graph = void*;
using Buft = void*;
using Buffer = void*;
using Backend = void*;
using Dev = void*;
using Reg = void*;

}  // namespace

struct GgmlMulMatOracle::Api {
  Ctx (*init)(GgmlInitParams) = nullptr;
  void (*free_ctx)(Ctx) = nullptr;
  Tensor (*new_tensor_2d)(Ctx, int, int64_t, int64_t) = nullptr;
  Tensor (*mul_mat)(Ctx, Tensor, Tensor) = nullptr;
  Graph (*new_graph)(Ctx) = nullptr;
  void (*build_forward_expand)(Graph, Tensor) = nullptr;
  Buffer (*alloc_ctx_tensors_from_buft)(Ctx, Buft) = nullptr;
  void (*tensor_set)(Tensor, const void*, size_t, size_t) = nullptr;
  void (*tensor_get)(Tensor, void*, size_t, size_t) = nullptr;
  int (*graph_compute)(Backend, Graph) = nullptr;  // enum ggml_status, 0 = success
  void (*buffer_free)(Buffer) = nullptr;
  void (*backend_free)(Backend) = nullptr;
  Buft (*cpu_buffer_type)() = nullptr;
  void* (*reg_get_proc_address)(Reg, const char*) = nullptr;
  const char* (*buft_name)(Buft) = nullptr;
  bool (*dev_supports_op)(Dev, Tensor) = nullptr;
  Dev (*get_device)(Backend) = nullptr;
  size_t (*row_size)(int, int64_t) = nullptr;
  // from the CPU library
  Backend (*cpu_init)() = nullptr;
  void (*cpu_set_n_threads)(Backend, int) = nullptr;
  Reg (*cpu_reg)() = nullptr;
};

namespace {

template <typename F>
bool bind(void* lib, const char* name, F& fn, std::string& missing) {
  fn = reinterpret_cast<F>(::dlsym(lib, name));
  if (fn == nullptr) missing += std::string(missing.empty() ? "" : ", ") + name;
  return fn != nullptr;
}

}  // namespace

GgmlMulMatOracle::GgmlMulMatOracle(const std::string& base_library, const std::string& cpu_library) {
  // The CPU library names libggml-base.so as a dependency; loading the base first by path makes
  // both share one instance of it (same soname).
  base_ = base_library.empty() ? nullptr : ::dlopen(base_library.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (base_ == nullptr) {
    const char* e = base_library.empty() ? "no path given" : ::dlerror();
    error_ = "dlopen " + base_library + ": " + (e ? e : "unknown error");
    return;
  }
  cpu_ = ::dlopen(cpu_library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (cpu_ == nullptr) {
    const char* e = ::dlerror();
    error_ = "dlopen " + cpu_library + ": " + (e ? e : "unknown error");
    return;
  }
  api_ = new Api;
  Api& a = *api_;
  std::string missing;
  bind(base_, "ggml_init", a.init, missing);
  bind(base_, "ggml_free", a.free_ctx, missing);
  bind(base_, "ggml_new_tensor_2d", a.new_tensor_2d, missing);
  bind(base_, "ggml_mul_mat", a.mul_mat, missing);
  bind(base_, "ggml_new_graph", a.new_graph, missing);
  bind(base_, "ggml_build_forward_expand", a.build_forward_expand, missing);
  bind(base_, "ggml_backend_alloc_ctx_tensors_from_buft", a.alloc_ctx_tensors_from_buft, missing);
  bind(base_, "ggml_backend_tensor_set", a.tensor_set, missing);
  bind(base_, "ggml_backend_tensor_get", a.tensor_get, missing);
  bind(base_, "ggml_backend_graph_compute", a.graph_compute, missing);
  bind(base_, "ggml_backend_buffer_free", a.buffer_free, missing);
  bind(base_, "ggml_backend_free", a.backend_free, missing);
  bind(base_, "ggml_backend_cpu_buffer_type", a.cpu_buffer_type, missing);
  bind(base_, "ggml_backend_reg_get_proc_address", a.reg_get_proc_address, missing);
  bind(base_, "ggml_backend_buft_name", a.buft_name, missing);
  bind(base_, "ggml_backend_dev_supports_op", a.dev_supports_op, missing);
  bind(base_, "ggml_backend_get_device", a.get_device, missing);
  bind(base_, "ggml_row_size", a.row_size, missing);
  bind(cpu_, "ggml_backend_cpu_init", a.cpu_init, missing);
  bind(cpu_, "ggml_backend_cpu_set_n_threads", a.cpu_set_n_threads, missing);
  bind(cpu_, "ggml_backend_cpu_reg", a.cpu_reg, missing);
  if (!missing.empty()) {
    error_ = base_library + " / " + cpu_library + " lack " + missing;
    return;
  }
  // ggml logs every repacked tensor ("repack: repack tensor ..."); the tests do not need it.
  using LogCallback = void (*)(int level, const char* text, void* user);
  if (auto log_set = reinterpret_cast<void (*)(LogCallback, void*)>(::dlsym(base_, "ggml_log_set")))
    log_set([](int, const char*, void*) {}, nullptr);
  backend_ = a.cpu_init();
  if (backend_ == nullptr) {
    error_ = "ggml_backend_cpu_init failed";
    return;
  }
  a.cpu_set_n_threads(backend_, 1);
  // The repack buffer type is one of the CPU device's "extra" buffer types, found the way
  // llama.cpp finds it (ggml_backend_dev_get_extra_bufts through the registry).
  using ExtraBufts = Buft* (*)(Dev);
  auto extra = reinterpret_cast<ExtraBufts>(a.reg_get_proc_address(a.cpu_reg(), "ggml_backend_dev_get_extra_bufts"));
  if (extra != nullptr) {
    for (Buft* b = extra(a.get_device(backend_)); b != nullptr && *b != nullptr; ++b)
      if (std::strcmp(a.buft_name(*b), "CPU_REPACK") == 0) repack_buft_ = *b;
  }
  if (repack_buft_ == nullptr) error_ = cpu_library + " has no CPU_REPACK buffer type";
}

GgmlMulMatOracle::~GgmlMulMatOracle() {
  if (api_ != nullptr && backend_ != nullptr) api_->backend_free(backend_);
  delete api_;
  if (cpu_ != nullptr) ::dlclose(cpu_);
  if (base_ != nullptr) ::dlclose(base_);
}

GgmlMulMatOracle::Output GgmlMulMatOracle::mul_mat(uint32_t type, const void* w, int64_t n_rows, int64_t n_cols,
                                                   const float* x, int64_t n_tokens) const {
  Output out;
  if (!ok()) {
    out.error = error_;
    return out;
  }
  const Api& a = *api_;
  const int t = static_cast<int>(type);
  constexpr int kF32 = 0;  // GGML_TYPE_F32
  // Metadata only (no_alloc): three tensors and one graph; the data lives in backend buffers.
  const GgmlInitParams params{4u << 20, nullptr, true};

  struct Built {
    Ctx ctx_w = nullptr, ctx_c = nullptr;
    Tensor wt = nullptr, xt = nullptr, yt = nullptr;
    Buffer buf_w = nullptr, buf_c = nullptr;
  };
  auto release = [&](Built& b) {
    if (b.buf_w != nullptr) a.buffer_free(b.buf_w);
    if (b.buf_c != nullptr) a.buffer_free(b.buf_c);
    if (b.ctx_w != nullptr) a.free_ctx(b.ctx_w);
    if (b.ctx_c != nullptr) a.free_ctx(b.ctx_c);
    b = Built{};
  };
  // ggml's tensors: W (ne0 = n_cols, ne1 = n_rows), x (n_cols, n_tokens), y (n_rows, n_tokens).
  auto build = [&](Buft weight_buft, Built& b) -> bool {
    b.ctx_w = a.init(params);
    b.ctx_c = a.init(params);
    if (b.ctx_w == nullptr || b.ctx_c == nullptr) return false;
    b.wt = a.new_tensor_2d(b.ctx_w, t, n_cols, n_rows);
    b.xt = a.new_tensor_2d(b.ctx_c, kF32, n_cols, n_tokens);
    b.yt = a.mul_mat(b.ctx_c, b.wt, b.xt);
    b.buf_w = a.alloc_ctx_tensors_from_buft(b.ctx_w, weight_buft);
    return b.buf_w != nullptr;
  };

  // llama.cpp's loader puts a weight in CPU_REPACK only when the device supports the product
  // with the weight there (repack.cpp extra_buffer_type::supports_op); ask the same question.
  Built b;
  bool repacked = false;
  if (build(repack_buft_, b) && a.dev_supports_op(a.get_device(backend_), b.yt)) {
    repacked = true;
  } else {
    release(b);
    if (!build(a.cpu_buffer_type(), b)) {
      release(b);
      out.error = "ggml could not allocate the weight tensor";
      return out;
    }
  }
  b.buf_c = a.alloc_ctx_tensors_from_buft(b.ctx_c, a.cpu_buffer_type());
  if (b.buf_c == nullptr) {
    release(b);
    out.error = "ggml could not allocate the activations";
    return out;
  }
  a.tensor_set(b.wt, w, 0, a.row_size(t, n_cols) * static_cast<size_t>(n_rows));
  a.tensor_set(b.xt, x, 0, sizeof(float) * static_cast<size_t>(n_cols * n_tokens));
  Graph g = a.new_graph(b.ctx_c);
  a.build_forward_expand(g, b.yt);
  const int status = a.graph_compute(backend_, g);
  if (status != 0) {
    release(b);
    out.error = "ggml_backend_graph_compute returned status " + std::to_string(status);
    return out;
  }
  out.y.resize(static_cast<size_t>(n_rows * n_tokens));
  a.tensor_get(b.yt, out.y.data(), 0, sizeof(float) * out.y.size());
  out.repacked = repacked;
  release(b);
  return out;
}

}  // namespace shrink::test
