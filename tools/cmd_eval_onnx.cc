#include "tools/cmd_eval_onnx.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "calibration/onnx_calib_data.h"
#include "eval/onnx_compare.h"
#include "eval/ort_runtime.h"
#include "formats/onnx_model.h"
#include "tools/cli.h"

namespace shrink::cli {
namespace {
namespace fs = std::filesystem;

struct EvalOnnxArgs {
  std::string quantized, inputs;
  int random = 0;
  bool per_node = false;
  std::vector<std::string> shapes;
  uint32_t seed = 2;
  std::string runtime;  // "ort", "shrink", or empty: ORT when its library is found
  std::string ort_lib;
  int ort_threads = 1;
};
EvalOnnxArgs g_eval;

Result<std::map<std::string, std::vector<int64_t>>> parse_shapes(const std::vector<std::string>& v) {
  std::map<std::string, std::vector<int64_t>> m;
  for (const auto& s : v) {
    const size_t colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0) return make_error("--input-shapes " + s + ": expected NAME:D1xD2x...");
    std::vector<int64_t> dims;
    std::string rest = s.substr(colon + 1) + "x";
    size_t p = 0, x;
    while ((x = rest.find('x', p)) != std::string::npos) {
      const std::string d = rest.substr(p, x - p);
      if (d.empty() || d.find_first_not_of("0123456789") != std::string::npos || std::stoll(d) < 1)
        return make_error("--input-shapes " + s + ": '" + d + "' is not a positive dim");
      dims.push_back(std::stoll(d));
      p = x + 1;
    }
    m[s.substr(0, colon)] = dims;
  }
  return m;
}

nlohmann::json stats_json(const OnnxErrorStats& s) {
  nlohmann::json j = {{"sqnr_db", s.sqnr_db()}, {"cosine", s.cosine()}, {"max_abs", s.max_abs}, {"values", s.count}};
  if (s.top1() >= 0) j["top1_agreement"] = s.top1();
  return j;
}

}  // namespace

bool is_onnx_eval(const std::string& input) { return fs::path(input).extension() == ".onnx"; }

void add_eval_onnx_options(CLI::App* eval) {
  EvalOnnxArgs& a = g_eval;
  eval->add_option("--quantized", a.quantized, "ONNX: the quantized model to compare with the float INPUT.onnx");
  eval->add_option("--inputs", a.inputs,
                   "ONNX: input samples, laid out as for quantize --calib (one subfolder per sample with "
                   "<input>.pb/.npy or input_<k>.pb/.npy)");
  eval->add_option("--random", a.random, "ONNX: compare on N samples of uniform [0,1) FLOAT inputs instead of --inputs");
  eval->add_option("--input-shapes", a.shapes, "ONNX with --random: NAME:D1xD2x... for inputs with symbolic dims");
  eval->add_flag("--per-node", a.per_node,
                 "ONNX: also each quantized activation: the float tensor vs its DequantizeLinear output in the "
                 "quantized model (always computed by shrink's executor, whatever --runtime runs the outputs)");
  eval->add_option("--runtime", a.runtime,
                   "ONNX: what runs both models for the output metrics: 'ort' (ONNX Runtime, loaded at run time) or "
                   "'shrink' (shrink's reference executor). Default: ort when its library is found, else shrink")
      ->check(CLI::IsMember({"ort", "shrink"}));
  eval->add_option("--ort-lib", a.ort_lib,
                   "ONNX: path of ONNX Runtime's shared library (libonnxruntime.so.1, 1.20 or later). Searched "
                   "otherwise in this order: $SHRINK_ORT_LIB; tests/interop/node_modules/onnxruntime-node/bin/"
                   "napi-v*/linux/x64/ of the checkout holding the shrink executable; the dynamic loader's path");
  eval->add_option("--ort-threads", a.ort_threads, "ONNX with ONNX Runtime: intra-op threads (0: one per core)")
      ->check(CLI::NonNegativeNumber);
}

int run_eval_onnx(const std::string& input, bool json) {
  const EvalOnnxArgs& a = g_eval;
  if (a.quantized.empty()) return fail("eval of an ONNX model needs --quantized Q.onnx");
  if (a.inputs.empty() == (a.random == 0)) return fail("give exactly one of --inputs DIR and --random N");
  auto shapes = parse_shapes(a.shapes);
  if (!shapes.ok()) return fail(shapes.error());
  auto fm = read_onnx(input);
  if (!fm.ok()) return fail(fm.error());
  auto qm = read_onnx(a.quantized);
  if (!qm.ok()) return fail(qm.error());
  auto fe = OnnxExecutor::create(fm->proto, input);
  if (!fe.ok()) return fail(fe.error());
  auto qe = OnnxExecutor::create(qm->proto, a.quantized);
  if (!qe.ok()) return fail(qe.error());
  auto samples = a.inputs.empty() ? random_calibration(*fe, a.random, *shapes, a.seed) : load_calibration_dir(a.inputs, *fe);
  if (!samples.ok()) return fail(samples.error());

  // The runtime for the outputs. Asked for explicitly (--runtime ort, --ort-lib, $SHRINK_ORT_LIB), a
  // missing library is an error; by default its absence falls back to the executor with a note.
  std::shared_ptr<OrtLibrary> ort;
  if (a.runtime != "shrink") {
    auto lib = find_ort_library(a.ort_lib);
    const char* env = std::getenv("SHRINK_ORT_LIB");
    const bool asked = a.runtime == "ort" || !a.ort_lib.empty() || (env && *env);
    if (lib.ok()) ort = *lib;
    else if (asked) return fail(lib.error());
    else std::fprintf(stderr, "shrink: note: ONNX Runtime not found, outputs computed by shrink's executor\n");
  }
  std::optional<OrtModel> fort, qort;
  if (ort) {
    OrtModelOptions oo;
    oo.intra_op_threads = a.ort_threads;
    auto f = OrtModel::open(ort, input, oo);
    if (!f.ok()) return fail(f.error());
    auto q = OrtModel::open(ort, a.quantized, oo);
    if (!q.ok()) return fail(q.error());
    fort.emplace(std::move(*f));
    qort.emplace(std::move(*q));
  }
  const std::string runtime = ort ? "onnxruntime " + ort_library_version(*ort) : "shrink";

  OnnxCompareReport rep;
  std::map<std::string, std::string> dq_of;  // float tensor -> DQ output in the quantized model
  if (a.per_node)
    for (const auto& [t, dq] : dequantized_activations(qm->proto)) {
      dq_of[t] = dq;
      rep.nodes.push_back({t, dq, {}});
    }
  std::map<std::string, size_t> node_index;
  for (size_t k = 0; k < rep.nodes.size(); ++k) node_index[rep.nodes[k].dequantized] = k;
  ProgressBar bar("evaluating");
  for (size_t s = 0; s < samples->size(); ++s) {
    const auto& in = (*samples)[s];
    std::map<std::string, OnnxTensor> float_vals;  // this sample's float tensors the per-node view needs
    OnnxRunOptions fo;
    if (a.per_node) {
      for (const auto& [name, t] : in)
        if (dq_of.count(name)) float_vals[name] = t;
      fo.observer = [&](const onnx::NodeProto&, const std::vector<std::string>& names, const std::vector<const OnnxTensor*>& vals) {
        for (size_t k = 0; k < names.size(); ++k)
          if (dq_of.count(names[k])) float_vals[names[k]] = *vals[k];
      };
    }
    // shrink's executor runs when it computes the outputs or the per-node view needs its activations.
    const bool run_shrink = !ort || a.per_node;
    Result<std::map<std::string, OnnxTensor>> fo_out = run_shrink ? fe->run(in, fo) : fort->run(in);
    if (!fo_out.ok()) return fail(fo_out.error());
    Status node_status;
    OnnxRunOptions qo;
    if (a.per_node)
      qo.observer = [&](const onnx::NodeProto&, const std::vector<std::string>& names, const std::vector<const OnnxTensor*>& vals) {
        for (size_t k = 0; k < names.size(); ++k) {
          auto it = node_index.find(names[k]);
          if (it == node_index.end()) continue;
          auto& node = rep.nodes[it->second];
          auto fv = float_vals.find(node.tensor);
          if (fv == float_vals.end()) continue;  // not computed by the float model on this path
          Status st = add_node_sample(&node, fv->second, *vals[k]);
          if (!st.ok() && node_status.ok()) node_status = st;
        }
      };
    Result<std::map<std::string, OnnxTensor>> qo_out = run_shrink ? qe->run(in, qo) : qort->run(in);
    if (!qo_out.ok()) return fail(qo_out.error());
    if (!node_status.ok()) return fail(node_status.error());
    if (ort && run_shrink) {  // the per-node pass ran shrink's executor: outputs still come from ORT
      fo_out = fort->run(in);
      if (!fo_out.ok()) return fail(fo_out.error());
      qo_out = qort->run(in);
      if (!qo_out.ok()) return fail(qo_out.error());
    }
    Status st = add_output_sample(&rep, fe->output_names(), *fo_out, *qo_out);
    if (!st.ok()) return fail(st.error());
    bar.update(static_cast<double>(s + 1) / static_cast<double>(samples->size()), "");
  }
  bar.done();

  if (json) {
    nlohmann::json j;
    j["float"] = input;
    j["quantized"] = a.quantized;
    j["samples"] = rep.samples;
    j["runtime"] = runtime;
    if (ort) j["ort_library"] = ort_library_path(*ort);
    j["outputs"] = nlohmann::json::object();
    for (const auto& [name, s] : rep.outputs) j["outputs"][name] = stats_json(s);
    if (a.per_node) {
      j["nodes"] = nlohmann::json::array();
      for (const auto& n : rep.nodes) {
        auto e = stats_json(n.stats);
        e["tensor"] = n.tensor;
        j["nodes"].push_back(e);
      }
    }
    std::printf("%s\n", j.dump(1).c_str());
    return 0;
  }
  std::printf("%s vs %s, %d samples, outputs run by %s\n", a.quantized.c_str(), input.c_str(), rep.samples,
              runtime.c_str());
  std::printf("%-32s %10s %10s %12s %8s\n", "output", "SQNR dB", "cosine", "max |diff|", "top-1");
  for (const auto& [name, s] : rep.outputs) {
    std::printf("%-32s %10.2f %10.6f %12.6g ", name.c_str(), s.sqnr_db(), s.cosine(), s.max_abs);
    if (s.top1() >= 0) std::printf("%7.1f%%\n", 100.0 * s.top1());
    else std::printf("%8s\n", "-");
  }
  if (a.per_node) {
    std::printf("\n%-48s %10s %10s %12s\n", "quantized activation (shrink executor)", "SQNR dB", "cosine", "max |diff|");
    for (const auto& n : rep.nodes) {
      if (n.stats.count == 0) continue;
      std::printf("%-48s %10.2f %10.6f %12.6g\n", n.tensor.c_str(), n.stats.sqnr_db(), n.stats.cosine(), n.stats.max_abs);
    }
  }
  return 0;
}

}  // namespace shrink::cli
