// `shrink quantize` and `shrink convert`: any supported input -> GGUF, one tensor at a time.
#include <cstdio>
#include <map>
#include <regex>

#include "model/model_source.h"
#include "quantizer/importance.h"
#include "quantizer/quantize_model.h"
#include "tools/cli.h"
#include "tools/cmd_quantize_onnx.h"

namespace shrink::cli {
namespace {

struct Args {
  std::string input, output, type = "auto", tokenizer;
  std::string algo = "best";
  std::string fallback = "lowest-error";
  std::string output_tensor_type, token_embedding_type;
  std::vector<std::string> tensor_types;
  bool pure = false;
  bool leave_output = false;
  bool allow_nonfinite = false;
  bool quiet = false;
  bool dry_run = false;
  std::string imatrix;
  std::vector<std::string> include_weights, exclude_weights;
};

std::string mix_list() {
  std::string s;
  for (const MixSpec& m : all_mixes()) s += (s.empty() ? "" : "|") + m.name;
  return s;
}

// --dry-run: the plan, tensor by tensor, and its totals; nothing is written.
int print_plan(const QuantPlan& plan) {
  std::printf("%-36s %-18s %-7s %12s %8s  %s\n", "tensor", "shape", "type", "bytes", "bits/w", "why");
  for (const TensorPlan& p : plan.tensors) {
    std::string shape = "[";
    for (size_t i = 0; i < p.tensor->shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(p.tensor->shape[i]);
    shape += "]";
    const double bpw = 8.0 * static_cast<double>(p.bytes) / static_cast<double>(p.tensor->n_elements());
    std::printf("%-36s %-18s %-7s %12s %8.3f  %s\n", p.tensor->name.c_str(), shape.c_str(),
                std::string(type_name(p.type)).c_str(), with_commas(p.bytes).c_str(), bpw, p.reason.c_str());
  }
  const double bpw = plan.total_weights() ? 8.0 * static_cast<double>(plan.total_bytes()) / static_cast<double>(plan.total_weights()) : 0;
  std::printf("\ntotal: %zu tensors, %s weights, %s of tensor data, %.3f bits per weight (%s)\n", plan.tensors.size(),
              with_commas(static_cast<uint64_t>(plan.total_weights())).c_str(), human_bytes(plan.total_bytes()).c_str(), bpw,
              plan.mix.name.c_str());
  return 0;
}

// The dominant storage type of the source's 2-D weights, for `convert` without --outtype.
std::string source_float_type(const ModelSource& m) {
  std::map<TypeId, int64_t> count;
  for (const WeightTensor& t : m.tensors)
    if (t.shape.size() >= 2) count[t.source_type] += t.n_elements();
  TypeId best = TypeId::F32;
  int64_t most = -1;
  for (auto [type, n] : count)
    if (n > most) best = type, most = n;
  return std::string(type_name(best == TypeId::F16 || best == TypeId::BF16 ? best : TypeId::F32));
}

Result<TypeId> parse_type(const std::string& flag, const std::string& name) {
  auto t = type_from_name(name);
  if (!t) return make_error(flag + " " + name + ": unknown type");
  return *t;
}

Result<QuantizeOptions> build_options(const Args& a, const ModelSource& model, bool is_convert) {
  QuantizeOptions q;
  q.output = a.output;
  q.allow_nonfinite = a.allow_nonfinite;
  q.plan.mix = a.type == "auto" ? source_float_type(model) : a.type;
  SHRINK_ASSIGN(MixSpec mix, find_mix(q.plan.mix));
  if (is_convert && traits(mix.default_type).quantized)
    return make_error("convert writes float types only (f32|f16|bf16); use `shrink quantize --type " + a.type + "`");
  if (a.algo == "ggml") q.algo = QuantAlgo::kGgml;
  else if (a.algo == "best") q.algo = QuantAlgo::kBest;
  else return make_error("--algo " + a.algo + ": choose ggml or best");
  if (a.fallback == "llama") q.plan.fallback = FallbackRule::kLlama;
  else if (a.fallback != "lowest-error") return make_error("--fallback " + a.fallback + ": choose lowest-error or llama");
  MixOverrides& o = q.plan.overrides;
  if (!a.output_tensor_type.empty()) {
    SHRINK_ASSIGN(o.output, parse_type("--output-tensor-type", a.output_tensor_type));
  }
  if (!a.token_embedding_type.empty()) {
    SHRINK_ASSIGN(o.token_embd, parse_type("--token-embedding-type", a.token_embedding_type));
  }
  for (const std::string& tt : a.tensor_types) {
    SHRINK_ASSIGN(auto pair, parse_tensor_type_override(tt));
    o.tensor_types.push_back(std::move(pair));
  }
  o.pure = a.pure;
  o.leave_output = a.leave_output;
  return q;
}

int run(const Args& a, bool is_convert) {
  OpenOptions open;
  open.tokenizer = a.tokenizer;
  auto model = open_model(a.input, open);
  if (!model.ok()) return fail(model.error());
  for (const std::string& w : model->warnings) warn(w);
  // Only quantizing re-rounds already-quantized blocks; reading them (convert, eval, calibrate) does not.
  if (!is_convert)
    for (const WeightTensor& t : model->tensors)
      if (traits(t.source_type).quantized) {
        warn(a.input + ": some tensors are already quantized (" + t.name + " is " + std::string(type_name(t.source_type)) +
             "); requantizing them compounds the error (start from the F32/F16/BF16 weights when you can)");
        break;
      }

  auto options = build_options(a, *model, is_convert);
  if (!options.ok()) return fail(options.error());
  QuantizeOptions& q = *options;
  std::shared_ptr<Importance> importance;
  if (!a.imatrix.empty()) {
    auto loaded = Importance::load(a.imatrix, *model, a.include_weights, a.exclude_weights);
    if (!loaded.ok()) return fail(loaded.error());
    importance = std::make_shared<Importance>(std::move(loaded).value());
    q.importance = [importance](const WeightTensor& t) { return importance->find(t.name); };
    q.plan.overrides.has_imatrix = true;
  } else if (!a.include_weights.empty() || !a.exclude_weights.empty()) {
    return fail("--include-weights/--exclude-weights need --imatrix");
  }

  if (a.dry_run) {
    auto plan = resolve_plan(*model, q);
    if (!plan.ok()) return fail(plan.error());
    return print_plan(*plan);
  }

  ProgressBar bar(is_convert ? "converting" : "quantizing");
  q.on_progress = [&](const QuantizeProgress& p) {
    double f = p.bytes_total ? static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes_total) : 1.0;
    bar.update(f, p.current ? *p.current : std::string("done"));
  };
  auto result = quantize_model(*model, q);
  bar.done();
  if (!result.ok()) return fail(result.error());
  const QuantizeSummary& s = *result;

  std::map<std::string, int> reasons;
  std::map<std::string, int> types;
  for (const TensorPlan& p : s.plan.tensors) {
    types[std::string(type_name(p.type))]++;
    if (!p.reason.empty()) reasons[p.reason]++;
  }
  std::string type_counts;
  for (auto& [name, n] : types) type_counts += (type_counts.empty() ? "" : ", ") + std::to_string(n) + " " + name;
  if (!a.quiet) {
    std::printf("wrote %s\n", a.output.c_str());
    std::printf("  source     %s (%s, %s)\n", a.input.c_str(), model->format.c_str(), model->config.arch.c_str());
    std::printf("  tensors    %zu (%s)\n", s.n_tensors, type_counts.c_str());
    for (auto& [why, n] : reasons) std::printf("             %d x %s\n", n, why.c_str());
    if (importance) {
      std::printf("  imatrix    %s", a.imatrix.c_str());
      if (s.unweighted.empty()) std::printf(" (every quantized tensor weighted)\n");
      else {
        std::printf("; no entry, quantized unweighted: %zu tensors:", s.unweighted.size());
        for (const std::string& n : s.unweighted) std::printf(" %s", n.c_str());
        std::printf("\n");
      }
    }
    std::printf("  weights    %s\n", with_commas(static_cast<uint64_t>(s.n_weights)).c_str());
    std::printf("  input      %s of weights\n", human_bytes(s.input_bytes).c_str());
    std::printf("  output     %s file, %s of weights, %.3f bits per weight (%s, algo %s)\n", human_bytes(s.output_bytes).c_str(),
                human_bytes(s.output_tensor_bytes).c_str(), s.bits_per_weight, s.plan.mix.name.c_str(), a.algo.c_str());
    std::printf("  time       %.2f s\n", s.seconds);
  }
  return 0;
}

void add_common(CLI::App* sub, Args& a) {
  sub->add_option("input", a.input, "Hugging Face folder, .safetensors (with config.json beside it), .gguf, or llama2.c .bin")
      ->required();
  CLI::Option* out = sub->add_option("-o,--output", a.output, "output .gguf (written to a temp file, then renamed)");
  CLI::Option* dry = sub->add_flag("--dry-run", a.dry_run, "print the plan (tensor, type, bytes, bits per weight) and write nothing");
  out->excludes(dry);
  sub->callback([out, dry] {
    if (out->count() == 0 && dry->count() == 0) throw CLI::RequiredError("--output");
  });
  sub->add_option("--tokenizer", a.tokenizer, "llama2.c inputs: the tok*.bin or SentencePiece .model vocabulary");
  sub->add_flag("--allow-nonfinite", a.allow_nonfinite, "write NaN/Inf weights instead of refusing them");
  sub->add_flag("-q,--quiet", a.quiet, "print nothing on success");
}

}  // namespace

void add_convert_and_quantize(CLI::App& root, std::vector<Command>& commands) {
  static Args q, c;
  CLI::App* quant = root.add_subcommand("quantize", "quantize a model to a GGUF that llama.cpp runs");
  add_common(quant, q);
  quant->add_option("-t,--type", q.type, "type or llama.cpp mix: " + mix_list())->required();
  quant->add_option("--algo", q.algo,
                    "best: shrink's scale search (lower weighted error, same bytes layout); ggml: byte-identical to llama.cpp")
      ->capture_default_str();
  quant->add_option("--fallback", q.fallback,
                    "rows that do not fit a 256-block type: lowest-error (least error among types no larger than llama.cpp's fallback) or llama (its fallback as is)")
      ->capture_default_str();
  quant->add_option("--output-tensor-type", q.output_tensor_type, "type of output.weight");
  quant->add_option("--token-embedding-type", q.token_embedding_type, "type of token_embd.weight");
  quant->add_option("--tensor-type", q.tensor_types, "REGEX=TYPE for matching tensors (repeatable; first match wins)");
  quant->add_flag("--pure", q.pure, "no per-tensor mixing: every quantizable tensor gets the mix's type");
  quant->add_flag("--leave-output-tensor", q.leave_output, "do not quantize output.weight");
  quant->add_option("--imatrix", q.imatrix, "importance matrix (llama.cpp imatrix GGUF or legacy .dat)");
  quant->add_option("--include-weights", q.include_weights, "use the importance matrix only for tensors whose name contains this");
  quant->add_option("--exclude-weights", q.exclude_weights, "do not use the importance matrix for tensors whose name contains this");
  add_quantize_onnx_options(quant);
  commands.push_back({quant, [] { return is_onnx_input(q.input) ? run_quantize_onnx(q.input, q.output, q.dry_run) : run(q, false); }});

  CLI::App* conv = root.add_subcommand("convert", "convert a model to GGUF without quantizing");
  add_common(conv, c);
  conv->add_option("--outtype", c.type, "f32|f16|bf16, or auto: the source's own float type")->capture_default_str();
  commands.push_back({conv, [] { return run(c, true); }});
}

}  // namespace shrink::cli
