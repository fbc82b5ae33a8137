// `shrink export --to onnx MODEL -o model.onnx [--bits 4|8] [--block 32] [--opset 21]`: a Llama-family
// model as an ONNX decoder with a KV cache that ONNX Runtime runs (model/onnx_export.h has the graph's
// inputs, outputs and operators).
#include <cstdio>
#include <filesystem>
#include <map>

#include "formats/onnx_model.h"
#include "model/llama_model.h"
#include "model/model_source.h"
#include "model/onnx_export.h"
#include "tools/cli.h"

namespace shrink::cli {
namespace {

struct Args {
  std::string to = "onnx";
  std::string input, output, tokenizer;
  int bits = 0;
  int block = 32;
  int opset = 21;
  std::string external = "auto";
  bool no_block_map = false;
};

int run_export(const Args& a) {
  if (a.to != "onnx") return fail("--to: only \"onnx\" is supported, got \"" + a.to + "\"");
  if (a.bits != 0 && a.bits != 4 && a.bits != 8) return fail("--bits must be 4 or 8, got " + std::to_string(a.bits));
  OnnxWriteOptions wo;
  if (a.external == "auto") wo.external = OnnxWriteOptions::External::kAuto;
  else if (a.external == "always") wo.external = OnnxWriteOptions::External::kAlways;
  else if (a.external == "never") wo.external = OnnxWriteOptions::External::kNever;
  else return fail("--external must be auto, always or never, got \"" + a.external + "\"");

  OpenOptions oo;
  oo.tokenizer = a.tokenizer;
  auto source = open_model(a.input, oo);
  if (!source.ok()) return fail(source.error());
  // Re-quantized matrices are named after the export (Q4_0/Q8_0 blocks may be copied exactly).
  for (const std::string& w : source->warnings) warn(w);
  auto model = load_llama_model(*source);
  if (!model.ok()) return fail(model.error());

  OnnxExportOptions eo;
  eo.bits = a.bits;
  eo.block = a.block;
  eo.opset = a.opset;
  eo.map_ggml_blocks = !a.no_block_map;
  eo.source_name = std::filesystem::path(a.input).filename().string();
  OnnxExportReport report;
  auto proto = export_llama_onnx(*model, eo, &report);
  if (!proto.ok()) return fail(proto.error());
  if (Status s = write_onnx(*proto, a.output, wo); !s.ok()) return fail(s.error());

  std::map<std::string, int> counts;
  std::string kept_f32, requantized;
  for (const auto& m : report.matrices) {
    ++counts[m.encoding];
    if (!m.note.empty()) kept_f32 += (kept_f32.empty() ? "" : ", ") + m.name;
    if (m.encoding == "matmulnbits-rtn" && m.source_type != TypeId::F32 && m.source_type != TypeId::F16 &&
        m.source_type != TypeId::BF16)
      requantized += (requantized.empty() ? "" : ", ") + m.name;
  }
  if (!kept_f32.empty())
    warn("rows not a multiple of the block " + std::to_string(a.block) + " stay F32 MatMul: " + kept_f32);
  if (!requantized.empty())
    warn("re-quantized from already-quantized weights (the errors compound): " + requantized);
  uint64_t file_bytes = 0;
  std::error_code ec;
  for (const std::string& f : {a.output, a.output + ".data"})
    if (std::filesystem::exists(f, ec)) file_bytes += std::filesystem::file_size(f, ec);
  std::printf("%s: %s, %lld layers, opset %d, weights %s\n", a.output.c_str(), model->config.arch.c_str(),
              static_cast<long long>(model->config.n_layer), a.opset,
              a.bits == 0 ? "f32" : (std::to_string(a.bits) + "-bit MatMulNBits, block " + std::to_string(a.block)).c_str());
  for (const auto& [enc, n] : counts) std::printf("  %-24s %d matrices\n", enc.c_str(), n);
  std::printf("  file size %s (%s bytes)\n", human_bytes(file_bytes).c_str(), with_commas(file_bytes).c_str());
  return 0;
}

}  // namespace

void add_export(CLI::App& root, std::vector<Command>& commands) {
  static Args a;
  CLI::App* sub = root.add_subcommand(
      "export", "write a Llama-family model as an ONNX decoder with a KV cache (input_ids, attention_mask, "
                "position_ids, past_key_values.* -> logits, present.*) that ONNX Runtime runs");
  sub->add_option("--to", a.to, "target format; only onnx")->capture_default_str();
  sub->add_option("input", a.input, "model: .gguf, Hugging Face folder, .safetensors, or llama2.c .bin")->required();
  sub->add_option("-o,--output", a.output, "the .onnx file to write (external weights go to <file>.data)")->required();
  sub->add_option("--tokenizer", a.tokenizer, "llama2.c inputs: the tok*.bin or SentencePiece .model vocabulary");
  sub->add_option("--bits", a.bits,
                  "4 or 8: weight products as ONNX Runtime's com.microsoft.MatMulNBits, round-to-nearest per block "
                  "(with a zero point); default: F32 weights and standard MatMul");
  sub->add_option("--block", a.block, "weights per quantization block along K for --bits: a power of two, 16..256")
      ->capture_default_str();
  sub->add_option("--opset", a.opset, "ONNX default-domain opset, 13..24")->capture_default_str();
  sub->add_option("--external", a.external,
                  "weights in a <file>.data sidecar: auto (only when the model would pass protobuf's 2 GB), "
                  "always, never")
      ->capture_default_str();
  sub->add_flag("--no-block-map", a.no_block_map,
                "--block 32 with --bits 4 (8) on a GGUF whose matrices are Q4_0 (Q8_0): re-quantize from the "
                "dequantized weights instead of copying ggml's blocks exactly (scale d, zero point 8 (128))");
  commands.push_back({sub, [] { return run_export(a); }});
}

}  // namespace shrink::cli
