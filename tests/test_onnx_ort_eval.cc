// shrink eval FLOAT.onnx --quantized Q.onnx --runtime ort: both models run in ONNX Runtime's shared
// library through its C API. Oracle: the same metrics computed here from the outputs that ONNX Runtime
// gives through its own node binding (tests/interop/ort_infer.mjs) on the same inputs. Same runtime,
// same library, same inputs, one intra-op thread on both sides: the numbers must agree to rounding.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>

#include "calibration/onnx_executor.h"
#include "tests/onnx_ort.h"
#include "tests/test_support.h"

using namespace shrink;
namespace fs = std::filesystem;

namespace {

// libonnxruntime.so.1 of the onnxruntime-node package (napi-v* folder: whichever the package has).
fs::path npm_ort_library() {
  const fs::path bin = test::interop_dir() / "node_modules" / "onnxruntime-node" / "bin";
  if (fs::is_directory(bin))
    for (const auto& d : fs::directory_iterator(bin)) {
      const fs::path so = d.path() / "linux" / "x64" / "libonnxruntime.so.1";
      if (fs::exists(so)) return so;
    }
  return {};
}

}  // namespace

TEST_CASE("eval --runtime ort equals the metrics of ONNX Runtime's own outputs (mnist static and dynamic)",
          "[data][eval]") {
  test::require_ort();
  const fs::path lib = npm_ort_library();
  if (lib.empty()) test::skip_program("libonnxruntime.so.1 in onnxruntime-node (tests/interop, run setup.sh)");
  const fs::path model = test::require(test::data_dir() / "onnx" / "mnist.onnx", "shared ONNX models");
  test::TempDir dir;
  const std::vector<std::map<std::string, OnnxTensor>> samples = test::mnist_noise_inputs(dir / "in");
  const test::OrtRun f = test::ort_run(model, samples);
  REQUIRE(f.error.empty());

  for (const std::string method : {"static", "dynamic"}) {
    SECTION(method) {
      const fs::path q = dir / (method + ".onnx");
      std::string qargs = "quantize " + test::quote(model.string()) + " -o " + test::quote(q.string()) + " --method " + method;
      if (method == "static") qargs += " --calib-random 4 --input-shape input:1x1x28x28";
      const test::RunResult qr = test::run_shrink(qargs);
      INFO(qr.out);
      REQUIRE(qr.exit_code == 0);
      const test::OrtRun qo = test::ort_run(q, samples);
      REQUIRE(qo.error.empty());
      const test::OrtMetrics m = test::ort_metrics(f, qo, "output");
      // A quantized model that equals the float one would make every check below trivial.
      REQUIRE(m.sqnr < 120.0);

      const std::string common = "eval " + test::quote(model.string()) + " --quantized " + test::quote(q.string()) +
                                 " --inputs " + test::quote((dir / "in").string()) + " --json";
      const test::RunResult er = test::run_shrink(common + " --runtime ort --ort-lib " + test::quote(lib.string()) + " 2>/dev/null");
      INFO(er.out);
      REQUIRE(er.exit_code == 0);
      const auto j = nlohmann::json::parse(er.out);
      CHECK(j["samples"] == 12);
      CHECK(j["runtime"].get<std::string>().rfind("onnxruntime 1.", 0) == 0);
      const auto& o = j["outputs"]["output"];
      INFO("shrink eval --runtime ort: " << o.dump() << "  from node ORT: sqnr " << m.sqnr << " cos " << m.cosine << " max "
                                         << m.max_abs << " top1 " << m.top1);
      CHECK(o["sqnr_db"].get<double>() == Approx(m.sqnr).margin(1e-3));
      CHECK(o["cosine"].get<double>() == Approx(m.cosine).margin(1e-7));
      CHECK(o["max_abs"].get<double>() == Approx(m.max_abs).epsilon(1e-5).margin(1e-7));
      CHECK(o["top1_agreement"].get<double>() == Approx(m.top1).margin(1e-12));

      // shrink's executor simulates the QDQ / integer ops in float: close to ORT, not equal (the bound
      // tests/test_onnx_eval.cc holds it to).
      const test::RunResult sr = test::run_shrink(common + " --runtime shrink 2>/dev/null");
      INFO(sr.out);
      REQUIRE(sr.exit_code == 0);
      const auto js = nlohmann::json::parse(sr.out);
      CHECK(js["runtime"] == "shrink");
      const auto& so = js["outputs"]["output"];
      CHECK(so["sqnr_db"].get<double>() == Approx(m.sqnr).margin(0.3));
      CHECK(so["cosine"].get<double>() == Approx(m.cosine).margin(1e-3));
      CHECK(so["top1_agreement"].get<double>() == Approx(m.top1).margin(1.0 / 12 + 1e-9));
    }
  }
}

TEST_CASE("eval --runtime ort with a missing or invalid ONNX Runtime library fails with one line", "[eval]") {
  test::TempDir dir;
  // A one-node Identity graph (float[4]) written here keeps this case free of the shared data: the
  // command reads it, then fails on the library before running anything.
  const fs::path model = dir / "m.onnx";
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(17);
  auto* g = m.mutable_graph();
  g->set_name("id");
  auto* n = g->add_node();
  n->set_op_type("Identity");
  n->add_input("x");
  n->add_output("y");
  for (auto* vi : {g->add_input(), g->add_output()}) {
    vi->set_name(vi == &g->input(0) ? "x" : "y");
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    tt->mutable_shape()->add_dim()->set_dim_value(4);
  }
  const std::string bytes = m.SerializeAsString();
  test::write_bytes(model, std::vector<uint8_t>(bytes.begin(), bytes.end()));
  const std::string base = "eval " + test::quote(model.string()) + " --quantized " + test::quote(model.string()) + " --random 1";

  auto one_line = [](const std::string& s) {
    return s.find('\n') == s.size() - 1 && s.rfind("shrink: error: ", 0) == 0;
  };
  // A path that does not exist.
  const fs::path missing = dir / "no_such_libonnxruntime.so.1";
  test::RunResult r = test::run_shrink(base + " --runtime ort --ort-lib " + test::quote(missing.string()));
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK(one_line(r.out));
  CHECK(r.out.find(missing.string()) != std::string::npos);
  // A file that is not a shared library.
  const fs::path bogus = dir / "libonnxruntime.so.1";
  test::write_bytes(bogus, {'n', 'o', 't', ' ', 'E', 'L', 'F', '\n'});
  r = test::run_shrink(base + " --ort-lib " + test::quote(bogus.string()));
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK(one_line(r.out));
  CHECK(r.out.find(bogus.string()) != std::string::npos);
  // The same through the environment variable, with the default runtime.
  setenv("SHRINK_ORT_LIB", missing.c_str(), 1);
  r = test::run_shrink(base);
  unsetenv("SHRINK_ORT_LIB");
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK(one_line(r.out));
  CHECK(r.out.find("SHRINK_ORT_LIB") != std::string::npos);
  // An unknown runtime name is refused by the option parser.
  r = test::run_shrink(base + " --runtime onnx");
  CHECK(r.exit_code != 0);
}
