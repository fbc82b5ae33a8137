// One-token decoding steps (llama_forward with one token) read packed copies of the weights
// (model/matmul.cc, kernels/gemv_packed.h). They must give the logits the same steps give with
// the weights read in place, bit for bit, for each packable type, while matrices that do not
// fit a packed layout (here the 267-row output) keep the in-place path.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "kernels/gemv_packed.h"
#include "kernels/kernels.h"
#include "model/llama_model.h"
#include "model/model_source.h"
#include "model/synthetic.h"
#include "quantizer/quantize_model.h"
#include "tests/test_support.h"

namespace {

using namespace shrink;
using namespace shrink::test;

// Prompt of 6 tokens in one pass, then 5 steps of one token; all logits.
std::vector<float> decode(const LlamaModel& model) {
  const std::vector<int32_t> ids = {1, 40, 7, 99, 180, 3, 250, 17, 64, 128, 5};
  KvCache cache = make_kv_cache(model, static_cast<int64_t>(ids.size()));
  std::vector<float> all, step;
  REQUIRE(llama_forward(model, cache, std::span<const int32_t>(ids.data(), 6), step).ok());
  all = step;
  for (size_t i = 6; i < ids.size(); ++i) {
    REQUIRE(llama_forward(model, cache, std::span<const int32_t>(ids.data() + i, 1), step).ok());
    all.insert(all.end(), step.begin(), step.end());
  }
  return all;
}

std::vector<WeightMatrix*> matrices(LlamaModel& m) {
  std::vector<WeightMatrix*> out = {&m.output};
  for (LlamaLayer& l : m.layers)
    for (WeightMatrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_gate, &l.ffn_up, &l.ffn_down}) out.push_back(w);
  return out;
}

TEST_CASE("one-token steps on packed weights equal the same steps on the weights in place", "[model][gemv]") {
  if (!kernels::gemv_packed_preferred())
    WARN("no AVX-512 VNNI (or SHRINK_FORCE_REF=1): one-token steps read the weights in place; checking that only");
  TempDir tmp;
  const ModelSource gen = make_synthetic_model(synthetic_config(), 5);
  for (const char* mix : {"q8_0", "q4_0", "q4_k_s"}) {
    QuantizeOptions q;
    q.plan.mix = mix;
    q.plan.overrides.pure = true;  // every matrix in the one type
    q.algo = QuantAlgo::kGgml;
    q.output = (tmp / (std::string(mix) + ".gguf")).string();
    REQUIRE(quantize_model(gen, q).ok());
    auto src = open_model(q.output);
    REQUIRE(src.ok());
    auto packed = load_llama_model(*src);
    auto plain = load_llama_model(*src);
    REQUIRE(packed.ok());
    REQUIRE(plain.ok());
    int packable = 0;
    for (WeightMatrix* w : matrices(*plain)) {
      packable += w->packed != nullptr;
      w->packed = nullptr;  // this copy reads every matrix in place
    }
    // wq, wk, wv, wo, gate, up, down of each layer fit 16-row panels; the 267-row output does not.
    CHECK(packable == 7 * static_cast<int>(plain->layers.size()));
    CHECK(packed->output.packed == nullptr);

    const std::vector<float> a = decode(*packed), b = decode(*plain);
    REQUIRE(a.size() == b.size());
    INFO(mix);
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    // The packed copies exist only where they are used: after one-token steps, on these CPUs.
    const WeightMatrix& down = packed->layers[0].ffn_down;
    CHECK((down.packed->matrix.bytes == down.row_bytes * static_cast<size_t>(down.n_rows)) ==
          kernels::gemv_packed_preferred());

    // A copy of the model whose matrices get other data (as tests and exporters do) shares the
    // packed pointers but must not read them: here F32 weights of the same values.
    LlamaModel f32 = load_llama_model(*src).value();
    for (WeightMatrix* w : matrices(f32)) {
      if (w->packed == nullptr) continue;
      auto buf = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(w->n_rows * w->n_cols) * sizeof(float));
      kernels::dequantize_rows(w->type, w->data, reinterpret_cast<float*>(buf->data()), w->n_rows, w->n_cols);
      f32.owned.push_back(buf);
      w->type = TypeId::F32;
      w->row_bytes = static_cast<size_t>(w->n_cols) * sizeof(float);
      w->data = buf->data();
      CHECK_FALSE(w->packed_matches());
    }
    const std::vector<float> c = decode(f32);  // would abort packing F32 or read stale panels
    REQUIRE(c.size() == a.size());
    CHECK(std::memcmp(c.data(), a.data(), a.size() * sizeof(float)) != 0);  // F32 products differ
  }
}

}  // namespace
