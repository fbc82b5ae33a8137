// shrink eval FLOAT.onnx --quantized Q.onnx: its per-output SQNR / cosine / max-abs / top-1 numbers
// against the same metrics computed here, independently, from ONNX Runtime's outputs of both models.
#include <catch2/catch.hpp>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "calibration/onnx_executor.h"
#include "tests/onnx_ort.h"
#include "tests/test_support.h"

using namespace shrink;
namespace fs = std::filesystem;

TEST_CASE("eval of a static-quantized mnist agrees with metrics from ONNX Runtime's outputs", "[data][eval]") {
  test::require_ort();
  const fs::path model = test::require(test::data_dir() / "onnx" / "mnist.onnx", "shared ONNX models");
  test::TempDir dir;
  const fs::path q = dir / "q.onnx";
  const test::RunResult qr = test::run_shrink("quantize " + test::quote(model.string()) + " -o " + test::quote(q.string()) +
                                              " --method static --calib-random 4 --input-shape input:1x1x28x28");
  INFO(qr.out);
  REQUIRE(qr.exit_code == 0);
  const std::vector<std::map<std::string, OnnxTensor>> samples = test::mnist_noise_inputs(dir / "in");
  const test::RunResult er = test::run_shrink("eval " + test::quote(model.string()) + " --quantized " + test::quote(q.string()) +
                                              " --inputs " + test::quote((dir / "in").string()) + " --per-node --json 2>/dev/null");
  INFO(er.out);
  REQUIRE(er.exit_code == 0);
  const auto j = nlohmann::json::parse(er.out);
  CHECK(j["samples"] == 12);
  const test::OrtRun f = test::ort_run(model, samples);
  const test::OrtRun qo = test::ort_run(q, samples);
  REQUIRE(f.error.empty());
  REQUIRE(qo.error.empty());
  const test::OrtMetrics m = test::ort_metrics(f, qo, "output");
  const auto& o = j["outputs"]["output"];
  INFO("shrink: " << o.dump() << "  ORT: sqnr " << m.sqnr << " cos " << m.cosine << " max " << m.max_abs << " top1 " << m.top1);
  // ORT runs the QDQ graph with fused integer kernels, shrink simulates it in float: close, not equal.
  CHECK(o["sqnr_db"].get<double>() == Approx(m.sqnr).margin(0.3));
  CHECK(o["cosine"].get<double>() == Approx(m.cosine).margin(1e-3));
  CHECK(o["max_abs"].get<double>() == Approx(m.max_abs).epsilon(0.05).margin(0.005));
  CHECK(o["top1_agreement"].get<double>() == Approx(m.top1).margin(1.0 / 12 + 1e-9));
  // Per node: every quantized activation is listed with a finite error, and the input's own error is
  // rounding to 1/255 of its range: SQNR of a uniform [0,1) signal quantized that way is ~ 50 dB.
  REQUIRE(j["nodes"].size() >= 3);
  for (const auto& n : j["nodes"]) {
    INFO(n.dump());
    CHECK(std::isfinite(n["sqnr_db"].get<double>()));
    CHECK(n["sqnr_db"].get<double>() > 15.0);
    if (n["tensor"] == "input") CHECK(n["sqnr_db"].get<double>() > 40.0);
  }
}

TEST_CASE("eval of an ONNX model refuses bad arguments with one line", "[eval]") {
  const test::RunResult r = test::run_shrink("eval nothing.onnx --random 2");
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("--quantized") != std::string::npos);
}
