// Proof of value of distillation, small enough for CI: a real trained teacher (stories260K,
// 5 layers) gives a 3-layer student (its 2 least influential blocks removed) that is trained on
// the teacher's logits; the same 3-layer architecture trained from random weights on the same
// tokens, steps, batch order and seed is the baseline. The distilled student must reach a lower
// held-out cross-entropy on the real next tokens. A third run, the pruned student trained on the
// text alone (--alpha 1), separates what the initialisation gives from what the teacher's
// logits give; it is reported, not asserted.
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/test_support.h"

using namespace shrink::test;

namespace {

struct Outcome {
  double heldout_ce = 0;
  double kld = -1;
};

Outcome final_eval(const fs::path& log) {
  Outcome o;
  std::ifstream f(log);
  std::string line;
  while (std::getline(f, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == "eval") {
      o.heldout_ce = j["loss"].get<double>();
      if (j.contains("kld")) o.kld = j["kld"].get<double>();
    }
  }
  return o;
}

}  // namespace

TEST_CASE("distilled 3-of-5-layer stories260K student beats the same student trained from scratch", "[data]") {
  const fs::path models = require(data_dir() / "models" / "stories260K", "stories260K");
  const fs::path corpus = require(data_dir() / "corpus" / "tinyshakespeare_input.txt", "tinyshakespeare");
  TempDir tmp;
  // The first 120,000 characters; the last 5% of its windows are the held-out text.
  std::ifstream in(corpus, std::ios::binary);
  std::string text(120000, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  std::ofstream(tmp / "text.txt", std::ios::binary) << text;

  const std::string common = "distill --teacher " + quote((models / "stories260K.bin").string()) + " --tokenizer " +
                             quote((models / "tok512.model").string()) + " --data " + quote((tmp / "text.txt").string()) +
                             " --seq 64 --batch 8 --steps 40 --lr 3e-3 --warmup 5 --eval-every 0 --eval-windows 32 --seed 0"
                             " --prune-layers 2 --threads 1";
  auto run_one = [&](const std::string& name, const std::string& extra) {
    const fs::path log = tmp / (name + ".log");
    RunResult r = run_shrink(common + " -o " + quote((tmp / name).string()) + " --json " + quote(log.string()) + " " + extra);
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    return final_eval(log);
  };
  const Outcome distilled = run_one("distilled", "--loss kl --temperature 2 --alpha 0.5");
  const Outcome scratch = run_one("scratch", "--from-scratch");
  const Outcome pruned_ce = run_one("pruned_ce", "--alpha 1");
  std::printf("held-out CE (nats/token) after 40 steps of 8 x 64 tokens: distilled %.4f (KLD %.4f), from scratch %.4f, "
              "pruned init + CE only %.4f\n",
              distilled.heldout_ce, distilled.kld, scratch.heldout_ce, pruned_ce.heldout_ce);
  CHECK(distilled.heldout_ce < scratch.heldout_ce);
}
