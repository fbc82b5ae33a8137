// The trainable model against llama.cpp on real weights (stories260K, shared data):
//  - TrainModel::from_source() of llama.cpp's own F32 GGUF computes the same next-token
//    log-probabilities as llama.cpp (tests/interop/llama_logprobs.mjs, F32 KV cache), so the
//    training forward follows the GGUF conventions (tensor names, shapes, RoPE pairs, GQA);
//  - after a real AdamW step the student, written with to_source() + the existing GGUF writer
//    (quantize_model, F32), loads in llama.cpp and gives the log-probabilities TrainModel gives.
// [data]: needs ../shared/data and the npm node-llama-cpp runtime; skips (77) without them.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "distill/losses.h"
#include "distill/optimizer.h"
#include "distill/train_model.h"
#include "quantizer/quantize_model.h"
#include "tests/test_support.h"

using namespace shrink;
using namespace shrink::distill;
using namespace shrink::test;
using json = nlohmann::json;

namespace {

constexpr int64_t kCtx = 64;

// Per sequence, log softmax(logits_i)[token_{i+1}] for i = 0 .. seq-2 (double).
std::vector<double> next_token_logprobs(const std::vector<float>& logits, const std::vector<int32_t>& tokens,
                                        int64_t batch, int64_t seq, int64_t V) {
  std::vector<double> out;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i + 1 < seq; ++i) {
      const float* z = logits.data() + (b * seq + i) * V;
      double mx = z[0], s = 0;
      for (int64_t j = 1; j < V; ++j) mx = std::max(mx, static_cast<double>(z[j]));
      for (int64_t j = 0; j < V; ++j) s += std::exp(z[j] - mx);
      out.push_back(z[tokens[static_cast<size_t>(b * seq + i + 1)]] - mx - std::log(s));
    }
  return out;
}

// llama.cpp's log-probabilities for each model over the same token file, in model order.
std::vector<std::vector<double>> llama_logprobs(const std::vector<fs::path>& models, const fs::path& tokens_file,
                                                const TempDir& tmp) {
  std::string cmd = "node " + quote((interop_dir() / "llama_logprobs.mjs").string());
  for (const auto& m : models) cmd += " " + quote(m.string());
  cmd += " --tokens " + quote(tokens_file.string()) + " --ctx " + std::to_string(kCtx) + " --kv-type f32 2> " +
         quote((tmp / "node.log").string());
  RunResult r = run(cmd);
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  std::vector<std::vector<double>> out(models.size());
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;
    json j = json::parse(line);
    for (size_t i = 0; i < models.size(); ++i)
      if (j["model"] == models[i].string())
        for (const auto& chunk : j["logprobs"])
          for (const auto& v : chunk) out[i].push_back(v.get<double>());
  }
  return out;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace

TEST_CASE("TrainModel forward equals llama.cpp on stories260K, and a trained student loads in llama.cpp", "[data][distill]") {
  const fs::path gguf = require(data_dir() / "reference" / "stories260K-f32.llamacpp.gguf",
                                "shared test data (reference/stories260K-f32.llamacpp.gguf)");
  require(interop_dir() / "node_modules" / "node-llama-cpp" / "package.json", "npm package node-llama-cpp");
  if (run("node --version").exit_code != 0) skip_program("node (v20+) not found on PATH");

  auto src = open_model(gguf.string());
  REQUIRE(src.ok());
  auto made = TrainModel::from_source(*src);
  REQUIRE(made.ok());
  TrainModel model = std::move(made.value());
  // data/README.md: 260,032 parameters with the shared classifier; llama.cpp's converter writes
  // it as a separate output.weight (512 x 64).
  CHECK(model.n_params() == 260032 + (model.config().tied_embeddings ? 0 : 512 * 64));
  const int64_t V = model.config().n_vocab, B = 2, S = kCtx;

  // Two chunks of kCtx random tokens, each starting with BOS as llama_logprobs.mjs evaluates them.
  std::mt19937_64 rng(seed());
  std::uniform_int_distribution<int32_t> tok(3, static_cast<int32_t>(V - 1));
  std::vector<int32_t> tokens(static_cast<size_t>(B * S));
  for (auto& t : tokens) t = tok(rng);
  const int32_t bos = static_cast<int32_t>(src->vocab.bos_id.value_or(1));
  tokens[0] = tokens[static_cast<size_t>(S)] = bos;
  TempDir tmp;
  std::ofstream(tmp / "tokens.json") << json(tokens).dump();

  std::vector<float> logits;
  REQUIRE(model.forward(tokens, B, S, logits).ok());
  const auto ours = next_token_logprobs(logits, tokens, B, S, V);

  // One AdamW step on next-token cross-entropy, then the student written as an F32 GGUF.
  std::vector<int32_t> targets(tokens.size());
  for (size_t r = 0; r < tokens.size(); ++r) targets[r] = (r % S == S - 1) ? -1 : tokens[r + 1];
  std::vector<float> dlogits;
  const double loss_before = cross_entropy(logits, targets, V, dlogits).total;
  model.zero_grad();
  REQUIRE(model.backward(dlogits).ok());
  AdamW opt;
  opt.step(model.params(), 1e-2);
  REQUIRE(model.forward(tokens, B, S, logits).ok());
  const double loss_after = cross_entropy(logits, targets, V, dlogits).total;
  CHECK(loss_after < loss_before);  // a step down the gradient lowers the loss on its own batch
  const auto ours_trained = next_token_logprobs(logits, tokens, B, S, V);

  QuantizeOptions qo;
  qo.plan.mix = "f32";
  qo.output = (tmp / "student.gguf").string();
  const ModelSource student = model.to_source(src->vocab, "stories260K-student");
  auto q = quantize_model(student, qo);
  INFO((q.ok() ? std::string() : q.error().message));
  REQUIRE(q.ok());

  const auto theirs = llama_logprobs({gguf, tmp / "student.gguf"}, tmp / "tokens.json", tmp);
  REQUIRE(theirs[0].size() == ours.size());
  REQUIRE(theirs[1].size() == ours.size());
  const double d0 = max_abs_diff(ours, theirs[0]), d1 = max_abs_diff(ours_trained, theirs[1]);
  const double moved = max_abs_diff(ours, ours_trained);
  WARN("max |logprob difference| vs llama.cpp: source " << d0 << ", trained student " << d1
                                                        << "; the step moved log-probs by up to " << moved
                                                        << "; CE " << loss_before << " -> " << loss_after);
  CHECK(d0 < 1e-4);
  CHECK(d1 < 1e-4);
  CHECK(moved > 100 * d1);  // the comparison sees the trained weights, not the source's
}

TEST_CASE("from_llama and from_source read the same parameters (F32 and Q8_0 GGUF from llama.cpp)", "[data][distill]") {
  for (const char* file : {"stories260K-f32.llamacpp.gguf", "stories260K-q8_0.llamacpp.gguf"}) {
    INFO(file);
    const fs::path gguf = require(data_dir() / "reference" / file, std::string("shared test data (reference/") + file + ")");
    auto src = open_model(gguf.string());
    REQUIRE(src.ok());
    auto a = TrainModel::from_source(*src);
    REQUIRE(a.ok());
    auto loaded = load_llama_model(*src);
    REQUIRE(loaded.ok());
    auto b = TrainModel::from_llama(*loaded);
    REQUIRE(b.ok());
    REQUIRE(a->params().size() == b->params().size());
    for (size_t i = 0; i < a->params().size(); ++i) {
      INFO(a->params()[i].name);
      CHECK(a->params()[i].name == b->params()[i].name);
      CHECK(a->params()[i].value == b->params()[i].value);
    }
    // Q8_0 rows dequantize to at most 256 distinct values per 32-weight block: not the F32 file's values.
    if (std::string(file).find("q8_0") != std::string::npos) {
      auto f32 = open_model((data_dir() / "reference" / "stories260K-f32.llamacpp.gguf").string());
      REQUIRE(f32.ok());
      auto c = TrainModel::from_source(*f32);
      REQUIRE(c.ok());
      const Param* q = a->find("blk.0.attn_q.weight");
      const Param* f = c->find("blk.0.attn_q.weight");
      REQUIRE(q != nullptr);
      REQUIRE(f != nullptr);
      double max_err = 0, max_w = 0;
      for (size_t j = 0; j < f->value.size(); ++j) {
        max_err = std::max(max_err, static_cast<double>(std::abs(q->value[j] - f->value[j])));
        max_w = std::max(max_w, static_cast<double>(std::abs(f->value[j])));
      }
      CHECK(max_err > 0);
      CHECK(max_err < max_w / 127);  // Q8_0: error at most half a step of max|block| / 127
    }
  }
}
