// PyTorch parity of the distillation core: from the same initial weights, shrink's loss, every
// gradient after one step, the global gradient norm and the weights after two AdamW steps (with
// gradient accumulation over two micro-batches and clipping) equal those of an independent
// PyTorch implementation (tests/torch/llama_step.py: the Llama forward written with
// torch.nn.functional, torch autograd, clip_grad_norm_, torch.optim.AdamW).
//
// Agreement: per tensor, max |shrink - torch| / max |torch| < 1e-4 (both compute in fp32; only
// summation order differs). Needs /usr/bin/python3 with Debian's python3-torch; skips (exit 77)
// without it, except under CI.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "distill/losses.h"
#include "distill/optimizer.h"
#include "distill/train_model.h"
#include "formats/safetensors.h"
#include "tests/test_support.h"

using namespace shrink;
using namespace shrink::distill;
namespace fs = std::filesystem;

namespace {

const char* kPython = "/usr/bin/python3";

void require_torch() {
  static bool checked = false;
  if (checked) return;
  if (!fs::exists(kPython)) test::skip_program("/usr/bin/python3 (Debian python3-torch) is absent");
  auto r = test::run(std::string(kPython) + " -c 'import torch' 2>&1");
  if (r.exit_code != 0) test::skip_program("PyTorch (Debian python3-torch) is not installed: " + r.out);
  checked = true;
}

struct Case {
  const char* name;
  LlamaConfig config;
  bool kd = false;
  KdOptions kd_options;
  int64_t batch = 4, seq = 7, micro = 2;
};

LlamaConfig small_config(const char* arch, bool tied, bool bias) {
  LlamaConfig c;
  c.arch = arch;
  c.n_embd = 32;
  c.n_ff = 40;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 2;  // GQA: two query heads per kv head
  c.head_dim = 8;
  c.n_vocab = 53;
  c.n_ctx_train = 64;
  c.rope_theta = 10000.0;
  c.rms_eps = 1e-5;
  c.tied_embeddings = tied;
  c.qkv_bias = bias;
  return c;
}

std::vector<int64_t> row_major(const std::vector<int64_t>& ggml_shape) {
  return std::vector<int64_t>(ggml_shape.rbegin(), ggml_shape.rend());
}

double rel_diff(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den == 0 ? num : num / den;
}

void run_case(const Case& cs) {
  require_torch();
  INFO("case " << cs.name << "; rerun with: --rng-seed " << test::seed());
  const LlamaConfig& c = cs.config;
  auto made = TrainModel::random(c, test::seed());
  REQUIRE(made.ok());
  TrainModel model = std::move(made.value());
  std::mt19937_64 rng(test::seed() + 100);
  // Norm weights and biases away from their init values so their gradients carry signal.
  for (Param& p : model.params())
    if (!p.is_matrix()) {
      std::normal_distribution<double> d(p.name.find(".bias") != std::string::npos ? 0.0 : 1.0, 0.1);
      for (float& x : p.value) x = static_cast<float>(d(rng));
    }
  const int64_t B = cs.batch, S = cs.seq, N = B * S, V = c.n_vocab;
  std::vector<int32_t> tokens(static_cast<size_t>(N)), targets(static_cast<size_t>(N));
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(V - 1));
  for (auto& t : tokens) t = tok(rng);
  for (int64_t r = 0; r < N; ++r)  // next token; the last position of each sequence has none
    targets[static_cast<size_t>(r)] = (r % S == S - 1) ? -1 : tokens[static_cast<size_t>(r + 1)];
  std::vector<float> teacher(static_cast<size_t>(N * V));
  std::normal_distribution<double> tl(0.0, 2.0);
  for (float& x : teacher) x = static_cast<float>(tl(rng));

  test::TempDir dir;
  std::vector<StWriteTensor> wt;
  nlohmann::json order = nlohmann::json::array();
  for (const Param& p : model.params()) {
    wt.push_back({p.name, StDtype::F32, row_major(p.shape), p.value.data()});
    order.push_back(p.name);
  }
  REQUIRE(write_safetensors((dir / "weights.safetensors").string(), wt).ok());
  std::vector<StWriteTensor> bt = {{"tokens", StDtype::I32, {B, S}, tokens.data()},
                                   {"targets", StDtype::I32, {N}, targets.data()}};
  if (cs.kd) bt.push_back({"teacher_logits", StDtype::F32, {N, V}, teacher.data()});
  REQUIRE(write_safetensors((dir / "batch.safetensors").string(), bt).ok());

  AdamWOptions ao;
  ao.beta1 = 0.9;
  ao.beta2 = 0.95;
  ao.eps = 1e-6;  // large enough that its placement matters
  ao.weight_decay = 0.1;
  const std::vector<double> lrs = {3e-3, 2e-3};
  const double max_norm = 0.5;
  nlohmann::json j;
  j["config"] = {{"arch", c.arch}, {"n_embd", c.n_embd}, {"n_layer", c.n_layer}, {"n_head", c.n_head},
                 {"n_head_kv", c.n_head_kv}, {"head_dim", c.head_dim}, {"rope_theta", c.rope_theta},
                 {"rms_eps", c.rms_eps}, {"tied_embeddings", c.tied_embeddings}};
  j["param_order"] = order;
  j["temperature"] = cs.kd_options.temperature;
  j["alpha"] = cs.kd_options.alpha;
  j["lrs"] = lrs;
  j["beta1"] = ao.beta1;
  j["beta2"] = ao.beta2;
  j["eps"] = ao.eps;
  j["weight_decay"] = ao.weight_decay;
  j["max_norm"] = max_norm;
  j["micro"] = cs.micro;
  j["threads"] = 1;
  std::ofstream(dir / "case.json") << j.dump();

  auto r = test::run(std::string(kPython) + " " + test::quote((test::source_dir() / "tests/torch/llama_step.py").string()) +
                     " " + test::quote(dir.path.string()) + " " + test::quote(dir.path.string()) + " 2>&1");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);

  // shrink: the same steps.
  AdamW opt(ao);
  const int64_t mb = B / cs.micro;
  double loss0 = 0, norm0 = 0;
  std::vector<std::vector<float>> grads0;
  for (size_t step = 0; step < lrs.size(); ++step) {
    model.zero_grad();
    double total = 0;
    for (int64_t m = 0; m < cs.micro; ++m) {
      const size_t off = static_cast<size_t>(m * mb * S), rows = static_cast<size_t>(mb * S);
      std::vector<float> logits, dlogits;
      REQUIRE(model.forward(std::span(tokens).subspan(off, rows), mb, S, logits).ok());
      std::span<const int32_t> tg = std::span(targets).subspan(off, rows);
      LossValue lv = cs.kd ? kd_loss_full(logits, std::span(teacher).subspan(off * V, rows * V), tg, V, cs.kd_options, dlogits)
                           : cross_entropy(logits, tg, V, dlogits);
      total += lv.total / static_cast<double>(cs.micro);
      REQUIRE(model.backward(dlogits).ok());
    }
    scale_grads(model.params(), 1.0f / static_cast<float>(cs.micro));
    const double norm = clip_grad_norm(model.params(), max_norm);
    if (step == 0) {
      loss0 = total;
      norm0 = norm;
      for (const Param& p : model.params()) grads0.push_back(p.grad);
    }
    opt.step(model.params(), lrs[step]);
  }

  auto res = SafetensorsFile::open((dir / "result.safetensors").string());
  REQUIRE(res.ok());
  auto scalar = [&](const char* name) {
    const StTensor* t = res->find(name);
    REQUIRE(t != nullptr);
    return static_cast<double>(reinterpret_cast<const float*>(t->data)[0]);
  };
  CHECK(loss0 == Approx(scalar("loss")).epsilon(1e-5));
  CHECK(norm0 == Approx(scalar("grad_norm")).epsilon(1e-4));
  CHECK(norm0 > max_norm);  // clipping was active
  double worst_grad = 0, worst_new = 0;
  for (size_t i = 0; i < model.params().size(); ++i) {
    const Param& p = model.params()[i];
    const StTensor* g = res->find("grad." + p.name);
    const StTensor* w = res->find("new." + p.name);
    REQUIRE(g != nullptr);
    REQUIRE(w != nullptr);
    REQUIRE(g->n_elements() == p.numel());
    const double dg = rel_diff(grads0[i].data(), reinterpret_cast<const float*>(g->data), grads0[i].size());
    const double dw = rel_diff(p.value.data(), reinterpret_cast<const float*>(w->data), p.value.size());
    INFO(p.name << ": gradient " << dg << ", weights after AdamW " << dw);
    CHECK(dg < 1e-4);
    CHECK(dw < 1e-4);
    worst_grad = std::max(worst_grad, dg);
    worst_new = std::max(worst_new, dw);
  }
  WARN(cs.name << ": loss " << loss0 << ", grad norm " << norm0 << ", worst relative gradient difference "
               << worst_grad << ", worst relative weight difference " << worst_new);
}

}  // namespace

TEST_CASE("PyTorch parity: cross-entropy, GQA, untied head", "[distill][torch]") {
  run_case({"ce-gqa-untied", small_config("llama", false, false), false, {}});
}

TEST_CASE("PyTorch parity: cross-entropy, tied embeddings", "[distill][torch]") {
  run_case({"ce-tied", small_config("llama", true, false), false, {}});
}

TEST_CASE("PyTorch parity: forward-KL distillation at T = 2 mixed with CE, tied", "[distill][torch]") {
  KdOptions o;
  o.divergence = Divergence::kForwardKL;
  o.temperature = 2.0;
  o.alpha = 0.3;
  run_case({"kd-T2-tied", small_config("llama", true, false), true, o});
}

TEST_CASE("PyTorch parity: distillation at T = 0.5, qwen2 layout with q/k/v biases", "[distill][torch]") {
  KdOptions o;
  o.temperature = 0.5;
  o.alpha = 0.5;
  run_case({"kd-qwen2-bias", small_config("qwen2", false, true), true, o});
}
