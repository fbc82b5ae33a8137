#include "tools/cmd_quantize_onnx.h"

#include <cstdio>
#include <filesystem>

#include "formats/onnx_model.h"
#include "quantizer/onnx_dynamic_quant.h"
#include "quantizer/onnx_graph_edit.h"
#include "quantizer/onnx_opset_upgrade.h"
#include "quantizer/onnx_weight_quant.h"
#include "tools/cli.h"
#include "tools/cmd_quantize_onnx_static.h"

namespace shrink::cli {
namespace {

namespace fs = std::filesystem;

struct OnnxArgs {
  std::string method;
  int64_t block = 32;
  int64_t accuracy_level = 0;
  bool asymmetric = false;
  bool per_channel = false;
  bool no_quant_gather = false;
  std::string weight_type = "int8";
  std::vector<std::string> op_types, exclude_nodes;
  std::string external = "auto";
  int64_t opset = 0;  // 0: the method's own minimum
};
OnnxArgs g_args;

// Bytes of the model file and its external-data sidecar, if any.
uint64_t model_bytes(const fs::path& p) {
  std::error_code ec;
  uint64_t n = fs::file_size(p, ec);
  if (ec) n = 0;
  const fs::path data = p.string() + ".data";
  if (fs::exists(data, ec)) n += fs::file_size(data, ec);
  return n;
}

}  // namespace

Result<std::string> upgrade_for_method(onnx::ModelProto* model, const std::string& method, int64_t requested,
                                       const std::string& file) {
  // The opset each method's output needs: DequantizeLinear with block_size is opset 21; per-channel
  // (axis) QuantizeLinear/DequantizeLinear is 13; DynamicQuantizeLinear is 11.
  int64_t want = requested;
  if (want == 0)
    want = method == "weight-int4-qdq" ? 21 : (method == "weight-int8" || method == "static") ? 13 : method == "dynamic" ? 11 : 0;
  if (want == 0) return std::string();
  const int64_t from = onnx_edit::opset_version(*model, "");
  if (requested != 0 && requested < from)
    return make_error("--opset " + std::to_string(requested) + ": " + file + " already imports opset " + std::to_string(from) +
                      "; shrink does not downgrade");
  if (from >= want) return std::string();
  auto rep = upgrade_onnx_opset(model, want, file);
  if (!rep.ok()) return rep.error();
  return "opset " + std::to_string(rep->from) + " -> " + std::to_string(rep->to) + " (" + std::to_string(rep->rewritten_nodes) +
         " nodes rewritten)";
}

bool is_onnx_input(const std::string& input) {
  return fs::path(input).extension() == ".onnx";
}

void add_quantize_onnx_options(CLI::App* quant) {
  OnnxArgs& a = g_args;
  CLI::Option* type = quant->get_option("--type");
  type->required(false);
  CLI::Option* input = quant->get_option("input");
  quant->parse_complete_callback([type, input] {
    if (input->count() && is_onnx_input(input->as<std::string>())) {
      if (g_args.method.empty()) throw CLI::RequiredError("--method (ONNX input)");
    } else if (type->count() == 0) {
      throw CLI::RequiredError("--type");
    }
  });
  quant->add_option("--method", a.method,
                    "ONNX input only: weight-int4 (MatMul/Gemm -> com.microsoft.MatMulNBits, embedding Gathers -> "
                    "com.microsoft.GatherBlockQuantized), weight-int4-qdq "
                    "(int4 weights + DequantizeLinear-21 with block_size), weight-int8 (per-channel int8 weights + "
                    "DequantizeLinear for Conv/Gemm/MatMul), dynamic (DynamicQuantizeLinear + MatMulInteger/ConvInteger), "
                    "static (QDQ: uint8 activations from calibration, int8 weights; see --calib)");
  quant->add_option("--block", a.block, "ONNX 4-bit methods: weights per block along K, a power of two in 16..256")
      ->capture_default_str();
  quant->add_option("--accuracy-level", a.accuracy_level,
                    "ONNX weight-int4: MatMulNBits accuracy_level (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 compute)")
      ->capture_default_str();
  quant->add_flag("--asymmetric", a.asymmetric, "ONNX 4-bit methods: per-block zero points (default: symmetric)");
  quant->add_flag("--per-channel", a.per_channel, "ONNX dynamic/static: one weight scale per output channel");
  quant->add_flag("--no-quant-gather", a.no_quant_gather,
                  "ONNX weight-int4: keep embedding Gathers in float (default: GatherBlockQuantized with the same "
                  "blocks as the MatMuls)");
  quant->add_option("--weight-type", a.weight_type, "ONNX dynamic: int8 (symmetric) or uint8 (asymmetric) weights")
      ->capture_default_str();
  quant->add_option("--op-types", a.op_types, "ONNX: quantize only these op types (e.g. MatMul Conv)");
  quant->add_option("--exclude-nodes", a.exclude_nodes, "ONNX: node names to leave in float");
  quant->add_option("--external-data", a.external,
                    "ONNX output: auto (a .data sidecar only past ~2 GB), always, or never")
      ->capture_default_str();
  quant->add_option("--opset", a.opset,
                    "ONNX: upgrade the default-domain opset to N (<= 21) before quantizing, rewriting the ops whose "
                    "form changed; default: only when the method needs it (weight-int4-qdq 21, weight-int8 and "
                    "static 13, dynamic 11)");
  add_quantize_onnx_static_options(quant);
}

int run_quantize_onnx(const std::string& input, const std::string& output, bool dry_run) {
  const OnnxArgs& a = g_args;
  if (dry_run) return fail("--dry-run is not available for ONNX models");
  if (a.method == "static") {
    OnnxStaticCliShared shared{a.per_channel, a.op_types, a.exclude_nodes, {}, a.opset};
    if (a.external == "always") shared.write.external = OnnxWriteOptions::External::kAlways;
    else if (a.external == "never") shared.write.external = OnnxWriteOptions::External::kNever;
    return run_quantize_onnx_static(input, output, shared);
  }
  auto method = parse_onnx_quant_method(a.method);
  if (!method.ok()) return fail(method.error());
  OnnxQuantOptions opt;
  opt.method = *method;
  opt.block_size = a.block;
  opt.accuracy_level = a.accuracy_level;
  opt.asymmetric = a.asymmetric;
  opt.per_channel = a.per_channel;
  opt.quantize_gather = !a.no_quant_gather;
  if (a.weight_type == "uint8") opt.weight_uint8 = true;
  else if (a.weight_type != "int8") return fail("--weight-type " + a.weight_type + ": choose int8 or uint8");
  opt.op_types = a.op_types;
  opt.exclude_nodes = a.exclude_nodes;
  opt.file = input;
  OnnxWriteOptions wopt;
  if (a.external == "always") wopt.external = OnnxWriteOptions::External::kAlways;
  else if (a.external == "never") wopt.external = OnnxWriteOptions::External::kNever;
  else if (a.external != "auto") return fail("--external-data " + a.external + ": choose auto, always or never");
  if (fs::exists(output) && fs::equivalent(output, input)) return fail(output + ": the output would overwrite the input");

  auto model = read_onnx(input);
  if (!model.ok()) return fail(model.error());
  // The model with its tensors inline: the file's size, or the file plus the external data it loaded.
  const uint64_t before = model->proto.ByteSizeLong();
  auto upgraded = upgrade_for_method(&model->proto, a.method, a.opset, input);
  if (!upgraded.ok()) return fail(upgraded.error());

  ProgressBar bar("quantizing");
  auto progress = [&](size_t done, size_t total, const std::string& node) {
    bar.update(total ? static_cast<double>(done) / static_cast<double>(total) : 1.0, node);
  };
  auto report = opt.method == OnnxQuantMethod::kDynamic ? quantize_onnx_dynamic(&model->proto, opt, progress)
                                                        : quantize_onnx_weights(&model->proto, opt, progress);
  bar.done();
  if (!report.ok()) return fail(report.error());
  Status written = write_onnx(model->proto, output, wopt);
  if (!written.ok()) return fail(written.error());

  uint64_t float_bytes = 0, quant_bytes = 0;
  for (const OnnxQuantizedNode& n : report->quantized) float_bytes += n.float_bytes, quant_bytes += n.quantized_bytes;
  const uint64_t after = model_bytes(output);
  std::printf("shrink quantize (%s)\n", onnx_quant_method_name(opt.method));
  std::printf("  source     %s: %s\n", input.c_str(), human_bytes(before).c_str());
  std::printf("  output     %s: %s (%.1f%% of the source)\n", output.c_str(), human_bytes(after).c_str(),
              before ? 100.0 * static_cast<double>(after) / static_cast<double>(before) : 0.0);
  if (!upgraded->empty()) std::printf("  upgraded   %s\n", upgraded->c_str());
  std::printf("  quantized  %zu nodes, weights %s -> %s\n", report->quantized.size(), human_bytes(float_bytes).c_str(),
              human_bytes(quant_bytes).c_str());
  if (!report->skipped.empty()) {
    std::printf("  left float %zu nodes:\n", report->skipped.size());
    for (const std::string& s : report->skipped) std::printf("    %s\n", s.c_str());
  }
  return 0;
}

}  // namespace shrink::cli
