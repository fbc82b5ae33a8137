// `shrink demo`: the whole path on a model that needs no download. Generates a small Llama
// (or takes --from MODEL), writes it as a Hugging Face folder, imports that folder, writes
// F32, Q8_0, Q5_K_M, Q4_K_M and Q4_0 (ggml's bytes and shrink's search) GGUFs and reports size,
// bits per weight and weight error.
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "eval/weight_error.h"
#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "model/hf_writer.h"
#include "model/model_source.h"
#include "model/synthetic.h"
#include "quantizer/quantize_model.h"
#include "tools/cli.h"

namespace shrink::cli {
namespace {

namespace fs = std::filesystem;

struct Args {
  std::string dir = "shrink-demo";
  std::string from;
  std::string tokenizer;
  uint64_t seed = 1;
};

// Dequantize every tensor of the written GGUF and compare it with the source's floats.
Result<ErrorStats> weight_error(const ModelSource& source, const std::string& gguf_path) {
  SHRINK_ASSIGN(GgufFile f, GgufFile::open(gguf_path));
  ErrorStats total;
  std::vector<float> ref, got;
  for (const WeightTensor& t : source.tensors) {
    const GgufTensorInfo* info = f.find_tensor(t.name);
    if (info == nullptr) return make_error(gguf_path + ": tensor " + t.name + " is missing");
    SHRINK_CHECK(t.read_f32(ref));
    got.resize(ref.size());
    kernels::dequantize_rows(info->type, info->data, got.data(), t.n_rows(), t.shape[0]);
    total.add(ref.data(), got.data(), static_cast<int64_t>(ref.size()));
  }
  return total;
}

int run(const Args& a) {
  std::error_code ec;
  fs::create_directories(a.dir, ec);
  if (ec) return fail(a.dir + ": cannot create folder: " + ec.message());
  std::string model_path = a.from;
  if (model_path.empty()) {
    // Generated -> Hugging Face folder -> imported back: exercises the real import path.
    ModelSource gen = make_synthetic_model(synthetic_config(), a.seed);
    model_path = (fs::path(a.dir) / "model").string();
    if (Status s = write_hf_folder(model_path, gen); !s.ok()) return fail(s.error());
    std::printf("generated a %lld-layer Llama (hidden %lld, %s weights) as a Hugging Face folder: %s\n",
                (long long)gen.config.n_layer, (long long)gen.config.n_embd,
                with_commas(static_cast<uint64_t>(gen.config.n_params())).c_str(), model_path.c_str());
  }
  OpenOptions o;
  o.tokenizer = a.tokenizer;
  auto model = open_model(model_path, o);
  if (!model.ok()) return fail(model.error());
  for (const std::string& w : model->warnings) warn(w);
  std::printf("imported %s (%s, %s, %zu tensors); kernels: %s\n\n", model_path.c_str(), model->format.c_str(),
              model->config.arch.c_str(), model->tensors.size(), kernels::active_isa());
  std::printf("%-8s %-5s %12s %10s %12s %14s %8s  %s\n", "type", "algo", "file", "bits/w", "SQNR (dB)", "RMSE", "seconds",
              "output");
  struct Job {
    const char* mix;
    QuantAlgo algo;
  };
  // Q4_0 twice: ggml's exact bytes and shrink's search, same layout, to show what the search buys.
  for (const Job& job : {Job{"f32", QuantAlgo::kBest}, Job{"q8_0", QuantAlgo::kBest}, Job{"q5_k_m", QuantAlgo::kBest},
                         Job{"q4_k_m", QuantAlgo::kBest}, Job{"q4_0", QuantAlgo::kGgml}, Job{"q4_0", QuantAlgo::kBest}}) {
    auto mix = find_mix(job.mix);
    if (!mix.ok()) return fail(mix.error());
    const bool quantized = traits(mix->default_type).quantized;
    const char* algo = !quantized ? "-" : job.algo == QuantAlgo::kBest ? "best" : "ggml";
    QuantizeOptions q;
    q.plan.mix = job.mix;
    q.algo = job.algo;
    q.output = (fs::path(a.dir) / ("model-" + std::string(job.mix) + (quantized ? std::string("-") + algo : "") + ".gguf")).string();
    auto s = quantize_model(*model, q);
    if (!s.ok()) return fail(s.error());
    auto err = weight_error(*model, q.output);
    if (!err.ok()) return fail(err.error());
    std::printf("%-8s %-5s %12s %10.3f %12.2f %14.3e %8.2f  %s\n", job.mix, algo,
                human_bytes(s->output_bytes).c_str(), s->bits_per_weight, err->sqnr_db(), err->rmse(), s->seconds,
                q.output.c_str());
  }
  std::printf("\nthe .gguf files run in llama.cpp; `shrink inspect FILE` lists their tensors.\n");
  return 0;
}

}  // namespace

void add_demo(CLI::App& root, std::vector<Command>& commands) {
  static Args a;
  CLI::App* sub = root.add_subcommand("demo", "generate (or take) a small Llama, write it as a Hugging Face folder, and "
                                              "quantize it to several GGUF types with a size/error summary");
  sub->add_option("--dir", a.dir, "where the demo writes its files")->capture_default_str();
  sub->add_option("--from", a.from, "use this model instead of a generated one");
  sub->add_option("--tokenizer", a.tokenizer, "with --from a llama2.c .bin: its tokenizer");
  sub->add_option("--seed", a.seed, "seed of the generated weights")->capture_default_str();
  commands.push_back({sub, [] { return run(a); }});
}

}  // namespace shrink::cli
