// `shrink export --to onnx` against ONNX Runtime: the exported decoder, run by onnxruntime-node
// 1.30 on the CPU (tests/interop/ort_logits.mjs: a prompt pass, then one token per step feeding
// present.* back as past_key_values.*), gives the logits of shrink's own llama_forward with an
// F32 KV cache (which agrees with llama.cpp, tests/test_eval_llamacpp.cc).
//
// Bounds:
//  - F32 weights: both sides compute the same float products in different summation orders (and
//    ORT's Cos/Sin vs libm); 1e-4 max-abs on logits of magnitude ~10.
//  - 4-bit (8-bit) from a Q4_0 (Q8_0) GGUF (ggml's blocks copied into MatMulNBits exactly, zero
//    point 8 (128)): ORT's CPU kernel at accuracy_level 0 multiplies F32 activations by the
//    dequantized weights, so it
//    equals shrink running the same GGUF with its weights dequantized to F32, within 1e-4. shrink
//    running the GGUF natively quantizes every activation row to Q8_0 first (ggml's vec_dot_type
//    for Q4_0); that rounding is the whole remaining gap, so ORT vs native is bounded by 1e-4 plus
//    shrink's own native-vs-dequantized gap. That gap is measured at 0.34 max-abs on these 40 tokens
//    (logits up to ~15; test_eval_llamacpp.cc sees the same activation rounding move single
//    log-probabilities by ~0.2) and is bounded by 1.0, well under what a wrong weight mapping gives
//    (RTN 4-bit vs F32 weights moves the logits by ~6). Q8_0 weights: the same argument; gap measured
//    0.21, bounded by 0.5.
//  - RTN 4/8-bit from F32 weights: ORT equals shrink running the weights the MatMulNBits tensors
//    stand for (our reading of the layout: codes low nibble first, zero points packed alike),
//    within 1e-4, so ORT reads the layout as we wrote it.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "formats/onnx_model.h"
#include "kernels/kernels.h"
#include "model/llama_model.h"
#include "model/model_source.h"
#include "model/onnx_export.h"
#include "model/synthetic.h"
#include "model/tokenizer.h"
#include "tests/test_support.h"

namespace {

using namespace shrink;
using namespace shrink::test;
using nlohmann::json;

constexpr int kPrompt = 32;  // tokens in the first pass; the rest are decoded one at a time
constexpr int kSteps = 8;

fs::path stories_bin() {
  return require(data_dir() / "models" / "stories260K" / "stories260K.bin", "shared test data (stories260K.bin)");
}
fs::path stories_tok() { return require(data_dir() / "models" / "stories260K" / "tok512.bin", "tok512.bin"); }

void require_ort() {
  require(interop_dir() / "node_modules" / "onnxruntime-node", "npm onnxruntime-node (run setup.sh)");
  if (run("node --version").exit_code != 0) skip_program("node is not on PATH");
}

struct Logits {
  std::vector<float> values;  // (n_tokens, vocab)
  json info;
};

// ONNX Runtime's logits for `ids`: the first kPrompt in one pass, the rest one by one.
Logits ort_logits(const fs::path& model, const std::vector<int32_t>& ids, const TempDir& tmp, int pad = 0) {
  const fs::path ids_file = tmp / "ids.json", out = tmp / "ort_logits.f32";
  {
    const std::string text = json(ids).dump();
    write_bytes(ids_file, std::vector<uint8_t>(text.begin(), text.end()));
  }
  std::string cmd = "node " + quote((interop_dir() / "ort_logits.mjs").string()) + " " + quote(model.string()) + " " +
                    quote(ids_file.string()) + " " + std::to_string(kPrompt) + " " + quote(out.string());
  if (pad > 0) cmd += " --pad " + std::to_string(pad);
  const RunResult r = run(cmd);
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  Logits l;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line[0] == '{') l.info = json::parse(line);
  const std::vector<uint8_t> bytes = read_bytes(out);
  l.values.resize(bytes.size() / sizeof(float));
  std::memcpy(l.values.data(), bytes.data(), l.values.size() * sizeof(float));
  return l;
}

// shrink's logits for the same schedule, F32 KV cache.
std::vector<float> shrink_logits(const LlamaModel& model, const std::vector<int32_t>& ids) {
  KvCache cache = make_kv_cache(model, static_cast<int64_t>(ids.size()), KvCacheType::F32);
  std::vector<float> all, step;
  REQUIRE(llama_forward(model, cache, std::span<const int32_t>(ids.data(), kPrompt), step).ok());
  all = step;
  for (size_t i = kPrompt; i < ids.size(); ++i) {
    REQUIRE(llama_forward(model, cache, std::span<const int32_t>(ids.data() + i, 1), step).ok());
    all.insert(all.end(), step.begin(), step.end());
  }
  return all;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(std::isfinite(a[i]));
    m = std::max(m, std::fabs(a[i] - b[i]));
  }
  return m;
}

// Replaces each weight matrix (the token embedding included) for which `f` returns values by those F32 values.
void replace_matrices(LlamaModel& m, const std::function<std::vector<float>(const WeightMatrix&)>& f) {
  auto one = [&](WeightMatrix& w) {
    std::vector<float> v = f(w);
    if (v.empty()) return;
    auto buf = std::make_shared<std::vector<uint8_t>>(v.size() * sizeof(float));
    std::memcpy(buf->data(), v.data(), buf->size());
    m.owned.push_back(buf);
    w.type = TypeId::F32;
    w.row_bytes = static_cast<size_t>(w.n_cols) * sizeof(float);
    w.data = buf->data();
  };
  for (LlamaLayer& L : m.layers)
    for (WeightMatrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) one(*w);
  one(m.output);
  one(m.token_embd);
}

std::vector<float> rows_f32(const WeightMatrix& w) {
  std::vector<float> v(static_cast<size_t>(w.n_rows * w.n_cols));
  kernels::dequantize_rows(w.type, w.data, v.data(), w.n_rows, w.n_cols);
  return v;
}

LlamaModel load(const std::string& path, const std::string& tokenizer = "") {
  OpenOptions oo;
  oo.tokenizer = tokenizer;
  auto src = open_model(path, oo);
  INFO((src.ok() ? "" : src.error().message));
  REQUIRE(src.ok());
  auto m = load_llama_model(*src);
  INFO((m.ok() ? "" : m.error().message));
  REQUIRE(m.ok());
  return std::move(m).value();
}

// BOS + a TinyStories-like sentence, cut to kPrompt + kSteps tokens.
std::vector<int32_t> story_ids(const LlamaModel& m) {
  auto tok = Tokenizer::from_vocab(m.vocab);
  REQUIRE(tok.ok());
  std::vector<int32_t> ids = tok->encode(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her "
      "big red ball and her friend Tom, who liked to run and jump.",
      true, false);
  REQUIRE(ids.size() >= static_cast<size_t>(kPrompt + kSteps));
  ids.resize(kPrompt + kSteps);
  return ids;
}

uint64_t file_size_with_data(const fs::path& p) {
  uint64_t n = fs::file_size(p);
  if (fs::exists(p.string() + ".data")) n += fs::file_size(p.string() + ".data");
  return n;
}

}  // namespace

TEST_CASE("ggml Q4_0 and Q8_0 blocks map to MatMulNBits exactly (scale d, default zero point)", "[onnx_export]") {
  // Oracle: shrink's scalar dequantizers, byte-checked against ggml's to_float.
  std::mt19937 rng(seed());
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t n_rows = 3, n_cols = 96;
  std::vector<float> x(static_cast<size_t>(n_rows * n_cols));
  for (float& v : x) v = nd(rng);
  x[5] = 0;  // an exact zero and a huge value in another block
  x[40] = 50.0f;
  for (const auto& [type, bits] : std::vector<std::pair<TypeId, int>>{{TypeId::Q4_0, 4}, {TypeId::Q8_0, 8}}) {
    std::vector<uint8_t> q(row_size(type, n_cols) * n_rows);
    kernels::quantize_rows(type, x.data(), q.data(), n_rows, n_cols);
    std::vector<float> ggml(x.size());
    kernels::dequantize_rows(type, q.data(), ggml.data(), n_rows, n_cols);
    const NBitsMatrix m =
        type == TypeId::Q4_0 ? q4_0_to_nbits(q.data(), n_rows, n_cols) : q8_0_to_nbits(q.data(), n_rows, n_cols);
    CHECK(m.zero_points.empty());
    CHECK(m.packed.size() == static_cast<size_t>(n_rows * n_cols * bits / 8));
    const std::vector<float> back = dequantize_nbits(m, n_rows, n_cols, bits, 32);
    for (size_t i = 0; i < x.size(); ++i) REQUIRE(back[i] == ggml[i]);
  }
}

TEST_CASE("export options are checked", "[onnx_export]") {
  LlamaConfig c = synthetic_config();
  c.n_layer = 1;
  ModelSource src = make_synthetic_model(c, 1);
  auto model = load_llama_model(src);
  REQUIRE(model.ok());
  OnnxExportOptions o;
  o.bits = 3;
  auto r = export_llama_onnx(*model, o);
  REQUIRE(!r.ok());
  CHECK(r.error().message.find("bits") != std::string::npos);
  o.bits = 4;
  o.block = 48;
  r = export_llama_onnx(*model, o);
  REQUIRE(!r.ok());
  CHECK(r.error().message.find("48") != std::string::npos);
  o.block = 32;
  o.opset = 12;
  REQUIRE(!export_llama_onnx(*model, o).ok());

  // The command: a bad option or a missing model is one error line and leaves an existing file alone.
  TempDir tmp;
  const fs::path out = tmp / "keep.onnx";
  write_bytes(out, {1, 2, 3});
  RunResult rr = run_shrink("export --to onnx " + quote((tmp / "missing.gguf").string()) + " -o " +
                            quote(out.string()));
  CHECK(rr.exit_code != 0);
  CHECK(rr.out.find("shrink: error:") != std::string::npos);
  CHECK(rr.out.find("missing.gguf") != std::string::npos);
  rr = run_shrink("export --to onnx " + quote((tmp / "missing.gguf").string()) + " -o " + quote(out.string()) +
                  " --bits 3");
  CHECK(rr.exit_code != 0);
  CHECK(rr.out.find("--bits") != std::string::npos);
  rr = run_shrink("export --to tflite x -o " + quote(out.string()));
  CHECK(rr.exit_code != 0);
  CHECK(read_bytes(out) == std::vector<uint8_t>{1, 2, 3});
  CHECK(fs::directory_iterator(tmp.path) != fs::directory_iterator());
  size_t n_files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(tmp.path)) ++n_files;
  CHECK(n_files == 1);  // no temp file left behind
}

TEST_CASE("stories260K F32 export: ONNX Runtime's logits equal llama_forward's", "[data][onnx_export]") {
  require_ort();
  const fs::path bin = stories_bin(), tok = stories_tok();
  TempDir tmp;
  const fs::path onnx = tmp / "stories-f32.onnx";
  const RunResult r = run_shrink("export --to onnx " + quote(bin.string()) + " --tokenizer " + quote(tok.string()) +
                                 " -o " + quote(onnx.string()));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  WARN("stories260K F32 ONNX: " << file_size_with_data(onnx) << " bytes");

  const LlamaModel model = load(bin.string(), tok.string());
  const std::vector<int32_t> ids = story_ids(model);
  const std::vector<float> ref = shrink_logits(model, ids);

  const Logits ort = ort_logits(onnx, ids, tmp);
  CHECK(ort.info["n_tokens"] == kPrompt + kSteps);
  CHECK(ort.info["vocab"] == 512);
  CHECK(ort.info["present_shape"] == json::array({1, 4, kPrompt + kSteps, 8}));  // (B, n_head_kv, T, head_dim)
  const float d = max_abs_diff(ort.values, ref);
  WARN("F32: max |ORT - shrink| = " << d);
  CHECK(d <= 1e-4f);

  // Weights in a .data sidecar: ONNX Runtime reads the same numbers.
  const fs::path ext = tmp / "stories-f32-ext.onnx";
  const RunResult re = run_shrink("export --to onnx " + quote(bin.string()) + " --tokenizer " + quote(tok.string()) +
                                  " -o " + quote(ext.string()) + " --external always");
  INFO(re.out);
  REQUIRE(re.exit_code == 0);
  CHECK(fs::file_size(ext.string() + ".data") > fs::file_size(ext));
  CHECK(ort_logits(ext, ids, tmp).values == ort.values);

  // Batched with a left-padded row: the mask and position_ids keep padding out of its logits.
  const Logits padded = ort_logits(onnx, ids, tmp, /*pad=*/5);
  const float dp = max_abs_diff(padded.values, ref);
  WARN("F32, left-padded batch row: max |ORT - shrink| = " << dp);
  CHECK(dp <= 1e-4f);
}

TEST_CASE("stories260K Q4_0 / Q8_0 GGUF to 4- / 8-bit MatMulNBits: exact weights", "[data][onnx_export]") {
  require_ort();
  const fs::path bin = stories_bin(), tok = stories_tok();
  TempDir tmp;
  for (const auto& [type, bits, gap_bound] :
       std::vector<std::tuple<std::string, int, float>>{{"q4_0", 4, 1.0f}, {"q8_0", 8, 0.5f}}) {
    const fs::path gguf = tmp / ("stories-" + type + ".gguf"), onnx = tmp / ("stories-" + type + ".onnx");
    // --pure: every matrix whose rows fit 32-weight blocks gets the type (the tied output included);
    // the 172-wide ffn_down rows fit no block and stay F16, exported as F32.
    RunResult r = run_shrink("quantize " + quote(bin.string()) + " --tokenizer " + quote(tok.string()) + " -o " +
                             quote(gguf.string()) + " --type " + type + " --pure --algo ggml");
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    r = run_shrink("export --to onnx " + quote(gguf.string()) + " -o " + quote(onnx.string()) + " --bits " +
                   std::to_string(bits) + " --block 32");
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    WARN("stories260K " << type << " -> " << bits << "-bit ONNX: " << file_size_with_data(onnx) << " bytes");

    const LlamaModel native = load(gguf.string());
    OnnxExportReport rep;
    OnnxExportOptions o;
    o.bits = bits;
    REQUIRE(export_llama_onnx(native, o, &rep).ok());
    int exact = 0;
    for (const auto& m : rep.matrices) exact += m.encoding == "matmulnbits-" + type + "-exact";
    CHECK(exact == 5 * 6 + 1);  // q, k, v, o, gate, up per layer + the output projection
    // The token embedding (tied to the output projection) as GatherBlockQuantized with the same blocks.
    REQUIRE(!rep.matrices.empty());
    CHECK(rep.matrices[0].name == "token_embd.weight");
    CHECK(rep.matrices[0].encoding == "gatherblockquantized-" + type + "-exact");
    // The same graph with that node replaced by a plain Gather over the table its blocks stand for
    // (dequantize_nbits: (code - zero point) * scale, checked against ggml above): ORT's logits must be
    // bit-identical, so quantizing the embedding moved nothing but the bytes.
    const fs::path f32_embd = tmp / ("stories-" + type + "-f32-embedding.onnx");
    {
      auto file = read_onnx(onnx);
      REQUIRE(file.ok());
      onnx::GraphProto* g = file->proto.mutable_graph();
      int gbq = 0, gather_f32 = 0;
      for (auto& n : *g->mutable_node()) {
        gather_f32 += n.op_type() == "Gather" && n.input(0) == "model.embed_tokens.weight";
        if (n.op_type() != "GatherBlockQuantized") continue;
        ++gbq;
        REQUIRE(n.input_size() == 3);  // ggml's blocks: the default zero point, none stored
        NBitsMatrix m;
        int64_t V = 0, d = 0;
        for (const auto& t : g->initializer()) {
          if (t.name() == n.input(0)) {
            m.packed.assign(t.raw_data().begin(), t.raw_data().end());
            V = t.dims(0);
            d = t.dims(1) * 8 / bits;
          }
          if (t.name() == n.input(2)) {
            auto sc = tensor_to_f32(t);
            REQUIRE(sc.ok());
            m.scales = *sc;
          }
        }
        REQUIRE(V == 512);
        REQUIRE(d == 64);
        *g->add_initializer() = onnx::TensorProto();
        onnx::TensorProto& t = *g->mutable_initializer(g->initializer_size() - 1);
        const std::vector<float> table = dequantize_nbits(m, V, d, bits, 32);
        t.set_name("embedding_f32");
        t.set_data_type(onnx::TensorProto::FLOAT);
        t.add_dims(V);
        t.add_dims(d);
        t.set_raw_data(table.data(), table.size() * sizeof(float));
        const std::string ids_input = n.input(1);
        n.clear_attribute();
        n.clear_input();
        n.clear_domain();
        n.set_op_type("Gather");
        n.add_input("embedding_f32");
        n.add_input(ids_input);
      }
      CHECK(gbq == 1);
      CHECK(gather_f32 == 0);
      REQUIRE(write_onnx(file->proto, f32_embd).ok());
    }

    LlamaModel dequantized = load(gguf.string());
    replace_matrices(dequantized, [](const WeightMatrix& w) { return rows_f32(w); });
    const std::vector<int32_t> ids = story_ids(native);
    const Logits ort = ort_logits(onnx, ids, tmp);
    const std::vector<float> ref_deq = shrink_logits(dequantized, ids);
    const std::vector<float> ref_native = shrink_logits(native, ids);

    CHECK(ort_logits(f32_embd, ids, tmp).values == ort.values);
    const float d_deq = max_abs_diff(ort.values, ref_deq);
    const float d_native = max_abs_diff(ort.values, ref_native);
    const float gap = max_abs_diff(ref_native, ref_deq);  // shrink's Q8_0 activation rounding alone
    WARN(type << ": max |ORT - shrink(dequantized weights)| = " << d_deq << ", max |ORT - shrink(native " << type
              << ")| = " << d_native << ", shrink native vs dequantized = " << gap);
    CHECK(d_deq <= 1e-4f);
    CHECK(gap < gap_bound);
    CHECK(d_native <= gap + 1e-4f);
  }
}

TEST_CASE("stories260K RTN 4- and 8-bit export: ORT reads the MatMulNBits layout as written",
          "[data][onnx_export]") {
  require_ort();
  const fs::path bin = stories_bin(), tok = stories_tok();
  const LlamaModel model = load(bin.string(), tok.string());
  const std::vector<int32_t> ids = story_ids(model);
  const std::vector<float> ref_f32 = shrink_logits(model, ids);
  TempDir tmp;
  float err4 = 0, err8 = 0;
  for (const auto& [bits, block] : std::vector<std::pair<int, int>>{{4, 32}, {8, 32}, {4, 16}, {8, 64}}) {
    const fs::path onnx = tmp / ("stories-" + std::to_string(bits) + "-" + std::to_string(block) + ".onnx");
    const RunResult r = run_shrink("export --to onnx " + quote(bin.string()) + " --tokenizer " + quote(tok.string()) +
                                   " -o " + quote(onnx.string()) + " --bits " + std::to_string(bits) + " --block " +
                                   std::to_string(block));
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    LlamaModel emulated = load(bin.string(), tok.string());
    replace_matrices(emulated, [bits = bits, block = block](const WeightMatrix& w) {
      if (w.n_cols % block != 0) return std::vector<float>{};
      const std::vector<float> rows = rows_f32(w);
      return dequantize_nbits(quantize_nbits_rtn(rows.data(), w.n_rows, w.n_cols, bits, block), w.n_rows, w.n_cols,
                              bits, block);
    });
    const Logits ort = ort_logits(onnx, ids, tmp);
    const float d = max_abs_diff(ort.values, shrink_logits(emulated, ids));
    const float e = max_abs_diff(ort.values, ref_f32);
    WARN(bits << "-bit block " << block << ": " << file_size_with_data(onnx) << " bytes, max |ORT - shrink(same weights)| = "
              << d << ", max |ORT - F32| = " << e);
    CHECK(d <= 1e-4f);
    if (block == 32) (bits == 4 ? err4 : err8) = e;
  }
  // More bits, closer to F32 (a packing mistake would break this and the 1e-4 above).
  CHECK(err8 < err4 / 4);
}

TEST_CASE("qwen2-style GQA model with q/k/v biases: ORT equals llama_forward", "[data][onnx_export]") {
  require_ort();
  LlamaConfig c = synthetic_config();
  c.arch = "qwen2";  // NEOX (rotate-half) RoPE, exported without a row permutation
  c.qkv_bias = true;
  c.n_layer = 2;
  c.n_head = 8;
  c.n_head_kv = 2;  // groups of 4 query heads per kv head
  c.n_embd = 256;
  c.head_dim = 32;
  c.rope_theta = 1000000.0;
  c.rms_eps = 1e-6;
  ModelSource src = make_synthetic_model(c, seed());
  auto model = load_llama_model(src);
  REQUIRE(model.ok());
  std::mt19937 rng(seed());
  std::vector<int32_t> ids(kPrompt + kSteps);
  for (int32_t& id : ids) id = static_cast<int32_t>(rng() % static_cast<uint32_t>(c.n_vocab));
  TempDir tmp;
  for (int bits : {0, 8}) {
    OnnxExportOptions o;
    o.bits = bits;
    auto proto = export_llama_onnx(*model, o);
    REQUIRE(proto.ok());
    const fs::path onnx = tmp / ("qwen2-" + std::to_string(bits) + ".onnx");
    REQUIRE(write_onnx(*proto, onnx).ok());
    LlamaModel emulated = std::move(load_llama_model(src)).value();
    if (bits != 0)
      replace_matrices(emulated, [bits](const WeightMatrix& w) {
        const std::vector<float> rows = rows_f32(w);
        return dequantize_nbits(quantize_nbits_rtn(rows.data(), w.n_rows, w.n_cols, bits, 32), w.n_rows, w.n_cols,
                                bits, 32);
      });
    const Logits ort = ort_logits(onnx, ids, tmp);
    CHECK(ort.info["present_shape"] == json::array({1, 2, kPrompt + kSteps, 32}));
    const float d = max_abs_diff(ort.values, shrink_logits(emulated, ids));
    WARN("qwen2 GQA synthetic, bits " << bits << ": max |ORT - shrink| = " << d);
    CHECK(d <= 1e-4f);
  }
}
