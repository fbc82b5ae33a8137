// Runs an ONNX model in ONNX Runtime (tests/interop/ort_run.mjs, onnxruntime-node) from a test:
// inputs and outputs travel as raw little-endian files plus a JSON manifest.
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/test_support.h"

namespace shrink::test {

struct OrtTensor {
  std::string name;
  std::string type = "float32";  // float32 | int64 | int32 | uint8 | int8 | bool
  std::vector<int64_t> dims;
  std::vector<uint8_t> bytes;

  static OrtTensor f32(const std::string& name, std::vector<int64_t> dims, const std::vector<float>& v) {
    OrtTensor t{name, "float32", std::move(dims), {}};
    t.bytes.resize(v.size() * 4);
    std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
    return t;
  }
  static OrtTensor i64(const std::string& name, std::vector<int64_t> dims, const std::vector<int64_t>& v) {
    OrtTensor t{name, "int64", std::move(dims), {}};
    t.bytes.resize(v.size() * 8);
    std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
    return t;
  }
  std::vector<float> as_f32() const {
    if (type != "float32") throw std::runtime_error("output " + name + " is " + type + ", not float32");
    std::vector<float> v(bytes.size() / 4);
    std::memcpy(v.data(), bytes.data(), v.size() * 4);
    return v;
  }
};

// The ort_run.mjs script, or skips the program when onnxruntime-node is not installed.
inline fs::path ort_script() {
  require(interop_dir() / "node_modules" / "onnxruntime-node", "onnxruntime-node (npm, tests/interop)");
  return interop_dir() / "ort_run.mjs";
}

struct OrtRun {
  int exit_code = -1;
  std::string log;
  std::vector<OrtTensor> outputs;
};

// Runs `model` on `inputs`; `work` is a scratch folder for the files (created). optimize=false runs the
// graph node by node as written (no fusions).
inline OrtRun ort_run(const fs::path& model, const std::vector<OrtTensor>& inputs, const fs::path& work,
                      bool optimize = true) {
  fs::create_directories(work);
  nlohmann::json manifest;
  manifest["inputs"] = nlohmann::json::array();
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string file = "in" + std::to_string(i) + ".bin";
    write_bytes(work / file, inputs[i].bytes);
    manifest["inputs"].push_back({{"name", inputs[i].name}, {"type", inputs[i].type}, {"dims", inputs[i].dims}, {"file", file}});
  }
  std::ofstream(work / "manifest.json") << manifest.dump();
  const fs::path out = work / "out";
  fs::remove_all(out);
  OrtRun r;
  RunResult rr = run("node " + quote(ort_script().string()) + " " + quote(model.string()) + " " +
                     quote((work / "manifest.json").string()) + " " + quote(out.string()) + (optimize ? "" : " --no-optimize"));
  r.exit_code = rr.exit_code;
  r.log = rr.out;
  if (rr.exit_code != 0) return r;
  std::ifstream f(out / "outputs.json");
  nlohmann::json desc = nlohmann::json::parse(f);
  for (const auto& d : desc) {
    OrtTensor t;
    t.name = d["name"].get<std::string>();
    t.type = d["type"].get<std::string>();
    t.dims = d["dims"].get<std::vector<int64_t>>();
    t.bytes = read_bytes(out / d["file"].get<std::string>());
    r.outputs.push_back(std::move(t));
  }
  return r;
}

// Signal-to-quantization-noise ratio of `test` against `ref`, in dB (infinite when equal).
inline double sqnr_db(const std::vector<float>& ref, const std::vector<float>& test) {
  double s = 0, e = 0;
  for (size_t i = 0; i < ref.size() && i < test.size(); ++i) {
    s += double(ref[i]) * ref[i];
    e += (double(ref[i]) - test[i]) * (double(ref[i]) - test[i]);
  }
  if (ref.size() != test.size()) return -INFINITY;
  return e == 0 ? INFINITY : 10.0 * std::log10(s / e);
}

}  // namespace shrink::test
