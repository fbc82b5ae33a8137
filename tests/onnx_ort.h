// Test helper: runs an ONNX model in ONNX Runtime through tests/interop/ort_infer.mjs and reads the
// outputs back as OnnxTensor, so tests compare shrink's executor (and quantized files) with the real runtime.
#pragma once

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "calibration/onnx_executor.h"
#include "tests/test_support.h"

namespace shrink::test {

inline fs::path ort_script() { return interop_dir() / "ort_infer.mjs"; }

// Skips the program unless node and onnxruntime-node are installed.
inline void require_ort() {
  require(interop_dir() / "node_modules" / "onnxruntime-node", "onnxruntime-node (tests/interop, run setup.sh)");
}

inline std::string ort_type(int32_t t) {
  switch (t) {
    case onnx::TensorProto::FLOAT: return "float32";
    case onnx::TensorProto::INT64: return "int64";
    case onnx::TensorProto::INT32: return "int32";
    case onnx::TensorProto::UINT8: return "uint8";
    case onnx::TensorProto::INT8: return "int8";
    case onnx::TensorProto::BOOL: return "bool";
    default: return "unsupported";
  }
}

struct OrtRun {
  std::vector<std::map<std::string, OnnxTensor>> samples;
  double ms_per_run = 0;
  std::string error;  // non-empty when ONNX Runtime failed (its output)
};

// Runs every sample (a map input name -> tensor) through ONNX Runtime in one node process.
// `optimization`: ONNX Runtime's graph optimization level ("all", "extended", "basic", "disabled").
inline OrtRun ort_run(const fs::path& model, const std::vector<std::map<std::string, OnnxTensor>>& samples, int repeat = 1,
                      int threads = 1, const std::string& optimization = "all") {
  TempDir dir;
  nlohmann::json job;
  job["out_dir"] = (dir.path / "out").string();
  job["repeat"] = repeat;
  job["threads"] = threads;
  job["optimization"] = optimization;
  job["samples"] = nlohmann::json::array();
  for (size_t s = 0; s < samples.size(); ++s) {
    nlohmann::json specs = nlohmann::json::array();
    int k = 0;
    for (const auto& [name, t] : samples[s]) {
      const fs::path file = dir.path / ("in_" + std::to_string(s) + "_" + std::to_string(k++) + ".bin");
      std::ofstream f(file, std::ios::binary);
      const int64_t n = t.numel();
      for (int64_t j = 0; j < n; ++j) {
        switch (t.type) {
          case onnx::TensorProto::FLOAT: f.write(reinterpret_cast<const char*>(&t.f[j]), 4); break;
          case onnx::TensorProto::INT64: f.write(reinterpret_cast<const char*>(&t.i[j]), 8); break;
          case onnx::TensorProto::INT32: { const int32_t v = static_cast<int32_t>(t.i[j]); f.write(reinterpret_cast<const char*>(&v), 4); break; }
          default: { const uint8_t v = static_cast<uint8_t>(t.i[j]); f.write(reinterpret_cast<const char*>(&v), 1); }
        }
      }
      specs.push_back({{"name", name}, {"type", ort_type(t.type)}, {"dims", t.shape}, {"file", file.string()}});
    }
    job["samples"].push_back(specs);
  }
  { std::ofstream(dir.path / "job.json") << job.dump(); }
  OrtRun out;
  const RunResult r = run("node " + quote(ort_script().string()) + " " + quote(model.string()) + " " +
                          quote((dir.path / "job.json").string()) + " 2>&1");
  if (r.exit_code != 0) {
    out.error = r.out.empty() ? "node exited with " + std::to_string(r.exit_code) : r.out;
    return out;
  }
  nlohmann::json res;
  std::ifstream(dir.path / "out" / "outputs.json") >> res;
  out.ms_per_run = res["ms_per_run"].get<double>();
  for (const auto& sample : res["samples"]) {
    std::map<std::string, OnnxTensor> m;
    for (const auto& spec : sample) {
      OnnxTensor t;
      t.shape = spec["dims"].get<std::vector<int64_t>>();
      const std::string type = spec["type"];
      const auto bytes = read_bytes(spec["file"].get<std::string>());
      const int64_t n = t.numel();
      if (type == "float32") {
        t.type = onnx::TensorProto::FLOAT;
        t.f.resize(n);
        std::memcpy(t.f.data(), bytes.data(), n * 4);
      } else if (type == "int64") {
        t.type = onnx::TensorProto::INT64;
        t.i.resize(n);
        std::memcpy(t.i.data(), bytes.data(), n * 8);
      } else {
        t.type = type == "uint8" ? onnx::TensorProto::UINT8 : type == "int8" ? onnx::TensorProto::INT8 : onnx::TensorProto::BOOL;
        for (int64_t j = 0; j < n; ++j) t.i.push_back(type == "int8" ? static_cast<int8_t>(bytes[j]) : bytes[j]);
      }
      m[spec["name"].get<std::string>()] = std::move(t);
    }
    out.samples.push_back(std::move(m));
  }
  return out;
}

struct OrtMetrics {
  double sqnr = 0, cosine = 0, max_abs = 0, top1 = 0;
};

// What `shrink eval` reports for ONNX models, computed here from ORT's float and quantized outputs of
// output `name` over all samples: SQNR (dB), cosine, max-abs error, top-1 agreement (argmax per row,
// rows = the last axis).
inline OrtMetrics ort_metrics(const OrtRun& f, const OrtRun& q, const std::string& name) {
  double rr = 0, ee = 0, rq = 0, qq = 0, mx = 0;
  int rows = 0, same = 0;
  for (size_t s = 0; s < f.samples.size(); ++s) {
    const auto& a = f.samples[s].at(name).f;
    const auto& b = q.samples[s].at(name).f;
    REQUIRE(a.size() == b.size());
    const size_t row = static_cast<size_t>(f.samples[s].at(name).shape.back());
    for (size_t k = 0; k < a.size(); ++k) {
      const double d = double(a[k]) - double(b[k]);
      rr += double(a[k]) * a[k];
      qq += double(b[k]) * b[k];
      rq += double(a[k]) * b[k];
      ee += d * d;
      mx = std::max(mx, std::fabs(d));
    }
    for (size_t r0 = 0; r0 < a.size(); r0 += row) {
      size_t ia = r0, ib = r0;
      for (size_t k = r0; k < r0 + row; ++k) {
        if (a[k] > a[ia]) ia = k;
        if (b[k] > b[ib]) ib = k;
      }
      ++rows;
      same += ia == ib;
    }
  }
  return {10 * std::log10(rr / ee), rq / std::sqrt(rr * qq), mx, double(same) / rows};
}

// 12 samples of digit-free noise for the MNIST model (products of two uniforms: most pixels dark,
// like a digit's page), written in `shrink eval --inputs` layout under dir (one subfolder per
// sample, input.pb) and returned for ort_run.
inline std::vector<std::map<std::string, OnnxTensor>> mnist_noise_inputs(const fs::path& dir) {
  std::mt19937 rng(seed());
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<std::map<std::string, OnnxTensor>> samples;
  for (int s = 0; s < 12; ++s) {
    std::vector<float> v(28 * 28);
    for (float& x : v) x = u(rng) * u(rng);
    samples.push_back({{"input", OnnxTensor::floats({1, 1, 28, 28}, v)}});
    fs::create_directories(dir / std::to_string(s));
    const std::string bytes = tensor_to_proto(samples.back().at("input"), "input").SerializeAsString();
    write_bytes(dir / std::to_string(s) / "input.pb", std::vector<uint8_t>(bytes.begin(), bytes.end()));
  }
  return samples;
}

}  // namespace shrink::test
