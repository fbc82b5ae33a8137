// `shrink calibrate`: importance matrices as llama-imatrix collects and writes them.
//
// Oracles:
//  - the collector's rules (which products, which batches, counts) on hand-made activations;
//  - the file layout read by llama.cpp itself: ggml's GGUF parser (gguf_* in libggml-base) for
//    key names/types and tensor names/types/shapes, and common_imatrix_load from libllama-common
//    (the loader llama-quantize uses) for entries, counts and metadata; then llama.cpp's own
//    llama_model_quantize with that imatrix (passed through the C API's llama_model_imatrix_data
//    list, the per-column weights quantize.cpp derives: sum / count) must write the same Q4_0 bytes
//    as `shrink quantize --algo ggml --imatrix` on the same F32 file;
//  - values: blk.0's q/k/v input sums computed here from the llama2.c checkpoint's embedding and
//    attention norm; every tensor's sums from a PyTorch forward of stories260K (/usr/bin/python3);
//  - usefulness: the imatrix must lower the KL divergence to the F32 model of Q4_0 and Q4_K_M
//    quantizations of stories260K and BabyLlama (llama.cpp's algorithm, --algo ggml), on a
//    WikiText-2 slice disjoint from the calibration text.
#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "calibration/imatrix_collector.h"
#include "formats/gguf.h"
#include "formats/imatrix_file.h"
#include "model/llama_model.h"
#include "model/model_source.h"
#include "model/tokenizer.h"
#include "tests/test_support.h"

using namespace shrink;
using namespace shrink::test;
using nlohmann::json;

namespace {

// One OpenMP thread here and in every shrink the tests start (the environment is inherited):
// these models' 64- to 352-wide products are far too small to gain from threads, and on a shared,
// oversubscribed 2-core machine OpenMP's waiting makes two threads 20x slower than one (measured:
// 20 chunks of 128 tokens of stories260K, 0.8 s vs 17 s at load 16).
const bool kOneThread = [] {
  ::setenv("OMP_NUM_THREADS", "1", 1);
  omp_set_num_threads(1);
  return true;
}();

fs::path stories_bin() {
  return require(data_dir() / "models/stories260K/stories260K.bin", "shared test data (stories260K.bin)");
}
fs::path corpus(const std::string& name) { return require(data_dir() / "corpus" / name, "shared test data (" + name + ")"); }

// Token ids written as the JSON array `shrink calibrate --tokens` reads.
void write_tokens(const fs::path& p, const std::vector<int32_t>& ids) { write_text(p, json(ids).dump()); }

std::vector<int32_t> random_tokens(size_t n, int32_t vocab) {
  std::mt19937 rng(seed());
  std::uniform_int_distribution<int32_t> d(3, vocab - 1);
  std::vector<int32_t> ids(n);
  for (auto& t : ids) t = d(rng);
  ids[0] = 1;
  return ids;
}

WeightMatrix fake_weight(const std::string& name, int64_t n_cols) {
  WeightMatrix w;
  w.name = name;
  w.n_cols = n_cols;
  w.n_rows = 1;
  return w;
}

}  // namespace

TEST_CASE("collector: llama-imatrix's choice of products, batches and counts", "[collector]") {
  const int64_t n = 5;
  std::vector<float> x(static_cast<size_t>(20 * n));
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.25f * static_cast<float>(i % 7) - 0.5f;
  for (bool process_output : {false, true}) {
    ImatrixCollectorOptions o;
    o.process_output = process_output;
    ImatrixCollector c(o);
    c.observe(fake_weight("blk.0.attn_q.weight", n), x.data(), 16);
    c.observe(fake_weight("blk.0.attn_q.weight", n), x.data(), 20);
    c.observe(fake_weight("blk.1.ffn_down.weight", n), x.data(), 15);  // under 16 rows: ignored
    c.observe(fake_weight("output.weight", n), x.data(), 17);
    c.observe(fake_weight("token_embd.weight", n), x.data(), 17);      // tied output: never collected
    CHECK(c.count("blk.0.attn_q.weight") == 36);
    CHECK(c.count("blk.1.ffn_down.weight") == 0);
    CHECK(c.count("output.weight") == (process_output ? 17 : 0));
    CHECK(c.count("token_embd.weight") == 0);
    CHECK(c.chunk_count(12) == 3);  // floor(36 / 12)
    auto m = c.imatrix({"text.txt"}, 12);
    REQUIRE(m.ok());
    REQUIRE(m->entries.size() == (process_output ? 2u : 1u));
    const ImatrixEntry& e = m->entries[0];
    CHECK(e.name == "blk.0.attn_q.weight");
    REQUIRE(e.counts == std::vector<float>{36.0f});
    for (int64_t j = 0; j < n; ++j) {
      double want = 0;
      for (int64_t t = 0; t < 16; ++t) want += double(x[t * n + j]) * x[t * n + j];
      for (int64_t t = 0; t < 20; ++t) want += double(x[t * n + j]) * x[t * n + j];
      CHECK(e.in_sum2[static_cast<size_t>(j)] == Approx(want).epsilon(1e-6));
    }
    CHECK(m->datasets == std::vector<std::string>{"text.txt"});
    CHECK(m->chunk_size == 12);
    CHECK(m->chunk_count == 3);
  }
  // One weight, one row length; non-finite sums are refused, as llama-imatrix refuses them.
  ImatrixCollector c;
  c.observe(fake_weight("blk.0.attn_q.weight", n), x.data(), 16);
  c.observe(fake_weight("blk.0.attn_q.weight", n - 1), x.data(), 16);
  CHECK_FALSE(c.status().ok());
  ImatrixCollector inf;
  std::vector<float> bad = x;
  bad[3] = INFINITY;
  inf.observe(fake_weight("blk.0.ffn_up.weight", n), bad.data(), 16);
  REQUIRE_FALSE(inf.status().ok());
  CHECK(inf.status().message().find("blk.0.ffn_up.weight") != std::string::npos);
}

// ---- Command-line errors: nothing written, nothing clobbered. ----

TEST_CASE("calibrate: clear errors, no partial output", "[data][cli]") {
  TempDir tmp;
  const fs::path bin = stories_bin();
  const fs::path out = tmp / "im.gguf";
  write_tokens(tmp / "short.json", random_tokens(100, 512));
  RunResult r = run_shrink("calibrate " + quote(bin.string()) + " --tokens " + quote((tmp / "short.json").string()) +
                           " --ctx 128 -o " + quote(out.string()));
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("shrink: error:") != std::string::npos);
  CHECK(r.out.find("fewer than one chunk of 128") != std::string::npos);
  CHECK_FALSE(fs::exists(out));
  CHECK(std::distance(fs::directory_iterator(tmp.path), fs::directory_iterator()) == 1);  // no temp file left

  write_text(out, "keep me");
  r = run_shrink("calibrate " + quote(bin.string()) + " --tokens " + quote((tmp / "short.json").string()) +
                 " --ctx 128 -o " + quote(out.string()));
  CHECK(r.exit_code != 0);
  CHECK(read_text(out) == "keep me");

  r = run_shrink("calibrate " + quote(bin.string()) + " --tokens " + quote((tmp / "short.json").string()) +
                 " --ctx 8 -o " + quote((tmp / "x.gguf").string()));
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("--ctx 8 is too small") != std::string::npos);

  r = run_shrink("calibrate " + quote(bin.string()) + " --tokens " + quote((tmp / "short.json").string()) +
                 " --ctx 32 -o " + quote((tmp / "no/such/dir/im.gguf").string()));
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("no/such/dir") != std::string::npos);
}

// ---- Values ----

namespace {

// The llama2.c checkpoint's first arrays (data README): header, token_embedding (vocab, dim),
// rms_att (L, dim).
struct Llama2cHead {
  int32_t dim = 0, hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab = 0, seq_len = 0;
  std::vector<float> emb, rms_att0;
};

Llama2cHead read_llama2c_head(const fs::path& p) {
  const std::vector<uint8_t> b = read_bytes(p);
  Llama2cHead h;
  int32_t hdr[7];
  std::memcpy(hdr, b.data(), sizeof hdr);
  h.dim = hdr[0], h.hidden = hdr[1], h.n_layers = hdr[2], h.n_heads = hdr[3], h.n_kv_heads = hdr[4];
  h.vocab = std::abs(hdr[5]), h.seq_len = hdr[6];
  const float* f = reinterpret_cast<const float*>(b.data() + sizeof hdr);
  h.emb.assign(f, f + static_cast<size_t>(h.vocab) * h.dim);
  f += static_cast<size_t>(h.vocab) * h.dim;
  h.rms_att0.assign(f, f + h.dim);
  return h;
}

// stories260K in PyTorch, float32, F32 attention: sums of squared inputs of every weight
// product over the chunks (first token of each replaced by BOS = 1).
const char* kTorchImatrix = R"PY(
import json, math, struct, sys
import numpy as np, torch
ckpt, tok_path, ctx, out_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
raw = open(ckpt, 'rb').read()
dim, hidden, L, nh, nkv, vocab, seq = struct.unpack('<7i', raw[:28])
vocab = abs(vocab)
a = np.frombuffer(raw, dtype='<f4', offset=28)
off = 0
def take(*shape):
    global off
    n = int(np.prod(shape))
    t = torch.from_numpy(a[off:off + n].copy()).reshape(shape)
    off += n
    return t
hd = dim // nh
kvd = nkv * hd
emb = take(vocab, dim); rms_att = take(L, dim); wq = take(L, dim, dim); wk = take(L, kvd, dim)
wv = take(L, kvd, dim); wo = take(L, dim, dim); rms_ffn = take(L, dim); w1 = take(L, hidden, dim)
w2 = take(L, dim, hidden); w3 = take(L, hidden, dim)
tokens = json.load(open(tok_path))
sums = {}
def acc(name, x):
    s = (x.double() ** 2).sum(0)
    sums[name] = sums[name] + s if name in sums else s
def rmsnorm(x, w):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * w
pos = torch.arange(ctx, dtype=torch.float64)
freqs = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
ang = pos[:, None] * freqs[None, :]
cos, sin = torch.cos(ang).float()[:, None, :], torch.sin(ang).float()[:, None, :]
def rope(x, heads):
    x = x.view(ctx, heads, hd // 2, 2)
    x0, x1 = x[..., 0], x[..., 1]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).reshape(ctx, heads * hd)
mask = torch.full((ctx, ctx), float('-inf')).triu(1)
for ci in range(len(tokens) // ctx):
    chunk = list(tokens[ci * ctx:(ci + 1) * ctx])
    chunk[0] = 1
    x = emb[torch.tensor(chunk)]
    for l in range(L):
        p = 'blk.%d.' % l
        h = rmsnorm(x, rms_att[l])
        for n in ('attn_q', 'attn_k', 'attn_v'):
            acc(p + n + '.weight', h)
        q = rope(h @ wq[l].T, nh).view(ctx, nh, hd).transpose(0, 1)
        k = rope(h @ wk[l].T, nkv).view(ctx, nkv, hd).transpose(0, 1).repeat_interleave(nh // nkv, 0)
        v = (h @ wv[l].T).view(ctx, nkv, hd).transpose(0, 1).repeat_interleave(nh // nkv, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + mask, -1)
        o = (att @ v).transpose(0, 1).reshape(ctx, dim)
        acc(p + 'attn_output.weight', o)
        x = x + o @ wo[l].T
        h = rmsnorm(x, rms_ffn[l])
        acc(p + 'ffn_gate.weight', h)
        acc(p + 'ffn_up.weight', h)
        g = torch.nn.functional.silu(h @ w1[l].T) * (h @ w3[l].T)
        acc(p + 'ffn_down.weight', g)
        x = x + g @ w2[l].T
json.dump({k: v.tolist() for k, v in sums.items()}, open(out_path, 'w'))
)PY";

}  // namespace

TEST_CASE("calibrate: sums and counts equal an independent computation (blk.0 directly, all from PyTorch)",
          "[data][values]") {
  TempDir tmp;
  const fs::path bin = stories_bin();
  const Llama2cHead head = read_llama2c_head(bin);
  REQUIRE(head.dim == 64);
  constexpr int64_t kCtx = 64, kChunks = 3;
  // Three whole chunks and a remainder that no chunk takes.
  const std::vector<int32_t> ids = random_tokens(kCtx * kChunks + 17, head.vocab);
  write_tokens(tmp / "ids.json", ids);
  const fs::path out = tmp / "im.gguf";
  RunResult r = run_shrink("calibrate " + quote(bin.string()) + " --tokens " + quote((tmp / "ids.json").string()) +
                           " --ctx 64 --kv-type f32 --json -o " + quote(out.string()));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  auto im = read_imatrix(out.string());
  REQUIRE(im.ok());
  CHECK(im->chunk_count == kChunks);
  CHECK(im->chunk_size == kCtx);
  CHECK(im->datasets == std::vector<std::string>{(tmp / "ids.json").string()});
  REQUIRE(im->entries.size() == 35u);  // 5 layers x 7 products; the tied output is not collected
  for (const ImatrixEntry& e : im->entries) {
    INFO(e.name);
    CHECK(e.counts == std::vector<float>{static_cast<float>(kCtx * kChunks)});
    CHECK(e.n_cols == (e.name.find("ffn_down") != std::string::npos ? 172 : 64));
  }

  // blk.0.attn_q/k/v: rms_norm(embedding) * attn_norm, squared and summed, in double.
  std::vector<double> want(64, 0.0);
  for (int64_t c = 0; c < kChunks; ++c)
    for (int64_t t = 0; t < kCtx; ++t) {
      const int32_t tok = t == 0 ? 1 : ids[static_cast<size_t>(c * kCtx + t)];
      const float* e = head.emb.data() + static_cast<size_t>(tok) * 64;
      double ss = 0;
      for (int j = 0; j < 64; ++j) ss += double(e[j]) * e[j];
      const double scale = 1.0 / std::sqrt(ss / 64 + 1e-5);
      for (int j = 0; j < 64; ++j) {
        const double h = e[j] * scale * head.rms_att0[static_cast<size_t>(j)];
        want[static_cast<size_t>(j)] += h * h;
      }
    }
  for (const char* name : {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"}) {
    const ImatrixEntry* e = im->find(name);
    REQUIRE(e != nullptr);
    for (int j = 0; j < 64; ++j) {
      INFO(name << " column " << j);
      CHECK(e->in_sum2[static_cast<size_t>(j)] == Approx(want[static_cast<size_t>(j)]).epsilon(1e-5));
    }
  }

  // The same model as a Hugging Face folder (rotate-half q/k rows, permuted back on import).
  const fs::path hf = data_dir() / "models/stories260K-hf";
  if (fs::exists(hf)) {
    r = run_shrink("calibrate " + quote(hf.string()) + " --tokens " + quote((tmp / "ids.json").string()) +
                   " --ctx 64 --kv-type f32 -o " + quote((tmp / "hf.gguf").string()));
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    auto from_hf = read_imatrix((tmp / "hf.gguf").string());
    REQUIRE(from_hf.ok());
    REQUIRE(from_hf->entries.size() == im->entries.size());
    for (size_t i = 0; i < im->entries.size(); ++i) {
      INFO(im->entries[i].name);
      REQUIRE(from_hf->entries[i].name == im->entries[i].name);
      for (size_t j = 0; j < im->entries[i].in_sum2.size(); ++j)
        CHECK(from_hf->entries[i].in_sum2[j] == Approx(im->entries[i].in_sum2[j]).epsilon(1e-5));
    }
  }

  // Every tensor against PyTorch.
  const fs::path py = "/usr/bin/python3";
  if (!fs::exists(py)) skip_program("/usr/bin/python3 (Debian python3-torch) is absent");
  write_text(tmp / "oracle.py", kTorchImatrix);
  const fs::path torch_out = tmp / "torch.json";
  RunResult pr = run(quote(py.string()) + " " + quote((tmp / "oracle.py").string()) + " " + quote(bin.string()) + " " +
                     quote((tmp / "ids.json").string()) + " 64 " + quote(torch_out.string()));
  INFO(pr.out);
  if (pr.exit_code != 0 && pr.out.find("No module named 'torch'") != std::string::npos)
    skip_program("PyTorch (Debian python3-torch) is not installed");
  REQUIRE(pr.exit_code == 0);
  const json tj = json::parse(read_text(torch_out));
  REQUIRE(tj.size() == 35u);
  double worst = 0;
  std::string worst_name;
  for (const ImatrixEntry& e : im->entries) {
    REQUIRE(tj.contains(e.name));
    const std::vector<double> t = tj[e.name].get<std::vector<double>>();
    REQUIRE(t.size() == e.in_sum2.size());
    const double top = *std::max_element(t.begin(), t.end());
    for (size_t j = 0; j < t.size(); ++j) {
      const double rel = std::abs(e.in_sum2[j] - t[j]) / (std::abs(t[j]) + 1e-3 * top);
      if (rel > worst) worst = rel, worst_name = e.name + "[" + std::to_string(j) + "]";
    }
  }
  std::printf("imatrix vs PyTorch: worst relative difference %.3g at %s\n", worst, worst_name.c_str());
  CHECK(worst < 1e-4);
}

// ---- The file as llama.cpp reads it ----

namespace {

// The slices of ggml's gguf.h, llama.h and common/imatrix-loader.h (llama.cpp de3ff81, the build
// inside node-llama-cpp 3.22.1) this test calls.
struct gguf_init_params {
  bool no_alloc;
  void** ctx;
};
constexpr int kGgufTypeUint32 = 4, kGgufTypeString = 8, kGgufTypeArray = 9;  // enum gguf_type

struct llama_model_imatrix_data {
  const char* name;  // nullptr ends the list
  const float* data;
  size_t size;
};
struct llama_model_quantize_params {
  int32_t nthread;
  int32_t ftype;
  int32_t output_tensor_type;
  int32_t token_embedding_type;
  bool allow_requantize, quantize_output_tensor, only_copy, pure, keep_split, dry_run;
  const llama_model_imatrix_data* imatrix;
  const void* kv_overrides;
  const void* tt_overrides;
  const int32_t* prune_layers;
  size_t max_buf_size;
};
static_assert(offsetof(llama_model_quantize_params, imatrix) == 24);
static_assert(sizeof(llama_model_quantize_params) == 64);
constexpr int32_t kFtypeQ4_0 = 2;  // LLAMA_FTYPE_MOSTLY_Q4_0

struct common_imatrix_entry {
  std::vector<float> sums;
  std::vector<int64_t> counts;
};
struct common_imatrix {
  std::map<std::string, common_imatrix_entry> entries;
  std::vector<std::string> datasets;
  int32_t chunk_count = 0;
  int32_t chunk_size = 0;
  bool is_legacy = false;
  bool has_metadata = false;
};

struct LlamaCpp {
  void* (*gguf_init_from_file)(const char*, gguf_init_params) = nullptr;
  void (*gguf_free)(void*) = nullptr;
  int64_t (*gguf_get_n_kv)(const void*) = nullptr;
  const char* (*gguf_get_key)(const void*, int64_t) = nullptr;
  int (*gguf_get_kv_type)(const void*, int64_t) = nullptr;
  int (*gguf_get_arr_type)(const void*, int64_t) = nullptr;
  size_t (*gguf_get_arr_n)(const void*, int64_t) = nullptr;
  const char* (*gguf_get_arr_str)(const void*, int64_t, size_t) = nullptr;
  const char* (*gguf_get_val_str)(const void*, int64_t) = nullptr;
  uint32_t (*gguf_get_val_u32)(const void*, int64_t) = nullptr;
  int64_t (*gguf_get_n_tensors)(const void*) = nullptr;
  const char* (*gguf_get_tensor_name)(const void*, int64_t) = nullptr;
  int (*gguf_get_tensor_type)(const void*, int64_t) = nullptr;
  const int64_t* (*gguf_get_tensor_ne)(const void*, int64_t) = nullptr;
  bool (*imatrix_load)(const std::string&, common_imatrix&) = nullptr;
  void (*backend_init)() = nullptr;
  llama_model_quantize_params (*default_params)() = nullptr;
  uint32_t (*quantize)(const char*, const char*, const llama_model_quantize_params*) = nullptr;
  void (*log_set)(void (*)(int, const char*, void*), void*) = nullptr;
  std::string log;  // llama.cpp's log, shown when a check fails
};

void collect_log(int /*level*/, const char* text, void* user) { static_cast<LlamaCpp*>(user)->log += text; }

template <class F>
void bind(void* h, F& f, const char* name) {
  f = reinterpret_cast<F>(::dlsym(h, name));
  if (f == nullptr) skip_program(std::string("llama.cpp's libraries lack ") + name);
}

// libllama-common (and through its dependencies libllama and libggml-base), loaded once.
LlamaCpp& llamacpp() {
  static LlamaCpp* l = [] {
    const fs::path lib = require(interop_dir() / "node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libllama-common.so",
                                 "llama.cpp's libllama-common (npm package @node-llama-cpp/linux-x64)");
    void* h = ::dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* e = ::dlerror();
      skip_program("dlopen " + lib.string() + ": " + (e ? e : "unknown error"));
    }
    auto* r = new LlamaCpp;
    bind(h, r->gguf_init_from_file, "gguf_init_from_file");
    bind(h, r->gguf_free, "gguf_free");
    bind(h, r->gguf_get_n_kv, "gguf_get_n_kv");
    bind(h, r->gguf_get_key, "gguf_get_key");
    bind(h, r->gguf_get_kv_type, "gguf_get_kv_type");
    bind(h, r->gguf_get_arr_type, "gguf_get_arr_type");
    bind(h, r->gguf_get_arr_n, "gguf_get_arr_n");
    bind(h, r->gguf_get_arr_str, "gguf_get_arr_str");
    bind(h, r->gguf_get_val_str, "gguf_get_val_str");
    bind(h, r->gguf_get_val_u32, "gguf_get_val_u32");
    bind(h, r->gguf_get_n_tensors, "gguf_get_n_tensors");
    bind(h, r->gguf_get_tensor_name, "gguf_get_tensor_name");
    bind(h, r->gguf_get_tensor_type, "gguf_get_tensor_type");
    bind(h, r->gguf_get_tensor_ne, "gguf_get_tensor_ne");
    // bool common_imatrix_load(const std::string&, common_imatrix&), C++ linkage.
    bind(h, r->imatrix_load,
         "_Z19common_imatrix_loadRKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEER14common_imatrix");
    bind(h, r->backend_init, "llama_backend_init");
    bind(h, r->default_params, "llama_model_quantize_default_params");
    bind(h, r->quantize, "llama_model_quantize");
    bind(h, r->log_set, "llama_log_set");
    r->backend_init();
    r->log_set(collect_log, r);
    return r;
  }();
  return *l;
}

}  // namespace

TEST_CASE("calibrate: llama.cpp reads the file and quantizes with it as shrink does", "[data][llamacpp]") {
  LlamaCpp& l = llamacpp();
  TempDir tmp;
  const fs::path f32 = require(data_dir() / "reference/stories260K-f32.llamacpp.gguf",
                               "shared test data (reference/stories260K-f32.llamacpp.gguf)");
  write_text(tmp / "calib.txt", read_text(corpus("wikitext2_wiki.test.raw")).substr(0, 30000));
  const fs::path im = tmp / "im.gguf";
  // --process-output: llama.cpp's conversion stores output.weight apart from token_embd.
  RunResult r = run_shrink("calibrate " + quote(f32.string()) + " --text " + quote((tmp / "calib.txt").string()) +
                           " --ctx 128 --chunks 8 --process-output -o " + quote(im.string()));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("36 tensors, 8 chunks of 128 tokens") != std::string::npos);

  // ggml's GGUF parser: key names and types, tensor names, types and shapes, in llama-imatrix's order.
  void* g = l.gguf_init_from_file(im.c_str(), gguf_init_params{true, nullptr});
  REQUIRE(g != nullptr);
  std::map<std::string, int64_t> keys;
  for (int64_t i = 0; i < l.gguf_get_n_kv(g); ++i) keys[l.gguf_get_key(g, i)] = i;
  REQUIRE(keys.size() == 4u);
  REQUIRE(keys.count("general.type"));
  REQUIRE(l.gguf_get_kv_type(g, keys["general.type"]) == kGgufTypeString);
  CHECK(std::string(l.gguf_get_val_str(g, keys["general.type"])) == "imatrix");
  REQUIRE(keys.count("imatrix.datasets"));
  REQUIRE(l.gguf_get_kv_type(g, keys["imatrix.datasets"]) == kGgufTypeArray);
  REQUIRE(l.gguf_get_arr_type(g, keys["imatrix.datasets"]) == kGgufTypeString);
  REQUIRE(l.gguf_get_arr_n(g, keys["imatrix.datasets"]) == 1u);
  CHECK(std::string(l.gguf_get_arr_str(g, keys["imatrix.datasets"], 0)) == (tmp / "calib.txt").string());
  REQUIRE(keys.count("imatrix.chunk_count"));
  REQUIRE(l.gguf_get_kv_type(g, keys["imatrix.chunk_count"]) == kGgufTypeUint32);
  CHECK(l.gguf_get_val_u32(g, keys["imatrix.chunk_count"]) == 8u);
  REQUIRE(keys.count("imatrix.chunk_size"));
  REQUIRE(l.gguf_get_kv_type(g, keys["imatrix.chunk_size"]) == kGgufTypeUint32);
  CHECK(l.gguf_get_val_u32(g, keys["imatrix.chunk_size"]) == 128u);
  REQUIRE(l.gguf_get_n_tensors(g) == 72);
  std::string previous;
  for (int64_t i = 0; i < 72; i += 2) {
    const std::string sum_name = l.gguf_get_tensor_name(g, i), count_name = l.gguf_get_tensor_name(g, i + 1);
    INFO(sum_name << " / " << count_name);
    REQUIRE(sum_name.size() > 8);
    const std::string w = sum_name.substr(0, sum_name.size() - 8);
    CHECK(sum_name == w + ".in_sum2");
    CHECK(count_name == w + ".counts");
    CHECK(w > previous);
    previous = w;
    CHECK(l.gguf_get_tensor_type(g, i) == 0);  // GGML_TYPE_F32
    CHECK(l.gguf_get_tensor_type(g, i + 1) == 0);
    const int64_t* ne = l.gguf_get_tensor_ne(g, i);
    CHECK(ne[0] == (w.find("ffn_down") != std::string::npos ? 172 : 64));
    CHECK((ne[1] == 1 && ne[2] == 1 && ne[3] == 1));
    const int64_t* nc = l.gguf_get_tensor_ne(g, i + 1);
    CHECK((nc[0] == 1 && nc[1] == 1 && nc[2] == 1 && nc[3] == 1));
  }
  l.gguf_free(g);

  // llama-quantize's loader, and the same values through shrink's reader.
  common_imatrix ci;
  REQUIRE(l.imatrix_load(im.string(), ci));
  CHECK_FALSE(ci.is_legacy);
  CHECK(ci.has_metadata);
  CHECK(ci.chunk_count == 8);
  CHECK(ci.chunk_size == 128);
  CHECK(ci.datasets == std::vector<std::string>{(tmp / "calib.txt").string()});
  REQUIRE(ci.entries.size() == 36u);
  CHECK(ci.entries.count("output.weight") == 1u);
  auto mine = read_imatrix(im.string());
  REQUIRE(mine.ok());
  for (const auto& [name, e] : ci.entries) {
    INFO(name);
    CHECK(e.counts == std::vector<int64_t>{8 * 128});
    const ImatrixEntry* m = mine->find(name);
    REQUIRE(m != nullptr);
    CHECK(m->in_sum2 == e.sums);
  }

  // llama_model_quantize with the per-column weights quantize.cpp derives (sums / count), and
  // shrink's byte-exact path with the file itself: the same Q4_0 bytes.
  std::map<std::string, std::vector<float>> weights;
  std::vector<llama_model_imatrix_data> list;
  for (const auto& [name, e] : ci.entries) {
    std::vector<float>& w = weights[name];
    for (float s : e.sums) w.push_back(s / static_cast<float>(e.counts[0]));
  }
  for (const auto& [name, w] : weights) list.push_back({name.c_str(), w.data(), w.size()});
  list.push_back({nullptr, nullptr, 0});
  llama_model_quantize_params p = l.default_params();
  p.nthread = 2;
  p.ftype = kFtypeQ4_0;
  p.imatrix = list.data();
  const fs::path ll = tmp / "llamacpp-q4_0.gguf", ll_plain = tmp / "llamacpp-q4_0-plain.gguf";
  l.log.clear();
  if (l.quantize(f32.c_str(), ll.c_str(), &p) != 0) FAIL("llama_model_quantize failed:\n" << l.log);
  p.imatrix = nullptr;
  if (l.quantize(f32.c_str(), ll_plain.c_str(), &p) != 0) FAIL("llama_model_quantize failed:\n" << l.log);
  const fs::path sh = tmp / "shrink-q4_0.gguf";
  r = run_shrink("quantize " + quote(f32.string()) + " --type q4_0 --algo ggml --imatrix " + quote(im.string()) +
                 " -o " + quote(sh.string()));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  auto a = GgufFile::open(ll.string()), a0 = GgufFile::open(ll_plain.string()), b = GgufFile::open(sh.string());
  REQUIRE((a.ok() && a0.ok() && b.ok()));
  int compared = 0, changed_by_imatrix = 0;
  for (const GgufTensorInfo& t : a->tensors()) {
    const GgufTensorInfo* u = b->find_tensor(t.name);
    const GgufTensorInfo* t0 = a0->find_tensor(t.name);
    REQUIRE((u != nullptr && t0 != nullptr));
    if (t.name.rfind("blk.", 0) != 0 || t.type != TypeId::Q4_0 || u->type != TypeId::Q4_0) continue;
    INFO(t.name);
    REQUIRE(t.n_bytes == u->n_bytes);
    CHECK(std::memcmp(t.data, u->data, t.n_bytes) == 0);
    if (t0->n_bytes != t.n_bytes || std::memcmp(t.data, t0->data, t.n_bytes) != 0) ++changed_by_imatrix;
    ++compared;
  }
  std::printf("llama.cpp vs shrink, Q4_0 with the imatrix: %d blk tensors compared byte for byte, %d of them differ "
              "from llama.cpp's Q4_0 without it\n", compared, changed_by_imatrix);
  CHECK(compared == 30);  // 5 layers x 6 products (ffn_down, 172 wide, fits no 32-block: not Q4_0)
  CHECK(changed_by_imatrix == compared);
}

// ---- Does the imatrix help? KL divergence to the F32 model ----

namespace {

constexpr int64_t kEvalCtx = 128;

// Logits of the second half of each chunk (positions n_ctx/2 .. n_ctx-1), chunks cut and started
// with BOS as llama-perplexity does, F16 KV cache as llama.cpp's default.
std::vector<float> eval_logits(const fs::path& model_path, const std::vector<int32_t>& tokens, int64_t n_chunks,
                               const std::string& tokenizer) {
  OpenOptions oo;
  oo.tokenizer = tokenizer;
  auto src = open_model(model_path.string(), oo);
  REQUIRE(src.ok());
  auto model = load_llama_model(*src);
  REQUIRE(model.ok());
  KvCache cache = make_kv_cache(*model, kEvalCtx);
  std::vector<float> all, logits;
  for (int64_t c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * kEvalCtx, tokens.begin() + (c + 1) * kEvalCtx);
    chunk[0] = static_cast<int32_t>(model->vocab.bos_id.value_or(1));
    cache.clear();
    REQUIRE(llama_forward(*model, cache, chunk, logits, kEvalCtx / 2).ok());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

// Mean over positions of sum_i p_i (log p_i - log q_i), p from the F32 model.
double mean_kld(const std::vector<float>& p_logits, const std::vector<float>& q_logits, int64_t n_vocab) {
  REQUIRE(p_logits.size() == q_logits.size());
  const size_t n_pos = p_logits.size() / static_cast<size_t>(n_vocab);
  double total = 0;
  std::vector<double> lp(static_cast<size_t>(n_vocab)), lq(static_cast<size_t>(n_vocab));
  for (size_t t = 0; t < n_pos; ++t) {
    const float* p = p_logits.data() + t * n_vocab;
    const float* q = q_logits.data() + t * n_vocab;
    auto log_softmax = [n_vocab](const float* x, std::vector<double>& out) {
      double m = x[0];
      for (int64_t i = 1; i < n_vocab; ++i) m = std::max(m, double(x[i]));
      double s = 0;
      for (int64_t i = 0; i < n_vocab; ++i) s += std::exp(double(x[i]) - m);
      const double ls = std::log(s);
      for (int64_t i = 0; i < n_vocab; ++i) out[static_cast<size_t>(i)] = double(x[i]) - m - ls;
    };
    log_softmax(p, lp);
    log_softmax(q, lq);
    double k = 0;
    for (size_t i = 0; i < lp.size(); ++i) k += std::exp(lp[i]) * (lp[i] - lq[i]);
    total += k;
  }
  return total / static_cast<double>(n_pos);
}

// "17 x q4_0, 5 x q5_0, ..." for the quantized tensors of a file.
std::string type_summary(const fs::path& gguf) {
  auto f = GgufFile::open(gguf.string());
  REQUIRE(f.ok());
  std::map<std::string, int> n;
  for (const GgufTensorInfo& t : f->tensors())
    if (t.shape.size() >= 2) ++n[std::string(type_name(t.type))];
  std::string s;
  for (const auto& [type, count] : n) s += (s.empty() ? "" : ", ") + std::to_string(count) + " x " + type;
  return s;
}

struct KldCase {
  std::string label;
  fs::path bin;
  std::string tokenizer;
};

void check_kld_reduction(const KldCase& m) {
  TempDir tmp;
  const std::string wiki = read_text(corpus("wikitext2_wiki.test.raw"));
  REQUIRE(wiki.size() > 200000);
  // Calibrate on the first 40 KB of WikiText-2, evaluate on 40 KB starting at 100 KB.
  write_text(tmp / "calib.txt", wiki.substr(0, 40000));
  const fs::path im = tmp / "im.gguf";
  RunResult r = run_shrink("calibrate " + quote(m.bin.string()) + " --tokenizer " + quote(m.tokenizer) + " --text " +
                           quote((tmp / "calib.txt").string()) + " --ctx 128 --chunks 32 -o " + quote(im.string()));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);

  OpenOptions oo;
  oo.tokenizer = m.tokenizer;
  auto src = open_model(m.bin.string(), oo);
  REQUIRE(src.ok());
  TokenizerOptions to;
  auto tok = Tokenizer::from_vocab(src->vocab, to);
  REQUIRE(tok.ok());
  const std::vector<int32_t> eval_tokens = tok->encode(wiki.substr(100000, 40000), true, false);
  const int64_t n_chunks = std::min<int64_t>(16, static_cast<int64_t>(eval_tokens.size()) / kEvalCtx);
  REQUIRE(n_chunks >= 16);
  const std::vector<float> ref = eval_logits(m.bin, eval_tokens, n_chunks, m.tokenizer);
  const int64_t n_vocab = src->config.n_vocab;

  std::printf("%s: KLD to F32 over %lld positions (WikiText-2 100..140 KB, ctx %lld, second halves)\n",
              m.label.c_str(), static_cast<long long>(n_chunks * kEvalCtx / 2), static_cast<long long>(kEvalCtx));
  for (const std::string algo : {"ggml", "best"})
    for (const std::string type : {"q4_0", "q4_k_m"}) {
      double kld[2] = {0, 0};
      std::string types;
      for (int with = 0; with < 2; ++with) {
        const fs::path q = tmp / (algo + "-" + type + (with ? "-im" : "") + ".gguf");
        RunResult qr = run_shrink("quantize " + quote(m.bin.string()) + " --tokenizer " + quote(m.tokenizer) +
                                  " --type " + type + " --algo " + algo + (with ? " --imatrix " + quote(im.string()) : "") +
                                  " -o " + quote(q.string()));
        INFO(qr.out);
        REQUIRE(qr.exit_code == 0);
        if (with) types = type_summary(q);
        kld[with] = mean_kld(ref, eval_logits(q, eval_tokens, n_chunks, m.tokenizer), n_vocab);
      }
      std::printf("  %-6s --algo %-4s  no imatrix %.5f  imatrix %.5f  (%+.1f%%)  [%s]\n", type.c_str(), algo.c_str(),
                  kld[0], kld[1], 100.0 * (kld[1] / kld[0] - 1.0), types.c_str());
      INFO(m.label << " " << type << " --algo " << algo << ": KLD " << kld[0] << " without, " << kld[1] << " with");
      CHECK(kld[1] < kld[0]);
    }
  std::fflush(stdout);
}

}  // namespace

TEST_CASE("calibrate: the imatrix lowers the KL divergence of Q4_0 and Q4_K_M (stories260K, BabyLlama)",
          "[data][kld]") {
  const fs::path models = data_dir() / "models";
  check_kld_reduction({"stories260K", stories_bin(),
                       require(models / "stories260K/tok512.bin", "shared test data (tok512.bin)").string()});
  check_kld_reduction({"BabyLlama", require(models / "babyllama-105/model5000.bin", "shared test data (BabyLlama)"),
                       require(models / "babyllama-105/tok105.bin", "shared test data (tok105.bin)").string()});
}
