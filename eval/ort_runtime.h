// ONNX Runtime (CPU) loaded at run time through its C API, so `shrink eval` can run float and
// quantized ONNX models in the runtime they are deployed with. Nothing is linked at build time:
// the shared library (for instance the libonnxruntime.so.1 that the onnxruntime-node npm package
// ships) is dlopen'ed and its function table is taken from the one exported entry, OrtGetApiBase.
//
// Library search order (find_ort_library):
//   1. the explicit path (`--ort-lib PATH`), when given: only that file;
//   2. else $SHRINK_ORT_LIB, when set: only that file;
//   3. else next to the checkout the executable was built in: <exe dir>/../tests/interop/node_modules/
//      onnxruntime-node/bin/napi-v*/linux/x64/libonnxruntime.so.1 (and the same under <exe dir>/);
//   4. else "libonnxruntime.so.1" through the dynamic loader's own search (LD_LIBRARY_PATH, ldconfig).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "calibration/onnx_executor.h"
#include "common/result.h"

namespace shrink {

struct OrtLibrary;  // the dlopen handle and the OrtApi table

// Loads the library at `path` and asks it for the C API table of version 20 (ORT 1.20; every
// later release still serves it, the table being append-only). Errors name the path and the reason.
Result<std::shared_ptr<OrtLibrary>> load_ort_library(const std::string& path);
// Walks the search order above; `explicit_path` empty means "not given".
Result<std::shared_ptr<OrtLibrary>> find_ort_library(const std::string& explicit_path);
// The library's file as loaded and its version string ("1.30.0").
std::string ort_library_path(const OrtLibrary& lib);
std::string ort_library_version(const OrtLibrary& lib);

struct OrtModelOptions {
  int intra_op_threads = 1;  // 0: ORT's default (one per core)
  int optimization = 99;     // GraphOptimizationLevel: 0 disabled, 1 basic, 2 extended, 99 all
};

// One model loaded in an ORT session (ORT reads external data next to the file itself).
class OrtModel {
 public:
  static Result<OrtModel> open(std::shared_ptr<OrtLibrary> lib, const std::string& model_path,
                               const OrtModelOptions& opt = {});
  OrtModel(OrtModel&&) noexcept;
  OrtModel& operator=(OrtModel&&) noexcept;
  ~OrtModel();

  const std::vector<std::string>& input_names() const { return inputs_; }
  const std::vector<std::string>& output_names() const { return outputs_; }

  // Runs one sample (every input by name) and returns every output by name. Inputs and outputs of
  // FLOAT and the integer/BOOL types OnnxTensor holds are converted; anything else is an error
  // naming the tensor and its type.
  Result<std::map<std::string, OnnxTensor>> run(const std::map<std::string, OnnxTensor>& inputs) const;

 private:
  OrtModel() = default;
  std::shared_ptr<OrtLibrary> lib_;
  void* session_ = nullptr;
  std::string path_;
  std::vector<std::string> inputs_, outputs_;
};

}  // namespace shrink
