#include "formats/onnx_model.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>

#include "formats/atomic_output.h"
#include "formats/error_text.h"
#include "formats/mapped_file.h"

namespace shrink {
namespace {

namespace fs = std::filesystem;
using onnx::TensorProto;

std::string q(const std::string& s) { return quote_untrusted(s, 200); }

// Protobuf messages are limited to 2 GiB (int32 sizes). Past ~2 GB a model must keep its
// tensors in an external file; 2^31 - 64 MiB leaves room for the graph around them.
constexpr uint64_t kProtoLimit = (uint64_t{1} << 31) - (uint64_t{64} << 20);
// Sidecar offsets are aligned to 64 bytes so a reader can map tensors with SIMD-friendly alignment.
constexpr uint64_t kExternalAlignment = 64;

// Bytes per element of the fixed-size element types, 0 for the ones that have none
// (STRING, UNDEFINED) and for the 4-bit types, which pack two elements per byte.
size_t element_bytes(int type) {
  switch (type) {
    case TensorProto::FLOAT: case TensorProto::INT32: case TensorProto::UINT32: return 4;
    case TensorProto::UINT8: case TensorProto::INT8: case TensorProto::BOOL: return 1;
    case TensorProto::UINT16: case TensorProto::INT16: case TensorProto::FLOAT16: case TensorProto::BFLOAT16: return 2;
    case TensorProto::INT64: case TensorProto::UINT64: case TensorProto::DOUBLE: case TensorProto::COMPLEX64: return 8;
    case TensorProto::COMPLEX128: return 16;
    case kOnnxFloat8E4M3FN: case kOnnxFloat8E4M3FNUZ: case kOnnxFloat8E5M2: case kOnnxFloat8E5M2FNUZ: return 1;
    default: return 0;
  }
}

bool is_4bit(int type) { return type == kOnnxInt4 || type == kOnnxUint4; }

std::string tensor_label(const fs::path& file, const TensorProto& t) {
  return file.string() + ": tensor " + q(t.name());
}

// Byte size the dims call for in raw_data, or an error when the type has no fixed size.
Result<size_t> expected_raw_bytes(const TensorProto& t, const std::string& where) {
  SHRINK_ASSIGN(size_t n, onnx_element_count(t));
  if (is_4bit(t.data_type())) return (n + 1) / 2;
  size_t eb = element_bytes(t.data_type());
  if (eb == 0) return make_error(where + ": data_type " + std::to_string(t.data_type()) + " has no fixed element size");
  if (n > std::numeric_limits<size_t>::max() / eb) return make_error(where + ": byte size overflows");
  return n * eb;
}

// Every TensorProto a graph holds: initializers, Constant/attribute tensors, and those of
// subgraphs (If/Loop/Scan bodies), recursively.
void for_each_tensor(onnx::GraphProto* g, const std::function<void(TensorProto*)>& fn) {
  for (auto& t : *g->mutable_initializer()) fn(&t);
  for (auto& st : *g->mutable_sparse_initializer()) {
    fn(st.mutable_values());
    fn(st.mutable_indices());
  }
  for (auto& node : *g->mutable_node())
    for (auto& a : *node.mutable_attribute()) {
      if (a.has_t()) fn(a.mutable_t());
      for (auto& t : *a.mutable_tensors()) fn(&t);
      if (a.has_g()) for_each_tensor(a.mutable_g(), fn);
      for (auto& sg : *a.mutable_graphs()) for_each_tensor(&sg, fn);
    }
}

// A tensor's data must agree with its dims: raw_data by byte size, typed fields by count.
Status check_inline_size(const TensorProto& t, const fs::path& file) {
  const std::string where = tensor_label(file, t);
  if (t.data_type() == TensorProto::STRING || t.data_type() == TensorProto::UNDEFINED) return {};
  SHRINK_ASSIGN(size_t n, onnx_element_count(t));
  if (t.has_raw_data()) {
    SHRINK_ASSIGN(size_t want, expected_raw_bytes(t, where));
    if (t.raw_data().size() != want)
      return make_error(where + ": raw_data holds " + std::to_string(t.raw_data().size()) + " bytes but dims call for " +
                        std::to_string(want));
    return {};
  }
  size_t have = 0;
  size_t want = n;
  switch (t.data_type()) {
    case TensorProto::FLOAT: have = t.float_data_size(); break;
    case TensorProto::DOUBLE: have = t.double_data_size(); break;
    case TensorProto::INT64: have = t.int64_data_size(); break;
    case TensorProto::UINT32: case TensorProto::UINT64: have = t.uint64_data_size(); break;
    case TensorProto::COMPLEX64: have = t.float_data_size(); want = 2 * n; break;
    case TensorProto::COMPLEX128: have = t.double_data_size(); want = 2 * n; break;
    case kOnnxInt4: case kOnnxUint4: have = t.int32_data_size(); want = (n + 1) / 2; break;
    default: have = t.int32_data_size(); break;
  }
  if (have != want)
    return make_error(where + ": holds " + std::to_string(have) + " values but dims call for " + std::to_string(want));
  return {};
}

// Resolves an external-data location against the model's folder; it must stay inside it.
Result<fs::path> resolve_location(const fs::path& model_file, const TensorProto& t, const std::string& location) {
  const std::string where = tensor_label(model_file, t);
  if (location.empty()) return make_error(where + ": external_data has no 'location'");
  fs::path rel(location);
  if (rel.is_absolute() || rel.has_root_name() || rel.has_root_directory())
    return make_error(where + ": external data location " + q(location) + " is absolute; it must be relative to the model's folder");
  for (const fs::path& part : rel)
    if (part == "..")
      return make_error(where + ": external data location " + q(location) + " escapes the model's folder");
  fs::path folder = model_file.parent_path();
  if (folder.empty()) folder = ".";
  std::error_code ec;
  fs::path base = fs::weakly_canonical(folder, ec);
  fs::path full = fs::weakly_canonical(folder / rel, ec);
  if (ec) return make_error(where + ": external data location " + q(location) + ": " + ec.message());
  // Symlinks inside the folder may still point out of it: compare the resolved paths.
  auto [b, f] = std::mismatch(base.begin(), base.end(), full.begin(), full.end());
  if (b != base.end())
    return make_error(where + ": external data location " + q(location) + " resolves outside the model's folder");
  return folder / rel;
}

Result<uint64_t> parse_u64(const std::string& s, const std::string& where, const std::string& key) {
  if (s.empty() || s.size() > 20) return make_error(where + ": external_data '" + key + "' = " + q(s) + " is not a byte count");
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return make_error(where + ": external_data '" + key + "' = " + q(s) + " is not a byte count");
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10)
      return make_error(where + ": external_data '" + key + "' = " + q(s) + " overflows");
    v = v * 10 + d;
  }
  return v;
}

using FileCache = std::map<std::string, std::shared_ptr<MappedFile>>;

// Moves one external tensor's bytes into raw_data after checking the location, range and size.
Status load_external(TensorProto* t, const fs::path& model_file, FileCache& cache) {
  const std::string where = tensor_label(model_file, *t);
  std::string location;
  uint64_t offset = 0;
  bool has_length = false;
  uint64_t length = 0;
  for (const auto& kv : t->external_data()) {
    if (kv.key() == "location") location = kv.value();
    else if (kv.key() == "offset") { SHRINK_ASSIGN(offset, parse_u64(kv.value(), where, "offset")); }
    else if (kv.key() == "length") { SHRINK_ASSIGN(length, parse_u64(kv.value(), where, "length")); has_length = true; }
  }
  SHRINK_ASSIGN(fs::path data_path, resolve_location(model_file, *t, location));
  SHRINK_ASSIGN(size_t want, expected_raw_bytes(*t, where));
  auto it = cache.find(data_path.string());
  if (it == cache.end()) {
    std::error_code ec;
    if (!fs::is_regular_file(data_path, ec))
      return make_error(where + ": external data file " + q(location) + " is missing (looked for " + data_path.string() + ")");
    auto mapped = MappedFile::open(data_path.string());
    if (!mapped.ok()) return make_error(where + ": " + mapped.error().message);
    it = cache.emplace(data_path.string(), std::move(mapped).value()).first;
  }
  const MappedFile& data = *it->second;
  if (!has_length) length = want;  // no length: the tensor runs from offset for its own size
  if (length != want)
    return make_error(where + ": external_data length " + std::to_string(length) + " does not match the " +
                      std::to_string(want) + " bytes its dims call for");
  if (offset > data.size() || length > data.size() - offset)
    return make_error(where + ": external data [" + std::to_string(offset) + ", +" + std::to_string(length) +
                      ") lies outside " + q(location) + " (" + std::to_string(data.size()) + " bytes)");
  t->set_raw_data(reinterpret_cast<const char*>(data.data()) + offset, length);
  t->clear_external_data();
  t->clear_data_location();  // DEFAULT, and absent as in a model written inline
  return {};
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // Inf / NaN
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { mant <<= 1; ++e; } while ((mant & 0x400) == 0);
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
    }
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_float(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <class T>
T load_le(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // ONNX raw_data is little-endian, as is every host shrink builds for
  return v;
}

}  // namespace

Result<size_t> onnx_element_count(const TensorProto& t) {
  size_t n = 1;
  for (int64_t d : t.dims()) {
    if (d < 0) return make_error("tensor " + q(t.name()) + ": negative dim " + std::to_string(d));
    if (d != 0 && n > std::numeric_limits<size_t>::max() / static_cast<size_t>(d))
      return make_error("tensor " + q(t.name()) + ": element count overflows");
    n *= static_cast<size_t>(d);
  }
  return n;
}

Result<OnnxModel> read_onnx(const fs::path& file) {
  OnnxModel m;
  m.path = file;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return make_error(file.string() + ": no such file");
  auto mapped = MappedFile::open(file.string());
  if (!mapped.ok()) return mapped.error();
  const MappedFile& mf = **mapped;
  if (mf.size() > static_cast<size_t>(INT_MAX))
    return make_error(file.string() + ": " + std::to_string(mf.size()) +
                      " bytes is past protobuf's 2 GiB message limit; large models keep tensors in external data");
  google::protobuf::io::ArrayInputStream raw(mf.data(), static_cast<int>(mf.size()));
  google::protobuf::io::CodedInputStream in(&raw);
  in.SetTotalBytesLimit(INT_MAX);
  if (!m.proto.ParseFromCodedStream(&in) || !in.ConsumedEntireMessage())
    return make_error(file.string() + ": not a valid ONNX ModelProto (protobuf parse failed)");
  if (!m.proto.has_graph()) return make_error(file.string() + ": ModelProto has no 'graph'");
  if (m.proto.opset_import_size() == 0) return make_error(file.string() + ": ModelProto has no 'opset_import'");

  FileCache cache;
  Status status;
  for_each_tensor(m.proto.mutable_graph(), [&](TensorProto* t) {
    if (!status.ok()) return;
    if (t->data_location() == TensorProto::EXTERNAL) status = load_external(t, file, cache);
    else if (t->external_data_size() > 0)
      status = make_error(tensor_label(file, *t) + ": has external_data entries but data_location is not EXTERNAL");
    if (status.ok()) status = check_inline_size(*t, file);
  });
  SHRINK_CHECK(status);
  return m;
}

Status write_onnx(const onnx::ModelProto& model, const fs::path& out, const OnnxWriteOptions& opt) {
  onnx::ModelProto copy = model;
  bool external = opt.external == OnnxWriteOptions::External::kAlways;
  if (opt.external == OnnxWriteOptions::External::kAuto) external = copy.ByteSizeLong() > kProtoLimit;

  const fs::path data_path = out.string() + ".data";
  std::unique_ptr<AtomicOutput> data_out;
  if (external) {
    SHRINK_ASSIGN(AtomicOutput d, AtomicOutput::create(data_path.string()));
    data_out = std::make_unique<AtomicOutput>(std::move(d));
    const std::string location = data_path.filename().string();
    Status status;
    for_each_tensor(copy.mutable_graph(), [&](TensorProto* t) {
      if (!status.ok() || !t->has_raw_data() || t->raw_data().size() < opt.min_external_bytes) return;
      status = data_out->pad_to(kExternalAlignment);
      if (!status.ok()) return;
      const uint64_t offset = data_out->offset();
      status = data_out->write(t->raw_data().data(), t->raw_data().size());
      if (!status.ok()) return;
      const uint64_t length = t->raw_data().size();
      t->clear_raw_data();
      t->set_data_location(TensorProto::EXTERNAL);
      t->clear_external_data();
      auto* kv = t->add_external_data();
      kv->set_key("location");
      kv->set_value(location);
      kv = t->add_external_data();
      kv->set_key("offset");
      kv->set_value(std::to_string(offset));
      kv = t->add_external_data();
      kv->set_key("length");
      kv->set_value(std::to_string(length));
    });
    SHRINK_CHECK(status);
  }
  const size_t size = copy.ByteSizeLong();
  if (size > static_cast<size_t>(INT_MAX))
    return make_error(out.string() + ": the model proto would be " + std::to_string(size) +
                      " bytes, past protobuf's 2 GiB limit, even with tensors moved to external data");
  std::string bytes;
  if (!copy.SerializeToString(&bytes)) return make_error(out.string() + ": protobuf serialization failed");
  SHRINK_ASSIGN(AtomicOutput model_out, AtomicOutput::create(out.string()));
  SHRINK_CHECK(model_out.write(bytes.data(), bytes.size()));
  // Data first: once the model is renamed into place, the sidecar it names is already there.
  if (data_out) SHRINK_CHECK(data_out->commit());
  SHRINK_CHECK(model_out.commit());
  return {};
}

Result<std::vector<float>> tensor_to_f32(const TensorProto& t) {
  const std::string where = "tensor " + q(t.name());
  if (t.data_location() == TensorProto::EXTERNAL)
    return make_error(where + ": data is still external; read the model with read_onnx");
  SHRINK_ASSIGN(size_t n, onnx_element_count(t));
  std::vector<float> out(n);
  const int type = t.data_type();
  if (t.has_raw_data()) {
    SHRINK_ASSIGN(size_t want, expected_raw_bytes(t, where));
    const std::string& r = t.raw_data();
    if (r.size() != want)
      return make_error(where + ": raw_data holds " + std::to_string(r.size()) + " bytes but dims call for " +
                        std::to_string(want));
    const char* p = r.data();
    for (size_t i = 0; i < n; ++i) {
      switch (type) {
        case TensorProto::FLOAT: out[i] = load_le<float>(p + 4 * i); break;
        case TensorProto::DOUBLE: out[i] = static_cast<float>(load_le<double>(p + 8 * i)); break;
        case TensorProto::FLOAT16: out[i] = half_to_float(load_le<uint16_t>(p + 2 * i)); break;
        case TensorProto::BFLOAT16: out[i] = bf16_to_float(load_le<uint16_t>(p + 2 * i)); break;
        case TensorProto::INT8: out[i] = static_cast<int8_t>(p[i]); break;
        case TensorProto::UINT8: case TensorProto::BOOL: out[i] = static_cast<uint8_t>(p[i]); break;
        case TensorProto::INT16: out[i] = load_le<int16_t>(p + 2 * i); break;
        case TensorProto::UINT16: out[i] = load_le<uint16_t>(p + 2 * i); break;
        case TensorProto::INT32: out[i] = static_cast<float>(load_le<int32_t>(p + 4 * i)); break;
        case TensorProto::UINT32: out[i] = static_cast<float>(load_le<uint32_t>(p + 4 * i)); break;
        case TensorProto::INT64: out[i] = static_cast<float>(load_le<int64_t>(p + 8 * i)); break;
        case TensorProto::UINT64: out[i] = static_cast<float>(load_le<uint64_t>(p + 8 * i)); break;
        case kOnnxUint4: case kOnnxInt4: {
          // Two elements per byte, the first in the low nibble (ONNX IR 10).
          int v = (static_cast<uint8_t>(p[i / 2]) >> ((i & 1) * 4)) & 0xf;
          if (type == kOnnxInt4 && v >= 8) v -= 16;
          out[i] = static_cast<float>(v);
          break;
        }
        default: return make_error(where + ": data_type " + std::to_string(type) + " cannot convert to F32");
      }
    }
    return out;
  }
  auto count_error = [&](size_t have, size_t want) {
    return make_error(where + ": holds " + std::to_string(have) + " values but dims call for " + std::to_string(want));
  };
  switch (type) {
    case TensorProto::FLOAT:
      if (static_cast<size_t>(t.float_data_size()) != n) return count_error(t.float_data_size(), n);
      for (size_t i = 0; i < n; ++i) out[i] = t.float_data(static_cast<int>(i));
      return out;
    case TensorProto::DOUBLE:
      if (static_cast<size_t>(t.double_data_size()) != n) return count_error(t.double_data_size(), n);
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(t.double_data(static_cast<int>(i)));
      return out;
    case TensorProto::INT64:
      if (static_cast<size_t>(t.int64_data_size()) != n) return count_error(t.int64_data_size(), n);
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(t.int64_data(static_cast<int>(i)));
      return out;
    case TensorProto::UINT32: case TensorProto::UINT64:
      if (static_cast<size_t>(t.uint64_data_size()) != n) return count_error(t.uint64_data_size(), n);
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(t.uint64_data(static_cast<int>(i)));
      return out;
    case TensorProto::INT32: case TensorProto::INT16: case TensorProto::INT8: case TensorProto::UINT16:
    case TensorProto::UINT8: case TensorProto::BOOL: case TensorProto::FLOAT16: case TensorProto::BFLOAT16:
      if (static_cast<size_t>(t.int32_data_size()) != n) return count_error(t.int32_data_size(), n);
      for (size_t i = 0; i < n; ++i) {
        const int32_t v = t.int32_data(static_cast<int>(i));
        // float16/bfloat16 values travel as their bit patterns in int32_data.
        if (type == TensorProto::FLOAT16) out[i] = half_to_float(static_cast<uint16_t>(v));
        else if (type == TensorProto::BFLOAT16) out[i] = bf16_to_float(static_cast<uint16_t>(v));
        else out[i] = static_cast<float>(v);
      }
      return out;
    default:
      return make_error(where + ": data_type " + std::to_string(type) + " cannot convert to F32");
  }
}

}  // namespace shrink
