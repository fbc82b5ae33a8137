// Importers against independent references: the Hugging Face copy of stories260K (converted
// outside this project, rotate-half q/k) must import to exactly the llama2.c weights (which
// are in GGUF's interleaved order), and shrink's own HF writer must round-trip.
#include <catch2/catch.hpp>

#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "model/hf_writer.h"
#include "model/model_source.h"
#include "model/rope_layout.h"
#include "model/synthetic.h"
#include "tests/test_support.h"

using namespace shrink;
using namespace shrink::test;

namespace {

std::vector<float> values_of(const WeightTensor& t) {
  std::vector<float> v;
  Status s = t.read_f32(v);
  REQUIRE(s.ok());
  return v;
}

}  // namespace

TEST_CASE("q/k permutation: HF rotate-half <-> GGUF interleaved, by hand and round trip") {
  // 2 heads of dim 4, rows of length 1: HF order per head is [x0 x1 | y0 y1] where (x_i, y_i)
  // are RoPE pairs; GGUF interleaves them as [x0 y0 x1 y1].
  std::vector<float> hf = {0, 1, 10, 11, 100, 101, 110, 111};
  std::vector<float> gguf = permute_rows_hf_to_gguf(hf, 2, 1);
  CHECK(gguf == std::vector<float>{0, 10, 1, 11, 100, 110, 101, 111});
  CHECK(permute_rows_gguf_to_hf(gguf, 2, 1) == hf);
  std::vector<float> rows(4 * 8 * 3);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<float>(i);
  CHECK(permute_rows_gguf_to_hf(permute_rows_hf_to_gguf(rows, 4, 3), 4, 3) == rows);
}

TEST_CASE("generated model -> HF folder -> import gives back the same tensors, q/k included") {
  TempDir tmp;
  LlamaConfig c = synthetic_config();
  c.n_layer = 2;
  ModelSource gen = make_synthetic_model(c, seed());
  REQUIRE(write_hf_folder((tmp / "hf").string(), gen).ok());
  auto back = open_model((tmp / "hf").string());
  REQUIRE(back.ok());
  CHECK(back->format == "hf");
  CHECK(back->config.n_embd == c.n_embd);
  CHECK(back->config.n_head_kv == c.n_head_kv);
  CHECK(back->vocab.tokens == gen.vocab.tokens);
  REQUIRE(back->tensors.size() == gen.tensors.size());
  for (const WeightTensor& t : gen.tensors) {
    const WeightTensor* u = back->find(t.name);
    REQUIRE(u != nullptr);
    CHECK(u->shape == t.shape);
    INFO(t.name);
    CHECK(values_of(*u) == values_of(t));
  }
}

TEST_CASE("stories260K: the independent HF conversion imports to exactly the llama2.c weights") {
  fs::path hf = data_dir() / "models/stories260K-hf";
  fs::path bin = data_dir() / "models/stories260K/stories260K.bin";
  if (!fs::exists(hf) || !fs::exists(bin)) skip_program("../shared/data/models/stories260K{,-hf} not found");
  auto a = open_model(hf.string());
  REQUIRE(a.ok());
  OpenOptions o;
  o.tokenizer = (data_dir() / "models/stories260K/tok512.bin").string();
  auto b = open_model(bin.string(), o);
  REQUIRE(b.ok());
  CHECK(a->config.n_layer == 5);
  CHECK(a->config.n_head == 8);
  CHECK(a->config.n_head_kv == 4);
  CHECK(b->config.tied_embeddings);
  int compared = 0;
  for (const WeightTensor& t : b->tensors) {
    const WeightTensor* u = a->find(t.name);
    INFO(t.name);
    REQUIRE(u != nullptr);
    REQUIRE(u->shape == t.shape);
    std::vector<float> x = values_of(t), y = values_of(*u);
    // The HF copy was made independently; its q/k must come back to llama2.c's row order.
    double max_diff = 0;
    for (size_t i = 0; i < x.size(); ++i) max_diff = std::max(max_diff, double(std::fabs(x[i] - y[i])));
    CHECK(max_diff == 0.0);
    ++compared;
  }
  CHECK(compared == 2 + 9 * 5);
}

TEST_CASE("sharded and BF16 Hugging Face folders import like the single-file F32 one") {
  TempDir tmp;
  LlamaConfig c = synthetic_config();
  c.n_layer = 2;
  ModelSource gen = make_synthetic_model(c, seed());
  HfWriteOptions sharded;
  sharded.max_shard_bytes = 1 << 20;  // ~2.6 MiB of weights -> several shards + index.json
  REQUIRE(write_hf_folder((tmp / "sharded").string(), gen, sharded).ok());
  REQUIRE(fs::exists(tmp / "sharded/model.safetensors.index.json"));
  HfWriteOptions bf16;
  bf16.dtype = StDtype::BF16;
  REQUIRE(write_hf_folder((tmp / "bf16").string(), gen, bf16).ok());

  auto s = open_model((tmp / "sharded").string());
  REQUIRE(s.ok());
  auto b = open_model((tmp / "bf16").string());
  REQUIRE(b.ok());
  for (const WeightTensor& t : gen.tensors) {
    INFO(t.name);
    const WeightTensor* ts = s->find(t.name);
    const WeightTensor* tb = b->find(t.name);
    REQUIRE(ts != nullptr);
    REQUIRE(tb != nullptr);
    std::vector<float> x = values_of(t);
    CHECK(values_of(*ts) == x);
    // BF16 keeps the top 16 bits of each float, rounded to nearest even: relative error <= 2^-8.
    std::vector<float> y = values_of(*tb);
    REQUIRE(y.size() == x.size());
    CHECK(tb->source_type == TypeId::BF16);
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i)
      if (x[i] != 0) worst = std::max(worst, double(std::fabs(y[i] - x[i]) / std::fabs(x[i])));
    CHECK(worst <= 1.0 / 256);
  }
}
