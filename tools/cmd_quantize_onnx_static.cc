#include "tools/cmd_quantize_onnx_static.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "calibration/onnx_calibrate.h"
#include "quantizer/onnx_static_quant.h"
#include "tools/cmd_quantize_onnx.h"
#include "tools/cli.h"

namespace shrink::cli {
namespace {
namespace fs = std::filesystem;

struct StaticArgs {
  std::string calib_dir;
  int calib_random = 0;
  std::string calibrator = "minmax";
  bool moving_average = false;
  double percentile = 99.999;
  std::vector<std::string> input_shapes;
  uint32_t seed = 1;
};
StaticArgs g_static;

// "name:1x3x224x224" -> {name, {1, 3, 224, 224}}
Result<std::pair<std::string, std::vector<int64_t>>> parse_shape(const std::string& s) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return make_error("--input-shape " + s + ": expected NAME:D1xD2x...");
  std::vector<int64_t> dims;
  std::string rest = s.substr(colon + 1);
  size_t p = 0;
  while (p <= rest.size()) {
    const size_t x = rest.find('x', p);
    const std::string d = rest.substr(p, x == std::string::npos ? std::string::npos : x - p);
    try {
      size_t used = 0;
      const long long v = std::stoll(d, &used);
      if (used != d.size() || v < 1) throw std::invalid_argument(d);
      dims.push_back(v);
    } catch (...) {
      return make_error("--input-shape " + s + ": '" + d + "' is not a positive dim");
    }
    if (x == std::string::npos) break;
    p = x + 1;
  }
  return std::make_pair(s.substr(0, colon), dims);
}

}  // namespace

void add_quantize_onnx_static_options(CLI::App* quant) {
  StaticArgs& a = g_static;
  quant->add_option("--calib", a.calib_dir,
                    "ONNX static: calibration samples: a folder with one subfolder per sample holding "
                    "<input>.pb/.npy or input_<k>.pb/.npy (ONNX test_data_set layout); a single-input model may "
                    "instead have one .pb/.npy file per sample directly in the folder");
  quant->add_option("--calib-random", a.calib_random,
                    "ONNX static: calibrate on N samples of uniform [0,1) FLOAT inputs instead of --calib");
  quant->add_option("--calibrator", a.calibrator, "ONNX static: activation ranges by minmax, percentile or entropy (KL)")
      ->capture_default_str();
  quant->add_flag("--moving-average", a.moving_average,
                  "ONNX static, minmax: exponential moving average (constant 0.01) of per-sample min/max");
  quant->add_option("--percentile", a.percentile, "ONNX static, percentile: the share of values kept, in (50, 100]")
      ->capture_default_str();
  quant->add_option("--input-shape", a.input_shapes,
                    "ONNX static with --calib-random: NAME:D1xD2x... for inputs with symbolic dims "
                    "(default 1 for the first symbolic dim, 64 for the others)");
  quant->add_option("--seed", a.seed, "ONNX static: seed of --calib-random")->capture_default_str();
}

int run_quantize_onnx_static(const std::string& input, const std::string& output, const OnnxStaticCliShared& shared) {
  const StaticArgs& a = g_static;
  if (a.calib_dir.empty() == (a.calib_random == 0)) return fail("--method static needs exactly one of --calib DIR and --calib-random N");
  auto kind = parse_calibrator(a.calibrator);
  if (!kind.ok()) return fail(kind.error());
  if (!(a.percentile > 50 && a.percentile <= 100)) return fail("--percentile " + std::to_string(a.percentile) + ": must lie in (50, 100]");
  if (a.moving_average && *kind != CalibratorKind::kMinMax) return fail("--moving-average applies to --calibrator minmax only");
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& s : a.input_shapes) {
    auto p = parse_shape(s);
    if (!p.ok()) return fail(p.error());
    shapes[p->first] = p->second;
  }
  if (fs::exists(output) && fs::equivalent(output, input)) return fail(output + ": the output would overwrite the input");

  const auto t0 = std::chrono::steady_clock::now();
  auto model = read_onnx(input);
  if (!model.ok()) return fail(model.error());
  // Opset 13 gives standard per-channel QuantizeLinear/DequantizeLinear and a graph ONNX Runtime optimizes at
  // every level (its QDQ fusions write opset >= 10 nodes). When the default upgrade is refused, the model
  // keeps its opset and gets com.microsoft Q/DQ instead.
  std::string upgraded;
  if (auto up = upgrade_for_method(&model->proto, "static", shared.opset, input); up.ok()) {
    upgraded = *up;
  } else if (shared.opset != 0) {
    return fail(up.error());
  } else {
    upgraded = "kept the model's opset (" + up.error().message + ")";
  }
  OnnxStaticOptions opt;
  opt.per_channel = shared.per_channel;
  opt.op_types = shared.op_types;
  opt.exclude_nodes = shared.exclude_nodes;
  opt.file = input;
  auto tensors = onnx_static_activations(model->proto, opt);
  if (!tensors.ok()) return fail(tensors.error());
  auto ex = OnnxExecutor::create(model->proto, input);
  if (!ex.ok()) return fail(ex.error());
  auto samples = a.calib_dir.empty() ? random_calibration(*ex, a.calib_random, shapes, a.seed)
                                     : load_calibration_dir(a.calib_dir, *ex);
  if (!samples.ok()) return fail(samples.error());
  CalibratorOptions copt;
  copt.kind = *kind;
  copt.moving_average = a.moving_average;
  copt.percentile = a.percentile;
  ProgressBar bar("calibrating");
  auto cal = calibrate_onnx(*ex, *samples, *tensors, copt, [&](size_t done, size_t total) {
    bar.update(static_cast<double>(done) / static_cast<double>(total), std::to_string(done) + "/" + std::to_string(total));
  });
  bar.done();
  if (!cal.ok()) return fail(cal.error());
  std::map<std::string, std::array<float, 2>> ranges;
  for (const auto& [name, r] : cal->ranges) ranges[name] = {r.rmin, r.rmax};
  const uint64_t before = model->proto.ByteSizeLong();
  auto rep = quantize_onnx_static(&model->proto, ranges, opt);
  if (!rep.ok()) return fail(rep.error());
  Status w = write_onnx(model->proto, output, shared.write);
  if (!w.ok()) return fail(w.error());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::error_code ec;
  const uint64_t after = fs::file_size(output, ec);
  std::printf("shrink quantize (static QDQ, %s%s, %zu samples)\n", a.calibrator.c_str(), a.moving_average ? " moving-average" : "",
              samples->size());
  std::printf("  source     %s: %s\n", input.c_str(), human_bytes(before).c_str());
  std::printf("  output     %s: %s\n", output.c_str(), human_bytes(after).c_str());
  if (!upgraded.empty()) std::printf("  upgraded   %s\n", upgraded.c_str());
  std::printf("  quantized  %d nodes (%d inside If/Loop bodies): %d activations (uint8), %d weights (int8%s) %s -> %s, "
              "%d biases (int32)\n",
              rep->quantized_nodes, rep->quantized_body_nodes, rep->qdq_activations, rep->quantized_weights, opt.per_channel ? ", per channel" : "",
              human_bytes(rep->float_weight_bytes).c_str(), human_bytes(rep->quantized_weight_bytes).c_str(), rep->quantized_biases);
  if (!cal->not_observed.empty()) std::printf("  not float at run time (left as is): %zu tensors\n", cal->not_observed.size());
  if (!rep->skipped.empty()) {
    std::printf("  left float %zu nodes:\n", rep->skipped.size());
    for (const auto& s : rep->skipped) std::printf("    %s\n", s.c_str());
  }
  std::printf("  time       %.2f s\n", secs);
  return 0;
}

}  // namespace shrink::cli
