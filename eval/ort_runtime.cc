#include "eval/ort_runtime.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace shrink {
namespace fs = std::filesystem;

namespace {

// The C API as seen from outside: opaque handles, an OrtStatus* (nullptr = success) from most calls.
struct OrtStatus;
struct OrtAllocator;
using Status_ = OrtStatus*;

struct OrtApiBase {
  const void* const* (*GetApi)(uint32_t version);  // the OrtApi struct, read here as a table of pointers
  const char* (*GetVersionString)();
};

// ORT 1.20's ORT_API_VERSION. Any later library serves this version's table unchanged.
constexpr uint32_t kApiVersion = 20;

// Positions of the OrtApi members used here, counted in onnxruntime_c_api.h (every one of them has
// been in the table since API version 1, so they sit at the same place in every release).
enum ApiIndex : int {
  kGetErrorMessage = 2,
  kCreateEnv = 3,
  kCreateSession = 7,
  kRun = 9,
  kCreateSessionOptions = 10,
  kSetSessionGraphOptimizationLevel = 23,
  kSetIntraOpNumThreads = 24,
  kSessionGetInputCount = 30,
  kSessionGetOutputCount = 31,
  kSessionGetInputName = 36,
  kSessionGetOutputName = 37,
  kCreateTensorWithDataAsOrtValue = 49,
  kGetTensorMutableData = 51,
  kGetTensorElementType = 60,
  kGetDimensionsCount = 61,
  kGetDimensions = 62,
  kGetTensorShapeElementCount = 64,
  kGetTensorTypeAndShape = 65,
  kCreateCpuMemoryInfo = 69,
  kAllocatorFree = 76,
  kGetAllocatorWithDefaultOptions = 78,
  kReleaseEnv = 92,
  kReleaseStatus = 93,
  kReleaseMemoryInfo = 94,
  kReleaseSession = 95,
  kReleaseValue = 96,
  kReleaseTensorTypeAndShapeInfo = 99,
  kReleaseSessionOptions = 100,
};

// Enum values of the C header.
constexpr int kLoggingLevelError = 3;         // ORT_LOGGING_LEVEL_ERROR
constexpr int kArenaAllocator = 1;            // OrtArenaAllocator
constexpr int kMemTypeDefault = 0;            // OrtMemTypeDefault

}  // namespace

struct OrtLibrary {
  void* handle = nullptr;  // never dlclose'd: ORT keeps thread pools and statics alive until exit
  const void* const* api = nullptr;
  std::string path, version;
  void* env = nullptr;

  template <typename Fn>
  Fn fn(ApiIndex k) const {
    return reinterpret_cast<Fn>(const_cast<void*>(api[k]));
  }
  // nullptr -> "", else the message (and the status is released).
  std::string take(Status_ st) const {
    if (!st) return {};
    std::string m = fn<const char* (*)(const OrtStatus*)>(kGetErrorMessage)(st);
    fn<void (*)(OrtStatus*)>(kReleaseStatus)(st);
    return m.empty() ? "unknown error" : m;
  }
  ~OrtLibrary() {
    if (env) fn<void (*)(void*)>(kReleaseEnv)(env);
  }
};

Result<std::shared_ptr<OrtLibrary>> load_ort_library(const std::string& path) {
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    return make_error("ONNX Runtime library " + path + ": cannot load (" + (e ? e : "dlopen failed") + ")");
  }
  using GetBase = const OrtApiBase* (*)();
  auto get_base = reinterpret_cast<GetBase>(dlsym(h, "OrtGetApiBase"));
  if (!get_base) return make_error("ONNX Runtime library " + path + ": no OrtGetApiBase symbol (not ONNX Runtime?)");
  const OrtApiBase* base = get_base();
  auto lib = std::make_shared<OrtLibrary>();
  lib->handle = h;
  lib->path = path;
  lib->version = base && base->GetVersionString ? base->GetVersionString() : "";
  lib->api = base && base->GetApi ? base->GetApi(kApiVersion) : nullptr;
  if (!lib->api)
    return make_error("ONNX Runtime library " + path + " (version " + lib->version + "): does not serve C API version " +
                      std::to_string(kApiVersion) + " (ONNX Runtime 1.20 or later is needed)");
  void* env = nullptr;
  std::string err = lib->take(
      lib->fn<Status_ (*)(int, const char*, void**)>(kCreateEnv)(kLoggingLevelError, "shrink", &env));
  if (!err.empty()) return make_error("ONNX Runtime library " + path + ": CreateEnv: " + err);
  lib->env = env;
  return lib;
}

Result<std::shared_ptr<OrtLibrary>> find_ort_library(const std::string& explicit_path) {
  if (!explicit_path.empty()) return load_ort_library(explicit_path);
  if (const char* e = std::getenv("SHRINK_ORT_LIB"); e && *e) {
    auto r = load_ort_library(e);
    if (!r.ok()) return make_error("SHRINK_ORT_LIB: " + r.error().message);
    return r;
  }
  std::vector<std::string> tried;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& root : {exe.parent_path().parent_path(), exe.parent_path()}) {
      const fs::path bin = root / "tests" / "interop" / "node_modules" / "onnxruntime-node" / "bin";
      if (!fs::is_directory(bin, ec)) continue;
      std::vector<fs::path> napi;  // napi-v3, napi-v6, ...: newest first
      for (const auto& d : fs::directory_iterator(bin, ec))
        if (d.path().filename().string().rfind("napi-v", 0) == 0) napi.push_back(d.path());
      std::sort(napi.rbegin(), napi.rend());
      for (const auto& d : napi) {
        const fs::path so = d / "linux" / "x64" / "libonnxruntime.so.1";
        if (!fs::exists(so, ec)) continue;
        auto r = load_ort_library(so.string());
        if (r.ok()) return r;
        tried.push_back(r.error().message);
      }
    }
  }
  auto r = load_ort_library("libonnxruntime.so.1");
  if (r.ok()) return r;
  tried.push_back(r.error().message);
  std::string all;
  for (const auto& t : tried) all += (all.empty() ? "" : "; ") + t;
  return make_error("ONNX Runtime not found (give --ort-lib PATH or set SHRINK_ORT_LIB): " + all);
}

std::string ort_library_path(const OrtLibrary& lib) { return lib.path; }
std::string ort_library_version(const OrtLibrary& lib) { return lib.version; }

namespace {

// Bytes per element of the tensor types carried across (ONNXTensorElementDataType equals
// onnx::TensorProto::DataType); 0 for the rest.
size_t element_size(int32_t t) {
  switch (t) {
    case onnx::TensorProto::FLOAT: case onnx::TensorProto::INT32: case onnx::TensorProto::UINT32: return 4;
    case onnx::TensorProto::INT64: case onnx::TensorProto::UINT64: return 8;
    case onnx::TensorProto::INT16: case onnx::TensorProto::UINT16: return 2;
    case onnx::TensorProto::INT8: case onnx::TensorProto::UINT8: case onnx::TensorProto::BOOL: return 1;
    default: return 0;
  }
}

template <typename T>
void put_ints(const std::vector<int64_t>& v, std::vector<uint8_t>* out) {
  out->resize(v.size() * sizeof(T));
  for (size_t k = 0; k < v.size(); ++k) {
    const T x = static_cast<T>(v[k]);
    std::memcpy(out->data() + k * sizeof(T), &x, sizeof(T));
  }
}
template <typename T>
void get_ints(const void* p, size_t n, std::vector<int64_t>* out) {
  out->resize(n);
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t k = 0; k < n; ++k) {
    T x;
    std::memcpy(&x, b + k * sizeof(T), sizeof(T));
    (*out)[k] = static_cast<int64_t>(x);
  }
}

// The OnnxTensor's values laid out as ORT expects them.
std::vector<uint8_t> to_bytes(const OnnxTensor& t) {
  std::vector<uint8_t> b;
  switch (t.type) {
    case onnx::TensorProto::FLOAT:
      b.resize(t.f.size() * 4);
      if (!t.f.empty()) std::memcpy(b.data(), t.f.data(), b.size());
      break;
    case onnx::TensorProto::INT64: put_ints<int64_t>(t.i, &b); break;
    case onnx::TensorProto::UINT64: put_ints<uint64_t>(t.i, &b); break;
    case onnx::TensorProto::INT32: put_ints<int32_t>(t.i, &b); break;
    case onnx::TensorProto::UINT32: put_ints<uint32_t>(t.i, &b); break;
    case onnx::TensorProto::INT16: put_ints<int16_t>(t.i, &b); break;
    case onnx::TensorProto::UINT16: put_ints<uint16_t>(t.i, &b); break;
    case onnx::TensorProto::INT8: put_ints<int8_t>(t.i, &b); break;
    case onnx::TensorProto::UINT8: case onnx::TensorProto::BOOL: put_ints<uint8_t>(t.i, &b); break;
    default: break;
  }
  return b;
}

void from_bytes(int32_t type, const void* p, size_t n, OnnxTensor* t) {
  switch (type) {
    case onnx::TensorProto::FLOAT:
      t->f.resize(n);
      if (n) std::memcpy(t->f.data(), p, n * 4);
      break;
    case onnx::TensorProto::INT64: get_ints<int64_t>(p, n, &t->i); break;
    case onnx::TensorProto::UINT64: get_ints<uint64_t>(p, n, &t->i); break;
    case onnx::TensorProto::INT32: get_ints<int32_t>(p, n, &t->i); break;
    case onnx::TensorProto::UINT32: get_ints<uint32_t>(p, n, &t->i); break;
    case onnx::TensorProto::INT16: get_ints<int16_t>(p, n, &t->i); break;
    case onnx::TensorProto::UINT16: get_ints<uint16_t>(p, n, &t->i); break;
    case onnx::TensorProto::INT8: get_ints<int8_t>(p, n, &t->i); break;
    case onnx::TensorProto::UINT8: case onnx::TensorProto::BOOL: get_ints<uint8_t>(p, n, &t->i); break;
    default: break;
  }
}

// Releases an OrtValue/OrtMemoryInfo/... through the matching Release entry when leaving scope.
struct Releaser {
  const OrtLibrary* lib;
  ApiIndex which;
  void* p = nullptr;
  Releaser(const OrtLibrary* l, ApiIndex w, void* q = nullptr) : lib(l), which(w), p(q) {}
  Releaser(Releaser&& o) noexcept : lib(o.lib), which(o.which), p(o.p) { o.p = nullptr; }
  Releaser(const Releaser&) = delete;
  Releaser& operator=(const Releaser&) = delete;
  ~Releaser() {
    if (p) lib->fn<void (*)(void*)>(which)(p);
  }
};

}  // namespace

OrtModel::OrtModel(OrtModel&& o) noexcept { *this = std::move(o); }
OrtModel& OrtModel::operator=(OrtModel&& o) noexcept {
  std::swap(lib_, o.lib_);
  std::swap(session_, o.session_);
  std::swap(path_, o.path_);
  std::swap(inputs_, o.inputs_);
  std::swap(outputs_, o.outputs_);
  return *this;
}
OrtModel::~OrtModel() {
  if (session_) lib_->fn<void (*)(void*)>(kReleaseSession)(session_);
}

Result<OrtModel> OrtModel::open(std::shared_ptr<OrtLibrary> lib, const std::string& model_path, const OrtModelOptions& opt) {
  const OrtLibrary& L = *lib;
  auto fail = [&](const std::string& what, Status_ st) {
    return make_error(model_path + ": ONNX Runtime " + what + ": " + L.take(st));
  };
  Releaser so{&L, kReleaseSessionOptions};
  if (Status_ st = L.fn<Status_ (*)(void**)>(kCreateSessionOptions)(&so.p)) return fail("CreateSessionOptions", st);
  if (Status_ st = L.fn<Status_ (*)(void*, int)>(kSetIntraOpNumThreads)(so.p, opt.intra_op_threads))
    return fail("SetIntraOpNumThreads", st);
  if (Status_ st = L.fn<Status_ (*)(void*, int)>(kSetSessionGraphOptimizationLevel)(so.p, opt.optimization))
    return fail("SetSessionGraphOptimizationLevel", st);
  OrtModel m;
  m.lib_ = lib;
  m.path_ = model_path;
  if (Status_ st = L.fn<Status_ (*)(const void*, const char*, const void*, void**)>(kCreateSession)(L.env, model_path.c_str(),
                                                                                                      so.p, &m.session_))
    return fail("cannot load the model", st);
  OrtAllocator* alloc = nullptr;
  if (Status_ st = L.fn<Status_ (*)(OrtAllocator**)>(kGetAllocatorWithDefaultOptions)(&alloc))
    return fail("GetAllocatorWithDefaultOptions", st);
  for (int io = 0; io < 2; ++io) {
    size_t n = 0;
    if (Status_ st = L.fn<Status_ (*)(const void*, size_t*)>(io ? kSessionGetOutputCount : kSessionGetInputCount)(m.session_, &n))
      return fail("SessionGetInput/OutputCount", st);
    for (size_t k = 0; k < n; ++k) {
      char* name = nullptr;
      if (Status_ st = L.fn<Status_ (*)(const void*, size_t, OrtAllocator*, char**)>(io ? kSessionGetOutputName
                                                                                           : kSessionGetInputName)(
              m.session_, k, alloc, &name))
        return fail("SessionGetInput/OutputName", st);
      (io ? m.outputs_ : m.inputs_).push_back(name);
      L.take(L.fn<Status_ (*)(OrtAllocator*, void*)>(kAllocatorFree)(alloc, name));
    }
  }
  return m;
}

Result<std::map<std::string, OnnxTensor>> OrtModel::run(const std::map<std::string, OnnxTensor>& inputs) const {
  const OrtLibrary& L = *lib_;
  auto fail = [&](const std::string& what, Status_ st) {
    return make_error(path_ + ": ONNX Runtime " + what + ": " + L.take(st));
  };
  Releaser mem{&L, kReleaseMemoryInfo};
  if (Status_ st = L.fn<Status_ (*)(int, int, void**)>(kCreateCpuMemoryInfo)(kArenaAllocator, kMemTypeDefault, &mem.p))
    return fail("CreateCpuMemoryInfo", st);

  std::vector<std::vector<uint8_t>> buffers(inputs_.size());
  std::vector<Releaser> in_values;
  in_values.reserve(inputs_.size());
  std::vector<const char*> in_names;
  std::vector<const void*> in_ptrs;
  for (size_t k = 0; k < inputs_.size(); ++k) {
    auto it = inputs.find(inputs_[k]);
    if (it == inputs.end()) return make_error(path_ + ": no value for input '" + inputs_[k] + "'");
    const OnnxTensor& t = it->second;
    if (element_size(t.type) == 0)
      return make_error(path_ + ": input '" + inputs_[k] + "' has type " + onnx_type_name(t.type) +
                        ", which is not passed to ONNX Runtime");
    buffers[k] = to_bytes(t);
    in_values.emplace_back(&L, kReleaseValue);
    // ORT rejects a null data pointer even for an empty tensor: point at a dummy byte then.
    static uint8_t empty_byte = 0;
    void* data = buffers[k].empty() ? &empty_byte : buffers[k].data();
    if (Status_ st = L.fn<Status_ (*)(const void*, void*, size_t, const int64_t*, size_t, int, void**)>(
            kCreateTensorWithDataAsOrtValue)(mem.p, data, buffers[k].size(), t.shape.data(), t.shape.size(), t.type,
                                             &in_values.back().p))
      return fail("input '" + inputs_[k] + "'", st);
    in_names.push_back(inputs_[k].c_str());
    in_ptrs.push_back(in_values.back().p);
  }
  std::vector<const char*> out_names;
  for (const auto& n : outputs_) out_names.push_back(n.c_str());
  std::vector<void*> outs(outputs_.size(), nullptr);
  Status_ st = L.fn<Status_ (*)(void*, const void*, const char* const*, const void* const*, size_t, const char* const*, size_t,
                                void**)>(kRun)(session_, nullptr, in_names.data(), in_ptrs.data(), in_ptrs.size(),
                                               out_names.data(), out_names.size(), outs.data());
  std::vector<Releaser> out_values;
  out_values.reserve(outs.size());
  for (void* p : outs) out_values.emplace_back(&L, kReleaseValue, p);
  if (st) return fail("Run", st);

  std::map<std::string, OnnxTensor> result;
  for (size_t k = 0; k < outputs_.size(); ++k) {
    const std::string& name = outputs_[k];
    Releaser info{&L, kReleaseTensorTypeAndShapeInfo};
    if (Status_ s = L.fn<Status_ (*)(const void*, void**)>(kGetTensorTypeAndShape)(outs[k], &info.p))
      return fail("output '" + name + "' (not a tensor?)", s);
    int type = 0;
    size_t rank = 0, count = 0;
    if (Status_ s = L.fn<Status_ (*)(const void*, int*)>(kGetTensorElementType)(info.p, &type)) return fail("output type", s);
    if (Status_ s = L.fn<Status_ (*)(const void*, size_t*)>(kGetDimensionsCount)(info.p, &rank)) return fail("output rank", s);
    OnnxTensor t;
    t.type = type;
    t.shape.resize(rank);
    if (Status_ s = L.fn<Status_ (*)(const void*, int64_t*, size_t)>(kGetDimensions)(info.p, t.shape.data(), rank))
      return fail("output dims", s);
    if (Status_ s = L.fn<Status_ (*)(const void*, size_t*)>(kGetTensorShapeElementCount)(info.p, &count))
      return fail("output size", s);
    if (element_size(type) == 0)
      return make_error(path_ + ": output '" + name + "' has type " + onnx_type_name(type) +
                        ", which is not read back from ONNX Runtime");
    void* data = nullptr;
    if (count > 0)
      if (Status_ s = L.fn<Status_ (*)(void*, void**)>(kGetTensorMutableData)(outs[k], &data)) return fail("output data", s);
    from_bytes(type, data, count, &t);
    result[name] = std::move(t);
  }
  return result;
}

}  // namespace shrink
