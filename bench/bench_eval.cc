// Perplexity-style throughput: tokens/s of shrink's forward pass against llama.cpp's on the same
// GGUF, same thread count, same run, alternating so both see the same machine load. Each
// measurement evaluates one chunk of --ctx tokens from an empty KV cache with logits for the
// second half only, as llama-perplexity does. Reported as the ratio shrink / llama.cpp.
//
// Models: a generated Llama (model/synthetic.h; default hidden 1024, feed-forward 2816, 4 layers,
// 16 heads, so every row fits 256-blocks) written as F32, Q8_0, Q4_0 and Q4_K (pure), plus any
// GGUF files named with --gguf. llama.cpp comes from the npm package's libllama (dlopen).
//
// Run from the repository or its build folder (libllama is found under tests/interop).
//   bench_eval [--threads N] [--ctx 512] [--reps 3] [--embd 1024] [--ff 2816] [--layers 4]
//              [--gguf FILE]...
#include <dlfcn.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/llama_model.h"
#include "model/model_source.h"
#include "model/synthetic.h"
#include "quantizer/quantize_model.h"

namespace fs = std::filesystem;
using namespace shrink;

namespace {

// ---- The slice of llama.h (node-llama-cpp 3.22.1, bins v0.5.0) this program calls; layouts
// as tests/test_interop_babyllama.cc checks them with static_asserts. ----
using llama_token = int32_t;
struct llama_model;
struct llama_context;
struct llama_memory_i;

struct ModelParams {
  void* devices;
  const void* tensor_buft_overrides;
  int32_t n_gpu_layers, split_mode, load_mode, lazy_mode, main_gpu;
  const float* tensor_split;
  void* progress_callback;
  void* progress_callback_user_data;
  const void* kv_overrides;
  bool vocab_only, check_tensors, use_extra_bufts, no_host, no_alloc, load_mtp;
};
static_assert(sizeof(ModelParams) == 80);

struct ContextParams {
  uint32_t n_ctx, n_batch, n_ubatch, n_seq_max, n_rs_seq, n_outputs_max, n_outputs_max_per_seq;
  int32_t n_threads, n_threads_batch;
  int32_t ctx_type, rope_scaling_type, pooling_type, attention_type, flash_attn_type;
  float rope_freq_base, rope_freq_scale, yarn_ext_factor, yarn_attn_factor, yarn_beta_fast, yarn_beta_slow;
  uint32_t yarn_orig_ctx;
  float defrag_thold;
  void* cb_eval;
  void* cb_eval_user_data;
  int32_t type_k, type_v;
  void* abort_callback;
  void* abort_callback_data;
  bool embeddings, offload_kqv, no_perf, op_offload, swa_full, kv_unified;
  void* samplers;
  size_t n_samplers;
  llama_context* ctx_other;
};
static_assert(offsetof(ContextParams, n_threads) == 28);
static_assert(offsetof(ContextParams, cb_eval) == 88);
static_assert(sizeof(ContextParams) == 160);

struct Batch {
  int32_t n_tokens;
  llama_token* token;
  float* embd;
  int32_t* pos;
  int32_t* n_seq_id;
  int32_t** seq_id;
  int8_t* logits;
};
static_assert(sizeof(Batch) == 56);

struct Llama {
  void (*backend_init)();
  void (*log_set)(void (*)(int, const char*, void*), void*);
  void (*load_all_from_path)(const char*);
  ModelParams (*model_default_params)();
  llama_model* (*model_load_from_file)(const char*, ModelParams);
  void (*model_free)(llama_model*);
  ContextParams (*context_default_params)();
  llama_context* (*init_from_model)(llama_model*, ContextParams);
  void (*free)(llama_context*);
  Batch (*batch_init)(int32_t, int32_t, int32_t);
  void (*batch_free)(Batch);
  int32_t (*decode)(llama_context*, Batch);
  llama_memory_i* (*get_memory)(llama_context*);
  void (*memory_clear)(llama_memory_i*, bool);
};

template <class F>
bool bind(void* h, const char* name, F& fn) {
  fn = reinterpret_cast<F>(::dlsym(h, name));
  if (fn == nullptr) std::fprintf(stderr, "bench_eval: libllama lacks %s\n", name);
  return fn != nullptr;
}

void quiet(int, const char*, void*) {}

// The npm package's binaries: beside the source tree the build folder sits in (build-*/bench_eval
// -> ../tests/interop), or under the current folder.
fs::path llama_bins_dir() {
  const fs::path rel = "tests/interop/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64";
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  for (const fs::path& root : {exe.parent_path().parent_path(), fs::current_path(), fs::current_path().parent_path()})
    if (fs::exists(root / rel)) return root / rel;
  return rel;
}

Llama* load_llama() {
  const fs::path dir = llama_bins_dir();
  fs::path lib;
  if (fs::exists(dir))
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("libllama.", 0) == 0 && n.size() > 3 && n.compare(n.size() - 3, 3, ".so") == 0) lib = e.path();
    }
  if (lib.empty()) {
    std::fprintf(stderr, "bench_eval: libllama not found under %s (run setup.sh)\n", dir.c_str());
    return nullptr;
  }
  void* h = ::dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    std::fprintf(stderr, "bench_eval: dlopen %s: %s\n", lib.c_str(), ::dlerror());
    return nullptr;
  }
  auto* l = new Llama{};
  bool ok = bind(h, "llama_backend_init", l->backend_init) && bind(h, "llama_log_set", l->log_set) &&
            bind(h, "ggml_backend_load_all_from_path", l->load_all_from_path) &&
            bind(h, "llama_model_default_params", l->model_default_params) &&
            bind(h, "llama_model_load_from_file", l->model_load_from_file) && bind(h, "llama_model_free", l->model_free) &&
            bind(h, "llama_context_default_params", l->context_default_params) &&
            bind(h, "llama_init_from_model", l->init_from_model) && bind(h, "llama_free", l->free) &&
            bind(h, "llama_batch_init", l->batch_init) && bind(h, "llama_batch_free", l->batch_free) &&
            bind(h, "llama_decode", l->decode) && bind(h, "llama_get_memory", l->get_memory) &&
            bind(h, "llama_memory_clear", l->memory_clear);
  if (!ok) return nullptr;
  l->log_set(quiet, nullptr);
  l->load_all_from_path(lib.parent_path().c_str());
  l->backend_init();
  return l;
}

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Row {
  std::string name;
  double shrink_tps = 0, llama_tps = 0;
};

// Best-of-reps tokens/s of both engines on one GGUF, measurements interleaved.
bool bench_file(Llama& L, const fs::path& gguf, int threads, int64_t ctx, int reps, const std::vector<int32_t>& tokens,
                Row* row) {
  auto src = open_model(gguf.string());
  if (!src.ok()) {
    std::fprintf(stderr, "bench_eval: %s\n", src.error().message.c_str());
    return false;
  }
  auto model = load_llama_model(*src);
  if (!model.ok()) {
    std::fprintf(stderr, "bench_eval: %s\n", model.error().message.c_str());
    return false;
  }
  KvCache cache = make_kv_cache(*model, ctx);
  std::vector<float> logits;

  ModelParams mp = L.model_default_params();
  mp.n_gpu_layers = 0;
  llama_model* lm = L.model_load_from_file(gguf.c_str(), mp);
  if (lm == nullptr) {
    std::fprintf(stderr, "bench_eval: llama.cpp cannot load %s\n", gguf.c_str());
    return false;
  }
  ContextParams cp = L.context_default_params();
  cp.n_ctx = cp.n_batch = cp.n_ubatch = static_cast<uint32_t>(ctx);
  cp.n_threads = cp.n_threads_batch = threads;
  cp.no_perf = true;
  llama_context* lc = L.init_from_model(lm, cp);
  if (lc == nullptr) {
    std::fprintf(stderr, "bench_eval: llama_init_from_model failed for %s\n", gguf.c_str());
    L.model_free(lm);
    return false;
  }
  Batch b = L.batch_init(static_cast<int32_t>(ctx), 0, 1);
  b.n_tokens = static_cast<int32_t>(ctx);
  for (int64_t i = 0; i < ctx; ++i) {
    b.token[i] = tokens[static_cast<size_t>(i)];
    b.pos[i] = static_cast<int32_t>(i);
    b.n_seq_id[i] = 1;
    b.seq_id[i][0] = 0;
    b.logits[i] = i >= ctx / 2 ? 1 : 0;  // llama-perplexity scores the second half
  }

  double best_s = 1e30, best_l = 1e30;
  for (int r = 0; r <= reps; ++r) {  // r == 0 warms both up and is not counted
    cache.clear();
    double t0 = now_s();
    if (Status s = llama_forward(*model, cache, std::span<const int32_t>(tokens.data(), static_cast<size_t>(ctx)), logits, ctx / 2);
        !s.ok()) {
      std::fprintf(stderr, "bench_eval: %s\n", s.error().message.c_str());
      return false;
    }
    const double ts = now_s() - t0;
    L.memory_clear(L.get_memory(lc), true);
    t0 = now_s();
    const int32_t rc = L.decode(lc, b);
    const double tl = now_s() - t0;
    if (rc != 0) {
      std::fprintf(stderr, "bench_eval: llama_decode returned %d\n", rc);
      return false;
    }
    if (r > 0) {
      best_s = std::min(best_s, ts);
      best_l = std::min(best_l, tl);
    }
  }
  L.batch_free(b);
  L.free(lc);
  L.model_free(lm);
  row->shrink_tps = static_cast<double>(ctx) / best_s;
  row->llama_tps = static_cast<double>(ctx) / best_l;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = omp_get_max_threads(), reps = 3;
  int64_t ctx = 512, embd = 1024, ff = 2816, layers = 4;
  std::vector<std::string> extra;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--ctx") ctx = std::atoll(argv[i + 1]);
    else if (a == "--reps") reps = std::atoi(argv[i + 1]);
    else if (a == "--embd") embd = std::atoll(argv[i + 1]);
    else if (a == "--ff") ff = std::atoll(argv[i + 1]);
    else if (a == "--layers") layers = std::atoll(argv[i + 1]);
    else if (a == "--gguf") extra.push_back(argv[i + 1]);
    else {
      std::fprintf(stderr,
                   "usage: bench_eval [--threads N] [--ctx 512] [--reps 3] [--embd 1024] [--ff 2816] [--layers 4] "
                   "[--gguf FILE]...\n");
      return 2;
    }
  }
  omp_set_num_threads(threads);
  Llama* L = load_llama();
  if (L == nullptr) return 1;

  const fs::path dir = fs::temp_directory_path() / ("shrink-bench-eval-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::vector<std::pair<std::string, fs::path>> files;
  LlamaConfig cfg = synthetic_config();
  cfg.n_embd = embd;
  cfg.n_ff = ff;
  cfg.n_layer = layers;
  cfg.head_dim = 64;
  cfg.n_head = embd / 64;
  cfg.n_head_kv = embd / 64;
  cfg.n_ctx_train = std::max<int64_t>(cfg.n_ctx_train, ctx);
  cfg.name = "bench";
  ModelSource gen = make_synthetic_model(cfg, 1);
  for (const char* mix : {"f32", "q8_0", "q4_0", "q4_k_s"}) {
    QuantizeOptions q;
    q.plan.mix = mix;
    q.plan.overrides.pure = true;  // one type for every matrix (Q4_K without Q6_K mixing)
    q.algo = QuantAlgo::kGgml;
    q.output = (dir / (std::string("synthetic-") + mix + ".gguf")).string();
    auto s = quantize_model(gen, q);
    if (!s.ok()) {
      std::fprintf(stderr, "bench_eval: quantize %s: %s\n", mix, s.error().message.c_str());
      return 1;
    }
    files.emplace_back(std::string("synthetic ") + (std::string(mix) == "q4_k_s" ? "q4_k" : mix), q.output);
  }
  for (const std::string& f : extra) files.emplace_back(fs::path(f).filename().string(), f);

  std::printf("perplexity-style eval: %lld-token chunks, logits for the second half, %d threads, best of %d; shrink "
              "kernels: %s\n",
              (long long)ctx, threads, reps, kernels::active_isa());
  std::printf("synthetic model: hidden %lld, feed-forward %lld, %lld layers, %lld heads, vocab %lld\n", (long long)embd,
              (long long)ff, (long long)layers, (long long)cfg.n_head, (long long)cfg.n_vocab);
  std::printf("%-28s %14s %14s %8s\n", "model", "shrink tok/s", "llama tok/s", "ratio");
  std::mt19937 rng(7);
  std::vector<int32_t> tokens(static_cast<size_t>(ctx));
  for (const auto& [name, path] : files) {
    auto src = open_model(path.string());
    const int64_t n_vocab = src.ok() ? src->config.n_vocab : 2;
    tokens[0] = 1;
    for (size_t i = 1; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(rng() % static_cast<uint32_t>(n_vocab));
    Row row;
    if (!bench_file(*L, path, threads, ctx, reps, tokens, &row)) continue;
    std::printf("%-28s %14.1f %14.1f %8.2f\n", name.c_str(), row.shrink_tps, row.llama_tps, row.shrink_tps / row.llama_tps);
    std::fflush(stdout);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
