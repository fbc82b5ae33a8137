// quantizer/mixes.h against llama.cpp itself: generated models are written as F32 GGUF, quantized
// by llama.cpp's own llama_model_quantize() (libllama from the npm package
// @node-llama-cpp/linux-x64, loaded with dlopen), and the type llama.cpp gave every tensor must
// equal mix_tensor_types(). Only the types are compared; the bytes are the kernels' tests' job.
//
// Models (all generated, model/synthetic.h):
//  - base:   8 layers, GQA 2 (8 heads, 4 kv), 256-wide rows: use_more_bits and the "first
//            eighth" rules pick different layers.
//  - gqa4:   8 heads sharing 2 kv heads (n_gqa = 4): the GQA branches of q2_k and iq4_*.
//  - tied:   16 layers, GQA 4, tied embeddings: token_embd takes the output projection's type, the
//            q3_k_m "first sixteenth" rule fires, and layer 10 sorts after layer 9 (llama.cpp walks
//            layers by number, not by name).
//  - narrow: hidden 320, feed-forward 336: 320 is not a multiple of 256 (k-quant and iq4_xs
//            rows fall back to 32-weight blocks), 336 not even of 32 (F16).
// Overrides passed through the C API: output_tensor_type, token_embedding_type, tt_overrides
// (--tensor-type), pure, quantize_output_tensor (--leave-output-tensor), and an imatrix (a dummy
// entry: llama.cpp changes the mix as soon as any importance matrix is given).
#include <dlfcn.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "model/hf_writer.h"
#include "model/synthetic.h"
#include "quantizer/mixes.h"
#include "tests/test_support.h"

using namespace shrink;
using namespace shrink::test;

namespace {

// ---- The slice of llama.h (llama.cpp de3ff81, node-llama-cpp 3.22.1) this test calls. ----

struct llama_model_tensor_override {
  const char* pattern;
  int32_t type;  // enum ggml_type; {nullptr, GGML_TYPE_COUNT} ends the list
};

struct llama_model_imatrix_data {
  const char* name;  // nullptr ends the list
  const float* data;
  size_t size;
};

struct llama_model_quantize_params {
  int32_t nthread;
  int32_t ftype;                 // enum llama_ftype
  int32_t output_tensor_type;    // enum ggml_type; GGML_TYPE_COUNT = unset
  int32_t token_embedding_type;  // enum ggml_type; GGML_TYPE_COUNT = unset
  bool allow_requantize;
  bool quantize_output_tensor;
  bool only_copy;
  bool pure;
  bool keep_split;
  bool dry_run;
  const llama_model_imatrix_data* imatrix;
  const void* kv_overrides;  // const struct llama_model_kv_override*
  const llama_model_tensor_override* tt_overrides;
  const int32_t* prune_layers;
  size_t max_buf_size;
};
static_assert(offsetof(llama_model_quantize_params, allow_requantize) == 16);
static_assert(offsetof(llama_model_quantize_params, imatrix) == 24);
static_assert(offsetof(llama_model_quantize_params, max_buf_size) == 56);
static_assert(sizeof(llama_model_quantize_params) == 64);

constexpr int32_t kGgmlTypeCount = 43;  // GGML_TYPE_COUNT in this build's ggml.h

using backend_init_fn = void (*)();
using default_params_fn = llama_model_quantize_params (*)();
using quantize_fn = uint32_t (*)(const char*, const char*, const llama_model_quantize_params*);
using log_callback = void (*)(int level, const char* text, void* user);
using log_set_fn = void (*)(log_callback, void*);

struct Llama {
  default_params_fn default_params = nullptr;
  quantize_fn quantize = nullptr;
  std::string log;  // llama.cpp's log of the last quantize() call
};

void collect_log(int /*level*/, const char* text, void* user) {
  static_cast<Llama*>(user)->log += text;
}

fs::path find_libllama() {
  const fs::path dir = interop_dir() / "node_modules/@node-llama-cpp/linux-x64/bins/linux-x64";
  if (fs::exists(dir / "libllama.so")) return dir / "libllama.so";
  if (fs::exists(dir))
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("libllama.", 0) == 0 && n.size() > 3 && n.compare(n.size() - 3, 3, ".so") == 0) return e.path();
    }
  return dir / "libllama.so";
}

// Loaded once; libllama's RUNPATH ($ORIGIN) finds libggml*.so beside it.
Llama& llama() {
  static Llama* l = [] {
    const fs::path lib = require(find_libllama(), "llama.cpp's libllama (npm package @node-llama-cpp/linux-x64)");
    void* h = ::dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* e = ::dlerror();
      skip_program("dlopen " + lib.string() + ": " + (e ? e : "unknown error"));
    }
    auto* r = new Llama;
    auto init = reinterpret_cast<backend_init_fn>(::dlsym(h, "llama_backend_init"));
    auto log_set = reinterpret_cast<log_set_fn>(::dlsym(h, "llama_log_set"));
    r->default_params = reinterpret_cast<default_params_fn>(::dlsym(h, "llama_model_quantize_default_params"));
    r->quantize = reinterpret_cast<quantize_fn>(::dlsym(h, "llama_model_quantize"));
    if (!init || !log_set || !r->default_params || !r->quantize)
      skip_program(lib.string() + " lacks llama_backend_init/llama_log_set/llama_model_quantize");
    init();
    log_set(collect_log, r);
    return r;
  }();
  return *l;
}

// ---- Models ----

LlamaConfig config_named(const std::string& name) {
  LlamaConfig c = synthetic_config();
  c.n_layer = 8;
  c.n_ff = 256;
  if (name == "gqa4") {
    c.n_head_kv = 2;
  } else if (name == "tied") {
    c.n_layer = 16;
    c.n_head_kv = 2;
    c.tied_embeddings = true;
  } else if (name == "narrow") {
    c.n_embd = 320;
    c.n_head = 10;
    c.n_head_kv = 5;
    c.head_dim = 32;
    c.n_ff = 336;
  }
  return c;
}

struct Model {
  ModelSource source;
  fs::path f32;  // the model as an F32 GGUF
};

// Generated, written as a Hugging Face folder and converted by `shrink convert`, once per config.
const Model& model_named(const std::string& name) {
  static std::map<std::string, Model> models;
  static TempDir dir;
  auto it = models.find(name);
  if (it != models.end()) return it->second;
  Model m;
  m.source = make_synthetic_model(config_named(name), 1234);
  m.f32 = dir / (name + "-f32.gguf");
  const fs::path hf = dir / (name + "-hf");
  REQUIRE(write_hf_folder(hf.string(), m.source).ok());
  RunResult r = run_shrink("convert " + quote(hf.string()) + " -o " + quote(m.f32.string()));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  return models.emplace(name, std::move(m)).first->second;
}

// ---- One comparison ----

struct Case {
  std::string config;
  std::string mix;
  MixOverrides overrides;
};

std::string describe(const Case& c) {
  std::string s = c.config + " " + c.mix;
  if (c.overrides.output) s += " --output-tensor-type " + std::string(type_name(*c.overrides.output));
  if (c.overrides.token_embd) s += " --token-embedding-type " + std::string(type_name(*c.overrides.token_embd));
  for (const auto& [re, t] : c.overrides.tensor_types) s += " --tensor-type " + re + "=" + std::string(type_name(t));
  if (c.overrides.pure) s += " --pure";
  if (c.overrides.leave_output) s += " --leave-output-tensor";
  if (c.overrides.has_imatrix) s += " --imatrix";
  return s;
}

// Runs llama.cpp's quantizer on the case's model and checks every tensor's type and the file type.
void check_against_llamacpp(const Case& c) {
  Llama& l = llama();
  const Model& m = model_named(c.config);
  auto mix = find_mix(c.mix);
  REQUIRE(mix.ok());
  auto mine = mix_tensor_types(*mix, m.source.config, m.source.tensors, c.overrides);
  INFO(describe(c));
  REQUIRE(mine.ok());

  llama_model_quantize_params p = l.default_params();
  p.nthread = 2;
  p.ftype = static_cast<int32_t>(mix->ftype);
  if (c.overrides.output) p.output_tensor_type = static_cast<int32_t>(*c.overrides.output);
  if (c.overrides.token_embd) p.token_embedding_type = static_cast<int32_t>(*c.overrides.token_embd);
  p.pure = c.overrides.pure;
  p.quantize_output_tensor = !c.overrides.leave_output;
  std::vector<llama_model_tensor_override> tt;
  for (const auto& [re, t] : c.overrides.tensor_types) tt.push_back({re.c_str(), static_cast<int32_t>(t)});
  tt.push_back({nullptr, kGgmlTypeCount});
  if (!c.overrides.tensor_types.empty()) p.tt_overrides = tt.data();
  // Any importance matrix switches llama.cpp's has_imatrix on; an entry naming no tensor leaves
  // every tensor quantized without one (the types shrink cannot make with an imatrix differ not).
  const float one = 1.0f;
  const llama_model_imatrix_data imatrix[] = {{"no.such.tensor", &one, 1}, {nullptr, nullptr, 0}};
  if (c.overrides.has_imatrix) p.imatrix = imatrix;

  TempDir out_dir;
  const fs::path out = out_dir / "out.gguf";
  l.log.clear();
  const uint32_t rc = l.quantize(m.f32.c_str(), out.c_str(), &p);
  INFO("llama.cpp log:\n" << l.log);
  REQUIRE(rc == 0);
  auto f = GgufFile::open(out.string());
  REQUIRE(f.ok());
  CHECK(*f->find("general.file_type")->as_int() == static_cast<int64_t>(mix->ftype));
  REQUIRE(f->tensors().size() == m.source.tensors.size());
  int mismatches = 0;
  for (size_t i = 0; i < m.source.tensors.size(); ++i) {
    const WeightTensor& t = m.source.tensors[i];
    const GgufTensorInfo* info = f->find_tensor(t.name);
    REQUIRE(info != nullptr);
    const MixChoice& want = (*mine)[i];
    if (info->type != want.type) {
      ++mismatches;
      FAIL_CHECK(t.name << ": llama.cpp " << type_name(info->type) << ", shrink " << type_name(want.type) << " ("
                        << want.reason << ")");
    }
  }
  CHECK(mismatches == 0);
}

std::vector<std::string> mix_names() {
  std::vector<std::string> names;
  for (const MixSpec& m : all_mixes()) names.push_back(m.name);
  return names;
}

std::vector<TypeId> types_of(const std::vector<MixChoice>& choices) {
  std::vector<TypeId> t;
  for (const MixChoice& c : choices) t.push_back(c.type);
  return t;
}

}  // namespace

// ---- Rules checked by hand: these run even where llama.cpp is absent (the oracle cases below
// skip the program when it is, so they come last). ----

TEST_CASE("find_mix knows llama.cpp's names, numbers and aliases") {
  CHECK(find_mix("Q4_K_M").value().ftype == 15);
  CHECK(find_mix("q4_k")->name == "q4_k_m");
  CHECK(find_mix("q3_k")->ftype == 12);
  CHECK(find_mix("q5_k")->ftype == 17);
  CHECK(find_mix("iq4_xs")->ftype == 30);
  CHECK(find_mix("iq4_xs")->default_type == TypeId::IQ4_XS);
  CHECK(find_mix("bf16")->ftype == 32);
  CHECK(find_mix("q8_0")->ftype == 7);
  CHECK(find_mix("f32")->ftype == 0);
  auto bad = find_mix("q4_k_x");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("q4_k_x") != std::string::npos);
  CHECK(all_mixes().size() == 19);
}

TEST_CASE("--tensor-type parses as llama-quantize does") {
  auto a = parse_tensor_type_override("Blk\\.0\\.ATTN_V=Q8_0");
  REQUIRE(a.ok());
  CHECK(a->first == "blk\\.0\\.attn_v");  // llama-quantize lower-cases the pattern
  CHECK(a->second == TypeId::Q8_0);
  CHECK_FALSE(parse_tensor_type_override("attn_v").ok());
  CHECK_FALSE(parse_tensor_type_override("=q8_0").ok());
  CHECK_FALSE(parse_tensor_type_override("attn_v=").ok());
  CHECK_FALSE(parse_tensor_type_override("attn_v=q9_9").ok());
  CHECK_FALSE(parse_tensor_type_override("attn_v[=q8_0").ok());
}

TEST_CASE("q4_k_m on 8 layers: attn_v and ffn_down get q6_k in layers 0, 3, 6, 7, output q6_k") {
  LlamaConfig c = config_named("base");
  ModelSource m = make_synthetic_model(c, 1);
  auto r = mix_tensor_types(find_mix("q4_k_m").value(), c, m.tensors);
  REQUIRE(r.ok());
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const std::string& n = m.tensors[i].name;
    const TypeId t = (*r)[i].type;
    INFO(n << " " << type_name(t) << " " << (*r)[i].reason);
    if (m.tensors[i].shape.size() == 1) CHECK(t == TypeId::F32);
    else if (n == "output.weight") CHECK(t == TypeId::Q6_K);
    else if (n == "token_embd.weight") CHECK(t == TypeId::Q4_K);
    else if (n.find("attn_v") != std::string::npos || n.find("ffn_down") != std::string::npos) {
      const int layer = std::stoi(n.substr(4));
      const bool more = layer == 0 || layer == 3 || layer == 6 || layer == 7;
      CHECK(t == (more ? TypeId::Q6_K : TypeId::Q4_K));
      if (more) CHECK_FALSE((*r)[i].reason.empty());
    } else CHECK(t == TypeId::Q4_K);
  }
}

TEST_CASE("rows that do not fit fall back as llama.cpp does") {
  LlamaConfig c = config_named("narrow");  // rows of 320 (attn, ffn_gate/up) and 336 (ffn_down)
  ModelSource m = make_synthetic_model(c, 1);
  auto type_of = [&](const std::string& mix, const std::string& name, const MixOverrides& o = {}) {
    auto r = mix_tensor_types(find_mix(mix).value(), c, m.tensors, o);
    REQUIRE(r.ok());
    for (size_t i = 0; i < m.tensors.size(); ++i)
      if (m.tensors[i].name == name) return (*r)[i].type;
    FAIL(name);
    return TypeId::F32;
  };
  CHECK(type_of("q2_k", "blk.1.attn_q.weight") == TypeId::Q4_0);
  CHECK(type_of("q3_k_s", "blk.1.attn_q.weight") == TypeId::Q4_0);
  CHECK(type_of("q4_k_s", "blk.1.attn_q.weight") == TypeId::Q5_0);
  CHECK(type_of("q5_k_s", "blk.1.attn_q.weight") == TypeId::Q5_1);
  CHECK(type_of("q6_k", "blk.1.attn_q.weight") == TypeId::Q8_0);
  CHECK(type_of("iq4_xs", "blk.1.attn_q.weight") == TypeId::IQ4_NL);
  CHECK(type_of("q4_k_m", "output.weight") == TypeId::Q8_0);  // 320 % 256: q8_0, not q6_k
  for (const char* mix : {"q4_0", "q8_0", "q4_k_m", "iq4_nl"}) CHECK(type_of(mix, "blk.1.ffn_down.weight") == TypeId::F16);
  CHECK(type_of("f16", "blk.1.ffn_down.weight") == TypeId::F16);
  // A 256-block type with no fallback in llama.cpp is refused, naming the tensor.
  MixOverrides o;
  o.tensor_types = {{"attn_q", TypeId::Q8_K}};
  auto r = mix_tensor_types(find_mix("q4_k_m").value(), c, m.tensors, o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("attn_q") != std::string::npos);
}

TEST_CASE("a --tensor-type match skips the mix rules and the layer counters") {
  LlamaConfig c = config_named("base");
  ModelSource m = make_synthetic_model(c, 1);
  MixOverrides o;
  o.tensor_types = {{"blk\\.[0-3]\\.attn_v", TypeId::Q8_0}};
  auto r = mix_tensor_types(find_mix("q4_k_m").value(), c, m.tensors, o);
  REQUIRE(r.ok());
  std::map<std::string, TypeId> by_name;
  for (size_t i = 0; i < m.tensors.size(); ++i) by_name[m.tensors[i].name] = (*r)[i].type;
  CHECK(by_name["blk.2.attn_v.weight"] == TypeId::Q8_0);
  // Layers 4..7 are attn_v number 0..3 for use_more_bits: 4 (as 0) and 7 (as 3) get q6_k.
  CHECK(by_name["blk.4.attn_v.weight"] == TypeId::Q6_K);
  CHECK(by_name["blk.5.attn_v.weight"] == TypeId::Q4_K);
  CHECK(by_name["blk.6.attn_v.weight"] == TypeId::Q4_K);
  CHECK(by_name["blk.7.attn_v.weight"] == TypeId::Q6_K);
  CHECK(types_of(*r).size() == m.tensors.size());
}

// ---- llama.cpp as the oracle ----

TEST_CASE("every mix equals llama.cpp's choices on every generated model") {
  for (const char* config : {"base", "gqa4", "tied", "narrow"})
    for (const std::string& mix : mix_names()) {
      DYNAMIC_SECTION(config << " " << mix) { check_against_llamacpp({config, mix, {}}); }
    }
}

TEST_CASE("overrides equal llama.cpp's choices") {
  std::vector<Case> cases;
  {
    Case c{"base", "q4_k_m", {}};
    c.overrides.output = TypeId::Q8_0;
    c.overrides.token_embd = TypeId::Q4_0;
    cases.push_back(c);
  }
  {
    // The first matching regex wins; a matched attn_v does not advance the use_more_bits counter.
    Case c{"base", "q4_k_m", {}};
    c.overrides.tensor_types = {{"blk\\.[0-3]\\.attn_v", TypeId::Q8_0}, {"attn_v", TypeId::Q5_K}, {"ffn_up", TypeId::Q3_K}};
    cases.push_back(c);
  }
  {
    Case c{"base", "q5_k_m", {}};
    c.overrides.tensor_types = {{"ffn_down", TypeId::IQ4_XS}, {"token_embd", TypeId::Q5_0}};
    cases.push_back(c);
  }
  {
    Case c{"base", "q4_k_m", {}};
    c.overrides.leave_output = true;
    cases.push_back(c);
  }
  {
    Case c{"base", "f16", {}};  // the explicit overrides apply even to a 16-bit mix; regexes do not
    c.overrides.output = TypeId::Q6_K;
    c.overrides.token_embd = TypeId::Q8_0;
    c.overrides.tensor_types = {{"attn_v", TypeId::Q4_0}};
    cases.push_back(c);
  }
  for (const char* mix : {"q4_k_m", "q2_k", "q6_k"}) {
    Case c{"tied", mix, {}};
    c.overrides.pure = true;
    cases.push_back(c);
  }
  {
    Case c{"tied", "q3_k_m", {}};  // a tied token_embd takes --output-tensor-type
    c.overrides.output = TypeId::Q5_K;
    cases.push_back(c);
  }
  {
    Case c{"narrow", "q3_k_l", {}};  // manual 256-block types on 320/336-wide rows fall back
    c.overrides.tensor_types = {{"attn_q", TypeId::Q6_K}, {"ffn_down", TypeId::Q4_K}};
    c.overrides.token_embd = TypeId::Q8_0;
    cases.push_back(c);
  }
  {
    Case c{"narrow", "q4_k_s", {}};
    c.overrides.pure = true;
    cases.push_back(c);
  }
  for (const char* mix : {"q4_0", "q5_0", "iq4_nl", "iq4_xs", "q4_k_m"}) {
    Case c{"base", mix, {}};
    c.overrides.has_imatrix = true;
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    DYNAMIC_SECTION(describe(c)) { check_against_llamacpp(c); }
  }
}
