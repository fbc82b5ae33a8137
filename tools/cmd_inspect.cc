// `shrink inspect FILE`: architecture, metadata, tensors (name, shape, type, bytes) and totals.
// A GGUF is shown as stored; other inputs as shrink will write them (GGUF names and order).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "formats/gguf.h"
#include "model/model_source.h"
#include "tools/cli.h"

namespace shrink::cli {
namespace {

struct Args {
  std::string input, tokenizer;
  bool json = false;
  bool all_metadata = false;
};

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

nlohmann::json value_json(const GgufValue& v) {
  if (const GgufArray* a = v.as_array()) {
    nlohmann::json arr = nlohmann::json::array();
    for (const GgufValue& x : a->items) arr.push_back(value_json(x));
    return arr;
  }
  if (const std::string* s = v.as_string()) return *s;
  if (v.type == GgufType::BOOL) return *v.as_bool();
  if (v.is_float()) return *v.as_float();
  if (v.type == GgufType::UINT64) return std::get<uint64_t>(v.v);
  return *v.as_int();
}

struct Row {
  std::string name, type;
  std::vector<int64_t> shape;
  uint64_t bytes;
  int64_t elements;
};

int print_rows(const std::vector<Row>& rows, nlohmann::json& j, bool json) {
  uint64_t total_bytes = 0;
  int64_t total_elems = 0;
  for (const Row& r : rows) {
    total_bytes += r.bytes;
    total_elems += r.elements;
    if (json) j["tensors"].push_back({{"name", r.name}, {"shape", r.shape}, {"type", r.type}, {"bytes", r.bytes}});
  }
  if (json) {
    j["totals"] = {{"tensors", rows.size()}, {"weights", total_elems}, {"bytes", total_bytes},
                   {"bits_per_weight", total_elems ? 8.0 * static_cast<double>(total_bytes) / static_cast<double>(total_elems) : 0}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("\n%-40s %-20s %-8s %12s\n", "tensor", "shape", "type", "bytes");
  for (const Row& r : rows)
    std::printf("%-40s %-20s %-8s %12s\n", r.name.c_str(), shape_str(r.shape).c_str(), r.type.c_str(),
                with_commas(r.bytes).c_str());
  std::printf("\ntotal: %zu tensors, %s weights, %s (%.3f bits per weight)\n", rows.size(),
              with_commas(static_cast<uint64_t>(total_elems)).c_str(), human_bytes(total_bytes).c_str(),
              total_elems ? 8.0 * static_cast<double>(total_bytes) / static_cast<double>(total_elems) : 0.0);
  return 0;
}

int inspect_gguf(const Args& a) {
  auto f = GgufFile::open(a.input);
  if (!f.ok()) return fail(f.error());
  nlohmann::json j;
  const GgufValue* arch = f->find("general.architecture");
  std::string arch_name = arch && arch->as_string() ? *arch->as_string() : "(none)";
  if (a.json) {
    j["file"] = a.input;
    j["format"] = "gguf";
    j["version"] = f->version();
    j["architecture"] = arch_name;
    j["alignment"] = f->alignment();
    for (const GgufKV& kv : f->metadata()) {
      const GgufArray* arr = kv.value.as_array();
      // Full vocabularies make the JSON huge; give their length unless asked.
      if (arr && arr->items.size() > 64 && !a.all_metadata)
        j["metadata"][kv.key] = {{"array_of", gguf_type_name(arr->elem_type)}, {"length", arr->items.size()}};
      else
        j["metadata"][kv.key] = value_json(kv.value);
    }
  } else {
    std::printf("%s: GGUF v%u, architecture %s, %zu metadata keys, %zu tensors, alignment %llu\n\n", a.input.c_str(),
                f->version(), arch_name.c_str(), f->metadata().size(), f->tensors().size(),
                static_cast<unsigned long long>(f->alignment()));
    for (const GgufKV& kv : f->metadata())
      std::printf("  %-45s %-8s %s\n", kv.key.c_str(), gguf_type_name(kv.value.type), kv.value.to_display(a.all_metadata ? 1u << 30 : 4).c_str());
  }
  std::vector<Row> rows;
  for (const GgufTensorInfo& t : f->tensors())
    rows.push_back({t.name, std::string(type_name(t.type)), t.shape, t.n_bytes, t.n_elements()});
  return print_rows(rows, j, a.json);
}

int inspect_model(const Args& a) {
  OpenOptions o;
  o.tokenizer = a.tokenizer;
  auto m = open_model(a.input, o);
  if (!m.ok()) return fail(m.error());
  for (const std::string& w : m->warnings) warn(w);
  const LlamaConfig& c = m->config;
  nlohmann::json j;
  if (a.json) {
    j["file"] = a.input;
    j["format"] = m->format;
    j["architecture"] = c.arch;
    j["config"] = {{"n_embd", c.n_embd}, {"n_ff", c.n_ff}, {"n_layer", c.n_layer}, {"n_head", c.n_head},
                   {"n_head_kv", c.n_head_kv}, {"head_dim", c.head_dim}, {"n_vocab", c.n_vocab},
                   {"n_ctx_train", c.n_ctx_train}, {"rope_theta", c.rope_theta}, {"rms_eps", c.rms_eps},
                   {"tied_embeddings", c.tied_embeddings}, {"qkv_bias", c.qkv_bias}};
    j["tokenizer"] = {{"model", m->vocab.model}, {"pre", m->vocab.pre}, {"tokens", m->vocab.size()},
                      {"merges", m->vocab.merges.size()}};
  } else {
    std::printf("%s: %s model, architecture %s\n", a.input.c_str(), m->format.c_str(), c.arch.c_str());
    std::printf("  layers %lld, embedding %lld, feed-forward %lld, heads %lld (kv %lld, dim %lld), vocab %lld, context %lld\n",
                (long long)c.n_layer, (long long)c.n_embd, (long long)c.n_ff, (long long)c.n_head, (long long)c.n_head_kv,
                (long long)c.head_dim, (long long)c.n_vocab, (long long)c.n_ctx_train);
    std::printf("  rope theta %g, rms eps %g, %s embeddings%s\n", c.rope_theta, c.rms_eps,
                c.tied_embeddings ? "tied" : "untied", c.qkv_bias ? ", q/k/v biases" : "");
    std::printf("  tokenizer %s%s%s, %zu tokens, %zu merges\n", m->vocab.model.c_str(),
                m->vocab.pre.empty() ? "" : " / ", m->vocab.pre.c_str(), m->vocab.size(), m->vocab.merges.size());
  }
  std::vector<Row> rows;
  for (const WeightTensor& t : m->tensors)
    rows.push_back({t.name, std::string(type_name(t.source_type)), t.shape,
                    row_size(t.source_type, t.shape[0]) * static_cast<uint64_t>(t.n_rows()), t.n_elements()});
  return print_rows(rows, j, a.json);
}

bool is_gguf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace

void add_inspect(CLI::App& root, std::vector<Command>& commands) {
  static Args a;
  CLI::App* sub = root.add_subcommand("inspect", "show a model's architecture, metadata and tensors");
  sub->add_option("input", a.input, "a .gguf, .safetensors, Hugging Face folder or llama2.c .bin")->required();
  sub->add_option("--tokenizer", a.tokenizer, "llama2.c inputs: the tok*.bin or SentencePiece .model vocabulary");
  sub->add_flag("--json", a.json, "machine-readable output");
  sub->add_flag("--all", a.all_metadata, "print long metadata arrays in full");
  commands.push_back({sub, [] { return is_gguf(a.input) ? inspect_gguf(a) : inspect_model(a); }});
}

}  // namespace shrink::cli
