#include "tests/ggml_oracle.h"

#include <dlfcn.h>

namespace shrink::test {
namespace {

// Mirror of `struct ggml_type_traits` in ggml.h (llama.cpp as bundled by node-llama-cpp,
// release v0.5.0). Only its layout matters; the fields before to_float must match exactly.
using GgmlToFloat = void (*)(const void* x, float* y, int64_t k);
using GgmlFromFloat = void (*)(const float* x, void* y, int64_t k);
struct GgmlTypeTraits {
  const char* type_name;
  int64_t blck_size;
  int64_t blck_size_interleave;
  size_t type_size;
  bool is_quantized;
  GgmlToFloat to_float;
  GgmlFromFloat from_float_ref;
};

// Mirror of `struct ggml_type_traits_cpu` in ggml-cpu.h (same release).
using GgmlVecDot = void (*)(int n, float* s, size_t bs, const void* x, size_t bx, const void* y, size_t by, int nrc);
struct GgmlTypeTraitsCpu {
  GgmlFromFloat from_float;
  GgmlVecDot vec_dot;
  int vec_dot_type;  // enum ggml_type
  int64_t nrows;
};

}  // namespace

GgmlOracle::GgmlOracle(const std::string& library_path) {
  if (library_path.empty()) {
    error_ = "no path to libggml-base.so given";
    return;
  }
  handle_ = ::dlopen(library_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle_ == nullptr) {
    const char* e = ::dlerror();
    error_ = "dlopen " + library_path + ": " + (e ? e : "unknown error");
    return;
  }
  quantize_chunk_ = reinterpret_cast<QuantizeChunkFn>(::dlsym(handle_, "ggml_quantize_chunk"));
  get_type_traits_ = reinterpret_cast<GetTypeTraitsFn>(::dlsym(handle_, "ggml_get_type_traits"));
  if (!ok()) error_ = library_path + " lacks ggml_quantize_chunk or ggml_get_type_traits";
}

GgmlOracle::~GgmlOracle() {
  if (handle_ != nullptr) ::dlclose(handle_);
}

size_t GgmlOracle::quantize_chunk(uint32_t type, const float* src, void* dst, int64_t start,
                                  int64_t nrows, int64_t n_per_row, const float* imatrix) const {
  return quantize_chunk_(static_cast<int>(type), src, dst, start, nrows, n_per_row, imatrix);
}

bool GgmlOracle::dequantize_row(uint32_t type, const void* src, float* dst, int64_t n) const {
  const auto* traits = static_cast<const GgmlTypeTraits*>(get_type_traits_(static_cast<int>(type)));
  if (traits == nullptr || traits->to_float == nullptr) return false;
  traits->to_float(src, dst, n);
  return true;
}

GgmlCpuOracle::GgmlCpuOracle(const std::string& library_path) {
  handle_ = library_path.empty() ? nullptr : ::dlopen(library_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle_ == nullptr) {
    const char* e = library_path.empty() ? "no path given" : ::dlerror();
    error_ = "dlopen " + library_path + ": " + (e ? e : "unknown error");
    return;
  }
  // ggml_cpu_init fills the CPU backend's fp16 tables (some builds convert through them).
  if (auto init = reinterpret_cast<void (*)()>(::dlsym(handle_, "ggml_cpu_init"))) init();
  get_traits_ = reinterpret_cast<GetTraitsFn>(::dlsym(handle_, "ggml_get_type_traits_cpu"));
  if (!ok()) error_ = library_path + " lacks ggml_get_type_traits_cpu";
}

GgmlCpuOracle::~GgmlCpuOracle() {
  if (handle_ != nullptr) ::dlclose(handle_);
}

bool GgmlCpuOracle::from_float(uint32_t type, const float* x, void* y, int64_t n) const {
  const auto* t = static_cast<const GgmlTypeTraitsCpu*>(get_traits_(static_cast<int>(type)));
  if (t == nullptr || t->from_float == nullptr) return false;
  t->from_float(x, y, n);
  return true;
}

bool GgmlCpuOracle::vec_dot(uint32_t weight_type, int64_t n, const void* w, const void* a, float* s) const {
  const auto* t = static_cast<const GgmlTypeTraitsCpu*>(get_traits_(static_cast<int>(weight_type)));
  if (t == nullptr || t->vec_dot == nullptr) return false;
  t->vec_dot(static_cast<int>(n), s, 0, w, 0, a, 0, 1);
  return true;
}

uint32_t GgmlCpuOracle::vec_dot_type(uint32_t weight_type) const {
  const auto* t = static_cast<const GgmlTypeTraitsCpu*>(get_traits_(static_cast<int>(weight_type)));
  return t == nullptr ? 0u : static_cast<uint32_t>(t->vec_dot_type);
}

}  // namespace shrink::test
