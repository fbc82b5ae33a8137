// `shrink eval` KL-divergence mode and --per-tensor, against independent oracles:
//  - llama.cpp's logits (tests/interop/llama_kld_stats.mjs, node-llama-cpp, one thread, F32 KV
//    cache) put through llama-perplexity's --kl-divergence procedure, for stories260K Q4_0 and
//    Q4_K_M files written by `shrink quantize`, against their F32 file, on a WikiText-2 slice;
//  - a llama-perplexity base file written from llama.cpp's logits (the script's --save-logits),
//    read by `shrink eval --kl-divergence` (the format interoperates both ways: shrink's own
//    --save-logits file has the same header and tokens, byte for byte);
//  - ggml's dequantizer (libggml-base.so, to_float) and the llama2.c checkpoint parsed here
//    from its documented layout, for the --per-tensor table.
//
// Tolerances (ctx 128, F32 KV cache on both sides). Both sides run the same weights; what differs
// is float summation order in the forward pass, which ggml's Q8_0/Q8_1 activation quantization
// amplifies (test_eval_llamacpp: single log-probabilities move by up to ~0.2, perplexity by ~4e-4).
// Measured on a 20 KB slice (6,048 positions), shrink vs llama.cpp:
//   Q4_0   (--base)             mean KLD 0.16183 vs 0.16171 (0.07%), same top 73.63% vs 73.48%,
//                               PPL(Q) 113.052 vs 113.006 (4e-4)
//   Q4_K_M (llama.cpp's base)   mean KLD 0.04156 vs 0.04147 (0.2%), median 0.02190 vs 0.02154 (1.7%),
//                               same top 85.42% vs 85.57%, PPL(base) equal to 9 digits
// The test runs a 10 KB slice (~2,900 positions) to stay short and prints its figures (WARN).
// Bounds: mean KLD and RMS Δp within 2% relative; the median within 5% (one order statistic of
// many small values, where the per-position noise is relatively largest); same top and the
// correlation of ln PPL within 0.5 percentage points; PPL(Q) and PPL(base) within 0.1% (the bound
// test_eval_llamacpp holds for perplexity).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "tests/ggml_oracle.h"
#include "tests/test_support.h"

namespace {

using namespace shrink::test;
using nlohmann::json;

constexpr int kCtx = 128;
constexpr size_t kSliceBytes = 10000;

struct Models {
  TempDir tmp;
  fs::path bin, tok, slice, other_text;
  std::map<std::string, fs::path> gguf;  // "f32", "q4_0", "q4_k_m"
};

// The quantized files, made once (no node needed).
Models& models() {
  static Models* m = [] {
    auto* r = new Models;
    const fs::path dir = data_dir() / "models" / "stories260K";
    r->bin = require(dir / "stories260K.bin", "shared test data (stories260K.bin)");
    r->tok = require(dir / "tok512.bin", "shared test data (tok512.bin)");
    const fs::path wiki =
        require(data_dir() / "corpus" / "wikitext2_wiki.test.raw", "shared test data (wikitext2_wiki.test.raw)");
    const fs::path shakespeare = require(data_dir() / "corpus" / "tinyshakespeare_input.txt",
                                         "shared test data (tinyshakespeare_input.txt)");
    r->slice = r->tmp / "wiki.txt";
    write_text(r->slice, read_text(wiki).substr(0, kSliceBytes));
    r->other_text = r->tmp / "shakespeare.txt";
    write_text(r->other_text, read_text(shakespeare).substr(0, kSliceBytes));
    for (const char* type : {"f32", "q4_0", "q4_k_m"}) {
      const fs::path out = r->tmp / (std::string("stories260K-") + type + ".gguf");
      RunResult q = run_shrink("quantize " + quote(r->bin.string()) + " --tokenizer " + quote(r->tok.string()) +
                               " -t " + type + " -q -o " + quote(out.string()));
      if (q.exit_code != 0) FAIL("shrink quantize " << type << " failed:\n" << q.out);
      r->gguf[type] = out;
    }
    return r;
  }();
  return *m;
}

struct Oracle {
  fs::path base_file;               // llama-perplexity base file from llama.cpp's F32 logits
  std::map<std::string, json> kld;  // by type
};

Oracle& oracle() {
  static Oracle* o = [] {
    Models& m = models();
    require(interop_dir() / "node_modules" / "node-llama-cpp" / "package.json", "npm package node-llama-cpp");
    if (run("node --version").exit_code != 0) skip_program("node (v20+) not found on PATH");
    auto* r = new Oracle;
    r->base_file = m.tmp / "llamacpp-base.kld";
    const fs::path log = m.tmp / "node.log";
    RunResult n = run("node " + quote((interop_dir() / "llama_kld_stats.mjs").string()) + " " +
                      quote(m.gguf["f32"].string()) + " " + quote(m.gguf["q4_0"].string()) + " " +
                      quote(m.gguf["q4_k_m"].string()) + " --text " + quote(m.slice.string()) + " --ctx " +
                      std::to_string(kCtx) + " --kv-type f32 --save-logits " + quote(r->base_file.string()) + " 2> " +
                      quote(log.string()));
    if (n.exit_code != 0) FAIL("llama_kld_stats.mjs failed:\n" << n.out << read_text(log));
    std::istringstream lines(n.out);
    for (std::string line; std::getline(lines, line);) {
      if (line.empty() || line[0] != '{') continue;
      json j = json::parse(line);
      for (const auto& [type, path] : m.gguf)
        if (j["model"] == path.string()) r->kld[type] = j;
    }
    if (r->kld.size() != 2) FAIL("llama_kld_stats.mjs gave " << r->kld.size() << " results:\n" << n.out);
    return r;
  }();
  return *o;
}

json shrink_json(const std::string& args) {
  RunResult r = run_shrink(args + " --json");
  INFO("shrink " << args << ":\n" << r.out);
  REQUIRE(r.exit_code == 0);
  json j = parse_last_json_line(r.out);
  REQUIRE(j.is_object());
  return j;
}

double rel(double a, double b) { return std::fabs(a / b - 1.0); }

std::string describe(const json& ours, const json& ref) {
  std::ostringstream s;
  s.precision(6);
  for (const char* k : {"ppl", "ppl_base", "log_ppl_cor", "log_ppl_ratio", "kld_mean", "kld_error", "p_diff_mean",
                        "p_diff_rms", "same_top"})
    s << k << " shrink " << ours[k].get<double>() << " llama.cpp " << ref[k].get<double>() << "\n";
  for (const char* k : {"max", "p99", "median", "p10"})
    s << "kld." << k << " shrink " << ours["kld"][k].get<double>() << " llama.cpp " << ref["kld"][k].get<double>()
      << "; p_diff." << k << " shrink " << ours["p_diff"][k].get<double>() << " llama.cpp "
      << ref["p_diff"][k].get<double>() << "\n";
  return s.str();
}

void check_agreement(const json& ours, const json& ref) {
  INFO(describe(ours, ref));
  WARN(ours["model"].get<std::string>() << " (" << ours["count"] << " positions):\n" << describe(ours, ref));
  CHECK(ours["count"] == ref["count"]);
  CHECK(ours["n_chunks"] == ref["n_chunks"]);
  CHECK(rel(ours["ppl"].get<double>(), ref["ppl"].get<double>()) <= 1e-3);
  CHECK(rel(ours["ppl_base"].get<double>(), ref["ppl_base"].get<double>()) <= 1e-3);
  CHECK(rel(ours["kld_mean"].get<double>(), ref["kld_mean"].get<double>()) <= 0.02);
  CHECK(rel(ours["kld"]["median"].get<double>(), ref["kld"]["median"].get<double>()) <= 0.05);
  CHECK(rel(ours["p_diff_rms"].get<double>(), ref["p_diff_rms"].get<double>()) <= 0.02);
  CHECK(std::fabs(ours["same_top"].get<double>() - ref["same_top"].get<double>()) <= 0.005);
  CHECK(std::fabs(ours["log_ppl_cor"].get<double>() - ref["log_ppl_cor"].get<double>()) <= 0.005);
}

std::string eval_args(const fs::path& model) {
  return "eval " + quote(model.string()) + " --ctx " + std::to_string(kCtx) + " --kv-type f32";
}

// shrink eval TYPE.gguf --base f32.gguf --text slice, run once per type.
const json& shrink_with_base(const std::string& type) {
  static std::map<std::string, json> cache;
  Models& m = models();
  if (!cache.count(type))
    cache[type] = shrink_json(eval_args(m.gguf[type]) + " --base " + quote(m.gguf["f32"].string()) + " --text " +
                              quote(m.slice.string()));
  return cache[type];
}

}  // namespace

TEST_CASE("eval --base: KLD statistics of Q4_0 and Q4_K_M equal llama.cpp's", "[data][kld][llamacpp]") {
  Oracle& o = oracle();
  for (const char* type : {"q4_0", "q4_k_m"}) {
    INFO(type);
    check_agreement(shrink_with_base(type), o.kld[type]);
  }
}

TEST_CASE("eval --kl-divergence reads a base file made from llama.cpp's logits", "[data][kld][llamacpp]") {
  Models& m = models();
  Oracle& o = oracle();
  // --text too: shrink's tokens must equal the llama.cpp tokens stored in the file.
  const json ours = shrink_json(eval_args(m.gguf["q4_0"]) + " --kl-divergence " + quote(o.base_file.string()) +
                                " --text " + quote(m.slice.string()));
  const json& ref = o.kld["q4_0"];
  check_agreement(ours, ref);
  // PPL(base) comes from the stored codes alone: the same numbers on both sides.
  CHECK(rel(ours["ppl_base"].get<double>(), ref["ppl_base"].get<double>()) <= 1e-9);
}

TEST_CASE("eval --save-logits then --kl-divergence equals --base; the file matches llama.cpp's layout",
          "[data][kld][llamacpp]") {
  Models& m = models();
  Oracle& o = oracle();
  const fs::path saved = m.tmp / "shrink-base.kld";
  const json s = shrink_json(eval_args(m.gguf["f32"]) + " --text " + quote(m.slice.string()) + " --save-logits " +
                             quote(saved.string()));
  // (Its PPL is the plain perplexity, as llama-perplexity prints while saving; PPL(base) in KL mode
  // is lower because the 16-bit codes clip log-probabilities more than 16 nats below the top one.)
  CHECK(s["count"] == o.kld["q4_0"]["count"]);

  const std::vector<uint8_t> a = read_bytes(saved), b = read_bytes(o.base_file);
  REQUIRE(a.size() == b.size());
  int32_t head[3];
  std::memcpy(head, a.data() + 8, sizeof(head));
  const size_t n_ctx = static_cast<size_t>(head[0]), n_vocab = static_cast<size_t>(head[1]),
               n_chunk = static_cast<size_t>(head[2]);
  const size_t records_at = 20 + 4 * n_ctx * n_chunk;
  // Magic, n_ctx, n_vocab, n_chunk and the tokens: byte for byte.
  CHECK(std::memcmp(a.data(), b.data(), records_at) == 0);
  // Records: decoded log-probabilities (above the -16 floor both sides code) agree within the
  // F32 forward-pass difference (~2e-5) plus one code step (16 / 65535 = 2.4e-4) each side.
  const size_t nv = 2 * ((n_vocab + 1) / 2) + 4;
  double max_diff = 0;
  for (size_t off = records_at; off < a.size(); off += nv * 2) {
    float sa[2], sb[2];
    std::memcpy(sa, a.data() + off, 8);
    std::memcpy(sb, b.data() + off, 8);
    for (size_t v = 0; v < n_vocab; ++v) {
      uint16_t qa, qb;
      std::memcpy(&qa, a.data() + off + 8 + 2 * v, 2);
      std::memcpy(&qb, b.data() + off + 8 + 2 * v, 2);
      const double la = sa[0] * qa + sa[1], lb = sb[0] * qb + sb[1];
      if (la > -15 && lb > -15) max_diff = std::max(max_diff, std::fabs(la - lb));
    }
  }
  INFO("max |log p| difference between shrink's and llama.cpp's base records: " << max_diff);
  CHECK(max_diff <= 1e-3);

  {
    const char* type = "q4_0";
    json from_file = shrink_json(eval_args(m.gguf[type]) + " --kl-divergence " + quote(saved.string()));
    json on_the_fly = shrink_with_base(type);
    for (json* j : {&from_file, &on_the_fly}) {
      j->erase("base");
      j->erase("seconds");
    }
    CHECK(from_file == on_the_fly);
  }
}

namespace {

// Runs shrink expecting one clear error line naming `must_name`.
void expect_one_error(const std::string& args, const std::string& must_name, const std::string& must_say) {
  RunResult r = run_shrink(args);
  INFO("shrink " << args << "\n" << r.out);
  CHECK(r.exit_code == 1);
  // One error line; anything else may only be a warning about the inputs (e.g. "already quantized").
  std::string error;
  int errors = 0, others = 0;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("shrink: error: ", 0) == 0) {
      ++errors;
      error = line;
    } else if (line.rfind("shrink: warning: ", 0) != 0) {
      ++others;
    }
  }
  CHECK(errors == 1);
  CHECK(others == 0);
  CHECK(error.find(must_name) != std::string::npos);
  CHECK(error.find(must_say) != std::string::npos);
}

}  // namespace

TEST_CASE("eval --kl-divergence: hostile, truncated and mismatched base files give one clear error", "[data][kld]") {
  Models& m = models();
  const fs::path good = m.tmp / "good.kld";
  RunResult s = run_shrink(eval_args(m.gguf["f32"]) + " --text " + quote(m.slice.string()) + " --chunks 3 --save-logits " +
                           quote(good.string()));
  INFO(s.out);
  REQUIRE(s.exit_code == 0);
  const std::vector<uint8_t> bytes = read_bytes(good);
  REQUIRE(bytes.size() == 20 + 4 * 3 * kCtx + 3 * 63 * (2 * 256 + 4) * 2);
  const std::string q4 = eval_args(m.gguf["q4_0"]) + " --kl-divergence ";
  auto variant = [&](const std::string& name, auto edit) {
    std::vector<uint8_t> b = bytes;
    edit(b);
    const fs::path p = m.tmp / name;
    write_bytes(p, b);
    return p.string();
  };
  SECTION("truncated") {
    const std::string p = variant("truncated.kld", [](std::vector<uint8_t>& b) { b.resize(b.size() - 3); });
    expect_one_error(q4 + quote(p), p, "truncated");
  }
  SECTION("trailing bytes") {
    const std::string p = variant("long.kld", [](std::vector<uint8_t>& b) { b.push_back(0); });
    expect_one_error(q4 + quote(p), p, "need exactly");
  }
  SECTION("not a logits file") {
    const std::string p = variant("magic.kld", [](std::vector<uint8_t>& b) { b[1] = 'L'; });
    expect_one_error(q4 + quote(p), p, "_logits_");
  }
  SECTION("huge n_chunk") {
    const std::string p = variant("huge.kld", [](std::vector<uint8_t>& b) {
      const int32_t v = 0x7fffffff;
      std::memcpy(b.data() + 16, &v, 4);
    });
    expect_one_error(q4 + quote(p), p, "need exactly");
  }
  SECTION("another vocabulary") {
    // 511 tokens take the same record size as 512 (records are padded to an even count).
    const std::string p = variant("vocab.kld", [](std::vector<uint8_t>& b) {
      const int32_t v = 511;
      std::memcpy(b.data() + 12, &v, 4);
    });
    expect_one_error(q4 + quote(p), p, "vocabulary of 511");
  }
  SECTION("token outside the vocabulary") {
    const std::string p = variant("token.kld", [](std::vector<uint8_t>& b) {
      const int32_t v = 9999;
      std::memcpy(b.data() + 20 + 4 * 5, &v, 4);
    });
    expect_one_error(q4 + quote(p), p, "token 5 is 9999");
  }
  SECTION("NaN scale in a record") {
    const std::string p = variant("nan.kld", [](std::vector<uint8_t>& b) {
      const float v = std::nanf("");
      std::memcpy(b.data() + 20 + 4 * 3 * kCtx, &v, 4);
    });
    expect_one_error(q4 + quote(p), p, "chunk 0, position 64");
  }
  SECTION("a different text") {
    expect_one_error(q4 + quote(good.string()) + " --text " + quote(m.other_text.string()), good.string(),
                     "not the text the base was computed on");
  }
  SECTION("a different context") {
    expect_one_error("eval " + quote(m.gguf["q4_0"].string()) + " --kl-divergence " + quote(good.string()) +
                         " --ctx 256",
                     good.string(), "context of 128");
  }
  SECTION("a base model with another vocabulary") {
    const fs::path baby = require(data_dir() / "models" / "babyllama-105" / "model5000.bin", "BabyLlama");
    const fs::path baby_tok = require(data_dir() / "models" / "babyllama-105" / "tok105.bin", "BabyLlama tokenizer");
    expect_one_error(eval_args(m.gguf["q4_0"]) + " --text " + quote(m.slice.string()) + " --base " +
                         quote(baby.string()) + " --base-tokenizer " + quote(baby_tok.string()),
                     baby.string(), "vocabulary mismatch");
  }
  SECTION("--save-logits that fails leaves an existing file untouched") {
    const fs::path keep = m.tmp / "keep.kld";
    write_text(keep, "precious");
    const fs::path tiny = m.tmp / "tiny.txt";
    write_text(tiny, "Once upon a time");
    expect_one_error(eval_args(m.gguf["f32"]) + " --text " + quote(tiny.string()) + " --save-logits " +
                         quote(keep.string()),
                     keep.string(), "needs at least 256 tokens");
    CHECK(read_text(keep) == "precious");
    int leftovers = 0;
    for (const auto& e : fs::directory_iterator(m.tmp.path))
      if (e.path().filename().string().find("keep.kld") != std::string::npos) ++leftovers;
    CHECK(leftovers == 1);
  }
}

namespace {

// stories260K.bin read straight from the llama2.c layout (shared/data/README.md), named as GGUF
// names them; q/k rows are already in GGUF's interleaved RoPE order in this format.
std::map<std::string, std::vector<float>> read_llama2c(const fs::path& path) {
  const std::vector<uint8_t> b = read_bytes(path);
  int32_t h[7];
  std::memcpy(h, b.data(), sizeof(h));
  const size_t dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv_heads = h[4];
  const size_t vocab = static_cast<size_t>(std::abs(h[5])), kv_dim = dim * kv_heads / heads;
  size_t off = sizeof(h);
  auto take = [&](size_t n) {
    std::vector<float> v(n);
    REQUIRE(off + 4 * n <= b.size());
    std::memcpy(v.data(), b.data() + off, 4 * n);
    off += 4 * n;
    return v;
  };
  std::map<std::string, std::vector<float>> t;
  t["token_embd.weight"] = take(vocab * dim);
  auto per_layer = [&](const char* name, size_t n) {
    for (size_t l = 0; l < layers; ++l) t["blk." + std::to_string(l) + "." + name + ".weight"] = take(n);
  };
  per_layer("attn_norm", dim);
  per_layer("attn_q", dim * dim);
  per_layer("attn_k", kv_dim * dim);
  per_layer("attn_v", kv_dim * dim);
  per_layer("attn_output", dim * dim);
  per_layer("ffn_norm", dim);
  per_layer("ffn_gate", hidden * dim);
  per_layer("ffn_down", dim * hidden);
  per_layer("ffn_up", hidden * dim);
  t["output_norm.weight"] = take(dim);
  return t;
}

// Bits per weight of ggml's block types (ggml-common.h: bytes per block * 8 / weights per block).
const std::map<std::string, double> kBitsPerWeight = {
    {"f32", 32},          {"f16", 16},         {"q4_0", 18 * 8 / 32.0},   {"q4_1", 20 * 8 / 32.0},
    {"q5_0", 22 * 8 / 32.0}, {"q5_1", 24 * 8 / 32.0}, {"q8_0", 34 * 8 / 32.0}, {"q2_k", 84 * 8 / 256.0},
    {"q3_k", 110 * 8 / 256.0}, {"q4_k", 144 * 8 / 256.0}, {"q5_k", 176 * 8 / 256.0}, {"q6_k", 210 * 8 / 256.0},
    {"iq4_nl", 18 * 8 / 32.0}, {"iq4_xs", 136 * 8 / 256.0}};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

TEST_CASE("eval --per-tensor: SQNR, cosine and max error equal a direct computation on ggml's dequantized values",
          "[data][per-tensor]") {
  Models& m = models();
  GgmlOracle ggml(ggml_base_library().string());
  if (!ggml.ok()) skip_program("ggml oracle: " + ggml.error());
  const auto source = read_llama2c(m.bin);
  for (const char* type : {"q4_0", "q4_k_m"}) {
    INFO(type);
    const json j = shrink_json("eval " + quote(m.gguf[type].string()) + " --base " + quote(m.bin.string()) +
                               " --tokenizer " + quote(m.tok.string()) + " --per-tensor");
    auto file = shrink::GgufFile::open(m.gguf[type].string());
    REQUIRE(file.ok());
    REQUIRE(j["tensors"].size() == file->tensors().size());
    CHECK(j["not_in_base"].empty());
    double all_sig = 0, all_err = 0;
    std::map<std::string, int> types_seen;
    for (const json& row : j["tensors"]) {
      const std::string name = row["name"];
      INFO(name);
      const shrink::GgufTensorInfo* info = file->find_tensor(name);
      REQUIRE(info != nullptr);
      REQUIRE(source.count(name) == 1);
      const std::vector<float>& x = source.at(name);
      const int64_t n = info->n_elements();
      REQUIRE(static_cast<int64_t>(x.size()) == n);
      std::vector<float> y(static_cast<size_t>(n));
      if (info->type == shrink::TypeId::F32) {
        std::memcpy(y.data(), info->data, 4 * static_cast<size_t>(n));
      } else {
        REQUIRE(ggml.dequantize_row(static_cast<uint32_t>(info->type), info->data, y.data(), n));
      }
      double sig = 0, err = 0, yy = 0, xy = 0, max_abs = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double e = static_cast<double>(y[i]) - x[i];
        sig += static_cast<double>(x[i]) * x[i];
        err += e * e;
        yy += static_cast<double>(y[i]) * y[i];
        xy += static_cast<double>(x[i]) * y[i];
        max_abs = std::max(max_abs, std::fabs(e));
      }
      all_sig += sig;
      all_err += err;
      const std::string tname = lower(row["type"].get<std::string>());
      ++types_seen[tname];
      REQUIRE(kBitsPerWeight.count(tname) == 1);
      CHECK(row["bits_per_weight"].get<double>() == Approx(kBitsPerWeight.at(tname)).epsilon(1e-12));
      CHECK(row["n_weights"].get<int64_t>() == n);
      CHECK(row["max_abs_error"].get<double>() == Approx(max_abs).epsilon(1e-9));
      CHECK(row["cosine"].get<double>() == Approx(xy / std::sqrt(sig * yy)).epsilon(1e-9));
      if (err == 0)
        CHECK(row["sqnr_db"].is_null());
      else
        CHECK(row["sqnr_db"].get<double>() == Approx(10 * std::log10(sig / err)).epsilon(1e-9));
    }
    CHECK(j["total"]["sqnr_db"].get<double>() == Approx(10 * std::log10(all_sig / all_err)).epsilon(1e-9));
    // Quantized weights really were compared (not only the F32 norms).
    CHECK(types_seen.size() >= 2);
  }
}
