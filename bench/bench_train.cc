// Training throughput of shrink's distillation core against PyTorch CPU, measured in the same
// run on the same model, weights, batch and thread count: one step = forward, next-token
// cross-entropy, backward, global-norm clipping (1.0), AdamW. PyTorch runs the model of
// tests/torch/llama_step.py (torch.nn.functional ops, autograd, torch.optim.AdamW) through
// tests/torch/train_bench.py with torch.set_num_threads(threads); it should use OpenBLAS
// (Debian libopenblas0-pthread), which the script reports.
// Reports tokens/s of both (wall clock, and per CPU-second: user + system time of all threads,
// steadier on a shared machine), the ratios shrink / PyTorch, and each process's peak RSS.
// Never part of pass/fail.
//
// Usage: bench_train [--threads N] [--steps K] [--batch B] [--seq S] [--layers L] [--embd D]
//                    [--ff F] [--heads H] [--kv-heads G] [--vocab V] [--script tests/torch/train_bench.py]
//   defaults: threads = OpenMP's max, 10 steps after 2 warmup steps, batch 8 x seq 128,
//   4 layers, n_embd 256, n_ff 688, 8 heads (4 kv), vocab 4096 (~5.9M parameters).
#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "distill/losses.h"
#include "distill/optimizer.h"
#include "distill/train_model.h"
#include "formats/safetensors.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace shrink;
using namespace shrink::distill;

double cpu_seconds() {  // user + system time of all threads of this process
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

}  // namespace

int main(int argc, char** argv) {
  int threads = omp_get_max_threads(), steps = 10, warm = 2;
  fs::path script;
  int64_t batch = 8, seq = 128;
  LlamaConfig c;
  c.arch = "llama";
  c.n_embd = 256;
  c.n_ff = 688;
  c.n_layer = 4;
  c.n_head = 8;
  c.n_head_kv = 4;
  c.n_vocab = 4096;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const long v = std::strtol(argv[i + 1], nullptr, 10);
    if (a == "--threads") threads = static_cast<int>(v);
    else if (a == "--steps") steps = static_cast<int>(v);
    else if (a == "--batch") batch = v;
    else if (a == "--seq") seq = v;
    else if (a == "--layers") c.n_layer = v;
    else if (a == "--embd") c.n_embd = v;
    else if (a == "--ff") c.n_ff = v;
    else if (a == "--heads") c.n_head = v;
    else if (a == "--kv-heads") c.n_head_kv = v;
    else if (a == "--vocab") c.n_vocab = v;
    else if (a == "--script") script = argv[i + 1];
    else {
      std::fprintf(stderr, "bench_train: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  c.head_dim = c.n_embd / c.n_head;
  c.n_ctx_train = seq;
  omp_set_num_threads(threads);
  auto made = TrainModel::random(c, 1234);
  if (!made.ok()) {
    std::fprintf(stderr, "bench_train: %s\n", made.error().message.c_str());
    return 1;
  }
  TrainModel model = std::move(made.value());
  const int64_t N = batch * seq;
  std::mt19937_64 rng(99);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(c.n_vocab - 1));
  std::vector<int32_t> tokens(static_cast<size_t>(N)), targets(static_cast<size_t>(N));
  for (auto& t : tokens) t = tok(rng);
  for (int64_t r = 0; r < N; ++r) targets[static_cast<size_t>(r)] = r % seq == seq - 1 ? -1 : tokens[static_cast<size_t>(r + 1)];

  // PyTorch first (its own process), from the same initial weights.
  const fs::path dir = fs::temp_directory_path() / ("shrink_bench_train_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::vector<StWriteTensor> wt;
  nlohmann::json order = nlohmann::json::array();
  for (const Param& p : model.params()) {
    wt.push_back({p.name, StDtype::F32, std::vector<int64_t>(p.shape.rbegin(), p.shape.rend()), p.value.data()});
    order.push_back(p.name);
  }
  if (!write_safetensors((dir / "weights.safetensors").string(), wt).ok() ||
      !write_safetensors((dir / "batch.safetensors").string(),
                         {{"tokens", StDtype::I32, {batch, seq}, tokens.data()}, {"targets", StDtype::I32, {N}, targets.data()}})
           .ok()) {
    std::fprintf(stderr, "bench_train: cannot write to %s\n", dir.c_str());
    return 1;
  }
  nlohmann::json j;
  j["config"] = {{"arch", c.arch}, {"n_embd", c.n_embd}, {"n_layer", c.n_layer}, {"n_head", c.n_head},
                 {"n_head_kv", c.n_head_kv}, {"head_dim", c.head_dim}, {"rope_theta", c.rope_theta},
                 {"rms_eps", c.rms_eps}, {"tied_embeddings", c.tied_embeddings}};
  j["param_order"] = order;
  std::ofstream(dir / "case.json") << j.dump();
  // The script: --script, else tests/torch/ of the checkout this source is in (__FILE__, made absolute
  // from the binary's folder when the compiler saw a relative path), else above the binary's folder.
  if (script.empty()) {
    const fs::path exe_dir = fs::read_symlink("/proc/self/exe").parent_path();
    const fs::path rel = fs::path("tests") / "torch" / "train_bench.py";
    for (const fs::path& root : {fs::path(__FILE__).parent_path().parent_path(),
                                 exe_dir / fs::path(__FILE__).parent_path().parent_path(), exe_dir.parent_path(),
                                 exe_dir.parent_path().parent_path()})
      if (fs::exists(root / rel)) {
        script = fs::absolute(root / rel);
        break;
      }
  }
  const std::string cmd = "/usr/bin/python3 " + shell_quote(script.string()) + " " + shell_quote(dir.string()) + " " +
                          std::to_string(threads) + " " + std::to_string(warm) + " " + std::to_string(steps);
  std::string torch_out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    while (fgets(buf, sizeof buf, p)) torch_out += buf;
    pclose(p);
  }
  fs::remove_all(dir);

  // shrink.
  AdamWOptions ao;
  ao.beta2 = 0.95;
  ao.weight_decay = 0.0;
  AdamW opt(ao);
  std::vector<float> logits, dlogits;
  double loss = 0;
  auto step = [&] {
    model.zero_grad();
    (void)model.forward(tokens, batch, seq, logits);
    loss = cross_entropy(logits, targets, c.n_vocab, dlogits).total;
    (void)model.backward(dlogits);
    clip_grad_norm(model.params(), 1.0);
    opt.step(model.params(), 1e-3);
  };
  for (int i = 0; i < warm; ++i) step();
  const auto t0 = Clock::now();
  const double c0 = cpu_seconds();
  for (int i = 0; i < steps; ++i) step();
  const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
  const double dc = cpu_seconds() - c0;
  const double shrink_tps = static_cast<double>(N) * steps / dt;
  const double n_trained = static_cast<double>(N) * steps;

  std::printf("model: %lld layers, n_embd %lld, n_ff %lld, %lld heads (%lld kv), vocab %lld, %.2fM parameters\n",
              static_cast<long long>(c.n_layer), static_cast<long long>(c.n_embd), static_cast<long long>(c.n_ff),
              static_cast<long long>(c.n_head), static_cast<long long>(c.n_head_kv), static_cast<long long>(c.n_vocab),
              static_cast<double>(model.n_params()) / 1e6);
  std::printf("batch %lld x seq %lld, %d threads, %d steps after %d warmup\n", static_cast<long long>(batch),
              static_cast<long long>(seq), threads, steps, warm);
  std::printf("shrink : %9.0f tokens/s wall, %9.0f tokens per CPU-second  (final loss %.4f, peak RSS %.0f MB)\n",
              shrink_tps, n_trained / dc, loss, peak_rss_mb());
  try {
    auto t = nlohmann::json::parse(torch_out);
    const double torch_tps = t["tokens_per_s"].get<double>();
    const double torch_cpu = t["cpu_seconds"].get<double>();
    std::printf("pytorch: %9.0f tokens/s wall, %9.0f tokens per CPU-second  (final loss %.4f, peak RSS %.0f MB, %d threads, BLAS %s)\n",
                torch_tps, n_trained / torch_cpu, t["final_loss"].get<double>(), t["peak_rss_mb"].get<double>(),
                t["threads"].get<int>(), t["blas"].get<std::string>().c_str());
    std::printf("ratio shrink / pytorch: %.2fx wall, %.2fx per CPU-second\n", shrink_tps / torch_tps, torch_cpu / dc);
  } catch (const std::exception&) {
    std::printf("pytorch: not measured (%s)\n", torch_out.empty() ? "no output" : torch_out.c_str());
  }
  return 0;
}
