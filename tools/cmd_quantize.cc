// `shrink quantize` and `shrink convert`: any supported input -> GGUF, one tensor at a time.
#include <cstdio>
#include <map>

#include "model/model_source.h"
#include "quantizer/quantize_model.h"
#include "tools/cli.h"

namespace shrink::cli {
namespace {

struct Args {
  std::string input, output, type = "auto", tokenizer;
  bool allow_nonfinite = false;
  bool quiet = false;
  bool dry_run = false;
};

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
  std::printf("\ntotal: %zu tensors, %s weights, %s of tensor data, %.3f bits per weight\n", plan.tensors.size(),
              with_commas(static_cast<uint64_t>(plan.total_weights())).c_str(), human_bytes(plan.total_bytes()).c_str(), bpw);
  return 0;
}

std::string type_list() {
  std::string s;
  for (TypeId t : plannable_types()) s += (s.empty() ? "" : "|") + std::string(type_name(t));
  return s;
}

// The dominant storage type of the source's 2-D weights, for `convert` without --outtype.
TypeId source_float_type(const ModelSource& m) {
  std::map<TypeId, int64_t> count;
  for (const WeightTensor& t : m.tensors)
    if (t.shape.size() >= 2) count[t.source_type] += t.n_elements();
  TypeId best = TypeId::F32;
  int64_t most = -1;
  for (auto [type, n] : count)
    if (n > most) best = type, most = n;
  return (best == TypeId::F16 || best == TypeId::BF16) ? best : TypeId::F32;
}

int run(const Args& a, bool is_convert) {
  OpenOptions open;
  open.tokenizer = a.tokenizer;
  auto model = open_model(a.input, open);
  if (!model.ok()) return fail(model.error());
  for (const std::string& w : model->warnings) warn(w);

  TypeId type;
  if (a.type == "auto") {
    type = source_float_type(*model);
  } else {
    auto t = type_from_name(a.type);
    bool allowed = false;
    for (TypeId p : plannable_types()) allowed |= t && *t == p;
    if (!allowed) return fail("--type " + a.type + " is not supported (choose " + type_list() + ")");
    if (is_convert && traits(*t).quantized)
      return fail("convert writes float types only (f32|f16|bf16); use `shrink quantize --type " + a.type + "`");
    type = *t;
  }

  if (a.dry_run) {
    auto plan = make_plan(*model, type);
    if (!plan.ok()) return fail(plan.error());
    return print_plan(*plan);
  }

  QuantizeOptions q;
  q.type = type;
  q.output = a.output;
  q.allow_nonfinite = a.allow_nonfinite;
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
    std::printf("  weights    %s\n", with_commas(static_cast<uint64_t>(s.n_weights)).c_str());
    std::printf("  input      %s of weights\n", human_bytes(s.input_bytes).c_str());
    std::printf("  output     %s file, %s of weights, %.3f bits per weight (%s requested)\n",
                human_bytes(s.output_bytes).c_str(), human_bytes(s.output_tensor_bytes).c_str(), s.bits_per_weight,
                std::string(type_name(type)).c_str());
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
  sub->callback([sub, out, dry] {
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
  quant->add_option("-t,--type", q.type, "output type: " + type_list())->required();
  commands.push_back({quant, [] { return run(q, false); }});

  CLI::App* conv = root.add_subcommand("convert", "convert a model to GGUF without quantizing");
  add_common(conv, c);
  conv->add_option("--outtype", c.type, "f32|f16|bf16, or auto: the source's own float type")->capture_default_str();
  commands.push_back({conv, [] { return run(c, true); }});
}

}  // namespace shrink::cli
