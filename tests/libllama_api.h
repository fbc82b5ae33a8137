// llama.cpp's C API, reached with dlopen from the npm package @node-llama-cpp/linux-x64 (node-llama-cpp
// 3.22.1, binaries "release v0.5.0": libllama.v0.5.0.so beside libggml*.so). Tests and benchmarks
// that need llama.cpp without node (for example BabyLlama, whose vocabulary makes node-llama-cpp
// abort while loading; see test_interop_babyllama.cc) include this header instead of llama.h, which
// the package does not ship.
//
// The structs below are the slice of llama.h that callers pass by value, field for field, in that
// release's order; enums are int-sized. Every offset asserted here was read off the release's
// include/llama.h on x86-64 (8-byte pointers): if a new release moves a field these asserts do not
// catch it, so check them against the header again when the npm package is upgraded.
//
// Usage:
//   std::string e;
//   shrink::libllama::Api* api = shrink::libllama::process_api(bins_dir, &e);
//   if (api == nullptr) { ... e names the missing file or symbol ... }
//   llama_model_params mp = api->model_default_params(); ...
// After load() the Api object collects llama.cpp's log in `log` / `warnings`, so it must stay where
// it is (load() registers its address with llama_log_set); process_api() keeps one per process.
#pragma once

#include <dlfcn.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <type_traits>

namespace shrink::libllama {

using llama_token = int32_t;
using llama_pos = int32_t;
using llama_seq_id = int32_t;
struct llama_model;
struct llama_context;
struct llama_vocab;
struct llama_memory_i;  // llama_memory_t is a pointer to it
struct ggml_tensor;     // opaque here: read it with ggml_get_name / ggml_nelements / ggml_backend_tensor_get

// ggml_backend_sched_eval_callback (ggml-backend.h): called twice per graph node, first with ask =
// true ("do you want this tensor?", return true to be called again with its data), then with ask =
// false once it is computed (return false to stop the graph).
using eval_callback = bool (*)(ggml_tensor* t, bool ask, void* user_data);
// enum ggml_log_level (ggml.h)
constexpr int kLogDebug = 1;
constexpr int kLogInfo = 2;
constexpr int kLogWarn = 3;
constexpr int kLogError = 4;
constexpr int kLogCont = 5;  // continues the previous line's level
using log_callback = void (*)(int level, const char* text, void* user_data);

// enum values the tests set (llama.h / ggml.h)
constexpr int32_t kFlashAttnDisabled = 0;  // LLAMA_FLASH_ATTN_TYPE_DISABLED (AUTO is -1)
constexpr int32_t kGgmlTypeF32 = 0;        // GGML_TYPE_F32
constexpr int32_t kGgmlTypeF16 = 1;        // GGML_TYPE_F16

struct llama_model_params {
  void* devices;                      // ggml_backend_dev_t*, NULL-terminated
  const void* tensor_buft_overrides;  // const struct llama_model_tensor_buft_override*
  int32_t n_gpu_layers;
  int32_t split_mode;  // enum llama_split_mode
  int32_t load_mode;   // enum llama_load_mode
  int32_t lazy_mode;   // enum llama_lazy_mode
  int32_t main_gpu;
  const float* tensor_split;
  bool (*progress_callback)(float progress, void* user_data);
  void* progress_callback_user_data;
  const void* kv_overrides;  // const struct llama_model_kv_override*
  bool vocab_only;
  bool check_tensors;  // validate every block while loading (NaN/Inf scales, ...)
  bool use_extra_bufts;
  bool no_host;
  bool no_alloc;
  bool load_mtp;
};
static_assert(offsetof(llama_model_params, tensor_buft_overrides) == 8);
static_assert(offsetof(llama_model_params, n_gpu_layers) == 16);
static_assert(offsetof(llama_model_params, split_mode) == 20);
static_assert(offsetof(llama_model_params, load_mode) == 24);
static_assert(offsetof(llama_model_params, lazy_mode) == 28);
static_assert(offsetof(llama_model_params, main_gpu) == 32);
static_assert(offsetof(llama_model_params, tensor_split) == 40);
static_assert(offsetof(llama_model_params, progress_callback) == 48);
static_assert(offsetof(llama_model_params, progress_callback_user_data) == 56);
static_assert(offsetof(llama_model_params, kv_overrides) == 64);
static_assert(offsetof(llama_model_params, vocab_only) == 72);
static_assert(offsetof(llama_model_params, check_tensors) == 73);
static_assert(offsetof(llama_model_params, use_extra_bufts) == 74);
static_assert(offsetof(llama_model_params, no_host) == 75);
static_assert(offsetof(llama_model_params, no_alloc) == 76);
static_assert(offsetof(llama_model_params, load_mtp) == 77);
static_assert(sizeof(llama_model_params) == 80);

struct llama_context_params {
  uint32_t n_ctx;  // 0 = from the model
  uint32_t n_batch;
  uint32_t n_ubatch;
  uint32_t n_seq_max;
  uint32_t n_rs_seq;
  uint32_t n_outputs_max;
  uint32_t n_outputs_max_per_seq;
  int32_t n_threads;
  int32_t n_threads_batch;
  int32_t ctx_type;           // enum llama_context_type
  int32_t rope_scaling_type;  // enum llama_rope_scaling_type
  int32_t pooling_type;       // enum llama_pooling_type
  int32_t attention_type;     // enum llama_attention_type
  int32_t flash_attn_type;    // enum llama_flash_attn_type
  float rope_freq_base;
  float rope_freq_scale;
  float yarn_ext_factor;
  float yarn_attn_factor;
  float yarn_beta_fast;
  float yarn_beta_slow;
  uint32_t yarn_orig_ctx;
  float defrag_thold;
  eval_callback cb_eval;
  void* cb_eval_user_data;
  int32_t type_k;  // enum ggml_type of the K cache
  int32_t type_v;  // enum ggml_type of the V cache
  bool (*abort_callback)(void* data);
  void* abort_callback_data;
  bool embeddings;
  bool offload_kqv;
  bool no_perf;
  bool op_offload;
  bool swa_full;
  bool kv_unified;
  void* samplers;  // struct llama_sampler_seq_config*
  size_t n_samplers;
  llama_context* ctx_other;
};
static_assert(offsetof(llama_context_params, n_batch) == 4);
static_assert(offsetof(llama_context_params, n_ubatch) == 8);
static_assert(offsetof(llama_context_params, n_seq_max) == 12);
static_assert(offsetof(llama_context_params, n_rs_seq) == 16);
static_assert(offsetof(llama_context_params, n_outputs_max) == 20);
static_assert(offsetof(llama_context_params, n_outputs_max_per_seq) == 24);
static_assert(offsetof(llama_context_params, n_threads) == 28);
static_assert(offsetof(llama_context_params, n_threads_batch) == 32);
static_assert(offsetof(llama_context_params, ctx_type) == 36);
static_assert(offsetof(llama_context_params, rope_scaling_type) == 40);
static_assert(offsetof(llama_context_params, pooling_type) == 44);
static_assert(offsetof(llama_context_params, attention_type) == 48);
static_assert(offsetof(llama_context_params, flash_attn_type) == 52);
static_assert(offsetof(llama_context_params, rope_freq_base) == 56);
static_assert(offsetof(llama_context_params, yarn_beta_slow) == 76);
static_assert(offsetof(llama_context_params, yarn_orig_ctx) == 80);
static_assert(offsetof(llama_context_params, defrag_thold) == 84);
static_assert(offsetof(llama_context_params, cb_eval) == 88);
static_assert(offsetof(llama_context_params, cb_eval_user_data) == 96);
static_assert(offsetof(llama_context_params, type_k) == 104);
static_assert(offsetof(llama_context_params, type_v) == 108);
static_assert(offsetof(llama_context_params, abort_callback) == 112);
static_assert(offsetof(llama_context_params, abort_callback_data) == 120);
static_assert(offsetof(llama_context_params, embeddings) == 128);
static_assert(offsetof(llama_context_params, offload_kqv) == 129);
static_assert(offsetof(llama_context_params, no_perf) == 130);
static_assert(offsetof(llama_context_params, op_offload) == 131);
static_assert(offsetof(llama_context_params, swa_full) == 132);
static_assert(offsetof(llama_context_params, kv_unified) == 133);
static_assert(offsetof(llama_context_params, samplers) == 136);
static_assert(offsetof(llama_context_params, n_samplers) == 144);
static_assert(offsetof(llama_context_params, ctx_other) == 152);
static_assert(sizeof(llama_context_params) == 160);

struct llama_batch {
  int32_t n_tokens;
  llama_token* token;
  float* embd;
  llama_pos* pos;
  int32_t* n_seq_id;
  llama_seq_id** seq_id;
  int8_t* logits;  // non-zero: produce logits for this position
};
static_assert(offsetof(llama_batch, token) == 8);
static_assert(offsetof(llama_batch, logits) == 48);
static_assert(sizeof(llama_batch) == 56);

// Where the npm package keeps its binaries, relative to tests/interop.
inline constexpr const char* kBinsUnderInterop = "node_modules/@node-llama-cpp/linux-x64/bins/linux-x64";

// libllama.so, or the versioned libllama.<release>.so the package ships, in `dir`; empty if none.
inline std::filesystem::path find_libllama(const std::filesystem::path& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir / "libllama.so", ec)) return dir / "libllama.so";
  if (!std::filesystem::is_directory(dir, ec)) return {};
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("libllama.", 0) == 0 && n.size() > 3 && n.compare(n.size() - 3, 3, ".so") == 0) return e.path();
  }
  return {};
}

struct Api {
  // llama.h
  void (*backend_init)() = nullptr;
  void (*log_set)(log_callback, void*) = nullptr;
  llama_model_params (*model_default_params)() = nullptr;
  llama_model* (*model_load_from_file)(const char* path, llama_model_params) = nullptr;
  void (*model_free)(llama_model*) = nullptr;
  int32_t (*model_n_embd)(const llama_model*) = nullptr;
  int32_t (*model_n_layer)(const llama_model*) = nullptr;
  const llama_vocab* (*model_get_vocab)(const llama_model*) = nullptr;
  int32_t (*vocab_n_tokens)(const llama_vocab*) = nullptr;
  llama_token (*vocab_bos)(const llama_vocab*) = nullptr;
  llama_context_params (*context_default_params)() = nullptr;
  llama_context* (*init_from_model)(llama_model*, llama_context_params) = nullptr;
  void (*free)(llama_context*) = nullptr;
  llama_memory_i* (*get_memory)(const llama_context*) = nullptr;
  void (*memory_clear)(llama_memory_i*, bool data) = nullptr;
  llama_batch (*batch_get_one)(llama_token* tokens, int32_t n_tokens) = nullptr;
  llama_batch (*batch_init)(int32_t n_tokens, int32_t embd, int32_t n_seq_max) = nullptr;
  void (*batch_free)(llama_batch) = nullptr;
  int32_t (*decode)(llama_context*, llama_batch) = nullptr;  // 0 = success
  float* (*get_logits)(llama_context*) = nullptr;
  float* (*get_logits_ith)(llama_context*, int32_t i) = nullptr;  // i < 0 counts from the last output
  // ggml.h / ggml-backend.h (libggml*, found through libllama's dependencies)
  void (*load_all_from_path)(const char* dir) = nullptr;  // ggml_backend_load_all_from_path
  const char* (*ggml_get_name)(const ggml_tensor*) = nullptr;
  int64_t (*ggml_nelements)(const ggml_tensor*) = nullptr;
  void (*ggml_backend_tensor_get)(const ggml_tensor*, void* data, size_t offset, size_t size) = nullptr;

  std::string library;   // the file load() opened
  std::string log;       // everything llama.cpp logged since the caller last cleared it
  std::string warnings;  // only its WARN and ERROR lines
  int last_level = 0;

  // Opens libllama in `bins_dir`, binds every pointer above, routes the log here, loads the CPU
  // backends beside the library (libllama's RUNPATH $ORIGIN finds libggml*.so; ggml picks the
  // libggml-cpu-<isa>.so this CPU runs best) and initializes the backend. Returns "" on success,
  // else one line naming the missing file or symbol.
  std::string load(const std::filesystem::path& bins_dir) {
    const std::filesystem::path lib = find_libllama(bins_dir);
    if (lib.empty()) return "no libllama*.so under " + bins_dir.string() + " (npm package @node-llama-cpp/linux-x64)";
    void* h = ::dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* e = ::dlerror();
      return "dlopen " + lib.string() + ": " + (e ? e : "unknown error");
    }
    library = lib.string();
    std::string missing;
    auto bind = [&](const char* name, auto& fn) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(h, name));
      if (fn == nullptr) missing += std::string(missing.empty() ? "" : ", ") + name;
    };
    bind("llama_backend_init", backend_init);
    bind("llama_log_set", log_set);
    bind("llama_model_default_params", model_default_params);
    bind("llama_model_load_from_file", model_load_from_file);
    bind("llama_model_free", model_free);
    bind("llama_model_n_embd", model_n_embd);
    bind("llama_model_n_layer", model_n_layer);
    bind("llama_model_get_vocab", model_get_vocab);
    bind("llama_vocab_n_tokens", vocab_n_tokens);
    bind("llama_vocab_bos", vocab_bos);
    bind("llama_context_default_params", context_default_params);
    bind("llama_init_from_model", init_from_model);
    bind("llama_free", free);
    bind("llama_get_memory", get_memory);
    bind("llama_memory_clear", memory_clear);
    bind("llama_batch_get_one", batch_get_one);
    bind("llama_batch_init", batch_init);
    bind("llama_batch_free", batch_free);
    bind("llama_decode", decode);
    bind("llama_get_logits", get_logits);
    bind("llama_get_logits_ith", get_logits_ith);
    bind("ggml_backend_load_all_from_path", load_all_from_path);
    bind("ggml_get_name", ggml_get_name);
    bind("ggml_nelements", ggml_nelements);
    bind("ggml_backend_tensor_get", ggml_backend_tensor_get);
    if (!missing.empty()) return lib.string() + " lacks " + missing;
    log_set(&Api::collect_log, this);
    load_all_from_path(lib.parent_path().c_str());
    backend_init();
    return "";
  }

  static void collect_log(int level, const char* text, void* user) {
    auto* a = static_cast<Api*>(user);
    if (level != kLogCont) a->last_level = level;
    a->log += text;
    if (a->last_level == kLogWarn || a->last_level == kLogError) a->warnings += text;
  }
};

// The process's one Api, loaded from `bins_dir` on the first call (later calls return it, whatever
// their folder). Null, with the reason in *error, when loading failed; a failure is not retried.
inline Api* process_api(const std::filesystem::path& bins_dir, std::string* error) {
  static std::string failure;
  static Api* api = [&]() -> Api* {
    auto* a = new Api;  // never freed: llama.cpp keeps logging into it until exit
    failure = a->load(bins_dir);
    if (failure.empty()) return a;
    delete a;
    return nullptr;
  }();
  if (api == nullptr && error != nullptr) *error = failure;
  return api;
}

}  // namespace shrink::libllama
