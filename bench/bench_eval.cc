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
#include "tests/libllama_api.h"

namespace fs = std::filesystem;
using namespace shrink;

namespace {

using namespace shrink::libllama;

// The npm package's binaries: beside the source tree the build folder sits in (build-*/bench_eval
// -> ../tests/interop), or under the current folder.
fs::path llama_bins_dir() {
  const fs::path rel = fs::path("tests/interop") / kBinsUnderInterop;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  for (const fs::path& root : {exe.parent_path().parent_path(), fs::current_path(), fs::current_path().parent_path()})
    if (fs::exists(root / rel)) return root / rel;
  return rel;
}

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Row {
  std::string name;
  double shrink_tps = 0, llama_tps = 0;
};

// Best-of-reps tokens/s of both engines on one GGUF, measurements interleaved.
bool bench_file(Api& L, const fs::path& gguf, int threads, int64_t ctx, int reps, const std::vector<int32_t>& tokens,
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

  llama_model_params mp = L.model_default_params();
  mp.n_gpu_layers = 0;
  llama_model* lm = L.model_load_from_file(gguf.c_str(), mp);
  if (lm == nullptr) {
    std::fprintf(stderr, "bench_eval: llama.cpp cannot load %s\n", gguf.c_str());
    return false;
  }
  llama_context_params cp = L.context_default_params();
  cp.n_ctx = cp.n_batch = cp.n_ubatch = static_cast<uint32_t>(ctx);
  cp.n_threads = cp.n_threads_batch = threads;
  cp.no_perf = true;
  llama_context* lc = L.init_from_model(lm, cp);
  if (lc == nullptr) {
    std::fprintf(stderr, "bench_eval: llama_init_from_model failed for %s\n", gguf.c_str());
    L.model_free(lm);
    return false;
  }
  llama_batch b = L.batch_init(static_cast<int32_t>(ctx), 0, 1);
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
  std::string error;
  Api* L = process_api(llama_bins_dir(), &error);
  if (L == nullptr) {
    std::fprintf(stderr, "bench_eval: %s (run setup.sh)\n", error.c_str());
    return 1;
  }

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
