#include "calibration/onnx_calib_data.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

namespace shrink {
namespace fs = std::filesystem;

namespace {
Result<std::string> slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return make_error(p.string() + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

Result<OnnxTensor> read_tensor_pb(const fs::path& file) {
  SHRINK_ASSIGN(std::string bytes, slurp(file));
  onnx::TensorProto t;
  if (!t.ParseFromString(bytes)) return make_error(file.string() + ": not a serialized onnx.TensorProto");
  return tensor_from_proto(t, file.string());
}

// NPY: "\x93NUMPY", major, minor, header length (u16 for v1, u32 for v2/3), then a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with spaces, then the data.
Result<OnnxTensor> read_npy(const fs::path& file) {
  SHRINK_ASSIGN(std::string b, slurp(file));
  const std::string where = file.string();
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) return make_error(where + ": not a .npy file (bad magic)");
  const int major = static_cast<unsigned char>(b[6]);
  size_t hlen, off;
  if (major == 1) {
    hlen = static_cast<unsigned char>(b[8]) | static_cast<unsigned char>(b[9]) << 8;
    off = 10;
  } else {
    if (b.size() < 12) return make_error(where + ": truncated header");
    hlen = 0;
    for (int k = 0; k < 4; ++k) hlen |= static_cast<size_t>(static_cast<unsigned char>(b[8 + k])) << (8 * k);
    off = 12;
  }
  if (off + hlen > b.size()) return make_error(where + ": header length " + std::to_string(hlen) + " runs past the file");
  const std::string h = b.substr(off, hlen);
  auto field = [&](const std::string& key) -> std::string {
    const size_t k = h.find("'" + key + "'");
    if (k == std::string::npos) return "";
    size_t v = h.find(':', k) + 1;
    while (v < h.size() && h[v] == ' ') ++v;
    if (h[v] == '(') return h.substr(v, h.find(')', v) - v + 1);
    if (h[v] == '\'') return h.substr(v + 1, h.find('\'', v + 1) - v - 1);
    size_t e = v;
    while (e < h.size() && h[e] != ',' && h[e] != '}') ++e;
    return h.substr(v, e - v);
  };
  const std::string descr = field("descr"), fortran = field("fortran_order"), shape_s = field("shape");
  if (fortran != "False") return make_error(where + ": fortran_order arrays are not supported");
  OnnxTensor t;
  int width;
  if (descr == "<f4") t.type = onnx::TensorProto::FLOAT, width = 4;
  else if (descr == "<i8") t.type = onnx::TensorProto::INT64, width = 8;
  else if (descr == "<i4") t.type = onnx::TensorProto::INT32, width = 4;
  else if (descr == "|i1") t.type = onnx::TensorProto::INT8, width = 1;
  else if (descr == "|u1") t.type = onnx::TensorProto::UINT8, width = 1;
  else if (descr == "|b1") t.type = onnx::TensorProto::BOOL, width = 1;
  else return make_error(where + ": dtype '" + descr + "' is not supported (float32, int64, int32, int8, uint8, bool)");
  int64_t n = 1;
  for (size_t p = 1; p < shape_s.size();) {
    while (p < shape_s.size() && !std::isdigit(static_cast<unsigned char>(shape_s[p]))) ++p;
    if (p >= shape_s.size()) break;
    size_t e = p;
    while (e < shape_s.size() && std::isdigit(static_cast<unsigned char>(shape_s[e]))) ++e;
    const int64_t d = std::stoll(shape_s.substr(p, e - p));
    if (d > (int64_t{1} << 32)) return make_error(where + ": dim " + std::to_string(d) + " is too large");
    t.shape.push_back(d);
    n *= d;
    if (n > (int64_t{1} << 34)) return make_error(where + ": too many elements");
    p = e;
  }
  const size_t data = off + hlen;
  if (b.size() - data != static_cast<size_t>(n) * width)
    return make_error(where + ": holds " + std::to_string(b.size() - data) + " data bytes, shape needs " + std::to_string(n * width));
  const char* p = b.data() + data;
  if (t.type == onnx::TensorProto::FLOAT) {
    t.f.resize(n);
    std::memcpy(t.f.data(), p, n * 4);
  } else {
    t.i.resize(n);
    for (int64_t k = 0; k < n; ++k) {
      if (width == 8) std::memcpy(&t.i[k], p + 8 * k, 8);
      else if (width == 4) { int32_t v; std::memcpy(&v, p + 4 * k, 4); t.i[k] = v; }
      else t.i[k] = t.type == onnx::TensorProto::INT8 ? static_cast<int8_t>(p[k]) : static_cast<uint8_t>(p[k]);
    }
  }
  return t;
}

namespace {
Result<OnnxTensor> read_any(const fs::path& f) { return f.extension() == ".npy" ? read_npy(f) : read_tensor_pb(f); }
bool is_tensor_file(const fs::path& f) { return f.extension() == ".npy" || f.extension() == ".pb"; }
}  // namespace

Result<std::vector<OnnxSample>> load_calibration_dir(const fs::path& dir, const OnnxExecutor& ex) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return make_error(dir.string() + ": not a folder");
  std::vector<fs::path> subdirs, files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory()) subdirs.push_back(e.path());
    else if (is_tensor_file(e.path())) files.push_back(e.path());
  }
  std::sort(subdirs.begin(), subdirs.end());
  std::sort(files.begin(), files.end());
  const auto& names = ex.input_names();
  std::vector<OnnxSample> samples;
  if (subdirs.empty()) {
    if (names.size() != 1)
      return make_error(dir.string() + ": the model has " + std::to_string(names.size()) +
                        " inputs, so each sample needs its own subfolder (see --help)");
    for (const auto& f : files) {
      SHRINK_ASSIGN(OnnxTensor t, read_any(f));
      samples.push_back({{names[0], std::move(t)}});
    }
  }
  for (const auto& sd : subdirs) {
    OnnxSample s;
    for (size_t k = 0; k < names.size(); ++k) {
      fs::path found;
      for (const std::string& stem : {names[k], "input_" + std::to_string(k)})
        for (const char* ext : {".pb", ".npy"})
          if (found.empty() && fs::exists(sd / (stem + ext))) found = sd / (stem + ext);
      if (found.empty())
        return make_error(sd.string() + ": no file for input '" + names[k] + "' (" + names[k] + ".pb/.npy or input_" +
                          std::to_string(k) + ".pb/.npy)");
      SHRINK_ASSIGN(OnnxTensor t, read_any(found));
      s[names[k]] = std::move(t);
    }
    samples.push_back(std::move(s));
  }
  if (samples.empty()) return make_error(dir.string() + ": no calibration samples (.pb/.npy files or sample subfolders)");
  return samples;
}

Result<std::vector<OnnxSample>> random_calibration(const OnnxExecutor& ex, int n,
                                                   const std::map<std::string, std::vector<int64_t>>& shapes,
                                                   uint32_t seed) {
  if (n < 1) return make_error("--calib-random needs at least 1 sample, got " + std::to_string(n));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<OnnxSample> samples(n);
  for (const auto& name : ex.input_names()) {
    const onnx::ValueInfoProto* vi = ex.input_info(name);
    const auto& tt = vi->type().tensor_type();
    if (tt.elem_type() != onnx::TensorProto::FLOAT)
      return make_error("input '" + name + "' is " + onnx_type_name(tt.elem_type()) +
                        "; random calibration makes FLOAT inputs only (use --calib DIR)");
    std::vector<int64_t> shape;
    auto given = shapes.find(name);
    if (given != shapes.end()) {
      shape = given->second;
    } else {
      for (int d = 0; d < tt.shape().dim_size(); ++d) {
        const auto& dim = tt.shape().dim(d);
        shape.push_back(dim.has_dim_value() && dim.dim_value() > 0 ? dim.dim_value() : (d == 0 ? 1 : 64));
      }
    }
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    for (auto& s : samples) {
      std::vector<float> v(count);
      for (float& x : v) x = u(rng);
      s[name] = OnnxTensor::floats(shape, std::move(v));
    }
  }
  return samples;
}

}  // namespace shrink
